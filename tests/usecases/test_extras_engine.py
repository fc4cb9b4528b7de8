"""An extra layer (UCX + NIXL, faked on busybox) built on a fixture tag by the real engine, then verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from factory.cli.main import main
from factory.core.cuda_abi import CUDA_RUNTIME_SONAME
from tests.adapters.test_elf import write_elf
from tests.core.test_extras import NIXL as LAYER
from tests.engine_support import fixture_release, require_engine

pytestmark = pytest.mark.engine

NIXL = LAYER.replace('on = ["0.17.0-*"]', 'on = ["0.17.0-t5"]')  # the unit tests' layer, on one tag


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def release_with_nixl(tmp_path: Path, cudart: str) -> Path:
    matrix = fixture_release(tmp_path)
    matrix.write_text(matrix.read_text() + NIXL)
    assert CUDA_RUNTIME_SONAME.match(cudart)
    write_elf(matrix.parent / "dockerfiles" / "cuda-user.so", needed=(cudart, "libc.so.6"))
    return matrix


def build(capsys: pytest.CaptureFixture[str], tmp_path: Path, matrix: Path, *argv: str
          ) -> tuple[int, str, dict[str, Any]]:
    report = tmp_path / "report.json"
    code = main(["build", *argv, "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"), "--report",
                 str(report)])
    out, err = capsys.readouterr()
    return code, out + err, json.loads(report.read_text())


def test_the_layer_builds_on_its_tag_and_every_label_is_true(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    matrix = release_with_nixl(tmp_path, "libcudart.so.13")
    code, out, report = build(capsys, tmp_path, matrix, "0.17.0-t5-nixl")
    assert code == 0, out
    assert [(i["kind"], i["name"], i["status"], i["verified"]) for i in report["images"]] == [
        ("base", "2.10.0-cu131", "built", True), ("runtime", "2.10.0-cu131-runtime", "built", True),
        ("vllm", "0.17.0-t5", "built", True), ("extra", "0.17.0-t5-nixl", "built", True)]
    assert "verify 0.17.0-t5-nixl: every label matches the image content" in out
    ref = report["images"][3]["refs"][0]
    assert ref.endswith(":0.17.0-t5-nixl")

    assert main(["inspect", ref, "--json", "--matrix", str(matrix)]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert inspected["labels"]["dev.scitrera.flavor"] == "runtime", "the layer is on the runtime-based tag"
    components = inspected["components"]
    assert components["ucx"] == "1.19.0" and components["nixl"] == "1.5.1" and components["extra"] == "nixl"
    assert components["vllm"] == "0.17.0" and components["cuda"] == "13.1.0"
    # on a runtime-based tag the layer is of the runtime flavor too: every library its objects need is found
    assert main(["verify", ref, "--json", "--matrix", str(matrix)]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] is True and verified["kind"] == "extra"
    assert verified["findings"]["unresolved"] == [] and verified["findings"]["c_compiler"] == "/usr/bin/gcc"
    assert verified["findings"]["preloaded"] == [], "found where the loader looks (ld.so.conf, multiarch)"

    code, out, report = build(capsys, tmp_path, matrix, "0.17.0-t5-nixl")
    assert code == 0 and {i["status"] for i in report["images"]} == {"up to date"}, out


def test_a_layer_linked_against_cuda_12_fails_verification_and_pushes_nothing(capsys: pytest.CaptureFixture[str],
                                                                              tmp_path: Path) -> None:
    matrix = release_with_nixl(tmp_path, "libcudart.so.12")
    code, out, report = build(capsys, tmp_path, matrix, "0.17.0-t5-nixl", "--push")
    assert code == 1, out
    assert "verify 0.17.0-t5-nixl: FAILED" in out
    assert "/opt/nixl/lib/aarch64-linux-gnu/libnixl.so needs libcudart.so.12, but the image is CUDA 13" in out
    assert "no library under /opt/ucx/lib links a CUDA 13 runtime" in out
    # and, the layer being of the runtime flavor, the loader finds no libcudart.so.12 anywhere in the image
    assert "runtime-libraries: libcudart.so.12 is needed by /opt/nixl/lib/aarch64-linux-gnu/libnixl.so" in out
    assert "nothing pushed" in out
    assert [(i["name"], i["verified"]) for i in report["images"]] == [
        ("2.10.0-cu131", True), ("2.10.0-cu131-runtime", True), ("0.17.0-t5", True), ("0.17.0-t5-nixl", False)]
    assert all(i["pushed"] == [] for i in report["images"])
