"""The version matrix: pydantic models of `matrix.toml` and loading with located errors.

Versions keep the text the maintainer wrote (`13.1.0`, `2.29.2-1`, `5.0.0rc3`) because that text ends up in
labels and build args verbatim; `version_of` turns it into a comparable `packaging` version when a rule
needs one.
"""

from __future__ import annotations

import fnmatch
import json
import re
import stat
import string
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version
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

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python < 3.11 (pyproject installs tomli there)
    import tomli as tomllib

from factory.core.components import COMPONENTS
from factory.core.errors import InputError, read_input
from factory.core.redact import has_userinfo, redact

#: Components an extra layer can carry; verify knows how to measure each (UCX's pkg-config file, NIXL's wheel).
ExtraComponent = Literal["ucx", "nixl"]

#: Facts about a tag that rules can match on besides component versions (compared as plain text).
FACTS = ("platform", "mode", "base_mode")

BuildMode = Literal["source", "wheels"]
#: What a vLLM image is built FROM: its base's slim runtime image, or the PyTorch-dev base itself.
ShipOn = Literal["runtime", "dev"]
#: The tag a base's runtime image gets: `<base>` + this, in the base's repository.
RUNTIME_SUFFIX = "-runtime"


def runtime_name(base: str) -> str:
    return f"{base}{RUNTIME_SUFFIX}"


def ships_on(matrix: Matrix, image: Image) -> str:
    """`runtime` or `dev`: what a vLLM image is built FROM (the image's `ship_on`, else the matrix default)."""
    return image.ship_on or matrix.defaults.ship_on

_PACKAGE_REVISION = re.compile(r"-\d+$")


def version_of(component: str, text: str) -> Version:
    """A comparable version for a component's text; NCCL's Debian-style `-1` package revision is dropped."""
    if component == "nccl":
        text = _PACKAGE_REVISION.sub("", text)
    return Version(text)


#: A PEP 440 version as written: letters, digits and . ! + _ - only (no whitespace, no newline: the text is
#: pasted into build args, git refs and labels verbatim).
_VERSION_TEXT = re.compile(r"[0-9A-Za-z][0-9A-Za-z.!+_-]{0,63}")


def _check_version(text: str) -> str:
    if not _VERSION_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not a version: letters, digits and . ! + _ - only, no spaces "
                         "(PEP 440, e.g. 2.10.0 or 5.0.0rc3)")
    try:
        Version(_PACKAGE_REVISION.sub("", text))
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a version (PEP 440, e.g. 2.10.0 or 5.0.0rc3)") from None
    return text


VersionText = Annotated[str, AfterValidator(_check_version)]

