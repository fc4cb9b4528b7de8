"""The pydantic schema of `matrix.toml`: validation at the boundary, and the source of `factory schema`.

Only loading touches these models: `validate` checks the raw TOML and hands back the frozen dataclasses of
factory/core/matrix.py that the rest of the factory works on. The models are built lazily (`defer_build`):
a matrix served from the cache of validated matrices (factory/core/matrix_cache.py) never imports this module.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from factory.core import matrix as M
from factory.core.components import COMPONENTS
from factory.core.errors import InputError
from factory.core.grammar import (
    NAME_PATTERN,
    NAME_RULE,
    check_cuda_image,
    check_git_url,
    check_index_url,
    check_namespace,
    check_optional_index_url,
    check_ref,
    check_relative_path,
    check_repository,
    check_runtime_cuda_image,
    check_template,
    check_version,
    check_web_url,
)
from factory.core.matrix import FACTS, BuildMode, ExtraComponent, ShipOn
from factory.core.matrix_errors import MAX_DEPTH, Problem, composed_names, describe, raw_problems

VersionText = Annotated[str, AfterValidator(check_version)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
GitRef = Annotated[str, AfterValidator(check_ref)]
IndexURL = Annotated[str, AfterValidator(check_index_url)]
WebURL = Annotated[str, AfterValidator(check_web_url)]
GitURL = Annotated[str, AfterValidator(check_git_url)]
Repository = Annotated[str, AfterValidator(check_repository)]
LabelNamespace = Annotated[str, AfterValidator(check_namespace)]
CudaImage = Annotated[str, AfterValidator(check_cuda_image)]
RuntimeCudaImage = Annotated[str, AfterValidator(check_runtime_cuda_image)]
RelativePath = Annotated[str, AfterValidator(check_relative_path)]

class _Model(BaseModel):
    # defer_build: the validators are built when the first matrix is validated, not when this module is
    # imported (an import for `factory schema` or a rule check pays only for what it uses)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Source(_Model):
    """Where a component is built from when it is not upstream's release tag (a fork, a branch, a fix)."""

    repo: GitURL = Field(description="git URL of the source repository (https://, no credentials in it)")
    ref: GitRef = Field(description="tag, branch or commit to build")
    note: str | None = Field(None, description="why this source is used")


class Waiver(_Model):
    """A tag's written permission to break one rule; the reason is shown by every `factory check`."""

    rule: str
    reason: str = Field(min_length=10, description="why the deviation is deliberate and safe")


class Repositories(_Model):
    base: Repository = "scitrera/dgx-spark-pytorch-dev"
    vllm: Repository = "scitrera/dgx-spark-vllm"


class Dockerfiles(_Model):
    """Dockerfile per image kind, relative to the matrix file; the build context is each file's folder."""

    base: RelativePath = "dockerfiles/pytorch-dev.Dockerfile"
    vllm: RelativePath = "dockerfiles/vllm.Dockerfile"
    base_wheels: RelativePath = "dockerfiles/pytorch-dev-wheels.Dockerfile"
    vllm_wheels: RelativePath = "dockerfiles/vllm-wheels.Dockerfile"
    runtime: RelativePath = "dockerfiles/pytorch-runtime.Dockerfile"


class BuildKnobs(_Model):
    """Compiler settings for GB10 (sm_121); passed to every source build as build args."""

    torch_cuda_arch_list: str = "12.1a"
    nccl_gencode: str = "-gencode=arch=compute_121,code=sm_121"
    max_jobs: StrictInt = Field(8, ge=1, le=256, description="parallel compile jobs; unbounded jobs OOM")
    nvcc_threads: StrictInt = Field(2, ge=1, le=32)
    cuda_arch: str = Field("sm_121", pattern=r"^sm_[0-9]+[af]?$", description="the GPU architecture the images are for")


