"""Run the GPU smoke test (dockerfiles/smoke.py, at /opt/factory/smoke.py in every vLLM image) and read its report.

The program in the image does the work and prints one JSON report; this module builds its command line,
runs it (in an image through the engine, `factory.core.engine.Engine`, or with a local interpreter), parses
the report (also when the program exits 1, which is how it says a check failed), and renders it as a
plain-text table.

A baseline (`baseline=`, a report of the program saved from a known-good image on the same GPU arch) makes
every SDPA case that passed there and is unavailable now a failure; smoke_image() bind-mounts the file
read-only into the container at BASELINE_PATH_IN_IMAGE and passes `--baseline` that path (run_local() passes
the host path).  The program's built-in per-arch expectation applies unless `builtin_baseline=False`.

Import cost matters (the CLI imports this module on every start): the standard library and the pure core only
at module level; the Docker adapter is imported inside smoke_image().
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.core.components import SMOKE_EXPECT, SMOKE_IMPORTS
from factory.core.engine import ContainerRun, Engine, EngineError

#: Where the Dockerfiles COPY dockerfiles/smoke.py.
SMOKE_PATH_IN_IMAGE = "/opt/factory/smoke.py"
#: Where smoke_image() bind-mounts a baseline report (read-only) for the program's --baseline.
BASELINE_PATH_IN_IMAGE = "/opt/factory/smoke-baseline.json"
#: The program in this checkout, for run_local().
SMOKE_PROGRAM = Path(__file__).resolve().parents[2] / "dockerfiles" / "smoke.py"
#: --expect keys, each fed by the label <namespace>.<key>_version; modules every vLLM image must import.
EXPECT_KEYS, IMAGE_REQUIRE = SMOKE_EXPECT, SMOKE_IMPORTS
DEFAULT_NAMESPACE = "dev.scitrera"


@dataclass
class SmokeCheck:
    name: str
    ok: bool
    skipped: bool = False
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def result(self) -> str:
        return "SKIP" if self.skipped else ("PASS" if self.ok else "FAIL")


@dataclass
class SmokeReport:
    ok: bool
    checks: list[SmokeCheck] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    usage_error: str | None = None
    #: Where it ran: the image, or the local interpreter.
    target: str = ""
    command: list[str] = field(default_factory=list)
    #: The report exactly as the program printed it (empty when it printed none).
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[SmokeCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def skipped(self) -> list[SmokeCheck]:
        return [c for c in self.checks if c.skipped]

    @property
    def passed(self) -> list[SmokeCheck]:
        return [c for c in self.checks if c.ok and not c.skipped]

    def check(self, name: str) -> SmokeCheck | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return self.raw or {"ok": self.ok, "host": self.host, "args": self.args,
                            "checks": [vars(c) for c in self.checks]}


def expect_from_labels(labels: Mapping[str, str], namespace: str = DEFAULT_NAMESPACE) -> dict[str, str]:
    """The --expect values an image's labels claim: <namespace>.<key>_version -> key (empty values dropped).

    Values are passed on as labelled ("2.29.2-1" for NCCL): the program normalises them.
    """
    expect = {}
    for key in EXPECT_KEYS:
        value = labels.get(f"{namespace}.{key}_version")
        if value is not None and str(value).strip():
            expect[key] = str(value).strip()
    return expect


def smoke_args(*, arch: str = "sm_121", expect: Mapping[str, str] | None = None, nccl: bool = False,
               require: Iterable[str] = (), skip_imports: bool = False, baseline: str | Path | None = None,
               builtin_baseline: bool = True) -> list[str]:
    """The program's command-line arguments (`baseline`: the report's path as the program sees it)."""
    args = ["--arch", arch]
    for key, value in sorted((expect or {}).items()):
        if key not in EXPECT_KEYS:
            raise ValueError(f"unknown --expect key {key!r}; known: {', '.join(EXPECT_KEYS)}")
        args += ["--expect", f"{key}={value}"]
    require = [r for r in require if r]
    if require:
        args += ["--require", ",".join(require)]
    if nccl:
        args.append("--nccl-allreduce")
    if skip_imports:
        args.append("--skip-imports")
    if baseline is not None:
        args += ["--baseline", str(baseline)]
    if not builtin_baseline:
        args.append("--no-builtin-baseline")
    return args


def baseline_mount(baseline: str | Path) -> list[str]:
    """docker's --mount fields that put the host's baseline report, read-only, at BASELINE_PATH_IN_IMAGE.

    The path is made absolute (docker needs that); a missing file, or a comma in the path (--mount's
    separator), is an InputError.
    """
    from factory.core.errors import InputError

    path = Path(baseline).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"smoke baseline {baseline}: no such file")
    if "," in str(path):
        raise InputError(f"smoke baseline {path}: a path with a comma cannot be bind-mounted; copy it elsewhere")
    return ["type=bind", f"source={path}", f"target={BASELINE_PATH_IN_IMAGE}", "readonly"]


def _find_report(stdout: str) -> dict[str, Any] | None:
    """The program's JSON report in stdout; tolerates other lines around it (an entrypoint banner, say)."""
    text = stdout.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
        if isinstance(obj, dict) and "checks" in obj:
            return obj
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    found = None
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and "checks" in obj:
            found = obj  # the last complete report wins
        pos = text.find("{", end)
    return found


