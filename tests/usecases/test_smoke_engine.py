"""`factory smoke` and `factory release --smoke` on the real engine, with the real smoke program in the image.

No GPU is reachable here, so the program runs in the image without one and must report failure; that is the
half of the wiring a GPU-less machine can prove: the program is in the image and runs with the labels'
expectations, its report reaches the table and the exit code, and a failed smoke test publishes nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine_support import fixture_release, python_image, require_engine
from tests.usecases.test_release_engine import Registry

pytestmark = pytest.mark.engine
PROGRAM = Path(__file__).parents[2] / "dockerfiles" / "smoke.py"


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def amd64_release(tmp_path: Path) -> Path:
    """The fixture release on an image with a Python, for this host, with the real smoke program."""
    matrix = fixture_release(tmp_path)
    text = matrix.read_text().replace('"linux/arm64"', '"linux/amd64"')
    matrix.write_text(text.replace("factory-fixtures/busybox:arm64", python_image()))
    shutil.copy(PROGRAM, matrix.parent / "dockerfiles" / "smoke.py")
    return matrix


def factory(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "factory", *argv], capture_output=True, text=True, timeout=timeout)


def test_smoke_runs_the_program_in_the_image_and_fails_without_a_gpu(tmp_path: Path) -> None:
    matrix = amd64_release(tmp_path)
    built = factory("build", "0.17.0-t5", "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"),
                    "--report", str(tmp_path / "build.json"))
    assert built.returncode == 0, built.stdout + built.stderr
    ref = json.loads((tmp_path / "build.json").read_text())["images"][-1]["refs"][0]

    shown = factory("smoke", ref, "--gpus", "none", "--matrix", str(matrix))
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"smoke test of {ref}" in shown.stdout
    assert "torch_import" in shown.stdout and "FAIL:" in shown.stdout

    data = factory("smoke", ref, "--gpus", "none", "--arch", "sm_90", "--json", "--matrix", str(matrix))
    assert data.returncode == 1
    report = json.loads(data.stdout)
    assert report["ok"] is False and report["host"]["machine"] == "x86_64"
    # the expectations come from the image's labels, the arch from the flag
    assert report["args"]["arch"] == "sm_90"
    assert report["args"]["expect"] == {"cuda": "13.1.0", "nccl": "2.29.2-1", "torch": "2.10.0", "vllm": "0.17.0",
                                        "flashinfer": "0.6.4", "transformers": "5.3.0", "triton": "3.6.0"}
    assert sorted(report["args"]["require"]) == ["flashinfer", "transformers", "vllm"]
    torch = next(c for c in report["checks"] if c["name"] == "torch_import")
    assert torch["ok"] is False and "No module named 'torch'" in torch["detail"]


def test_release_with_smoke_publishes_nothing_when_the_smoke_test_fails(tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (`make engine` installs it)")
    registry = Registry(tmp_path / "registry")
    registry.start()
    try:
        matrix = amd64_release(tmp_path)
        matrix.write_text(matrix.read_text().replace("127.0.0.1:5000", "127.0.0.1:5001"))
        repo = next(line.split('"')[1] for line in matrix.read_text().splitlines() if line.startswith('vllm = "127'))
        done = factory("release", "0.17.0-t5", "--matrix", str(matrix), "--smoke", "--smoke-gpus", "none",
                       "--log-dir", str(tmp_path / "logs"), "--report", str(tmp_path / "report.json"))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "smoke 0.17.0-t5: FAILED" in done.stderr and "torch_import" in done.stderr  # progress: stderr
        assert "release NOT complete" in done.stdout
        report = json.loads((tmp_path / "report.json").read_text())
        image = next(i for i in report["images"] if i["name"] == "0.17.0-t5")
        assert image["verified"] is True and image["smoked"] is False and image["pushed"] == []
        assert "torch_import" in image["error"]
        saved = json.loads(Path(image["smoke_report"]).read_text())
        assert saved["ok"] is False and saved["args"]["arch"] == "sm_121"
        base = next(i for i in report["images"] if i["kind"] == "base")
        assert base["smoked"] is None, "bases have no vLLM to smoke-test"
        assert registry.tags(repo.split("/", 1)[1]) == set(), "a failed smoke test must publish nothing"
        assert registry.tags(next(line.split('"')[1] for line in matrix.read_text().splitlines()
                                  if line.startswith('base = "127')).split("/", 1)[1]) == set()
    finally:
        registry.stop()
