"""factory.usecases.propose and `factory propose`, against the real local index of tests/usecases/test_upstream.py."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from factory.adapters.index import PackageIndex
from factory.adapters.index.cache import Cache
from factory.core.errors import InputError
from factory.core.matrix import load
from factory.core.resolve import resolve
from factory.usecases.propose import Proposal, _transformers_by_major, propose
from factory.usecases.upstream import VllmFacts
from tests.conftest import SHIPPED
from tests.usecases.test_upstream import factory_main


@pytest.fixture
def index(server, tmp_path):
    with PackageIndex(server.index_url, cache=Cache(tmp_path / "cache"), retries=0, timeout=5) as ix:
        yield ix


@pytest.fixture
def xdg_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def drop_table(text: str, header: str, first_key: str | None = None) -> str:
    """`text` without the table whose header line is `header` (and, for [[rule]], whose first key is
    `first_key`): its lines up to the next blank line, comment or header, and one blank line after it."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip("\n") == header and (first_key is None or lines[i + 1].rstrip("\n") == first_key):
            break
    else:
        raise AssertionError(f"no {header} {first_key or ''} in the text")
    end = i + 1
    while end < len(lines) and lines[end].strip() and not lines[end].startswith(("[", "#")):
        end += 1
    if end < len(lines) and not lines[end].strip():
        end += 1
    return "".join(lines[:i] + lines[end:])


def without_release(text: str, vllm: str, *, tags: list[str], bases: list[str] = (), rules: list[str] = ()) -> str:
    for tag in tags:
        text = drop_table(text, f'[image."{tag}"]')
    for base in bases:
        text = drop_table(text, f'[base."{base}"]')
    for suffix in ("torch", "flashinfer", "transformers"):
        text = drop_table(text, "[[rule]]", f'id = "vllm-{vllm}/{suffix}"')
    for rule in rules:
        text = drop_table(text, "[[rule]]", f'id = "{rule}"')
    for tag in tags:  # extra layers built on the dropped tags go with them
        text = text.replace(f'"{tag}", ', "").replace(f', "{tag}"', "")
    return text


@pytest.fixture
def without_033(shipped_matrix) -> Path:
    """The shipped matrix as it was before vLLM 0.33.0: no 0.33.0-t5, its rules or its base."""
    text = without_release(shipped_matrix.read_text(), "0.33.0", tags=["0.33.0-t5"], bases=["2.14.0-cu130"],
                           rules=["torch-2.14.0/triton", "wheels/torch-2.14-nccl"])
    shipped_matrix.write_text(text)
    loaded = load(shipped_matrix)
    assert "0.33.0-t5" not in loaded.matrix.image and "2.14.0-cu130" not in loaded.matrix.base
    assert not [r for r in loaded.matrix.rule if "0.33.0" in r.id or "2.14" in r.id]
    return shipped_matrix


def _comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def _is_subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(any(line == other for other in it) for line in small)


# -- 0.33.0: wheels, a new base ----------------------------------------------------------------------


def test_propose_033_follows_upstream(without_033, index):
    p = propose(load(without_033), "0.33.0", index)
    assert isinstance(p, Proposal) and p.tags == ("0.33.0-t5",)  # >=5.16.1,<5.21.0 allows no 4.x
    [image] = p.images
    assert (image.base, image.mode, image.vllm, image.triton, image.flashinfer, image.transformers) == \
        ("2.14.0-cu130", "wheels", "0.33.0", "3.8.0", "0.7.2.post1", "5.20.2")  # 5.20.2: newest <5.21.0
    assert image.vllm_released == date(2026, 11, 2)
    base = p.base
    assert base.new and (base.name, base.mode) == ("2.14.0-cu130", "wheels")
    assert (base.torch, base.torchvision, base.torchaudio) == ("2.14.0", "0.29.0", "2.11.0")
    # from the aarch64 torch 2.14.0 wheel: cuda-toolkit[...]==13.0.3 and nvidia-nccl-cu13==2.30.7
    assert (base.cuda, base.nccl) == ("13.0.3", "2.30.7")
    assert "cuda-toolkit==13.0.3" in base.comments["cuda"] and "nvidia-nccl-cu13" in base.comments["nccl"]
    assert [r.id for r in p.rules] == ["vllm-0.33.0/torch", "vllm-0.33.0/flashinfer", "vllm-0.33.0/transformers",
                                       "torch-2.14.0/triton"]
    shipped = {r.id: r for r in load(SHIPPED).matrix.rule}
    for rule in p.rules:
        assert (rule.when, rule.require) == (shipped[rule.id].when, shipped[rule.id].require), rule.id
    # what the published 0.33.0-t5 ships, component by component
    published = load(SHIPPED).matrix.image["0.33.0-t5"]
    for key in ("base", "mode", "vllm", "triton", "flashinfer", "transformers", "vllm_released"):
        assert getattr(image, key) == getattr(published, key), key


