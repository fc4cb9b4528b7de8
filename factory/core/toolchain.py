"""The build toolchain: what counts as one, by kind, and why a runtime image still needs a C compiler.

A runtime image ships no nvcc, CUDA headers, C++ compiler, make, cmake, ninja or git outside its Python
environment; the rootfs scan finds them by these names (`factory.adapters.rootfs.toolchain`) and the image
checks name each path's kind (`toolchain_kind`).
"""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

#: Build tools a runtime image must not carry, by kind: fnmatch patterns of names in the tool directories. A C
#: compiler (gcc, cc1) is allowed, and needed (C_COMPILER_REASON); pip wheels in site-packages (nvcc and ptxas
#: of nvidia-cuda-nvcc, cmake, ninja) are governed by the image's lock, which verify compares.
TOOLCHAIN_PROGRAMS = {
    "nvcc": ("nvcc",),
    "a C++ compiler": ("g++", "g++-*", "c++", "*-g++*", "clang++", "clang++-*"),
    "make": ("make",),
    "cmake": ("cmake",),
    "ninja": ("ninja",),
    "git": ("git",),
}
#: CUDA toolkit headers a runtime image must not carry outside site-packages.
CUDA_HEADERS = ("cuda_runtime.h", "cuda_runtime_api.h", "cuda.h")

#: Why a runtime image needs a C compiler (and may keep gcc and Python.h).
C_COMPILER_REASON = ("Triton compiles its CUDA launcher stub, which includes Python.h, with the system C compiler "
                     "(CC, else gcc or clang on PATH) the first time it runs a kernel; without one vLLM fails with "
                     "\"Failed to find C compiler\"")


def toolchain_kind(path: str) -> str:
    """What a path in `Findings.toolchain` is: `nvcc`, `a CUDA toolkit header`, `a C++ compiler`, `make`, ..."""
    name = PurePosixPath(path).name
    if name in CUDA_HEADERS:
        return "a CUDA toolkit header"
    if name == "cc1plus":
        return "a C++ compiler"
    for kind, patterns in TOOLCHAIN_PROGRAMS.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return kind
    return "a build tool"
