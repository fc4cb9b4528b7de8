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

ROOT = Path(__file__).resolve().parents[2]
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


def test_flash_faults_replace_the_flash_backend():
    base = {"math": good, "flash": good}
    causal = sp.with_faults(base, ["flash_causal_unavailable"])
    assert set(causal) == {"math", "flash"} and causal["math"] is good and causal["flash"] is not good
    q = k = v = [[1.0, 0.0]]
    assert causal["flash"](q, k, v, False) == good(q, k, v, False)
    with pytest.raises(sp.BackendUnavailable, match="No available kernel.*flash_causal_unavailable"):
        causal["flash"](q, k, v, True)
    every = sp.with_faults(base, ["flash_unavailable"])
    for is_causal in (False, True):
        with pytest.raises(sp.BackendUnavailable, match="flash_unavailable"):
            every["flash"](q, k, v, is_causal)
    assert sp.with_faults({"math": good}, ["flash_unavailable"]) == {"math": good}  # no flash: no change
    assert sp.looks_unavailable("No available kernel. Aborting execution. (SMOKE_FAULT=flash_unavailable)")


def test_flash_causal_fault_passes_silently_without_an_expectation():
    # The failure this guards against: a GPU fault made causal flash attention unavailable and the run passed.
    res = suite(sp.with_faults({"math": good, "flash": good}, ["flash_causal_unavailable"]))
    flash = res["sdpa:flash:fp16"]
    assert flash.ok and not flash.skipped and "1 skipped" in flash.detail


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
# SDPA availability: baseline report and built-in expectation

LABELS = [c.label for c in CASES]
CAUSAL = [c.label for c in CASES if c.causal]


def expect_all(backend, source="baseline b.json", dtypes=("fp16", "bf16")):
    return sp.merge_expectations([(source, {f"sdpa:{backend}:{d}": LABELS for d in dtypes})])


def test_expected_case_skipped_as_unavailable_fails_with_a_clear_detail():
    results = list(suite(sp.with_faults({"math": good, "flash": good}, ["flash_causal_unavailable"])).values())
    out, summary = sp.enforce_availability(results, expect_all("flash", dtypes=("fp16",)), ["baseline b.json"])
    res = {r.name: r for r in out}
    flash = res["sdpa:flash:fp16"]
    assert not flash.ok
    assert flash.detail.startswith(
        f"1/3 cases failed; {CAUSAL[0]}: unavailable, but expected to run by baseline b.json")
    assert "No available kernel" in flash.detail
    failed = [c for c in flash.data["cases"] if c["status"] == "fail"]
    assert [c["case"] for c in failed] == CAUSAL and failed[0]["expected_by"] == ["baseline b.json"]
    assert res["sdpa:flash:bf16"].ok  # not expected in bf16: still a skip
    assert not summary.ok and summary.name == "sdpa:availability"
    assert f"sdpa:flash:fp16 {CAUSAL[0]}" in summary.detail and "baseline b.json" in summary.detail
    assert summary.data["violations"] == [f"sdpa:flash:fp16 {CAUSAL[0]}"]
    assert summary.data["enforced"] == 3
    assert [r.name for r in out] == [r.name for r in results]  # same checks, same order


def test_wholly_unavailable_backend_fails_when_expected():
    results = list(suite({"math": good, "flash": unavailable}).values())
    assert results[1].skipped  # without an expectation: a skip
    builtin = "the built-in sm_90 expectation"
    out, summary = sp.enforce_availability(results, expect_all("flash", source=builtin), [builtin])
    flash = {r.name: r for r in out}["sdpa:flash:bf16"]
    assert not flash.ok and not flash.skipped and "3/3 cases failed" in flash.detail
    assert "expected to run by the built-in sm_90 expectation" in flash.detail
    assert not summary.ok and "6 case(s)" in summary.detail and "and 2 more" in summary.detail