def test_propose_033_write_keeps_the_file_and_passes_check(without_033, index):
    before = without_033.read_text()
    p = propose(load(without_033), "0.33.0", index)
    p.write(without_033)
    after = without_033.read_text()
    # nothing of the file is lost or reordered; every comment survives
    assert _is_subsequence(before.splitlines(), after.splitlines())
    assert _comments(after) == _comments(before)  # (the new tables' notes are inline comments)
    loaded = load(without_033)
    resolution = resolve(loaded)
    assert resolution.ok, [v.as_dict() for v in resolution.blocking]
    assert not [v for v in resolution.violations if v.tag == "0.33.0-t5"]
    assert loaded.matrix.image["0.33.0-t5"].mode == "wheels"
    assert loaded.matrix.base["2.14.0-cu130"].nccl == "2.30.7"
    # the new tables sit where their kind ends, before the comment that opens the next section
    pos = after.index
    assert pos('[base."2.10.0-v2-cu131"]') < pos('[base."2.14.0-cu130"]') < pos("# vLLM images.")
    assert pos('[image."0.17.0-t5"]') < pos('[image."0.33.0-t5"]') < pos("# Rules. `when` selects tags")
    assert pos('id = "vllm-0.17.0/transformers"') < pos('id = "vllm-0.33.0/torch"') < \
        pos('id = "vllm-0.33.0/transformers"') < pos("# torch's own Triton pin")
    assert pos('id = "torch-2.10.0/triton"') < pos('id = "torch-2.14.0/triton"') < pos("# Platform facts")
    # a TOML reader sees the same tables
    raw = tomllib.loads(after)
    assert raw["image"]["0.33.0-t5"]["transformers"] == "5.20.2"
    assert raw["base"]["2.14.0-cu130"]["cuda"] == "13.0.3"
    # and proposing again finds nothing to add
    with pytest.raises(InputError, match="already in the matrix"):
        propose(loaded, "0.33.0", index)


def test_toml_text_is_what_write_inserts(without_033, index):
    p = propose(load(without_033), "0.33.0", index)
    text = p.toml_text()
    raw = tomllib.loads(text)
    assert list(raw) == ["base", "image", "rule"]
    assert raw["image"]["0.33.0-t5"] == {
        "base": "2.14.0-cu130", "mode": "wheels", "vllm": "0.33.0", "triton": "3.8.0",
        "flashinfer": "0.7.2.post1", "transformers": "5.20.2", "vllm_released": date(2026, 11, 2),
    }
    assert [r["id"] for r in raw["rule"]] == [r.id for r in p.rules]
    assert 'transformers = "5.20.2"  # newest 5.x inside vLLM 0.33.0\'s transformers>=5.16.1,<5.21.0' in text
    assert 'when = { vllm = "==0.33.0" }' in text
    after = p.apply(without_033.read_text())
    for table in ('[base."2.14.0-cu130"]', '[image."0.33.0-t5"]'):
        block = text[text.index(table):].split("\n\n", 1)[0]
        assert block in after
    assert json.loads(json.dumps(p.as_dict(), default=str))["images"][0]["tag"] == "0.33.0-t5"


# -- 0.17.0: source mode on an existing base ---------------------------------------------------------


