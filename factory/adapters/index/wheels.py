"""Which wheel of a release an image would install: platform first, then interpreter, build tag and yanked
state, and never a wheel whose Requires-Python excludes the image's Python."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from factory.adapters.index.pages import DistFile

__all__ = ["PLATFORMS", "allows_python", "select_wheel"]

PLATFORMS = ("linux/arm64", "linux/amd64")


def _interpreter_rank(f: DistFile, python_version: str) -> int:
    """0 for this CPython's own tag (``cp312``), 1 for abi3, 2 for py3 (or ``py312``), 3 for anything else."""
    own = "cp" + python_version.replace(".", "")
    tags = f.tags
    if any(t.interpreter == own for t in tags):
        return 0
    if any(t.abi == "abi3" for t in tags):
        return 1
    if any(t.interpreter in ("py3", "py" + own[2:]) for t in tags):
        return 2
    return 3


def allows_python(f: DistFile, python_version: str) -> bool:
    """Whether the file's Requires-Python (from the index page, PEP 503's ``data-requires-python`` or PEP
    691's ``requires-python``) admits CPython ``python_version``. A missing or unreadable one admits it, as
    pip does: the page's metadata cannot be fixed, and the wheel's own METADATA is checked when installed."""
    if not f.requires_python:
        return True
    try:
        specifiers = SpecifierSet(f.requires_python)
    except InvalidSpecifier:
        return True
    return specifiers.contains(_python(python_version), prereleases=True)


@lru_cache(maxsize=16)
def _python(python_version: str) -> Version:
    try:
        return Version(python_version)
    except InvalidVersion:
        raise ValueError(f"python_version must be a version like '3.12', not {python_version!r}") from None


def select_wheel(files: Iterable[DistFile], platform: str | None = "linux/arm64", *,
                 python_version: str = "3.12") -> DistFile | None:
    """The wheel best suited to ``platform`` among ``files``, or None.

    ``linux/arm64``: a manylinux aarch64 wheel, else a manylinux x86_64 one, else a pure
    (``any``) wheel; ``linux/amd64``: x86_64, else aarch64, else pure; ``None``: the same
    as arm64 and then any other wheel.  Among several, cp312 beats abi3 beats py3, a higher
    build tag wins, and non-yanked files are preferred. A wheel whose Requires-Python excludes CPython
    ``python_version`` is never chosen.
    """
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS} or None, not {platform!r}")
    wheels = [f for f in files if f.is_wheel and allows_python(f, python_version)]
    tiers: list[Callable[[DistFile], bool]]
    if platform == "linux/amd64":
        tiers = [lambda f: f.is_x86_64_linux, lambda f: f.is_aarch64_linux, lambda f: f.is_any]
    else:
        tiers = [lambda f: f.is_aarch64_linux, lambda f: f.is_x86_64_linux, lambda f: f.is_any]
    if platform is None:
        tiers.append(lambda f: True)

    def preference(f: DistFile) -> tuple[int, int, Any, str]:
        build = f.build_tag
        return (int(f.yanked), _interpreter_rank(f, python_version), (-build[0], build[1]) if build else (0, ""),
                f.filename)

    for tier in tiers:
        matching = [f for f in wheels if tier(f)]
        if matching:
            return min(matching, key=preference)
    return None

