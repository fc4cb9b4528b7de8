"""The engine adapter: the only module that talks to Docker, through python-on-whales and the docker CLI.

Each function is one engine call with plain values in and out, so the use cases above it stay readable
and the errors an engine can give are turned into one clear sentence each. `DockerEngine` bundles them as
the `factory.core.engine.Engine` the use cases take. A build runs exactly `BuildRequest.argv()`, the command
line the dry run and the build log show; a container run exactly `ContainerRun.argv()`.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from factory.core.engine import BuildRequest, ContainerRun, EngineError, LineSink, LocalImage, RunResult

if TYPE_CHECKING:
    import tarfile
    from types import ModuleType

    from python_on_whales import DockerClient
    from python_on_whales.components.image.cli_wrapper import Image

__all__ = ["BuildRequest", "ContainerRun", "DockerEngine", "EngineError", "RunResult"]


class DockerEngine:
    """The Engine the use cases take by default: each method is this module's function of the same name."""

    def version(self) -> str:
        return check_engine()

    def local_image(self, ref: str) -> tuple[str, dict[str, str]] | None:
        return local_image(ref)

    def build(self, request: BuildRequest, on_line: LineSink) -> None:
        build(request, on_line)

    def stamp(self, ref: str, tags: tuple[str, ...], platform: str, labels: Mapping[str, str],
              on_line: LineSink) -> None:
        stamp(ref, tags, platform, labels, on_line)

    def push(self, ref: str, on_line: LineSink) -> None:
        push(ref, on_line)

    def tag(self, source: str, target: str) -> None:
        tag(source, target)

    def run(self, request: ContainerRun) -> RunResult:
        return run(request)


def _docker() -> DockerClient:
    from python_on_whales import docker

    return docker


def _exceptions() -> ModuleType:
    from python_on_whales import exceptions

    return exceptions


def check_engine() -> str:
    """The engine's version; one clear sentence when the engine is not there."""
    docker = _docker()
    exc = _exceptions()
    try:
        version = docker.version()
    except exc.DockerException as error:
        raise EngineError(
            "cannot reach the Docker engine (is dockerd running? `make engine` starts one): "
            + _first_line(error)
        ) from None
    except FileNotFoundError:
        raise EngineError("the docker client is not installed (`make engine` installs Docker Engine)") from None
    server = getattr(version, "server", None)
    return str(getattr(server, "version", None) or "unknown")


@functools.cache
def check_buildx() -> None:
    """Buildx is needed only when something is built, so it is checked then, once per process."""
    try:
        _docker().buildx.version()
    except _exceptions().DockerException:
        raise EngineError("Docker Buildx is missing: install the buildx CLI plugin (`make engine` does)") from None


def _inspect(ref: str) -> Image | None:
    """python-on-whales' Image of a local image, or None when the engine has no image by that name."""
    docker = _docker()
    exc = _exceptions()
    try:
        return docker.image.inspect(ref)
    except exc.NoSuchImage:
        return None
    except exc.DockerException as error:
        raise EngineError(f"cannot inspect {ref}: {_first_line(error)}") from None


def local_image(ref: str) -> LocalImage | None:
    """(image id, labels) of a local image, or None when the engine has no image by that name."""
    image = _inspect(ref)
    if image is None:
        return None
    labels = image.config.labels if image.config is not None else None
    return LocalImage(str(image.id), dict(labels or {}))


def image_env(ref: str) -> dict[str, str]:
    """The environment an image's config sets (`CUDA_VERSION`, `LD_LIBRARY_PATH`, ...), for measuring it."""
    image = _inspect(ref)
    if image is None:
        raise EngineError(f"cannot inspect {ref}: no such local image")
    env = image.config.env if image.config is not None else None
    pairs = (item.partition("=") for item in env or ())
    return {key: value for key, _, value in pairs}


