"""Wheel mode for real: small wheels built here, served by a PEP 503 index on 127.0.0.1, installed by the
fixture Dockerfiles, then verified like any image."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.core.matrix import load
from factory.core.plan import build_plan
from factory.core.resolve import resolve
from tests.capture import printed
from tests.engine_support import FIXTURE, fixture_release, require_engine

pytestmark = pytest.mark.engine

WHEELS = {  # distribution -> (version, extra files inside the wheel)
    "torch": ("2.14.0", ["torch/__init__.py", "torch/lib/libtorch_cuda.so"]),
    "torchvision": ("0.29.0", ["torchvision/__init__.py"]),
    "torchaudio": ("2.11.0", ["torchaudio/__init__.py"]),
    "nvidia-nccl-cu13": ("2.30.7", ["nvidia/nccl/lib/libnccl.so.2"]),
    "triton": ("3.8.0", ["triton/__init__.py"]),
    "flashinfer-python": ("0.7.2.post1", ["flashinfer/__init__.py"]),
    "vllm": ("0.33.0", ["vllm/__init__.py"]),
    "ray": ("2.59.0", ["ray/__init__.py"]),
    "transformers": ("5.20.2", ["transformers/__init__.py"]),
}


def make_wheel(folder: Path, name: str, version: str, files: list[str]) -> Path:
    stem = name.replace("-", "_")
    path = folder / f"{stem}-{version}-py3-none-any.whl"
    info = f"{stem}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in files:
            wheel.writestr(file, "")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index(tmp_path):
    """A PEP 503 simple index of the fixture wheels, served on 127.0.0.1."""
    root = tmp_path / "index"
    files = root / "files"
    files.mkdir(parents=True)
    for name, (version, contents) in WHEELS.items():
        wheel = make_wheel(files, name, version, contents)
        page = root / "simple" / name
        page.mkdir(parents=True)
        (page / "index.html").write_text(f'<a href="/files/{wheel.name}">{wheel.name}</a>\n')
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _engine():
    require_engine()



def test_wheel_mode_release_builds_from_the_local_index_and_verifies(capsys, tmp_path, index):
    matrix = fixture_release(tmp_path)
    wheels = matrix.parent / "wheels-matrix.toml"
    text = (FIXTURE / "wheels-matrix.toml").read_text().replace("INDEX_URL", index)
    wheels.write_text(text.replace("factory-test", matrix.read_text().split("127.0.0.1:5000/")[1].split("/")[0]))
    plan = build_plan(resolve(load(wheels)))
    assert [(s.kind, s.name, s.mode) for s in plan.images] == [
        ("base", "2.14.0-cu130", "wheels"), ("runtime", "2.14.0-cu130-runtime", "wheels"),
        ("vllm", "0.33.0-t5", "wheels")]
    assert all("MAX_JOBS" not in s.build_args for s in plan.images), "no compile stage"
    assert "BUILD_IMAGE" not in plan.get("0.33.0-t5").build_args, "nothing compiled, so no dev base to build on"
    assert plan.get("0.33.0-t5").build_args["BASE_IMAGE"] == plan.get("2.14.0-cu130-runtime").ref
    report = tmp_path / "report.json"
    code = main(["build", "0.33.0-t5", "--network", "host", "--matrix", str(wheels), "--log-dir",
                 str(tmp_path / "logs"), "--report", str(report)])
    out = printed(capsys)
    assert code == 0, out
    data = json.loads(report.read_text())
    assert [(i["name"], i["status"], i["verified"]) for i in data["images"]] == [
        ("2.14.0-cu130", "built", True), ("2.14.0-cu130-runtime", "built", True), ("0.33.0-t5", "built", True)]
    assert "verify 2.14.0-cu130-runtime: every label matches the image content" in out
    assert "verify 0.33.0-t5: every label matches the image content" in out
