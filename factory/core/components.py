"""The component registry: every versioned thing an image carries, described once.

Each entry says what the component is called in matrix.toml, which PyPI distribution it is released as, which
image kind carries it, how its version is measured in a built image, and whether the GPU smoke test checks it.
The matrix fields, label keys, verify's measurements, the README table, `factory list`, the upstream checks and
the smoke expectations all derive from this table, so a new component is one entry here plus its Dockerfile.

    >>> COMPONENT["flashinfer"].dist
    'flashinfer-python'
    >>> names(carried_by="base")[:3]
    ('ubuntu', 'python', 'cuda')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Which image first carries a component: the PyTorch-dev base (and so every image on it), the vLLM image, or
#: an extra layer on a vLLM image (these vary per layer: each layer declares its own).
Carrier = Literal["base", "vllm", "extra"]

#: How verify measures a component's version in an image's filesystem:
#: os-release (the OS), interpreter (the Python venv's version), cuda (the toolkit's version.json or the pip
#: CUDA runtime), nccl (the libnccl torch loads), dist (the *.dist-info of `dist`), pkgconfig (a .pc file).
Measure = Literal["os-release", "interpreter", "cuda", "nccl", "dist", "pkgconfig"]


@dataclass(frozen=True, kw_only=True)
class Component:
    """One component. `name` is its matrix field and the middle of its label key `<ns>.<name>_version`."""

    name: str
    meaning: str
    carried_by: Carrier
    measure: Measure
    #: The PyPI distribution (PEP 503 name) it is released as, when it is one.
    dist: str | None = None
    #: Stamped as a label from the plan. False for what only the built image can tell (the OS release).
    planned: bool = True
    #: Fed to the smoke program as `--expect <name>=<label>` (checked inside the running image on a GPU).
    smoke_expect: bool = False
    #: Imported by the smoke program in every vLLM image (it must be importable there).
    smoke_import: bool = False
    #: `factory outdated` looks for newer releases of it.
    tracked_upstream: bool = False
    #: A column of the README table.
    listed: bool = True
    #: One of the key versions of one-line summaries (`factory list`, the plan tree).
    key: bool = False


REGISTRY: tuple[Component, ...] = (
    Component(name="ubuntu", meaning="Ubuntu release of the image", carried_by="base", measure="os-release",
              planned=False, listed=False),
    Component(name="python", meaning="Python interpreter (major.minor)", carried_by="base",
              measure="interpreter"),
    Component(name="cuda", meaning="CUDA toolkit in /usr/local/cuda", carried_by="base", measure="cuda",
              smoke_expect=True, key=True),
    Component(name="nccl", meaning="NCCL library torch is linked against", carried_by="base", measure="nccl",
              smoke_expect=True, key=True),
    Component(name="torch", meaning="PyTorch", carried_by="base", measure="dist", dist="torch",
              smoke_expect=True, key=True, tracked_upstream=True),
    Component(name="torchvision", meaning="torchvision", carried_by="base", measure="dist", dist="torchvision"),
    Component(name="torchaudio", meaning="torchaudio", carried_by="base", measure="dist", dist="torchaudio"),
    Component(name="triton", meaning="Triton (package `triton`)", carried_by="vllm", measure="dist",
              dist="triton", smoke_expect=True, key=True, tracked_upstream=True),
    Component(name="flashinfer", meaning="FlashInfer (package `flashinfer-python`)", carried_by="vllm",
              measure="dist", dist="flashinfer-python", smoke_expect=True, key=True, smoke_import=True,
              tracked_upstream=True),
    Component(name="vllm", meaning="vLLM", carried_by="vllm", measure="dist", dist="vllm", smoke_expect=True, key=True,
              smoke_import=True, tracked_upstream=True),
    Component(name="transformers", meaning="Hugging Face Transformers", carried_by="vllm", measure="dist",
              dist="transformers", smoke_expect=True, key=True, smoke_import=True, tracked_upstream=True),
    Component(name="ray", meaning="Ray, for multi-node serving", carried_by="vllm", measure="dist", dist="ray"),
    Component(name="ucx", meaning="UCX, built against the image's CUDA (extra layer)", carried_by="extra",
              measure="pkgconfig", listed=False),
    Component(name="nixl", meaning="NIXL, for KV-cache transfer between vLLM instances, built against the "
              "image's CUDA (extra layer)", carried_by="extra", measure="dist", dist="nixl", listed=False),
)

#: By name.
COMPONENT: dict[str, Component] = {c.name: c for c in REGISTRY}


def names(*, carried_by: Carrier | None = None) -> tuple[str, ...]:
    """Component names in registry order, optionally only those a kind of image first carries."""
    return tuple(c.name for c in REGISTRY if carried_by is None or c.carried_by == carried_by)


#: Matrix fields of a base and of a vLLM image, and every matrix component (extra layers' are separate).
BASE_COMPONENTS = names(carried_by="base")
IMAGE_COMPONENTS = names(carried_by="vllm")
COMPONENTS = BASE_COMPONENTS + IMAGE_COMPONENTS
EXTRA_COMPONENTS = names(carried_by="extra")

#: Components measured rather than planned (the OS is stamped as `os`).
MEASURED_COMPONENTS = tuple(c.name for c in REGISTRY if not c.planned)
#: What each component means, for the label contract and `factory schema`.
COMPONENT_MEANING = {c.name: c.meaning for c in REGISTRY}
#: PyPI distribution -> component, for the matrix components released on PyPI (not extra layers').
DIST_COMPONENTS = {c.dist: c.name for c in REGISTRY if c.dist and c.carried_by != "extra"}
#: Component -> the PyPI project it is released as.
PROJECTS = {c.name: c.dist for c in REGISTRY if c.dist and c.carried_by != "extra"}
#: Components `factory outdated` looks for newer releases of.
TRACKED_UPSTREAM = tuple(c.name for c in REGISTRY if c.tracked_upstream)
#: `--expect` keys of the smoke program, each fed by the label `<namespace>.<key>_version`.
SMOKE_EXPECT = tuple(c.name for c in REGISTRY if c.smoke_expect)
#: Modules every vLLM image must import.
SMOKE_IMPORTS = tuple(c.name for c in REGISTRY if c.smoke_import)
#: Columns of the README table.
LISTED = tuple(c.name for c in REGISTRY if c.listed)
#: The key versions of one-line summaries (`factory list`, the plan tree).
KEY_COMPONENTS = tuple(c.name for c in REGISTRY if c.key)
#: What a vLLM image installs from the index in wheel mode, by component (the base's are torch/vision/audio).
IMAGE_WHEELS = tuple(c.name for c in REGISTRY if c.carried_by == "vllm" and c.dist)