def stamp(ref: str, tags: tuple[str, ...], platform: str, labels: Mapping[str, str], on_line: LineSink) -> None:
    """Give the local image `ref` more labels, under `tags`, without a new layer (a build `FROM ref`).

    Used for what can only be known after a build: facts measured from the image's files.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="factory-stamp-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text("ARG IMAGE\nFROM ${IMAGE}\n", encoding="utf-8")
        build(BuildRequest(context=Path(tmp), dockerfile=dockerfile, tags=tags, platform=platform,
                           build_args={"IMAGE": ref}, labels=dict(labels)), on_line)


def local_platform(ref: str) -> str | None:
    """`os/arch[/variant]` of a local image, or None when the engine has no image by that name."""
    image = _inspect(ref)
    if image is None:
        return None
    variant = getattr(image, "variant", None)
    return "/".join(p for p in (image.os, image.architecture, variant) if p)


def local_labels(ref: str) -> dict[str, str] | None:
    """Labels of a local image, or None when the engine has no image by that name."""
    found = local_image(ref)
    return found[1] if found else None


def local_id(ref: str) -> str | None:
    found = local_image(ref)
    return found[0] if found else None


def build(request: BuildRequest, on_line: LineSink) -> None:
    """Run `request.argv()`, streaming every log line (BuildKit writes them to stderr) to `on_line`; raise
    EngineError when it fails."""
    check_buildx()
    argv = request.argv()
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, encoding="utf-8", errors="replace", bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                on_line(line.rstrip("\n"))
            code = proc.wait()
    except FileNotFoundError:
        raise EngineError("the docker client is not installed (`make engine` installs Docker Engine)") from None
    if code:
        raise EngineError(f"docker buildx build failed (exit {code})")


def run(request: ContainerRun) -> RunResult:
    """Run `request.argv()` to its end and return what it printed; only a missing docker client raises."""
    try:
        done = subprocess.run(request.argv(), capture_output=True, stdin=subprocess.DEVNULL, text=True,
                              encoding="utf-8", errors="replace", check=False)
    except FileNotFoundError:
        raise EngineError("the docker client is not installed (`make engine` installs Docker Engine)") from None
    return RunResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def push(ref: str, on_line: LineSink) -> None:
    docker = _docker()
    exc = _exceptions()
    try:
        for _stream, chunk in docker.image.push(ref, stream_logs=True) or ():
            on_line(chunk.decode(errors="replace").rstrip("\n"))
    except exc.DockerException as error:
        raise EngineError(f"push of {ref} failed: {_first_line(error)}") from None


def tag(source: str, target: str) -> None:
    _docker().image.tag(source, target)


#: What verify reads of a file that export_rootfs keeps whole: every shared object (ELF headers, dynamic
#: section, fatbin headers), package metadata, /etc, nvcc (its version banner) and every small file (headers
#: among them). Of the rest verify needs only the path (a runtime image's compilers, make, cmake, git: the
#: toolchain check), which the empty placeholder keeps.
_KEEP_SUFFIXES = (".dist-info", ".egg-info")
_KEEP_SIZE = 2 * 1024 * 1024


def _kept(name: str, size: int) -> bool:
    parts = name.lstrip("./").split("/")
    base = parts[-1]
    return (size <= _KEEP_SIZE or ".so" in base or parts[0] == "etc" or base == "nvcc"
            or any(part.endswith(_KEEP_SUFFIXES) for part in parts[:-1]))


def export_rootfs(ref: str, dest: Path) -> None:
    """Unpack an image's filesystem into `dest` without running anything in it (create, export, remove).

    The export is streamed, never stored, and large files that verify does not read (data, static libraries,
    executables other than nvcc) are written as empty placeholders: the rootfs of a 19 GB image then takes a
    fraction of that on disk, and every path still exists.
    """
    docker = _docker()
    exc = _exceptions()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        container = docker.container.create(ref, command=["/nonexistent"])
    except exc.DockerException as error:
        raise EngineError(f"cannot create a container from {ref}: {_first_line(error)}") from None
    try:
        with subprocess.Popen(["docker", "export", container.id], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            unpack_rootfs(proc.stdout, dest)
            said = proc.stderr.read().decode(errors="replace")
        if proc.returncode:
            raise EngineError(f"docker export of {ref} failed: {said.strip() or f'exit {proc.returncode}'}")
    except OSError as error:
        raise EngineError(f"cannot unpack {ref} into {dest}: {error.strerror or error}") from None
    finally:
        container.remove(force=True)


#: Shared objects larger than this are written sparse (`_sparse`), unless verify reads their GPU code.
SPARSE_MIN = 8 * 1024 * 1024


def _whole(name: str) -> bool:
    """Whether verify reads all of this shared object: torch's, vLLM's and FlashInfer's GPU code (their fat
    binaries, `rootfs.cuda.DEVICE_CODE`)."""
    import fnmatch

    from factory.adapters.rootfs.cuda import DEVICE_CODE

    return any(fnmatch.fnmatchcase(name, f"*/site-packages/{pattern}")
               for _, patterns in DEVICE_CODE.values() for pattern in patterns)


def unpack_rootfs(stream: IO[bytes], dest: Path, *, sparse_min: int = SPARSE_MIN) -> None:
    """Unpack a root filesystem tar stream (`docker export`) into `dest`, as export_rootfs does: files verify does
    not read (`_kept`) become empty placeholders, a large shared object whose GPU code verify does not read keeps
    only its headers (a sparse file: `elf.header_ranges`), links and directories are kept, devices are skipped.
    A vLLM image's 9.6 GB of shared objects then take about 1.5 GB of disk."""
    import tarfile

    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if member.isfile() and not _kept(member.name, member.size):
                _placeholder(dest, member.name)
                continue
            if (member.isfile() and member.size > sparse_min and ".so" in member.name.rsplit("/", 1)[-1]
                    and not _whole(member.name)):
                source = archive.extractfile(member)
                if source is not None:
                    _sparse(source, dest, member.name, member.size)
                    continue
            archive.extract(member, dest, filter=_inside)


