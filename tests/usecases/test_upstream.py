"""factory.usecases.upstream and `factory upstream check` / `factory outdated`, against a real local index.

The index is tests/pypi_server.py serving what was recorded from PyPI (tests/fixtures/pypi/upstream/,
by record_upstream.py, plus the METADATA recorded for test_pypi.py). No mocks: every request goes over
a socket. The one online test (``-m online``) reads the real index.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

from factory.adapters.index import NotInCache, PackageIndex
from factory.adapters.index.cache import Cache
from factory.core.errors import InputError
from factory.core.matrix import Rule, load
from factory.core.resolve import resolve
from factory.usecases.upstream import (
    Deviation,
    cuda_majors,
    outdated,
    source_release,
    spec_text,
    upstream_check,
    upstream_rules,
    wheel_availability,
)
from tests.conftest import SHIPPED, SMALL
from tests.pypi_server import FIXTURES, PyPIServer, standin_wheel

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = FIXTURES / "upstream"


# -- the index and the CLI ------------------------------------------------------------------------


#: The files PyPI lists (filename, size, upload time; read on 2026-11-22) of what the shipped wheel-mode base
#: 2.14.0-cu130 and tag 0.33.0-t5 install besides the recorded pages: the cp312 Linux wheels of torchvision,
#: torchaudio and ray, and NCCL's wheels. Only their names matter to `wheel_availability`.
WHEEL_MODE_PAGES = {
    "torchvision": [("torchvision-0.29.0-cp312-cp312-manylinux_2_28_aarch64.whl", 7586112, "2026-09-02T13:47:05Z"),
                    ("torchvision-0.29.0-cp312-cp312-manylinux_2_28_x86_64.whl", 7430773, "2026-09-02T13:47:07Z")],
    "torchaudio": [("torchaudio-2.11.0-cp312-cp312-manylinux_2_28_aarch64.whl", 1626670, "2026-03-23T18:13:42Z"),
                   ("torchaudio-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl", 1771992, "2026-03-23T18:13:33Z")],
    "nvidia-nccl-cu13": [
        ("nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_aarch64.whl", 215983881, "2026-06-09T03:23:15Z"),
        ("nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_x86_64.whl", 215965170, "2026-06-09T03:23:39Z")],
    "ray": [("ray-2.59.0-cp312-cp312-manylinux2014_aarch64.whl", 77850115, "2026-10-02T07:03:12Z"),
            ("ray-2.59.0-cp312-cp312-manylinux2014_x86_64.whl", 78870190, "2026-10-02T07:03:17Z")],
}


def upstream_server() -> PyPIServer:
    """A started server with the upstream fixture pages and every recorded METADATA (both roots)."""
    server = PyPIServer(fixtures=UPSTREAM).start()
    for f in sorted((FIXTURES / "files").glob("*.metadata")):
        server.add(f"/files/{f.name}", f.read_bytes())
    for f in sorted((FIXTURES / "extracted").glob("*.METADATA")):
        wheel = f.name.removesuffix(".METADATA")
        server.add(f"/files/{wheel}", standin_wheel(wheel, f.read_bytes()))
    for project, files in WHEEL_MODE_PAGES.items():
        server.add_project(project, [{"filename": name, "size": size, "upload-time": when}
                                     for name, size, when in files])
    return server


@pytest.fixture
def cache(tmp_path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture
def index(server, cache):
    with PackageIndex(server.index_url, cache=cache, retries=0, timeout=5) as ix:
        yield ix


@pytest.fixture
def xdg_cache(tmp_path, monkeypatch) -> Path:
    """The CLI's Cache() lives in a temp folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def factory_main(argv: list[str]) -> int:
    """`factory ARGV`: through factory.cli.main once the lead has wired upstream_cli, else a small harness."""
    from factory.cli import main as cli
    from factory.cli import upstream as upstream_cli
    from factory.core.errors import FactoryError

    cli._parser()
    if "upstream" in cli.COMMANDS:
        return cli.main(argv)
    parser = cli._Parser(prog="factory")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matrix", default="matrix.toml")
    sub = parser.add_subparsers(dest="command", parser_class=cli._Parser)
    commands = {}

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    def command(name: str):
        def register(func):
            commands[name] = func
            return func

        return register

    upstream_cli.register(sub, add, command, cli._index_options)
    try:
        args = parser.parse_args(argv)
        return commands[args.command](args)
    except FactoryError as exc:
        print(f"factory: {exc}", file=sys.stderr)
        return exc.exit_code


def _without_waiver(text: str, tag: str, rule: str) -> str:
    """The matrix text with `rule`'s waiver removed from `tag`'s allow list."""
    start = text.index(f'[image."{tag}"]')
    end = text.index("\n[", start + 1)
    block = text[start:end]
    changed = re.sub(rf'  \{{ rule = "{re.escape(rule)}", reason = "[^"]*" \}},\n', "", block, count=1)
    assert changed != block, (tag, rule)
    return text[:start] + changed + text[end:]


# -- rules -------------------------------------------------------------------------------------------


def test_upstream_rules_are_the_shipped_rules_read_from_the_wheels(index):
    """Every shipped vllm-*/torch-* rule was written from upstream: the METADATA says exactly the same."""
    loaded = load(SHIPPED)
    rules = {r.id: r for r in upstream_rules(loaded, index=index)}
    shipped = {r.id: r for r in loaded.matrix.rule if r.id.startswith(("vllm-", "torch-"))}
    assert set(rules) == {f"upstream/{rid}" for rid in shipped}
    for rid, rule in shipped.items():
        mine = rules[f"upstream/{rid}"]
        assert mine.when == rule.when and mine.require == rule.require, rid
        assert mine.severity == "error"
    torch = rules["upstream/vllm-0.15.0/torch"]
    assert torch.reason == ("vLLM 0.15.0 wheel METADATA declares torch==2.9.1, torchvision==0.24.1, "
                            "torchaudio==2.9.1")
    assert torch.source == index.index_url.removesuffix("simple/") + \
        "files/vllm-0.15.0-cp38-abi3-manylinux_2_31_aarch64.whl"
    assert rules["upstream/vllm-0.33.0/transformers"].reason.endswith("declares transformers>=5.16.1,<5.21.0")
    assert rules["upstream/vllm-0.13.0/flashinfer"].require == {"flashinfer": "==0.5.3"}


