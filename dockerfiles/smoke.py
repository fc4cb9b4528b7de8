#!/usr/bin/env python3
"""GPU smoke test for a vLLM image: "does this image compute right?".

Copied into every vLLM image at /opt/factory/smoke.py and run before a tag is published; it also runs with
any Python (3.10+) that has torch.  Standard library + torch; triton, vllm, flashinfer and transformers are
optional.  It prints ONE JSON report on stdout and exits

    0  every check passed (skipped checks do not fail the run)
    1  a check failed (this includes "no GPU" and "torch missing": a smoke test that cannot run has failed)
    2  bad usage (the JSON report then carries "usage_error")

Usage:

    python3 smoke.py --arch sm_121 [--expect cuda=13.1] [--expect nccl=2.29.2] [--expect torch=2.10.0]
                     [--expect vllm=0.15.0] [--expect flashinfer=0.6.2] [--expect transformers=5.0.0]
                     [--expect triton=3.5.1] [--require vllm,flashinfer,transformers]
                     [--nccl-allreduce] [--skip-imports] [--baseline REPORT.json] [--no-builtin-baseline]

Why it exists: a source-built sm_121 torch has been seen to import fine and then return silently wrong
scaled-dot-product-attention results (output norms off by 1.5-27x, no NaN).  So every numeric check compares
the GPU result with an independent reference and also checks the ratio of the output's norm to the
reference's norm: a backend that scales its output is caught even when every value is finite.

Checks (names as they appear in the report):

    torch_import        torch imports
    torch_cuda_build    torch.version.cuda is set and torch.backends.cuda.is_built()
    gpu_visible         torch sees at least one GPU and can launch a kernel on it
    arch_list           torch.cuda.get_arch_list() holds code that runs on the expected arch (ARCH MATCHING)
    gpu_arch            code built for the expected arch runs on every visible GPU, and so does something
                        in torch's arch list (a smoke run on another GPU proves little)
    version:cuda        torch.version.cuda vs --expect cuda    (major.minor: "13.1.0" matches torch's "13.1")
    version:nccl        torch.cuda.nccl.version() vs --expect nccl  (major.minor.patch; "2.29.2-1" -> 2.29.2)
    version:torch       torch.__version__ vs --expect torch
    sdpa:<backend>:<dt> SDPA numerics per backend (math, efficient, flash, cudnn) and dtype (fp16, bf16)
    sdpa:availability   every SDPA case the baseline / built-in expectation says runs did run (BASELINE)
    matmul:<dt>         matmul numerics, fp16 and bf16
    triton:vector_add   a small Triton kernel written here (skipped when triton does not import)
    import:<module>     vllm (and its compiled extension, vllm/_C*.so: _C.abi3.so in older releases,
                        _C_stable_libtorch.abi3.so in newer ones), flashinfer, transformers, triton import,
                        in a subprocess each, and their __version__ matches --expect
    nccl:allreduce      with --nccl-allreduce: an NCCL all-reduce over all visible GPUs (world size =
                        device count, 1 GPU included), one spawned process per GPU

REFERENCE.  The reference for SDPA and matmul is an explicit formula, softmax(Q K^T / sqrt(d) [+ causal
mask]) V and A @ B, evaluated in float64 on the CPU from the very same (already fp16/bf16-rounded) inputs.
It shares no code with the GPU kernels under test: a reference computed with SDPA's own math backend on the
GPU would inherit whatever is broken in that torch build (it is stricter than the fp32 math reference one
might first reach for, and just as cheap at these sizes).

TOLERANCES.  See TOLERANCES below.  A result passes when it is all finite, AND max |out - ref| <= max_abs,
AND ||out - ref|| / ||ref|| <= rel_norm, AND ||out|| / ||ref|| lies in [ratio_lo, ratio_hi].  The bands
are 8-17x wider than the worst error correct kernels showed (torch 2.11 on an H100, every backend; see
docs/smoke/README.md), and the norm band (+-1%) is 130x wider than the worst |ratio - 1| seen there (7.7e-5)
yet 50x narrower than the smallest failure seen in the wild (norm ratio 1.5).

ARCH MATCHING.  CUDA's binary-compatibility rules (CUDA C++ Programming Guide, "Binary Compatibility" and
"PTX Compatibility"; Blackwell Compatibility Guide, 1.2), applied by code_runs_on():

    sm_XY     SASS (cubin) runs on a GPU of the same major X and a minor >= Y    (sm_120 runs on sm_121)
    sm_XYf    family SASS: the same rule, within the family (same major)         (sm_120f runs on sm_121)
    sm_XYa    arch-specific SASS: only on exactly compute capability X.Y         (sm_120a: not on sm_121)
    compute_XY   PTX, JIT-compiled by the driver: any GPU with CC >= X.Y (major, minor)
    compute_XYf  family PTX: same major, minor >= Y;   compute_XYa: exactly X.Y

An expected "sm_XY" (a GPU arch) passes arch_list when some entry of torch.cuda.get_arch_list() runs on it;
the detail names the entry the driver would use (exact SASS first, then the newest compatible SASS, then
PTX).  So PyPI's torch (sm_80 ... sm_120 SASS, no sm_121, no PTX) passes for sm_121 through its sm_120 SASS,
and a list with nothing for major 12 (sm_90, sm_100, no PTX) fails.  PTX alone passes too, with a detail
that says so: it runs, but the driver JIT-compiles every kernel on each cold start (minutes for torch; a fresh
container has no JIT cache).  An expected "sm_XYa" / "sm_XYf" names a build target rather than a GPU: it
needs exactly that entry.  gpu_arch applies the same rule to the GPUs: code built for the expected arch must
run on each of them (--arch sm_120 passes on an sm_121 GPU; --arch sm_121 fails on sm_120 and on sm_90, and
--arch sm_90 fails on sm_121), and something in torch's arch list must run on each.

BASELINE.  A backend that cannot run some inputs raises "No available kernel" and its cases are recorded as
skipped, which alone never fails the run.  But a GPU or build fault can make a backend unavailable too, so
a case that is known to run is enforced: --baseline REPORT.json (a report of this program from a known-good
image on the same GPU arch) and the built-in expectation for the GPU's arch (SDPA_EXPECTED_AVAILABLE:
sm_90 and sm_12x; --no-builtin-baseline turns it off) list the (backend, dtype, case) that passed there.  Such
a case that is now skipped as unavailable fails its sdpa:<backend>:<dtype> check, and sdpa:availability
lists every such case with the source that expected it.  A baseline from another GPU arch fails
sdpa:availability (it says nothing about this GPU).

VERSIONS.  Normalised without `packaging`: lower-cased, leading "v" dropped, local part ("+cu130",
"+git1234") dropped, a package revision suffix "-N" ("2.29.2-1", "2.29.2-1+cuda13.1") dropped; release
numbers compare numerically with zero padding ("5.0" == "5.0.0"); a pre/dev/post suffix ("rc3", "dev1")
must be equal.  One exception, for torch only: a source build of torch without PYTORCH_BUILD_VERSION reports
"X.Y.Za0+git<sha>"; expected "X.Y.Z" accepts that and says so in the detail.  An --expect for a module is a
claim that the module is there: a missing module with an expectation fails even when not in --require.

FAULT INJECTION (test hook).  SMOKE_FAULT=<name>[,<name>] adds a deliberately wrong SDPA backend, or breaks a
real one, to show a maintainer (and the tests) that the checks catch the failure they exist for:

    sdpa_scale                backend "fault_scale" = math backend output * 1.5  (the silent wrong-norm failure)
    sdpa_nan                  backend "fault_nan"   = math backend output with one NaN
    flash_unavailable         backend "flash" raises "No available kernel" for every case
    flash_causal_unavailable  backend "flash" raises "No available kernel" for causal cases (a GPU fault once
                              did exactly this, and the run passed with the cases "skipped")

A run with a fault injected must fail (the flash_* faults through the baseline / built-in expectation: with
--no-builtin-baseline and no --baseline they are only skips); the report records the fault under host.fault.
An unknown name is bad usage (exit 2).

Environment: the NCCL all-reduce sets NCCL_NVLS_ENABLE=0 unless already set (NVLink multicast is not needed
to prove an all-reduce works and must stay off on shared hosts).  Library output on stdout (NCCL_DEBUG,
loggers) is redirected to stderr so that stdout carries only the report.
"""

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = 1
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