def _tail(text: str | None, lines: int = 8) -> str:
    return " | ".join((text or "").strip().splitlines()[-lines:])[:1500]


def parse_report(stdout: str, *, exit_code: int | None = None, stderr: str | None = None,
                 target: str = "", command: Sequence[str] = ()) -> SmokeReport:
    """A SmokeReport from the program's stdout and exit status.

    No JSON (the program crashed, docker could not start the container) gives a failed report with one
    check, "smoke_program", saying so.  The report is ok only if the program said ok AND exited 0.
    """
    raw = _find_report(stdout or "")
    if raw is None:
        why = f"no JSON report from the smoke program (exit {exit_code})"
        if stderr:
            why += f"; stderr: {_tail(stderr)}"
        elif stdout and stdout.strip():
            why += f"; stdout: {_tail(stdout)}"
        return SmokeReport(ok=False, checks=[SmokeCheck("smoke_program", False, False, why)],
                           exit_code=exit_code, target=target, command=list(command))
    checks = [
        SmokeCheck(name=str(c.get("name", "?")), ok=bool(c.get("ok")), skipped=bool(c.get("skipped")),
                   detail=str(c.get("detail", "")), data=dict(c.get("data") or {}))
        for c in raw.get("checks", [])
    ]
    ok = bool(raw.get("ok")) and (exit_code in (None, 0))
    if bool(raw.get("ok")) and exit_code not in (None, 0):
        checks.append(SmokeCheck("smoke_program", False, False,
                                 f"report says ok but the program exited {exit_code}"))
    if raw.get("usage_error"):
        checks.append(SmokeCheck("smoke_program", False, False, f"bad usage: {raw['usage_error']}"))
        ok = False
    return SmokeReport(ok=ok, checks=checks, host=dict(raw.get("host") or {}), args=dict(raw.get("args") or {}),
                       exit_code=exit_code, usage_error=raw.get("usage_error"), target=target,
                       command=list(command), raw=raw)


def _gpu_flag(gpus: str | int | None) -> str | int | None:
    """docker's --gpus value; "none" (or empty) runs without GPUs, which only shows the image runs the program."""
    return None if gpus is None or str(gpus).strip().lower() in ("", "none") else gpus


def smoke_run(image: str, *, gpus: str | int | None = "all", arch: str = "sm_121",
              expect: Mapping[str, str] | None = None, nccl: bool = False,
              require: Iterable[str] = IMAGE_REQUIRE, skip_imports: bool = False, pull: str | None = "missing",
              envs: Mapping[str, str] | None = None, baseline: str | Path | None = None,
              builtin_baseline: bool = True, platform: str | None = None) -> ContainerRun:
    """The container run of the smoke program in `image`: `python3 /opt/factory/smoke.py ...` as entrypoint
    (vLLM images start `vllm serve`), `--shm-size` for NCCL, the baseline bind-mounted read-only."""
    program_args = smoke_args(arch=arch, expect=expect, nccl=nccl, require=require, skip_imports=skip_imports,
                              baseline=BASELINE_PATH_IN_IMAGE if baseline is not None else None,
                              builtin_baseline=builtin_baseline)
    flag = _gpu_flag(gpus)
    run_envs = {"PYTHONUNBUFFERED": "1", "NCCL_NVLS_ENABLE": "0", **(envs or {})}
    return ContainerRun(
        image=image, entrypoint="python3", command=(SMOKE_PATH_IN_IMAGE, *program_args), platform=platform,
        gpus=None if flag is None else str(flag),
        shm_size="2g" if nccl else None,  # NCCL's shared-memory transport outgrows docker's 64 MiB /dev/shm
        mounts=(",".join(baseline_mount(baseline)),) if baseline is not None else (),
        envs=tuple(run_envs.items()), pull=pull)


def smoke_command(image: str, **options: Any) -> list[str]:
    """The `docker run` command line smoke_image() runs (for logs and --dry-run); options as smoke_run()'s."""
    return smoke_run(image, **options).argv()


