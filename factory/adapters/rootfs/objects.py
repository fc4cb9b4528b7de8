"""The walk over every shared object under /usr and /opt, reading each one's dynamic section.

Each object's needs are checked against the image (`factory.adapters.rootfs.libraries.Loader`: what the loader
would find nowhere), against CUDA 12 (`factory.core.cuda_abi`), and for the CUDA runtime it links; NCCL
libraries and nvcc outside site-packages are noted on the way.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from factory.adapters.rootfs import elf
from factory.adapters.rootfs.libraries import is_driver_library
from factory.adapters.rootfs.nccl import nccl_from_file
from factory.adapters.rootfs.paths import image_path
from factory.adapters.rootfs.state import ScanState
from factory.adapters.rootfs.toolchain import note_tool
from factory.core.cuda_abi import CUDA12_SONAME, CUDA_RUNTIME_SONAME

#: Top-level directories whose shared objects are checked (site-packages all live below them).
ELF_TOPS = ("usr", "opt")

#: Shared objects larger than this are not read (no real library is; a huge file is data named *.so).
MAX_ELF_SIZE = 2 * 1024**3

_SHARED_OBJECT = re.compile(r"\.so(?:\.[0-9][0-9A-Za-z.]*)?$")
_SITE_DIRS = frozenset({"site-packages", "dist-packages"})


def walk_objects(s: ScanState, *, read: bool = True) -> None:
    """Walk /usr and /opt: note every nvcc outside site-packages and, with `read`, read the dynamic section of
    every shared object (CUDA 12 and CUDA runtime needs, libraries the loader cannot find) and note the NCCL
    libraries on the way."""
    stack: list[tuple[str, ...]] = [(top,) for top in ELF_TOPS if is_real_dir(s.root / top)]
    while stack:
        parts = stack.pop()
        directory = s.root.joinpath(*parts)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            s.notes.append(f"cannot list {image_path(parts)}: {exc.strerror or exc}")
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((*parts, entry.name))
                    continue
                if entry.name == "nvcc" and _SITE_DIRS.isdisjoint(parts):
                    note_tool(s, image_path((*parts, entry.name)))
                if not read or not _SHARED_OBJECT.search(entry.name):
                    continue
                s.shared_names.add(entry.name)
                nccl_from_file(s, parts, entry.name)
                if not entry.is_file(follow_symlinks=False):
                    continue  # a symlink: its target is read where it lives
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            if size > MAX_ELF_SIZE:
                s.notes.append(f"{image_path((*parts, entry.name))}: {size} bytes, too large to read; skipped")
                continue
            _check_object(s, parts, entry.name)


def is_real_dir(path: Path) -> bool:
    """Whether `path` is a directory itself (a link to one is not walked)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_object(s: ScanState, parts: tuple[str, ...], name: str) -> None:
    """Record what one shared object needs that the image lacks, and its CUDA 12 and CUDA runtime needs."""
    path = s.root.joinpath(*parts, name)
    if not elf.is_elf(path):
        return  # a linker script (libc.so) or other text named *.so
    where = image_path((*parts, name))
    try:
        info = elf.dynamic(path)
    except (elf.ElfError, OSError) as exc:
        s.notes.append(f"{where}: unreadable ELF ({exc})")
        return
    needs = info.needed
    for soname in needs:
        if not is_driver_library(soname) and s.loader.find(where, soname, info).path is None:
            s.unresolved.append((where, soname))
    cuda12 = tuple(lib for lib in needs if CUDA12_SONAME.match(lib))
    if cuda12:
        s.cuda12[where] = cuda12
    runtime = tuple(lib for lib in needs if CUDA_RUNTIME_SONAME.match(lib))
    if runtime:
        s.cuda_runtime[where] = runtime

