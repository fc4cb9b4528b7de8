"""Shared fixtures: the shipped matrix and small matrices written from text."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "matrix.toml"

#: An [extra.nixl] table for the small matrix (tests that need one append it).
NIXL = """
[extra.nixl]
suffix = "nixl"
description = "UCX and NIXL for KV-cache transfer"
dockerfile = "dockerfiles/nixl.Dockerfile"
on = ["0.17.0-*"]
versions = { ucx = "1.19.0", nixl = "1.5.1" }
"""

SMALL = """\
schema = 1

[base."2.10.0-cu131"]
cuda = "13.1.0"
nccl = "2.29.2-1"
torch = "2.10.0"
torchvision = "0.25.0"
torchaudio = "2.10.0"

[image."0.17.0-t4"]
base = "2.10.0-cu131"
vllm = "0.17.0"
triton = "3.6.0"
flashinfer = "0.6.4"
transformers = "4.57.6"

[image."0.17.0-t5"]
base = "2.10.0-cu131"
vllm = "0.17.0"
triton = "3.6.0"
flashinfer = "0.6.4"
transformers = "5.3.0"
allow = [{ rule = "vllm-0.17.0/transformers", reason = "the -t5 variant runs Transformers 5 on purpose" }]

[[rule]]
id = "vllm-0.17.0/transformers"
when = { vllm = "==0.17.0" }
require = { transformers = ">=4.56.0,<5" }
reason = "vLLM 0.17.0 declares transformers>=4.56.0,<5"
source = "https://pypi.org/project/vllm/0.17.0/"
"""


@pytest.fixture
def shipped_matrix(tmp_path: Path) -> Path:
    """A copy of the shipped matrix with its Dockerfiles, safe to edit."""
    shutil.copy(SHIPPED, tmp_path / "matrix.toml")
    shutil.copytree(ROOT / "dockerfiles", tmp_path / "dockerfiles")
    return tmp_path / "matrix.toml"


@pytest.fixture
def write_matrix(tmp_path: Path):
    """Write matrix text (and empty Dockerfiles it names by default) into a temp folder."""

    def write(text: str = SMALL) -> Path:
        (tmp_path / "dockerfiles").mkdir(exist_ok=True)
        for name in ("pytorch-dev", "vllm", "pytorch-dev-wheels", "vllm-wheels", "pytorch-runtime"):
            path = tmp_path / "dockerfiles" / f"{name}.Dockerfile"
            if not path.exists():
                path.write_text(f"# {name}\nARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\n")
        path = tmp_path / "matrix.toml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def _remove_engine_test_images():
    """Engine tests push to throw-away repositories named factory-test-<hex>: remove this session's local images
    when it ends, so repeated runs do not fill the engine (what they pushed goes with the registry)."""
    yield
    from tests.engine_support import SESSION_REPOSITORIES

    if shutil.which("docker") is None or not SESSION_REPOSITORIES:
        return
    import subprocess

    listed = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, timeout=60)
    refs = [ref for ref in listed.stdout.split() if any(f"/{name}/" in ref for name in SESSION_REPOSITORIES)]
    if listed.returncode == 0 and refs:
        subprocess.run(["docker", "image", "rm", "--force", *refs], capture_output=True, timeout=300)