def test_expected_cases_that_ran_pass_and_failures_stay_failures():
    results = list(suite({"math": good, "flash": good, "wrong": scaled}).values())
    expected = sp.merge_expectations([("baseline b.json", {"sdpa:flash:fp16": LABELS, "sdpa:wrong:fp16": LABELS,
                                                           "sdpa:flash:fp16x": ["other"]}),
                                      ("the built-in sm_90 expectation", {"sdpa:flash:fp16": LABELS[:1]})])
    assert expected["sdpa:flash:fp16"][LABELS[0]] == ["baseline b.json", "the built-in sm_90 expectation"]
    out, summary = sp.enforce_availability(results, expected, ["baseline b.json", "the built-in sm_90 expectation"])
    assert [r.ok for r in out] == [r.ok for r in results] and out[1] is results[1]
    assert not {r.name: r for r in out}["sdpa:wrong:fp16"].ok  # numerics failures are untouched
    assert summary.ok and summary.detail.startswith("all 6 expected case(s) ran")
    assert summary.data["not_run"] == ["sdpa:flash:fp16x other"]
    assert "1 expected case(s) not in this run" in summary.detail


def test_no_expectation_is_a_skip_and_problems_fail():
    results = list(suite({"math": good}).values())
    out, summary = sp.enforce_availability(results, {})
    assert summary.skipped and "only skipped" in summary.detail and out == results
    _, summary = sp.enforce_availability(results, {}, problems=["baseline b.json ran on sm_90, this GPU is sm_121"])
    assert not summary.ok and "sm_90" in summary.detail


def test_builtin_expectation_keys():
    assert sp.builtin_expectation_key("sm_90") == "sm_90"
    assert sp.builtin_expectation_key("sm_121") == "sm_12x"
    assert sp.builtin_expectation_key("sm_120") == "sm_12x"
    for gpu in ("sm_100", "sm_89", "sm_80", "sm_103", None, "", "bogus"):
        assert sp.builtin_expectation_key(gpu) is None
    assert sp.builtin_availability("sm_100") == {}
    b = sp.builtin_availability("sm_121")
    assert set(b) == {f"sdpa:{x}:{d}" for x in ("efficient", "flash") for d in ("fp16", "bf16")}
    assert all(b[k] == [c.label for c in sp.SDPA_CASES] for k in b)


def test_builtin_sm90_expectation_is_what_the_recorded_sm90_runs_show():
    # Every backend ran every case on the H100 / H200 except cuDNN's single-key case; the built-in sm_90
    # expectation is exactly that (math is required anyway).
    for path in sorted((ROOT / "docs" / "smoke").glob("h[12]00*.json")):
        report = json.loads(path.read_text())
        if report["host"].get("fault") or report["host"]["gpus"][0]["capability"] != "sm_90":
            continue
        seen = {k: v for k, v in sp.availability_from_report(report).items() if not k.startswith("sdpa:math:")}
        assert seen == sp.builtin_availability("sm_90"), path.name


def test_availability_from_report_takes_passed_sdpa_cases_only():
    report = {"host": {"gpus": [{"capability": "sm_90"}]}, "checks": [
        {"name": "sdpa:flash:fp16", "data": {"cases": [{"case": "a", "status": "pass"},
                                                       {"case": "b", "status": "skip"},
                                                       {"case": "c", "status": "fail"}]}},
        {"name": "sdpa:cudnn:fp16", "ok": True, "skipped": True, "data": {"cases": [{"case": "a", "status": "skip"}]}},
        {"name": "sdpa", "data": {"cases": [{"case": "a", "status": "pass"}]}},
        {"name": "matmul:fp16", "data": {"cases": [{"case": "a", "status": "pass"}]}},
        {"name": "sdpa:availability", "data": {}},
        "junk",
    ]}
    assert sp.availability_from_report(report) == {"sdpa:flash:fp16": ["a"]}
    assert sp.report_gpu_arch(report) == "sm_90"
    assert sp.report_gpu_arch({"host": {"gpus": []}}) is None and sp.report_gpu_arch({}) is None


def test_sdpa_expectations_combines_builtin_and_baseline_and_refuses_another_gpu():
    baseline = {"host": {"gpus": [{"capability": "sm_121"}]},
                "checks": [{"name": "sdpa:cudnn:bf16", "data": {"cases": [{"case": "x", "status": "pass"}]}}]}
    expected, sources, problems = sp.sdpa_expectations("sm_121", True, baseline, "good.json")
    assert sources == ["the built-in sm_12x expectation", "baseline good.json (sm_121)"] and problems == []
    assert expected["sdpa:cudnn:bf16"] == {"x": ["baseline good.json (sm_121)"]}
    assert "sdpa:flash:fp16" in expected
    expected, sources, problems = sp.sdpa_expectations("sm_121", False, None, None)
    assert expected == {} and sources == [] and problems == []
    expected, sources, problems = sp.sdpa_expectations("sm_90", False, baseline, "good.json")
    assert expected == {} and sources == []
    assert problems and "ran on sm_121, this GPU is sm_90" in problems[0]


