"""The build toolchain an image carries outside site-packages, and the C compiler Triton would use.

What counts as toolchain is `factory.core.toolchain`'s; this looks for it in the tool directories, gcc's
cc1plus and the CUDA toolkit's header directories, and finds the C compiler as Triton does (CC, else gcc, else
clang on PATH).
"""

from __future__ import annotations

import fnmatch
import os

from factory.adapters.rootfs.paths import glob_parts, image_path, resolve_parts
from factory.adapters.rootfs.state import ScanState
from factory.core.toolchain import CUDA_HEADERS, TOOLCHAIN_PROGRAMS

#: The directories searched for build tools (top-level bin/ too, when it is not a link to usr/bin).
TOOL_DIRECTORIES = ("usr/bin", "usr/local/bin", "bin")

#: gcc's C++ compiler proper, where gcc installs it.
CC1PLUS_PATTERNS = ("usr/lib/gcc/*/*/cc1plus", "usr/libexec/gcc/*/*/cc1plus")
#: Where the CUDA toolkit puts its headers.
CUDA_HEADER_DIRECTORIES = ("usr/local/cuda*/include", "usr/local/cuda*/targets/*/include", "usr/include")
#: gcc's C compiler proper: a gcc driver without it cannot compile.
CC1_PATTERNS = ("usr/lib/gcc/*/*/cc1", "usr/libexec/gcc/*/*/cc1")

#: The PATH of a container whose image sets none (Docker's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def note_tool(s: ScanState, path: str) -> None:
    """Record a toolchain path that exists in the image (a dangling link is nothing)."""
    rel = resolve_parts(s.root, path)
    if rel is not None and s.root.joinpath(*rel).is_file():
        s.toolchain.add(path)


def scan_toolchain(s: ScanState) -> None:
    """The build tools in the tool directories, gcc's cc1plus, and the CUDA toolkit's headers (nvcc elsewhere is
    noted by the walk of /usr and /opt)."""
    patterns = [p for ps in TOOLCHAIN_PROGRAMS.values() for p in ps]
    seen: set[tuple[str, ...]] = set()
    for directory in TOOL_DIRECTORIES:
        rel = resolve_parts(s.root, directory)
        if rel is None or rel in seen:
            continue  # bin -> usr/bin: listed once, under its usr/bin name
        seen.add(rel)
        try:
            names = sorted(os.listdir(s.root.joinpath(*rel)))
        except OSError:
            continue
        for name in names:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                note_tool(s, f"/{directory}/{name}")
    for pattern in CC1PLUS_PATTERNS:
        for parts in glob_parts(s.root, pattern):
            note_tool(s, image_path(parts))
    for directory in CUDA_HEADER_DIRECTORIES:
        for header in CUDA_HEADERS:
            for parts in glob_parts(s.root, f"{directory}/{header}"):
                note_tool(s, image_path(parts))


def find_c_compiler(s: ScanState) -> str | None:
    """The C compiler Triton would run, as it looks for one: the CC environment variable, else `gcc`, else
    `clang` on PATH (`triton.runtime.build`). A gcc without its cc1 is noted."""
    cc = (s.env.get("CC") or "").split()
    names = cc[:1] or ["gcc", "clang"]
    path = [d for d in (s.env.get("PATH") or DEFAULT_PATH).split(":") if d.startswith("/")]
    for name in names:
        if "/" in name and not name.startswith("/"):
            continue  # relative to the process's working directory: unknowable here
        candidates = [name] if "/" in name else [f"{d.rstrip('/')}/{name}" for d in path]
        for candidate in candidates:
            rel = resolve_parts(s.root, candidate)
            if rel is None or not s.root.joinpath(*rel).is_file():
                continue
            if "gcc" in rel[-1] and not any(glob_parts(s.root, p) for p in CC1_PATTERNS):
                s.notes.append(f"{candidate} is gcc, but the image has no cc1 (usr/lib/gcc/*/*/cc1): it cannot "
                               "compile C")
            return candidate
    if cc:
        s.notes.append(f"the image's env says CC={s.env['CC']}, which is not in the image")
    return None

