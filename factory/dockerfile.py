"""What a Dockerfile declares and reads: its build ARGs and the context files it copies in.

The plan must pass exactly the ARGs a Dockerfile declares, and an image's input digest must cover the
files it copies, so both are read from the Dockerfile itself rather than listed a second time.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE | re.MULTILINE)
_USE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with backslash continuations joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def declared_args(text: str) -> set[str]:
    return set(_ARG.findall(text))


def used_args(text: str) -> set[str]:
    """Names referenced as $NAME or ${NAME...} outside ARG lines."""
    used: set[str] = set()
    for line in _logical_lines(text):
        if re.match(r"^\s*ARG\s", line, re.IGNORECASE):
            continue
        used.update(_USE.findall(line))
    return used


_COPY = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)


def dockerfile_inputs(dockerfile: Path) -> list[Path]:
    """Files of the build context a Dockerfile copies in (COPY/ADD without --from), sorted."""
    context = dockerfile.parent
    found: set[Path] = set()
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = _COPY.match(line)
        if not match:
            continue
        words = [w for w in shlex.split(match[2], comments=True)]
        if any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            if "://" in source:
                continue
            hits = sorted(context.glob(source)) or [context / source]
            for hit in hits:
                found.update(p for p in hit.rglob("*") if p.is_file()) if hit.is_dir() else found.add(hit)
    return sorted(found)