def test_torch_triton_rule_says_which_platform_it_came_from(index):
    rules = {r.id: r for r in upstream_rules(load(SHIPPED), index=index)}
    x86 = rules["upstream/torch-2.10.0/triton"]
    assert x86.require == {"triton": "==3.6.0"}
    assert "for x86_64 only" in x86.reason and "aarch64 wheel declares no Triton" in x86.reason
    assert x86.source.endswith("torch-2.10.0-cp312-cp312-manylinux_2_28_aarch64.whl")
    arm = rules["upstream/torch-2.14.0/triton"]
    assert arm.require == {"triton": "~=3.8.0"}
    assert arm.reason == "torch 2.14.0 aarch64 wheel METADATA declares triton~=3.8.0"


def test_vllm_without_aarch64_wheel_falls_back_to_x86_64(index, write_matrix):
    path = write_matrix(SMALL.replace('"0.17.0"', '"0.9.2"').replace("0.17.0-t", "0.9.2-t")
                        .replace("vllm-0.17.0/", "vllm-0.9.2/"))
    rules = {r.id: r for r in upstream_rules(load(path), index=index)}
    torch = rules["upstream/vllm-0.9.2/torch"]
    assert torch.require == {"torch": "==2.7.0", "torchvision": "==0.22.0", "torchaudio": "==2.7.0"}
    assert "read from its x86_64 wheel: no aarch64 wheel" in torch.reason
    assert torch.source.endswith("vllm-0.9.2-cp38-abi3-manylinux1_x86_64.whl")
    assert rules["upstream/vllm-0.9.2/transformers"].require == {"transformers": ">=4.51.1"}
    assert "upstream/vllm-0.9.2/flashinfer" not in rules  # 0.9.2 declares no flashinfer-python


def test_rules_of_selected_tags_read_only_their_releases(server, index):
    rules = upstream_rules(load(SHIPPED), index=index, tags=["0.33.0-t5"])
    assert {r.id for r in rules} == {"upstream/vllm-0.33.0/torch", "upstream/vllm-0.33.0/flashinfer",
                                     "upstream/vllm-0.33.0/transformers", "upstream/torch-2.14.0/triton"}
    wheels = {r.path.rsplit("/", 1)[-1].removesuffix(".metadata") for r in server.requests_to("/files/")}
    assert wheels == {"vllm-0.33.0-cp38-abi3-manylinux_2_28_aarch64.whl",
                      "torch-2.14.0-cp312-cp312-manylinux_2_28_aarch64.whl"}


def test_spec_text_and_source_release():
    assert spec_text("<5,>=4.56.0") == ">=4.56.0,<5"
    assert spec_text("!=5.1,<6,>=5") == ">=5,<6,!=5.1"
    assert spec_text("~=3.8.0") == "~=3.8.0"
    assert source_release("upstream/vllm-0.15.0/torch") == "vllm 0.15.0"
    assert source_release("upstream/torch-2.10.0/triton") == "torch 2.10.0"


# -- waivers of X cover upstream/X (factory/core/resolve.py) ----------------------------------------------


def _upstream(rule_id: str, **require: str) -> Rule:
    return Rule(id=f"upstream/{rule_id}", when={"vllm": "==0.17.0"}, require=require,
                reason="from the wheel", source="https://example.invalid/wheel")


def test_waiver_of_a_rule_also_waives_its_upstream_twin(write_matrix):
    loaded = load(write_matrix(SMALL))
    twin = _upstream("vllm-0.17.0/transformers", transformers=">=4.56.0,<5")
    r = resolve(loaded, [twin])
    assert r.ok and not r.warnings
    assert {(v.tag, v.rule) for v in r.waived} == {("0.17.0-t5", "vllm-0.17.0/transformers"),
                                                   ("0.17.0-t5", "upstream/vllm-0.17.0/transformers")}
    assert all(v.waiver.reason.startswith("the -t5 variant") for v in r.waived)


def test_waiver_naming_only_an_upstream_rule_is_known_and_used(write_matrix):
    # no matrix rule vllm-0.17.0/flashinfer: the waiver names a rule only upstream declares
    text = SMALL.replace('transformers = "5.3.0"\nallow = [',
                         'transformers = "5.3.0"\nallow = [{ rule = "vllm-0.17.0/flashinfer", '
                         'reason = "FlashInfer 0.6.4 kept on purpose" }, ')
    loaded = load(write_matrix(text))
    rule = _upstream("vllm-0.17.0/flashinfer", flashinfer="==0.6.5")
    r = resolve(loaded, [rule])
    assert [(v.tag, v.rule) for v in r.blocking] == [("0.17.0-t4", "upstream/vllm-0.17.0/flashinfer")]
    assert ("0.17.0-t5", "upstream/vllm-0.17.0/flashinfer") in {(v.tag, v.rule) for v in r.waived}
    assert not [v for v in r.violations if v.rule.startswith("builtin/waiver")]
    # without the upstream rules the same waiver names nothing
    assert "builtin/waiver-unknown" in {v.rule for v in resolve(loaded).blocking}


def test_unused_waiver_is_still_flagged_with_upstream_rules(write_matrix):
    text = SMALL.replace('transformers = "4.57.6"',
                         'transformers = "4.57.6"\nallow = [{ rule = "vllm-0.17.0/transformers", '
                         'reason = "not actually needed here" }]')
    r = resolve(load(write_matrix(text)), [_upstream("vllm-0.17.0/transformers", transformers=">=4.56.0,<5")])
    assert [(v.tag, v.rule) for v in r.warnings] == [("0.17.0-t4", "builtin/waiver-unused")]


def test_an_upstream_waiver_does_not_cover_the_matrix_rule(write_matrix):
    text = SMALL.replace('allow = [{ rule = "vllm-0.17.0/transformers"',
                         'allow = [{ rule = "upstream/vllm-0.17.0/transformers"')
    r = resolve(load(write_matrix(text)), [_upstream("vllm-0.17.0/transformers", transformers=">=4.56.0,<5")])
    assert [v.rule for v in r.blocking] == ["vllm-0.17.0/transformers"]
    assert [v.rule for v in r.waived] == ["upstream/vllm-0.17.0/transformers"]


# -- upstream check ----------------------------------------------------------------------------------