EXPECT_KEYS = ("cuda", "nccl", "torch", "vllm", "flashinfer", "transformers", "triton")
OPTIONAL_MODULES = ("vllm", "flashinfer", "transformers", "triton")
#: Further imports that prove a module's compiled part loads against this torch (ABI mismatches show here).
MODULE_EXTRA_IMPORTS: dict[str, tuple[str, ...]] = {}
#: Compiled extensions that must exist next to a module's __init__ and import: a glob in the package folder.
#: vLLM ships vllm/_C.abi3.so (0.17 and older) or vllm/_C_stable_libtorch.abi3.so (0.33, no vllm._C); every
#: match is imported as vllm.<name up to the first dot>, and no match at all is a failure.
MODULE_EXTENSIONS: dict[str, str] = {"vllm": "_C*.so"}
#: How many release components a key compares; None = the whole version (see VERSIONS in the docstring).
VERSION_PARTS: dict[str, int | None] = {"cuda": 2, "nccl": 3}
IMPORT_TIMEOUT_S = 300
NCCL_TIMEOUT_S = 180

FAULT_ENV = "SMOKE_FAULT"


# ----------------------------------------------------------------------------------------------------------
# Results


@dataclass
class CheckResult:
    name: str
    ok: bool
    skipped: bool = False
    detail: str = ""
    data: dict = field(default_factory=dict)

    @classmethod
    def passed(cls, name: str, detail: str = "", **data: Any) -> "CheckResult":
        return cls(name, True, False, detail, data)

    @classmethod
    def failed(cls, name: str, detail: str, **data: Any) -> "CheckResult":
        return cls(name, False, False, detail, data)

    @classmethod
    def skip(cls, name: str, detail: str, **data: Any) -> "CheckResult":
        # A skipped check did not fail: ok stays True, "skipped" says it proved nothing.
        return cls(name, True, True, detail, data)

    def to_dict(self) -> dict:
        return asdict(self)


class BackendUnavailable(Exception):
    """A backend cannot run these inputs on this build/GPU: recorded as skipped, not failed."""


class UsageError(Exception):
    pass


# ----------------------------------------------------------------------------------------------------------
# Tolerances


@dataclass(frozen=True)
class Tolerance:
    max_abs: float  # max |out - ref|
    rel_norm: float  # ||out - ref|| / ||ref||
    ratio_lo: float = 0.99  # ||out|| / ||ref|| must lie in [ratio_lo, ratio_hi]
    ratio_hi: float = 1.01


#: (check kind, dtype) -> Tolerance.  Inputs are N(0, 1) (matmul: B scaled by 1/sqrt(K), so outputs are
#: ~N(0, 1) too).  fp16 has a unit roundoff of 4.9e-4, bf16 of 3.9e-3: the output rounding alone gives a
#: relative norm error of about u/sqrt(3) (2.8e-4 fp16, 2.3e-3 bf16).  Kernels round intermediates (the
#: softmax probabilities before P @ V; partial sums), which adds a little.  Worst errors measured on an H100
#: (torch 2.11, all four SDPA backends; max abs / rel norm): sdpa fp16 9.7e-4 / 2.9e-4, sdpa bf16
#: 7.8e-3 / 2.2e-3, matmul fp16 1.8e-3 / 2.1e-4, matmul bf16 1.5e-2 / 1.7e-3.  The bands below are 8-17x
#: those, leaving room for other GPUs' kernels, and far below any wrong-norm failure.
#:
#: | kind   | dtype | max_abs | rel_norm | norm ratio   |
#: |--------|-------|---------|----------|--------------|
#: | sdpa   | fp16  | 1e-2    | 5e-3     | [0.99, 1.01] |
#: | sdpa   | bf16  | 6e-2    | 3e-2     | [0.99, 1.01] |
#: | matmul | fp16  | 2e-2    | 3e-3     | [0.99, 1.01] |
#: | matmul | bf16  | 1.2e-1  | 2e-2     | [0.99, 1.01] |
#: | triton | fp32  | 1e-6    | 1e-6     | [0.99, 1.01] |
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("sdpa", "fp16"): Tolerance(max_abs=1e-2, rel_norm=5e-3),
    ("sdpa", "bf16"): Tolerance(max_abs=6e-2, rel_norm=3e-2),
    ("matmul", "fp16"): Tolerance(max_abs=2e-2, rel_norm=3e-3),
    ("matmul", "bf16"): Tolerance(max_abs=1.2e-1, rel_norm=2e-2),
    ("triton", "fp32"): Tolerance(max_abs=1e-6, rel_norm=1e-6),
}

#: Short dtype names used in check names and TOLERANCES -> torch dtype attribute.
DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def tolerance_for(kind: str, dtype: str) -> Tolerance:
    try:
        return TOLERANCES[(kind, dtype)]
    except KeyError:
        raise KeyError(f"no tolerance for {kind}/{dtype}; add one to TOLERANCES") from None


# ----------------------------------------------------------------------------------------------------------
# Comparison: works on torch tensors and on (nested) sequences of floats, so it is testable without torch.


def _flatten(x: Any) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)]
    out: list[float] = []
    for item in x:
        out.extend(_flatten(item))
    return out


def _shape(x: Any) -> tuple:
    if hasattr(x, "shape"):
        return tuple(x.shape)
    if isinstance(x, (int, float)):
        return ()
    x = list(x)
    return (len(x),) + (_shape(x[0]) if x else ())


def error_stats(out: Any, ref: Any) -> dict:
    """Error statistics of out vs ref (torch tensors, computed in float64 on the CPU, or float sequences)."""
    out_shape, ref_shape = _shape(out), _shape(ref)
    if out_shape != ref_shape:
        return {"shape_mismatch": True, "out_shape": list(out_shape), "ref_shape": list(ref_shape)}
    if hasattr(out, "detach"):
        torch = sys.modules["torch"]
        o = out.detach().to("cpu", torch.float64).reshape(-1)
        r = ref.detach().to("cpu", torch.float64).reshape(-1)
        numel = o.numel()
        nonfinite = int((~torch.isfinite(o)).sum())
        ref_nonfinite = int((~torch.isfinite(r)).sum())
        d = o - r
        max_abs = float(d.abs().max()) if numel else 0.0
        vn = torch.linalg.vector_norm
        ref_norm, out_norm, diff_norm = float(vn(r)), float(vn(o)), float(vn(d))
    else:
        o, r = _flatten(out), _flatten(ref)
        numel = len(o)
        nonfinite = sum(1 for v in o if not math.isfinite(v))
        ref_nonfinite = sum(1 for v in r if not math.isfinite(v))
        d = [a - b for a, b in zip(o, r, strict=True)]
        max_abs = max((abs(v) for v in d), default=0.0)
        if any(math.isnan(v) for v in d):
            max_abs = math.nan
        ref_norm = math.sqrt(sum(v * v for v in r))
        out_norm = math.sqrt(sum(v * v for v in o))
        diff_norm = math.sqrt(sum(v * v for v in d))
    if ref_norm > 0:
        rel_norm = diff_norm / ref_norm
        ratio = out_norm / ref_norm
    else:
        rel_norm = 0.0 if diff_norm == 0 else math.inf
        ratio = 1.0 if out_norm == 0 else math.inf
    return {
        "numel": numel,
        "nonfinite": nonfinite,
        "ref_nonfinite": ref_nonfinite,
        "max_abs": max_abs,
        "rel_norm": rel_norm,
        "norm_ratio": ratio,
        "ref_norm": ref_norm,
        "out_norm": out_norm,
    }


def judge(stats: dict, tol: Tolerance) -> tuple[bool, str]:
    """(ok, reason) for error statistics against a tolerance; reason lists every violated bound."""
    if stats.get("shape_mismatch"):
        return False, f"shape {stats['out_shape']} != reference {stats['ref_shape']}"
    if stats["ref_nonfinite"]:
        return False, f"reference has {stats['ref_nonfinite']} NaN/Inf values"
    problems = []
    if stats["nonfinite"]:
        problems.append(f"{stats['nonfinite']} NaN/Inf values")
    else:
        if not stats["max_abs"] <= tol.max_abs:
            problems.append(f"max abs err {stats['max_abs']:.3g} > {tol.max_abs:g}")
        if not stats["rel_norm"] <= tol.rel_norm:
            problems.append(f"rel norm err {stats['rel_norm']:.3g} > {tol.rel_norm:g}")
        if not tol.ratio_lo <= stats["norm_ratio"] <= tol.ratio_hi:
            problems.append(
                f"norm ratio {stats['norm_ratio']:.4g} outside [{tol.ratio_lo:g}, {tol.ratio_hi:g}]"
            )
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"max abs err {stats['max_abs']:.3g}, rel norm err {stats['rel_norm']:.3g}, "
        f"norm ratio {stats['norm_ratio']:.5f}"
    )


