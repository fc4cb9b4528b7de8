"""The version matrix: pydantic models of `matrix.toml` and loading with located errors.

Versions keep the text the maintainer wrote (`13.1.0`, `2.29.2-1`, `5.0.0rc3`) because that text ends up in
labels and build args verbatim; `version_of` turns it into a comparable `packaging` version when a rule
needs one.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11 (pyproject installs tomli there)
    import tomli as tomllib

from factory.errors import InputError

#: Components of a base image (the PyTorch-dev layer) and of a vLLM image, in label order.
BASE_COMPONENTS = ("ubuntu", "python", "cuda", "nccl", "torch", "torchvision", "torchaudio")
IMAGE_COMPONENTS = ("triton", "flashinfer", "vllm", "transformers", "ray")
COMPONENTS = BASE_COMPONENTS + IMAGE_COMPONENTS
#: Components an extra layer can carry; verify knows how to measure each (UCX's pkg-config file, NIXL's wheel).
EXTRA_COMPONENTS = ("ucx", "nixl")
ExtraComponent = Literal["ucx", "nixl"]

#: Facts about a tag that rules can match on besides component versions (compared as plain text).
FACTS = ("platform", "mode", "base_mode")

BuildMode = Literal["source", "wheels"]

_PACKAGE_REVISION = re.compile(r"-\d+$")


def version_of(component: str, text: str) -> Version:
    """A comparable version for a component's text; NCCL's Debian-style `-1` package revision is dropped."""
    if component == "nccl":
        text = _PACKAGE_REVISION.sub("", text)
    return Version(text)


def _check_version(text: str) -> str:
    try:
        Version(_PACKAGE_REVISION.sub("", text))
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a version (PEP 440, e.g. 2.10.0 or 5.0.0rc3)") from None
    return text


VersionText = Annotated[str, AfterValidator(_check_version)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """Where a component is built from when it is not upstream's release tag (a fork, a branch, a fix)."""

    repo: str = Field(description="git URL of the source repository")
    ref: str = Field(description="tag, branch or commit to build")
    note: str | None = Field(None, description="why this source is used")


class Waiver(_Model):
    """A tag's written permission to break one rule; the reason is shown by every `factory check`."""

    rule: str
    reason: str = Field(min_length=10, description="why the deviation is deliberate and safe")


class Repositories(_Model):
    base: str = "scitrera/dgx-spark-pytorch-dev"
    vllm: str = "scitrera/dgx-spark-vllm"


class Dockerfiles(_Model):
    """Dockerfile per image kind, relative to the matrix file; the build context is each file's folder."""

    base: str = "dockerfiles/pytorch-dev.Dockerfile"
    vllm: str = "dockerfiles/vllm.Dockerfile"
    base_wheels: str = "dockerfiles/pytorch-dev-wheels.Dockerfile"
    vllm_wheels: str = "dockerfiles/vllm-wheels.Dockerfile"


class BuildKnobs(_Model):
    """Compiler settings for GB10 (sm_121); passed to every source build as build args."""

    torch_cuda_arch_list: str = "12.1a"
    nccl_gencode: str = "-gencode=arch=compute_121,code=sm_121"
    max_jobs: int = Field(8, ge=1, le=256, description="parallel compile jobs; unbounded jobs OOM")
    nvcc_threads: int = Field(2, ge=1, le=32)
    cuda_arch: str = Field("sm_121", description="the GPU architecture the images are for")


class Defaults(_Model):
    platform: str = "linux/arm64"
    label_namespace: str = "dev.scitrera"
    ubuntu: VersionText = "24.04"
    python: VersionText = "3.12"
    ray: VersionText = "2.53.0"
    cuda_image: str = Field(
        "nvidia/cuda:{cuda}-devel-ubuntu{ubuntu}",
        description="CUDA devel image for a base; {cuda} and {ubuntu} are filled in",
    )
    source_url: str = Field(
        "https://github.com/scitrera/spark-image-factory",
        description="org.opencontainers.image.source of every image",
    )
    vendor: str = "scitrera"
    index_url: str = Field("https://pypi.org/simple", description="package index for wheel installs")
    torch_index_url: str | None = Field(None, description="extra index for CUDA torch wheels, if any")
    flashinfer_index_url: str = Field(
        "https://flashinfer.ai/whl/cu130",
        description="FlashInfer's own index, for flashinfer-jit-cache (its precompiled kernels, on no other index); "
                    "empty: no jit-cache, FlashInfer compiles its kernels at first use",
    )
    repositories: Repositories = Repositories()
    dockerfiles: Dockerfiles = Dockerfiles()
    build: BuildKnobs = BuildKnobs()

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]+/[a-z0-9_]+(/v\d+)?", value):
            raise ValueError(f"{value!r} is not an OCI platform like linux/arm64")
        return value


