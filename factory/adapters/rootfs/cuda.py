"""CUDA in an image: the toolkit's version from its files, torch's CUDA build, and the GPU code libraries carry.

The toolkit's version is read from every place that states it (the versioned `libcudart.so.X.Y.Z`,
`version.json` or `version.txt`, `include/cuda.h`, the banner inside `bin/nvcc`), cross-checked with each other
and with the image's `CUDA_VERSION` environment variable (`cuda_facts`). The GPU code (SASS and PTX, see
`factory.adapters.rootfs.fatbin`) of torch, vLLM and FlashInfer is recorded per shared object.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from factory.adapters.rootfs import elf, fatbin
from factory.adapters.rootfs.objects import MAX_ELF_SIZE
from factory.adapters.rootfs.paths import glob_parts, image_path, read_text, resolve_parts
from factory.adapters.rootfs.state import ScanState
from factory.core.release_versions import major_minor, version_sort_key

_CUDART_LIBRARY = re.compile(r"^libcudart\.so\.(\d+\.\d+\.\d+)$")
_CUDA_H_VERSION = re.compile(r"^\s*#\s*define\s+CUDA_VERSION\s+(\d+)\b", re.MULTILINE)
_NVCC_BANNER = re.compile(rb"Cuda compilation tools, release (\d+\.\d+), V(\d+\.\d+\.\d+)")
_CUDA_DIST = re.compile(r"^(?:nvidia|cuda)-")

#: Where torch, vLLM and FlashInfer keep their GPU code: component -> (distribution, glob patterns under the
#: distribution's site-packages). Only shared objects that carry device code are recorded (torch's always).
DEVICE_CODE = {
    "torch": ("torch", ("torch/lib/libtorch_cuda.so",)),
    "vllm": ("vllm", ("vllm/*.so", "vllm/*/*.so", "vllm/*/*/*.so")),
    "flashinfer": ("flashinfer-python", ("flashinfer/*.so", "flashinfer/*/*.so", "flashinfer_jit_cache/*.so",
                                          "flashinfer_jit_cache/*/*.so", "flashinfer_jit_cache/*/*/*.so")),
}
#: At most this many shared objects are read per component (FlashInfer's JIT cache can hold thousands).
MAX_DEVICE_OBJECTS = 2000

#: Where the image says its environment's CUDA_VERSION came from, in findings and messages.
ENV_CUDA = "image env CUDA_VERSION"


def scan_cuda(s: ScanState) -> None:
    """The CUDA toolkit's version: every fact of it (`cuda_facts`) and the one reported, with notes where
    they disagree."""
    link = resolve_parts(s.root, "usr/local/cuda")
    directories = [link] if link is not None else []
    parent = resolve_parts(s.root, "usr/local")
    dangling = link is None and parent is not None and os.path.islink(s.root.joinpath(*parent, "cuda"))
    if dangling and parent is not None:
        target = os.readlink(s.root.joinpath(*parent, "cuda"))
        s.notes.append(f"/usr/local/cuda is a link to {target}, which is not in the image")
    elif link is None:
        directories = sorted(glob_parts(s.root, "usr/local/cuda-*"), key=lambda d: version_sort_key(d[-1][5:]))
        directories = [d for d in directories if s.root.joinpath(*d).is_dir()]
        if directories:
            listed = ", ".join(image_path(d) for d in directories)
            s.notes.append(f"no /usr/local/cuda link; reading {image_path(directories[-1])} (found {listed})")
            directories = directories[-1:]
    facts: dict[str, str] = {}
    ranked: list[tuple[int, str, str]] = []  # (preference, version to report, where)
    for directory in directories:
        before = len(facts)
        where = image_path((*directory, "version.json"))
        text = read_text(s.root, (*directory, "version.json"))
        if text is not None:
            try:
                data = json.loads(text)
                version = str(data["cuda"]["version"])
            except (ValueError, KeyError, TypeError):
                s.notes.append(f"{where} has no cuda.version")
            else:
                facts[where] = version
                ranked.append((0, version, where))
        where = image_path((*directory, "version.txt"))
        text = read_text(s.root, (*directory, "version.txt"))
        if text is not None and (m := re.search(r"CUDA Version\s+(\d+(?:\.\d+)*)", text)):
            facts[where] = m[1]
            ranked.append((1, m[1], where))
        for where, version in _cudart_versions(s, directory):
            facts[where] = version
            ranked.append((2, major_minor(version) or version, where))
        for header in glob_parts(s.root, image_path((*directory, "include", "cuda.h"))):
            text = read_text(s.root, header, 256 * 1024) or ""
            if m := _CUDA_H_VERSION.search(text):
                number = int(m[1])
                version = f"{number // 1000}.{number % 1000 // 10}"
                facts[image_path(header)] = version
                ranked.append((3, version, image_path(header)))
        nvcc = resolve_parts(s.root, image_path((*directory, "bin", "nvcc")))
        if nvcc is not None and (banner := nvcc_banner(s.root.joinpath(*nvcc))):
            facts[image_path(nvcc)] = banner[1]
            ranked.append((4, banner[0], image_path(nvcc)))
        if len(facts) == before:
            s.notes.append(f"{image_path(directory)} has no version.json, version.txt, libcudart.so.X.Y.Z, "
                           "include/cuda.h or bin/nvcc to tell its CUDA version")
    env = (s.env.get("CUDA_VERSION") or "").strip()
    if env:
        facts[ENV_CUDA] = env
    s.cuda_facts = facts
    ranked.sort(key=lambda r: r[0])
    if env:
        others = {where: v for where, v in facts.items() if where != ENV_CUDA}
        disagree = {where: v for where, v in others.items() if major_minor(v) != major_minor(env)}
        if others and not disagree:
            s.found("cuda", env, ENV_CUDA)
            return
        if not others:
            s.notes.append(f"the image's env says CUDA_VERSION={env}, but no CUDA file in the image confirms it "
                           "(no /usr/local/cuda with libcudart.so.X.Y.Z, version.json, version.txt or cuda.h)")
        else:
            listed = ", ".join(f"{where} says {v}" for where, v in disagree.items())
            s.notes.append(f"the image's env says CUDA_VERSION={env}, but {listed}")
    if ranked:
        _rank, version, where = ranked[0]
        s.found("cuda", version, where)
        split = {major_minor(v) for w, v in facts.items() if w != ENV_CUDA}
        if len(split) > 1:
            listed = ", ".join(f"{w} says {v}" for w, v in facts.items() if w != ENV_CUDA)
            s.notes.append(f"the CUDA files disagree: {listed}")


def _cudart_versions(s: ScanState, directory: tuple[str, ...]) -> list[tuple[str, str]]:
    """(image path, version) of every `libcudart.so.X.Y.Z` in the CUDA directory's lib64 and targets/*/lib."""
    out: dict[str, str] = {}
    places = [*glob_parts(s.root, image_path((*directory, "lib64"))),
              *glob_parts(s.root, image_path((*directory, "targets", "*", "lib")))]
    for place in dict.fromkeys(places):
        try:
            names = sorted(os.listdir(s.root.joinpath(*place)))
        except OSError:
            continue
        for name in names:
            if m := _CUDART_LIBRARY.match(name):
                out.setdefault(image_path((*place, name)), m[1])
    return list(out.items())


