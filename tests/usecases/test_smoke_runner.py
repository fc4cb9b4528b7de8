"""Tests of factory/usecases/smoke.py: the runner that executes the smoke program in an image and reads its report."""

import json
import sys
from pathlib import Path

import pytest

from factory.core.engine import ContainerRun, EngineError, RunResult
from factory.usecases import smoke
from factory.usecases.smoke import SmokeCheck, SmokeReport
from tests.fake_engine import FakeEngine

ROOT = Path(__file__).resolve().parents[2]
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


def check(report: SmokeReport, name: str) -> SmokeCheck:
    found = report.check(name)
    assert found is not None, f"no check {name} in the report"
    return found


# ---------------------------------------------------------------------------------------------------------
# labels -> --expect


def test_expect_from_labels_maps_every_component() -> None:
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


def test_expect_from_labels_namespace_and_empty_values() -> None:
    labels = {"com.example.torch_version": "2.9.1", "com.example.vllm_version": " ",
              "dev.scitrera.nccl_version": "2.28.9-1"}
    assert smoke.expect_from_labels(labels, namespace="com.example") == {"torch": "2.9.1"}
    assert smoke.expect_from_labels(labels) == {"nccl": "2.28.9-1"}
    assert smoke.expect_from_labels({}) == {}


def test_smoke_args() -> None:
    args = smoke.smoke_args(arch="sm_121", expect={"nccl": "2.29.2-1", "cuda": "13.1"}, nccl=True,
                            require=("vllm", "flashinfer"), skip_imports=True)
    assert args == ["--arch", "sm_121", "--expect", "cuda=13.1", "--expect", "nccl=2.29.2-1",
                    "--require", "vllm,flashinfer", "--nccl-allreduce", "--skip-imports"]
    assert smoke.smoke_args() == ["--arch", "sm_121"]
    with pytest.raises(ValueError, match="cudnn"):
        smoke.smoke_args(expect={"cudnn": "9"})


def test_smoke_args_baseline() -> None:
    assert smoke.smoke_args(baseline="/b.json") == ["--arch", "sm_121", "--baseline", "/b.json"]
    assert smoke.smoke_args(builtin_baseline=False) == ["--arch", "sm_121", "--no-builtin-baseline"]
    assert smoke.smoke_args(baseline=Path("b.json"), builtin_baseline=False)[2:] == [
        "--baseline", "b.json", "--no-builtin-baseline"]


def test_smoke_args_are_what_the_program_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every flag smoke_args() writes is one the program in this checkout accepts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke_program_for_runner", smoke.SMOKE_PROGRAM)
    assert spec is not None and spec.loader is not None
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    monkeypatch.delenv("SMOKE_FAULT", raising=False)
    baseline = str(ROOT / "docs" / "smoke" / "h200-report.json")
    args = program.parse_args(smoke.smoke_args(arch="sm_90", expect={"cuda": "13.0"}, nccl=True, require=("vllm",),
                                               skip_imports=True, baseline=baseline, builtin_baseline=False))
    assert args.baseline == baseline and args.builtin_baseline is False and args.nccl_allreduce
    assert args.baseline_report["host"]["gpus"][0]["capability"] == "sm_90"


# ---------------------------------------------------------------------------------------------------------
# parsing


def test_parse_recorded_report() -> None:
    report = smoke.parse_report(RECORDED_JSON, exit_code=1, target="img:tag")
    assert not report.ok
    assert report.exit_code == 1
    assert [c.name for c in report.failed] == ["sdpa:fault_scale:bf16"]
    assert [c.name for c in report.skipped] == ["import:vllm"]
    assert len(report.passed) == 3
    assert report.host["gpus"][0]["capability"] == "sm_90"
    assert check(report, "sdpa:fault_scale:bf16").data["cases"][0]["norm_ratio"] == 1.5
    assert report.check("nope") is None
    assert report.raw["schema"] == 1 and report.to_dict() == report.raw