def compare(out: Any, ref: Any, tol: Tolerance, name: str = "compare") -> CheckResult:
    """Compare a result with its reference: the one place where pass/fail of numerics is decided."""
    stats = error_stats(out, ref)
    ok, reason = judge(stats, tol)
    data = {"stats": stats, "tolerance": asdict(tol)}
    return CheckResult(name, ok, False, reason, data)


# ----------------------------------------------------------------------------------------------------------
# Architecture and versions


_ARCH_RE = re.compile(r"^sm_(\d+)([af]?)$")


def parse_arch(arch: str) -> tuple[str, str]:
    """'sm_121' -> ('121', ''); 'sm_121a' -> ('121', 'a'); '12.1' / '12.1a' -> ('121', '' / 'a')."""
    s = arch.strip().lower()
    m = re.match(r"^(\d+)\.(\d)([af]?)$", s)
    if m:
        return m.group(1) + m.group(2), m.group(3)
    m = _ARCH_RE.match(s)
    if not m:
        raise UsageError(f"--arch {arch!r}: expected sm_XY (e.g. sm_121), X.Y (12.1) or auto")
    return m.group(1), m.group(2)


def capability_to_arch(capability: Sequence[int]) -> str:
    major, minor = capability[0], capability[1]
    return f"sm_{major}{minor}"


_TARGET_RE = re.compile(r"^(sm|compute)_(\d+)([af]?)$")


def parse_target(entry: str) -> tuple[str, int, int, str] | None:
    """'sm_120' -> ('sm', 12, 0, ''); 'compute_90a' -> ('compute', 9, 0, 'a'); anything else -> None.

    The last digit is the minor version: sm_75 is 7.5, sm_100 is 10.0, sm_121 is 12.1.
    """
    m = _TARGET_RE.match(str(entry).strip().lower())
    if not m or len(m.group(2)) < 2:
        return None
    digits = m.group(2)
    return m.group(1), int(digits[:-1]), int(digits[-1]), m.group(3)


def code_runs_on(entry: str, gpu: str) -> tuple[bool, str]:
    """Can code compiled as `entry` (an arch-list entry: sm_XY[a|f] SASS, compute_XY[a|f] PTX) run on a GPU
    of arch `gpu` (sm_XY)?  (ok, why), by CUDA's binary-compatibility rules (see ARCH MATCHING)."""
    target, dev = parse_target(entry), parse_target(gpu)
    if target is None:
        return False, f"{entry}: not an arch-list entry"
    if dev is None or dev[0] != "sm" or dev[3]:
        return False, f"{gpu}: not a GPU arch (sm_XY)"
    kind, major, minor, suffix = target
    _, gmajor, gminor, _ = dev
    what = "SASS" if kind == "sm" else "PTX (JIT-compiled at first use)"
    if suffix == "a":
        ok = (gmajor, gminor) == (major, minor)
        rule = f"arch-specific, runs only on CC {major}.{minor}"
    elif kind == "sm" or suffix == "f":
        ok = gmajor == major and gminor >= minor
        fam = "family " if suffix == "f" else ""
        rule = f"{fam}runs on CC {major}.x with x >= {minor}"
    else:
        ok = (gmajor, gminor) >= (major, minor)
        rule = f"runs on any CC >= {major}.{minor}"
    return ok, f"{entry} {what} {'runs' if ok else 'does not run'} on {gpu} ({rule})"


def runnable_entries(arch_list: Iterable[str], gpu: str) -> list[dict]:
    """The arch-list entries that run on `gpu`, best first: exact SASS, newest compatible SASS, newest PTX."""
    out = []
    for entry in arch_list:
        ok, why = code_runs_on(entry, gpu)
        if ok:
            kind, major, minor, suffix = parse_target(entry)  # type: ignore[misc]
            exact = kind == "sm" and f"sm_{major}{minor}" == gpu.strip().lower()
            out.append({"entry": str(entry), "kind": "sass" if kind == "sm" else "ptx", "exact": exact,
                        "why": why, "_rank": (kind == "sm", exact, major, minor, suffix == "")})
    out.sort(key=lambda e: e["_rank"], reverse=True)
    for e in out:
        del e["_rank"]
    return out


def arch_matches(expected: str, arch_list: Iterable[str]) -> tuple[bool, str, dict]:
    """Does torch's arch list hold code that runs on the expected arch?  See ARCH MATCHING."""
    number, suffix = parse_arch(expected)
    arch_list = [str(a) for a in arch_list]
    gpu = f"sm_{number}"
    data: dict = {"expected": expected, "gpu_arch": gpu, "arch_list": arch_list}
    if suffix:  # a build target (sm_121a / sm_121f), not a GPU: it must be in the list as such
        want = f"sm_{number}{suffix}"
        matched = [a for a in arch_list if a.lower() == want]
        data.update(accepted=[want], matched=matched, ptx=[], runnable=[], best=matched[0] if matched else None)
        if matched:
            return True, f"{want} in {arch_list}", data
        return False, f"{want} not in torch arch list {arch_list} (an 'a'/'f' target needs that entry)", data
    runnable = runnable_entries(arch_list, gpu)
    sass = [e["entry"] for e in runnable if e["kind"] == "sass"]
    ptx = [e["entry"] for e in runnable if e["kind"] == "ptx"]
    data.update(accepted=[e["entry"] for e in runnable], matched=sass, ptx=ptx, runnable=runnable,
                best=runnable[0]["entry"] if runnable else None)
    if not runnable:
        return False, f"nothing in torch arch list {arch_list} runs on {gpu}", data
    best = runnable[0]
    if best["exact"]:
        return True, f"{best['entry']} in {arch_list}", data
    if best["kind"] == "sass":
        return True, f"{best['why']}; arch list {arch_list}", data
    return True, (f"{best['why']}; no SASS for {gpu} in {arch_list}: every kernel is JIT-compiled on a cold "
                  "start"), data


def gpu_arch_matches(expected: str, gpus: Sequence[str], arch_list: Iterable[str]) -> tuple[bool, str, dict]:
    """Do the visible GPUs run code built for the expected arch, and code from torch's arch list?"""
    number, suffix = parse_arch(expected)
    target = f"sm_{number}{suffix}"
    arch_list = [str(a) for a in arch_list]
    wrong, notes, per_gpu = [], [], []
    for i, gpu in enumerate(gpus):
        ok, why = code_runs_on(target, gpu)
        runnable = runnable_entries(arch_list, gpu)
        per_gpu.append({"index": i, "arch": gpu, "runs_expected": ok, "why": why,
                        "best": runnable[0]["entry"] if runnable else None})
        if not ok:
            wrong.append(f"GPU {i} is {gpu}: {why}")
        elif not runnable:
            wrong.append(f"GPU {i} is {gpu}: nothing in torch arch list {arch_list} runs on it")
        elif gpu != f"sm_{number}":
            notes.append(f"GPU {i} is {gpu}: {why}")
    data = {"expected": expected, "gpus": list(gpus), "per_gpu": per_gpu}
    if wrong:
        return False, f"expected {target}: {'; '.join(wrong)}", data
    if notes:
        return True, f"code for {target} runs on every GPU: {'; '.join(notes)}", data
    return True, f"all GPUs are sm_{number}", data


def normalize_version(v: Any) -> str:
    """Packaging-free normalisation (see VERSIONS in the module docstring)."""
    s = str(v).strip().lower()
    if s.startswith("v") and s[1:2].isdigit():
        s = s[1:]
    s = s.split("+", 1)[0]  # local part: +cu130, +git1234, +cuda13.1
    s = re.sub(r"-\d+$", "", s)  # package revision: 2.29.2-1
    return s


def split_version(v: Any) -> tuple[tuple[int, ...], str]:
    """'5.0.0rc3' -> ((5, 0, 0), 'rc3'); '0.15.1.dev3' -> ((0, 15, 1), 'dev3')."""
    s = normalize_version(v)
    m = re.match(r"^(\d+(?:\.\d+)*)(.*)$", s)
    if not m:
        return (), s
    release = tuple(int(x) for x in m.group(1).split("."))
    suffix = re.sub(r"[._-]", "", m.group(2))
    suffix = re.sub(r"^(alpha|beta|c|pre|preview)", lambda x: {"alpha": "a", "beta": "b"}.get(
        x.group(1), "rc"), suffix)
    return release, suffix


def _pad(release: tuple[int, ...], n: int) -> tuple[int, ...]:
    return tuple(release) + (0,) * max(0, n - len(release))


