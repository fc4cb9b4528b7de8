"""Locks for real: `factory build` hands an image its lock's layer files as the build context `lock`, what the
lock holds is part of the image's input digest (a changed lock rebuilds the image), and an image whose
Dockerfile installs from a lock is refused without a current one."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from factory.cli.main import main
from factory.core import lockfile
from factory.core.lockfile import Lock, Pin
from factory.core.lockspec import input_digests, lock_path, lock_specs
from factory.core.matrix import load
from factory.core.plan import build_plan
from factory.core.resolve import resolve
from tests.capture import printed
from tests.engine_support import FIXTURE, fixture_release, require_engine

pytestmark = pytest.mark.engine

#: A base whose only step copies the layer files it is handed, and checks the lock pins the matrix's torch.
LOCKED_BASE = """\
ARG CUDA_IMAGE
FROM ${CUDA_IMAGE}
ARG TORCH_VERSION
RUN --mount=type=bind,from=lock,source=tools.txt,target=/tmp/lock/tools.txt \\
    --mount=type=bind,from=lock,source=torch.txt,target=/tmp/lock/torch.txt \\
    mkdir -p /opt/lock && cp /tmp/lock/tools.txt /tmp/lock/torch.txt /opt/lock/ \\
 && grep -q "^torch==${TORCH_VERSION} " /opt/lock/torch.txt
"""


@pytest.fixture(autouse=True)
def _engine():
    require_engine()


def _pin(name: str, version: str, layer: str, salt: str = "") -> Pin:
    digest = "sha256:" + hashlib.sha256(f"{name}{version}{salt}".encode()).hexdigest()
    return Pin(name=name, version=version, hashes=(digest,), layer=layer)


def _write_lock(path, salt: str = "") -> Lock:
    """The base's lock, current for its spec (as `factory lock` would write it, without resolving)."""
    loaded = load(path)
    plan = build_plan(resolve(loaded), ["2.14.0-cu130"])
    specs = lock_specs(loaded, plan)
    digest = input_digests(specs, loaded.root)["2.14.0-cu130"]
    header = {"image": ("2.14.0-cu130 (base, wheels mode)",), "input-digest": (digest,),
              "platform": ("linux/arm64",), "python": ("3.12",)}
    lock = Lock(header=header, pins=(_pin("uv", "0.9.9", "tools", salt), _pin("torch", "2.14.0", "torch", salt),
                                     _pin("sympy", "1.14.0", "torch", salt)))
    target = lock_path(loaded, "2.14.0-cu130")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(lockfile.render(lock), encoding="utf-8")
    return lock



def _in_image(ref: str, path: str) -> str:
    return subprocess.run(["docker", "run", "--rm", "--platform", "linux/arm64", ref, "cat", path],
                          capture_output=True, text=True, check=True).stdout


def test_a_build_gets_its_lock_as_the_lock_context_and_a_new_lock_rebuilds(capsys, tmp_path):
    release = fixture_release(tmp_path)
    folder = release.parent
    matrix = folder / "locked.toml"
    matrix.write_text((FIXTURE / "wheels-matrix.toml").read_text().replace("INDEX_URL", "https://pypi.org/simple")
                      .replace("factory-test", release.read_text().split("127.0.0.1:5000/")[1].split("/")[0]))
    (folder / "dockerfiles" / "pytorch-dev-wheels.Dockerfile").write_text(LOCKED_BASE)
    build = ["build", "2.14.0-cu130", "--no-verify", "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs")]
    ref = build_plan(resolve(load(matrix)), ["2.14.0-cu130"]).get("2.14.0-cu130").ref
    try:
        # no lock: refused before anything runs, naming the file and the command that makes it
        assert main(build) == 2
        err = capsys.readouterr().err
        assert "locks/2.14.0-cu130.txt is missing" in err and "run `factory lock 2.14.0-cu130`" in err

        lock = _write_lock(matrix)
        assert main(build) == 0, printed(capsys)
        assert _in_image(ref, "/opt/lock/torch.txt") == lockfile.install_text(lock.layer("torch"))
        assert _in_image(ref, "/opt/lock/tools.txt") == lockfile.install_text(lock.layer("tools"))
        first = build_plan(resolve(load(matrix)), ["2.14.0-cu130"]).get("2.14.0-cu130").input_digest

        assert main(build) == 0 and "up to date" in printed(capsys)  # the same lock: nothing to build

        # other hashes for the same versions (a re-resolved lock): another input digest, a rebuilt image
        relocked = _write_lock(matrix, salt="again")
        second = build_plan(resolve(load(matrix)), ["2.14.0-cu130"]).get("2.14.0-cu130").input_digest
        assert second != first
        assert main(build) == 0
        assert "building" in printed(capsys)
        assert _in_image(ref, "/opt/lock/torch.txt") == lockfile.install_text(relocked.layer("torch"))
    finally:
        subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True, check=False)
        shutil.rmtree(tmp_path / "logs", ignore_errors=True)
