"""Tests of factory/smoke.py: the runner that executes the smoke program in an image and reads its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from factory import smoke
from factory.smoke import SmokeCheck, SmokeReport

ROOT = Path(__file__).resolve().parent.parent
RECORDED = sorted((ROOT / "docs" / "smoke").glob("*.json"))

#: A report as the program prints it (trimmed from an H100 run: fewer checks, same structure).
RECORDED_JSON = """
{
  "ok": false,
  "schema": 1,
  "host": {"python": "3.12.3", "torch": "2.11.0+cu130", "torch_cuda": "13.0", "nccl": "2.28.9",
           "gpu_count": 1, "fault": "sdpa_scale",
           "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "capability": "sm_90", "memory_gib": 79.2}]},
  "args": {"arch": "auto", "expect": {"cuda": "13.0"}, "require": ["transformers"],
           "nccl_allreduce": true, "skip_imports": false},
  "checks": [
    {"name": "gpu_visible", "ok": true, "skipped": false,
     "detail": "1 GPU(s): NVIDIA H100 80GB HBM3 (sm_90); kernel launch ok", "data": {}},
    {"name": "arch_list", "ok": true, "skipped": false, "detail": "sm_90 in ['sm_80', 'sm_90']",
     "data": {"matched": ["sm_90"]}},
    {"name": "sdpa:flash:bf16", "ok": true, "skipped": false,
     "detail": "6 cases passed, worst rel norm err 0.00224, worst norm ratio 1.00004", "data": {}},
    {"name": "sdpa:fault_scale:bf16", "ok": false, "skipped": false,
     "detail": "6/6 cases failed; b2h4q1k1d64-full: max abs err 1.55 > 0.06; norm ratio 1.5 outside [0.99, 1.01]",
     "data": {"cases": [{"case": "b2h4q1k1d64-full", "status": "fail", "norm_ratio": 1.5}]}},
    {"name": "import:vllm", "ok": true, "skipped": true, "detail": "vllm is not installed (not required)",
     "data": {}}
  ],
  "summary": {"passed": 3, "failed": 1, "skipped": 1}
}
"""


# ---------------------------------------------------------------------------------------------------------
# labels -> --expect


def test_expect_from_labels_maps_every_component():
    labels = {
        "dev.scitrera.cuda_version": "13.1.0",
        "dev.scitrera.nccl_version": "2.29.2-1",
        "dev.scitrera.torch_version": "2.10.0",
        "dev.scitrera.vllm_version": "0.15.0",
        "dev.scitrera.flashinfer_version": "0.6.2",
        "dev.scitrera.transformers_version": "5.0.0",
        "dev.scitrera.triton_version": "3.5.1",
        "dev.scitrera.torchvision_version": "0.25.0",  # not something the program checks
        "dev.scitrera.cuda_arch": "sm_121",
        "org.opencontainers.image.version": "0.15.0-t5",
    }
    assert smoke.expect_from_labels(labels) == {
        "cuda": "13.1.0", "nccl": "2.29.2-1", "torch": "2.10.0", "vllm": "0.15.0", "flashinfer": "0.6.2",
        "transformers": "5.0.0", "triton": "3.5.1",
    }


def test_expect_from_labels_namespace_and_empty_values():
    labels = {"com.example.torch_version": "2.9.1", "com.example.vllm_version": " ",
              "dev.scitrera.nccl_version": "2.28.9-1"}
    assert smoke.expect_from_labels(labels, namespace="com.example") == {"torch": "2.9.1"}
    assert smoke.expect_from_labels(labels) == {"nccl": "2.28.9-1"}
    assert smoke.expect_from_labels({}) == {}


def test_smoke_args():
    args = smoke.smoke_args(arch="sm_121", expect={"nccl": "2.29.2-1", "cuda": "13.1"}, nccl=True,
                            require=("vllm", "flashinfer"), skip_imports=True)
    assert args == ["--arch", "sm_121", "--expect", "cuda=13.1", "--expect", "nccl=2.29.2-1",
                    "--require", "vllm,flashinfer", "--nccl-allreduce", "--skip-imports"]
    assert smoke.smoke_args() == ["--arch", "sm_121"]
    with pytest.raises(ValueError, match="cudnn"):
        smoke.smoke_args(expect={"cudnn": "9"})


# ---------------------------------------------------------------------------------------------------------
# parsing


def test_parse_recorded_report():
    report = smoke.parse_report(RECORDED_JSON, exit_code=1, target="img:tag")
    assert not report.ok
    assert report.exit_code == 1
    assert [c.name for c in report.failed] == ["sdpa:fault_scale:bf16"]
    assert [c.name for c in report.skipped] == ["import:vllm"]
    assert len(report.passed) == 3
    assert report.host["gpus"][0]["capability"] == "sm_90"
    assert report.check("sdpa:fault_scale:bf16").data["cases"][0]["norm_ratio"] == 1.5
    assert report.check("nope") is None
    assert report.raw["schema"] == 1 and report.to_dict() == report.raw


def test_parse_passing_report_and_exit_code_consistency():
    raw = json.loads(RECORDED_JSON)
    raw["checks"] = [c for c in raw["checks"] if c["ok"]]
    raw["ok"] = True
    text = json.dumps(raw, indent=2)
    assert smoke.parse_report(text, exit_code=0).ok
    # the program says ok but exited non-zero: not ok, and the table says why
    report = smoke.parse_report(text, exit_code=139)
    assert not report.ok and report.failed[-1].name == "smoke_program"


def test_parse_report_tolerates_noise_around_the_json():
    noisy = "==========\n== CUDA ==\n==========\nsome {not json} banner\n" + RECORDED_JSON + "\ntrailer\n"
    report = smoke.parse_report(noisy, exit_code=1)
    assert report.check("arch_list").ok and not report.ok


def test_parse_report_without_json_is_a_failed_report():
    report = smoke.parse_report("", exit_code=125, stderr="docker: Error response from daemon: could not "
                                "select device driver \"\" with capabilities: [[gpu]].")
    assert not report.ok
    assert report.checks[0].name == "smoke_program"
    assert "exit 125" in report.checks[0].detail and "could not select device driver" in report.checks[0].detail
    report = smoke.parse_report("Segmentation fault\n", exit_code=-11)
    assert not report.ok and "Segmentation fault" in report.checks[0].detail


def test_parse_usage_error_report():
    text = json.dumps({"ok": False, "schema": 1, "host": {}, "args": {}, "checks": [],
                       "usage_error": "--arch 'sm_12x': expected sm_XY"})
    report = smoke.parse_report(text, exit_code=2)
    assert not report.ok and report.usage_error.startswith("--arch")
    assert "bad usage" in report.failed[0].detail


@pytest.mark.parametrize("path", RECORDED, ids=[p.name for p in RECORDED])
def test_reports_saved_in_docs_parse(path):
    report = smoke.load_report(path)
    assert report.checks and report.host.get("gpus")
    assert report.ok == (not report.failed)
    if "fault" in path.name:
        assert not report.ok and report.host.get("fault")
        assert all(c.name.startswith("sdpa:fault_") for c in report.failed)
    assert "PASS" in smoke.render_table(report) or "FAIL" in smoke.render_table(report)


# ---------------------------------------------------------------------------------------------------------
# rendering


def test_render_table_is_aligned():
    report = smoke.parse_report(RECORDED_JSON, exit_code=1, target="scitrera/dgx-spark-vllm:0.15.0-t5")
    text = smoke.render_table(report)
    lines = text.splitlines()
    assert lines[0].startswith("smoke test of scitrera/dgx-spark-vllm:0.15.0-t5: torch 2.11.0+cu130")
    header = lines[1]
    assert header.split() == ["CHECK", "RESULT", "DETAIL"]
    col_result = header.index("RESULT")
    col_detail = header.index("DETAIL")
    body = lines[3:-1]
    assert len(body) == 5
    for line in body:
        assert line[col_result:col_result + 4] in ("PASS", "FAIL", "SKIP")
        assert line[col_detail - 2:col_detail] == "  " and line[col_detail] != " "
    results = {line.split()[0]: line[col_result:col_result + 4] for line in body}
    assert results == {"gpu_visible": "PASS", "arch_list": "PASS", "sdpa:flash:bf16": "PASS",
                       "sdpa:fault_scale:bf16": "FAIL", "import:vllm": "SKIP"}
    assert lines[-1] == "FAIL: 3 passed, 1 failed, 1 skipped"


def test_render_table_truncates_long_details_to_one_line():
    report = SmokeReport(ok=True, checks=[SmokeCheck("x", True, False, "word\n" * 100)])
    text = smoke.render_table(report, max_detail=40)
    lines = text.splitlines()
    row, col = lines[-2], lines[0].index("DETAIL")
    assert row.endswith("...") and len(row[col:]) == 40 and "\n" not in row
    assert text.splitlines()[-1] == "PASS: 1 passed, 0 failed, 0 skipped"


# ---------------------------------------------------------------------------------------------------------
# running


class FakeDocker:
    def __init__(self, stdout=None, exc=None):
        self.stdout, self.exc, self.calls = stdout, exc, []

    def run(self, image, command, **kwargs):
        self.calls.append((image, list(command), kwargs))
        if self.exc is not None:
            raise self.exc
        return self.stdout


def test_smoke_image_success_path():
    raw = json.loads(RECORDED_JSON)
    raw["checks"] = [c for c in raw["checks"] if c["ok"]]
    raw["ok"] = True
    fake = FakeDocker(stdout=json.dumps(raw))
    report = smoke.smoke_image("img:tag", expect={"nccl": "2.29.2-1"}, docker=fake)
    assert report.ok and report.exit_code == 0 and report.target == "img:tag"
    image, command, kwargs = fake.calls[0]
    assert image == "img:tag"
    assert command == ["/opt/factory/smoke.py", "--arch", "sm_121", "--expect", "nccl=2.29.2-1",
                       "--require", "vllm,flashinfer,transformers"]
    assert kwargs["entrypoint"] == "python3" and kwargs["gpus"] == "all" and kwargs["remove"] is True
    assert kwargs["envs"]["NCCL_NVLS_ENABLE"] == "0"
    assert "shm_size" not in kwargs


def test_smoke_image_failed_check_is_parsed_from_docker_exception():
    from python_on_whales import DockerException

    exc = DockerException(["docker", "container", "run", "img:tag"], 1, stdout=RECORDED_JSON.encode(),
                          stderr=None)
    fake = FakeDocker(exc=exc)
    report = smoke.smoke_image("img:tag", gpus="device=0", nccl=True, require=(), docker=fake)
    assert not report.ok and report.exit_code == 1
    assert [c.name for c in report.failed] == ["sdpa:fault_scale:bf16"]
    _, command, kwargs = fake.calls[0]
    assert "--nccl-allreduce" in command and "--require" not in command
    assert kwargs["gpus"] == "device=0" and kwargs["shm_size"]


def test_smoke_image_docker_failure_without_report():
    from python_on_whales import DockerException

    exc = DockerException(["docker", "run"], 125, stdout=b"", stderr=b"could not select device driver")
    report = smoke.smoke_image("img:tag", docker=FakeDocker(exc=exc))
    assert not report.ok and report.exit_code == 125
    assert "could not select device driver" in report.checks[0].detail


def test_importing_factory_smoke_does_not_import_python_on_whales():
    code = ("import sys, factory.smoke; "
            "bad = [m for m in ('python_on_whales', 'pydantic') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_local_with_this_interpreter():
    # The project venv has no torch (and no GPU here): the program still answers with a report, exit 1.
    report = smoke.run_local(sys.executable, skip_imports=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert report.exit_code == 1 and not report.ok
    assert report.check("torch_import") is not None
    assert report.command[:2] == [sys.executable, str(smoke.SMOKE_PROGRAM)]
    assert "FAIL" in smoke.render_table(report)


def test_run_local_with_a_missing_interpreter():
    report = smoke.run_local("/nonexistent/python3")
    assert not report.ok and "cannot run" in report.checks[0].detail


def test_smoke_program_is_where_the_dockerfiles_copy_it_from():
    assert smoke.SMOKE_PROGRAM.is_file()
    assert smoke.SMOKE_PATH_IN_IMAGE == "/opt/factory/smoke.py"