#: Names of bases, vLLM tags and extra layers become Docker tags, file names under labels/, bake targets and
#: CI job values: Docker's tag grammar, nothing else (no `$(...)`, no `/`, no `..`, no spaces). Unwaivable.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
NAME_RULE = "a name is Docker's tag grammar: 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def check_name(name: str) -> str:
    """`name` when it is a valid image name (Docker's tag grammar), else ValueError."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid name: {NAME_RULE}")
    return name


def _check_ref(text: str) -> str:
    """A git tag, branch or commit: never empty, never an option (`-...`), nothing git or a shell would read
    as something else (`git check-ref-format`'s rules)."""
    if not text:
        raise ValueError("a git ref cannot be empty")
    if text.startswith("-"):
        raise ValueError(f"{text!r} starts with '-': git would read it as an option")
    if (len(text) > 255 or re.search(r"[\x00-\x20\x7f~^:?*\[\\]", text) or ".." in text or "@{" in text
            or "//" in text or text.startswith("/") or text.endswith(("/", ".", ".lock")) or text == "@"):
        raise ValueError(f"{text!r} is not a git ref (a tag, branch or commit: no spaces, no ~^:?*[\\, no '..')")
    return text


GitRef = Annotated[str, AfterValidator(_check_ref)]

CREDENTIALS_HINT = ("credentials never go into a URL here: a private index or repository gets them from "
                    "~/.netrc or a BuildKit secret")


def _shown(url: str) -> str:
    """A URL for a message: redacted, and not shown at all when it still has an `@` (a malformed user-info)."""
    clean = redact(url)
    return "(value not shown: it may carry a credential)" if "@" in clean.replace("***@", "") else repr(clean)


def check_url(text: str, *, schemes: tuple[str, ...] = ("https", "http"), what: str = "an http(s) URL",
              userinfo: bool = False) -> str:
    """A URL without whitespace or control characters, with a host, of one of `schemes`, and without user-info
    unless `userinfo` (a flag's URL, whose credentials the HTTP client splits off; never a matrix field)."""
    if has_userinfo(text) and not userinfo:
        raise ValueError(f"{_shown(text)}: user-info (user:password@) in a URL is refused; {CREDENTIALS_HINT}")
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{_shown(text)} is not {what} (empty, or has whitespace or control characters)")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port or an unclosed IPv6 bracket
    except ValueError:
        raise ValueError(f"{_shown(text)} is not {what} (it cannot be parsed)") from None
    if "@" in parts.netloc and not userinfo:
        raise ValueError(f"{_shown(text)}: user-info (user:password@) in a URL is refused; {CREDENTIALS_HINT}")
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{_shown(text)} is not {what}")
    return text


def _index_url(text: str) -> str:
    return check_url(text, what="an http(s) URL of a package index")


def _optional_index_url(text: str) -> str:
    return text if text == "" else _index_url(text)


def _web_url(text: str) -> str:
    return check_url(text, what="an http(s) URL")


def _git_url(text: str) -> str:
    check_url(text, schemes=("https", "http", "git", "ssh"), what="a git URL (https://, http://, git://, ssh://)")
    if any(c in text for c in "@?#"):
        raise ValueError(f"{_shown(text)}: a git URL here has no '@', '?' or '#' (pip reads `git+URL@ref`)")
    return text


IndexURL = Annotated[str, AfterValidator(_index_url)]
WebURL = Annotated[str, AfterValidator(_web_url)]
GitURL = Annotated[str, AfterValidator(_git_url)]

_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"(?::[0-9]{1,5})?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def _check_repository(text: str) -> str:
    """A Docker repository: `[registry-host[:port]/]path`, path components lower-case (Docker's grammar)."""
    first, _, rest = text.partition("/")
    has_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_host else text
    ok = (len(text) <= 255 and (not has_host or _DOMAIN.fullmatch(first))
          and all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/")))
    if not ok:
        raise ValueError(f"{text!r} is not a Docker repository ([host[:port]/]name/name, the name lower-case: "
                         "a-z 0-9 and single . _ __ - between them)")
    return text


Repository = Annotated[str, AfterValidator(_check_repository)]

_NAMESPACE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)+")


def _check_namespace(text: str) -> str:
    if not _NAMESPACE.fullmatch(text) or len(text) > 128:
        raise ValueError(f"{text!r} is not a reverse-DNS label namespace like dev.scitrera "
                         "(lower-case a-z 0-9 and -, at least two parts joined by .)")
    return text


LabelNamespace = Annotated[str, AfterValidator(_check_namespace)]


def _template(text: str, allowed: tuple[str, ...], what: str) -> str:
    """`text` when its only `{...}` fields are plain names from `allowed` (str.format would fail otherwise)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid {what} template ({exc}; write a literal brace as {{{{ or }}}})") \
            from None
    for name, spec, conv in fields:
        if name not in allowed or spec or conv:
            fields_text = " and ".join("{" + a + "}" for a in allowed)
            raise ValueError(f"{text!r}: only {fields_text} can be filled in, not {{{name}}}")
    return text


_REFERENCE = re.compile(r"(?:[A-Za-z0-9.-]+(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                        r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")


def _check_cuda_image(text: str) -> str:
    _template(text, ("cuda", "ubuntu"), "cuda_image")
    sample = text.format(cuda="13.1.0", ubuntu="24.04")
    if not _REFERENCE.fullmatch(sample):
        raise ValueError(f"{text!r} is not an image reference like nvidia/cuda:{{cuda}}-devel-ubuntu{{ubuntu}} "
                         "(no digest: set the base's cuda_image_digest)")
    return text


CudaImage = Annotated[str, AfterValidator(_check_cuda_image)]


def _check_runtime_cuda_image(text: str) -> str:
    _template(text, ("cuda", "ubuntu", "flavor"), "runtime_cuda_image")
    if not _REFERENCE.fullmatch(text.format(cuda="13.1.0", ubuntu="24.04", flavor="base")):
        raise ValueError(f"{text!r} is not an image reference like nvidia/cuda:{{cuda}}-{{flavor}}-ubuntu{{ubuntu}} "
                         "(no digest: set the base's runtime_cuda_image_digest)")
    return text


RuntimeCudaImage = Annotated[str, AfterValidator(_check_runtime_cuda_image)]

#: The NVIDIA CUDA image flavor a runtime image is built FROM, by the base's build mode.
RUNTIME_CUDA_FLAVOR = {"wheels": "base", "source": "runtime"}


def _check_relative_path(text: str) -> str:
    """A path relative to the matrix's folder that cannot leave it: not absolute, no `..`, `/` separators."""
    parts = text.split("/")
    if (not text or text.startswith("/") or "\\" in text or re.match(r"^[A-Za-z]:", text) or ".." in parts
            or any(not c.isprintable() for c in text)):
        raise ValueError(f"{text!r} is not a path inside the matrix's folder (relative, '/'-separated, no '..')")
    return text


RelativePath = Annotated[str, AfterValidator(_check_relative_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    torch_index_url: Annotated[str, AfterValidator(_index_url)] | None = Field(
        None, description="extra index for CUDA torch wheels, if any")
    flashinfer_index_url: Annotated[str, AfterValidator(_optional_index_url)] = Field(
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
            _template(path, ("python", "cuda_major"), "cuda_linked path")
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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _strict_schema(cls, value: object) -> object:
        if isinstance(value, bool):  # `schema = true` is not 1
            raise ValueError("Input should be 1")
        return value


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

#: Deeper nesting than this is no matrix (Python's TOML reader recurses: 500 nested arrays overflow it).
MAX_DEPTH = 16
#: Errors listed in one message; the count says how many there are in all.
MAX_REPORTED = 100

#: Characters no value of the matrix may hold: they would start a new line (or hide text) in build args,
#: labels, `plan` output and logs.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class _Problem:
    loc: tuple[str, ...]
    message: str


def parse(text: str, path: Path) -> Matrix:
    """Validate matrix text; every problem becomes an InputError naming file, table, tag and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        where = f"{path}:{found[1]}:{found[2]}" if found else str(path)
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise InputError(f"{where}: invalid TOML: {message}") from None
    except RecursionError:
        raise InputError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    problems = list(dict.fromkeys(_raw_problems(raw)))
    seen = {problem.loc for problem in problems}
    matrix = None
    try:
        matrix = Matrix.model_validate(raw)
    except ValidationError as exc:
        problems += [problem for problem in _pydantic_problems(exc) if problem.loc not in seen]
    except RecursionError:  # pragma: no cover - the depth check above reports it first
        problems.append(_Problem((), f"values nested deeper than {MAX_DEPTH} levels"))
    if matrix is not None and not problems:
        problems += _composed_names(matrix)
    if problems:
        raise InputError(_describe(problems, text, path))
    return matrix


def load(path: str | Path) -> LoadedMatrix:
    path = Path(path)
    text = read_input(path, "the matrix", "no such matrix file (pass --matrix PATH)")
    loaded = LoadedMatrix(matrix=parse(text, path), path=path.resolve())
    problems = [_Problem(loc, problem) for loc, relative in matrix_files(loaded.matrix)
                if (problem := confined_file(loaded.root, relative)) is not None]
    if problems:
        raise InputError(_describe(problems, text, path))
    return loaded


def matrix_files(matrix: Matrix) -> list[tuple[tuple[str, ...], str]]:
    """Every path the matrix names, relative to its folder, with where it is named."""
    files = matrix.defaults.dockerfiles
    out = [(("defaults", "dockerfiles", key), getattr(files, key)) for key in Dockerfiles.model_fields]
    out += [(("extra", name, "dockerfile"), extra.dockerfile) for name, extra in sorted(matrix.extra.items())]
    return out


def confined_file(root: Path, relative: str) -> str | None:
    """Why `relative` is not a regular file inside `root` (symlinks followed), or None when it is one or
    does not exist (a missing file is reported when something needs it)."""
    target = root / relative
    if not target.is_symlink() and not target.exists():
        return None
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        return f"{relative!r} cannot be resolved (a symlink loop?)"
    if not resolved.is_relative_to(root.resolve()):
        return f"{relative!r} resolves outside the matrix's folder (to {str(resolved)!r}): refused"
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{relative!r} cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        return f"{relative!r} is {kind}, not a regular file"
    return None


def _raw_problems(value: object, loc: tuple[str, ...] = ()):
    """What no field of the matrix may hold, whatever its type: credentials in a URL, control characters,
    absurd nesting. Checked on the raw TOML so that every string is covered, named or not."""
    if len(loc) > MAX_DEPTH:
        yield _Problem(loc[:2], f"values nested deeper than {MAX_DEPTH} levels")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _raw_problems(item, (*loc, str(key)))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from _raw_problems(item, (*loc, str(number)))
    elif isinstance(value, str):
        if has_userinfo(value):
            yield _Problem(loc, f"{_shown(value)}: user-info (user:password@) in a URL is refused; "
                                f"{CREDENTIALS_HINT}")
        elif _UNPRINTABLE.search(value):
            yield _Problem(loc, f"{value!r} has a control character (newline, tab, ...): a value is one line of "
                                "printable text")


def _pydantic_problems(exc: ValidationError):
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
        yield _Problem(loc, message)


def _composed_names(matrix: Matrix) -> list[_Problem]:
    """Names the factory makes from the matrix's (`<name>-r<revision>`, `<tag>-<suffix>`) obey the grammar too."""
    out = []
    for kind, table in (("base", matrix.base), ("image", matrix.image)):
        for name, item in table.items():
            if item.revision and not NAME.fullmatch(f"{name}-r{item.revision}"):
                out.append(_Problem((kind, name, "revision"),
                                    f"the revision's tag {name}-r{item.revision} is longer than 128 characters"))
    for name in matrix.base:
        made = runtime_name(name)
        if made in matrix.base or not NAME.fullmatch(made):
            why = "is also a base's name" if made in matrix.base else f"is not valid: {NAME_RULE}"
            out.append(_Problem(("base", name, "(its name)"), f"its runtime image's tag {made!r} {why}"))
    for image_name, (layer, _) in extra_images(matrix).items():
        revision = matrix.extra[layer].revision
        for made in (image_name, f"{image_name}-r{revision}" if revision else image_name):
            if not NAME.fullmatch(made):
                out.append(_Problem(("extra", layer, "suffix"), f"the layer's image name {made!r} is not valid: "
                                                                f"{NAME_RULE}"))
                break
    return out


def _describe(problems: list[_Problem], text: str, path: Path) -> str:
    index = _line_index(text)  # once: locating each error is a lookup, so 6,000 errors cost what 1 does
    located = sorted(((_line_of(index, problem.loc), problem) for problem in problems), key=lambda r: r[0] or 0)
    lines = [f"{path}: {len(problems)} error(s) in the matrix:"]
    for line, problem in located[:MAX_REPORTED]:
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"  {where}: {_where(list(problem.loc))}: {problem.message}")
    if len(located) > MAX_REPORTED:
        lines.append(f"  ... and {len(located) - MAX_REPORTED} more")
    return redact("\n".join(lines))


def _shown_part(part: str) -> str:
    return part if part.isprintable() else repr(part)


def _where(loc: list[str]) -> str:
    if not loc:
        return "the matrix"
    name = f'"{loc[1]}"' if len(loc) >= 2 and NAME.fullmatch(loc[1]) else repr(loc[1]) if len(loc) >= 2 else ""
    loc = [_shown_part(part) for part in loc]
    if len(loc) >= 2 and loc[0] in ("base", "image", "extra"):
        field = ".".join(loc[2:]) or "(the table)"
        return f'{loc[0]} {name}, field "{field}"'
    if len(loc) >= 2 and loc[0] == "rule" and loc[1].isdigit():
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


_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*""")
_HEADER = re.compile(r"^\s*(\[\[?)(.*?)(\]\]?)\s*(?:#.*)?$")
_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_ASSIGN = re.compile(rf"^\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*=")


def _key_parts(text: str) -> tuple[str, ...] | None:
    """The parts of a dotted TOML key (`image."0.17.0-t5".sources`), or None when it is not one."""
    parts: list[str] = []
    position = 0
    while True:
        found = _KEY_PART.match(text, position)
        if not found:
            return None
        if found[1] is not None:
            try:
                parts.append(json.loads(f'"{found[1]}"'))
            except ValueError:
                parts.append(found[1])
        else:
            parts.append(found[2] if found[2] is not None else found[3])
        position = found.end()
        if position == len(text):
            return tuple(parts)
        if text[position] != ".":
            return None
        position += 1


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Line of every table header and key of the TOML text, by its full path, in one pass."""
    index: dict[tuple[str, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and len(header[1]) == len(header[3]):
            parts = _key_parts(header[2])
            if parts is None:
                continue
            if header[1] == "[[":
                arrays[parts] = arrays.get(parts, -1) + 1
                parts = (*parts, str(arrays[parts]))
            table = parts
            for end in range(1, len(table) + 1):
                index.setdefault(table[:end], number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            parts = _key_parts(assign[1])
            if parts:
                for end in range(1, len(parts) + 1):
                    index.setdefault((*table, *parts[:end]), number)
    return index


def _line_of(index: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    """Line of a located error: its key, else the closest enclosing table or key that has a line."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in index:
            return index[loc[:end]]
    return None
