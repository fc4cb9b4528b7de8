"""The version matrix as the core sees it: frozen dataclasses, and loading `matrix.toml` into them.

Versions keep the text the maintainer wrote (`13.1.0`, `2.29.2-1`, `5.0.0rc3`) because that text ends up in
labels and build args verbatim; `version_of` turns it into a comparable `packaging` version when a rule
needs one.

pydantic validates at the boundary only (factory/core/schema.py, the source of `factory schema`): `load`
validates the file once, hands back these frozen kw_only dataclasses, and keeps the result in the cache of
validated matrices (factory/core/matrix_cache.py), so an unchanged matrix loads without importing pydantic.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import stat
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from factory.core.errors import InputError, read_input

if TYPE_CHECKING:
    from packaging.version import Version

__all__ = [
    "FACTS", "RUNTIME_CUDA_FLAVOR", "RUNTIME_SUFFIX", "Base", "BuildKnobs", "BuildMode", "Defaults", "Dockerfiles",
    "Extra", "ExtraComponent", "Image", "LoadedMatrix", "Matrix", "Repositories", "Rule", "ShipOn", "Source",
    "Waiver", "as_dict", "confined_file", "extra_images", "from_dict", "load", "matrix_files", "parse",
    "runtime_name", "ships_on", "version_of",
]

#: Components an extra layer can carry; verify knows how to measure each (UCX's pkg-config file, NIXL's wheel).
ExtraComponent = Literal["ucx", "nixl"]

#: Facts about a tag that rules can match on besides component versions (compared as plain text).
FACTS = ("platform", "mode", "base_mode")

BuildMode = Literal["source", "wheels"]
#: What a vLLM image is built FROM: its base's slim runtime image, or the PyTorch-dev base itself.
ShipOn = Literal["runtime", "dev"]
#: The tag a base's runtime image gets: `<base>` + this, in the base's repository.
RUNTIME_SUFFIX = "-runtime"
#: The NVIDIA CUDA image flavor a runtime image is built FROM, by the base's build mode.
RUNTIME_CUDA_FLAVOR = {"wheels": "base", "source": "runtime"}


def runtime_name(base: str) -> str:
    return f"{base}{RUNTIME_SUFFIX}"


#: NCCL's Debian-style package revision (`2.29.2-1`), which is no part of a PEP 440 version.
PACKAGE_REVISION = re.compile(r"-\d+$")


@functools.lru_cache(maxsize=4096)
def version_of(component: str, text: str) -> Version:
    """A comparable version for a component's text; NCCL's Debian-style `-1` package revision is dropped."""
    from packaging.version import Version

    if component == "nccl":
        text = PACKAGE_REVISION.sub("", text)
    return Version(text)


def ships_on(matrix: Matrix, image: Image) -> str:
    """`runtime` or `dev`: what a vLLM image is built FROM (the image's `ship_on`, else the matrix default)."""
    from factory.core.cascade import setting

    return setting(matrix, "ship_on", image=image)


# The shapes below mirror the pydantic models of factory/core/schema.py field for field (a test holds them
# together); their values are always produced by validation, so only `Rule`, which upstream facts construct,
# has defaults.


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a component is built from when it is not upstream's release tag (a fork, a branch, a fix)."""

    repo: str
    ref: str
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class Waiver:
    """A tag's written permission to break one rule; the reason is shown by every `factory check`."""

    rule: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Repositories:
    base: str
    vllm: str


@dataclass(frozen=True, kw_only=True)
class Dockerfiles:
    """Dockerfile per image kind, relative to the matrix file; the build context is each file's folder."""

    base: str
    vllm: str
    base_wheels: str
    vllm_wheels: str
    runtime: str


@dataclass(frozen=True, kw_only=True)
class BuildKnobs:
    """Compiler settings for GB10 (sm_121); passed to every source build as build args."""

    torch_cuda_arch_list: str
    nccl_gencode: str
    max_jobs: int
    nvcc_threads: int
    cuda_arch: str


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """`[defaults]`: the last step of the cascade (factory/core/cascade.py) and the matrix-wide settings."""

    platform: str
    label_namespace: str
    ubuntu: str
    python: str
    ray: str
    cuda_image: str
    runtime_cuda_image: str
    ship_on: ShipOn
    source_url: str
    vendor: str
    index_url: str
    torch_index_url: str | None
    flashinfer_index_url: str
    lock_dir: str
    repositories: Repositories
    dockerfiles: Dockerfiles
    build: BuildKnobs


@dataclass(frozen=True, kw_only=True)
class Base:
    """A PyTorch-dev base image: CUDA, NCCL and torch built for the target GPU."""

    cuda: str
    nccl: str
    torch: str
    torchvision: str
    torchaudio: str
    ubuntu: str | None
    python: str | None
    mode: BuildMode
    cudnn: str
    cuda_image_digest: str | None
    runtime_cuda_image_digest: str | None
    revision: int
    sources: dict[str, Source]


@dataclass(frozen=True, kw_only=True)
class Image:
    """A vLLM image tag `<vllm>-t<transformers major>` on a base."""

    base: str
    vllm: str
    triton: str
    flashinfer: str
    transformers: str
    ray: str | None
    mode: BuildMode
    ship_on: ShipOn | None
    vllm_released: date | None
    revision: int
    default: bool
    sources: dict[str, Source]
    allow: tuple[Waiver, ...]


@dataclass(frozen=True, kw_only=True)
class Extra:
    """An optional layer on vLLM tags, published as `<tag>-<suffix>` (see the schema for every field)."""

    suffix: str
    description: str
    dockerfile: str
    mode: BuildMode
    on: tuple[str, ...]
    versions: dict[str, str]
    sources: dict[str, Source]
    cuda_linked: tuple[str, ...]
    revision: int


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A compatibility rule: for tags matching `when`, each `require` must hold."""

    id: str
    severity: Literal["error", "warning"] = "error"
    when: dict[str, str] = field(default_factory=dict)
    require: dict[str, str] = field(default_factory=dict)
    forbid_dists: tuple[str, ...] = ()
    require_dists: dict[str, str] = field(default_factory=dict)
    reason: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Matrix:
    """Everything the factory ships, as declared in matrix.toml."""

    schema_version: int
    defaults: Defaults
    base: dict[str, Base]
    image: dict[str, Image]
    extra: dict[str, Extra]
    rule: tuple[Rule, ...]


_T = TypeVar("_T")

#: Fields holding other dataclasses: one, a table of them by name, or a list of them.
_NESTED: dict[type, dict[str, tuple[Literal["one", "table", "list"], type]]] = {
    Matrix: {"defaults": ("one", Defaults), "base": ("table", Base), "image": ("table", Image),
             "extra": ("table", Extra), "rule": ("list", Rule)},
    Defaults: {"repositories": ("one", Repositories), "dockerfiles": ("one", Dockerfiles),
               "build": ("one", BuildKnobs)},
    Base: {"sources": ("table", Source)},
    Image: {"sources": ("table", Source), "allow": ("list", Waiver)},
    Extra: {"sources": ("table", Source)},
}
#: Date fields (ISO text in JSON).
_DATES = {(Image, "vllm_released")}


def from_dict(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """The dataclass `cls` from its plain form (validated data, or `as_dict`'s JSON read back). Every field
    must be present and no other: a KeyError or TypeError says the data is not of this shape."""
    nested = _NESTED.get(cls, {})
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if set(data) != set(names):
        raise TypeError(f"{cls.__name__}: fields {sorted(set(data) ^ set(names))} differ")
    values: dict[str, Any] = {}
    for name in names:
        value = data[name]
        shape = nested.get(name)
        if shape is not None:
            kind, inner = shape
            if kind == "one":
                value = from_dict(inner, value)
            elif kind == "table":
                value = {key: from_dict(inner, item) for key, item in value.items()}
            else:
                value = tuple(from_dict(inner, item) for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        elif (cls, name) in _DATES and isinstance(value, str):
            value = date.fromisoformat(value)
        values[name] = value
    return cls(**values)


def as_dict(obj: object, *, exclude_defaults: bool = False) -> Any:
    """The plain form of a matrix dataclass (nested dicts, tuples, dates), like pydantic's `model_dump`;
    `exclude_defaults` leaves out fields equal to their default (for writing a rule back as TOML)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if exclude_defaults and _is_default(f.default, f.default_factory, value):
                continue
            out[f.name] = as_dict(value, exclude_defaults=exclude_defaults)
        return out
    if isinstance(obj, dict):
        return {key: as_dict(value, exclude_defaults=exclude_defaults) for key, value in obj.items()}
    if isinstance(obj, tuple):
        return tuple(as_dict(value, exclude_defaults=exclude_defaults) for value in obj)
    return obj


def _is_default(default: object, factory: object, value: object) -> bool:
    if default is not MISSING:
        return bool(default == value)
    if factory is not MISSING and callable(factory):
        return bool(factory() == value)
    return False


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


def parse(text: str, path: Path) -> Matrix:
    """Validate matrix text (no cache); every problem becomes an InputError naming file, table, tag and field."""
    from factory.core.schema import validate_text

    return validate_text(text, path)


def load(path: str | Path) -> LoadedMatrix:
    """The matrix file at `path`, validated: from the cache of validated matrices when its bytes (and the
    factory's schema) are unchanged, else by the schema, which then stores it there."""
    from factory.core import matrix_cache

    path = Path(path)
    text = read_input(path, "the matrix", "no such matrix file (pass --matrix PATH)")
    matrix = matrix_cache.get(text)
    if matrix is None:
        matrix = parse(text, path)
        matrix_cache.put(text, matrix)
    loaded = LoadedMatrix(matrix=matrix, path=path.resolve())
    problems = [(loc, problem) for loc, relative in matrix_files(loaded.matrix)
                if (problem := confined_file(loaded.root, relative)) is not None]
    if problems:
        from factory.core.matrix_errors import Problem, describe

        raise InputError(describe([Problem(loc, message) for loc, message in problems], text, path))
    return loaded


def matrix_files(matrix: Matrix) -> list[tuple[tuple[str, ...], str]]:
    """Every path the matrix names, relative to its folder, with where it is named."""
    files = matrix.defaults.dockerfiles
    out: list[tuple[tuple[str, ...], str]] = [
        (("defaults", "dockerfiles", f.name), str(getattr(files, f.name))) for f in fields(Dockerfiles)]
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
