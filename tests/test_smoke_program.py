"""Tests of dockerfiles/smoke.py, the GPU smoke program copied into every vLLM image.

Most tests are pure Python (no torch): the comparison, tolerance, report, arch and version logic, and a
whole SDPA suite run on plain lists with a deliberately wrong backend.  Tests that need torch tensors use
importorskip; tests that need a GPU are marked `gpu` and skip with "no CUDA GPU" without one.
"""

import importlib.util
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "dockerfiles" / "smoke.py"


def _load():
    spec = importlib.util.spec_from_file_location("smoke_program", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    sys.modules["smoke_program"] = module
    spec.loader.exec_module(module)
    return module


sp = _load()


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch
    except Exception:
        return False
    return bool(torch.cuda.is_available())


requires_gpu = pytest.mark.skipif(not _cuda_available(), reason="no CUDA GPU")


def run_program(*args, env=None, python=sys.executable, timeout=600):
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([python, str(PROGRAM), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    report = json.loads(proc.stdout)  # stdout is exactly one JSON document
    return proc, report


def by_name(report):
    return {c["name"]: c for c in report["checks"]}


# ---------------------------------------------------------------------------------------------------------
# compare / judge / tolerances

TOL = sp.Tolerance(max_abs=1e-2, rel_norm=5e-3)


def test_compare_identical_passes():
    ref = [[0.5, -1.0], [2.0, 0.25]]
    res = sp.compare(ref, ref, TOL, "same")
    assert res.ok and not res.skipped
    assert res.data["stats"]["norm_ratio"] == 1.0
    assert res.data["stats"]["max_abs"] == 0.0


def test_compare_catches_scaled_output_silent_wrong_norm():
    ref = [0.1 * i - 1.0 for i in range(50)]
    for factor in (1.5, 27.0, 1 / 1.5):
        res = sp.compare([x * factor for x in ref], ref, TOL)
        assert not res.ok
        assert "norm ratio" in res.detail


def test_compare_norm_ratio_alone_catches_tiny_scaling():
    # A 2% scale on small values passes max_abs but the norm ratio band [0.99, 1.01] catches it.
    ref = [1e-3 * math.sin(i) for i in range(100)]
    loose = sp.Tolerance(max_abs=1.0, rel_norm=1.0)
    res = sp.compare([x * 1.02 for x in ref], ref, loose)
    assert not res.ok and "norm ratio 1.02" in res.detail


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_compare_catches_nonfinite(bad):
    ref = [1.0, 2.0, 3.0]
    res = sp.compare([1.0, bad, 3.0], ref, TOL)
    assert not res.ok
    assert "1 NaN/Inf" in res.detail


def test_compare_nonfinite_reference_fails():
    res = sp.compare([1.0, 2.0], [1.0, math.nan], TOL)
    assert not res.ok and "reference" in res.detail


def test_compare_shape_mismatch_fails():
    res = sp.compare([[1.0, 2.0]], [[1.0], [2.0]], TOL)
    assert not res.ok and "shape" in res.detail


def test_tolerance_edges():
    ref = [1.0] * 100
    within = [1.0 + 0.009] + [1.0] * 99  # max_abs 9e-3 <= 1e-2
    assert sp.compare(within, ref, TOL).ok
    beyond = [1.0 + 0.011] + [1.0] * 99
    res = sp.compare(beyond, ref, TOL)
    assert not res.ok and "max abs err" in res.detail
    # rel norm err: spread error 4e-3 everywhere is under max_abs but over rel_norm 5e-3? no: 4e-3 < 5e-3
    spread = [1.0 + 0.004 * (-1) ** i for i in range(100)]
    assert sp.compare(spread, ref, TOL).ok
    spread = [1.0 + 0.006 * (-1) ** i for i in range(100)]
    res = sp.compare(spread, ref, TOL)
    assert not res.ok and "rel norm err" in res.detail and "max abs" not in res.detail


def test_judge_lists_every_violation():
    stats = sp.error_stats([3.0, 3.0], [1.0, 1.0])
    ok, reason = sp.judge(stats, TOL)
    assert not ok
    assert "max abs err" in reason and "rel norm err" in reason and "norm ratio 3" in reason


def test_zero_reference():
    assert sp.compare([0.0, 0.0], [0.0, 0.0], TOL).ok
    assert not sp.compare([0.5, 0.0], [0.0, 0.0], TOL).ok


def test_tolerance_table_covers_every_check_and_uses_the_norm_band():
    for kind in ("sdpa", "matmul"):
        for dtype in sp.SDPA_DTYPES:
            tol = sp.tolerance_for(kind, dtype)
            assert (tol.ratio_lo, tol.ratio_hi) == (0.99, 1.01)
            assert 0 < tol.rel_norm < 0.05 and 0 < tol.max_abs < 0.5
    # bf16 has 8x the unit roundoff of fp16: its bands are wider
    assert sp.tolerance_for("sdpa", "bf16").rel_norm > sp.tolerance_for("sdpa", "fp16").rel_norm
    with pytest.raises(KeyError, match="add one to TOLERANCES"):
        sp.tolerance_for("sdpa", "fp8")


def test_documented_tolerance_table_matches_the_code():
    rows = re.findall(r"^#: \| (\w+)\s*\| (\w+)\s*\| ([\d.e-]+)\s*\| ([\d.e-]+)\s*\| \[([\d.]+), ([\d.]+)\]",
                      PROGRAM.read_text(), re.M)
    assert len(rows) == len(sp.TOLERANCES)
    for kind, dtype, max_abs, rel_norm, lo, hi in rows:
        assert sp.TOLERANCES[(kind, dtype)] == sp.Tolerance(float(max_abs), float(rel_norm), float(lo),
                                                            float(hi))


# ---------------------------------------------------------------------------------------------------------
# The SDPA suite on plain Python lists: a deliberately wrong backend must be caught.


def attention(q, k, v, causal):
    """softmax(q k^T / sqrt(d)) v on lists of rows (one head)."""
    d = len(q[0])
    out = []
    for i, qi in enumerate(q):
        keys = [j for j in range(len(k)) if not causal or j <= i]
        scores = [sum(a * b for a, b in zip(qi, k[j], strict=True)) / math.sqrt(d) for j in keys]
        top = max(scores)
        w = [math.exp(s - top) for s in scores]
        total = sum(w)
        out.append([sum(w[n] * v[j][c] for n, j in enumerate(keys)) / total for c in range(len(v[0]))])
    return out


def make_inputs(case, dtype):
    rng = random.Random(case.q_len * 31 + case.kv_len + (dtype == "bf16"))

    def mat(rows):
        return [[rng.gauss(0, 1) for _ in range(case.head_dim)] for _ in range(rows)]

    return mat(case.q_len), mat(case.kv_len), mat(case.kv_len)


def reference(inputs, case):
    return attention(*inputs, case.causal)


CASES = [sp.SdpaCase(1, 1, 1, 1, 4, False), sp.SdpaCase(1, 1, 5, 5, 4, True), sp.SdpaCase(1, 1, 3, 7, 8, False)]


def good(q, k, v, causal):
    return attention(q, k, v, causal)


def scaled(q, k, v, causal):
    return [[x * 1.5 for x in row] for row in attention(q, k, v, causal)]


def with_nan(q, k, v, causal):
    out = attention(q, k, v, causal)
    out[-1][0] = math.nan
    return out


def slightly_noisy(q, k, v, causal):
    return [[x * (1 + 1e-4) for x in row] for row in attention(q, k, v, causal)]


def unavailable(q, k, v, causal):
    raise sp.BackendUnavailable("No available kernel. Aborting execution.")


def broken(q, k, v, causal):
    raise RuntimeError("CUDA error: no kernel image is available for execution on the device")


def suite(backends, **kw):
    results = sp.run_sdpa_suite(backends, CASES, ("fp16", "bf16"), make_inputs, reference, **kw)
    return {r.name: r for r in results}


def test_suite_catches_injected_wrong_backend():
    res = suite({"math": good, "wrong": scaled, "noisy": slightly_noisy})
    assert set(res) == {f"sdpa:{b}:{d}" for b in ("math", "wrong", "noisy") for d in ("fp16", "bf16")}
    for dtype in ("fp16", "bf16"):
        assert res[f"sdpa:math:{dtype}"].ok and not res[f"sdpa:math:{dtype}"].skipped
        assert res[f"sdpa:noisy:{dtype}"].ok
        wrong = res[f"sdpa:wrong:{dtype}"]
        assert not wrong.ok
        assert "3/3 cases failed" in wrong.detail and "norm ratio 1.5" in wrong.detail
        assert all(c["status"] == "fail" and abs(c["norm_ratio"] - 1.5) < 1e-9 for c in wrong.data["cases"])


def test_suite_catches_nan_backend():
    res = suite({"math": good, "nan": with_nan})
    assert not res["sdpa:nan:fp16"].ok
    assert "NaN/Inf" in res["sdpa:nan:fp16"].detail


def test_suite_unavailable_backend_is_skipped_not_failed():
    res = suite({"math": good, "flash": unavailable})
    flash = res["sdpa:flash:bf16"]
    assert flash.ok and flash.skipped
    assert "No available kernel" in flash.detail


def test_suite_required_backend_unavailable_fails():
    res = suite({"math": unavailable})
    assert not res["sdpa:math:fp16"].ok
    assert "required backend unavailable" in res["sdpa:math:fp16"].detail


def test_suite_backend_error_is_a_failure_not_a_crash():
    res = suite({"math": good, "flash": broken})
    assert not res["sdpa:flash:fp16"].ok
    assert "no kernel image" in res["sdpa:flash:fp16"].detail


def test_suite_partially_available_backend_passes_with_skips_noted():
    def some(q, k, v, causal):
        if causal:
            raise sp.BackendUnavailable("causal not supported")
        return attention(q, k, v, causal)

    res = suite({"math": good, "partial": some})["sdpa:partial:fp16"]
    assert res.ok and not res.skipped
    assert "2 cases passed" in res.detail and "1 skipped" in res.detail


def test_registry_has_the_four_backends_and_can_be_extended():
    assert list(sp.SDPA_BACKENDS)[:4] == ["math", "efficient", "flash", "cudnn"]
    saved = dict(sp.SDPA_BACKENDS)
    try:
        sp.register_sdpa_backend("wrong", scaled)
        assert sp.SDPA_BACKENDS["wrong"] is scaled
    finally:
        sp.SDPA_BACKENDS.clear()
        sp.SDPA_BACKENDS.update(saved)


def test_faults_add_backends_built_on_math():
    backends = sp.with_faults({"math": good}, sp.parse_faults("sdpa_scale, sdpa_nan"))
    assert set(backends) == {"math", "fault_scale", "fault_nan"}
    assert sp.parse_faults(None) == [] and sp.parse_faults("") == []
    with pytest.raises(sp.UsageError, match="unknown fault"):
        sp.parse_faults("sdpa_bogus")


@pytest.mark.parametrize("message, unavailable", [
    ("No available kernel. Aborting execution.", True),
    ("No viable backend for scaled_dot_product_attention was found.", True),
    ("Flash attention is not supported on this device", True),
    ("CUDA error: no kernel image is available for execution on the device", False),
    ("CUDA error: an illegal memory access was encountered", False),
    ("shape mismatch", False),
])
def test_unavailable_vs_hard_errors(message, unavailable):
    assert sp.looks_unavailable(message) is unavailable


def test_sdpa_cases_cover_the_required_shapes():
    assert {c.head_dim for c in sp.SDPA_CASES} == {64, 128}
    assert {1, 128, 1000} <= {c.q_len for c in sp.SDPA_CASES}
    assert {True, False} == {c.causal for c in sp.SDPA_CASES}
    assert all(c.q_len == c.kv_len for c in sp.SDPA_CASES if c.causal)


# ---------------------------------------------------------------------------------------------------------
# arch


@pytest.mark.parametrize("expected, arch_list, ok", [
    ("sm_121", ["sm_121"], True),
    ("sm_121", ["sm_121a"], True),
    ("sm_121", ["sm_80", "sm_90", "sm_121f"], True),
    ("sm_121", ["sm_120"], False),  # binary-compatible, but not what the image is labelled for
    ("sm_121", ["sm_120a", "compute_120"], False),
    ("sm_121", ["sm_12"], False),
    ("sm_121", ["sm_1210"], False),
    ("sm_121", [], False),
    ("sm_121a", ["sm_121"], False),
    ("sm_121a", ["sm_121a"], True),
    ("12.1", ["sm_121a"], True),
    ("12.1a", ["sm_121a"], True),
    ("sm_90", ["sm_80", "sm_90"], True),
    ("sm_90", ["sm_90a"], True),
])
def test_arch_matches(expected, arch_list, ok):
    assert sp.arch_matches(expected, arch_list)[0] is ok


def test_arch_ptx_only_is_not_accepted_and_says_why():
    ok, detail, data = sp.arch_matches("sm_121", ["sm_90", "compute_121"])
    assert not ok
    assert "only PTX" in detail
    assert data["ptx"] == ["compute_121"] and data["matched"] == []


def test_arch_parsing():
    assert sp.parse_arch("sm_121") == ("121", "")
    assert sp.parse_arch("SM_121a") == ("121", "a")
    assert sp.parse_arch("12.1") == ("121", "")
    assert sp.capability_to_arch((12, 1)) == "sm_121"
    assert sp.capability_to_arch((9, 0)) == "sm_90"
    for bad in ("sm121", "sm_12x", "auto", "gb10"):
        with pytest.raises(sp.UsageError):
            sp.parse_arch(bad)


# ---------------------------------------------------------------------------------------------------------
# versions


def test_nccl_label_matches_torch_tuple():
    assert sp.nccl_version_string((2, 29, 2)) == "2.29.2"
    ok, detail = sp.version_matches("nccl", "2.29.2-1", sp.nccl_version_string((2, 29, 2)))
    assert ok, detail
    assert sp.version_matches("nccl", "2.29.2-1+cuda13.1", "2.29.2")[0]
    assert not sp.version_matches("nccl", "2.29.3-1", "2.29.2")[0]
    assert not sp.version_matches("nccl", "2.29.2-1", "2.28.9")[0]


def test_nccl_version_codes():
    assert sp.nccl_version_string(22902) == "2.29.2"
    assert sp.nccl_version_string(2708) == "2.7.8"
    assert sp.nccl_version_string((2, 29, 2, "")) == "2.29.2"


@pytest.mark.parametrize("key, expected, actual, ok", [
    ("cuda", "13.1", "13.1", True),
    ("cuda", "13.1.0", "13.1", True),
    ("cuda", "13.1.1", "13.1", True),
    ("cuda", "13.0.2", "13.1", False),
    ("cuda", "13.1", None, False),
    ("torch", "2.10.0", "2.10.0", True),
    ("torch", "2.10.0", "2.10.0+cu130", True),
    ("torch", "2.10.0", "2.10.0a0+git1234abc", True),  # a source build without PYTORCH_BUILD_VERSION
    ("torch", "2.10.0", "2.10.1", False),
    ("torch", "2.10", "2.10.0", True),
    ("vllm", "0.15.0", "0.15.0+cu130", True),
    ("vllm", "v0.15.0", "0.15.0", True),
    ("vllm", "0.15.0", "0.15.1.dev3+g1234", False),
    ("vllm", "0.15.0", "0.15.0a0", False),  # the a0 allowance is torch's alone
    ("transformers", "5.0.0rc3", "5.0.0rc3", True),
    ("transformers", "5.0.0rc3", "5.0.0.rc3", True),
    ("transformers", "5.0.0", "5.0.0rc3", False),
    ("transformers", "5.0.0rc3", "5.0.0", False),
    ("flashinfer", "0.6.2", "0.6.2", True),
    ("triton", "3.5.1", "3.5.0", False),
])
def test_version_matches(key, expected, actual, ok):
    assert sp.version_matches(key, expected, actual)[0] is ok


def test_normalize_version():
    assert sp.normalize_version(" 2.29.2-1 ") == "2.29.2"
    assert sp.normalize_version("2.10.0+cu130") == "2.10.0"
    assert sp.normalize_version("V1.2") == "1.2"
    assert sp.split_version("5.0.0rc3") == ((5, 0, 0), "rc3")
    assert sp.split_version("0.15.1.dev3") == ((0, 15, 1), "dev3")


# ---------------------------------------------------------------------------------------------------------
# module checks


def test_module_check_rules():
    missing = {"ok": False, "missing": True, "error": "ModuleNotFoundError: No module named 'vllm'"}
    res = sp.module_check("vllm", missing, None, required=False)
    assert res.ok and res.skipped and "not installed" in res.detail
    assert not sp.module_check("vllm", missing, None, required=True).ok
    assert not sp.module_check("vllm", missing, "0.15.0", required=False).ok  # an expectation is a claim
    broken = {"ok": False, "missing": False, "error": "ImportError: undefined symbol: _ZN3c10"}
    res = sp.module_check("vllm", broken, None, required=False)
    assert not res.ok and "undefined symbol" in res.detail
    good_probe = {"ok": True, "version": "0.15.0+cu131"}
    assert sp.module_check("vllm", good_probe, "0.15.0", required=True).ok
    assert not sp.module_check("vllm", good_probe, "0.14.1", required=True).ok
    res = sp.module_check("vllm", good_probe, None, required=False)
    assert res.ok and not res.skipped


def test_probe_module_in_a_subprocess(tmp_path, monkeypatch):
    (tmp_path / "noisy_mod.py").write_text("print('banner on stdout')\n__version__ = '1.2.3'\n")
    (tmp_path / "broken_mod.py").write_text("import does_not_exist_xyz\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    res = sp.probe_module("noisy_mod")
    assert res["ok"] and res["version"] == "1.2.3"
    res = sp.probe_module("definitely_not_installed_xyz")
    assert not res["ok"] and res["missing"]
    res = sp.probe_module("broken_mod")
    assert not res["ok"] and not res["missing"] and "does_not_exist_xyz" in res["error"]
    res = sp.probe_module("noisy_mod", extras=("noisy_mod.sub",))
    assert not res["ok"] and not res["missing"]


# ---------------------------------------------------------------------------------------------------------
# arguments and report


def test_parse_args(monkeypatch):
    monkeypatch.delenv("SMOKE_FAULT", raising=False)
    args = sp.parse_args(["--arch", "sm_121", "--expect", "cuda=13.1", "--expect", "nccl=2.29.2-1,torch=2.10.0",
                          "--require", "vllm,flashinfer", "--require", "transformers", "--nccl-allreduce"])
    assert args.expect == {"cuda": "13.1", "nccl": "2.29.2-1", "torch": "2.10.0"}
    assert args.require == ["vllm", "flashinfer", "transformers"]
    assert args.nccl_allreduce and not args.skip_imports and args.faults == []
    assert sp.parse_args(["--arch", "auto"]).arch == "auto"


@pytest.mark.parametrize("argv", [
    [],
    ["--arch", "sm_12x"],
    ["--arch", "sm_121", "--expect", "cuda"],
    ["--arch", "sm_121", "--expect", "cudnn=9"],
    ["--arch", "sm_121", "--require", "torchvision"],
    ["--arch", "sm_121", "--bogus"],
])
def test_bad_usage_is_a_usage_error(argv):
    with pytest.raises(sp.UsageError):
        sp.parse_args(argv)
    report, code = sp.run_smoke(argv)
    assert code == 2 and report["usage_error"] and report["ok"] is False


def test_unknown_fault_is_bad_usage(monkeypatch):
    monkeypatch.setenv("SMOKE_FAULT", "nope")
    report, code = sp.run_smoke(["--arch", "sm_121"])
    assert code == 2 and "unknown fault" in report["usage_error"]


def test_report_ok_and_exit_code():
    passed = sp.CheckResult.passed("a", "fine")
    skipped = sp.CheckResult.skip("b", "not here")
    failed = sp.CheckResult.failed("c", "broken", value=math.nan)
    ok_report = sp.build_report([passed, skipped], {"gpus": []})
    assert ok_report["ok"] and sp.exit_code(ok_report) == 0
    assert ok_report["summary"] == {"passed": 1, "failed": 0, "skipped": 1}
    bad = sp.build_report([passed, skipped, failed], {})
    assert not bad["ok"] and sp.exit_code(bad) == 1
    json.dumps(bad, allow_nan=False)  # NaN in data became a string: strict JSON
    assert bad["checks"][2]["data"]["value"] == "nan"
    assert set(bad["checks"][0]) == {"name", "ok", "skipped", "detail", "data"}
    assert not sp.build_report([], {})["ok"]  # no checks proves nothing


# ---------------------------------------------------------------------------------------------------------
# The program as a process


def test_no_torch_gives_json_report_and_exit_1(tmp_path):
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch blocked by the test')\n")
    proc, report = run_program("--arch", "sm_121", "--skip-imports", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    assert report["ok"] is False
    checks = by_name(report)
    assert not checks["torch_import"]["ok"] and "torch blocked" in checks["torch_import"]["detail"]
    assert checks["sdpa"]["skipped"]
    assert "Traceback" not in proc.stdout


def test_no_gpu_gives_json_report_and_exit_1():
    # With this interpreter's torch (or without torch, as in the project venv) and no GPU visible.
    proc, report = run_program("--arch", "sm_121", "--skip-imports", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 1, proc.stderr
    assert report["ok"] is False and report["schema"] == 1
    checks = by_name(report)
    if checks["torch_import"]["ok"]:
        assert not checks["gpu_visible"]["ok"] or not checks["torch_cuda_build"]["ok"]
    else:
        assert "torch" in checks["torch_import"]["detail"]
    for name in ("sdpa", "matmul", "triton:vector_add"):
        assert checks[name]["skipped"]
    assert report["host"]["gpu_count"] == 0


def test_bad_usage_exit_2_with_json():
    proc, report = run_program("--arch", "sm_12x")
    assert proc.returncode == 2
    assert "sm_12x" in report["usage_error"]
    assert "usage" in proc.stderr


def test_missing_required_module_fails(tmp_path):
    proc, report = run_program("--arch", "sm_121", "--require", "vllm", env={"CUDA_VISIBLE_DEVICES": ""})
    checks = by_name(report)
    if checks["import:vllm"]["data"].get("missing"):
        assert not checks["import:vllm"]["ok"] and "required" in checks["import:vllm"]["detail"]
    assert proc.returncode == 1


# ---------------------------------------------------------------------------------------------------------
# With torch tensors (CPU)


def test_torch_tensor_stats_match_the_list_path():
    torch = pytest.importorskip("torch")
    ref = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    out = ref * 1.001
    a = sp.error_stats(out, ref)
    b = sp.error_stats(out.tolist(), ref.tolist())
    for key in ("max_abs", "rel_norm", "norm_ratio"):
        assert a[key] == pytest.approx(b[key], rel=1e-9)
    out[1, 2] = float("nan")
    assert sp.error_stats(out, ref)["nonfinite"] == 1


def test_torch_cpu_sdpa_catches_scaled_and_nan_backends():
    torch = pytest.importorskip("torch")
    cases = [sp.SdpaCase(1, 2, 1, 16, 64, False), sp.SdpaCase(1, 2, 32, 32, 64, True)]
    backends = sp.with_faults({"math": sp.SDPA_BACKENDS["math"]}, ["sdpa_scale", "sdpa_nan"])
    res = {r.name: r for r in sp.run_sdpa_checks(torch, "cpu", backends, cases=cases)}
    for dtype in ("fp16", "bf16"):
        assert res[f"sdpa:math:{dtype}"].ok, res[f"sdpa:math:{dtype}"].detail
        scale = res[f"sdpa:fault_scale:{dtype}"]
        assert not scale.ok and "norm ratio 1.5" in scale.detail
        assert not res[f"sdpa:fault_nan:{dtype}"].ok


def test_torch_cpu_matmul_passes():
    torch = pytest.importorskip("torch")
    for res in sp.run_matmul_checks(torch, "cpu"):
        assert res.ok, res.detail


# ---------------------------------------------------------------------------------------------------------
# On a GPU


@pytest.mark.gpu
@requires_gpu
def test_gpu_program_passes_on_this_gpu():
    proc, report = run_program("--arch", "auto", "--skip-imports", "--nccl-allreduce")
    checks = by_name(report)
    failed = {n: c["detail"] for n, c in checks.items() if not c["ok"]}
    assert proc.returncode == 0 and report["ok"], failed
    for dtype in ("fp16", "bf16"):
        assert checks[f"sdpa:math:{dtype}"]["ok"] and not checks[f"sdpa:math:{dtype}"]["skipped"]
    assert checks["nccl:allreduce"]["ok"] and not checks["nccl:allreduce"]["skipped"]


@pytest.mark.gpu
@requires_gpu
def test_gpu_program_fails_with_injected_fault():
    proc, report = run_program("--arch", "auto", "--skip-imports", env={"SMOKE_FAULT": "sdpa_scale"})
    assert proc.returncode == 1 and not report["ok"]
    assert report["host"]["fault"] == "sdpa_scale"
    checks = by_name(report)
    for dtype in ("fp16", "bf16"):
        assert not checks[f"sdpa:fault_scale:{dtype}"]["ok"]
        assert "norm ratio 1.5" in checks[f"sdpa:fault_scale:{dtype}"]["detail"]
        assert checks[f"sdpa:math:{dtype}"]["ok"]
    assert [n for n, c in checks.items() if not c["ok"]] == ["sdpa:fault_scale:fp16", "sdpa:fault_scale:bf16"]


@pytest.mark.gpu
@requires_gpu
def test_gpu_in_process_wrong_backend_is_caught():
    import torch

    math_backend = sp.SDPA_BACKENDS["math"]
    backends = {"math": math_backend, "flash": sp.SDPA_BACKENDS["flash"],
                "wrong": lambda q, k, v, c: math_backend(q, k, v, c) * 1.5}
    res = {r.name: r for r in sp.run_sdpa_checks(torch, "cuda", backends, cases=sp.SDPA_CASES[:3])}
    assert res["sdpa:math:bf16"].ok
    assert res["sdpa:flash:bf16"].ok  # passes or is skipped as unavailable
    assert not res["sdpa:wrong:bf16"].ok and not res["sdpa:wrong:fp16"].ok


@pytest.mark.gpu
@requires_gpu
def test_gpu_triton_vector_add():
    import torch

    pytest.importorskip("triton")
    res = sp.run_triton_check(torch, "cuda", required=True)
    assert res.ok, res.detail