class Base(_Model):
    """A PyTorch-dev base image: CUDA, NCCL and torch built for the target GPU."""

    cuda: VersionText
    nccl: VersionText
    torch: VersionText
    torchvision: VersionText
    torchaudio: VersionText
    ubuntu: VersionText | None = None
    python: VersionText | None = None
    mode: BuildMode = "source"
    cudnn: VersionText = Field(
        "9.15.1.9",
        description="source mode: the nvidia-cudnn-cu<CUDA major> wheel torch is built against and the base "
                    "ships (torch 2.10.0's CUDA 13.0 wheels pin 9.15.1.9); a wheel-mode base gets the cuDNN its "
                    "torch wheel pins",
    )
    cuda_image_digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$")
    revision: int = Field(0, ge=0)
    sources: dict[Literal["nccl", "torch", "torchvision", "torchaudio"], Source] = {}


class Image(_Model):
    """A vLLM image tag `<vllm>-t<transformers major>` on a base."""

    base: str
    vllm: VersionText
    triton: VersionText
    flashinfer: VersionText
    transformers: VersionText
    ray: VersionText | None = None
    mode: BuildMode = "source"
    vllm_released: date | None = Field(None, description="when upstream released this vLLM version")
    revision: int = Field(0, ge=0, description="bump to republish a tag whose content changed")
    default: bool = Field(False, description="the tag `latest` points at")
    sources: dict[Literal["vllm", "flashinfer", "triton"], Source] = {}
    allow: tuple[Waiver, ...] = ()


class Extra(_Model):
    """An optional layer on vLLM tags, published as `<tag>-<suffix>` (first: UCX + NIXL for KV-cache transfer).

    It is built FROM the tag's image with its own Dockerfile, labelled with everything the tag carries plus
    its own component versions, and verified like any image; `cuda_linked` names the directories whose
    libraries must be linked against the image's CUDA major (a NIXL built for CUDA 12 fails in a CUDA 13
    image with `libcudart.so.12: cannot open shared object file`).
    """

    suffix: str = Field(pattern=r"^[a-z][a-z0-9]*$", description="tag suffix: <tag>-<suffix>")
    description: str = Field(min_length=10)
    dockerfile: str = Field(description="relative to the matrix file; the build context is its folder")
    mode: BuildMode = Field("source", description="source: compile the components in the layer (the Dockerfile's "
                                                  "last stage); wheels: install their wheels from the index (its "
                                                  "stage `wheels`)")
    on: tuple[str, ...] = Field(min_length=1, description="the vLLM tags (or shell globs) it is built on")
    versions: dict[ExtraComponent, VersionText] = Field(min_length=1)
    sources: dict[ExtraComponent, Source] = {}
    cuda_linked: tuple[str, ...] = Field((), description="image directories whose shared objects must link "
                                                         "against the image's CUDA major; {python} and "
                                                         "{cuda_major} are filled in from the image's base")
    revision: int = Field(0, ge=0)

    @field_validator("cuda_linked")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/") or ":" in path:
                raise ValueError(f"{path!r} is not an absolute image path without ':'")
        return value


