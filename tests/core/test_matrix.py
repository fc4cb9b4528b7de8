from __future__ import annotations

import pytest

from factory.core.components import COMPONENTS
from factory.core.errors import InputError
from factory.core.matrix import load, version_of
from tests.conftest import SHIPPED, SMALL


def test_shipped_matrix_loads_with_every_documented_tag():
    m = load(SHIPPED).matrix
    for vllm in ("0.13.0", "0.14.0", "0.14.1", "0.15.0", "0.15.1", "0.16.0", "0.17.0"):
        assert {f"{vllm}-t4", f"{vllm}-t5"} <= set(m.image)
    assert "0.33.0-t5" in m.image and "0.33.0-t4" not in m.image
    assert set(m.base) >= {"2.9.1-cu130", "2.10.0-cu131", "2.10.0-v2-cu131"}
    assert m.base["2.10.0-v2-cu131"].nccl == "2.29.3-1"
    assert m.image["0.16.0-t5"].flashinfer == "0.6.5" and m.image["0.16.0-t4"].flashinfer == "0.6.3"
    assert m.image["0.14.0-t5"].sources["vllm"].repo.startswith("https://")
    assert m.defaults.build.torch_cuda_arch_list == "12.1a"
    assert m.defaults.repositories.vllm == "scitrera/dgx-spark-vllm"


def test_versions_keep_their_text_and_compare_with_packaging():
    m = load(SHIPPED).matrix
    assert m.image["0.13.0-t5"].transformers == "5.0.0rc3"
    assert version_of("nccl", "2.29.2-1") == version_of("nccl", "2.29.2")
    assert version_of("transformers", "5.0.0rc3") < version_of("transformers", "5.0.0")


def test_misspelt_key_names_file_tag_field_and_line(write_matrix):
    path = write_matrix(SMALL.replace('flashinfer = "0.6.4"\ntransformers = "5.3.0"',
                                      'flashinfer = "0.6.4"\ntransfomers = "5.3.0"'))
    with pytest.raises(InputError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    assert 'image "0.17.0-t5", field "transfomers": unknown key' in message
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("transfomers"))
    assert f"{path}:{line}:" in message


def test_bad_version_is_named(write_matrix):
    path = write_matrix(SMALL.replace('cuda = "13.1.0"', 'cuda = "thirteen"'))
    with pytest.raises(InputError, match=r'base "2.10.0-cu131", field "cuda": .*not a version'):
        load(path)


def test_missing_required_key(write_matrix):
    path = write_matrix(SMALL.replace('triton = "3.6.0"\nflashinfer = "0.6.4"\ntransformers = "4.57.6"',
                                      'flashinfer = "0.6.4"\ntransformers = "4.57.6"'))
    with pytest.raises(InputError, match=r'image "0.17.0-t4", field "triton": required key is missing'):
        load(path)


def test_malformed_toml_gets_file_line_column(write_matrix):
    path = write_matrix(SMALL + "\n[image.broken\n")
    with pytest.raises(InputError) as info:
        load(path)
    line = len(path.read_text().splitlines())
    assert f"{path}:{line}:" in str(info.value) and "invalid TOML" in str(info.value)


def test_rule_with_unknown_component_or_bad_specifier(write_matrix):
    with pytest.raises(InputError, match="unknown component 'torchh'"):
        load(write_matrix(SMALL.replace('require = { transformers', 'require = { torchh')))
    with pytest.raises(InputError, match="not a PEP 440 specifier"):
        load(write_matrix(SMALL.replace('">=4.56.0,<5"', '"about four"')))


def test_waiver_needs_a_reason(write_matrix):
    with pytest.raises(InputError, match=r'image "0.17.0-t5", field "allow.0.reason"'):
        load(write_matrix(SMALL.replace('reason = "the -t5 variant runs Transformers 5 on purpose"',
                                        'reason = ""')))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such matrix file"):
        load(tmp_path / "nope.toml")


def test_components_cover_the_mission():
    assert set(COMPONENTS) == {"ubuntu", "python", "cuda", "nccl", "torch", "torchvision", "torchaudio",
                               "triton", "flashinfer", "vllm", "transformers", "ray"}