def test_propose_017_reuses_the_base_with_its_pins(shipped_matrix, index):
    text = without_release(shipped_matrix.read_text(), "0.17.0", tags=["0.17.0-t4", "0.17.0-t5"])
    shipped_matrix.write_text(text)
    p = propose(load(shipped_matrix), "0.17.0", index)
    assert p.tags == ("0.17.0-t4",)  # transformers<5,>=4.56.0: 4.57.6 is the newest 4.x (4.57.0 is yanked)
    [image] = p.images
    assert (image.base, image.mode, image.triton, image.flashinfer, image.transformers) == \
        ("2.10.0-v2-cu131", "source", "3.6.0", "0.6.4", "4.57.6")
    assert not p.base.new and p.base.name == "2.10.0-v2-cu131"  # the last base with torch 2.10.0 pins
    assert [r.id for r in p.rules] == ["vllm-0.17.0/torch", "vllm-0.17.0/flashinfer", "vllm-0.17.0/transformers"]
    assert any("CPU-only" in note for note in p.notes)
    assert "[base." not in p.toml_text() and "mode =" not in p.toml_text()
    p.write(shipped_matrix)
    resolution = resolve(load(shipped_matrix))
    assert resolution.ok, [v.as_dict() for v in resolution.blocking]
    assert _is_subsequence(text.splitlines(), shipped_matrix.read_text().splitlines())


def test_propose_source_base_copies_cuda_and_nccl_from_the_newest_source_base(write_matrix, index):
    path = write_matrix("""\
        schema = 1

        [base."2.9.1-cu130"]
        cuda = "13.0.2"
        nccl = "2.28.9-1"
        torch = "2.9.1"
        torchvision = "0.24.1"
        torchaudio = "2.9.1"

        [image."0.15.0-t4"]
        base = "2.9.1-cu130"
        vllm = "0.15.0"
        triton = "3.5.1"
        flashinfer = "0.6.1"
        transformers = "4.57.6"
        """)
    p = propose(load(path), "0.17.0", index)
    assert p.base.new and (p.base.name, p.base.mode, p.base.cuda, p.base.nccl) == \
        ("2.10.0-cu130", "source", "13.0.2", "2.28.9-1")
    assert "2.9.1-cu130" in p.base.comments["cuda"]
    p.write(path)
    resolution = resolve(load(path))
    assert resolution.ok, [v.as_dict() for v in resolution.blocking]
    assert load(path).matrix.image["0.17.0-t4"].base == "2.10.0-cu130"


def test_insertion_after_a_sub_table_keeps_the_next_sections_comment(write_matrix, index):
    path = write_matrix("""\
        schema = 1

        [base."2.10.0-cu131"]
        cuda = "13.1.0"
        nccl = "2.29.2-1"
        torch = "2.10.0"
        torchvision = "0.25.0"
        torchaudio = "2.10.0"

        # -- images --
        [image."0.16.0-t4"]
        base = "2.10.0-cu131"
        vllm = "0.16.0"
        triton = "3.6.0"
        flashinfer = "0.6.3"
        transformers = "4.57.6"
        allow = [{ rule = "vllm-0.16.0/torch", reason = "torch 2.10.0 is built from source here" }]
        [image."0.16.0-t4".sources.vllm]
        repo = "https://github.com/example/vllm.git"
        ref = "v0.16.0-fix"  # a fork
        # -- rules --
        [[rule]]
        id = "vllm-0.16.0/torch"
        when = { vllm = "==0.16.0" }
        require = { torch = "==2.9.1" }
        reason = "vLLM 0.16.0 declares torch==2.9.1"
        source = "https://pypi.org/project/vllm/0.16.0/"
        # the end
        """)
    before = path.read_text()
    propose(load(path), "0.17.0", index).write(path)
    after = path.read_text()
    assert _is_subsequence(before.splitlines(), after.splitlines())
    assert after.index('ref = "v0.16.0-fix"') < after.index('[image."0.17.0-t4"]') < after.index("# -- rules --")
    assert after.index('id = "vllm-0.16.0/torch"') < after.index('id = "vllm-0.17.0/torch"') < \
        after.index("# the end")
    raw = tomllib.loads(after)
    assert raw["image"]["0.16.0-t4"]["sources"]["vllm"]["ref"] == "v0.16.0-fix"
    assert "sources" not in raw["image"]["0.17.0-t4"]
    assert resolve(load(path)).ok


def test_new_base_name_does_not_clash(without_033, index):
    text = without_033.read_text().replace(
        '[base."2.9.1-cu130"]',
        '[base."2.14.0-cu130"]\nmode = "wheels"\ncuda = "13.0.2"\nnccl = "2.30.7"\ntorch = "2.14.0"\n'
        'torchvision = "0.28.0"\ntorchaudio = "2.11.0"\n\n[base."2.9.1-cu130"]')
    without_033.write_text(text)
    p = propose(load(without_033), "0.33.0", index)
    assert p.base.new and p.base.name == "2.14.0-v2-cu130"