class Defaults(_Model):
    platform: str = "linux/arm64"
    label_namespace: LabelNamespace = "dev.scitrera"
    ubuntu: VersionText = "24.04"
    python: VersionText = "3.12"
    ray: VersionText = "2.53.0"
    cuda_image: CudaImage = Field(
        "nvidia/cuda:{cuda}-devel-ubuntu{ubuntu}",
        description="CUDA devel image for a base; {cuda} and {ubuntu} are filled in",
    )
    runtime_cuda_image: RuntimeCudaImage = Field(
        "nvidia/cuda:{cuda}-{flavor}-ubuntu{ubuntu}",
        description="CUDA image a base's runtime image (`<base>-runtime`) is built FROM; {cuda}, {ubuntu} and "
                    "{flavor} are filled in. {flavor} is `base` for a wheel-mode base (libcudart and the "
                    "driver's forward compatibility: torch's pip wheels carry every other CUDA library it loads, "
                    "so NVIDIA's `runtime` flavor would only add unused copies) and `runtime` for a source-mode "
                    "base (its compiled torch links the toolkit's cuBLAS, cuFFT, ... in /usr/local/cuda)",
    )
    ship_on: ShipOn = Field(
        "runtime",
        description="what vLLM images are built FROM: `runtime`, the base's slim runtime image (no compilers, "
                    "what users pull), or `dev`, the PyTorch-dev base itself (nvcc and headers, for users who "
                    "compile extensions inside the image)",
    )
    source_url: WebURL = Field(
        "https://github.com/scitrera/spark-image-factory",
        description="org.opencontainers.image.source of every image",
    )
    vendor: str = "scitrera"
    index_url: IndexURL = Field("https://pypi.org/simple", description="package index for wheel installs")
    torch_index_url: IndexURL | None = Field(
        None, description="extra index for CUDA torch wheels, if any")
    flashinfer_index_url: Annotated[str, AfterValidator(check_optional_index_url)] = Field(
        "https://flashinfer.ai/whl/cu130",
        description="FlashInfer's own index, for flashinfer-jit-cache (its precompiled kernels, on no other index); "
                    "empty: no jit-cache, FlashInfer compiles its kernels at first use",
    )
    lock_dir: RelativePath = Field("locks", description="folder of the lock files (`factory lock`), relative to "
                                                          "the matrix file")
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
    runtime_cuda_image_digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$",
                                                  description="digest of the runtime image's CUDA image")
    revision: StrictInt = Field(0, ge=0)
    sources: dict[Literal["nccl", "torch", "torchvision", "torchaudio"], Source] = {}


class Image(_Model):
    """A vLLM image tag `<vllm>-t<transformers major>` on a base."""

    base: Name
    vllm: VersionText
    triton: VersionText
    flashinfer: VersionText
    transformers: VersionText
    ray: VersionText | None = None
    mode: BuildMode = "source"
    ship_on: ShipOn | None = Field(None, description="`runtime` or `dev` (default: defaults.ship_on)")
    vllm_released: date | None = Field(None, description="when upstream released this vLLM version")
    revision: StrictInt = Field(0, ge=0, description="bump to republish a tag whose content changed")
    default: StrictBool = Field(False, description="the tag `latest` points at")
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
    dockerfile: RelativePath = Field(description="relative to the matrix file; the build context is its folder")
    mode: BuildMode = Field("source", description="source: compile the components in the layer (the Dockerfile's "
                                                  "last stage); wheels: install their wheels from the index (its "
                                                  "stage `wheels`)")
    on: tuple[str, ...] = Field(min_length=1, description="the vLLM tags (or shell globs) it is built on")
    versions: dict[ExtraComponent, VersionText] = Field(min_length=1)
    sources: dict[ExtraComponent, Source] = {}
    cuda_linked: tuple[str, ...] = Field((), description="image directories whose shared objects must link "
                                                         "against the image's CUDA major; {python} and "
                                                         "{cuda_major} are filled in from the image's base")
    revision: StrictInt = Field(0, ge=0)

    @field_validator("cuda_linked")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/") or ":" in path:
                raise ValueError(f"{path!r} is not an absolute image path without ':'")
            check_template(path, ("python", "cuda_major"), "cuda_linked path")
        return value


