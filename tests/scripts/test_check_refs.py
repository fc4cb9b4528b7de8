"""scripts/check_refs.py: the plan's git refs resolved in local bare repositories, and the report it writes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SMALL

spec = importlib.util.spec_from_file_location("check_refs", ROOT / "scripts" / "check_refs.py")
check_refs = sys.modules.setdefault("check_refs", importlib.util.module_from_spec(spec))
spec.loader.exec_module(check_refs)

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z",
           "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z", "PATH": "/usr/bin:/bin:/usr/local/bin"}


def git(git_dir: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["git", f"--git-dir={git_dir}", *args], input=stdin, capture_output=True, text=True,
                          env=GIT_ENV, check=True)
    return done.stdout.strip()


def bare_repo(path: Path, *, tags=(), annotated=(), branches=("main",)) -> str:
    """A bare repository with one commit, on `branches`, tagged with `tags` (lightweight) and `annotated`."""
    subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True, env=GIT_ENV)
    blob = git(path, "hash-object", "-w", "--stdin", stdin="hello\n")
    tree = git(path, "mktree", stdin=f"100644 blob {blob}\tREADME\n")
    commit = git(path, "commit-tree", tree, "-m", "first")
    for branch in branches:
        git(path, "update-ref", f"refs/heads/{branch}", commit)
    for tag in tags:
        git(path, "tag", tag, commit)
    for tag in annotated:
        git(path, "tag", "-a", "-m", f"release {tag}", tag, commit)
    return commit


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "ucx.git"
    commit = bare_repo(path, tags=["v1.19.0", "v1.18.1"], annotated=["v1.20.0"], branches=("master", "v1.19.x"))
    return path, commit


def test_tags_branches_and_commits_resolve_to_the_commit(repo):
    path, commit = repo
    assert check_refs.resolve_ref(path, "v1.19.0") == ("tag", commit)
    assert check_refs.resolve_ref(path, "v1.20.0") == ("tag", commit), "an annotated tag peels to its commit"
    assert check_refs.resolve_ref(path, "v1.19.x") == ("branch", commit)
    assert check_refs.resolve_ref(path, commit) == ("commit", commit)
    assert check_refs.resolve_ref(path, commit[:10]) == ("commit", commit)
    assert check_refs.resolve_ref(path, "v1.23.0") is None
    assert check_refs.resolve_ref(path, "deadbeefdeadbeef") is None
    assert check_refs.resolve_ref(path, "HEAD~1") is None, "only tags, branches and hex shas are refs here"


def test_a_missing_ref_reports_its_nearest_tags_and_branches(repo):
    path, _ = repo
    names = check_refs.ref_names(path)
    assert set(names) == {"v1.19.0", "v1.18.1", "v1.20.0", "master", "v1.19.x"}
    assert check_refs.candidates("1.19.0", names)[0] == "v1.19.0", "the v-prefixed twin first"
    assert check_refs.candidates("v1.19.1", names) == ["v1.19.x", "v1.19.0", "v1.18.1", "v1.20.0"]
    assert check_refs.candidates("v1.23.0", names) == ["v1.20.0", "v1.19.0"]
    assert check_refs.candidates("v1.19.0-glm", ["v1.19.0+glm-fix", "main"]) == ["v1.19.0+glm-fix"]


def test_repository_names_and_refs_come_from_the_build_args():
    args = {"UCX_REPO": "https://github.com/openucx/ucx.git", "UCX_REF": "v1.19.0", "UCX_VERSION": "1.19.0",
            "NIXL_REPO": "", "NIXL_REF": "",  # a wheel-mode layer clones nothing
            "TRITON_REQUIREMENT": "triton @ git+https://github.com/triton-lang/triton.git@abc1234",
            "FLASHINFER_REQUIREMENT": "flashinfer-python==0.6.5"}
    assert check_refs.refs_of_build_args(args) == [
        ("https://github.com/triton-lang/triton.git", "abc1234", "TRITON_REQUIREMENT"),
        ("https://github.com/openucx/ucx.git", "v1.19.0", "UCX_REF")]
    assert check_refs.repo_name("https://github.com/scitrera/vllm.git") == "scitrera/vllm"
    assert check_refs.repo_name("git@github.com:NVIDIA/nccl") == "NVIDIA/nccl"
    assert check_refs.repo_name("https://example.invalid/x.git") == "https://example.invalid/x.git"


def test_check_finds_reports_missing_and_leaves_repos_without_a_mirror_unchecked(repo, tmp_path):
    path, commit = repo
    fork = tmp_path / "fork.git"
    fork_commit = bare_repo(fork, branches=("main",))
    wanted = [
        check_refs.Wanted("openucx/ucx", "u", "v1.19.0", ("a",), ("UCX_REF",)),
        check_refs.Wanted("openucx/ucx", "u", "v1.23.0", ("b",), ("UCX_REF",), source_only=True),
        check_refs.Wanted("ai-dynamo/nixl", "n", "v1.5.1", ("c",), ("NIXL_REF",)),
        check_refs.Wanted("vllm-project/vllm", "v", fork_commit, ("d",), ("VLLM_REF",)),
        check_refs.Wanted("vllm-project/vllm", "v", "v0.14.0", ("e",), ("VLLM_REF",)),
    ]
    found, missing, no_mirror, via_fork, tag_not_in_fork = check_refs.check(
        wanted, {"openucx/ucx": path}, {"vllm-project/vllm": fork})
    assert (found.status, found.kind, found.commit) == ("found", "tag", commit)
    assert found.snapshot_newest == "2026-01-02T03:04:05+00:00"
    assert missing.status == "missing" and missing.candidates == ["v1.20.0", "v1.19.0"] and missing.source_only
    assert no_mirror.status == "unchecked" and "no snapshot" in no_mirror.reason
    assert (via_fork.status, via_fork.commit, via_fork.reachable_from) == ("found", fork_commit, ["main"])
    assert via_fork.kind == "commit (in a fork's snapshot)"
    assert tag_not_in_fork.status == "unchecked", "a fork's snapshot holds no upstream tags: only shas are checked"
    assert "fork holds no upstream tags" in tag_not_in_fork.reason


def test_the_report_is_spliced_between_its_markers(repo):
    path, commit = repo
    results = check_refs.check([check_refs.Wanted("openucx/ucx", "u", "v1.19.0", ("0.17.0-t5-nixl",), ("UCX_REF",)),
                                check_refs.Wanted("openucx/ucx", "u", "1.19.0", ("x",), ("UCX_REF",))],
                               {"openucx/ucx": path})
    block = check_refs.render(results, "2026-12-01T00:00:00Z")
    assert f"| `0.17.0-t5-nixl` | openucx/ucx | `v1.19.0` | tag | `{commit}` |" in block
    assert "| `x` | openucx/ucx | `1.19.0` | `v1.19.0`" in block, "the missing ref names its v-prefixed twin"
    assert "1 found, 1 missing, 0 unchecked" in block
    page = check_refs.splice(None, block)
    assert page.startswith("# ") and block in page
    edited = "# Title\n\nhand-written findings\n\n" + block + "\n\n## More notes\n"
    again = check_refs.splice(edited, check_refs.render(results, "2026-12-02T00:00:00Z"))
    assert "hand-written findings" in again and again.endswith("## More notes\n")
    assert "2026-12-02T00:00:00Z" in again and "2026-12-01T00:00:00Z" not in again


NIXL_WHEELS = """
[extra.nixl]
suffix = "nixl"
description = "NIXL wheels for KV-cache transfer"
dockerfile = "dockerfiles/nixl.Dockerfile"
mode = "wheels"
on = ["0.17.0-t5"]
versions = { ucx = "1.23.0", nixl = "1.5.1" }
"""


def test_the_plan_of_a_matrix_gives_every_ref_and_the_source_refs_of_wheel_layers(write_matrix, tmp_path):
    text = SMALL.replace("\n[[rule]]", NIXL_WHEELS + """