def test_both_majors_when_the_range_allows_them(index):
    facts = VllmFacts(version="9.9.9", wheel=None, released=None,
                      requires={"transformers": Requirement("transformers>=4.56.0,<6")})
    assert _transformers_by_major(index, facts) == {4: "4.57.6", 5: "5.23.0"}
    facts = VllmFacts(version="9.9.9", wheel=None, released=None,
                      requires={"transformers": Requirement("transformers>=5.0.0rc1,<5.1")})
    assert _transformers_by_major(index, facts) == {5: "5.0.0"}  # finals only


# -- bad input -----------------------------------------------------------------------------------------


def test_propose_bad_input(index):
    loaded = load(SHIPPED)
    with pytest.raises(InputError, match="not a vLLM version"):
        propose(loaded, "latest", index)
    with pytest.raises(InputError, match="vLLM 0.99.0 is not on"):
        propose(loaded, "0.99.0", index)
    with pytest.raises(InputError, match=r"already in the matrix \(0.33.0-t5\)"):
        propose(loaded, "0.33.0", index)


def test_write_refuses_a_result_that_is_not_a_matrix(without_033, index):
    p = propose(load(without_033), "0.33.0", index)
    before = without_033.read_text()
    broken = p.__class__(**{**p.__dict__, "images": (p.images[0].__class__(
        **{**p.images[0].__dict__, "transformers": "not a version"}),)})
    with pytest.raises(InputError, match="not a version"):
        broken.write(without_033)
    assert without_033.read_text() == before


# -- the CLI -------------------------------------------------------------------------------------------


def test_cli_propose_prints_then_writes(without_033, server, xdg_cache, capsys):
    argv = ["propose", "0.33.0", "--matrix", str(without_033), "--index-url", server.index_url]
    before = without_033.read_text()
    assert factory_main(argv) == 0
    out = capsys.readouterr().out
    assert '[image."0.33.0-t5"]' in out and '[base."2.14.0-cu130"]' in out
    assert "# transformers: vLLM 0.33.0 declares transformers>=5.16.1,<5.21.0" in out
    assert "not written" in out and "factory check would pass" in out
    assert without_033.read_text() == before
    assert factory_main([*argv, "--write", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["written"] and doc["check_ok"] and doc["images"][0]["transformers"] == "5.20.2"
    assert resolve(load(without_033)).ok
    # after one online run, --offline asks nothing of the index
    server.reset_log()
    assert factory_main(["propose", "0.33.0", "--matrix", str(without_033), "--index-url", server.index_url,
                         "--offline"]) == 2  # already in the matrix now
    assert "already in the matrix" in capsys.readouterr().err
    assert server.count() == 0


def test_cli_propose_offline_after_one_online_run(without_033, server, xdg_cache, capsys):
    argv = ["propose", "0.33.0", "--matrix", str(without_033), "--index-url", server.index_url, "--json"]
    assert factory_main(argv) == 0
    online = json.loads(capsys.readouterr().out)
    server.reset_log()
    assert factory_main([*argv, "--offline"]) == 0
    assert json.loads(capsys.readouterr().out) == online
    assert server.count() == 0


def test_cli_propose_reports_what_check_would_say(without_033, server, xdg_cache, capsys):
    # a matrix rule the proposal cannot know about: the proposal is shown, and the failure named
    text = without_033.read_text() + (
        '\n[[rule]]\nid = "local/old-transformers"\nwhen = { vllm = ">=0.33" }\n'
        'require = { transformers = "<5.20" }\nreason = "a local rule for this test"\nsource = "https://x.invalid"\n')
    without_033.write_text(text)
    argv = ["propose", "0.33.0", "--matrix", str(without_033), "--index-url", server.index_url]
    assert factory_main(argv) == 1
    out = capsys.readouterr().out
    assert "factory check would FAIL: 1 unwaived error(s)" in out and "[local/old-transformers]" in out
    assert without_033.read_text() == text
    assert re.search(r'^transformers = "5\.20\.2"', out, re.M)