def test_load_baseline(tmp_path):
    good_report = tmp_path / "good.json"
    good_report.write_text(json.dumps({"checks": []}))
    assert sp.load_baseline(str(good_report)) == {"checks": []}
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "other.json").write_text("[1, 2]")
    for name, message in (("missing.json", "No such file"), ("bad.json", "not JSON"), ("other.json", "not a smoke")):
        with pytest.raises(sp.UsageError, match=message):
            sp.load_baseline(str(tmp_path / name))


def test_parse_args_baseline(monkeypatch):
    monkeypatch.delenv("SMOKE_FAULT", raising=False)
    args = sp.parse_args(["--arch", "sm_90"])
    assert args.baseline is None and args.baseline_report is None and args.builtin_baseline is True
    path = str(ROOT / "docs" / "smoke" / "h100-report.json")
    args = sp.parse_args(["--arch", "sm_90", "--baseline", path, "--no-builtin-baseline"])
    assert args.baseline == path and args.baseline_report["host"]["gpus"][0]["capability"] == "sm_90"
    assert args.builtin_baseline is False
    report, code = sp.run_smoke(["--arch", "sm_90", "--baseline", "/nonexistent/report.json"])
    assert code == 2 and "--baseline /nonexistent/report.json" in report["usage_error"]


# ---------------------------------------------------------------------------------------------------------
# arch


#: torch.cuda.get_arch_list() of PyPI's torch 2.14.0 aarch64 wheel (SASS only, no sm_121, no PTX) and of the
#: torch 2.11.0+cu130 x86_64 wheel on the H100/H200 hosts (docs/smoke/*.json).
PYPI_TORCH_2_14_AARCH64 = ["sm_80", "sm_90", "sm_100", "sm_110", "sm_120"]
H100_TORCH_2_11 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


@pytest.mark.parametrize("entry, gpu, ok", [
    ("sm_121", "sm_121", True),
    ("sm_120", "sm_121", True),  # same major, lower minor: binary compatible
    ("sm_121", "sm_120", False),  # never backwards within a major
    ("sm_80", "sm_86", True),
    ("sm_86", "sm_80", False),
    ("sm_90", "sm_121", False),  # SASS never crosses a major
    ("sm_121", "sm_90", False),
    ("sm_120", "sm_90", False),
    ("sm_100", "sm_110", False),
    ("sm_120a", "sm_120", True),  # arch-specific: exactly that CC
    ("sm_120a", "sm_121", False),
    ("sm_90a", "sm_90", True),
    ("sm_121a", "sm_121", True),
    ("sm_120f", "sm_121", True),  # family-specific: same major, minor >= 0
    ("sm_100f", "sm_103", True),
    ("sm_100f", "sm_110", False),
    ("sm_121f", "sm_120", False),
    ("compute_120", "sm_121", True),  # PTX: any CC >= 12.0
    ("compute_90", "sm_121", True),
    ("compute_80", "sm_90", True),
    ("compute_121", "sm_120", False),
    ("compute_121", "sm_90", False),
    ("compute_120a", "sm_121", False),  # arch-specific PTX: exactly 12.0
    ("compute_120a", "sm_120", True),
    ("compute_120f", "sm_121", True),  # family PTX: same major, minor >= 0
    ("compute_100f", "sm_120", False),
    ("sm_12", "sm_121", False),  # one digit: sm_1.2, not a 12.x target
    ("sm_1210", "sm_121", False),
    ("gfx942", "sm_121", False),
    ("sm_120", "compute_121", False),  # a GPU is sm_XY
    ("sm_120", "sm_121a", False),
])
def test_code_runs_on_follows_cuda_binary_compatibility(entry, gpu, ok):
    result, why = sp.code_runs_on(entry, gpu)
    assert result is ok, why
    if "not a" not in why:
        assert ("does not run" in why) is (not ok) and entry in why and gpu in why


def test_parse_target():
    assert sp.parse_target("sm_121") == ("sm", 12, 1, "")
    assert sp.parse_target("SM_120a") == ("sm", 12, 0, "a")
    assert sp.parse_target("compute_90") == ("compute", 9, 0, "")
    assert sp.parse_target("sm_75") == ("sm", 7, 5, "")
    assert sp.parse_target("sm_100f") == ("sm", 10, 0, "f")
    for bad in ("sm_1", "sm121", "sm_12x", "gfx90a", "", "sm_90b"):
        assert sp.parse_target(bad) is None