[image."0.17.0-t4".sources.vllm]
repo = "https://github.com/example/vllm.git"
ref = "0123456789abcdef0123456789abcdef01234567"
note = "a fork's commit"

[[rule]]""", 1)
    path = write_matrix(text)
    (tmp_path / "dockerfiles" / "nixl.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    plan, source_only = check_refs.plan_of(path)
    wanted = {(w.repo, w.ref): w for w in check_refs.collect(plan, source_only)}
    assert wanted[("example/vllm", "0123456789abcdef0123456789abcdef01234567")].images == ("0.17.0-t4",)
    assert wanted[("vllm-project/vllm", "v0.17.0")].images == ("0.17.0-t5",)
    assert wanted[("pytorch/pytorch", "v2.10.0")].images == ("2.10.0-cu131",)
    assert wanted[("NVIDIA/nccl", "v2.29.2-1")].args == ("NCCL_REF",)
    nixl = wanted[("ai-dynamo/nixl", "v1.5.1")]
    assert nixl.source_only and nixl.images == ("0.17.0-t5-nixl",)
    assert wanted[("openucx/ucx", "v1.23.0")].source_only
    assert not any(w.source_only for key, w in wanted.items() if key[0] not in ("ai-dynamo/nixl", "openucx/ucx"))


def test_main_writes_the_report_and_fails_only_on_a_missing_cloned_ref(write_matrix, tmp_path, capsys):
    path = write_matrix(SMALL.replace("\n[[rule]]", NIXL_WHEELS + "\n[[rule]]", 1))
    (tmp_path / "dockerfiles" / "nixl.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    nccl = tmp_path / "nccl.git"
    bare_repo(nccl, tags=["v2.29.2-1"])
    vllm = tmp_path / "vllm.git"
    bare_repo(vllm, tags=["v0.17.0"])
    out = tmp_path / "docs" / "refs.md"
    mirrors = ["--mirror", f"NVIDIA/nccl={nccl}", "--mirror", f"vllm-project/vllm={vllm}",
               "--mirror", f"ai-dynamo/nixl={vllm}"]
    assert check_refs.main(["--matrix", str(path), *mirrors, "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    status = {(r["repo"], r["ref"]): r["status"] for r in report["refs"]}
    assert status[("NVIDIA/nccl", "v2.29.2-1")] == status[("vllm-project/vllm", "v0.17.0")] == "found"
    assert status[("ai-dynamo/nixl", "v1.5.1")] == "missing", "only a switch to mode source would clone it"
    assert status[("pytorch/pytorch", "v2.10.0")] == "unchecked"
    assert "### Missing" in out.read_text()
    assert check_refs.main(["--matrix", str(path), *mirrors, "--output", "-", "--strict"]) == 1

    bare = tmp_path / "old-nccl.git"
    bare_repo(bare, tags=["v2.28.9-1"])
    mirrors[1] = f"NVIDIA/nccl={bare}"
    assert check_refs.main(["--matrix", str(path), *mirrors, "--output", "-"]) == 1
    assert "missing   NVIDIA/nccl v2.29.2-1: near: v2.28.9-1" in capsys.readouterr().out
    assert check_refs.main(["--matrix", str(path), "--mirror", "nccl", "--output", "-"]) == 2
