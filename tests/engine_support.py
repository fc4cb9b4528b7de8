"""Helpers for tests that need the real engine (started by scripts/engine.sh): skip or fail clearly."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "engine"
REGISTRY = "127.0.0.1:5000"


def engine_reason() -> str | None:
    """Why engine tests cannot run here, or None when an engine with Buildx and the registry answer."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=20)
        buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20s"
    if info.returncode != 0:
        return "no Docker engine reachable (start one with `make engine`)"
    if buildx.returncode != 0:
        return "Docker Buildx is not installed"
    import urllib.request

    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5)
    except OSError:
        return f"no local registry on {REGISTRY} (`make engine` starts one)"
    return None


def require_engine() -> None:
    reason = engine_reason()
    if reason is None:
        return
    if os.environ.get("FACTORY_REQUIRE_ENGINE") == "1":
        pytest.fail(f"engine tests must run here (FACTORY_REQUIRE_ENGINE=1) but: {reason}")
    pytest.skip(reason)


#: The throw-away repository names this test session made (conftest removes their local images at the end,
#: and only theirs: another session running engine tests at the same time keeps its images).
SESSION_REPOSITORIES: set[str] = set()


def fixture_release(tmp_path: Path) -> Path:
    """A private copy of the fixture release whose repositories no other test uses."""
    dest = tmp_path / "release"
    shutil.copytree(FIXTURE, dest)
    unique = f"factory-test-{uuid.uuid4().hex[:10]}"
    SESSION_REPOSITORIES.add(unique)
    matrix = dest / "matrix.toml"
    matrix.write_text(matrix.read_text().replace("factory-test", unique))
    return matrix


def docker_json(*argv: str) -> Any:
    import json

    done = subprocess.run(["docker", *argv], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


PYTHON_IMAGE = "factory-fixtures/python:amd64"


def python_image() -> str:
    """An amd64 image with this machine's Python interpreter on busybox (nothing can be pulled here).

    Holds the interpreter, its standard library (no tests, no site-packages) and the shared libraries `ldd`
    names for it and its extension modules, at the same paths as on the host; built once per engine.
    """
    import sys
    import sysconfig
    import tempfile

    if subprocess.run(["docker", "image", "inspect", PYTHON_IMAGE], capture_output=True).returncode == 0:
        return PYTHON_IMAGE
    exe = Path(os.path.realpath(sys.executable))
    prefix = Path(sys.base_prefix)
    stdlib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])
    with tempfile.TemporaryDirectory(prefix="factory-python-image-") as tmp:
        rootfs = Path(tmp) / "rootfs"

        def put(path: Path) -> None:
            dest = rootfs / path.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(path), dest)

        put(exe)
        (rootfs / "usr/local/bin").mkdir(parents=True)
        (rootfs / "usr/local/bin/python3").symlink_to(exe)
        shutil.copytree(stdlib, rootfs / stdlib.relative_to("/"), symlinks=True, ignore=shutil.ignore_patterns(
            "site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__"))
        objects = [exe, *(stdlib / "lib-dynload").glob("*.so")]
        for obj in objects:
            listed = subprocess.run(["ldd", str(obj)], capture_output=True, text=True).stdout
            for line in listed.splitlines():
                path = line.split("=>")[-1].split("(")[0].strip()
                if path.startswith("/") and Path(path).exists():
                    put(Path(path))
        (Path(tmp) / "Dockerfile").write_text(
            "FROM factory-fixtures/busybox:amd64\nCOPY rootfs/ /\n"
            f"ENV PYTHONHOME={prefix}\n")
        subprocess.run(["docker", "buildx", "build", "--platform", "linux/amd64", "--load", "-t", PYTHON_IMAGE,
                        tmp], check=True, capture_output=True)
    return PYTHON_IMAGE
