"""Planted faults in fixture images: `factory build` must catch each before pushing, naming what is wrong."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from factory.cli.main import main
from tests.adapters.test_elf import write_elf
from tests.capture import printed
from tests.engine_support import fixture_release, require_engine

pytestmark = pytest.mark.engine

SITE = "/opt/venv/lib/python3.12/site-packages"

FAULTS = {
    "wrong version in a dist-info": (
        f"RUN rm -rf {SITE}/vllm-0.17.0.dist-info && fake-dist 3.12 vllm 0.16.9",
        "vllm: label dev.scitrera.vllm_version=0.17.0 but",
    ),
    "CPU-only torch": (f"RUN rm {SITE}/torch/lib/libtorch_cuda.so", "CPU-only"),
    "a missing component": (f"RUN rm -rf {SITE}/flashinfer_python-0.6.4.dist-info", "flashinfer"),
    "a library built for CUDA 12": ("COPY libbad.so /opt/venv/lib/libbad.so", "libcudart.so.12"),
}


@pytest.fixture(autouse=True)
def _engine():
    require_engine()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_planted_fault_stops_the_build_and_nothing_is_pushed(capsys, tmp_path, fault):
    step, needle = FAULTS[fault]
    matrix = fixture_release(tmp_path)
    dockerfiles = matrix.parent / "dockerfiles"
    write_elf(dockerfiles / "libbad.so", needed=("libcudart.so.12", "libc.so.6"))
    dockerfile = dockerfiles / "vllm.Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"\n{step}\n")
    report = tmp_path / "report.json"
    code = main(["build", "0.17.0-t4", "--push", "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"),
                 "--report", str(report)])
    out = printed(capsys)
    assert code == 1, out
    assert "verify 0.17.0-t4: FAILED" in out and needle in out, out
    assert "verify 2.10.0-cu131: every label matches" in out
    assert "verify 2.10.0-cu131-runtime: every label matches" in out
    assert "nothing pushed" in out
    data = json.loads(report.read_text())
    assert [(i["name"], i["verified"]) for i in data["images"]] == [
        ("2.10.0-cu131", True), ("2.10.0-cu131-runtime", True), ("0.17.0-t4", False)]
    # the fault is in the image under test, which is FROM the (clean) runtime image
    failed = json.loads(Path(data["images"][2]["verify_report"]).read_text())
    assert any(needle in m["message"] for m in failed["mismatches"]), failed["mismatches"]
    assert failed["kind"] == "vllm"
    assert all(i["pushed"] == [] for i in data["images"])
    for image in data["images"]:
        ref = image["refs"][0]
        assert subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                              capture_output=True).returncode != 0, ref
    # an image that failed verify carries no measured labels, so a plain build does not take it as done
    again = tmp_path / "again.json"
    code = main(["build", "0.17.0-t4", "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"),
                 "--report", str(again)])
    out = printed(capsys)
    statuses = {i["name"]: i["status"] for i in json.loads(again.read_text())["images"]}
    assert code == 1 and statuses == {"2.10.0-cu131": "up to date", "2.10.0-cu131-runtime": "up to date",
                                      "0.17.0-t4": "built"}, out
    assert "verify 0.17.0-t4: FAILED" in out


def test_factory_verify_command_on_a_good_image(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    assert main(["build", "0.17.0-t5", "--no-verify", "--matrix", str(matrix), "--log-dir", str(tmp_path / "l"),
                 "--report", str(tmp_path / "r.json")]) == 0
    images = {i["name"]: i for i in json.loads((tmp_path / "r.json").read_text())["images"]}
    assert list(images) == ["2.10.0-cu131", "2.10.0-cu131-runtime", "0.17.0-t5"]
    ref = images["0.17.0-t5"]["refs"][0]
    capsys.readouterr()
    assert main(["verify", ref, "--json", "--matrix", str(matrix)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["image"] == ref and report["ok"] is True and report["mismatches"] == []
    assert report["kind"] == "vllm"
    # what it measured, not only what is wrong
    assert report["findings"]["components"]["vllm"] == "0.17.0"
    assert report["findings"]["locations"]["vllm"].endswith("vllm-0.17.0.dist-info")
    from factory.adapters import docker

    labels = docker.local_labels(ref)
    own = labels["dev.scitrera.input_digest"]
    assert report["measured_labels"]["dev.scitrera.verified"] == own  # the image's own, not its base's
    # a runtime-flavored image: verify checked its libraries and toolchain too, and found them clean
    assert labels["dev.scitrera.flavor"] == "runtime"
    assert report["findings"]["unresolved"] == [] and report["findings"]["toolchain"] == []
    assert report["findings"]["preloaded"] == []
    assert report["findings"]["c_compiler"] == "/usr/bin/gcc"
