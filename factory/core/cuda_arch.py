"""CUDA architecture names and CUDA's binary compatibility rules: which GPU code runs on which GPU.

Pure: `factory.adapters.rootfs.fatbin` reads which cubins (SASS) and PTX a library carries; these rules say
whether that runs on a target GPU (`runs_on`) and give the label form of an architecture list (`format_archs`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ARCH_NAME = re.compile(r"^(sm|compute)_(\d+)([af]?)$")


def parse_arch(name: str) -> tuple[str, int, str]:
    """("sm" or "compute", number, variant) of `sm_120a`, `compute_90`, ...; ValueError for anything else."""
    match = _ARCH_NAME.match(name.strip())
    if not match:
        raise ValueError(f"not a CUDA architecture name: {name!r} (expected sm_XY[a|f] or compute_XY[a|f])")
    return match[1], int(match[2]), match[3]


def arch_key(name: str) -> tuple[int, int, str]:
    """Sort key: by number, then plain before `f` before `a`, SASS before PTX (`sm_90 sm_90a sm_100`)."""
    try:
        kind, number, variant = parse_arch(name)
    except ValueError:
        return (1 << 30, 0, name)
    return (number, {"": 0, "f": 1, "a": 2}[variant], kind == "compute" and "1" or "0")


def sort_archs(names: Iterable[str]) -> list[str]:
    """Architecture names sorted by number (`sm_80 sm_90 sm_90a sm_100 ...`), duplicates dropped."""
    return sorted(set(names), key=arch_key)


def format_archs(names: Iterable[str]) -> str:
    """Names sorted by number and joined by spaces: the form of the `cuda_sass` / `cuda_ptx` labels."""
    return " ".join(sort_archs(names))


def _capability(number: int) -> tuple[int, int]:
    """(major, minor) of an SM number: 121 -> (12, 1), 90 -> (9, 0)."""
    return number // 10, number % 10


def compatible(name: str, target: str) -> bool:
    """Whether code for architecture `name` (`sm_120`, `compute_90a`, ...) can run on a `target` GPU (`sm_121`).

    Cubins: sm_XY runs on the same major X with minor >= Y; sm_XYf likewise (its family); sm_XYa only on
    exactly X.Y. PTX: compute_XY is JIT-compiled for any GPU of compute capability >= X.Y; compute_XYf
    within family X at minor >= Y; compute_XYa only on exactly X.Y. See docs/sass.md for the sources.
    """
    kind, number, variant = parse_arch(name)
    device = _capability(_target_number(target))
    code = _capability(number)
    if variant == "a":
        return device == code
    if kind == "sm" or variant == "f":
        return device[0] == code[0] and device[1] >= code[1]
    return device >= code


def runs_on(sass: Iterable[str], ptx: Iterable[str], target: str = "sm_121") -> tuple[bool, str]:
    """Whether a library with these cubins (`sass`) and PTX can run on a `target` GPU, and why in one sentence.

    A cubin that runs on the target is preferred over PTX (the driver loads a compatible cubin and JIT-compiles
    PTX only when there is none). This is a verdict on the set: a kernel compiled for fewer architectures than
    the rest is not seen here.
    """
    number = _target_number(target)
    device = f"sm_{number}"
    sass = sort_archs(sass)
    ptx = sort_archs(ptx)
    cubins = [n for n in sass if compatible(n, device)]
    if cubins:
        major, minor = _capability(number)
        return True, f"SASS {' '.join(cubins)} runs on {device} (major {major}, minor <= {minor})"
    jit = [n for n in ptx if compatible(n, device)]
    have = " ".join(sass + ptx) or "no device code"
    if jit:
        return True, f"no SASS runs on {device}, but {jit[-1]} PTX is JIT-compiled for it (has {have})"
    reasons = []
    for name in sass + ptx:
        kind, num, variant = parse_arch(name)
        if variant == "a" and num != number:
            reasons.append(f"{name} is architecture-specific")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return False, (f"nothing runs on {device}: no SASS for {_capability(number)[0]}.x at minor <= "
                   f"{_capability(number)[1]} and no PTX at or below compute_{number} (has {have}){why}")


def _target_number(target: str) -> int:
    """The SM number of a target GPU written `sm_121`, `121`, or `12.1`."""
    text = target.strip().lower()
    if m := re.fullmatch(r"(?:sm_|compute_)?(\d+)[af]?", text):
        return int(m[1])
    if m := re.fullmatch(r"(\d+)\.(\d)", text):
        return int(m[1]) * 10 + int(m[2])
    raise ValueError(f"not a GPU architecture: {target!r} (expected sm_121 or 12.1)")