def nvcc_banner(path: Path, chunk: int = 1 << 20) -> tuple[str, str] | None:
    """(release, version) from the `Cuda compilation tools, release 13.0, V13.0.88` text inside nvcc."""
    try:
        with open(path, "rb") as f:
            tail = b""
            while data := f.read(chunk):
                if m := _NVCC_BANNER.search(tail + data):
                    return m[1].decode(), m[2].decode()
                tail = data[-96:]
    except OSError:
        return None
    return None


def torch_is_cuda_build(s: ScanState) -> bool | None:
    """Whether torch has `torch/lib/libtorch_cuda.so` (a CUDA build); None without torch."""
    torch = s.dists.get("torch")
    if not torch:
        return None
    lib = resolve_parts(s.root, image_path((*torch[0].site, "torch", "lib", "libtorch_cuda.so")))
    return lib is not None and s.root.joinpath(*lib).is_file()


def scan_device_code(s: ScanState) -> None:
    """The SASS and PTX of torch's libtorch_cuda.so and of the shared objects of vLLM and FlashInfer."""
    for component, (dist_name, patterns) in DEVICE_CODE.items():
        copies = s.dists.get(dist_name)
        if not copies:
            continue
        site = copies[0].site
        objects: list[tuple[str, ...]] = []
        for pattern in patterns:
            objects += [p for p in glob_parts(s.root, image_path((*site, pattern))) if p not in objects]
        if len(objects) > MAX_DEVICE_OBJECTS:
            s.notes.append(f"{component}: {len(objects)} shared objects; the GPU code of the first "
                           f"{MAX_DEVICE_OBJECTS} was read")
            objects = objects[:MAX_DEVICE_OBJECTS]
        for parts in objects:
            path = s.root.joinpath(*parts)
            where = image_path(parts)
            try:
                if not path.is_file() or not elf.is_elf(path):
                    continue
                if path.stat().st_size > MAX_ELF_SIZE:
                    s.notes.append(f"{where}: too large to read its GPU code; skipped")
                    continue
                code = fatbin.device_code(path)
            except (elf.ElfError, fatbin.FatbinError, OSError) as exc:
                s.notes.append(f"{where}: unreadable GPU code ({exc})")
                continue
            s.notes.extend(code.notes)
            if code.source is None:
                if component == "torch":
                    s.notes.append(f"{where} carries no CUDA device code (no .nv_fatbin section)")
                continue
            s.sass[where] = tuple(fatbin.sort_archs(code.sass))
            s.ptx[where] = tuple(fatbin.sort_archs(code.ptx))
            s.device_objects.setdefault(component, []).append(where)



def cuda_dists(s: ScanState) -> dict[str, str]:
    """The pip distributions named nvidia-* or cuda-* -> the version of their first copy."""
    return {name: copies[0].version for name, copies in sorted(s.dists.items()) if _CUDA_DIST.match(name)}