def test_check_shipped_matrix_every_deviation_is_waived(index):
    loaded = load(SHIPPED)
    deviations = upstream_check(loaded, index=index)
    assert deviations and all(isinstance(d, Deviation) and d.waived and d.waiver_reason for d in deviations)
    assert not [d for d in deviations if d.tag == "0.33.0-t5"], "0.33.0-t5 follows upstream exactly"
    # exactly the deviations the matrix's own (upstream-derived) rules find, each under its upstream id
    own = {(v.tag, f"upstream/{v.rule}", v.component) for v in resolve(loaded).waived
           if v.rule.startswith(("vllm-", "torch-"))}
    assert {(d.tag, d.rule_id, d.component) for d in deviations} == own
    by = {(d.tag, d.component): d for d in deviations}
    torch = by[("0.13.0-t4", "torch")]
    assert (torch.matrix_value, torch.requirement, torch.source_release) == ("2.9.1", "torch==2.9.0", "vllm 0.13.0")
    assert (torch.rule_id, torch.waiver_rule) == ("upstream/vllm-0.13.0/torch", "vllm-0.13.0/torch")
    assert torch.waiver_reason.startswith("torch 2.9.1 is built from source for sm_121")
    triton = by[("0.15.0-t4", "triton")]
    assert (triton.matrix_value, triton.requirement, triton.source_release) == \
        ("3.5.1", "triton==3.6.0", "torch 2.10.0")
    t5 = by[("0.17.0-t5", "transformers")]
    assert (t5.matrix_value, t5.requirement) == ("5.3.0", "transformers>=4.56.0,<5")
    assert ("0.17.0-t4", "torch") not in by  # 0.17.0 runs the torch it declares


def test_check_removing_a_waiver_reports_it_not_waived(index, shipped_matrix):
    text = shipped_matrix.read_text()
    shipped_matrix.write_text(_without_waiver(text, "0.17.0-t4", "vllm-0.17.0/flashinfer"))
    deviations = upstream_check(load(shipped_matrix), index=index)
    [bad] = [d for d in deviations if not d.waived]
    assert (bad.tag, bad.component, bad.matrix_value, bad.requirement, bad.waiver_rule) == \
        ("0.17.0-t4", "flashinfer", "0.6.5", "flashinfer==0.6.4", "vllm-0.17.0/flashinfer")
    assert bad.waiver_reason is None


def test_cli_upstream_check_shipped_exits_0(server, xdg_cache, capsys):
    assert factory_main(["upstream", "check", "--matrix", str(SHIPPED), "--index-url", server.index_url]) == 0
    out = capsys.readouterr().out
    assert "NOT WAIVED" not in out and out.rstrip().splitlines()[-1].startswith("OK: ")
    header = out.splitlines()[0].split()
    assert header == ["tag", "component", "matrix", "upstream", "declared", "by", "status", "reason"]
    row = next(line for line in out.splitlines() if line.startswith("0.13.0-t4") and " torch " in line)
    assert re.search(r"0\.13\.0-t4\s+torch\s+2\.9\.1\s+torch==2\.9\.0\s+vllm 0\.13\.0\s+waived\s+torch 2\.9\.1 is "
                     "built from source", row), row
    assert "0.33.0-t5" not in out