def smoke_image(image: str, *, gpus: str | int | None = "all", arch: str = "sm_121",
                expect: Mapping[str, str] | None = None, nccl: bool = False,
                require: Iterable[str] = IMAGE_REQUIRE, skip_imports: bool = False, pull: str = "missing",
                envs: Mapping[str, str] | None = None, baseline: str | Path | None = None,
                builtin_baseline: bool = True, platform: str | None = None,
                engine: Engine | None = None) -> SmokeReport:
    """Run `python3 /opt/factory/smoke.py ...` in `image` on the GPUs `gpus` and return its report.

    A failing check makes the program exit 1 after printing its report: that report is parsed like a
    success's. `engine` runs the container (default: Docker). `gpus="none"` runs without `--gpus` (no GPU
    check can pass then; it proves the program runs in the image). `baseline` is a report on this host,
    bind-mounted read-only (see baseline_mount); `platform` is the image's platform ("linux/arm64"), passed to
    `docker run --platform` so that the image of that platform runs (and a missing one is pulled for it).
    """
    request = smoke_run(image, gpus=gpus, arch=arch, expect=expect, nccl=nccl, require=require,
                        skip_imports=skip_imports, pull=pull, envs=envs, baseline=baseline,
                        builtin_baseline=builtin_baseline, platform=platform)
    if engine is None:
        from factory.adapters.docker import DockerEngine

        engine = DockerEngine()
    try:
        done = engine.run(request)
    except EngineError as error:
        return SmokeReport(ok=False, checks=[SmokeCheck("smoke_program", False, False, str(error))],
                           target=image, command=request.argv())
    return parse_report(done.stdout, exit_code=done.exit_code, stderr=done.stderr or None, target=image,
                        command=request.argv())


def run_local(python: str = sys.executable, *, script: str | Path | None = None, arch: str = "sm_121",
              expect: Mapping[str, str] | None = None, nccl: bool = False, require: Iterable[str] = (),
              skip_imports: bool = False, baseline: str | Path | None = None, builtin_baseline: bool = True,
              env: Mapping[str, str] | None = None, timeout: float | None = 1800) -> SmokeReport:
    """Run the program with a local interpreter (hosts without Docker); no shell involved."""
    script = Path(script) if script is not None else SMOKE_PROGRAM
    command = [python, str(script), *smoke_args(arch=arch, expect=expect, nccl=nccl, require=require,
                                                skip_imports=skip_imports, baseline=baseline,
                                                builtin_baseline=builtin_baseline)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, check=False)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        report = parse_report(out, exit_code=None, target=python, command=command)
        report.ok = False
        report.checks.append(SmokeCheck("smoke_program", False, False, f"timed out after {timeout:g}s"))
        return report
    except OSError as e:
        return SmokeReport(ok=False, checks=[SmokeCheck("smoke_program", False, False,
                                                        f"cannot run {python}: {e}")],
                           target=python, command=command)
    return parse_report(proc.stdout, exit_code=proc.returncode, stderr=proc.stderr, target=python,
                        command=command)


def render_table(report: SmokeReport, *, max_detail: int = 120) -> str:
    """A plain-text, aligned table: CHECK  RESULT  DETAIL, then a one-line verdict."""
    rows = []
    for c in report.checks:
        detail = " ".join(c.detail.split())
        if max_detail and len(detail) > max_detail:
            detail = detail[: max_detail - 3] + "..."
        rows.append((c.name, c.result, detail))
    header = ("CHECK", "RESULT", "DETAIL")
    w0 = max([len(header[0])] + [len(r[0]) for r in rows])
    w1 = max([len(header[1])] + [len(r[1]) for r in rows])
    lines = []
    host = report.host or {}
    gpus = ", ".join(f"{g.get('name')} ({g.get('capability')})" for g in host.get("gpus") or [])
    if report.target or gpus:
        lines.append(f"smoke test of {report.target or '?'}: torch {host.get('torch')}, "
                     f"{gpus or 'no GPU'}")
    lines.append(f"{header[0]:<{w0}}  {header[1]:<{w1}}  {header[2]}")
    lines.append(f"{'-' * w0}  {'-' * w1}  {'-' * len(header[2])}")
    lines += [f"{n:<{w0}}  {r:<{w1}}  {d}".rstrip() for n, r, d in rows]
    verdict = "PASS" if report.ok else "FAIL"
    lines.append(f"{verdict}: {len(report.passed)} passed, {len(report.failed)} failed, "
                 f"{len(report.skipped)} skipped")
    return "\n".join(lines)


def load_report(path: str | Path, exit_code: int | None = None) -> SmokeReport:
    """A report saved as JSON (docs/smoke/*.json, a CI artifact)."""
    text = Path(path).read_text()
    return parse_report(text, exit_code=exit_code, target=str(path))