@pytest.mark.parametrize("expected, arch_list, ok, best", [
    ("sm_121", ["sm_121"], True, "sm_121"),
    ("sm_121", ["sm_121a"], True, "sm_121a"),
    ("sm_121", ["sm_80", "sm_90", "sm_121f"], True, "sm_121f"),
    ("sm_121", ["sm_120"], True, "sm_120"),  # binary-compatible SASS
    ("sm_121", PYPI_TORCH_2_14_AARCH64, True, "sm_120"),
    ("sm_121", H100_TORCH_2_11, True, "sm_120"),
    ("sm_121", ["sm_120", "sm_121"], True, "sm_121"),  # exact SASS first
    ("sm_121", ["compute_120", "sm_120"], True, "sm_120"),  # SASS before PTX
    ("sm_121", ["sm_120a"], False, None),  # arch-specific: only on 12.0
    ("sm_121", ["sm_120a", "compute_120"], True, "compute_120"),  # runs through PTX (JIT)
    ("sm_121", ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100"], False, None),  # nothing for 12.x, no PTX
    ("sm_121", ["sm_90", "sm_100", "sm_110", "compute_120a"], False, None),
    ("sm_121", ["sm_90", "compute_121a"], True, "compute_121a"),
    ("sm_121", ["sm_12"], False, None),
    ("sm_121", ["sm_1210"], False, None),
    ("sm_121", [], False, None),
    ("sm_121a", ["sm_121"], False, None),  # an 'a' build target needs exactly that entry
    ("sm_121a", ["sm_121a"], True, "sm_121a"),
    ("12.1", ["sm_121a"], True, "sm_121a"),
    ("12.1a", ["sm_121a"], True, "sm_121a"),
    ("sm_90", ["sm_80", "sm_90"], True, "sm_90"),
    ("sm_90", ["sm_90a"], True, "sm_90a"),
    ("sm_90", ["sm_80", "sm_86"], False, None),
    ("sm_90", ["sm_80", "compute_80"], True, "compute_80"),
    ("sm_120", ["sm_121"], False, None),
])
def test_arch_matches(expected, arch_list, ok, best):
    result, detail, data = sp.arch_matches(expected, arch_list)
    assert result is ok, detail
    assert data["best"] == best


def test_arch_list_names_the_entry_that_makes_the_gpu_runnable():
    ok, detail, data = sp.arch_matches("sm_121", PYPI_TORCH_2_14_AARCH64)
    assert ok and detail.startswith("sm_120 SASS runs on sm_121")
    assert data["matched"] == ["sm_120"] and data["ptx"] == []
    ok, detail, data = sp.arch_matches("sm_121", ["sm_90", "compute_121"])
    assert ok and "compute_121 PTX" in detail and "JIT" in detail
    assert data["ptx"] == ["compute_121"] and data["matched"] == []
    ok, detail, _ = sp.arch_matches("sm_121", ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100"])
    assert not ok and detail.startswith("nothing in torch arch list")


@pytest.mark.parametrize("expected, gpus, arch_list, ok, text", [
    ("sm_121", ["sm_121"], PYPI_TORCH_2_14_AARCH64, True, "all GPUs are sm_121"),
    ("sm_121", ["sm_121", "sm_121"], ["sm_121a"], True, "all GPUs are sm_121"),
    ("sm_120", ["sm_121"], PYPI_TORCH_2_14_AARCH64, True, "sm_120 SASS runs on sm_121"),
    ("sm_121", ["sm_120"], PYPI_TORCH_2_14_AARCH64, False, "sm_121 SASS does not run on sm_120"),
    ("sm_121", ["sm_90"], H100_TORCH_2_11, False, "GPU 0 is sm_90: sm_121 SASS does not run on sm_90"),
    ("sm_90", ["sm_121"], PYPI_TORCH_2_14_AARCH64, False, "sm_90 SASS does not run on sm_121"),
    ("sm_121", ["sm_121"], ["sm_80", "sm_90"], False, "nothing in torch arch list"),
    ("sm_121a", ["sm_121"], ["sm_121a"], True, "all GPUs are sm_121"),
    ("sm_120a", ["sm_121"], ["sm_120a", "sm_120"], False, "sm_120a SASS does not run on sm_121"),
    ("sm_90", ["sm_90", "sm_121"], H100_TORCH_2_11, False, "GPU 1 is sm_121"),
])
def test_gpu_arch_matches(expected, gpus, arch_list, ok, text):
    result, detail, data = sp.gpu_arch_matches(expected, gpus, arch_list)
    assert result is ok, detail
    assert text in detail
    assert data["gpus"] == gpus and len(data["per_gpu"]) == len(gpus)


def test_h100_as_sm121_report_under_the_binary_compatibility_policy():
    # The recorded run (old policy) failed arch_list and gpu_arch.  Under the policy the H100 torch's sm_120
    # SASS runs on sm_121, so arch_list passes; the GPU (sm_90) still cannot run sm_121 code: gpu_arch fails.
    report = json.loads((ROOT / "docs" / "smoke" / "h100-as-sm121-report.json").read_text())
    arch_list = report["host"]["arch_list"]
    assert sp.arch_matches("sm_121", arch_list)[0]
    ok, detail, _ = sp.gpu_arch_matches("sm_121", [g["capability"] for g in report["host"]["gpus"]], arch_list)
    assert not ok and "sm_90" in detail


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


#: The vllm/*.so files of the real wheels (vllm-0.17.0-cp38-abi3-manylinux_2_31_x86_64.whl and
#: vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl, listed with zipfile): 0.33 has no vllm/_C.abi3.so.
VLLM_0_17_SO = ["_C.abi3.so", "_flashmla_C.abi3.so", "_flashmla_extension_C.abi3.so", "_moe_C.abi3.so",
                "cumem_allocator.abi3.so"]
VLLM_0_33_SO = ["_C_stable_libtorch.abi3.so", "_deepselect_C.abi3.so", "_flashkda_C.abi3.so", "_flashmla_C.abi3.so",
                "_flashmla_extension_C.abi3.so", "_moe_C_stable_libtorch.abi3.so", "_qutlass_C.abi3.so",
                "cumem_allocator.abi3.so", "fs_io_C.abi3.so", "spinloop.abi3.so"]


def fake_package(root, name, files, version="0.33.0"):
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"__version__ = {version!r}\n")
    for f in files:
        (pkg / f).write_bytes(b"not an ELF file" if f.endswith(".so") else b"")
    return pkg


@pytest.mark.parametrize("files, modules", [(VLLM_0_17_SO, ["vllm._C"]),
                                            (VLLM_0_33_SO, ["vllm._C_stable_libtorch"])],
                         ids=["vllm-0.17", "vllm-0.33"])
def test_vllm_extension_is_the_one_the_release_ships(tmp_path, monkeypatch, files, modules):
    fake_package(tmp_path, "vllm", files)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    res = sp.probe_module("vllm", ext_glob=sp.MODULE_EXTENSIONS["vllm"])
    assert res["extension_modules"] == modules
    assert res["extension_files"] == [m.split(".")[1] + ".abi3.so" for m in modules]
    # these fake .so files cannot load: a failure naming the file, never "No module named 'vllm._C'"
    assert not res["ok"] and not res["missing"]
    assert res["extension_files"][0] in res["error"] and "No module named" not in res["error"]
    check = sp.module_check("vllm", res, None, required=True)
    assert not check.ok and check.detail.startswith("import vllm failed: ImportError")


def test_module_without_its_compiled_extension_fails(tmp_path, monkeypatch):
    fake_package(tmp_path, "vllm", ["_moe_C.abi3.so", "cumem_allocator.abi3.so"])
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    res = sp.probe_module("vllm", ext_glob="_C*.so")
    assert not res["ok"] and not res["missing"] and res["extension_modules"] == []
    assert "no compiled extension vllm/_C*.so in " in res["error"]
    assert not sp.module_check("vllm", res, None, required=False).ok  # installed but broken: never a skip


def test_module_with_importable_extensions_passes_and_says_which(tmp_path, monkeypatch):
    fake_package(tmp_path, "fakevllm", ["_C_stable_libtorch.py", "_C.py", "_moe_C.py"])
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    res = sp.probe_module("fakevllm", ext_glob="_C*.py")
    assert res["ok"], res
    assert res["extension_modules"] == ["fakevllm._C", "fakevllm._C_stable_libtorch"]
    check = sp.module_check("fakevllm", res, "0.33.0", required=True)
    assert check.ok and "compiled extension fakevllm._C, fakevllm._C_stable_libtorch imports" in check.detail
    missing = sp.probe_module("definitely_not_installed_xyz", ext_glob="_C*.so")
    assert missing["missing"] and sp.module_check("definitely_not_installed_xyz", missing, None, False).skipped


def test_only_vllm_has_a_compiled_extension_requirement():
    assert sp.MODULE_EXTENSIONS == {"vllm": "_C*.so"}
    assert "vllm._C" not in str(sp.MODULE_EXTRA_IMPORTS)


# ---------------------------------------------------------------------------------------------------------
# The whole program in-process with a fake torch: arch policy, faults and availability wired together


class _FakeTensor:
    def __init__(self, values):
        self.values = values

    def __mul__(self, other):
        return _FakeTensor([v * other for v in self.values])

    def __add__(self, other):
        return _FakeTensor([v + other for v in self.values])

    def sum(self):
        return sum(self.values)


def _fake_torch(capability, arch_list, name):
    from types import ModuleType, SimpleNamespace

    torch = ModuleType("torch")
    torch.__version__ = "2.14.0"
    torch.__file__ = "/fake/torch/__init__.py"
    torch.float32 = "float32"
    torch.version = SimpleNamespace(cuda="13.0", git_version="fake")
    torch.backends = SimpleNamespace(cudnn=SimpleNamespace(version=lambda: 91900),
                                     cuda=SimpleNamespace(is_built=lambda: True))
    props = SimpleNamespace(name=name, major=capability[0], minor=capability[1], total_memory=2**37,
                            multi_processor_count=48)
    torch.cuda = SimpleNamespace(is_available=lambda: True, device_count=lambda: 1,
                                 get_device_properties=lambda i: props, get_arch_list=lambda: list(arch_list),
                                 nccl=SimpleNamespace(version=lambda: (2, 29, 2)))
    torch.arange = lambda n, device=None, dtype=None: _FakeTensor([float(i) for i in range(n)])
    return torch


@pytest.fixture
def fake_gpu(monkeypatch):
    """fake_gpu(capability, arch_list) puts a fake torch with that GPU in place; SDPA runs on lists."""
    monkeypatch.delenv("SMOKE_FAULT", raising=False)
    monkeypatch.setattr(sp, "SDPA_BACKENDS", {"math": good, "efficient": good, "flash": good,
                                              "cudnn": unavailable})
    monkeypatch.setattr(sp, "run_sdpa_checks", lambda torch, device, backends: sp.run_sdpa_suite(
        backends, CASES, ("fp16", "bf16"), make_inputs, reference))
    monkeypatch.setattr(sp, "SDPA_EXPECTED_AVAILABLE", {"sm_90": {"flash": tuple(LABELS)},
                                                        "sm_12x": {"efficient": tuple(LABELS),
                                                                   "flash": tuple(LABELS)}})
    monkeypatch.setattr(sp, "run_matmul_checks", lambda torch, device: [])
    monkeypatch.setattr(sp, "run_triton_check", lambda torch, device, required: sp.CheckResult.passed(
        "triton:vector_add", "fake"))

    def install(capability=(12, 1), arch_list=PYPI_TORCH_2_14_AARCH64, name="NVIDIA GB10"):
        monkeypatch.setitem(sys.modules, "torch", _fake_torch(capability, arch_list, name))

    return install


def run_fake(*argv, fault=None, monkeypatch=None):
    if fault:
        monkeypatch.setenv("SMOKE_FAULT", fault)
    report, code = sp.run_smoke(["--skip-imports", *argv])
    json.dumps(report, allow_nan=False)
    return report, code, by_name(report), sorted(n for n, c in by_name(report).items() if not c["ok"])


def test_fake_gb10_with_pypi_torch_passes_through_sm120_sass(fake_gpu, monkeypatch):
    fake_gpu()
    report, code, checks, failed = run_fake("--arch", "sm_121")
    assert code == 0 and failed == [], failed
    assert checks["arch_list"]["detail"].startswith("sm_120 SASS runs on sm_121")
    assert checks["arch_list"]["data"]["best"] == "sm_120"
    assert checks["gpu_arch"]["detail"] == "all GPUs are sm_121"
    avail = checks["sdpa:availability"]
    assert avail["ok"] and not avail["skipped"] and "the built-in sm_12x expectation" in avail["detail"]
    assert checks["sdpa:cudnn:fp16"]["skipped"]  # not expected on sm_12x: unavailable is a skip
    assert report["args"]["builtin_baseline"] is True and report["args"]["baseline"] is None


def test_fake_gb10_flash_fault_fails_against_the_builtin_expectation(fake_gpu, monkeypatch):
    fake_gpu()
    report, code, checks, failed = run_fake("--arch", "sm_121", fault="flash_causal_unavailable",
                                            monkeypatch=monkeypatch)
    assert code == 1 and report["host"]["fault"] == "flash_causal_unavailable"
    assert failed == ["sdpa:availability", "sdpa:flash:bf16", "sdpa:flash:fp16"]
    assert "expected to run by the built-in sm_12x expectation" in checks["sdpa:flash:fp16"]["detail"]


def test_fake_gb10_flash_fault_against_a_baseline_report(fake_gpu, monkeypatch, tmp_path):
    fake_gpu()
    good_report, code, _, _ = run_fake("--arch", "sm_121")
    assert code == 0
    baseline = tmp_path / "good.json"
    baseline.write_text(json.dumps(good_report))
    # without any expectation the fault passes as skips: the hole the baseline closes
    _, code, checks, _ = run_fake("--arch", "sm_121", "--no-builtin-baseline", fault="flash_causal_unavailable",
                                  monkeypatch=monkeypatch)
    assert code == 0 and checks["sdpa:availability"]["skipped"]
    assert "1 skipped" in checks["sdpa:flash:fp16"]["detail"]
    report, code, checks, failed = run_fake("--arch", "sm_121", "--no-builtin-baseline", "--baseline",
                                            str(baseline), fault="flash_causal_unavailable",
                                            monkeypatch=monkeypatch)
    assert code == 1 and failed == ["sdpa:availability", "sdpa:flash:bf16", "sdpa:flash:fp16"]
    assert f"expected to run by baseline {baseline} (sm_121)" in checks["sdpa:flash:bf16"]["detail"]
    assert report["args"]["baseline"] == str(baseline) and report["args"]["builtin_baseline"] is False


def test_fake_h100_as_sm121_fails_gpu_arch_only(fake_gpu, monkeypatch, tmp_path):
    fake_gpu((9, 0), H100_TORCH_2_11, "NVIDIA H100 80GB HBM3")
    _, code, checks, failed = run_fake("--arch", "sm_121")
    assert code == 1 and failed == ["gpu_arch"]
    assert checks["arch_list"]["ok"]  # the H100 torch's sm_120 SASS would run on an sm_121 GPU
    assert "GPU 0 is sm_90: sm_121 SASS does not run on sm_90" in checks["gpu_arch"]["detail"]
    # a baseline from another GPU arch proves nothing about this one
    gb10 = {"host": {"gpus": [{"capability": "sm_121"}]}, "checks": []}
    (tmp_path / "gb10.json").write_text(json.dumps(gb10))
    _, code, checks, failed = run_fake("--arch", "sm_90", "--baseline", str(tmp_path / "gb10.json"))
    assert failed == ["sdpa:availability"] and "ran on sm_121, this GPU is sm_90" in checks["sdpa:availability"][
        "detail"]


def test_fake_gb10_with_nothing_for_sm12x_fails_arch_list(fake_gpu):
    fake_gpu(arch_list=["sm_80", "sm_90", "sm_100"])
    _, code, checks, failed = run_fake("--arch", "sm_121")
    assert code == 1 and failed == ["arch_list", "gpu_arch"]
    assert checks["arch_list"]["detail"].startswith("nothing in torch arch list")


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


def test_module_check_without_a_driver_skips_only_a_missing_libcuda():
    """Seen in the real e2e image: vLLM 0.33's extension links libcuda.so.1, which only a GPU host provides."""
    driverless = {"ok": False, "missing": False,
                  "error": "ImportError: libcuda.so.1: cannot open shared object file: No such file or directory"}
    skipped = sp.module_check("vllm", driverless, "0.33.0", required=True, driver=False)
    assert skipped.ok and skipped.skipped and "libcuda.so.1" in skipped.detail
    # with a GPU the same failure is a failure, and without one any other import error still is
    assert not sp.module_check("vllm", driverless, "0.33.0", required=True, driver=True).ok
    other = {"ok": False, "missing": False, "error": "ImportError: libcudart.so.12: cannot open shared object file"}
    assert not sp.module_check("vllm", other, "0.33.0", required=True, driver=False).ok
