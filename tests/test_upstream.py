"""factory.upstream and `factory upstream check` / `factory outdated`, against a real local index.

The index is tests/pypi_server.py serving what was recorded from PyPI (tests/fixtures/pypi/upstream/,
by record_upstream.py, plus the METADATA recorded for test_pypi.py). No mocks: every request goes over
a socket. The one online test (``-m online``) reads the real index.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from factory.cache import Cache
from factory.matrix import Rule, load
from factory.pypi import NotInCache, PackageIndex
from factory.resolve import resolve
from factory.upstream import (
    Deviation,
    outdated,
    source_release,
    spec_text,
    upstream_check,
    upstream_rules,
)
from tests.conftest import SHIPPED, SMALL
from tests.pypi_server import FIXTURES, PyPIServer, standin_wheel

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = FIXTURES / "upstream"


# -- the index and the CLI ------------------------------------------------------------------------


def upstream_server() -> PyPIServer:
    """A started server with the upstream fixture pages and every recorded METADATA (both roots)."""
    server = PyPIServer(fixtures=UPSTREAM).start()
    for f in sorted((FIXTURES / "files").glob("*.metadata")):
        server.add(f"/files/{f.name}", f.read_bytes())
    for f in sorted((FIXTURES / "extracted").glob("*.METADATA")):
        wheel = f.name.removesuffix(".METADATA")
        server.add(f"/files/{wheel}", standin_wheel(wheel, f.read_bytes()))
    return server


@pytest.fixture
def server():
    srv = upstream_server()
    try:
        yield srv
    finally:
        srv.stop()


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
    """`factory ARGV`: through factory.cli once the lead has wired upstream_cli, else a small harness."""
    from factory import cli, upstream_cli
    from factory.errors import FactoryError

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


# -- waivers of X cover upstream/X (factory/resolve.py) ----------------------------------------------


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
    assert json.loads(capsys.readouterr().out) == {"ok": True, "deviations": []}
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
    """`factory check --upstream` (factory/cli.py) with the waiver of X covering upstream/X."""
    from factory.cli import main

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
        ("transformers", "5.20.2", "5.21.0", "2026-10-26"),
        ("transformers", "5.20.2", "5.21.1", "2026-10-29"),
        ("transformers", "5.20.2", "5.22.0", "2026-10-29"),
        ("transformers", "5.20.2", "5.22.1", "2026-10-30"),
        ("transformers", "5.20.2", "5.22.2", "2026-11-06"),
        ("transformers", "5.20.2", "5.23.0", "2026-11-13"),
        ("triton", "3.8.0", "3.9.0", "2026-10-27"),
        ("torch", "2.14.0", "2.14.1", "2026-09-30"),
        ("torch", "2.14.0", "2.15.0", "2026-10-28"),
    ]  # vllm 0.33.0 and flashinfer-python 0.7.2.post1 are the newest releases


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


def test_modules_do_not_import_httpx_until_they_ask_the_index():
    code = ("import sys, factory.upstream, factory.propose, factory.upstream_cli; "
            "sys.exit('httpx' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    code = ("import sys, io, contextlib; from factory.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    for cmd in (['list'], ['check'], ['plan', '--all']): main([*cmd, '--matrix', 'matrix.toml'])\n"
            "sys.exit('httpx' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


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
