"""dockerfiles/vllm_requirements.py on the real requirement files of vLLM releases.

Fixtures: requirements/{build,common,cuda}.txt and the [build-system] table of pyproject.toml, extracted
unchanged from PyPI's sdists vllm-0.13.0.tar.gz (sha256 4ad43db4...b5fe) and vllm-0.17.0.tar.gz (sha256
b0b62e58...629a). 0.13.0 is the oldest source tag of the matrix and still has the use_existing_torch.py that
drops every line mentioning torch; 0.17.0 the newest. PyPI has no sdist of vLLM 0.15.0 or 0.15.1.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "vllm-requirements"
SCRIPT = ROOT / "dockerfiles" / "vllm_requirements.py"

_spec = importlib.util.spec_from_file_location("vllm_requirements", SCRIPT)
vr = importlib.util.module_from_spec(_spec)
sys.modules["vllm_requirements"] = vr
_spec.loader.exec_module(vr)

# vLLM's own pins in cuda.txt, and what the matrix ships instead (matrix.toml: 0.13.0-t4 and 0.17.0-t4).
DECLARED = {"0.13.0": {"flashinfer": "0.5.3", "torch": "2.9.0"}, "0.17.0": {"flashinfer": "0.6.4", "torch": "2.10.0"}}
MATRIX = {"0.13.0": "0.6.1", "0.17.0": "0.6.5"}
RAY = "2.53.0"


def tree(version: str) -> dict[str, str]:
    return vr.read_tree(FIXTURES / version)


def requirements(text: str) -> list[Requirement]:
    """What vLLM's setup.py hands setuptools for one file: lines not starting with '#', '-r' or '--', with
    the trailing comment dropped as setuptools does."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        out.append(Requirement(re.split(r"\s+#", line)[0]))
    return out


def build_system(text: str) -> list[Requirement]:
    import tomllib

    return [Requirement(r) for r in tomllib.loads(text)["build-system"]["requires"]]


def names(reqs: list[Requirement]) -> set[str]:
    return {vr.canonical(r.name) for r in reqs}


@pytest.mark.parametrize("version", sorted(MATRIX))
def test_the_build_gets_the_base_torch_and_the_matrix_flashinfer(version):
    files = tree(version)
    new = vr.transform(files, {"flashinfer-python": MATRIX[version], "ray": RAY})
    cuda = {vr.canonical(r.name): r for r in requirements(new["requirements/cuda.txt"])}
    for torch in ("torch", "torchvision", "torchaudio"):
        assert torch not in cuda
    assert "torch" not in names(requirements(new["requirements/build.txt"]))
    assert "torch" not in names(build_system(new["pyproject.toml"]))
    assert str(cuda["flashinfer-python"].specifier) == f"=={MATRIX[version]}"
    # Ray's compiled graphs keep their CuPy, built for CUDA 13: no extra that pulls cupy-cuda12x.
    assert cuda["ray"].extras == set() and str(cuda["ray"].specifier) == f"=={RAY}"
    assert "cupy-cuda13x" in cuda and "cupy-cuda12x" not in cuda
    # The originals are still there, as comments, for whoever reads the built tree.
    original = f"# spark-image-factory: flashinfer-python=={DECLARED[version]['flashinfer']}"
    assert original in new["requirements/cuda.txt"]


@pytest.mark.parametrize("version", sorted(MATRIX))
def test_nothing_else_changes(version):
    files = tree(version)
    new = vr.transform(files, {"flashinfer-python": MATRIX[version], "ray": RAY})
    assert new["requirements/common.txt"] == files["requirements/common.txt"]
    edited = {"torch", "torchvision", "torchaudio", "flashinfer-python", "ray", "nvidia-cutlass-dsl", "cupy-cuda13x"}
    for path in ("requirements/build.txt", "requirements/cuda.txt"):
        before = {str(r) for r in requirements(files[path]) if vr.canonical(r.name) not in edited}
        after = {str(r) for r in requirements(new[path]) if vr.canonical(r.name) not in edited}
        assert before == after, path
    before = [str(r) for r in build_system(files["pyproject.toml"]) if r.name != "torch"]
    assert [str(r) for r in build_system(new["pyproject.toml"])] == before


@pytest.mark.parametrize("version", sorted(MATRIX))
def test_same_effect_as_use_existing_torch_on_the_files_the_build_reads(version):
    """use_existing_torch.py (0.13.0: every line containing 'torch'; 0.17.0 --prefix: torch=, torchvision=,
    torchaudio=) removes exactly these requirements from the files a CUDA build reads (CUDA 12 rules, so that
    the CUDA 13 edits stay out of the comparison)."""
    files = tree(version)
    new = vr.transform(files, {}, cuda_major=12)
    for path in ("requirements/build.txt", "requirements/cuda.txt", "requirements/common.txt"):
        mentioning = {line.strip() for line in files[path].splitlines()
                      if "torch" in line.lower() and not line.lstrip().startswith("#")}
        kept = {line.strip() for line in new[path].splitlines() if not line.lstrip().startswith("#")}
        assert mentioning.isdisjoint(kept), path
        assert {line.strip() for line in files[path].splitlines() if not line.lstrip().startswith("#")} - mentioning \
            <= kept, path