class Rule(_Model):
    """A compatibility rule: for tags matching `when`, each `require` must hold."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
    severity: Literal["error", "warning"] = "error"
    when: dict[str, str] = {}
    require: dict[str, str]
    reason: str
    source: str = Field(description="URL of the upstream fact behind the rule")

    @field_validator("when", "require")
    @classmethod
    def _known_keys(cls, value: dict[str, str]) -> dict[str, str]:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        for key, spec in value.items():
            if key in FACTS:
                continue
            if key not in COMPONENTS:
                raise ValueError(f"unknown component {key!r} (known: {', '.join(COMPONENTS + FACTS)})")
            try:
                SpecifierSet(spec)
            except InvalidSpecifier:
                raise ValueError(f"{key} = {spec!r} is not a PEP 440 specifier like '>=2.10,<2.11'") from None
        return value


class Matrix(_Model):
    """Everything the factory ships, as declared in matrix.toml."""

    schema_version: Literal[1] = Field(1, alias="schema")
    defaults: Defaults = Defaults()
    base: dict[str, Base]
    image: dict[str, Image]
    extra: dict[str, Extra] = {}
    rule: tuple[Rule, ...] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def extra_images(matrix: Matrix) -> dict[str, tuple[str, str]]:
    """Every extra-layer image: `<tag>-<suffix>` -> (extra name, vLLM tag), for the tags its `on` matches."""
    out = {}
    for name, extra in sorted(matrix.extra.items()):
        for tag in sorted(matrix.image):
            if any(fnmatch.fnmatchcase(tag, pattern) for pattern in extra.on):
                out[f"{tag}-{extra.suffix}"] = (name, tag)
    return out


@dataclass(frozen=True)
class LoadedMatrix:
    """A matrix and where it came from (Dockerfile paths are relative to its folder)."""

    matrix: Matrix
    path: Path

    @property
    def root(self) -> Path:
        return self.path.parent


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse(text: str, path: Path) -> Matrix:
    """Validate matrix text; every problem becomes an InputError naming file, table, tag and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        where = f"{path}:{found[1]}:{found[2]}" if found else str(path)
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise InputError(f"{where}: invalid TOML: {message}") from None
    try:
        return Matrix.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_describe(exc, text, path)) from None


def load(path: str | Path) -> LoadedMatrix:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such matrix file (pass --matrix PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the matrix: {exc}") from None
    return LoadedMatrix(matrix=parse(text, path), path=path.resolve())


def _describe(exc: ValidationError, text: str, path: Path) -> str:
    lines = [f"{path}: {exc.error_count()} error(s) in the matrix:"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key_error = loc[-1:] == ["[key]"]  # a table key outside its allowed names
        loc = [part for part in loc if part != "[key]"]
        line = _line_of(text, loc)
        where = f"{path}:{line}" if line else str(path)
        message = _message(error)
        if key_error:
            message = f"unknown name {loc[-1]!r} ({message.replace('Input should be', 'expected')})"
        lines.append(f"  {where}: {_where(loc)}: {message}")
    return "\n".join(lines)


def _where(loc: list[str]) -> str:
    if len(loc) >= 2 and loc[0] in ("base", "image", "extra"):
        field = ".".join(loc[2:]) or "(the table)"
        return f'{loc[0]} "{loc[1]}", field "{field}"'
    if len(loc) >= 2 and loc[0] == "rule":
        return f"rule #{int(loc[1]) + 1}, field \"{'.'.join(loc[2:]) or '(the table)'}\""
    return f'field "{".".join(loc)}"'


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (misspelt? see `factory schema`)"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best-effort line of a located error: the table header of the tag, then the key inside it."""
    lines = text.splitlines()
    start = 0
    if len(loc) >= 2 and loc[0] in ("base", "image", "extra"):
        header = re.compile(rf'^\s*\[{loc[0]}\.(?:"{re.escape(loc[1])}"|{re.escape(loc[1])})\]\s*(#.*)?$')
        for number, line in enumerate(lines):
            if header.match(line):
                start = number
                break
        else:
            return None
        if len(loc) >= 3:
            key = re.compile(rf"^\s*{re.escape(loc[2])}\s*=")
            for number in range(start + 1, len(lines)):
                if lines[number].lstrip().startswith("["):
                    break
                if key.match(lines[number]):
                    return number + 1
        return start + 1
    if loc:
        key = re.compile(rf"^\s*(\[{re.escape(loc[0])}[\].]|{re.escape(loc[0])}\s*=)")
        for number, line in enumerate(lines):
            if key.match(line):
                return number + 1
    return None
