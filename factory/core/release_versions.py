"""Comparing version texts the way labels and images write them.

A label says `2.29.2-1` where the image's library says `2.29.2`, and `13.0` where the toolkit says `13.0.96`:
these helpers decide when two such texts are the same release, and order versions found in an image.
"""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

from factory.core.matrix import version_of


def _version(component: str, text: str) -> Version | None:
    """The public PEP 440 version of a component's version text, None where it is not one."""
    try:
        return Version(version_of(component, text).public)
    except InvalidVersion:
        return None


def versions_equal(component: str, label: str, found: str) -> bool:
    """Whether a label's version text and a found version are the same release (PEP 440 public versions).

    NCCL's Debian package revision (`2.29.2-1`) is dropped; Python compares major.minor, and so does CUDA when
    only its major.minor was measured. Text that is not a version compares as text.
    """
    if component == "python" or (component == "cuda" and re.fullmatch(r"\s*\d+\.\d+\s*", found)):
        # CUDA measured only to major.minor (from libcudart.so.13.0.96 or cuda.h) is any 13.0.x.
        label, found = ".".join(label.split(".")[:2]), ".".join(found.split(".")[:2])
    a, b = _version(component, label), _version(component, found)
    if a is None or b is None:
        return label.strip() == found.strip()
    return a == b


def version_sort_key(text: str) -> tuple[int, Version | str]:
    """Sort key of version text: PEP 440 order, anything that is no version first."""
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (-1, text)


def major_minor(version: str) -> str | None:
    """`13.0` of `13.0.96`, `13.0.1-1`, `13.0`; None for text without a major.minor."""
    m = re.match(r"\s*v?(\d+)\.(\d+)", version)
    return f"{int(m[1])}.{int(m[2])}" if m else None


def major_of(text: str | None) -> int | None:
    """The major number a version text starts with (`13` of `13.0.1`), or None."""
    if not text:
        return None
    match = re.match(r"\s*(\d+)", text)
    return int(match[1]) if match else None
