"""`factory release` and `factory bake` on the real engine, with a registry the test owns and breaks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_support import fixture_release, require_engine

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


class Registry:
    """A private distribution registry on 127.0.0.1:5001, started and stopped by the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "config.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5001\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen("http://127.0.0.1:5001/v2/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the test registry did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    def tags(self, repo: str) -> set[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:5001/v2/{repo}/tags/list", timeout=5) as answer:
                return set(json.load(answer).get("tags") or ())
        except OSError:
            return set()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (`make engine` installs it)")
    reg = Registry(tmp_path / "registry")
    reg.start()
    yield reg
    reg.stop()


def release_cmd(matrix: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "factory", "release", "0.17.*", "--matrix", str(matrix), "--log-dir",
            str(tmp_path / "logs"), "--report", str(tmp_path / "report.json"), "--push-attempts", "1", *extra]


def test_release_publishes_atomically_and_a_rerun_finishes_after_a_registry_fault(tmp_path: Path,
                                                                                  registry: Registry) -> None:
    matrix = fixture_release(tmp_path)
    matrix.write_text(matrix.read_text().replace("127.0.0.1:5000", "127.0.0.1:5001"))
    repo = next(line.split('"')[1] for line in matrix.read_text().splitlines() if line.startswith("vllm = \"127"))
    repo_path = repo.split("/", 1)[1]
    base_repo = next(line.split('"')[1] for line in matrix.read_text().splitlines() if line.startswith("base = \"127"))
    base_repo_path = base_repo.split("/", 1)[1]

    # run the release and kill the registry as soon as the first push (the base) is done
    proc = subprocess.Popen(release_cmd(matrix, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("push ") and ": done" in line:
            registry.stop()
    assert proc.wait(timeout=300) == 1, "".join(seen)
    output = "".join(seen)
    assert "release NOT complete" in output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False and report["aliases"] == {}
    assert all(i["verified"] is True for i in report["images"]), "verified before any push"

    registry.start()
    assert "latest" not in registry.tags(repo_path), "an unfinished release must not move `latest`"
    assert not {"0.17.0-t4", "0.17.0-t5"} <= registry.tags(repo_path)

    done = subprocess.run(release_cmd(matrix, tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "release complete" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert {i["status"] for i in report["images"]} <= {"up to date"}, "the rerun rebuilds nothing"
    assert {"0.17.0-t4", "0.17.0-t5", "latest", "0.17-t4", "0.17-t5"} <= registry.tags(repo_path)
    assert {"2.10.0-cu131", "2.10.0-cu131-runtime"} <= registry.tags(base_repo_path), "the runtime image ships too"
    assert [i["name"] for i in report["images"]] == ["2.10.0-cu131", "2.10.0-cu131-runtime", "0.17.0-t4",
                                                     "0.17.0-t5"]


def test_bake_file_is_accepted_and_builds_the_graph(tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    bake = tmp_path / "docker-bake.json"
    done = subprocess.run([sys.executable, "-m", "factory", "bake", "0.17.*", "--matrix", str(matrix), "-o",
                           str(bake)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(bake.read_text())
    image = data["target"]["vllm-0_17_0-t5"]
    base = data["target"]["base-2_10_0-cu131"]
    runtime = data["target"]["runtime-2_10_0-cu131-runtime"]
    # the runtime image copies its dev base; the vLLM image is FROM the runtime image, its source stage on the base
    assert runtime["contexts"] == {base["tags"][0]: "target:base-2_10_0-cu131"}
    assert runtime["args"]["DEV_IMAGE"] == base["tags"][0]
    assert image["contexts"] == {base["tags"][0]: "target:base-2_10_0-cu131",
                                 runtime["tags"][0]: "target:runtime-2_10_0-cu131-runtime"}
    assert image["args"]["BASE_IMAGE"] == runtime["tags"][0] and image["args"]["BUILD_IMAGE"] == base["tags"][0]
    assert data["group"]["runtimes"] == {"targets": ["runtime-2_10_0-cu131-runtime"]}
    assert "contexts" not in base
    printed = subprocess.run(["docker", "buildx", "bake", "-f", str(bake), "--print"], capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert set(json.loads(printed.stdout)["target"]) == set(data["target"])
    built = subprocess.run(["docker", "buildx", "bake", "-f", str(bake), "--load"], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    labels = json.loads(subprocess.run(["docker", "image", "inspect", image["tags"][0]], capture_output=True,
                                       text=True, check=True).stdout)[0]["Config"]["Labels"]
    assert labels == {**labels, **image["labels"]}
    assert labels["org.opencontainers.image.base.name"] == runtime["tags"][0]
    labels = json.loads(subprocess.run(["docker", "image", "inspect", runtime["tags"][0]], capture_output=True,
                                       text=True, check=True).stdout)[0]["Config"]["Labels"]
    assert labels == {**labels, **runtime["labels"]} and labels["dev.scitrera.flavor"] == "runtime"
