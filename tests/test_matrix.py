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