class Rule(_Model):
    """A compatibility rule: for tags matching `when`, each `require` must hold."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
    severity: Literal["error", "warning"] = "error"
    when: dict[str, str] = {}
    require: dict[str, str] = {}
    forbid_dists: tuple[str, ...] = Field((), description="distributions (names or shell globs) no locked image "
                                                          "matching `when` may hold (`factory lock`)")
    require_dists: dict[str, str] = Field({}, description="distribution -> PEP 440 specifier every locked image "
                                                          "matching `when` must hold (`factory lock`)")
    reason: str
    source: str = Field(description="URL of the upstream fact behind the rule")

    @model_validator(mode="after")
    def _requires_something(self) -> Rule:
        if not (self.require or self.forbid_dists or self.require_dists):
            raise ValueError("a rule needs `require`, `forbid_dists` or `require_dists`")
        return self

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

    @field_validator("require_dists")
    @classmethod
    def _dist_specifiers(cls, value: dict[str, str]) -> dict[str, str]:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        for name, spec in value.items():
            try:
                SpecifierSet(spec)
            except InvalidSpecifier:
                raise ValueError(f"{name} = {spec!r} is not a PEP 440 specifier like '>=2.10,<2.11'") from None
        return value


class Matrix(_Model):
    """Everything the factory ships, as declared in matrix.toml."""

    schema_version: Literal[1] = Field(1, alias="schema")
    defaults: Defaults = Defaults()
    base: dict[Name, Base]
    image: dict[Name, Image]
    extra: dict[Name, Extra] = {}
    rule: tuple[Rule, ...] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _strict_schema(cls, value: object) -> object:
        if isinstance(value, bool):  # `schema = true` is not 1
            raise ValueError("Input should be 1")
        return value



_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def validate_text(text: str, path: Path) -> M.Matrix:
    """Validate matrix text; every problem becomes one InputError naming file, line, table, tag and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        where = f"{path}:{found[1]}:{found[2]}" if found else str(path)
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise InputError(f"{where}: invalid TOML: {message}") from None
    except RecursionError:
        raise InputError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    problems = list(dict.fromkeys(raw_problems(raw)))
    seen = {problem.loc for problem in problems}
    model = None
    try:
        model = Matrix.model_validate(raw)
    except ValidationError as exc:
        problems += [problem for problem in _pydantic_problems(exc) if problem.loc not in seen]
    except RecursionError:  # pragma: no cover - the depth check above reports it first
        problems.append(Problem((), f"values nested deeper than {MAX_DEPTH} levels"))
    matrix = None if model is None else M.from_dict(M.Matrix, model.model_dump())
    if matrix is not None and not problems:
        problems += composed_names(matrix)
    if problems or matrix is None:
        raise InputError(describe(problems, text, path))
    return matrix


def json_schema() -> dict[str, Any]:
    """The JSON Schema of matrix.toml (`factory schema`), keys as written in the file."""
    return Matrix.model_json_schema(by_alias=True)


def _pydantic_problems(exc: ValidationError) -> Iterator[Problem]:
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key_error = loc[-1:] == ("[key]",)  # a table key outside its allowed names
        loc = tuple(part for part in loc if part != "[key]")
        message = _message(error)
        bad_name = (error["type"] == "string_pattern_mismatch"
                    and (error.get("ctx") or {}).get("pattern") == NAME_PATTERN)
        if bad_name:
            name = loc[-1] if key_error else error.get("input")
            message = f"{name!r} is not a valid name: {NAME_RULE}"
            if key_error and len(loc) == 2:
                loc = (*loc, "(its name)")
        elif key_error:
            message = f"unknown name {loc[-1]!r} ({message.replace('Input should be', 'expected')})"
        yield Problem(loc, message)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (misspelt? see `factory schema`)"
    if kind == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ")
