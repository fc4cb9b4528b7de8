"""What the build, publish and smoke use cases need from a container engine, as plain data and one protocol.

A build request and a container run each know their own command line (`argv()`): the dry run, the logs and
the engine adapter all use that one list, so what is printed is what runs. The protocol is implemented by
`factory.adapters.docker.DockerEngine` (python-on-whales and the docker CLI) and, in the tests, by an
in-memory fake, so the orchestration (waves, blocked images, push gating, retries) is tested without Docker.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from factory.core.errors import WorkFailed

#: Receives each line of output of a long engine call (a build log, a push), without its newline.
LineSink = Callable[[str], None]


class EngineError(WorkFailed):
    """The engine, Buildx or a registry behind them could not do what was asked."""


class LocalImage(NamedTuple):
    """An image the engine holds: its id (`sha256:...`) and its labels."""

    id: str
    labels: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    """Everything one `docker buildx build` needs; `argv()` is the exact command it runs."""

    context: Path
    dockerfile: Path
    tags: tuple[str, ...]
    platform: str
    build_args: Mapping[str, str]
    labels: Mapping[str, str]
    target: str | None = None
    load: bool = True
    push: bool = False
    builder: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    metadata_file: Path | None = None
    network: str | None = None
    #: BuildKit secrets, `id=NAME,src=PATH`: mounted only into the RUN steps that ask for them, never stored
    secrets: tuple[str, ...] = ()
    #: named build contexts (`--build-context NAME=DIR`): `lock`, the layer files of the image's lock
    build_contexts: tuple[tuple[str, str], ...] = ()

    def argv(self) -> list[str]:
        return buildx_argv(self)

    def command_line(self) -> str:
        return shlex.join(self.argv())


def buildx_argv(request: BuildRequest) -> list[str]:
    """The one `docker buildx build` command line of a request: printed by --dry-run, written at the top of the
    build log, and run by the engine adapter. A secret is passed by its file's path, never by its content."""
    cmd = ["docker", "buildx", "build", "--progress", "plain", "--platform", request.platform,
           "--file", str(request.dockerfile)]
    if request.builder:
        cmd += ["--builder", request.builder]
    if request.network:
        cmd += ["--network", request.network]
    if request.target:
        cmd += ["--target", request.target]
    for tag in request.tags:
        cmd += ["--tag", tag]
    for key, value in request.build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in request.labels.items():
        cmd += ["--label", f"{key}={value}"]
    for secret in request.secrets:
        cmd += ["--secret", secret]
    for name, path in request.build_contexts:
        cmd += ["--build-context", f"{name}={path}"]
    for source in request.cache_from:
        cmd += ["--cache-from", source]
    if request.cache_to:
        cmd += ["--cache-to", request.cache_to]
    if request.load:
        cmd.append("--load")
    if request.push:
        cmd.append("--push")
    if request.metadata_file:
        cmd += ["--metadata-file", str(request.metadata_file)]
    cmd.append(str(request.context))
    return cmd


@dataclass(frozen=True, kw_only=True)
class ContainerRun:
    """One `docker run --rm` of a program in an image; `argv()` is the exact command it runs."""

    image: str
    entrypoint: str | None = None
    command: tuple[str, ...] = ()
    platform: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    #: `--mount` values, e.g. `type=bind,source=/abs/path,target=/in/image,readonly`
    mounts: tuple[str, ...] = ()
    envs: tuple[tuple[str, str], ...] = ()
    pull: str | None = None

    def argv(self) -> list[str]:
        cmd = ["docker", "run", "--rm"]
        if self.platform:
            cmd.append(f"--platform={self.platform}")
        if self.gpus is not None:
            cmd.append(f"--gpus={self.gpus}")
        if self.shm_size:
            cmd.append(f"--shm-size={self.shm_size}")
        for mount in self.mounts:
            cmd += ["--mount", mount]
        for key, value in self.envs:
            cmd += ["--env", f"{key}={value}"]
        if self.pull:
            cmd.append(f"--pull={self.pull}")
        if self.entrypoint is not None:
            cmd += ["--entrypoint", self.entrypoint]
        return [*cmd, self.image, *self.command]


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a container run printed, and its exit status (a program that fails is not an engine error)."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""


class Engine(Protocol):
    """A container engine as the use cases see it; every method raises EngineError when the engine fails."""

    def version(self) -> str:
        """The engine's version; EngineError when there is no engine to talk to."""
        ...

    def local_image(self, ref: str) -> tuple[str, dict[str, str]] | None:
        """(id, labels) of a local image (a LocalImage), or None when the engine has no image by that name."""
        ...

    def build(self, request: BuildRequest, on_line: LineSink) -> None:
        """Run `request.argv()`, every log line to `on_line`."""
        ...

    def stamp(self, ref: str, tags: tuple[str, ...], platform: str, labels: Mapping[str, str],
              on_line: LineSink) -> None:
        """Give the local image `ref` more labels, under `tags`, without a new layer."""
        ...

    def push(self, ref: str, on_line: LineSink) -> None:
        ...

    def tag(self, source: str, target: str) -> None:
        ...

    def run(self, request: ContainerRun) -> RunResult:
        """Run `request.argv()` to its end; a program's non-zero exit is a result, not an error."""
        ...
