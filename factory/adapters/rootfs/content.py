"""Labels that never lie: what an image really contains, read from its exported root filesystem.

`scan` walks a root filesystem on disk (an image exported with `docker export` or unpacked layers; often an
arm64 image on an x86 host, so nothing in it is executed) and finds the version of every labelled component:
Python distributions from their `*.dist-info/METADATA`; CUDA from the toolkit's files (the versioned
`libcudart.so.X.Y.Z`, `version.json` or `version.txt`, `include/cuda.h`, the banner inside `bin/nvcc`),
cross-checked with each other and with the image's `CUDA_VERSION` environment variable; NCCL from the library
the dynamic loader would give torch (`libtorch_cuda.so`'s DT_RPATH/DT_RUNPATH, LD_LIBRARY_PATH, ld.so.conf,
the system directories), else from library file names, headers and wheels; Python from the interpreter; the
OS from `os-release`. It also checks that torch is a CUDA build, lists the GPU code (SASS and PTX, see
`factory.adapters.rootfs.fatbin`) that torch, vLLM and FlashInfer carry, lists the pip CUDA distributions, lists every
shared object that needs a CUDA 12 library, every library a shared object needs that the dynamic loader would
find nowhere in the image (`Loader`), the build toolchain outside site-packages (nvcc, CUDA headers, a C++
compiler, make, cmake, ninja, git) and the C compiler Triton would use.

`verify` compares those findings with the image's labels and returns one `Mismatch` per lie; an image whose
`flavor` label is `runtime` must also have every library its shared objects need, no build toolchain and a
C compiler;
`measured_labels` gives the labels that only a measurement can set (`os`, `cuda_sass`, `cuda_ptx`).

Symlinks inside the root (`/usr/local/cuda -> /usr/local/cuda-13.1`, often absolute) are resolved relative to
the root, never outside it. Paths in findings and messages are image paths (`/opt/venv/...`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from packaging.version import InvalidVersion, Version

from factory.adapters.rootfs import elf, fatbin
from factory.core.components import COMPONENTS, DIST_COMPONENTS, EXTRA_COMPONENTS
from factory.core.labels import component_key, components_for, factory_key
from factory.core.matrix import version_of

Kind = Literal["base", "runtime", "vllm", "extra"]

#: Site-packages directories, in the order Python in the image would import from them (a venv first).
SITE_PATTERNS = (
    "opt/*/lib/python3*/site-packages",
    "usr/local/lib/python3*/site-packages",
    "usr/local/lib/python3*/dist-packages",
    "usr/lib/python3*/site-packages",
    "usr/lib/python3*/dist-packages",
)

#: Top-level directories whose shared objects are checked (site-packages all live below them).
ELF_TOPS = ("usr", "opt")

#: Shared objects larger than this are not read (no real library is; a huge file is data named *.so).
MAX_ELF_SIZE = 2 * 1024**3

#: CUDA 12 sonames. Only libraries whose soname major follows the CUDA major are listed (cudart, cuBLAS,
#: NVRTC, nvJitLink, CUPTI, NPP, nvJPEG, nvFatbin), plus cuFFT/cuSOLVER's CUDA 12 sonames (.so.11). cuSPARSE,
#: cuFFT and cuSOLVER are `.so.12` in CUDA 13 too and cuRAND is `.so.10` in both, so those prove nothing.
CUDA12_SONAME = re.compile(
    r"^lib(?:cudart|cublas|cublasLt|nvblas|nvrtc|nvrtc-builtins|nvJitLink|cupti|nvperf_host|nvperf_target"
    r"|npp[a-z]*|nvjpeg|nvfatbin)\.so\.12(?:\.[0-9.]*)?$"
    r"|^lib(?:cufft|cufftw|cusolver|cusolverMg)\.so\.11(?:\.[0-9.]*)?$"
)

#: Libraries whose soname major IS the CUDA major (cudart, cuBLAS, NVRTC, nvJitLink, CUPTI): what an object
#: needs of these says which CUDA it was built for.
CUDA_RUNTIME_SONAME = re.compile(r"^lib(?:cudart|cublas|cublasLt|nvrtc|nvJitLink|cupti)\.so\.(\d+)(?:\.[0-9.]*)?$")

#: pkg-config files that say which UCX is installed (UCX installs lib/pkgconfig/ucx.pc under its prefix).
UCX_PC_PATTERNS = ("opt/*/lib/pkgconfig/ucx.pc", "opt/*/lib64/pkgconfig/ucx.pc", "usr/local/*/lib/pkgconfig/ucx.pc",
                   "usr/local/lib/pkgconfig/ucx.pc", "usr/lib/pkgconfig/ucx.pc", "usr/lib/*-linux-gnu/pkgconfig/ucx.pc")

_SHARED_OBJECT = re.compile(r"\.so(?:\.[0-9][0-9A-Za-z.]*)?$")
_NCCL_LIBRARY = re.compile(r"^libnccl\.so\.(\d+\.\d+\.\d+)$")
_NCCL_DEFINE = re.compile(r"^\s*#\s*define\s+NCCL_(MAJOR|MINOR|PATCH)\s+(\d+)\b", re.MULTILINE)
_NCCL_DISTS = re.compile(r"^nvidia-nccl-cu(\d+)$")
_NIXL_DIST = re.compile(r"^nixl(?:-cu(\d+))?$")
_PYTHON_BINARY = re.compile(r"^python(3\.\d+)$")
_NAME = re.compile(r"[-_.]+")
_CUDART_LIBRARY = re.compile(r"^libcudart\.so\.(\d+\.\d+\.\d+)$")
_CUDA_H_VERSION = re.compile(r"^\s*#\s*define\s+CUDA_VERSION\s+(\d+)\b", re.MULTILINE)
_NVCC_BANNER = re.compile(rb"Cuda compilation tools, release (\d+\.\d+), V(\d+\.\d+\.\d+)")
_CUDA_DIST = re.compile(r"^(?:nvidia|cuda)-")
_NCCL_SONAME = re.compile(r"^libnccl\.so\.\d+$")

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

#: Libraries of the host's NVIDIA driver (fnmatch patterns of sonames). The NVIDIA Container Toolkit mounts
#: them into the container when it starts with GPUs (`--gpus`, CDI), because they must match the host's kernel
#: module; an image carries none of them, so a shared object that needs one finds nothing in the image, and
#: that is expected, not a missing library.
DRIVER_LIBRARIES = (
    "libcuda.so.1",
    "libcuda.so",
    "libcudadebugger.so.1",
    "libnvidia-ml.so.1",
    "libnvidia-ptxjitcompiler.so.1",
    "libnvidia-nvvm.so.4",
    "libnvcuvid.so.1",
    "libnvidia-encode.so.1",
    "libnvidia-*.so.*",
)

#: Optional integrations whose libraries no image of the factory carries, so a plugin that needs them cannot load,
#: and nothing vLLM runs loads that plugin: (shared objects, fnmatch; needed sonames, fnmatch; why). Measured on
#: the real vLLM 0.33.0 image, where these are every library absent from the whole image; a miss outside this
#: table (a library the image lost, a plugin that vLLM does load) fails a runtime image's verify.
OPTIONAL_LIBRARIES = (
    ("*/site-packages/torchcodec/*", ("libav*.so.*", "libsw*.so.*", "libheif.so.*"),
     "torchcodec loads the FFmpeg the user installs (any of FFmpeg 4 to 8); vLLM does not need it"),
    ("*/site-packages/nvidia/nvshmem/lib/nvshmem_*",
     ("libmpi.so.*", "liboshmem.so.*", "libpmix.so.*", "libfabric.so.*", "libibverbs.so.*", "libmlx5.so.*",
      "librdmacm.so.*", "libucp.so.*", "libucs.so.*"),
     "NVSHMEM's bootstrap and transport plugins for MPI, PMIx, OpenSHMEM, libfabric, InfiniBand and UCX, "
     "loaded only when NVSHMEM is configured to use them"),
    ("*/site-packages/nvidia/cu*/lib/libcufile_rdma.so.*", ("libibverbs.so.*", "libmlx5.so.*", "librdmacm.so.*"),
     "cuFile's optional GPUDirect Storage RDMA plugin"),
    ("*/site-packages/numba/*", ("libtbb.so.*",), "numba's optional TBB threading layer"),
    ("*/site-packages/*nixl_cu*lib*/*",
     ("libcuobjclient.so.*", "libdoca_*.so.*", "libfabric.so.*", "libhwloc.so.*", "libred_*.so*"),
     "NIXL's backend plugins for object storage, DOCA GPUNetIO, libfabric and Infinia (and its DOCA telemetry "
     "exporter), each loaded only when an agent asks for that backend; vLLM's connector uses UCX"),
    ("*/site-packages/nixl_cu*.libs/ucx/*", ("libefa.so.*", "libflexio.so*", "libibmad.so.*", "libibumad.so.*"),
     "UCX transport modules for AWS EFA and mlx5 DPA (FlexIO), and UCX's MAD perftest: UCX skips a module that "
     "cannot load; the verbs and TCP transports have what they need"),
)

#: The value of a `flavor` label for an image built on NVIDIA's small CUDA base image (no compilers, no
#: headers): verify checks its libraries and its toolchain (`dev` images are not checked for either).
RUNTIME_FLAVOR = "runtime"

#: The directories searched for build tools (top-level bin/ too, when it is not a link to usr/bin).
TOOL_DIRECTORIES = ("usr/bin", "usr/local/bin", "bin")

#: Build tools a runtime image must not carry, by kind: fnmatch patterns of names in TOOL_DIRECTORIES. A C
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
#: gcc's C++ compiler proper, where gcc installs it.
CC1PLUS_PATTERNS = ("usr/lib/gcc/*/*/cc1plus", "usr/libexec/gcc/*/*/cc1plus")
#: CUDA toolkit headers a runtime image must not carry outside site-packages, and where the toolkit puts them.
CUDA_HEADERS = ("cuda_runtime.h", "cuda_runtime_api.h", "cuda.h")
CUDA_HEADER_DIRECTORIES = ("usr/local/cuda*/include", "usr/local/cuda*/targets/*/include", "usr/include")
#: gcc's C compiler proper: a gcc driver without it cannot compile.
CC1_PATTERNS = ("usr/lib/gcc/*/*/cc1", "usr/libexec/gcc/*/*/cc1")

#: Why a runtime image needs a C compiler (and may keep gcc and Python.h).
C_COMPILER_REASON = ("Triton compiles its CUDA launcher stub, which includes Python.h, with the system C compiler "
                     "(CC, else gcc or clang on PATH) the first time it runs a kernel; without one vLLM fails with "
                     "\"Failed to find C compiler\"")

#: The PATH of a container whose image sets none (Docker's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: At most this many objects are named in the message about one missing library, and this many paths of one
#: kind of build tool are reported one mismatch each (more are one mismatch for the kind).
MAX_LISTED = 3

_SITE_DIRS = frozenset({"site-packages", "dist-packages"})
_DRIVER_LIBRARY = re.compile("|".join(fnmatch.translate(p) for p in DRIVER_LIBRARIES))


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
    #: image path of a shared object -> the CUDA runtime libraries (CUDA_RUNTIME_SONAME) it needs
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
    #: nowhere in the image, sorted; the driver's libraries (DRIVER_LIBRARIES) are left out, and so are the two
    #: kinds below
    unresolved: tuple[tuple[str, str], ...] = ()
    #: the same for a library the object's own search path misses but the image holds under that name elsewhere:
    #: found at run time because its owner loads it first (torch loads its CUDA wheels' libraries and libc10 /
    #: libtorch before any extension; an auditwheel-bundled library through the RPATH of the extension loading it)
    preloaded: tuple[tuple[str, str], ...] = ()
    #: the same for an optional integration's library the image does not carry (OPTIONAL_LIBRARIES)
    optional: tuple[tuple[str, str], ...] = ()
    #: image paths of the build toolchain outside site-packages (nvcc, CUDA headers, a C++ compiler, make,
    #: cmake, ninja, git), sorted
    toolchain: tuple[str, ...] = ()
    #: the image path of the C compiler Triton would use (CC, else gcc or clang on PATH), or None
    c_compiler: str | None = None

    def as_dict(self) -> dict:
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


# --- paths inside the root ---------------------------------------------------------------------------------


def resolve_in_root(root: Path, path: str | PurePosixPath, *, max_links: int = 40) -> Path | None:
    """`path` (an image path) resolved inside `root` like a chroot would, or None where it does not exist.

    Absolute symlink targets start again at `root` and `..` never climbs above it, so the result is always
    inside `root`; a symlink loop gives None.
    """
    rel = _resolve(Path(root), str(path), max_links)
    return None if rel is None else Path(root).joinpath(*rel)


def image_path(parts: tuple[str, ...] | list[str]) -> str:
    return "/" + "/".join(parts)


def _resolve(root: Path, path: str, max_links: int = 40) -> tuple[str, ...] | None:
    pending = deque(PurePosixPath(path).parts)
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part in ("/", "", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            links += 1
            if links > max_links:
                return None
            try:
                target = PurePosixPath(os.readlink(candidate))
            except OSError:
                return None
            if target.is_absolute():
                resolved = []
            pending.extendleft(reversed(target.parts))
        else:
            resolved.append(part)
    return tuple(resolved)


def _glob(root: Path, pattern: str) -> list[tuple[str, ...]]:
    """Resolved paths (as parts) matching a `/`-separated pattern; symlinks are followed inside the root."""
    current: list[tuple[str, ...]] = [()]
    for part in pattern.strip("/").split("/"):
        found: dict[tuple[str, ...], None] = {}
        for base in current:
            if any(c in part for c in "*?["):
                try:
                    names = sorted(os.listdir(root.joinpath(*base)))
                except OSError:
                    continue
                candidates = [(*base, n) for n in fnmatch.filter(names, part)]
            else:
                candidates = [(*base, part)]
            for candidate in candidates:
                rel = _resolve(root, image_path(candidate))
                if rel is not None:
                    found[rel] = None
        current = list(found)
    return current


def _read_text(root: Path, path: str | tuple[str, ...], limit: int = 1 << 20) -> str | None:
    """The start of a regular file at an image path (symlinks resolved inside the root), or None."""
    rel = _resolve(root, path if isinstance(path, str) else image_path(path))
    if rel is None:
        return None
    try:
        with open(root.joinpath(*rel), encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:  # a directory, unreadable, or gone
        return None


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return _NAME.sub("-", name).lower()


def _version(component: str, text: str) -> Version | None:
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


# --- the scan ----------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    name: str
    version: str
    where: str  # image path of the .dist-info / .egg-info
    site: tuple[str, ...]  # resolved site-packages directory (parts)


@dataclass
class _Scan:
    root: Path
    components: dict[str, str] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dists: dict[str, list[_Dist]] = field(default_factory=dict)
    nccl: list[tuple[int, str, str]] = field(default_factory=list)  # (rank, version, where)
    cuda12: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cuda_runtime: dict[str, tuple[str, ...]] = field(default_factory=dict)
    flavours: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    os: str | None = None
    sass: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ptx: dict[str, tuple[str, ...]] = field(default_factory=dict)
    device_objects: dict[str, list[str]] = field(default_factory=dict)
    cuda_facts: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, str] = field(default_factory=dict)
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    shared_names: set[str] = field(default_factory=set)  # the file name of every shared object under /usr, /opt
    toolchain: set[str] = field(default_factory=set)
    loader: Loader | None = None

    def found(self, component: str, version: str, where: str) -> None:
        self.components[component] = version
        self.locations[component] = where


def scan(root: Path, *, check_objects: bool = True, env: dict[str, str] | None = None) -> Findings:
    """Find what is really installed in the root filesystem at `root` (nothing in it is executed).

    `env` is the image config's environment (`CUDA_VERSION`, `LD_LIBRARY_PATH`, ...), which the root
    filesystem does not hold: CUDA_VERSION is checked against the toolkit's files, LD_LIBRARY_PATH joins the
    dynamic loader's search, PATH and CC where Triton looks for a C compiler. `check_objects=False` skips
    reading every shared object (no `cuda12_objects`, no `unresolved`, NCCL's other copies only from the usual
    library directories); the GPU code of torch, vLLM and FlashInfer and the toolchain are read either way.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory (expected an image's root filesystem)")
    s = _Scan(root, env=dict(env or {}))
    s.loader = Loader(root, s.env)
    sites = _scan_dists(s)
    _scan_ubuntu(s)
    _scan_python(s, sites)
    _scan_cuda(s)
    torch_cuda = _scan_torch(s)
    _scan_device_code(s)
    _scan_objects(s, read=check_objects)
    _scan_toolchain(s)
    if not check_objects:
        directories = [d for p in ("usr/lib", "usr/local/lib", "usr/lib/*-linux-gnu", "opt/nccl/lib")
                       for d in _glob(root, p)]
        directories += [d for site in sites for sub in ("nvidia/nccl/lib", "torch/lib")
                        for d in _glob(root, image_path((*site, sub)))]
        for directory in dict.fromkeys(directories):
            _nccl_from_directory(s, directory)
    _scan_nccl(s, sites)
    _scan_ucx(s)
    c_compiler = _c_compiler(s)
    unresolved, preloaded, optional = _classify_misses(set(s.unresolved), s.shared_names)
    return Findings(
        components=dict(s.components),
        locations=dict(s.locations),
        torch_cuda=torch_cuda,
        cuda12_objects=tuple(sorted(s.cuda12)),
        notes=tuple(s.notes),
        cuda12_needed=dict(sorted(s.cuda12.items())),
        duplicates={
            name: tuple((d.version, d.where) for d in copies) for name, copies in s.dists.items() if len(copies) > 1
        },
        cuda_runtime=dict(sorted(s.cuda_runtime.items())),
        cuda_flavours=dict(s.flavours),
        os=s.os,
        sass=dict(s.sass),
        ptx=dict(s.ptx),
        device_objects={c: tuple(paths) for c, paths in s.device_objects.items()},
        cuda_facts=dict(s.cuda_facts),
        cuda_dists={name: copies[0].version for name, copies in sorted(s.dists.items()) if _CUDA_DIST.match(name)},
        resolved=dict(s.resolved),
        owners=_owners(s, sorted(s.cuda12)),
        environment=_environment(s),
        unresolved=unresolved,
        preloaded=preloaded,
        optional=optional,
        toolchain=tuple(sorted(s.toolchain)),
        c_compiler=c_compiler,
    )


def _environment(s: _Scan) -> dict[str, str]:
    """The distributions of one site-packages: torch's, else the first under opt/venv."""
    torch = s.dists.get("torch")
    site = torch[0].site if torch else None
    if site is None:
        venv = [d.site for copies in s.dists.values() for d in copies if d.site[:2] == ("opt", "venv")]
        site = venv[0] if venv else None
    if site is None:
        return {}
    return {name: d.version for name, copies in sorted(s.dists.items()) for d in copies if d.site == site}


def _owners(s: _Scan, paths: list[str]) -> dict[str, str]:
    """The distribution (`name version`) whose RECORD lists each image path; read only when there are paths."""
    wanted = set(paths)
    out: dict[str, str] = {}
    if not wanted:
        return out
    for name, copies in s.dists.items():
        for dist in copies:
            if not dist.where.endswith(".dist-info"):
                continue
            record = _read_text(s.root, f"{dist.where}/RECORD", 16 << 20) or ""
            site = image_path(dist.site)
            for line in record.splitlines():
                listed = line.split(",", 1)[0]
                if not listed:
                    continue
                path = os.path.normpath(f"{site}/{listed}")
                if path in wanted:
                    out.setdefault(path, f"{name} {dist.version}")
    return out


def _scan_dists(s: _Scan) -> list[tuple[str, ...]]:
    """Read every distribution's metadata; returns the site-packages directories in import order."""
    sites: list[tuple[str, ...]] = []
    for pattern in SITE_PATTERNS:
        for site in _glob(s.root, pattern):
            if site not in sites and s.root.joinpath(*site).is_dir():
                sites.append(site)
    for site in sites:
        try:
            names = sorted(os.listdir(s.root.joinpath(*site)))
        except OSError as exc:
            s.notes.append(f"cannot list {image_path(site)}: {exc.strerror or exc}")
            continue
        for entry in names:
            if not entry.endswith((".dist-info", ".egg-info")):
                continue
            dist = _read_dist(s, site, entry)
            if dist is None:
                continue
            copies = s.dists.setdefault(dist.name, [])
            # Debian ships some packages with both .dist-info and .egg-info: one install, not two.
            if not any(c.site == site and c.version == dist.version for c in copies):
                copies.append(dist)

    for name, copies in s.dists.items():
        first = copies[0]
        if name in DIST_COMPONENTS:
            s.found(DIST_COMPONENTS[name], first.version, first.where)
        nixl = _NIXL_DIST.match(name)
        if nixl and (nixl[1] or "nixl" not in s.components):  # nixl-cuNN (the libraries) over the `nixl` meta
            s.found("nixl", first.version, first.where)
            if nixl[1]:
                s.flavours["nixl"] = int(nixl[1])
        if len(copies) > 1:
            listed = ", ".join(f"{d.version} at {d.where}" for d in copies)
            s.notes.append(f"{name} is installed {len(copies)} times ({listed}); {first.where} shadows the rest")
    return sites


def _read_dist(s: _Scan, site: tuple[str, ...], entry: str) -> _Dist | None:
    where = image_path((*site, entry))
    if entry.endswith(".dist-info"):
        text = _read_text(s.root, (*site, entry, "METADATA"), 256 * 1024)
    else:  # an .egg-info directory with PKG-INFO, or an .egg-info file
        text = _read_text(s.root, (*site, entry, "PKG-INFO"), 256 * 1024) or _read_text(s.root, where, 256 * 1024)
    name = version = None
    if text is not None:
        for line in text.splitlines():
            if not line.strip():
                break  # the headers end at the first blank line; the description follows
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "name" and name is None:
                name = value.strip()
            elif key == "version" and version is None:
                version = value.strip()
    if not name or not version:
        # Fall back to the directory name, `name-version.dist-info`.
        stem = entry.rsplit(".", 1)[0]
        dir_name, _, dir_version = stem.partition("-")
        if dir_name and dir_version:
            s.notes.append(f"{where}: no readable Name/Version in its metadata; using the directory name")
            name, version = name or dir_name, version or dir_version.split("-")[0]
        else:
            s.notes.append(f"{where}: no readable Name/Version in its metadata; ignored")
            return None
    return _Dist(normalize_name(name), version, where, site)


def _scan_ubuntu(s: _Scan) -> None:
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        rel = _resolve(s.root, candidate)
        if rel is None:
            continue
        text = _read_text(s.root, rel)
        if text is None:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        where = "/" + candidate
        if fields.get("ID"):
            s.os = f"{fields['ID']} {fields.get('VERSION_ID', '')}".strip()
        if fields.get("ID") == "ubuntu" and fields.get("VERSION_ID"):
            s.found("ubuntu", fields["VERSION_ID"], where)
        else:
            s.notes.append(f"{where} says ID={fields.get('ID', '?')} VERSION_ID={fields.get('VERSION_ID', '?')}, "
                           "not an Ubuntu release")
        return
    s.notes.append("no /etc/os-release or /usr/lib/os-release")


def _scan_python(s: _Scan, sites: list[tuple[str, ...]]) -> None:
    # The venv's pyvenv.cfg first (the venv holding torch if there are several), then the interpreters.
    venvs = _glob(s.root, "opt/*/pyvenv.cfg")
    torch = s.dists.get("torch")
    if torch:
        venvs.sort(key=lambda cfg: torch[0].site[: len(cfg) - 1] != cfg[:-1])
    for cfg in venvs:
        text = _read_text(s.root, cfg) or ""
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("version", "version_info"):
                match = re.match(r"(\d+)\.(\d+)", value.strip())
                if match:
                    s.found("python", f"{match[1]}.{match[2]}", image_path(cfg))
                    return
    for directory in ("usr/local/bin", "usr/bin"):
        rel = _resolve(s.root, directory)
        if rel is None:
            continue
        # The version `python3` points to, else the newest python3.X binary.
        link = _resolve(s.root, image_path((*rel, "python3")))
        if link is not None and (m := _PYTHON_BINARY.match(link[-1])):
            s.found("python", m[1], image_path(link))
            return
        try:
            names = os.listdir(s.root.joinpath(*rel))
        except OSError:
            continue
        versions = sorted((m[1] for n in names if (m := _PYTHON_BINARY.match(n))), key=_sort_key)
        if versions:
            if len(versions) > 1:
                s.notes.append(f"several Pythons in {image_path(rel)}: {', '.join(versions)}; taking the newest")
            s.found("python", versions[-1], image_path((*rel, f"python{versions[-1]}")))
            return
    # Last resort: the python3.X in a site-packages path.
    for site in sites:
        for part in site:
            if m := re.fullmatch(r"python(3\.\d+)", part):
                s.found("python", m[1], image_path(site))
                return


def _sort_key(text: str) -> tuple:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (-1, text)


def _scan_cuda(s: _Scan) -> None:
    link = _resolve(s.root, "usr/local/cuda")
    directories = [link] if link is not None else []
    parent = _resolve(s.root, "usr/local")
    dangling = link is None and parent is not None and os.path.islink(s.root.joinpath(*parent, "cuda"))
    if dangling:
        target = os.readlink(s.root.joinpath(*parent, "cuda"))
        s.notes.append(f"/usr/local/cuda is a link to {target}, which is not in the image")
    elif link is None:
        directories = sorted(_glob(s.root, "usr/local/cuda-*"), key=lambda d: _sort_key(d[-1][5:]))
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
        text = _read_text(s.root, (*directory, "version.json"))
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
        text = _read_text(s.root, (*directory, "version.txt"))
        if text is not None and (m := re.search(r"CUDA Version\s+(\d+(?:\.\d+)*)", text)):
            facts[where] = m[1]
            ranked.append((1, m[1], where))
        for where, version in _cudart_versions(s, directory):
            facts[where] = version
            ranked.append((2, _major_minor(version) or version, where))
        for header in _glob(s.root, image_path((*directory, "include", "cuda.h"))):
            text = _read_text(s.root, header, 256 * 1024) or ""
            if m := _CUDA_H_VERSION.search(text):
                number = int(m[1])
                version = f"{number // 1000}.{number % 1000 // 10}"
                facts[image_path(header)] = version
                ranked.append((3, version, image_path(header)))
        nvcc = _resolve(s.root, image_path((*directory, "bin", "nvcc")))
        if nvcc is not None and (banner := _nvcc_banner(s.root.joinpath(*nvcc))):
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
        disagree = {where: v for where, v in others.items() if _major_minor(v) != _major_minor(env)}
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
        split = {_major_minor(v) for w, v in facts.items() if w != ENV_CUDA}
        if len(split) > 1:
            listed = ", ".join(f"{w} says {v}" for w, v in facts.items() if w != ENV_CUDA)
            s.notes.append(f"the CUDA files disagree: {listed}")


def _major_minor(version: str) -> str | None:
    """`13.0` of `13.0.96`, `13.0.1-1`, `13.0`; None for text without a major.minor."""
    m = re.match(r"\s*v?(\d+)\.(\d+)", version)
    return f"{int(m[1])}.{int(m[2])}" if m else None


def _cudart_versions(s: _Scan, directory: tuple[str, ...]) -> list[tuple[str, str]]:
    """(image path, version) of every `libcudart.so.X.Y.Z` in the CUDA directory's lib64 and targets/*/lib."""
    out: dict[str, str] = {}
    places = [*_glob(s.root, image_path((*directory, "lib64"))),
              *_glob(s.root, image_path((*directory, "targets", "*", "lib")))]
    for place in dict.fromkeys(places):
        try:
            names = sorted(os.listdir(s.root.joinpath(*place)))
        except OSError:
            continue
        for name in names:
            if m := _CUDART_LIBRARY.match(name):
                out.setdefault(image_path((*place, name)), m[1])
    return list(out.items())


def _nvcc_banner(path: Path, chunk: int = 1 << 20) -> tuple[str, str] | None:
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


def _scan_torch(s: _Scan) -> bool | None:
    torch = s.dists.get("torch")
    if not torch:
        return None
    lib = _resolve(s.root, image_path((*torch[0].site, "torch", "lib", "libtorch_cuda.so")))
    return lib is not None and s.root.joinpath(*lib).is_file()


def _scan_device_code(s: _Scan) -> None:
    """The SASS and PTX of torch's libtorch_cuda.so and of the shared objects of vLLM and FlashInfer."""
    for component, (dist_name, patterns) in DEVICE_CODE.items():
        copies = s.dists.get(dist_name)
        if not copies:
            continue
        site = copies[0].site
        objects: list[tuple[str, ...]] = []
        for pattern in patterns:
            objects += [p for p in _glob(s.root, image_path((*site, pattern))) if p not in objects]
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


def _scan_objects(s: _Scan, *, read: bool = True) -> None:
    """Walk /usr and /opt: note every nvcc outside site-packages and, with `read`, read the dynamic section of
    every shared object (CUDA 12 and CUDA runtime needs, libraries the loader cannot find) and note the NCCL
    libraries on the way."""
    stack = [(top,) for top in ELF_TOPS if _is_real_dir(s.root / top)]
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
                    _tool(s, image_path((*parts, entry.name)))
                if not read or not _SHARED_OBJECT.search(entry.name):
                    continue
                s.shared_names.add(entry.name)
                if _NCCL_LIBRARY.match(entry.name):
                    _nccl_from_file(s, parts, entry.name)
                if not entry.is_file(follow_symlinks=False):
                    continue  # a symlink: its target is read where it lives
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            if size > MAX_ELF_SIZE:
                s.notes.append(f"{image_path((*parts, entry.name))}: {size} bytes, too large to read; skipped")
                continue
            _check_object(s, parts, entry.name)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_object(s: _Scan, parts: tuple[str, ...], name: str) -> None:
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


def _classify_misses(misses: set[tuple[str, str]], held: set[str]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Split what the loader misses into (unresolved, preloaded, optional): held elsewhere in the image under
    that name is found once its owner loaded it; an optional integration's library is OPTIONAL_LIBRARIES'."""
    unresolved, preloaded, optional = [], [], []
    for path, soname in sorted(misses):
        if soname in held:
            preloaded.append((path, soname))
        elif any(fnmatch.fnmatchcase(path, objects) and any(fnmatch.fnmatchcase(soname, n) for n in names)
                 for objects, names, _ in OPTIONAL_LIBRARIES):
            optional.append((path, soname))
        else:
            unresolved.append((path, soname))
    return tuple(unresolved), tuple(preloaded), tuple(optional)


def is_driver_library(soname: str) -> bool:
    """Whether `soname` is a library of the host's driver, which the container toolkit mounts at run time."""
    return _DRIVER_LIBRARY.match(soname) is not None


def _tool(s: _Scan, path: str) -> None:
    """Record a toolchain path that exists in the image (a dangling link is nothing)."""
    rel = _resolve(s.root, path)
    if rel is not None and s.root.joinpath(*rel).is_file():
        s.toolchain.add(path)


def _scan_toolchain(s: _Scan) -> None:
    """The build tools in the tool directories, gcc's cc1plus, and the CUDA toolkit's headers (nvcc elsewhere is
    noted by the walk of /usr and /opt)."""
    patterns = [p for ps in TOOLCHAIN_PROGRAMS.values() for p in ps]
    seen: set[tuple[str, ...]] = set()
    for directory in TOOL_DIRECTORIES:
        rel = _resolve(s.root, directory)
        if rel is None or rel in seen:
            continue  # bin -> usr/bin: listed once, under its usr/bin name
        seen.add(rel)
        try:
            names = sorted(os.listdir(s.root.joinpath(*rel)))
        except OSError:
            continue
        for name in names:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                _tool(s, f"/{directory}/{name}")
    for pattern in CC1PLUS_PATTERNS:
        for parts in _glob(s.root, pattern):
            _tool(s, image_path(parts))
    for directory in CUDA_HEADER_DIRECTORIES:
        for header in CUDA_HEADERS:
            for parts in _glob(s.root, f"{directory}/{header}"):
                _tool(s, image_path(parts))


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


def _c_compiler(s: _Scan) -> str | None:
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
            rel = _resolve(s.root, candidate)
            if rel is None or not s.root.joinpath(*rel).is_file():
                continue
            if "gcc" in rel[-1] and not any(_glob(s.root, p) for p in CC1_PATTERNS):
                s.notes.append(f"{candidate} is gcc, but the image has no cc1 (usr/lib/gcc/*/*/cc1): it cannot "
                               "compile C")
            return candidate
    if cc:
        s.notes.append(f"the image's env says CC={s.env['CC']}, which is not in the image")
    return None


def _scan_ucx(s: _Scan) -> None:
    """UCX's version from the `Version:` line of its pkg-config file (its libraries carry no version)."""
    for pattern in UCX_PC_PATTERNS:
        for parts in _glob(s.root, pattern):
            text = _read_text(s.root, parts, 64 * 1024) or ""
            found = re.search(r"^Version:\s*(\S+)", text, re.MULTILINE)
            if found:
                s.found("ucx", found[1], image_path(parts))
                return


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


def _nccl_from_file(s: _Scan, parts: tuple[str, ...], name: str) -> None:
    match = _NCCL_LIBRARY.match(name)
    if match:
        s.nccl.append((_nccl_rank(parts), match[1], image_path((*parts, name))))


def _nccl_from_directory(s: _Scan, parts: tuple[str, ...]) -> None:
    try:
        names = sorted(os.listdir(s.root.joinpath(*parts)))
    except OSError:
        return
    for name in names:
        _nccl_from_file(s, parts, name)


def _scan_nccl(s: _Scan, sites: list[tuple[str, ...]]) -> None:
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
        rel = _resolve(s.root, header)
        if rel is None or rel in seen:
            continue
        seen.add(rel)
        text = _read_text(s.root, rel, 64 * 1024) or ""
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


def _nccl_from_loader(s: _Scan) -> tuple[str, str, str] | None:
    """(version, where it was read, how the loader found it) of the NCCL torch's libtorch_cuda.so loads."""
    torch = s.dists.get("torch")
    if not torch:
        return None
    lib = _resolve(s.root, image_path((*torch[0].site, "torch", "lib", "libtorch_cuda.so")))
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
    real = _resolve(s.root, found.path)
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


# --- the dynamic loader ------------------------------------------------------------------------------------

#: Debian's multiarch directory names of ELF machines (the loader's system directories on Ubuntu/Debian).
MULTIARCH = {183: "aarch64-linux-gnu", 62: "x86_64-linux-gnu", 21: "powerpc64le-linux-gnu", 22: "s390x-linux-gnu"}
_PLATFORM = {183: "aarch64", 62: "x86_64", 21: "powerpc64le", 22: "s390x"}


@dataclass(frozen=True)
class Found:
    """Where the dynamic loader finds a library: `path` (an image path, None when nowhere) and `via`."""

    path: str | None
    via: str = ""
    searched: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def find_library(root: Path, needed_by: str, soname: str, *, env: dict[str, str] | None = None) -> Found:
    """Where glibc's dynamic loader would find `soname` for the object at image path `needed_by`.

    The order of ld.so(8): the object's DT_RPATH (only when it has no DT_RUNPATH), LD_LIBRARY_PATH from `env`,
    its DT_RUNPATH, the directories of /etc/ld.so.conf and its includes (the order ldconfig caches them in),
    then the system directories (Debian's multiarch ones, /lib, /usr/lib). `$ORIGIN` is the object's
    directory. A candidate that is not an ELF object of the same class and machine is passed by, as the
    loader does. Not modelled: the DT_RPATH of the objects that loaded this one, libraries already loaded
    under the same soname, and an /etc/ld.so.cache that is out of date with ld.so.conf. For many look-ups in
    one root, use one `Loader`.
    """
    return Loader(root, env).find(needed_by, soname)


class Loader:
    """The dynamic loader's search (`find_library`) in one root filesystem, for many look-ups: ld.so.conf is read
    once, and directories, their listings and the ELF headers of candidates are read once each."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.library_path = tuple(d for d in re.split(r"[:;]", (env or {}).get("LD_LIBRARY_PATH", "")) if d)
        self._conf: tuple[str, ...] | None = None
        self._orders: dict[tuple, tuple[tuple[str, str], ...]] = {}
        self._dirs: dict[str, tuple[str, ...] | None] = {}
        self._names: dict[tuple[str, ...], frozenset[str]] = {}
        self._files: dict[tuple[tuple[str, ...], str], tuple[str, ...] | None] = {}
        self._headers: dict[tuple[str, ...], tuple[int, int] | None] = {}

    def find(self, needed_by: str, soname: str, info: elf.Dynamic | None = None) -> Found:
        """Where the loader finds `soname` for the object at image path `needed_by`; `info` is that object's
        dynamic section when the caller has read it (`needed_by` is then its real path, no link)."""
        if info is None:
            rel = _resolve(self.root, needed_by)
            if rel is None:
                return Found(None)
            info = elf.dynamic(self.root.joinpath(*rel))
            needed_by = image_path(rel)
        if "/" in soname:  # a path, loaded as it is, never searched for (relative: from the working directory)
            real = _resolve(self.root, soname) if soname.startswith("/") else None
            found = real is not None and os.path.isfile(os.path.join(self.root, *real))
            return Found(soname, "DT_NEEDED path") if found else Found(None)
        searched: list[str] = []
        skipped: list[str] = []
        for directory, via in self._order(needed_by, info):
            if not directory.startswith("/"):
                continue  # relative to the process's working directory: unknowable here
            directory = directory.rstrip("/") or "/"
            if directory in searched:
                continue
            searched.append(directory)
            real = self._file(directory, soname)
            if real is None:
                continue
            candidate = f"{directory.rstrip('/')}/{soname}"
            kind = self._header(real)
            if kind is None:
                skipped.append(f"{candidate} is not an ELF object; the loader passes it by")
                continue
            if kind != (info.machine, info.bits):
                skipped.append(f"{candidate} is for another machine ({kind[1]}-bit, e_machine {kind[0]}); "
                               "the loader passes it by")
                continue
            return Found(candidate, via, tuple(searched), tuple(skipped))
        return Found(None, "", tuple(searched), tuple(skipped))

    def _order(self, needed_by: str, info: elf.Dynamic) -> tuple[tuple[str, str], ...]:
        """(directory, why it is searched) in the loader's order, tokens expanded."""
        origin = needed_by.rsplit("/", 1)[0] or "/"
        key = (origin, info.rpath, info.runpath, info.machine, info.bits)
        if key not in self._orders:
            self._orders[key] = self._expand(origin, info)
        return self._orders[key]

    def _expand(self, origin: str, info: elf.Dynamic) -> tuple[tuple[str, str], ...]:
        triplet = MULTIARCH.get(info.machine)
        lib = f"lib/{triplet}" if triplet else "lib"
        platform = _PLATFORM.get(info.machine, "")

        def expand(directory: str) -> str:
            if "$" not in directory:
                return directory
            for token, value in (("$ORIGIN", origin), ("${ORIGIN}", origin), ("$LIB", lib), ("${LIB}", lib),
                                 ("$PLATFORM", platform), ("${PLATFORM}", platform)):
                directory = directory.replace(token, value)
            return directory

        if self._conf is None:
            self._conf = tuple(ld_so_conf(self.root))
        order: list[tuple[str, str]] = []
        if info.rpath and not info.runpath:
            order += [(expand(d), f"DT_RPATH {d}") for d in info.rpath]
        order += [(d, "LD_LIBRARY_PATH") for d in self.library_path]
        order += [(expand(d), f"DT_RUNPATH {d}") for d in info.runpath]
        order += [(d, "/etc/ld.so.conf") for d in self._conf]
        system = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
        if not triplet and info.bits == 64:
            system += ["/lib64", "/usr/lib64"]
        order += [(d, "the system directories") for d in [*system, "/lib", "/usr/lib"]]
        return tuple(order)

    def _file(self, directory: str, soname: str) -> tuple[str, ...] | None:
        """The real path (parts) of the regular file `soname` in `directory` (an image path), or None."""
        if directory not in self._dirs:
            self._dirs[directory] = _resolve(self.root, directory)
        rel = self._dirs[directory]
        if rel is None:
            return None
        names = self._names.get(rel)
        if names is None:
            try:
                names = frozenset(os.listdir(self.root.joinpath(*rel)))
            except OSError:  # not a directory, or unreadable
                names = frozenset()
            self._names[rel] = names
        if soname not in names:
            return None
        key = (rel, soname)
        if key not in self._files:
            real: tuple[str, ...] | None = (*rel, soname)
            try:
                mode = os.lstat(os.path.join(self.root, *real)).st_mode
            except OSError:
                mode = 0
            if stat.S_ISLNK(mode):
                real = _resolve(self.root, image_path(real))
                if real is not None and not os.path.isfile(os.path.join(self.root, *real)):
                    real = None
            elif not stat.S_ISREG(mode):
                real = None
            self._files[key] = real
        return self._files[key]

    def _header(self, real: tuple[str, ...]) -> tuple[int, int] | None:
        """(e_machine, class bits) of an ELF file, None for one that is not ELF."""
        if real not in self._headers:
            try:
                header = elf.header(os.path.join(self.root, *real))
                self._headers[real] = (header.machine, header.bits)
            except (elf.ElfError, OSError):
                self._headers[real] = None
        return self._headers[real]


def ld_so_conf(root: Path) -> list[str]:
    """The directories /etc/ld.so.conf lists, its `include` globs expanded in sorted order, as ldconfig reads."""
    out: list[str] = []
    seen: set[tuple[str, ...]] = set()

    def read(path: str, depth: int) -> None:
        rel = _resolve(root, path)
        if rel is None or rel in seen or depth > 8:
            return
        seen.add(rel)
        text = _read_text(root, rel, 256 * 1024)
        for line in (text or "").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include":
                for pattern in words[1:]:
                    pattern = pattern if pattern.startswith("/") else f"/etc/{pattern}"
                    for parts in _glob(root, pattern):
                        read(image_path(parts), depth + 1)
            elif words[0] != "hwcap":
                out.extend(d.rstrip("/") or "/" for d in re.split(r"[:\s,=]+", line) if d.startswith("/"))

    read("/etc/ld.so.conf", 0)
    return list(dict.fromkeys(out))


# --- verification ------------------------------------------------------------------------------------------

_WHAT = {
    "ubuntu": "no Ubuntu /etc/os-release",
    "python": "no Python (no pyvenv.cfg, python3.X or site-packages)",
    "cuda": ("no CUDA toolkit version (no /usr/local/cuda with libcudart.so.X.Y.Z, version.json, version.txt, "
             "include/cuda.h or bin/nvcc)"),
    "nccl": "no NCCL (no libnccl.so.X.Y.Z, nccl.h or nvidia-nccl wheel)",
}


def verify(findings: Findings, labels: dict[str, str], namespace: str, kind: Kind) -> list[Mismatch]:
    """Every way the labels disagree with the findings; [] when every label tells the truth.

    Each component label is compared with the version found (PEP 440 public versions; NCCL without its
    Debian revision; Python by major.minor). A label for something the image lacks, a component the kind
    must carry without a label, copies of a labelled distribution at other versions, a CPU-only torch and,
    in a CUDA 13 (or later) image, every shared object that needs a CUDA 12 library are mismatches too. An
    image labelled `flavor` `runtime` must also have every library its shared objects need, no build toolchain
    and a C compiler (`verify_runtime`).
    """
    if kind not in ("base", "runtime", "vllm", "extra"):
        raise ValueError(f"unknown image kind {kind!r} (expected 'base', 'runtime', 'vllm' or 'extra')")
    labels = labels or {}
    mismatches: list[Mismatch] = []
    required = set(components_for(kind))
    for component in COMPONENTS:
        key = component_key(namespace, component)
        expected = labels.get(key)
        found = findings.components.get(component)
        where = findings.locations.get(component, "")
        if expected is None:
            if component in required:
                seen = f"the image has {found} at {where}" if found else "the image does not have it either"
                mismatches.append(Mismatch(component, key, "", found or "", where,
                                           f"{component}: a {kind} image must carry label {key}, but it has "
                                           f"none ({seen})"))
            continue
        if found is None:
            what = _WHAT.get(component, f"no {component} distribution (*.dist-info) in any site-packages")
            mismatches.append(Mismatch(component, key, expected, "", "",
                                       f"{component}: label {key}={expected} but the image has {what}"))
            continue
        if not versions_equal(component, expected, found):
            mismatches.append(Mismatch(component, key, expected, found, where,
                                       f"{component}: label {key}={expected} but {where} says {found}"))
            continue
        mismatches.extend(_shadowed(findings, component, key, expected))

    torch_key = component_key(namespace, "torch")
    if findings.torch_cuda is False:
        where = findings.locations.get("torch", "")
        expected = labels.get(torch_key, "")
        mismatches.append(Mismatch("torch", torch_key, expected, "cpu-only", where,
                                   f"torch: label {torch_key}={expected or '(none)'} but torch is a CPU-only "
                                   f"build (no torch/lib/libtorch_cuda.so next to {where})"))

    cuda_key = component_key(namespace, "cuda")
    cuda = labels.get(cuda_key) or findings.components.get("cuda")
    major = _major(cuda)
    if major is not None and major >= 13:
        for path in findings.cuda12_objects:
            libs = findings.cuda12_needed.get(path, ())
            needs = ", ".join(libs) or "CUDA 12 libraries"
            owner = findings.owners.get(path)
            brought = f" (installed by {owner})" if owner else ""
            mismatches.append(Mismatch("cuda-abi", cuda_key, cuda or "", needs, path,
                                       f"cuda-abi: {path}{brought} needs {needs} from CUDA 12, but the image is "
                                       f"CUDA {cuda}"))
    mismatches.extend(_verify_extra(findings, labels, namespace, major))
    mismatches.extend(_verify_cuda_facts(findings, labels, namespace))
    mismatches.extend(verify_pip_cuda(findings, labels, namespace))
    mismatches.extend(_verify_device_code(findings, labels, namespace))
    mismatches.extend(_verify_measured(findings, labels, namespace))
    mismatches.extend(verify_runtime(findings, labels, namespace))
    return mismatches


def verify_runtime(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """What a runtime image (label `<ns>.flavor` = `runtime`) must be; [] for any other flavor.

    One mismatch per library that shared objects need and the loader would find nowhere (naming the first
    MAX_LISTED objects that need it); one per toolchain path outside site-packages (one per kind when a kind
    has more than MAX_LISTED); and one when there is no C compiler, which Triton needs (C_COMPILER_REASON).
    """
    key = factory_key(namespace, "flavor")
    if (labels or {}).get(key) != RUNTIME_FLAVOR:
        return []
    out = []
    needing: dict[str, list[str]] = {}
    for path, soname in findings.unresolved:
        needing.setdefault(soname, []).append(path)
    for soname, paths in sorted(needing.items()):
        out.append(Mismatch("runtime-libraries", key, RUNTIME_FLAVOR, soname, paths[0],
                            f"runtime-libraries: {soname} is needed by {_listed(paths)}, but the dynamic loader "
                            "would find it nowhere in the image (DT_RPATH/DT_RUNPATH, LD_LIBRARY_PATH, "
                            "ld.so.conf, the system directories; no library of that name anywhere in it, and it "
                            "is not an optional integration's)"))
    kinds: dict[str, list[str]] = {}
    for path in findings.toolchain:
        kinds.setdefault(toolchain_kind(path), []).append(path)
    for kind, paths in kinds.items():
        groups = [paths] if len(paths) > MAX_LISTED else [[path] for path in paths]
        for group in groups:
            out.append(Mismatch("runtime-toolchain", key, RUNTIME_FLAVOR, group[0], group[0],
                                f"runtime-toolchain: a runtime image carries no build toolchain outside its "
                                f"Python environment's site-packages, but it has {kind} at {_listed(group)}"))
    if findings.c_compiler is None:
        out.append(Mismatch("runtime-toolchain", key, RUNTIME_FLAVOR, "", "",
                            "runtime-toolchain: a runtime image needs a C compiler, and it has none (no CC, gcc "
                            f"or clang on PATH): {C_COMPILER_REASON}"))
    return out


def _listed(paths: list[str]) -> str:
    """The first MAX_LISTED paths, and how many more there are."""
    shown = ", ".join(paths[:MAX_LISTED])
    return f"{shown} and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else shown


def torch_device_object(findings: Findings) -> str | None:
    """The image path of torch's libtorch_cuda.so when its GPU code was measured, else None."""
    return next((p for p in findings.device_objects.get("torch", ()) if p.endswith("/libtorch_cuda.so")), None)


def measured_labels(findings: Findings, namespace: str) -> dict[str, str]:
    """The labels only a measurement can set, for the keys that were measured.

    `<ns>.os`: the os-release `ID VERSION_ID` ("ubuntu 24.04"); `<ns>.cuda_sass` / `<ns>.cuda_ptx`: the cubin
    and PTX architectures of torch's libtorch_cuda.so, sorted by number and space-separated
    ("sm_80 sm_90 sm_100 sm_110 sm_120"; "" for none), present once its fat binary was read.
    """
    out: dict[str, str] = {}
    if findings.os:
        out[factory_key(namespace, "os")] = findings.os
    torch = torch_device_object(findings)
    if torch is not None:
        out[factory_key(namespace, "cuda_sass")] = fatbin.format_archs(findings.sass.get(torch, ()))
        out[factory_key(namespace, "cuda_ptx")] = fatbin.format_archs(findings.ptx.get(torch, ()))
    return out


#: pip's CUDA toolkit components whose version is the toolkit's (`cuda-toolkit==13.0.3` pins
#: nvidia-cuda-runtime 13.0.96, nvidia-nvjitlink 13.0.88, ...): their major.minor is the CUDA they are. Libraries
#: with their own numbering (cuBLAS 13.1, cuFFT 12.0, cuDNN 9) and the driver bindings (cuda-bindings, any 13.x
#: on a CUDA 13 driver) are checked by the lock's CUDA constraints and the CUDA-major rules instead.
TOOLKIT_VERSIONED = frozenset({
    "cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cuda-nvcc", "nvidia-cuda-crt",
    "nvidia-nvvm", "nvidia-cuda-cccl", "nvidia-cuda-cupti", "nvidia-nvjitlink", "nvidia-nvtx",
    "nvidia-cuda-culibos", "nvidia-cuda-cuxxfilt", "nvidia-cuda-sanitizer-api", "nvidia-cuda-profiler-api",
    "nvidia-nvfatbin", "nvidia-nvptxcompiler", "nvidia-nvml-dev", "nvidia-cuda-opencl",
})


def pip_cuda_report(findings: Findings, cuda: str | None) -> list[tuple[str, str, str]]:
    """(distribution, version, verdict) of every pip CUDA component found: `same CUDA` / `CUDA X.Y, not the
    image's` for the toolkit-versioned ones, `own numbering` for the rest."""
    want = _major_minor(cuda or "")
    out = []
    for name, version in sorted(findings.cuda_dists.items()):
        if name in TOOLKIT_VERSIONED:
            have = _major_minor(version)
            out.append((name, version, "same CUDA" if have == want else f"CUDA {have}, not the image's {want}"))
        else:
            out.append((name, version, "own numbering"))
    return out


def verify_pip_cuda(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """A mismatch per pip CUDA toolkit component of another CUDA major.minor than the image's label (nvJitLink
    13.5 in a CUDA 13.0 image links code the image's driver may not load)."""
    key = component_key(namespace, "cuda")
    cuda = labels.get(key)
    if not cuda:
        return []
    return [Mismatch("cuda", key, cuda, version, f"pip {name}",
                     f"cuda: pip's {name} {version} is {verdict.split(',')[0]}, but label {key}={cuda}")
            for name, version, verdict in pip_cuda_report(findings, cuda) if verdict.startswith("CUDA ")]


def _verify_cuda_facts(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """One mismatch when the image's facts of its CUDA version (files, env) disagree on major.minor."""
    versions = {_major_minor(v) for v in findings.cuda_facts.values()}
    if len(versions) < 2:
        return []
    key = component_key(namespace, "cuda")
    listed = ", ".join(f"{where} says {v}" for where, v in findings.cuda_facts.items())
    found = findings.components.get("cuda", "")
    return [Mismatch("cuda", key, labels.get(key, ""), found, findings.locations.get("cuda", ""),
                     f"cuda: the image's CUDA facts disagree: {listed}")]


def _verify_device_code(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """With a `cuda_arch` label: torch's libtorch_cuda.so and vLLM's _C libraries must carry code that runs
    there (a compatible cubin, or PTX to JIT-compile; see factory.adapters.rootfs.fatbin.runs_on)."""
    key = factory_key(namespace, "cuda_arch")
    arch = labels.get(key)
    if not arch:
        return []
    objects = [p for p in findings.device_objects.get("torch", ()) if p.endswith("/libtorch_cuda.so")]
    objects += [p for p in findings.device_objects.get("vllm", ()) if re.search(r"/vllm/_C[^/]*\.so$", p)]
    out = []
    for path in objects:
        sass, ptx = findings.sass.get(path, ()), findings.ptx.get(path, ())
        have = " ".join([*sass, *ptx]) or "no device code"
        try:
            ok, why = fatbin.runs_on(sass, ptx, arch)
        except ValueError as exc:
            out.append(Mismatch("cuda-arch", key, arch, have, path, f"cuda-arch: label {key}={arch}: {exc}"))
            continue
        if not ok:
            out.append(Mismatch("cuda-arch", key, arch, have, path,
                                f"cuda-arch: label {key}={arch} but {path} cannot run there: {why}"))
    return out


def _verify_measured(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """Labels `os`, `cuda_sass` and `cuda_ptx`, where present, must be what `measured_labels` measures."""
    measured = measured_labels(findings, namespace)
    torch = torch_device_object(findings) or "torch/lib/libtorch_cuda.so"
    what = {"os": ("/etc/os-release", "no readable os-release ID"),
            "cuda_sass": (torch, "no torch/lib/libtorch_cuda.so with CUDA device code (.nv_fatbin)"),
            "cuda_ptx": (torch, "no torch/lib/libtorch_cuda.so with CUDA device code (.nv_fatbin)")}
    out = []
    for name, (where, missing) in what.items():
        key = factory_key(namespace, name)
        if key not in labels:
            continue
        expected, found = labels[key], measured.get(key)
        if found is None:
            out.append(Mismatch(name, key, expected, "", "", f"{name}: label {key}={expected} but the image has "
                                                             f"{missing}"))
        elif " ".join(expected.split()) != found:
            out.append(Mismatch(name, key, expected, found, where,
                                f"{name}: label {key}={expected!r} but {where} says {found!r}"))
    return out


def _verify_extra(findings: Findings, labels: dict[str, str], namespace: str, major: int | None) -> list[Mismatch]:
    """An extra layer's own components, and that its libraries link the image's CUDA major (and only that)."""
    out = []
    for component in EXTRA_COMPONENTS:
        key = component_key(namespace, component)
        expected, found = labels.get(key), findings.components.get(component)
        where = findings.locations.get(component, "")
        if expected is None:
            continue
        if found is None:
            what = "no lib/pkgconfig/ucx.pc" if component == "ucx" else f"no {component} distribution (*.dist-info)"
            out.append(Mismatch(component, key, expected, "", "", f"{component}: label {key}={expected} but the "
                                                                  f"image has {what}"))
        elif not versions_equal(component, expected, found):
            out.append(Mismatch(component, key, expected, found, where,
                                f"{component}: label {key}={expected} but {where} says {found}"))
        flavour = findings.cuda_flavours.get(component)
        if flavour is not None and major is not None and flavour != major:
            out.append(Mismatch("cuda-abi", key, f"cu{major}", f"cu{flavour}", where,
                                f"cuda-abi: {where} is the CUDA {flavour} build of {component}, "
                                f"but the image is CUDA {major}"))
    if major is None:
        return out
    cuda_key = component_key(namespace, "cuda")
    for directory in filter(None, labels.get(factory_key(namespace, "cuda_linked"), "").split(":")):
        prefix = directory.rstrip("/") + "/"
        linked = False
        for path, libs in findings.cuda_runtime.items():
            if not path.startswith(prefix):
                continue
            other = [lib for lib in libs if int(CUDA_RUNTIME_SONAME.match(lib)[1]) != major]
            linked = linked or len(other) < len(libs)
            if other:
                out.append(Mismatch("cuda-abi", cuda_key, str(major), ", ".join(other), path,
                                    f"cuda-abi: {path} needs {', '.join(other)}, but the image is CUDA {major}"))
        if not linked:
            out.append(Mismatch("cuda-abi", cuda_key, str(major), "", directory,
                                f"cuda-abi: no library under {directory} links a CUDA {major} runtime "
                                f"(libcudart.so.{major}, ...): built without CUDA, or not there at all"))
    return out


def _shadowed(findings: Findings, component: str, key: str, expected: str) -> list[Mismatch]:
    """A mismatch when a labelled distribution is installed more than once and a copy has another version."""
    names = [name for name, c in DIST_COMPONENTS.items() if c == component]
    out = []
    for name in names:
        copies = findings.duplicates.get(name, ())
        other = [(v, w) for v, w in copies[1:] if not versions_equal(component, expected, v)]
        if other:
            listed = ", ".join(f"{v} at {w}" for v, w in other)
            out.append(Mismatch(component, key, expected, other[0][0], other[0][1],
                                f"{component}: label {key}={expected} matches {copies[0][1]}, but {name} is also "
                                f"installed as {listed} (shadowing)"))
    return out


def _major(text: str | None) -> int | None:
    if not text:
        return None
    match = re.match(r"\s*(\d+)", text)
    return int(match[1]) if match else None