# --- the boundary: pydantic validates, the core gets frozen dataclasses; validated matrices are cached ---


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A private user cache folder (the cache of validated matrices lives under it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "spark-image-factory" / "matrix"


def _count_validations(monkeypatch) -> list[str]:
    """Calls of the pydantic validation (a cache miss), recorded by matrix text."""
    from factory.core import schema

    calls: list[str] = []
    real = schema.validate_text

    def counted(text, path):
        calls.append(text)
        return real(text, path)

    monkeypatch.setattr(schema, "validate_text", counted)
    return calls


def test_the_loaded_matrix_is_frozen_kw_only_dataclasses(write_matrix, cache_home):
    import dataclasses

    from factory.core import matrix as M

    m = load(write_matrix()).matrix
    for value in (m, m.defaults, m.defaults.build, m.base["2.10.0-cu131"], m.image["0.17.0-t5"],
                  m.image["0.17.0-t5"].allow[0], m.rule[0]):
        assert dataclasses.is_dataclass(value) and not hasattr(value, "model_dump")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.image["0.17.0-t5"].vllm = "0.18.0"  # type: ignore[misc]
    with pytest.raises(TypeError):
        M.Waiver("a-rule", "a reason of some length")  # type: ignore[misc]  # keywords only
    assert m.image["0.17.0-t4"].allow == () and m.extra == {} and m.schema_version == 1


def test_the_dataclasses_mirror_the_schema_field_for_field():
    """The pydantic models (the schema) and the dataclasses the core reads must agree, or validation would
    hand the core something of another shape; Rule, which code constructs, keeps the schema's defaults."""
    import dataclasses

    from factory.core import matrix as M
    from factory.core import schema as S

    pairs = [(S.Source, M.Source), (S.Waiver, M.Waiver), (S.Repositories, M.Repositories),
             (S.Dockerfiles, M.Dockerfiles), (S.BuildKnobs, M.BuildKnobs), (S.Defaults, M.Defaults),
             (S.Base, M.Base), (S.Image, M.Image), (S.Extra, M.Extra), (S.Rule, M.Rule), (S.Matrix, M.Matrix)]
    for model, shape in pairs:
        assert list(model.model_fields) == [f.name for f in dataclasses.fields(shape)], shape.__name__
    rule_defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                     for f in dataclasses.fields(M.Rule) if f.default is not dataclasses.MISSING
                     or f.default_factory is not dataclasses.MISSING}
    assert rule_defaults == {name: info.default for name, info in S.Rule.model_fields.items()
                             if not info.is_required()}


def test_a_second_load_of_an_unchanged_matrix_comes_from_the_cache(write_matrix, cache_home, monkeypatch):
    from factory.core import matrix_cache

    path = write_matrix()
    calls = _count_validations(monkeypatch)
    first = load(path).matrix
    assert len(calls) == 1 and matrix_cache.entry_path(path.read_text()).is_file()
    second = load(path).matrix
    assert len(calls) == 1, "the second load validated again instead of reading the cache"
    assert second == first and second.image["0.17.0-t5"].allow == first.image["0.17.0-t5"].allow


def test_an_edited_matrix_misses_the_cache(write_matrix, cache_home, monkeypatch):
    path = write_matrix()
    calls = _count_validations(monkeypatch)
    load(path)
    path.write_text(path.read_text().replace('triton = "3.6.0"', 'triton = "3.6.1"', 1))
    edited = load(path).matrix
    assert len(calls) == 2 and edited.image["0.17.0-t4"].triton == "3.6.1"
    load(path)
    assert len(calls) == 2


@pytest.mark.parametrize("entry", [b"", b"{not json", b"[]", b'{"format": 1, "key": "someone else", "matrix": {}}',
                                   b'{"format": 99}', "KEY-BUT-WRONG-SHAPE"])
def test_a_corrupt_or_foreign_cache_entry_is_ignored_and_rewritten(write_matrix, cache_home, monkeypatch, entry):
    import json

    from factory.core import matrix_cache

    path = write_matrix()
    expected = load(path).matrix
    stored = matrix_cache.entry_path(path.read_text())
    if entry == "KEY-BUT-WRONG-SHAPE":
        entry = json.dumps({"format": 1, "key": stored.stem, "matrix": {"schema_version": 1}}).encode()
    stored.write_bytes(entry)
    calls = _count_validations(monkeypatch)
    assert load(path).matrix == expected and len(calls) == 1
    assert json.loads(stored.read_bytes())["key"] == stored.stem  # written again, sound
    load(path)
    assert len(calls) == 1


def test_a_bad_matrix_is_never_cached_and_fails_the_same_way_every_time(write_matrix, cache_home):
    path = write_matrix(SMALL.replace('vllm = "0.17.0"', 'vllm = "0.17 0"', 1))
    messages = []
    for _ in range(2):
        with pytest.raises(InputError) as info:
            load(path)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and 'image "0.17.0-t4", field "vllm"' in messages[0]
    assert not cache_home.exists() or not any(cache_home.glob("*.json"))


def test_an_unwritable_cache_is_no_error(write_matrix, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert load(write_matrix()).matrix.image["0.17.0-t4"].vllm == "0.17.0"


def test_plan_on_a_cached_matrix_imports_no_pydantic_httpx_or_python_on_whales(cache_home):
    """The plan path is lean: with the matrix cached, `factory plan` runs without the validator or adapters."""
    import os
    import subprocess
    import sys

    load(SHIPPED)  # fills the cache
    program = ("import sys, io, contextlib\n"
               "from factory.cli.main import main\n"
               "with contextlib.redirect_stdout(io.StringIO()):\n"
               f"    code = main(['plan', '0.15.0-t5', '--matrix', {str(SHIPPED)!r}])\n"
               "heavy = [m for m in ('pydantic', 'factory.core.schema', 'tomllib', 'httpx', 'python_on_whales')"
               " if m in sys.modules]\n"
               "print(code, heavy)\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home.parent.parent)}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "0 []", out.stderr
