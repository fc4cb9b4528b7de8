"""uv, the resolver behind `factory lock`: running `uv pip compile` for an image and reading what it wrote.

uv runs with no configuration of its own (`--no-config`, the caller's `UV_*` and `PIP_*` variables dropped),
never downloads a Python, and keeps its cache under the factory's. Its output (`--generate-hashes`, either
annotation style) becomes `Resolved` pins; a failed resolution becomes `LockFailed` carrying uv's own
explanation, with credentials redacted.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from factory.core.errors import WorkFailed
from factory.core.lockrules import LockFailed, Resolved
from factory.core.lockspec import LockSpec
from factory.core.redact import redact


def uv_binary() -> str:
    """The uv that ships as a Python package beside the factory (the `uv` dependency), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise WorkFailed("uv is not installed: `pip install uv` (the factory resolves locks with it)") from None
        return found


@functools.cache
def uv_version() -> str:
    """`uv X.Y.Z`, as the uv in use says it (recorded in every lock)."""
    out = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "uv (unknown version)"


def parse_compiled(text: str) -> list[Resolved]:
    """The pins of `uv pip compile --generate-hashes` output (both annotation styles)."""
    out: list[Resolved] = []
    name = version = None
    hashes: list[str] = []
    via: list[str] = []
    in_via = False

    def flush() -> None:
        nonlocal name, version, hashes, via
        if name is not None:
            out.append(Resolved(name, version or "", tuple(hashes), tuple(via)))
        name, version, hashes, via = None, None, [], []

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith(" ") and not line.startswith("#"):
            flush()
            in_via = False
            requirement, _, comment = line.partition(" #")
            requirement = requirement.rstrip(" \\")
            if " @ " in requirement:
                raise LockFailed(f"{requirement.strip()} is a direct reference (a `sources` entry): a lock pins "
                                 "releases of an index by hash, so build such a component into a wheel on an index")
            pin_name, sep, pin_version = requirement.partition("==")
            if not sep:
                raise WorkFailed(f"uv wrote a line that is not a pin: {line[:80]!r}")
            name, version = pin_name.strip(), pin_version.strip()
            if comment.strip().startswith("via "):
                via.extend(w.strip() for w in comment.strip()[4:].split(","))
            continue
        if stripped.startswith("--hash="):
            hashes.append(stripped[len("--hash="):].rstrip(" \\"))
        elif stripped.startswith("# via"):
            rest = stripped[len("# via"):].strip()
            in_via = not rest
            if rest:
                via.extend(w.strip() for w in rest.split(","))
        elif in_via and stripped.startswith("#   "):
            via.append(stripped[4:].strip())
    flush()
    return out


def compile_requirements(spec: LockSpec, workdir: Path, requirements: list[str], *, constraints: list[str],
                overrides: list[str], no_deps: bool, extra_indexes: tuple[str, ...],
                preferred: list[str], offline: bool = False) -> list[Resolved]:
    """Resolve `requirements` for the spec's platform and Python with `uv pip compile` in `workdir`: with
    `constraints`, `overrides`, and the `preferred` pins uv keeps where it can (its output file); `no_deps` for a
    group installed without dependencies; `offline` answers from uv's cache only."""
    (workdir / "preferred.txt").write_text("".join(f"{p}\n" for p in preferred), encoding="utf-8")
    (workdir / "requirements.in").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (workdir / "constraints.txt").write_text("\n".join(constraints) + "\n", encoding="utf-8")
    (workdir / "overrides.txt").write_text("\n".join(overrides) + "\n", encoding="utf-8")
    argv = [uv_binary(), "pip", "compile", "requirements.in", "--quiet", "--generate-hashes", "--no-header",
            "--annotation-style", "line", "--python-platform", spec.python_platform,
            "--python-version", spec.python, "--index-url", spec.index, "--index-strategy", "first-index",
            "-c", "constraints.txt", "--override", "overrides.txt", "--no-config", "-o", "preferred.txt",
            # a missing interpreter of the target version must not send uv looking for one to download
            "--no-python-downloads"]
    for url in ((spec.extra_index,) if spec.extra_index else ()) + extra_indexes:
        argv += ["--extra-index-url", url]
    if no_deps:
        argv.append("--no-deps")
    if offline:  # answers from uv's cache only: a package it never saw fails the resolution, named
        argv.append("--offline")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR", str(cache_dir()))
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise LockFailed(_explain(proc.stderr))
    return parse_compiled((workdir / "preferred.txt").read_text(encoding="utf-8"))


def cache_dir() -> Path:
    """uv's cache, under the factory's own (unless UV_CACHE_DIR says otherwise)."""
    from factory.adapters.index.cache import default_cache_dir

    return default_cache_dir() / "uv"


def _explain(stderr: str) -> str:
    """uv's own explanation of a failed resolution, without its box-drawing prefixes."""
    lines = [re.sub(r"^[\s×╰─▶│├┬┴┼╭╮╯\-]*", "", line).rstrip() for line in stderr.splitlines()]
    text = " ".join(line for line in lines if line)
    return redact(text)[:2000] or "uv failed without saying why"