def _sparse(source: IO[bytes], dest: Path, name: str, size: int) -> None:
    """Write the ELF object streaming from `source` as a sparse file of its full size holding only the ranges
    `elf.header_ranges` names (the rest reads as zeros and takes no disk); all of it when it is not such an
    object; nothing outside `dest`. The stream is read to its end either way."""
    import os

    from factory.adapters.rootfs import elf

    head = source.read(min(size, elf.HEAD_BYTES))
    ranges = elf.header_ranges(head, size) or [(0, size)]
    target = os.path.normpath(os.path.join(dest, name.lstrip("/")))
    if not target.startswith(str(dest) + os.sep):
        ranges = []  # drained, never written
        target = os.devnull
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    chunk = 1024 * 1024
    with open(target, "wb") as out:
        position = 0
        data = head
        while data:
            end = position + len(data)
            for start, stop in ranges:
                a, b = max(start, position), min(stop, end)
                if a < b:
                    out.seek(a)
                    out.write(data[a - position:b - position])
            position = end
            data = source.read(min(chunk, size - position)) if position < size else b""
        if ranges:
            out.truncate(size)


def _placeholder(dest: Path, name: str) -> None:
    """An empty file at `name` inside `dest` (never outside it)."""
    import os

    target = os.path.normpath(os.path.join(dest, name.lstrip("/")))
    if not target.startswith(str(dest) + os.sep):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    open(target, "wb").close()


def _inside(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile filter: absolute symlinks become relative to the image root; devices are skipped."""
    import os
    import tarfile

    if member.isdev() or member.isfifo():
        return None
    if member.issym() and member.linkname.startswith("/"):
        here = os.path.dirname(member.name.lstrip("/"))
        member = member.replace(linkname=os.path.relpath(member.linkname.lstrip("/"), here or "."))
    try:
        return tarfile.tar_filter(member, dest)
    except tarfile.FilterError:
        return None


def _first_line(error: Exception) -> str:
    text = (getattr(error, "stderr", None) or str(error)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text
