"""The dynamic loader's model: where glibc's ld.so would find each library an object needs, inside an image.

`Loader` follows ld.so(8) (DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH with `$ORIGIN`, /etc/ld.so.conf and its
includes, the system directories) over a root filesystem on disk. What it finds nowhere is then classified
(`classify_misses`): the host driver's libraries (DRIVER_LIBRARIES) are mounted at run time, a library held
elsewhere in the image under that name is preloaded by its owner, and an optional integration's library
(OPTIONAL_LIBRARIES) is expected to be absent; anything else is really missing.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from factory.adapters.rootfs import elf
from factory.adapters.rootfs.paths import glob_parts, image_path, read_text, resolve_parts

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

_DRIVER_LIBRARY = re.compile("|".join(fnmatch.translate(p) for p in DRIVER_LIBRARIES))


#: (image path of a shared object, a soname it needs), sorted.
Needs = tuple[tuple[str, str], ...]


def classify_misses(misses: set[tuple[str, str]], held: set[str]) -> tuple[Needs, Needs, Needs]:
    """Split what the loader misses into (unresolved, preloaded, optional): held elsewhere in the image under
    that name is found once its owner loaded it; an optional integration's library is OPTIONAL_LIBRARIES'."""
    unresolved: list[tuple[str, str]] = []
    preloaded: list[tuple[str, str]] = []
    optional: list[tuple[str, str]] = []
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


#: Debian's multiarch directory names of ELF machines (the loader's system directories on Ubuntu/Debian).
MULTIARCH = {183: "aarch64-linux-gnu", 62: "x86_64-linux-gnu", 21: "powerpc64le-linux-gnu", 22: "s390x-linux-gnu"}
_PLATFORM = {183: "aarch64", 62: "x86_64", 21: "powerpc64le", 22: "s390x"}

#: What decides an object's search order: its directory, DT_RPATH, DT_RUNPATH, machine and class.
_OrderKey = tuple[str, tuple[str, ...], tuple[str, ...], int, int]


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
        self._orders: dict[_OrderKey, tuple[tuple[str, str], ...]] = {}
        self._dirs: dict[str, tuple[str, ...] | None] = {}
        self._names: dict[tuple[str, ...], frozenset[str]] = {}
        self._files: dict[tuple[tuple[str, ...], str], tuple[str, ...] | None] = {}
        self._headers: dict[tuple[str, ...], tuple[int, int] | None] = {}

    def find(self, needed_by: str, soname: str, info: elf.Dynamic | None = None) -> Found:
        """Where the loader finds `soname` for the object at image path `needed_by`; `info` is that object's
        dynamic section when the caller has read it (`needed_by` is then its real path, no link)."""
        if info is None:
            rel = resolve_parts(self.root, needed_by)
            if rel is None:
                return Found(None)
            info = elf.dynamic(self.root.joinpath(*rel))
            needed_by = image_path(rel)
        if "/" in soname:  # a path, loaded as it is, never searched for (relative: from the working directory)
            real = resolve_parts(self.root, soname) if soname.startswith("/") else None
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
            self._dirs[directory] = resolve_parts(self.root, directory)
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
            link: tuple[str, ...] = (*rel, soname)
            real: tuple[str, ...] | None = link
            try:
                mode = os.lstat(os.path.join(self.root, *link)).st_mode
            except OSError:
                mode = 0
            if stat.S_ISLNK(mode):
                real = resolve_parts(self.root, image_path(link))
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
        rel = resolve_parts(root, path)
        if rel is None or rel in seen or depth > 8:
            return
        seen.add(rel)
        text = read_text(root, rel, 256 * 1024)
        for line in (text or "").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include":
                for pattern in words[1:]:
                    pattern = pattern if pattern.startswith("/") else f"/etc/{pattern}"
                    for parts in glob_parts(root, pattern):
                        read(image_path(parts), depth + 1)
            elif words[0] != "hwcap":
                out.extend(d.rstrip("/") or "/" for d in re.split(r"[:\s,=]+", line) if d.startswith("/"))

    read("/etc/ld.so.conf", 0)
    return list(dict.fromkeys(out))