def test_parse_passing_report_and_exit_code_consistency() -> None:
    raw = json.loads(RECORDED_JSON)
    raw["checks"] = [c for c in raw["checks"] if c["ok"]]
    raw["ok"] = True
    text = json.dumps(raw, indent=2)
    assert smoke.parse_report(text, exit_code=0).ok
    # the program says ok but exited non-zero: not ok, and the table says why
    report = smoke.parse_report(text, exit_code=139)
    assert not report.ok and report.failed[-1].name == "smoke_program"


def test_parse_report_tolerates_noise_around_the_json() -> None:
    noisy = "==========\n== CUDA ==\n==========\nsome {not json} banner\n" + RECORDED_JSON + "\ntrailer\n"
    report = smoke.parse_report(noisy, exit_code=1)
    assert check(report, "arch_list").ok and not report.ok


def test_parse_report_without_json_is_a_failed_report() -> None:
    report = smoke.parse_report("", exit_code=125, stderr="docker: Error response from daemon: could not "
                                "select device driver \"\" with capabilities: [[gpu]].")
    assert not report.ok
    assert report.checks[0].name == "smoke_program"
    assert "exit 125" in report.checks[0].detail and "could not select device driver" in report.checks[0].detail
    report = smoke.parse_report("Segmentation fault\n", exit_code=-11)
    assert not report.ok and "Segmentation fault" in report.checks[0].detail


def test_parse_usage_error_report() -> None:
    text = json.dumps({"ok": False, "schema": 1, "host": {}, "args": {}, "checks": [],
                       "usage_error": "--arch 'sm_12x': expected sm_XY"})
    report = smoke.parse_report(text, exit_code=2)
    assert not report.ok and (report.usage_error or "").startswith("--arch")
    assert "bad usage" in report.failed[0].detail


@pytest.mark.parametrize("path", RECORDED, ids=[p.name for p in RECORDED])
def test_reports_saved_in_docs_parse(path: Path) -> None:
    report = smoke.load_report(path)
    assert report.checks and report.host.get("gpus")
    assert report.ok == (not report.failed)
    fault = report.host.get("fault")
    if "fault" in path.name:
        assert not report.ok and fault
    if fault and fault.startswith("sdpa_"):  # a wrong backend added: it alone fails
        assert report.failed and all(c.name.startswith("sdpa:fault_") for c in report.failed)
    elif fault:  # a real backend made unavailable: fails exactly when a baseline or built-in expectation applies
        expected = report.args.get("baseline") or report.args.get("builtin_baseline")
        assert report.ok is not bool(expected)
        assert all(c.name in ("sdpa:flash:fp16", "sdpa:flash:bf16", "sdpa:availability") for c in report.failed)
    assert "PASS" in smoke.render_table(report) or "FAIL" in smoke.render_table(report)


def test_h200_reports_show_the_recorded_results() -> None:
    results = {p.name: smoke.load_report(p) for p in RECORDED if p.name.startswith("h200-")}
    failed = {name: sorted(c.name for c in r.failed) for name, r in results.items()}
    assert failed == {
        "h200-report.json": [],
        "h200-sm90-baseline-report.json": [],
        "h200-fault-report.json": ["sdpa:fault_scale:bf16", "sdpa:fault_scale:fp16"],
        "h200-flash-causal-unavailable-baseline-report.json": ["sdpa:availability", "sdpa:flash:bf16",
                                                                "sdpa:flash:fp16"],
        "h200-flash-unavailable-builtin-report.json": ["sdpa:availability", "sdpa:flash:bf16", "sdpa:flash:fp16"],
        "h200-flash-causal-unavailable-unchecked-report.json": [],
        "h200-as-sm121-report.json": ["gpu_arch"],
    }
    sm121 = results["h200-as-sm121-report.json"]
    assert check(sm121, "arch_list").detail.startswith("sm_120 SASS runs on sm_121")
    assert "sm_121 SASS does not run on sm_90" in check(sm121, "gpu_arch").detail
    flash = check(results["h200-flash-causal-unavailable-baseline-report.json"], "sdpa:flash:fp16")
    assert "unavailable, but expected to run by baseline" in flash.detail
    unchecked = results["h200-flash-causal-unavailable-unchecked-report.json"]
    assert check(unchecked, "sdpa:availability").skipped and "2 skipped" in check(unchecked, "sdpa:flash:fp16").detail
    for r in results.values():
        assert r.host["gpus"][0]["name"] == "NVIDIA H200" and r.host["torch"] == "2.11.0+cu130"