def version_matches(key: str, expected: Any, actual: Any) -> tuple[bool, str]:
    """(ok, detail): does the actual version satisfy the expected one under the rule for `key`?"""
    if actual is None or str(actual).strip() == "":
        return False, f"expected {expected}, found no version"
    er, es = split_version(expected)
    ar, as_ = split_version(actual)
    parts = VERSION_PARTS.get(key)
    if not er or not ar:
        ok = normalize_version(expected) == normalize_version(actual)
        return ok, f"{actual} {'==' if ok else '!='} expected {expected}"
    if parts:
        ok = _pad(er, parts)[:parts] == _pad(ar, parts)[:parts]
        what = ".".join(["major", "minor", "patch"][:parts])
        return ok, f"{actual} {'matches' if ok else 'does not match'} expected {expected} (compared {what})"
    n = max(len(er), len(ar))
    if _pad(er, n) != _pad(ar, n):
        return False, f"{actual} != expected {expected}"
    if es == as_:
        return True, f"{actual} == expected {expected}"
    if key == "torch" and not es and as_ == "a0":
        return True, f"{actual} accepted for expected {expected} (source build: a0 + local suffix)"
    return False, f"{actual} != expected {expected} (suffix {as_ or 'none'!r} vs {es or 'none'!r})"


def nccl_version_string(v: Any) -> str:
    """torch.cuda.nccl.version() -> 'X.Y.Z' (a tuple in torch >= 1.12, an int code before)."""
    if isinstance(v, (tuple, list)):
        return ".".join(str(int(x)) for x in list(v)[:3])
    code = int(v)
    if code >= 10000:  # NCCL >= 2.9: X*10000 + Y*100 + Z
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


# ----------------------------------------------------------------------------------------------------------
# SDPA: cases, backend registry, a generic suite runner (torch-free) and the torch wiring.


@dataclass(frozen=True)
class SdpaCase:
    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int
    causal: bool

    @property
    def label(self) -> str:
        c = "causal" if self.causal else "full"
        return f"b{self.batch}h{self.heads}q{self.q_len}k{self.kv_len}d{self.head_dim}-{c}"


#: No GQA (q, k, v have the same head count).  Causal only with q_len == kv_len, where every backend
#: agrees on the mask alignment.
SDPA_CASES: tuple[SdpaCase, ...] = (
    SdpaCase(2, 4, 1, 1, 64, False),  # a single key: output == v exactly
    SdpaCase(2, 4, 1, 128, 64, False),  # decode-like: one query over a context
    SdpaCase(2, 4, 128, 128, 64, True),
    SdpaCase(2, 4, 128, 1000, 128, False),
    SdpaCase(1, 8, 1000, 1000, 128, True),
    SdpaCase(1, 8, 1000, 1000, 128, False),
)
SDPA_DTYPES = ("fp16", "bf16")
#: Backends that must run: the math backend exists on every build, so its "unavailable" is a failure.
SDPA_REQUIRED_BACKENDS = ("math",)

#: SDPA backend registry: name -> fn(q, k, v, is_causal) -> out.  Raise BackendUnavailable to skip.
#: Tests (and SMOKE_FAULT) add backends here or pass their own mapping to run_sdpa_suite.
SDPA_BACKENDS: dict[str, Callable[..., Any]] = {}


def register_sdpa_backend(name: str, fn: Callable[..., Any]) -> None:
    SDPA_BACKENDS[name] = fn


_UNAVAILABLE_PATTERNS = ("no available kernel", "no viable backend", "not supported", "not available",
                         "not compiled", "unsupported", "not built", "was not enabled",
                         "no valid execution plan")
_HARD_ERROR_PATTERNS = ("kernel image", "illegal", "cuda error", "device-side assert", "misaligned",
                        "out of memory", "cublas", "launch failure")


def looks_unavailable(message: str) -> bool:
    """Does an exception message say 'this backend cannot run these inputs' (skip) rather than break?"""
    m = message.lower()
    if any(p in m for p in _HARD_ERROR_PATTERNS):
        return False
    return any(p in m for p in _UNAVAILABLE_PATTERNS)