def test_cli_upstream_check_removed_waiver_exits_1_naming_it(server, xdg_cache, shipped_matrix, capsys):
    shipped_matrix.write_text(_without_waiver(shipped_matrix.read_text(), "0.16.0-t5", "vllm-0.16.0/transformers"))
    argv = ["upstream", "check", "--matrix", str(shipped_matrix), "--index-url", server.index_url]
    assert factory_main(argv) == 1
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if "NOT WAIVED" in line and not line.startswith("FAILED")]
    assert row.startswith("0.16.0-t5") and "no waiver of vllm-0.16.0/transformers" in row
    assert "transformers>=4.56.0,<5" in row and "5.3.0" in row
    assert "FAILED: 1 of" in out
    # --json says the same
    assert factory_main([*argv, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    [bad] = [d for d in doc["deviations"] if not d["waived"]]
    assert bad["rule_id"] == "upstream/vllm-0.16.0/transformers" and bad["waiver_rule"] == "vllm-0.16.0/transformers"


def test_cli_upstream_check_selected_tags(server, xdg_cache, capsys):
    base = ["upstream", "check", "--index-url", server.index_url, "--json"]
    assert factory_main([*base, "--matrix", str(SHIPPED), "0.33.0-t5"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "ok": True, "deviations": [],
        "wheels": {"bases_checked": ["2.14.0-cu130"], "tags_checked": ["0.33.0-t5"], "problems": []}}
    assert factory_main([*base, "--matrix", str(SHIPPED), "0.17.0-t4", "0.15.0-t4"]) == 0
    tags = {d["tag"] for d in json.loads(capsys.readouterr().out)["deviations"]}
    assert tags == {"0.17.0-t4", "0.15.0-t4"}


def test_cli_upstream_check_bad_input_and_failures_are_one_line(server, xdg_cache, capsys):
    matrix = ["--matrix", str(SHIPPED)]
    assert factory_main(["upstream", "check", *matrix, "--index-url", server.index_url, "0.33.0-t6"]) == 2
    assert "no tag '0.33.0-t6' in the matrix (did you mean 0.33.0-t5" in capsys.readouterr().err
    assert factory_main(["upstream", "check", *matrix, "--index-url", "ftp://example.invalid/simple"]) == 2
    assert "is not an http(s) URL" in capsys.readouterr().err
    assert factory_main(["upstream", *matrix]) == 2
    assert "factory upstream check" in capsys.readouterr().err
    server.fail("/simple/vllm/", status=403)
    assert factory_main(["upstream", "check", *matrix, "--index-url", server.index_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("factory: ") and "403 Forbidden" in err and len(err.strip().splitlines()) == 1


def test_cli_matrix_option_before_or_after_check(server, xdg_cache, shipped_matrix, capsys):
    shipped_matrix.write_text(_without_waiver(shipped_matrix.read_text(), "0.17.0-t4", "vllm-0.17.0/flashinfer"))
    index = ["--index-url", server.index_url, "0.17.0-t4"]
    assert factory_main(["upstream", "--matrix", str(shipped_matrix), "check", *index]) == 1
    assert factory_main(["upstream", "check", "--matrix", str(shipped_matrix), *index]) == 1
    assert factory_main(["upstream", "check", "--matrix", str(SHIPPED), *index]) == 0
    capsys.readouterr()


def test_factory_check_upstream_uses_these_rules(server, xdg_cache, shipped_matrix, capsys):
    """`factory check --upstream` (factory/cli/main.py) with the waiver of X covering upstream/X."""
    from factory.cli.main import main

    assert main(["check", "--upstream", "--matrix", str(SHIPPED), "--index-url", server.index_url]) == 0
    out = capsys.readouterr().out
    assert "[upstream/vllm-0.13.0/torch]" in out and out.rstrip().splitlines()[-1].startswith("OK:")
    shipped_matrix.write_text(_without_waiver(shipped_matrix.read_text(), "0.17.0-t4", "vllm-0.17.0/flashinfer"))
    assert main(["check", "--upstream", "--matrix", str(shipped_matrix), "--index-url", server.index_url,
                 "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    blocking = {(v["tag"], v["rule"]) for v in doc["violations"] if not v["waived"] and v["severity"] == "error"}
    assert blocking == {("0.17.0-t4", "vllm-0.17.0/flashinfer"), ("0.17.0-t4", "upstream/vllm-0.17.0/flashinfer")}


# -- outdated ----------------------------------------------------------------------------------------


def test_outdated_lists_newer_final_releases_with_dates(index):
    found = outdated(load(SHIPPED), index=index)
    got = [(o.project, o.newest_known, o.version, o.uploaded.date().isoformat()) for o in found]
    assert got == [
        ("torch", "2.14.0", "2.14.1", "2026-09-30"),
        ("torch", "2.14.0", "2.15.0", "2026-10-28"),
        ("triton", "3.8.0", "3.9.0", "2026-10-27"),
        ("transformers", "5.20.2", "5.21.0", "2026-10-26"),
        ("transformers", "5.20.2", "5.21.1", "2026-10-29"),
        ("transformers", "5.20.2", "5.22.0", "2026-10-29"),
        ("transformers", "5.20.2", "5.22.1", "2026-10-30"),
        ("transformers", "5.20.2", "5.22.2", "2026-11-06"),
        ("transformers", "5.20.2", "5.23.0", "2026-11-13"),
    ]  # in registry order; vllm 0.33.0 and flashinfer-python 0.7.2.post1 are the newest releases


def test_outdated_skips_yanked_and_pre_releases(server, index):
    page = json.loads((UPSTREAM / "simple" / "flashinfer-python.json").read_text())
    files = [{k: v for k, v in f.items() if k != "url"} for f in page["files"]]
    files += [
        {"filename": "flashinfer_python-0.7.3rc1-py3-none-any.whl", "upload-time": "2026-11-20T00:00:00Z"},
        {"filename": "flashinfer_python-0.7.3-py3-none-any.whl", "upload-time": "2026-11-21T00:00:00Z",
         "yanked": "broken wheel"},
        {"filename": "flashinfer_python-0.7.3.post1-py3-none-any.whl", "upload-time": "2026-11-22T00:00:00Z"},
    ]
    server.add_project("flashinfer-python", files)
    found = [(o.project, o.version) for o in outdated(load(SHIPPED), index=index, components=["flashinfer"])]
    assert found == [("flashinfer-python", "0.7.3.post1")]


def test_cli_outdated(server, xdg_cache, capsys):
    argv = ["outdated", "--matrix", str(SHIPPED), "--index-url", server.index_url]
    assert factory_main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["project", "matrix", "newest", "newer", "release", "uploaded"]
    assert re.search(r"^transformers\s+5\.20\.2\s+5\.23\.0\s+2026-11-13$", out, re.M), out
    assert re.search(r"^torch\s+2\.14\.0\s+2\.15\.0\s+2026-10-28$", out, re.M), out
    assert factory_main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"component": "triton", "project": "triton", "newest_known": "3.8.0", "version": "3.9.0",
            "uploaded": "2026-10-27T18:39:01+00:00"} in doc


# -- offline and the cache ---------------------------------------------------------------------------


def test_offline_after_one_online_run_makes_no_requests(server, cache):
    loaded = load(SHIPPED)
    with PackageIndex(server.index_url, cache=cache, retries=0) as online:
        rules = upstream_rules(loaded, index=online)
        deviations = upstream_check(loaded, index=online)
        newer = outdated(loaded, index=online)
    assert server.count() > 0
    server.reset_log()
    with PackageIndex(server.index_url, cache=cache, offline=True) as offline:
        assert upstream_rules(loaded, index=offline) == rules
        assert upstream_check(loaded, index=offline) == deviations
        assert outdated(loaded, index=offline) == newer
    assert server.count() == 0


def test_cli_offline_after_one_online_run(server, xdg_cache, capsys):
    common = ["--matrix", str(SHIPPED), "--index-url", server.index_url]
    assert factory_main(["upstream", "check", *common, "--offline"]) == 1
    err = capsys.readouterr().err
    assert "offline, and" in err and "run it once without --offline" in err
    assert server.count() == 0
    assert factory_main(["upstream", "check", *common]) == 0
    assert factory_main(["outdated", *common]) == 0
    online = capsys.readouterr().out
    server.reset_log()
    assert factory_main(["upstream", "check", *common, "--offline"]) == 0
    assert factory_main(["outdated", *common, "--offline"]) == 0
    assert capsys.readouterr().out == online
    assert server.count() == 0
    assert xdg_cache.is_dir()


def test_offline_without_cache_fails_clearly(server, cache):
    with PackageIndex(server.index_url, cache=cache, offline=True) as ix, pytest.raises(NotInCache):
        upstream_rules(load(SHIPPED), index=ix)
    assert server.count() == 0



# -- wheel availability (wheel-mode bases and tags against the index) --------------------------------

WHEEL_MATRIX = """\
schema = 1

[base."{base}"]
mode = "{base_mode}"
cuda = "{cuda}"
nccl = "2.30.7"
torch = "{torch}"
torchvision = "0.29.0"
torchaudio = "2.11.0"

[image."0.33.0-t5"]
base = "{base}"
mode = "{image_mode}"
vllm = "0.33.0"
triton = "{triton}"
flashinfer = "0.7.2.post1"
transformers = "5.20.2"
ray = "2.59.0"
"""

#: What torch 2.14.0's aarch64 wheel really declares for Linux (tests/fixtures/pypi/upstream/extracted/).
TORCH_CUDA13 = ('cuda-toolkit[cublas,cudart,cufft,nvrtc]==13.0.3; platform_system == "Linux"',
                'nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"',
                'nvidia-nccl-cu13==2.30.7; platform_system == "Linux"',
                'triton~=3.8.0; platform_system == "Linux" and python_version < "3.15"')
#: What torch 2.9.1's wheels declare: CUDA libraries for x86_64 only, so its aarch64 wheel is CPU-only.
TORCH_CPU_ON_ARM = ('nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux" and platform_machine == "x86_64"',
                    'nvidia-cublas-cu12==12.8.4.1; platform_system == "Linux" and platform_machine == "x86_64"',
                    'triton==3.5.1; platform_system == "Linux" and platform_machine == "x86_64"')
#: A torch built against CUDA 12 for every Linux machine.
TORCH_CUDA12 = ('nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux"',
                'nvidia-cublas-cu12==12.8.4.1; platform_system == "Linux"',
                'nvidia-nccl-cu12==2.27.5; platform_system == "Linux"')


def wheel_matrix(write_matrix, *, base: str = "2.14.0-cu130", base_mode: str = "wheels", cuda: str = "13.0.3",
                 torch: str = "2.14.0", image_mode: str = "wheels", triton: str = "3.8.0") -> Path:
    return write_matrix(WHEEL_MATRIX.format(base=base, base_mode=base_mode, cuda=cuda, torch=torch,
                                            image_mode=image_mode, triton=triton))


def _meta(filename: str, requires: tuple[str, ...]) -> bytes:
    name, version = filename.split("-")[:2]
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "Requires-Python: >=3.10",
             "Requires-Dist: filelock", *(f"Requires-Dist: {r}" for r in requires)]
    return ("\n".join(lines) + "\n\nbuilt by tests/usecases/test_upstream.py\n").encode()


def torch_wheel(filename: str, requires: tuple[str, ...], *, size: int, pep658: bool = True) -> dict:
    """A real (small) torch wheel with this METADATA, listed with the size of a real one; with or without
    its PEP 658 .metadata file (without it the client reads the METADATA out of the wheel by range)."""
    meta = _meta(filename, requires)
    entry = {"filename": filename, "size": size, "body": standin_wheel(filename, meta)}
    if pep658:
        entry |= {"metadata": meta, "core-metadata": True}
    return entry


def listed(*filenames: str) -> list[dict]:
    return [{"filename": name} for name in filenames]


def serve_wheel_mode(server: PyPIServer, *, torch: list[dict] | None = None) -> None:
    """Everything the wheel matrix installs, as PyPI publishes it; tests then replace one project's page."""
    server.add_project("torch", torch or [
        torch_wheel("torch-2.14.0-cp312-cp312-manylinux_2_28_aarch64.whl", TORCH_CUDA13, size=454010251),
        {"filename": "torch-2.14.0-cp312-cp312-manylinux_2_28_x86_64.whl", "size": 554620488}])
    server.add_project("torchvision", listed("torchvision-0.29.0-cp312-cp312-manylinux_2_28_aarch64.whl",
                                             "torchvision-0.29.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    server.add_project("torchaudio", listed("torchaudio-2.11.0-cp312-cp312-manylinux_2_28_aarch64.whl",
                                            "torchaudio-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    server.add_project("nvidia-nccl-cu13", listed("nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_aarch64.whl",
                                                  "nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_x86_64.whl"))
    server.add_project("vllm", listed("vllm-0.33.0-cp38-abi3-manylinux_2_28_aarch64.whl",
                                      "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl", "vllm-0.33.0.tar.gz"))
    server.add_project("triton", listed("triton-3.8.0-cp312-cp312-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
                                        "triton-3.8.0-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"))
    server.add_project("flashinfer-python", listed("flashinfer_python-0.7.2.post1-py3-none-any.whl",
                                                   "flashinfer_python-0.7.2.post1.tar.gz"))
    server.add_project("transformers", listed("transformers-5.20.2-py3-none-any.whl", "transformers-5.20.2.tar.gz"))
    server.add_project("ray", listed("ray-2.59.0-cp312-cp312-manylinux2014_aarch64.whl",
                                     "ray-2.59.0-cp312-cp312-manylinux2014_x86_64.whl"))


@pytest.fixture
def wheel_server():
    with PyPIServer(fixtures=None) as srv:
        serve_wheel_mode(srv)
        yield srv


@pytest.fixture
def wheel_index(wheel_server, cache):
    with PackageIndex(wheel_server.index_url, cache=cache, retries=0, timeout=5) as ix:
        yield ix


def test_wheel_mode_base_with_cuda13_torch_and_its_tag_are_accepted(wheel_server, wheel_index, write_matrix):
    result = wheel_availability(load(wheel_matrix(write_matrix)), index=wheel_index)
    assert (result.bases, result.tags, result.problems) == (("2.14.0-cu130",), ("0.33.0-t5",), ())
    assert result.ok
    # every component was looked up, and torch's METADATA was read to see its CUDA build
    pages = {r.path for r in wheel_server.requests_to("/simple/")}
    assert pages == {f"/simple/{p}/" for p in ("torch", "torchvision", "torchaudio", "nvidia-nccl-cu13", "vllm",
                                               "triton", "flashinfer-python", "transformers", "ray")}
    assert wheel_server.count("/files/torch-2.14.0-cp312-cp312-manylinux_2_28_aarch64.whl.metadata") == 1


def test_wheel_mode_base_whose_torch_aarch64_wheel_is_cpu_only_is_refused(wheel_server, wheel_index,
                                                                           write_matrix):
    # torch 2.9.1 as PyPI publishes it: CUDA libraries for x86_64 only; the wheel is read by range requests
    wheel_server.add_project("torch", [
        torch_wheel("torch-2.9.1-cp312-cp312-manylinux_2_28_aarch64.whl", TORCH_CPU_ON_ARM, size=104126592,
                    pep658=False),
        {"filename": "torch-2.9.1-cp312-cp312-manylinux_2_28_x86_64.whl", "size": 899742281}])
    loaded = load(wheel_matrix(write_matrix, base="2.9.1-cu130", cuda="13.0.2", torch="2.9.1"))
    result = wheel_availability(loaded, index=wheel_index)
    [problem] = result.problems
    assert problem.reason == ("base 2.9.1-cu130 is mode wheels but torch 2.9.1 has no aarch64 wheel that is a "
                              "CUDA build (its aarch64 wheel is CPU-only)")
    assert (problem.kind, problem.name, problem.component, problem.version, problem.problem) == \
        ("base", "2.9.1-cu130", "torch", "2.9.1", "cpu-only")
    assert problem.tags == ("0.33.0-t5",)
    assert problem.source == wheel_server.file_url("torch-2.9.1-cp312-cp312-manylinux_2_28_aarch64.whl")
    assert [r.range for r in wheel_server.requests_to("/files/torch-2.9.1") if r.range]  # read out of the wheel
    assert result.tags == ("0.33.0-t5",)  # the image itself is fine


def test_big_torch_wheel_without_cuda_requirements_counts_as_a_cuda_build(wheel_server, wheel_index, write_matrix):
    """A wheel that bundles its CUDA libraries declares none: judged by size, as PackageIndex does."""
    wheel_server.add_project("torch", [torch_wheel("torch-2.14.0-cp312-cp312-manylinux_2_28_aarch64.whl", (),
                                                   size=454010251)])
    assert wheel_availability(load(wheel_matrix(write_matrix)), index=wheel_index).problems == ()
    wheel_server.add_project("torch", [torch_wheel("torch-2.14.0-cp312-cp312-manylinux_2_28_aarch64.whl", (),
                                                   size=104126592)])
    with PackageIndex(wheel_server.index_url, retries=0, timeout=5) as fresh:
        [problem] = wheel_availability(load(wheel_matrix(write_matrix)), index=fresh).problems
    assert problem.problem == "cpu-only"


def test_wheel_mode_base_whose_torch_pulls_another_cuda_major_is_refused(wheel_server, wheel_index, write_matrix):
    wheel_server.add_project("torch", [
        torch_wheel("torch-2.14.0-cp312-cp312-manylinux_2_28_aarch64.whl", TORCH_CUDA12, size=904010251)])
    result = wheel_availability(load(wheel_matrix(write_matrix)), index=wheel_index)
    [problem] = result.problems
    assert (problem.component, problem.problem) == ("torch", "cuda-mismatch")
    assert problem.reason == (
        "base 2.14.0-cu130 is mode wheels but torch 2.14.0 pulls CUDA 12 libraries (its aarch64 wheel requires "
        "nvidia-cuda-runtime-cu12==12.8.90, nvidia-cublas-cu12==12.8.4.1), not the base's CUDA 13 "
        "(cuda = 13.0.3)")
    assert problem.required == "a torch 2.14.0 built for CUDA 13"


def test_cuda_major_of_a_base_on_cuda_12_is_checked_against_torch_pulling_13(wheel_server, wheel_index,
                                                                             write_matrix):
    wheel_server.add_project("nvidia-nccl-cu12", listed("nvidia_nccl_cu12-2.30.7-py3-none-manylinux_2_18_aarch64.whl"))
    loaded = load(wheel_matrix(write_matrix, base="2.14.0-cu128", cuda="12.8.1"))
    [problem] = wheel_availability(loaded, index=wheel_index).problems
    assert problem.problem == "cuda-mismatch"
    assert "pulls CUDA 13 libraries (its aarch64 wheel requires cuda-toolkit==13.0.3, nvidia-cudnn-cu13==9.24.0.43)" \
        in problem.reason and problem.reason.endswith("not the base's CUDA 12 (cuda = 12.8.1)")
    # NCCL comes as nvidia-nccl-cu<the base's CUDA major>
    assert wheel_server.count("/simple/nvidia-nccl-cu12/") == 1 and wheel_server.count("/simple/nvidia-nccl-cu13/") == 0


def test_cuda_majors_reads_suffixes_and_toolkit_pins():
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in ("cuda-toolkit[cublas]==13.0.3", "nvidia-cudnn-cu13==9.24.0.43",
                                     "nvidia-cuda-runtime==13.0.48", "nvidia-cufile==1.15.0.42",
                                     "nvidia-nccl-cu12==2.27.5")]
    assert cuda_majors(reqs) == {13: ["cuda-toolkit==13.0.3", "nvidia-cudnn-cu13==9.24.0.43",
                                      "nvidia-cuda-runtime==13.0.48"],
                                 12: ["nvidia-nccl-cu12==2.27.5"]}  # cufile's own version says nothing


def test_wheel_mode_image_component_with_only_x86_64_wheels_is_refused(wheel_server, wheel_index, write_matrix):
    # Triton published no aarch64 wheels before 3.5.0
    wheel_server.add_project("triton", listed(
        "triton-3.4.0-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "triton-3.4.0.tar.gz"))
    result = wheel_availability(load(wheel_matrix(write_matrix, triton="3.4.0")), index=wheel_index)
    [problem] = result.problems
    assert problem.reason == ("tag 0.33.0-t5 is mode wheels but triton 3.4.0 has no aarch64 wheel "
                              "(its wheels are for Linux x86_64 only)")
    assert (problem.kind, problem.name, problem.component, problem.problem, problem.tags) == \
        ("image", "0.33.0-t5", "triton", "no-platform-wheel", ())
    assert problem.source == wheel_server.index_url + "triton/"
    violation = problem.as_violation()
    assert (violation.subject, violation.rule, violation.tag, violation.component, violation.severity) == \
        ('image "0.33.0-t5"', "upstream/wheels/no-platform-wheel", "0.33.0-t5", "triton", "error")
    assert violation.required == "a linux/arm64 wheel of triton 3.4.0"


def test_pure_python_wheels_are_accepted_a_py2_only_one_is_not(wheel_server, wheel_index, write_matrix):
    loaded = load(wheel_matrix(write_matrix))
    # transformers and flashinfer-python ship only py3-none-any wheels (and an sdist): that installs anywhere
    assert wheel_availability(loaded, index=wheel_index).problems == ()
    wheel_server.add_project("transformers", listed("transformers-5.20.2-py2-none-any.whl"))
    with PackageIndex(wheel_server.index_url, retries=0, timeout=5) as fresh:
        [problem] = wheel_availability(loaded, index=fresh).problems
    assert (problem.component, problem.problem) == ("transformers", "no-python-wheel")
    assert problem.detail == "has no aarch64 wheel for CPython 3.12 (its aarch64 wheels are for py2-none)"


@pytest.mark.parametrize(("files", "problem", "detail"), [
    (["ray-2.59.0.tar.gz"], "no-wheel",
     "has no wheel on {index}, only ray-2.59.0.tar.gz (a source build)"),
    (["ray-2.59.0-cp312-cp312-musllinux_1_2_aarch64.whl", "ray-2.59.0-cp312-cp312-manylinux2014_x86_64.whl"],
     "musllinux-only", "has no aarch64 wheel for glibc (only musllinux_1_2_aarch64, which does not install on "
     "Ubuntu 24.04)"),
    (["ray-2.59.0-cp311-cp311-manylinux2014_aarch64.whl", "ray-2.59.0-cp313-cp313-manylinux2014_aarch64.whl"],
     "no-python-wheel", "has no aarch64 wheel for CPython 3.12 (its aarch64 wheels are for cp311-cp311, cp313-cp313)"),
    (["ray-2.59.0-cp312-cp312-manylinux_2_41_aarch64.whl"], "glibc-too-old",
     "has no aarch64 wheel that installs on Ubuntu 24.04's glibc 2.39 (its aarch64 wheels for CPython 3.12 need "
     "glibc 2.41 or newer)"),
    (["ray-2.58.0-cp312-cp312-manylinux2014_aarch64.whl"], "no-release",
     "is not on {index} (no release 2.59.0 of ray)"),
])
def test_why_an_image_wheel_does_not_install(wheel_server, wheel_index, write_matrix, files, problem, detail):
    wheel_server.add_project("ray", listed(*files))
    [found] = wheel_availability(load(wheel_matrix(write_matrix)), index=wheel_index).problems
    assert (found.component, found.project, found.version, found.problem) == ("ray", "ray", "2.59.0", problem)
    assert found.detail == detail.format(index=wheel_server.index_url)


def test_project_missing_from_the_index_is_a_finding(wheel_server, wheel_index, write_matrix):
    wheel_server.remove("/simple/nvidia-nccl-cu13/")
    [problem] = wheel_availability(load(wheel_matrix(write_matrix)), index=wheel_index).problems
    assert problem.reason == (f"base 2.14.0-cu130 is mode wheels but nvidia-nccl-cu13 2.30.7 is not on "
                              f"{wheel_server.index_url} (no project nvidia-nccl-cu13)")


def test_source_mode_bases_and_tags_are_not_checked(wheel_server, wheel_index, write_matrix):
    wheel_server.add_project("torch", listed("torch-2.14.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    wheel_server.add_project("triton", listed("triton-3.8.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    source = load(wheel_matrix(write_matrix, base_mode="source", image_mode="source"))
    assert wheel_availability(source, index=wheel_index) == wheel_availability(source, ["0.33.0-t5"],
                                                                               index=wheel_index)
    assert wheel_availability(source, index=wheel_index).as_dict() == \
        {"bases_checked": [], "tags_checked": [], "problems": []}
    assert wheel_server.count() == 0  # nothing to check: the index is not even asked
    # a wheel-mode tag on a source-mode base: only the tag's own wheels
    [problem] = wheel_availability(load(wheel_matrix(write_matrix, base_mode="source")), index=wheel_index).problems
    assert (problem.kind, problem.component, problem.problem) == ("image", "triton", "no-platform-wheel")
    # a source-mode tag on a wheel-mode base: only the base's
    result = wheel_availability(load(wheel_matrix(write_matrix, image_mode="source")), index=wheel_index)
    assert (result.bases, result.tags) == (("2.14.0-cu130",), ())
    assert [(p.kind, p.component, p.problem) for p in result.problems] == [("base", "torch", "no-platform-wheel")]


def test_torch_index_is_asked_first_with_local_versions(wheel_server, wheel_index, write_matrix):
    """As `uv pip install --extra-index-url TORCH_INDEX_URL`: torch==2.9.1 takes 2.9.1+cu130 from the torch
    index; projects that index does not have come from the main one."""
    wheel_server.add_project("torch", [
        torch_wheel("torch-2.9.1-cp312-cp312-manylinux_2_28_aarch64.whl", TORCH_CPU_ON_ARM, size=104126592)])
    text = wheel_matrix(write_matrix, base="2.9.1-cu130", cuda="13.0.2", torch="2.9.1").read_text()
    with PyPIServer(fixtures=None) as torch_server:
        torch_server.add_project("torch", [
            torch_wheel("torch-2.9.1+cpu-cp312-cp312-manylinux_2_28_aarch64.whl", (), size=104126592),
            torch_wheel("torch-2.9.1+cu130-cp312-cp312-manylinux_2_28_aarch64.whl",
                        ('nvidia-cuda-runtime==13.0.48; platform_system == "Linux"',
                         'nvidia-nccl-cu13==2.27.7; platform_system == "Linux"'), size=1004126592)])
        text = text.replace("schema = 1\n", f'schema = 1\n\n[defaults]\ntorch_index_url = "{torch_server.index_url}"\n')
        loaded = load(write_matrix(text))
        assert wheel_availability(loaded, index=wheel_index).problems == ()
        assert torch_server.count("/files/torch-2.9.1+cu130") == 1 and torch_server.count("/files/torch-2.9.1+cpu") == 0
        assert {r.path for r in torch_server.requests_to("/simple/")} == {
            "/simple/torch/", "/simple/torchvision/", "/simple/torchaudio/", "/simple/nvidia-nccl-cu13/"}
        assert wheel_server.count("/simple/torch/") == 0 and wheel_server.count("/simple/torchvision/") == 1
        # without the torch index, PyPI's CPU-only wheel is what would be installed
        [problem] = wheel_availability(loaded, index=wheel_index, torch_index=wheel_index).problems
        assert problem.problem == "cpu-only"


def test_wheel_availability_offline_after_one_online_run(wheel_server, cache, write_matrix):
    wheel_server.add_project("triton", listed("triton-3.8.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    loaded = load(wheel_matrix(write_matrix))
    with PackageIndex(wheel_server.index_url, cache=cache, offline=True) as offline, pytest.raises(NotInCache):
        wheel_availability(loaded, index=offline)
    assert wheel_server.count() == 0
    with PackageIndex(wheel_server.index_url, cache=cache, retries=0) as online:
        result = wheel_availability(loaded, index=online)
    assert [p.component for p in result.problems] == ["triton"]
    wheel_server.reset_log()
    with PackageIndex(wheel_server.index_url, cache=cache, offline=True) as offline:
        assert wheel_availability(loaded, index=offline) == result
    assert wheel_server.count() == 0


def test_selected_tags_check_their_bases_and_unknown_tags_are_input_errors(wheel_server, wheel_index,
                                                                             write_matrix):
    text = wheel_matrix(write_matrix).read_text() + (
        '\n[base."2.9.1-cu130"]\nmode = "wheels"\ncuda = "13.0.2"\nnccl = "2.30.7"\ntorch = "2.9.1"\n'
        'torchvision = "0.24.1"\ntorchaudio = "2.9.1"\n')
    loaded = load(write_matrix(text))
    result = wheel_availability(loaded, ["0.33.0-t5"], index=wheel_index)
    assert (result.bases, result.tags, result.problems) == (("2.14.0-cu130",), ("0.33.0-t5",), ())
    everything = wheel_availability(loaded, index=wheel_index)  # an unused wheel-mode base is checked too
    assert everything.bases == ("2.14.0-cu130", "2.9.1-cu130")
    assert {(p.name, p.component, p.tags) for p in everything.problems} == {
        ("2.9.1-cu130", c, ()) for c in ("torch", "torchvision", "torchaudio")}
    with pytest.raises(InputError, match="no tag '0.33.0-t6'"):
        wheel_availability(loaded, ["0.33.0-t6"], index=wheel_index)


def wheels_base_2_10(matrix: Path) -> None:
    """Switch the shipped source-mode base 2.10.0-v2-cu131 (tags 0.16.0-t* and 0.17.0-t*) to mode wheels."""
    header = '[base."2.10.0-v2-cu131"]\n'
    matrix.write_text(matrix.read_text().replace(header, header + 'mode = "wheels"\n'))


def test_shipped_wheel_mode_base_and_tag_have_their_wheels(index):
    """The recorded PyPI pages: 2.14.0-cu130's torch is a CUDA 13 build, 0.33.0-t5's wheels all exist."""
    result = wheel_availability(load(SHIPPED), index=index)
    assert (result.bases, result.tags, result.problems) == (("2.14.0-cu130",), ("0.33.0-t5",), ())


def test_shipped_source_base_switched_to_wheels_is_refused_by_the_index(server, index, shipped_matrix):
    """PyPI's real torch 2.10.0 aarch64 METADATA (recorded) pulls no CUDA library: a wheel base cannot work."""
    wheels_base_2_10(shipped_matrix)
    result = wheel_availability(load(shipped_matrix), ["0.17.0-t4"], index=index)
    torch = next(p for p in result.problems if p.component == "torch")
    assert torch.reason == ("base 2.10.0-v2-cu131 is mode wheels but torch 2.10.0 has no aarch64 wheel that is "
                            "a CUDA build (its aarch64 wheel is CPU-only)")
    assert torch.tags == ("0.17.0-t4",)  # the selected tags on it
    assert torch.source.endswith("/files/torch-2.10.0-cp312-cp312-manylinux_2_28_aarch64.whl")


def test_cli_upstream_check_reports_wheel_problems_and_exits_1(server, xdg_cache, shipped_matrix, capsys):
    wheels_base_2_10(shipped_matrix)
    argv = ["upstream", "check", "--matrix", str(shipped_matrix), "--index-url", server.index_url]
    assert factory_main([*argv, "0.17.0-t4"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("tag ")  # the (waived) deviations first, then the wheels
    header = next(line for line in out.splitlines() if line.startswith("mode wheels"))
    assert header.split() == ["mode", "wheels", "component", "problem", "source"]
    row = next(line for line in out.splitlines() if line.startswith("base 2.10.0-v2-cu131") and " torch " in line)
    assert re.search(r"torch\s+torch 2\.10\.0 has no aarch64 wheel that is a CUDA build \(its aarch64 wheel is "
                     r"CPU-only\)\s+http://127\.0\.0\.1:\d+/files/torch-2\.10\.0-cp312", row), row
    assert "FAILED: " in out and "wheel-mode component(s) have no wheel to install (1 base(s) and 0 tag(s)" in out
    assert factory_main([*argv, "0.17.0-t4", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["deviations"] and all(d["waived"] for d in doc["deviations"])
    assert doc["wheels"]["bases_checked"] == ["2.10.0-v2-cu131"] and doc["wheels"]["tags_checked"] == []
    torch = next(p for p in doc["wheels"]["problems"] if p["component"] == "torch")
    assert {k: torch[k] for k in ("kind", "name", "project", "version", "problem", "tags")} == {
        "kind": "base", "name": "2.10.0-v2-cu131", "project": "torch", "version": "2.10.0", "problem": "cpu-only",
        "tags": ["0.17.0-t4"]}
    # the shipped matrix itself: OK, naming what was checked in mode wheels
    assert factory_main(["upstream", "check", "--matrix", str(SHIPPED), "--index-url", server.index_url]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("OK: ") and last.endswith(
        "every wheel-mode component has its wheel (1 base(s) and 1 tag(s) in mode wheels)")


def test_cli_upstream_check_offline_uses_the_cache_for_wheels(server, xdg_cache, shipped_matrix, capsys):
    wheels_base_2_10(shipped_matrix)
    argv = ["upstream", "check", "--matrix", str(shipped_matrix), "--index-url", server.index_url, "--json"]
    assert factory_main(argv) == 1
    online = capsys.readouterr().out
    server.reset_log()
    assert factory_main([*argv, "--offline"]) == 1
    assert capsys.readouterr().out == online
    assert server.count() == 0


def test_factory_check_upstream_reports_wheel_problems_unwaivable(server, xdg_cache, shipped_matrix, capsys):
    from factory.cli.main import main

    wheels_base_2_10(shipped_matrix)
    argv = ["check", "--upstream", "--matrix", str(shipped_matrix), "--index-url", server.index_url]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert 'base "2.10.0-v2-cu131": [upstream/wheels/cpu-only] found mode wheels, torch 2.10.0, required an ' \
           "aarch64 CUDA build of torch 2.10.0" in out
    assert "why: base 2.10.0-v2-cu131 is mode wheels but torch 2.10.0 has no aarch64 wheel that is a CUDA build" in out
    assert main([*argv, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    [cpu] = [v for v in doc["violations"] if v["rule"] == "upstream/wheels/cpu-only"]
    assert (cpu["subject"], cpu["tag"], cpu["component"], cpu["waived"]) == ('base "2.10.0-v2-cu131"', None,
                                                                            "torch", False)
    # the matrix's own rule says the same without the index
    assert {v["tag"] for v in doc["violations"] if v["rule"] == "arm64/torch-wheel-cuda"} == {
        "0.16.0-t4", "0.16.0-t5", "0.17.0-t4", "0.17.0-t5"}


# -- the real index (opt in) -------------------------------------------------------------------------


@pytest.mark.online
def test_online_upstream_rules_match_the_shipped_rules(request, tmp_path):
    if "online" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("talks to the real package index; run with -m online")
    loaded = load(SHIPPED)
    with PackageIndex(cache=Cache(tmp_path / "cache"), retries=2, timeout=60) as ix:
        rules = {r.id: r for r in upstream_rules(loaded, index=ix)}
        deviations = upstream_check(loaded, index=ix)
    for rule in loaded.matrix.rule:
        if rule.id.startswith(("vllm-", "torch-")):
            assert rules[f"upstream/{rule.id}"].require == rule.require, rule.id
    assert deviations and all(d.waived for d in deviations)