# ---------------------------------------------------------------------------------------------------------
# rendering


def test_render_table_is_aligned() -> None:
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


def test_render_table_truncates_long_details_to_one_line() -> None:
    report = SmokeReport(ok=True, checks=[SmokeCheck("x", True, False, "word\n" * 100)])
    text = smoke.render_table(report, max_detail=40)
    lines = text.splitlines()
    row, col = lines[-2], lines[0].index("DETAIL")
    assert row.endswith("...") and len(row[col:]) == 40 and "\n" not in row
    assert text.splitlines()[-1] == "PASS: 1 passed, 0 failed, 0 skipped"


# ---------------------------------------------------------------------------------------------------------
# running


def engine(stdout: str = "", exit_code: int = 0, stderr: str = "") -> FakeEngine:
    return FakeEngine(run_result=RunResult(exit_code=exit_code, stdout=stdout, stderr=stderr))


def test_smoke_image_success_path() -> None:
    raw = json.loads(RECORDED_JSON)
    raw["checks"] = [c for c in raw["checks"] if c["ok"]]
    raw["ok"] = True
    fake = engine(json.dumps(raw))
    report = smoke.smoke_image("img:tag", expect={"nccl": "2.29.2-1"}, engine=fake)
    assert report.ok and report.exit_code == 0 and report.target == "img:tag"
    [run] = fake.runs
    assert run.image == "img:tag"
    assert list(run.command) == ["/opt/factory/smoke.py", "--arch", "sm_121", "--expect", "nccl=2.29.2-1",
                                 "--require", "flashinfer,vllm,transformers"]
    assert run.entrypoint == "python3" and run.gpus == "all" and run.pull == "missing"
    assert dict(run.envs)["NCCL_NVLS_ENABLE"] == "0"
    assert run.shm_size is None
    assert report.command == run.argv(), "the command shown is the one run"
    assert run.argv()[:3] == ["docker", "run", "--rm"]
    assert run.argv()[-len(run.command) - 3:-len(run.command)] == ["--entrypoint", "python3", "img:tag"]


def test_smoke_image_failed_check_is_parsed_from_a_failing_run() -> None:
    fake = engine(RECORDED_JSON, exit_code=1)
    report = smoke.smoke_image("img:tag", gpus="device=0", nccl=True, require=(), engine=fake)
    assert not report.ok and report.exit_code == 1
    assert [c.name for c in report.failed] == ["sdpa:fault_scale:bf16"]
    [run] = fake.runs
    assert "--nccl-allreduce" in run.command and "--require" not in run.command
    assert run.gpus == "device=0" and run.shm_size == "2g"
    assert "--gpus=device=0" in run.argv() and "--shm-size=2g" in run.argv()


def test_smoke_image_baseline_is_bind_mounted_read_only_and_platform_passed(tmp_path: Path) -> None:
    baseline = tmp_path / "good.json"
    baseline.write_text(RECORDED_JSON)
    raw = json.loads(RECORDED_JSON)
    raw["checks"], raw["ok"] = [c for c in raw["checks"] if c["ok"]], True
    fake = engine(json.dumps(raw))
    report = smoke.smoke_image("img:tag", baseline=str(baseline), builtin_baseline=False, platform="linux/arm64",
                               engine=fake)
    assert report.ok
    [run] = fake.runs
    assert list(run.command[-3:]) == ["--baseline", smoke.BASELINE_PATH_IN_IMAGE, "--no-builtin-baseline"]
    assert run.mounts == (f"type=bind,source={baseline.resolve()},target={smoke.BASELINE_PATH_IN_IMAGE},readonly",)
    assert run.platform == "linux/arm64"
    shown = report.command
    assert shown[:4] == ["docker", "run", "--rm", "--platform=linux/arm64"]
    mount = shown[shown.index("--mount") + 1]
    assert mount == f"type=bind,source={baseline.resolve()},target={smoke.BASELINE_PATH_IN_IMAGE},readonly"
    assert shown.index("--mount") < shown.index("img:tag") < shown.index("--baseline")


