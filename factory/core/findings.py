"""What a scan of an image's root filesystem found, and one way its labels disagree with that.

`Findings` is produced by `factory.adapters.rootfs.scan` and judged by `factory.core.image_checks`; both
are plain frozen data, JSON-ready through `as_dict`, so the judgement needs no image at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Findings:
    """What a root filesystem really contains.

    `components`: component -> version text found; `locations`: component -> image path it was read from;
    `torch_cuda`: whether torch has `torch/lib/libtorch_cuda.so` (None without torch); `cuda12_objects`: image
    paths of shared objects that need a CUDA 12 library, with the libraries in `cuda12_needed`; `duplicates`:
    distribution -> every `(version, path)`, in import order, when it is installed more than once (the first
    shadows the rest); `notes`:
    everything else worth knowing (unreadable files, several NCCLs, a CUDA directory without the link).
    """

    components: dict[str, str] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)
    torch_cuda: bool | None = None
    cuda12_objects: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    cuda12_needed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    duplicates: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    #: image path of a shared object -> the CUDA runtime libraries (cuda_abi.CUDA_RUNTIME_SONAME) it needs
    cuda_runtime: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: component -> the CUDA major its wheel is built for, from names like nixl-cu13
    cuda_flavours: dict[str, int] = field(default_factory=dict)
    #: the OS from os-release, `<ID> <VERSION_ID>` ("ubuntu 24.04", "debian 13")
    os: str | None = None
    #: image path of a shared object with CUDA device code -> its cubin architectures, sorted by number
    sass: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: image path of a shared object with CUDA device code -> its PTX architectures, sorted by number
    ptx: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: component (torch, vllm, flashinfer) -> image paths of its objects in `sass` / `ptx`
    device_objects: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: every fact of the CUDA version: where it was read (an image path, or ENV_CUDA) -> the version it says
    cuda_facts: dict[str, str] = field(default_factory=dict)
    #: pip distributions named nvidia-* or cuda-* (nvidia-cuda-runtime, cuda-bindings, ...) -> version
    cuda_dists: dict[str, str] = field(default_factory=dict)
    #: soname -> the image path the dynamic loader resolves it to for torch's libtorch_cuda.so
    resolved: dict[str, str] = field(default_factory=dict)
    #: image path of a shared object that needs a CUDA 12 library -> the distribution that installed it
    #: (from the RECORD files), so a finding names the package to change (`cupy-cuda12x 13.6.0`)
    owners: dict[str, str] = field(default_factory=dict)
    #: every distribution of the environment torch is installed in (else /opt/venv's) -> version: what verify
    #: compares with the image's lock
    environment: dict[str, str] = field(default_factory=dict)
    #: (image path of a shared object, a library it needs) for every library the dynamic loader would find
    #: nowhere in the image, sorted; the driver's libraries (libraries.DRIVER_LIBRARIES) are left out, and so are
    #: the two kinds below
    unresolved: tuple[tuple[str, str], ...] = ()
    #: the same for a library the object's own search path misses but the image holds under that name elsewhere:
    #: found at run time because its owner loads it first (torch loads its CUDA wheels' libraries and libc10 /
    #: libtorch before any extension; an auditwheel-bundled library through the RPATH of the extension loading it)
    preloaded: tuple[tuple[str, str], ...] = ()
    #: the same for an optional integration's library the image does not carry (libraries.OPTIONAL_LIBRARIES)
    optional: tuple[tuple[str, str], ...] = ()
    #: image paths of the build toolchain outside site-packages (nvcc, CUDA headers, a C++ compiler, make,
    #: cmake, ninja, git), sorted
    toolchain: tuple[str, ...] = ()
    #: the image path of the C compiler Triton would use (CC, else gcc or clang on PATH), or None
    c_compiler: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The findings as JSON-ready data."""
        return {
            "components": dict(self.components),
            "locations": dict(self.locations),
            "torch_cuda": self.torch_cuda,
            "cuda12_objects": list(self.cuda12_objects),
            "cuda12_needed": {path: list(libs) for path, libs in self.cuda12_needed.items()},
            "duplicates": {
                name: [{"version": version, "location": where} for version, where in copies]
                for name, copies in self.duplicates.items()
            },
            "cuda_runtime": {path: list(libs) for path, libs in self.cuda_runtime.items()},
            "cuda_flavours": dict(self.cuda_flavours),
            "os": self.os,
            "sass": {path: list(archs) for path, archs in self.sass.items()},
            "ptx": {path: list(archs) for path, archs in self.ptx.items()},
            "device_objects": {c: list(paths) for c, paths in self.device_objects.items()},
            "cuda_facts": dict(self.cuda_facts),
            "cuda_dists": dict(self.cuda_dists),
            "resolved": dict(self.resolved),
            "owners": dict(self.owners),
            "environment": dict(self.environment),
            "unresolved": [list(pair) for pair in self.unresolved],
            "preloaded": [list(pair) for pair in self.preloaded],
            "optional": [list(pair) for pair in self.optional],
            "toolchain": list(self.toolchain),
            "c_compiler": self.c_compiler,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Mismatch:
    """One way an image's labels disagree with its content; `message` says it in one sentence."""

    component: str
    label: str
    expected: str
    found: str
    where: str
    message: str

    def __str__(self) -> str:
        return self.message