def test_cutlass_dsl_gets_its_cuda13_build():
    new = vr.transform(tree("0.17.0"), {})
    cutlass = next(r for r in requirements(new["requirements/cuda.txt"]) if r.name == "nvidia-cutlass-dsl")
    assert cutlass.extras == {"cu13"} and str(cutlass.specifier) == ">=4.4.0.dev1"


def test_vllm_declared_pins_differ_from_the_matrix_so_the_unedited_tree_conflicts():
    """The bug this script fixes: vLLM's pin and the matrix's FlashInfer cannot both be installed."""
    for version, shipped in MATRIX.items():
        cuda = {r.name: r for r in requirements(tree(version)["requirements/cuda.txt"])}
        assert not cuda["flashinfer-python"].specifier.contains(shipped)
        assert cuda["ray"].extras == {"cgraph"}  # ray 2.53.0: cupy-cuda12x; extra == "cgraph"


@pytest.mark.parametrize("version", sorted(MATRIX))
def test_idempotent_and_pure(version):
    files = tree(version)
    copy = dict(files)
    pins = {"flashinfer-python": MATRIX[version], "ray": RAY}
    once = vr.transform(files, pins)
    assert files == copy
    assert vr.transform(once, pins) == once
    assert vr.describe(once, pins) == []


def test_describe_says_what_changed():
    notes = vr.describe(tree("0.17.0"), {"flashinfer-python": "0.6.5", "ray": RAY})
    assert "requirements/cuda.txt: flashinfer-python==0.6.4 -> pinned to flashinfer-python==0.6.5" in notes
    assert "requirements/build.txt: dropped torch==2.10.0" in notes
    assert "pyproject.toml: dropped torch == 2.10.0" in notes
    assert any(n.startswith("requirements/cuda.txt: ray[cgraph]>=2.48.0 -> pinned to ray==2.53.0, removed extra "
                            "[cgraph]") for n in notes)


def test_a_direct_reference_pin_replaces_the_line():
    url = "flashinfer-python @ git+https://example.org/fork/flashinfer.git@v0.6.5-fix"
    new = vr.transform(tree("0.17.0"), {"flashinfer-python": url})
    flashinfer = next(r for r in requirements(new["requirements/cuda.txt"]) if r.name == "flashinfer-python")
    assert flashinfer.url == "git+https://example.org/fork/flashinfer.git@v0.6.5-fix"


def test_marker_kept_and_pin_forms():
    files = {"requirements/x.txt": "foo==1.0; python_version > '3.11'  # why\nbar\n"}
    new = vr.transform(files, {"foo": "2.0"}, drop=())
    req = requirements(new["requirements/x.txt"])
    assert [str(r) for r in req] == ['foo==2.0; python_version > "3.11"', "bar"]
    assert vr.parse_pin("flashinfer-python=0.6.2") == ("flashinfer-python", "0.6.2")
    assert vr.parse_pin("flashinfer-python==0.6.2") == ("flashinfer-python", "flashinfer-python==0.6.2")
    assert vr.parse_pin("x @ git+https://h/x.git") == ("x", "x @ git+https://h/x.git")
    with pytest.raises(ValueError):
        vr.parse_pin("flashinfer-python")
    with pytest.raises(ValueError):
        vr.transform(files, {"foo": "bar==1"})
    with pytest.raises(ValueError):
        vr.transform(files, {"torch": "2.10.0"})  # dropped and pinned


def test_cuda12_images_keep_their_extras():
    new = vr.transform(tree("0.17.0"), {}, cuda_major=12)
    cuda = {r.name: r for r in requirements(new["requirements/cuda.txt"])}
    assert cuda["ray"].extras == {"cgraph"} and cuda["nvidia-cutlass-dsl"].extras == set()


def test_other_files_pass_through():
    files = {"setup.py": "torch==1\n", "requirements/cuda.txt": "torch==2\n"}
    assert vr.transform(files, {})["setup.py"] == "torch==1\n"


def test_cli_edits_the_tree_in_place(tmp_path, capsys):
    src = tmp_path / "vllm"
    shutil.copytree(FIXTURES / "0.17.0", src)
    code = vr.main([str(src), "--drop", "torch", "--drop", "torchvision", "--drop", "torchaudio",
                    "--pin", "flashinfer-python==0.6.5", "--pin", f"ray={RAY}", "--require-all"])
    assert code == 0
    out = capsys.readouterr().out
    assert "requirements/cuda.txt: dropped torch==2.10.0" in out
    assert (src / "requirements/cuda.txt").read_text() == \
        vr.transform(tree("0.17.0"), {"flashinfer-python": "0.6.5", "ray": RAY})["requirements/cuda.txt"]
    assert vr.main([str(src), "--pin", "not-in-vllm=1.0", "--require-all"]) == 1
    assert "no requirement file names not-in-vllm" in capsys.readouterr().err
    assert vr.main([str(tmp_path / "empty")]) == 2


def test_the_source_dockerfile_runs_it_with_the_matrix_pins():
    text = (ROOT / "dockerfiles" / "vllm.Dockerfile").read_text()
    assert "COPY vllm_requirements.py" in text
    call = text[text.index("vllm_requirements.py /src/vllm"):]
    call = call[: call.index("\n\n")]
    for expected in ("--drop torch", "--drop torchvision", "--drop torchaudio", '--pin "${FLASHINFER_REQUIREMENT}"',
                     '--pin "ray==${RAY_VERSION}"', "--require-all"):
        assert expected in call