def test_smoke_image_without_baseline_or_platform_passes_neither() -> None:
    fake = engine(RECORDED_JSON)
    smoke.smoke_image("img:tag", engine=fake)
    [run] = fake.runs
    assert run.mounts == () and run.platform is None
    assert "--baseline" not in run.command and "--no-builtin-baseline" not in run.command
    shown = smoke.smoke_command("img:tag")
    assert not any(a.startswith("--platform") or a == "--mount" for a in shown)


def test_smoke_command_with_platform_and_baseline(tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_text("{}")
    shown = smoke.smoke_command("img:tag", gpus="none", platform="linux/arm64", baseline=baseline)
    assert shown[:5] == ["docker", "run", "--rm", "--platform=linux/arm64", "--mount"]
    assert shown[-2:] == ["--baseline", smoke.BASELINE_PATH_IN_IMAGE] and "--gpus" not in " ".join(shown)


def test_baseline_mount_refuses_missing_files_and_commas(tmp_path: Path) -> None:
    from factory.core.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        smoke.baseline_mount(tmp_path / "missing.json")
    odd = tmp_path / "a,b"
    odd.mkdir()
    (odd / "r.json").write_text("{}")
    with pytest.raises(InputError, match="comma"):
        smoke.baseline_mount(odd / "r.json")
    fake = engine(RECORDED_JSON)
    with pytest.raises(InputError):
        smoke.smoke_image("img:tag", baseline=tmp_path / "missing.json", engine=fake)
    assert fake.runs == []


def test_smoke_image_docker_failure_without_report() -> None:
    report = smoke.smoke_image("img:tag", engine=engine(exit_code=125, stderr="could not select device driver"))
    assert not report.ok and report.exit_code == 125
    assert "could not select device driver" in report.checks[0].detail


def test_smoke_image_engine_error_is_a_failed_report() -> None:
    class Broken(FakeEngine):
        def run(self, request: ContainerRun) -> RunResult:
            raise EngineError("the docker client is not installed")

    report = smoke.smoke_image("img:tag", engine=Broken())
    assert not report.ok and report.checks[0].name == "smoke_program"
    assert report.checks[0].detail == "the docker client is not installed"


def test_run_local_with_this_interpreter() -> None:
    # The project venv has no torch (and no GPU here): the program still answers with a report, exit 1.
    report = smoke.run_local(sys.executable, skip_imports=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert report.exit_code == 1 and not report.ok
    assert report.check("torch_import") is not None
    assert report.command[:2] == [sys.executable, str(smoke.SMOKE_PROGRAM)]
    assert "FAIL" in smoke.render_table(report)


def test_run_local_passes_the_baseline_path(tmp_path: Path) -> None:
    baseline = tmp_path / "good.json"
    baseline.write_text((ROOT / "docs" / "smoke" / "h200-report.json").read_text())
    report = smoke.run_local(sys.executable, skip_imports=True, baseline=baseline, builtin_baseline=False,
                             env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert report.command[-3:] == ["--baseline", str(baseline), "--no-builtin-baseline"]
    assert report.exit_code == 1 and report.args["baseline"] == str(baseline)  # no torch/GPU here: a failure
    assert report.args["builtin_baseline"] is False
    bad = smoke.run_local(sys.executable, baseline=tmp_path / "missing.json", env={"PATH": ""})
    assert bad.exit_code == 2 and "--baseline" in (bad.usage_error or "")


def test_run_local_with_a_missing_interpreter() -> None:
    report = smoke.run_local("/nonexistent/python3")
    assert not report.ok and "cannot run" in report.checks[0].detail


def test_smoke_program_is_where_the_dockerfiles_copy_it_from() -> None:
    assert smoke.SMOKE_PROGRAM.is_file()
    assert smoke.SMOKE_PATH_IN_IMAGE == "/opt/factory/smoke.py"