def _sdpa_backend(enum_name: str) -> Callable[..., Any]:
    def run(q: Any, k: Any, v: Any, is_causal: bool) -> Any:
        torch = sys.modules["torch"]
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError as e:
            raise BackendUnavailable(f"torch.nn.attention.sdpa_kernel missing in torch {torch.__version__}") \
                from e
        backend = getattr(SDPBackend, enum_name, None)
        if backend is None:
            raise BackendUnavailable(f"SDPBackend.{enum_name} not in torch {torch.__version__}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel(backend):
                    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
                if out.is_cuda:
                    torch.cuda.synchronize()
            except RuntimeError as e:
                if looks_unavailable(str(e)):
                    why = " | ".join(str(w.message).strip() for w in caught)[:600]
                    raise BackendUnavailable(f"{str(e).strip()[:200]}{' | ' + why if why else ''}") from e
                raise
        return out

    return run


register_sdpa_backend("math", _sdpa_backend("MATH"))
register_sdpa_backend("efficient", _sdpa_backend("EFFICIENT_ATTENTION"))
register_sdpa_backend("flash", _sdpa_backend("FLASH_ATTENTION"))
register_sdpa_backend("cudnn", _sdpa_backend("CUDNN_ATTENTION"))


def _scaled(fn: Callable[..., Any], factor: float) -> Callable[..., Any]:
    def run(q: Any, k: Any, v: Any, is_causal: bool) -> Any:
        return fn(q, k, v, is_causal) * factor

    return run


def _with_nan(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(q: Any, k: Any, v: Any, is_causal: bool) -> Any:
        out = fn(q, k, v, is_causal).clone().contiguous()
        out.view(-1)[0] = float("nan")
        return out

    return run


def _unavailable(only_causal: bool, fault: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(q: Any, k: Any, v: Any, is_causal: bool) -> Any:
            if is_causal or not only_causal:
                raise BackendUnavailable(f"No available kernel. Aborting execution. ({FAULT_ENV}={fault})")
            return fn(q, k, v, is_causal)

        return run

    return wrap


#: SMOKE_FAULT name -> (backend it adds or replaces, backend it wraps, wrapper).
FAULTS: dict[str, tuple[str, str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = {
    "sdpa_scale": ("fault_scale", "math", lambda fn: _scaled(fn, 1.5)),
    "sdpa_nan": ("fault_nan", "math", _with_nan),
    "flash_unavailable": ("flash", "flash", _unavailable(False, "flash_unavailable")),
    "flash_causal_unavailable": ("flash", "flash", _unavailable(True, "flash_causal_unavailable")),
}


def parse_faults(value: str | None) -> list[str]:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise UsageError(f"{FAULT_ENV}: unknown fault(s) {unknown}; known: {sorted(FAULTS)}")
    return names


def with_faults(backends: Mapping[str, Callable[..., Any]], faults: Iterable[str]) -> dict:
    """A copy of the backend registry with the named faults applied: a wrong backend added (built on 'math'),
    or a real backend replaced by a broken one.  A fault whose base backend is absent changes nothing."""
    out = dict(backends)
    for name in faults:
        backend_name, base, wrap = FAULTS[name]
        if base in backends:
            out[backend_name] = wrap(out[base] if backend_name == base else backends[base])
    return out


def summarize_cases(name: str, cases: list[dict], tol: Tolerance) -> CheckResult:
    """Fold per-case results ({'case', 'status': pass|fail|skip, 'reason', stats...}) into one check."""
    failed = [c for c in cases if c["status"] == "fail"]
    skipped = [c for c in cases if c["status"] == "skip"]
    passed = [c for c in cases if c["status"] == "pass"]
    data = {"tolerance": asdict(tol), "cases": cases}
    if failed:
        first = failed[0]
        return CheckResult.failed(
            name, f"{len(failed)}/{len(cases)} cases failed; {first['case']}: {first['reason']}", **data
        )
    if not passed:
        reason = skipped[0]["reason"] if skipped else "no cases"
        return CheckResult.skip(name, f"backend unavailable: {reason}", **data)
    worst_rel = max(c["rel_norm"] for c in passed)
    worst_ratio = max(passed, key=lambda c: abs(c["norm_ratio"] - 1.0))["norm_ratio"]
    detail = (f"{len(passed)} cases passed, worst rel norm err {worst_rel:.3g}, "
              f"worst norm ratio {worst_ratio:.5f}")
    if skipped:
        detail += f"; {len(skipped)} skipped ({skipped[0]['reason'][:120]})"
    return CheckResult.passed(name, detail, **data)


def _case_record(label: str, result: CheckResult) -> dict:
    stats = result.data.get("stats", {})
    rec = {"case": label, "status": "pass" if result.ok else "fail", "reason": result.detail}
    for key in ("max_abs", "rel_norm", "norm_ratio", "nonfinite"):
        if key in stats:
            rec[key] = stats[key]
    return rec


def run_sdpa_suite(
    backends: Mapping[str, Callable[..., Any]],
    cases: Sequence[Any],
    dtypes: Sequence[str],
    make_inputs: Callable[[Any, str], tuple],
    reference: Callable[[tuple, Any], Any],
    *,
    kind: str = "sdpa",
    required: Iterable[str] = SDPA_REQUIRED_BACKENDS,
    tol_for: Callable[[str, str], Tolerance] = tolerance_for,
) -> list[CheckResult]:
    """Run every backend on every case and dtype against `reference`; one CheckResult per backend/dtype.

    Torch-free: inputs, reference and backends are supplied by the caller (torch on a GPU in the program,
    plain Python lists in the tests).  A backend fn(q, k, v, is_causal) raising BackendUnavailable is
    skipped for that case, except the backends in `required`, for which that is a failure.
    """
    required = set(required)
    results: list[CheckResult] = []
    for dtype in dtypes:
        tol = tol_for(kind, dtype)
        per_backend: dict[str, list[dict]] = {b: [] for b in backends}
        for case in cases:
            label = getattr(case, "label", str(case))
            inputs = make_inputs(case, dtype)
            ref = reference(inputs, case)
            for bname, fn in backends.items():
                try:
                    out = fn(*inputs, getattr(case, "causal", False))
                except BackendUnavailable as e:
                    status = "fail" if bname in required else "skip"
                    reason = str(e) if status == "skip" else f"required backend unavailable: {e}"
                    per_backend[bname].append({"case": label, "status": status, "reason": reason})
                    continue
                except Exception as e:  # a backend that breaks is a failure, not a crash
                    per_backend[bname].append({"case": label, "status": "fail",
                                               "reason": f"{type(e).__name__}: {str(e).strip()[:300]}"})
                    continue
                per_backend[bname].append(_case_record(label, compare(out, ref, tol)))
        for bname, recs in per_backend.items():
            results.append(summarize_cases(f"{kind}:{bname}:{dtype}", recs, tol))
    return results


def _generator(torch: Any, seed: int) -> Any:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def torch_sdpa_inputs(torch: Any, device: str) -> Callable[[SdpaCase, str], tuple]:
    def make(case: SdpaCase, dtype: str) -> tuple:
        g = _generator(torch, 1234 + case.q_len * 7 + case.kv_len * 13 + case.head_dim)
        dt = getattr(torch, DTYPES[dtype])
        qs = (case.batch, case.heads, case.q_len, case.head_dim)
        ks = (case.batch, case.heads, case.kv_len, case.head_dim)
        q = torch.randn(qs, generator=g).to(dt)
        k = torch.randn(ks, generator=g).to(dt)
        v = torch.randn(ks, generator=g).to(dt)
        return q.to(device), k.to(device), v.to(device)

    return make


def torch_sdpa_reference(torch: Any) -> Callable[[tuple, SdpaCase], Any]:
    """softmax(Q K^T / sqrt(d) + causal mask) V in float64 on the CPU: independent of every SDPA kernel."""

    def ref(inputs: tuple, case: SdpaCase) -> Any:
        q, k, v = (t.detach().to("cpu", torch.float64) for t in inputs)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if case.causal:
            keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    return ref


def run_sdpa_checks(torch: Any, device: str, backends: Mapping[str, Callable[..., Any]] | None = None,
                    cases: Sequence[SdpaCase] = SDPA_CASES, dtypes: Sequence[str] = SDPA_DTYPES
                    ) -> list[CheckResult]:
    return run_sdpa_suite(SDPA_BACKENDS if backends is None else backends, cases, dtypes,
                          torch_sdpa_inputs(torch, device), torch_sdpa_reference(torch))


# ----------------------------------------------------------------------------------------------------------
# SDPA availability: cases that must run (a baseline report, the built-in per-arch expectation).  See BASELINE.

_ALL_CASES = tuple(c.label for c in SDPA_CASES)

#: Built-in expectation: GPU arch ("sm_90"), or a major's family ("sm_12x": sm_120, sm_121, ...) -> SDPA backend
#: -> labels of the SDPA_CASES that must run in every dtype (a skip as unavailable is then a failure).
#: sm_90: on an H100 and an H200 (torch 2.11.0+cu130, cuDNN 9.19; docs/smoke/h100-*.json, h200-*.json) every
#:   backend ran every case, except cuDNN on the single-key case (q_len = kv_len = 1: "No available kernel").
#: sm_12x: torch gates flash and cuDNN attention on [sm80, sm121] and efficient attention on [sm50, sm121]
#:   (sdp_utils.cpp), and these cases (fp16/bf16, head_dim 64/128, causal only when square) pass every other
#:   filter of flash and efficient attention.  cuDNN's SDPA on sm_12x depends on the cuDNN release's engines:
#:   not expected here (a --baseline from a good run on that GPU covers it).
SDPA_EXPECTED_AVAILABLE: dict[str, dict[str, tuple[str, ...]]] = {
    "sm_90": {"efficient": _ALL_CASES, "flash": _ALL_CASES,
              "cudnn": tuple(c.label for c in SDPA_CASES if c.kv_len > 1)},
    "sm_12x": {"efficient": _ALL_CASES, "flash": _ALL_CASES},
}


def builtin_expectation_key(gpu: str | None) -> str | None:
    """The SDPA_EXPECTED_AVAILABLE key for a GPU arch: the arch itself, else its major's family, else None."""
    if not gpu:
        return None
    gpu = gpu.strip().lower()
    if gpu in SDPA_EXPECTED_AVAILABLE:
        return gpu
    target = parse_target(gpu)
    if target is None or target[0] != "sm":
        return None
    family = f"sm_{target[1]}x"
    return family if family in SDPA_EXPECTED_AVAILABLE else None


def builtin_availability(gpu: str | None, dtypes: Sequence[str] = SDPA_DTYPES) -> dict[str, list[str]]:
    """{check name: case labels that must run} built into the program for this GPU arch ({} if none)."""
    key = builtin_expectation_key(gpu)
    if key is None:
        return {}
    return {f"sdpa:{backend}:{dtype}": list(labels)
            for backend, labels in SDPA_EXPECTED_AVAILABLE[key].items() for dtype in dtypes}


def availability_from_report(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """{check name: case labels that passed} of the SDPA checks in a report of this program."""
    out: dict[str, list[str]] = {}
    for check in report.get("checks") or []:
        if not isinstance(check, dict):
            continue
        name = str(check.get("name", ""))
        if not name.startswith("sdpa:") or name.count(":") != 2:
            continue
        cases = (check.get("data") or {}).get("cases") or []
        passed = [str(c.get("case")) for c in cases if isinstance(c, dict) and c.get("status") == "pass"]
        if passed:
            out[name] = passed
    return out


def report_gpu_arch(report: Mapping[str, Any]) -> str | None:
    """The arch of GPU 0 in a report of this program (where SDPA ran), or None."""
    gpus = (report.get("host") or {}).get("gpus") or []
    if gpus and isinstance(gpus[0], dict) and gpus[0].get("capability"):
        return str(gpus[0]["capability"])
    return None


def load_baseline(path: str) -> dict:
    """A report of this program, read from `path`; UsageError when it is unreadable or not such a report."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"--baseline {path}: {e.strerror or e}") from None
    try:
        report = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--baseline {path}: not JSON ({e})") from None
    if not isinstance(report, dict) or not isinstance(report.get("checks"), list):
        raise UsageError(f"--baseline {path}: not a smoke report (no 'checks' list)")
    return report


def merge_expectations(sources: Iterable[tuple[str, Mapping[str, Sequence[str]]]]
                       ) -> dict[str, dict[str, list[str]]]:
    """[(source, {check: cases})] -> {check: {case: [sources that expect it]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for source, availability in sources:
        for check, cases in availability.items():
            for case in cases:
                out.setdefault(check, {}).setdefault(case, []).append(source)
    return out


def enforce_availability(results: Sequence[CheckResult], expected: Mapping[str, Mapping[str, Sequence[str]]],
                         sources: Sequence[str] = (), problems: Sequence[str] = (),
                         name: str = "sdpa:availability") -> tuple[list[CheckResult], CheckResult]:
    """Fail every expected case that was skipped as unavailable; (results, the summary check).

    `expected` is merge_expectations()'s {check: {case: [sources]}}.  A case so failed keeps its reason after
    a note of who expected it, and its check is summarised again.  `problems` (a baseline from another GPU,
    say) fail the summary check.  Expected cases the run did not have (another program version's cases) are
    listed in the summary's data, not failed.
    """
    out: list[CheckResult] = []
    violations: list[str] = []
    enforced = 0
    seen: set[str] = set()
    for res in results:
        want = expected.get(res.name)
        cases = res.data.get("cases")
        if not want or not isinstance(cases, list):
            out.append(res)
            continue
        seen.add(res.name)
        changed = False
        new_cases = []
        for rec in cases:
            who = want.get(rec.get("case"))
            if who is None:
                new_cases.append(rec)
                continue
            enforced += 1
            if rec.get("status") == "skip":
                rec = dict(rec, status="fail", expected_by=list(who),
                           reason=f"unavailable, but expected to run by {' and '.join(who)}: {rec.get('reason', '')}")
                violations.append(f"{res.name} {rec['case']}")
                changed = True
            new_cases.append(rec)
        if changed:
            tol = Tolerance(**res.data["tolerance"]) if "tolerance" in res.data else Tolerance(0.0, 0.0)
            new = summarize_cases(res.name, new_cases, tol)
            if "seconds" in res.data:
                new.data["seconds"] = res.data["seconds"]
            out.append(new)
        else:
            out.append(res)
    ran = {(r.name, c.get("case")) for r in results for c in (r.data.get("cases") or [])
           if isinstance(c, dict)}
    not_run = [f"{check} {case}" for check, cases in expected.items() for case in cases
               if (check, case) not in ran]
    data = {"sources": list(sources), "enforced": enforced, "violations": violations, "not_run": not_run,
            "problems": list(problems)}
    if problems or violations:
        why = list(problems)
        if violations:
            shown = ", ".join(violations[:4]) + (f" and {len(violations) - 4} more" if len(violations) > 4 else "")
            why.append(f"{len(violations)} case(s) expected to run by {' and '.join(sources) or 'the baseline'} "
                       f"are unavailable: {shown}")
        return out, CheckResult.failed(name, "; ".join(why), **data)
    if not expected:
        return out, CheckResult.skip(name, "no baseline and no built-in expectation for this GPU: a backend "
                                           "that reports no available kernel is only skipped", **data)
    detail = f"all {enforced} expected case(s) ran ({' and '.join(sources)})"
    if not_run:
        detail += f"; {len(not_run)} expected case(s) not in this run"
    return out, CheckResult.passed(name, detail, **data)


def sdpa_expectations(gpu: str | None, builtin: bool, baseline: Mapping[str, Any] | None,
                      baseline_path: str | None) -> tuple[dict[str, dict[str, list[str]]], list[str], list[str]]:
    """(expected {check: {case: [sources]}}, sources, problems) for SDPA on a GPU of arch `gpu`."""
    sources: list[tuple[str, dict[str, list[str]]]] = []
    problems: list[str] = []
    if builtin:
        availability = builtin_availability(gpu)
        if availability:
            sources.append((f"the built-in {builtin_expectation_key(gpu)} expectation", availability))
    if baseline is not None:
        where = f"baseline {baseline_path or '(report)'}"
        base_gpu = report_gpu_arch(baseline)
        if base_gpu and gpu and base_gpu != gpu:
            problems.append(f"{where} ran on {base_gpu}, this GPU is {gpu}: it says nothing about this GPU "
                            "(use a baseline from the same GPU arch)")
        else:
            sources.append((f"{where}" + (f" ({base_gpu})" if base_gpu else ""),
                            availability_from_report(baseline)))
    return merge_expectations(sources), [s for s, _ in sources], problems


# ----------------------------------------------------------------------------------------------------------
# matmul and Triton

#: (batch or None, M, K, N): a plain, an odd-sized (other kernels, tails) and a batched product.
MATMUL_SHAPES = ((None, 512, 1024, 768), (None, 127, 333, 65), (8, 64, 256, 96))


def run_matmul_checks(torch: Any, device: str, dtypes: Sequence[str] = ("fp16", "bf16")) -> list[CheckResult]:
    results = []
    for dtype in dtypes:
        tol = tolerance_for("matmul", dtype)
        dt = getattr(torch, DTYPES[dtype])
        recs = []
        for batch, m, k, n in MATMUL_SHAPES:
            g = _generator(torch, 99 + m + k + n)
            lead = (batch,) if batch else ()
            a = torch.randn(lead + (m, k), generator=g).to(dt)
            b = (torch.randn(lead + (k, n), generator=g) / math.sqrt(k)).to(dt)
            label = (f"{batch}x" if batch else "") + f"{m}x{k}x{n}"
            try:
                out = a.to(device) @ b.to(device)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
            except Exception as e:
                recs.append({"case": label, "status": "fail", "reason": f"{type(e).__name__}: {e}"[:300]})
                continue
            ref = a.to(torch.float64) @ b.to(torch.float64)
            recs.append(_case_record(label, compare(out, ref, tol)))
        results.append(summarize_cases(f"matmul:{dtype}", recs, tol))
    return results


tl: Any = None  # triton.language, bound by _triton_add_kernel(); the kernel body resolves it as a global


def _triton_add_kernel() -> Any:
    global tl
    import triton
    import triton.language as tl

    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
        pid = tl.program_id(axis=0)
        offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        mask = offsets < n_elements
        x = tl.load(x_ptr + offsets, mask=mask)
        y = tl.load(y_ptr + offsets, mask=mask)
        tl.store(out_ptr + offsets, x + y, mask=mask)

    return triton, add_kernel


def run_triton_check(torch: Any, device: str, required: bool) -> CheckResult:
    name = "triton:vector_add"
    try:
        triton, kernel = _triton_add_kernel()
    except Exception as e:
        msg = f"triton does not import: {type(e).__name__}: {e}"
        return CheckResult.failed(name, msg) if required else CheckResult.skip(name, msg)
    n = 98_432  # not a multiple of the block: exercises the mask
    g = _generator(torch, 7)
    x, y = torch.randn(n, generator=g), torch.randn(n, generator=g)
    xd, yd = x.to(device), y.to(device)
    out = torch.empty_like(xd)
    block = 1024
    kernel[(triton.cdiv(n, block),)](xd, yd, out, n, BLOCK_SIZE=block)
    torch.cuda.synchronize()
    res = compare(out, x + y, tolerance_for("triton", "fp32"), name)
    res.data["triton"] = getattr(triton, "__version__", "?")
    return res


# ----------------------------------------------------------------------------------------------------------
# Module imports (each in its own interpreter: a crashing import cannot take the report down with it)

_PROBE_MARK = "SMOKE_PROBE_RESULT="
_PROBE = r"""
import glob, importlib, json, os, sys
mark, name, ext_glob, extras = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
fd = os.dup(1); os.dup2(2, 1)  # whatever the module prints goes to stderr
res = {"ok": False, "missing": False}
try:
    if extras or ext_glob:
        try:
            import torch  # compiled extensions link against libtorch: load it first, as the package would
        except Exception:
            pass
    m = importlib.import_module(name)
    res.update(version=str(getattr(m, "__version__", "")), file=getattr(m, "__file__", None))
    for sub in extras:
        importlib.import_module(sub)
    if ext_glob:
        folder = os.path.dirname(getattr(m, "__file__", None) or "")
        files = sorted(glob.glob(os.path.join(folder, ext_glob))) if folder else []
        subs = sorted({name + "." + os.path.basename(f).split(".")[0] for f in files})
        res["extension_files"] = [os.path.basename(f) for f in files]
        res["extension_modules"] = subs
        if not subs:
            raise ImportError(f"no compiled extension {name}/{ext_glob} in {folder or '?'}")
        for sub in subs:
            importlib.import_module(sub)
    res["ok"] = True
except ModuleNotFoundError as e:
    res["missing"] = e.name == name
    res["error"] = f"{type(e).__name__}: {e}"
except BaseException as e:
    res["error"] = f"{type(e).__name__}: {e}"
os.write(fd, (mark + json.dumps(res) + "\n").encode())
"""


def probe_module(name: str, extras: Sequence[str] = (), python: str | None = None,
                 timeout: float = IMPORT_TIMEOUT_S, ext_glob: str | None = None) -> dict:
    """Import `name`, then the submodules `extras`, then every compiled extension `ext_glob` matches in the
    package's folder (at least one must), in a fresh interpreter; the result as a dict (ok, missing, error,
    version, file, extensions)."""
    cmd = [python or sys.executable, "-c", _PROBE, _PROBE_MARK, name, ext_glob or "", *extras]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "missing": False, "error": f"import timed out after {timeout:g}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_PROBE_MARK):
            return json.loads(line[len(_PROBE_MARK):])
    tail = proc.stderr.strip().splitlines()[-5:]
    return {"ok": False, "missing": False,
            "error": f"import process died (exit {proc.returncode}): {' | '.join(tail)[:500]}"}


def module_check(name: str, probe: dict, expected: str | None, required: bool, driver: bool = True) -> CheckResult:
    """Judge one module probe: present + importable + version as expected; missing -> skip unless needed.

    Without a GPU (`driver=False`) there is no NVIDIA driver, and a compiled extension that links the driver's
    `libcuda.so.1` (vLLM's does) cannot load: that import proves nothing either way and is skipped, saying so.
    """
    cname = f"import:{name}"
    if not probe.get("ok") and not driver and "libcuda.so.1" in str(probe.get("error", "")):
        return CheckResult.skip(cname, f"import {name} needs the NVIDIA driver's libcuda.so.1, which a GPU host's "
                                       "container runtime mounts; none here", **probe)
    if not probe.get("ok"):
        if probe.get("missing"):
            if required:
                return CheckResult.failed(cname, f"{name} is not installed (required)", **probe)
            if expected:
                return CheckResult.failed(cname, f"{name} is not installed but --expect {name}={expected}",
                                          **probe)
            return CheckResult.skip(cname, f"{name} is not installed (not required)", **probe)
        return CheckResult.failed(cname, f"import {name} failed: {probe.get('error', '?')}", **probe)
    version = probe.get("version", "")
    ext = probe.get("extension_modules")
    also = f"; compiled extension {', '.join(ext)} imports" if ext else ""
    if expected:
        ok, detail = version_matches(name, expected, version)
        return CheckResult(cname, ok, False, detail + also, dict(probe))
    return CheckResult.passed(cname, f"{name} {version or '(no __version__)'} imports (no expectation){also}",
                              **probe)


# ----------------------------------------------------------------------------------------------------------
# NCCL all-reduce


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nccl_worker(rank: int, world_size: int, port: int, result_dir: str) -> None:
    res: dict = {"rank": rank}
    try:
        import torch
        import torch.distributed as dist

        torch.cuda.set_device(rank)
        dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(seconds=120))
        n = 1 << 22  # 16 MiB of fp32: big enough to be chunked across the ring
        base = torch.arange(n, device="cuda", dtype=torch.float32) % 1024  # exact sums in fp32
        x = base * (rank + 1)
        dist.all_reduce(x)
        y = torch.full((1000,), float(rank + 1), device="cuda", dtype=torch.bfloat16)
        dist.all_reduce(y)
        torch.cuda.synchronize()
        total = world_size * (world_size + 1) / 2
        res["max_abs_err"] = float((x.double() - base.double() * total).abs().max())
        res["bf16_max_abs_err"] = float((y.double() - total).abs().max())
        res["ok"] = res["max_abs_err"] == 0.0 and res["bf16_max_abs_err"] == 0.0
        dist.destroy_process_group()
    except Exception as e:
        res["ok"] = False
        res["error"] = f"{type(e).__name__}: {e}"[:500]
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)


def run_nccl_allreduce(torch: Any, world_size: int, timeout: float = NCCL_TIMEOUT_S) -> CheckResult:
    name = "nccl:allreduce"
    import torch.multiprocessing as tmp

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    port = free_port()
    data: dict = {"world_size": world_size, "port": port, "NCCL_NVLS_ENABLE": os.environ["NCCL_NVLS_ENABLE"]}
    with tempfile.TemporaryDirectory(prefix="smoke-nccl-") as tmpdir:
        ctx = tmp.start_processes(_nccl_worker, args=(world_size, port, tmpdir), nprocs=world_size,
                                  join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        error = None
        try:
            while not ctx.join(timeout=1):
                if time.monotonic() > deadline:
                    error = f"timed out after {timeout:g}s"
                    break
        except Exception as e:
            error = f"{type(e).__name__}: {str(e).strip()[:500]}"
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        ranks = []
        for r in range(world_size):
            path = os.path.join(tmpdir, f"rank{r}.json")
            if os.path.exists(path):
                with open(path) as f:
                    ranks.append(json.load(f))
            else:
                ranks.append({"rank": r, "ok": False, "error": "no result"})
    data["ranks"] = ranks
    bad = [r for r in ranks if not r.get("ok")]
    if error or bad:
        why = error or "; ".join(f"rank {r['rank']}: {r.get('error') or r}" for r in bad)
        return CheckResult.failed(name, f"all-reduce over {world_size} GPU(s) failed: {why}", **data)
    return CheckResult.passed(name, f"all-reduce over {world_size} GPU(s) exact (fp32 and bf16)", **data)


# ----------------------------------------------------------------------------------------------------------
# Driver


def _parse_expect(values: Iterable[str]) -> dict[str, str]:
    expect: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, ver = item.partition("=")
            key, ver = key.strip().lower(), ver.strip()
            if not sep or not ver:
                raise UsageError(f"--expect {item!r}: expected KEY=VERSION")
            if key not in EXPECT_KEYS:
                raise UsageError(f"--expect {key}: unknown key; known: {', '.join(EXPECT_KEYS)}")
            expect[key] = ver
    return expect


def _parse_require(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in OPTIONAL_MODULES:
                raise UsageError(f"--require {name}: unknown; known: {', '.join(OPTIONAL_MODULES)}")
            if name not in out:
                out.append(name)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # no exit with a usage line: a JSON report instead
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="smoke.py", description="GPU smoke test of a vLLM image; one JSON report on stdout.")
    p.add_argument("--arch", required=True, help="expected GPU arch: sm_121, sm_90, 12.1 ... or auto")
    p.add_argument("--expect", action="append", default=[], metavar="KEY=VERSION",
                   help=f"expected version; keys: {', '.join(EXPECT_KEYS)} (repeatable, or comma-separated)")
    p.add_argument("--require", action="append", default=[], metavar="MOD[,MOD]",
                   help=f"modules that must import: {', '.join(OPTIONAL_MODULES)}")
    p.add_argument("--nccl-allreduce", action="store_true", help="run an NCCL all-reduce over all GPUs")
    p.add_argument("--skip-imports", action="store_true", help="skip the vllm/flashinfer/... import checks")
    p.add_argument("--baseline", default=None, metavar="REPORT.json",
                   help="a report of this program from a known-good image on the same GPU arch: an SDPA case "
                        "that passed there and is unavailable here fails")
    p.add_argument("--no-builtin-baseline", dest="builtin_baseline", action="store_false",
                   help="do not enforce the built-in per-arch SDPA availability (SDPA_EXPECTED_AVAILABLE)")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = build_parser().parse_args(list(argv))
    args.expect = _parse_expect(args.expect)
    args.require = _parse_require(args.require)
    if args.arch.strip().lower() != "auto":
        parse_arch(args.arch)
    args.faults = parse_faults(os.environ.get(FAULT_ENV))
    args.baseline_report = load_baseline(args.baseline) if args.baseline else None
    return args


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def build_report(checks: Sequence[CheckResult], host: dict, args: dict | None = None, **extra: Any) -> dict:
    report = {
        "ok": bool(checks) and all(c.ok for c in checks),
        "schema": SCHEMA,
        "host": host,
        "args": args or {},
        "checks": [c.to_dict() for c in checks],
        "summary": {
            "passed": sum(1 for c in checks if c.ok and not c.skipped),
            "failed": sum(1 for c in checks if not c.ok),
            "skipped": sum(1 for c in checks if c.skipped),
        },
    }
    report.update(extra)
    return _jsonable(report)


def exit_code(report: Mapping[str, Any]) -> int:
    if report.get("usage_error"):
        return EXIT_USAGE
    return EXIT_OK if report.get("ok") else EXIT_FAIL


def _driver_cuda_version() -> str | None:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(v)) != 0:
            return None
        return f"{v.value // 1000}.{v.value % 1000 // 10}"
    except Exception:
        return None


def _host_info(torch: Any) -> dict:
    host: dict = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "hostname": platform.node(),
        "driver_cuda": _driver_cuda_version(),
        "torch": None,
        "gpu_count": 0,
        "gpus": [],
    }
    if torch is None:
        return host
    host["torch"] = getattr(torch, "__version__", None)
    host["torch_cuda"] = getattr(torch.version, "cuda", None)
    host["torch_git"] = getattr(torch.version, "git_version", None)
    for key, fn in (("cudnn", lambda: torch.backends.cudnn.version()),
                    ("nccl", lambda: nccl_version_string(torch.cuda.nccl.version())),
                    ("arch_list", lambda: torch.cuda.get_arch_list())):
        try:
            host[key] = fn()
        except Exception as e:
            host[key] = f"unavailable: {type(e).__name__}"
    try:
        if torch.cuda.is_available():
            host["gpu_count"] = torch.cuda.device_count()
            for i in range(host["gpu_count"]):
                props = torch.cuda.get_device_properties(i)
                host["gpus"].append({
                    "index": i,
                    "name": props.name,
                    "capability": capability_to_arch((props.major, props.minor)),
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count,
                })
    except Exception as e:
        host["gpu_error"] = f"{type(e).__name__}: {e}"
    return host


def _guard(name: str, fn: Callable[[], Any]) -> list[CheckResult]:
    """Run a check function; an exception becomes a failed check (with the traceback in its data)."""
    t0 = time.monotonic()
    try:
        res = fn()
    except Exception as e:
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        res = CheckResult.failed(name, f"{type(e).__name__}: {str(e).strip()[:500]}",
                                 traceback=tb.splitlines()[-12:])
    results = res if isinstance(res, list) else [res]
    dt = round(time.monotonic() - t0, 3)
    for r in results:
        r.data.setdefault("seconds", dt)
    return results


def run_checks(args: argparse.Namespace) -> tuple[list[CheckResult], dict]:
    checks: list[CheckResult] = []
    torch = None
    try:
        import torch  # noqa: F811
    except Exception as e:
        checks.append(CheckResult.failed("torch_import", f"torch does not import: {type(e).__name__}: {e}"))
    host = _host_info(torch)
    host["fault"] = ",".join(args.faults) or None
    expected_arch = None if args.arch.strip().lower() == "auto" else args.arch.strip().lower()
    gpu_ok = False
    n_gpus = 0

    if torch is not None:
        checks.append(CheckResult.passed("torch_import", f"torch {torch.__version__} from "
                                         f"{os.path.dirname(getattr(torch, '__file__', '') or '?')}"))

        def cuda_build() -> CheckResult:
            cuda = torch.version.cuda
            built = torch.backends.cuda.is_built()
            data = {"torch.version.cuda": cuda, "is_built": built}
            if cuda is None or not built:
                return CheckResult.failed("torch_cuda_build", f"not a CUDA build of torch "
                                          f"(torch.version.cuda={cuda}, is_built={built})", **data)
            return CheckResult.passed("torch_cuda_build", f"CUDA {cuda} build", **data)

        checks += _guard("torch_cuda_build", cuda_build)

        def gpu_visible() -> CheckResult:
            nonlocal gpu_ok, n_gpus
            if not torch.cuda.is_available():
                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                return CheckResult.failed("gpu_visible", "no CUDA GPU visible to torch "
                                          f"(CUDA_VISIBLE_DEVICES={visible!r}, "
                                          f"driver CUDA {host.get('driver_cuda')})")
            n_gpus = torch.cuda.device_count()
            x = torch.arange(1024, device="cuda", dtype=torch.float32)
            total = float((x * 2 + 1).sum())  # launches elementwise + reduction kernels
            if total != 1024.0 * 1024.0:
                return CheckResult.failed("gpu_visible", f"trivial kernel gave {total}, expected {1024.0**2}")
            gpu_ok = True
            names = ", ".join(f"{g['name']} ({g['capability']})" for g in host["gpus"])
            return CheckResult.passed("gpu_visible", f"{n_gpus} GPU(s): {names}; kernel launch ok")

        checks += _guard("gpu_visible", gpu_visible)

        if expected_arch is None and host["gpus"]:
            expected_arch = host["gpus"][0]["capability"]
        host["arch_expected"] = expected_arch

        def arch_list() -> CheckResult:
            if expected_arch is None:
                return CheckResult.failed("arch_list", "--arch auto but no GPU to take the arch from")
            ok, detail, data = arch_matches(expected_arch, torch.cuda.get_arch_list())
            return CheckResult("arch_list", ok, False, detail, data)

        checks += _guard("arch_list", arch_list)

        def gpu_arch() -> CheckResult:
            if not host["gpus"]:
                return CheckResult.skip("gpu_arch", "no GPU")
            caps = [g["capability"] for g in host["gpus"]]
            ok, detail, data = gpu_arch_matches(expected_arch, caps, torch.cuda.get_arch_list())
            return CheckResult("gpu_arch", ok, False, detail, data)

        checks += _guard("gpu_arch", gpu_arch)

        def versions() -> list[CheckResult]:
            out = []
            found = {"cuda": torch.version.cuda, "torch": torch.__version__}
            nccl_err = ""
            try:
                found["nccl"] = nccl_version_string(torch.cuda.nccl.version())
            except Exception as e:
                found["nccl"] = None
                nccl_err = f"{type(e).__name__}: {e}"
            for key in ("cuda", "nccl", "torch"):
                name, exp, act = f"version:{key}", args.expect.get(key), found[key]
                if exp is None:
                    detail = f"{act if act is not None else 'unknown'} (no --expect {key})"
                    if act is None and key == "nccl":
                        detail += f": {nccl_err}"
                    out.append(CheckResult.passed(name, detail, found=act))
                else:
                    ok, detail = version_matches(key, exp, act)
                    out.append(CheckResult(name, ok, False, detail, {"found": act, "expected": exp}))
            return out

        checks += _guard("version", versions)

    no_gpu = "no usable CUDA GPU" if torch is not None else "torch does not import"
    if torch is None:
        for name in ("torch_cuda_build", "gpu_visible", "arch_list", "gpu_arch"):
            checks.append(CheckResult.skip(name, no_gpu))
        for key in ("cuda", "nccl", "torch"):
            checks.append(CheckResult.skip(f"version:{key}", no_gpu))
    if gpu_ok:
        backends = with_faults(SDPA_BACKENDS, args.faults)
        sdpa = _guard("sdpa", lambda: run_sdpa_checks(torch, "cuda", backends))
        gpu0 = host["gpus"][0]["capability"] if host["gpus"] else None
        expected, sources, problems = sdpa_expectations(gpu0, args.builtin_baseline, args.baseline_report,
                                                        args.baseline)
        sdpa, availability = enforce_availability(sdpa, expected, sources, problems)
        checks += sdpa + [availability]
        checks += _guard("matmul", lambda: run_matmul_checks(torch, "cuda"))
        need_triton = "triton" in args.require
        checks += _guard("triton:vector_add", lambda: run_triton_check(torch, "cuda", need_triton))
    else:
        checks.append(CheckResult.skip("sdpa", no_gpu))
        checks.append(CheckResult.skip("sdpa:availability", no_gpu))
        checks.append(CheckResult.skip("matmul", no_gpu))
        checks.append(CheckResult.skip("triton:vector_add", no_gpu))

    for name in OPTIONAL_MODULES:
        cname = f"import:{name}"
        if args.skip_imports:
            checks.append(CheckResult.skip(cname, "--skip-imports"))
            continue
        checks += _guard(cname, lambda name=name: module_check(
            name, probe_module(name, MODULE_EXTRA_IMPORTS.get(name, ()), ext_glob=MODULE_EXTENSIONS.get(name)),
            args.expect.get(name), name in args.require, driver=gpu_ok))

    if not args.nccl_allreduce:
        checks.append(CheckResult.skip("nccl:allreduce", "not requested (--nccl-allreduce)"))
    elif not gpu_ok or n_gpus < 1:
        checks.append(CheckResult.skip("nccl:allreduce", no_gpu))
    else:
        checks += _guard("nccl:allreduce", lambda: run_nccl_allreduce(torch, n_gpus))
    return checks, host


def run_smoke(argv: Sequence[str]) -> tuple[dict, int]:
    """Parse argv, run every check, return (report, exit code).  Never raises."""
    t0 = time.monotonic()
    try:
        args = parse_args(argv)
    except UsageError as e:
        report = build_report([], {}, {"argv": list(argv)}, usage_error=str(e))
        return report, EXIT_USAGE
    try:
        checks, host = run_checks(args)
    except Exception as e:  # belt and braces: the report must always come out
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        checks, host = [CheckResult.failed("smoke_program", f"internal error: {type(e).__name__}: {e}",
                                           traceback=tb.splitlines()[-12:])], {}
    host["duration_s"] = round(time.monotonic() - t0, 2)
    report = build_report(checks, host, {
        "arch": args.arch, "expect": args.expect, "require": args.require,
        "nccl_allreduce": args.nccl_allreduce, "skip_imports": args.skip_imports,
        "baseline": args.baseline, "builtin_baseline": args.builtin_baseline,
    })
    return report, exit_code(report)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: stdout carries only the JSON report; anything else written to fd 1 goes to stderr."""
    argv = sys.argv[1:] if argv is None else argv
    sys.stdout.flush()
    report_fd = os.dup(1)
    os.dup2(2, 1)  # C libraries (NCCL_DEBUG, ...) and spawned workers print to stderr from here on
    sys.stdout = sys.stderr
    try:
        import faulthandler

        faulthandler.enable(file=sys.stderr)
        report, code = run_smoke(argv)
        if report.get("usage_error"):
            print(f"smoke.py: {report['usage_error']}", file=sys.stderr)
            build_parser().print_usage(sys.stderr)
    finally:
        sys.stdout = sys.__stdout__
    with os.fdopen(report_fd, "w") as out:
        out.write(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
