"""NCCL in an image: the one torch's libtorch_cuda.so loads, and every other copy.

The NCCL reported is the one the dynamic loader gives torch (its DT_NEEDED libnccl, found through
`factory.adapters.rootfs.libraries.Loader`), else the likeliest of the libraries, headers and nvidia-nccl
wheels found, ranked by how surely torch loads it; other versions are noted.
"""

from __future__ import annotations

import os
import re

from factory.adapters.rootfs import elf
from factory.adapters.rootfs.paths import glob_parts, image_path, read_text, resolve_parts
from factory.adapters.rootfs.state import ScanState
from factory.core.release_versions import versions_equal

_NCCL_LIBRARY = re.compile(r"^libnccl\.so\.(\d+\.\d+\.\d+)$")
_NCCL_DEFINE = re.compile(r"^\s*#\s*define\s+NCCL_(MAJOR|MINOR|PATCH)\s+(\d+)\b", re.MULTILINE)
_NCCL_DISTS = re.compile(r"^nvidia-nccl-cu(\d+)$")
_NCCL_SONAME = re.compile(r"^libnccl\.so\.\d+$")


def _nccl_rank(parts: tuple[str, ...]) -> int:
    """How surely an NCCL library at this place is the one torch loads (lower is surer)."""
    text = image_path(parts)
    if "/site-packages/nvidia/" in text or "/dist-packages/nvidia/" in text:
        return 1
    if text.endswith("/torch/lib"):
        return 2
    if text in ("/usr/local/lib", "/opt/nccl/lib"):
        return 3
    if text == "/usr/lib" or re.fullmatch(r"/usr/lib/[^/]+-linux-gnu", text):
        return 4
    return 5


def nccl_from_file(s: ScanState, parts: tuple[str, ...], name: str) -> None:
    """Note a `libnccl.so.X.Y.Z` file and how surely torch loads it."""
    match = _NCCL_LIBRARY.match(name)
    if match:
        s.nccl.append((_nccl_rank(parts), match[1], image_path((*parts, name))))


def nccl_from_directory(s: ScanState, parts: tuple[str, ...]) -> None:
    """Note every `libnccl.so.X.Y.Z` in one directory."""
    try:
        names = sorted(os.listdir(s.root.joinpath(*parts)))
    except OSError:
        return
    for name in names:
        nccl_from_file(s, parts, name)


def scan_nccl(s: ScanState, sites: list[tuple[str, ...]]) -> None:
    """The NCCL torch loads (else the likeliest found), with notes on the other versions in the image."""
    torch_site = s.dists["torch"][0].site if "torch" in s.dists else None
    for name, copies in s.dists.items():
        match = _NCCL_DISTS.match(name)
        if not match:
            continue
        for dist in copies:
            s.nccl.append((0 if dist.site == torch_site else 6, dist.version, dist.where))
            if match[1] != "13":
                s.notes.append(f"{dist.where}: an NCCL wheel for CUDA {match[1]}")
    headers = ["usr/local/include/nccl.h", "opt/nccl/include/nccl.h", "usr/include/nccl.h",
               "usr/local/cuda/include/nccl.h"]
    headers += [image_path((*site, "nvidia", "nccl", "include", "nccl.h")) for site in sites]
    seen: set[tuple[str, ...]] = set()
    for header in headers:
        rel = resolve_parts(s.root, header)
        if rel is None or rel in seen:
            continue
        seen.add(rel)
        text = read_text(s.root, rel, 64 * 1024) or ""
        defines = {k: v for k, v in _NCCL_DEFINE.findall(text)}
        if len(defines) == 3:
            version = f"{defines['MAJOR']}.{defines['MINOR']}.{defines['PATCH']}"
            s.nccl.append((7, version, image_path(rel)))
    loaded = _nccl_from_loader(s)
    if loaded is not None:
        version, where, how = loaded
        s.found("nccl", version, where)
        others = sorted({(v, w) for _r, v, w in s.nccl if not versions_equal("nccl", v, version)})
        if others:
            listed = ", ".join(f"{v} at {w}" for v, w in others)
            s.notes.append(f"NCCL {version} at {where} is the one torch's libtorch_cuda.so loads ({how}), but the "
                           f"image also has NCCL {listed}")
        return
    if not s.nccl:
        return
    s.nccl.sort(key=lambda c: (c[0], c[2]))
    _rank, version, where = s.nccl[0]
    s.found("nccl", version, where)
    others = sorted({(v, w) for _r, v, w in s.nccl[1:] if not versions_equal("nccl", v, version)})
    if others:
        listed = ", ".join(f"{v} at {w}" for v, w in others)
        s.notes.append(f"NCCL {version} at {where} is the one reported (the likeliest for torch), but the image "
                       f"also has NCCL {listed}")


def _nccl_from_loader(s: ScanState) -> tuple[str, str, str] | None:
    """(version, where it was read, how the loader found it) of the NCCL torch's libtorch_cuda.so loads."""
    torch = s.dists.get("torch")
    if not torch:
        return None
    lib = resolve_parts(s.root, image_path((*torch[0].site, "torch", "lib", "libtorch_cuda.so")))
    if lib is None or not elf.is_elf(s.root.joinpath(*lib)):
        return None
    try:
        sonames = [n for n in elf.needed(s.root.joinpath(*lib)) if _NCCL_SONAME.match(n)]
    except (elf.ElfError, OSError):
        return None  # noted by the object scan
    if not sonames:
        s.notes.append(f"{image_path(lib)} does not need libnccl (torch built without NCCL?)")
        return None
    soname = sonames[0]
    found = s.loader.find(image_path(lib), soname)
    s.notes.extend(found.skipped)
    if found.path is None:
        s.notes.append(f"the dynamic loader would find no {soname} for {image_path(lib)} (searched "
                       f"{', '.join(found.searched) or 'nothing'}); NCCL is reported from the files found instead")
        return None
    real = resolve_parts(s.root, found.path)
    if real is None:
        return None
    s.resolved[soname] = image_path(real)
    how = f"{found.path} through {found.via}"
    if match := _NCCL_LIBRARY.match(real[-1]):
        return match[1], image_path(real), how
    if real[-4:-1] == ("nvidia", "nccl", "lib"):
        site = real[:-4]
        for name, copies in s.dists.items():
            if _NCCL_DISTS.match(name):
                for dist in copies:
                    if dist.site == site:
                        return dist.version, dist.where, how
    s.notes.append(f"torch's {soname} is {image_path(real)}, whose name carries no version and which no "
                   "nvidia-nccl wheel owns; NCCL is reported from the files found instead")
    return None



def nccl_from_usual_directories(s: ScanState, sites: list[tuple[str, ...]]) -> None:
    """Note the NCCL libraries of the usual library directories and wheels (when the object walk is skipped)."""
    directories = [d for p in ("usr/lib", "usr/local/lib", "usr/lib/*-linux-gnu", "opt/nccl/lib")
                   for d in glob_parts(s.root, p)]
    directories += [d for site in sites for sub in ("nvidia/nccl/lib", "torch/lib")
                    for d in glob_parts(s.root, image_path((*site, sub)))]
    for directory in dict.fromkeys(directories):
        nccl_from_directory(s, directory)
