"""What each image's Dockerfile installs into its Python environment, as the request `factory lock` resolves.

One `LockSpec` per image of the plan: the requirements of each install step (its layer), the constraints it
inherits (its parent's lock, the CUDA release of the image), the overrides the Dockerfile applies, what the
image builds from source instead of installing (not locked), and the platform to resolve for. Its
`input_digest` covers every local input of the lock (matrix values, the Dockerfile, the shared requirement
transform, the parent's and the `-t4`/`-t5` siblings' specs), so `factory lock --check` can tell a stale lock
without the network. Pure: no network, no subprocess.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from factory.core.cascade import setting
from factory.core.matrix import LoadedMatrix, Matrix, ships_on
from factory.core.plan import ImageSpec, Plan

#: The uv the bases install (and that every later install step runs); locked like everything else.
UV_VERSION = "0.9.9"
#: The shared transform of vLLM's requirement files (Dockerfile and lock run the same file).
TRANSFORM = "dockerfiles/vllm_requirements.py"
#: CUDA 12 builds that packages pull by default and that have no place in a CUDA 13 image: ray's cgraph extra
#: pulls CuPy for CUDA 12 (cupy-cuda13x replaces it); nvidia-cutlass-dsl always pulls its cu12 libraries, even
#: with its `cu13` extra (its loader picks the newest flavour the driver supports, so cu13 alone works).
CUDA12_OFF = ("cupy-cuda12x; sys_platform == 'never'", "nvidia-cutlass-dsl-libs-cu12; sys_platform == 'never'")

#: The layer files each image kind's Dockerfile mounts from the build context `lock` (written empty when its
#: lock has no such layer): the groups below, by kind.
#: The pip distribution with CUDA's ptxas (and nvcc): Triton's ptxas on a runtime image (TRITON_PTXAS_PATH).
PTXAS_DIST = "nvidia-cuda-nvcc"

LAYER_FILES = {"base": ("tools", "torch"), "vllm": ("vllm", "build", "flashinfer", "transformers"),
               "extra": ("nixl",)}

#: glibc of each Ubuntu release the images are built on: the manylinux tag wheels are resolved for.
GLIBC = {"22.04": "2.35", "24.04": "2.39", "25.04": "2.41", "26.04": "2.42"}
MACHINE = {"linux/arm64": "aarch64", "linux/amd64": "x86_64"}


@dataclass(frozen=True, kw_only=True)
class Group:
    """One install step's requirements, resolved together with the other groups unless `no_deps`."""

    layer: str
    requirements: tuple[str, ...]
    no_deps: bool = False
    #: indexes besides the image's index (FlashInfer's); `optional`: the group may stay unlocked when they
    #: cannot be reached, and the lock says so
    extra_indexes: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True, kw_only=True)
class LockSpec:
    image: str
    kind: str  # base, vllm, extra
    mode: str
    platform: str
    python: str
    glibc: str
    cuda: str
    index: str
    extra_index: str  # the torch index of a base, "" when none
    parent: str | None
    groups: tuple[Group, ...]
    overrides: tuple[str, ...] = ()
    #: distributions the image builds instead of installing: constrained to these pins, never locked
    built: tuple[str, ...] = ()
    #: source-mode vLLM: its requirement files come from vLLM's sdist of this version, edited by TRANSFORM
    #: with these pins and dropped packages (the Dockerfile's `deps` stage runs the same edit)
    vllm_sdist: str | None = None
    vllm_ref: str | None = None
    transform_pins: tuple[str, ...] = ()
    transform_drop: tuple[str, ...] = ()
    #: the layer holding what differs between `-t4`/`-t5` siblings (vLLM images), and those siblings
    last_layer: str | None = None
    siblings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # local files whose bytes are inputs (relative to the matrix's folder)
    #: the parent's distributions held at the parent's version (None: all of them); the others are only
    #: preferred, as an install step may move them (vLLM's setuptools<81 under torch's newest setuptools)
    hold: tuple[str, ...] | None = None

    @property
    def python_platform(self) -> str:
        """uv's --python-platform: the image's machine and the manylinux of its glibc."""
        machine = MACHINE.get(self.platform, self.platform.rsplit("/", 1)[-1])
        return f"{machine}-manylinux_{self.glibc.replace('.', '_')}"

    @property
    def cuda_major(self) -> str:
        return self.cuda.split(".")[0]

    @property
    def layers(self) -> tuple[str, ...]:
        order = (["base"] if self.parent else []) + [g.layer for g in self.groups if g.layer != self.last_layer]
        if self.last_layer:
            order.append(self.last_layer)
        return tuple(dict.fromkeys(order))

    def own_digest(self, root: Path) -> str:
        """sha256 over this spec and the bytes of its files (not its parent's or siblings')."""
        files = {}
        for name in self.files:
            path = root / name
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        payload = {**asdict(self), "files": files, "siblings": sorted(self.siblings)}
        return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def input_digests(specs: dict[str, LockSpec], root: Path) -> dict[str, str]:
    """Each lock's input digest: its own spec, its parent's input digest and its siblings' own specs (the
    layer split depends on them)."""
    own = {name: spec.own_digest(root) for name, spec in specs.items()}
    out: dict[str, str] = {}

    def digest(name: str) -> str:
        if name not in out:
            spec = specs[name]
            parent = digest(spec.parent) if spec.parent and spec.parent in specs else (spec.parent or "")
            payload = {"own": own[name], "parent": parent,
                       "siblings": sorted(own[s] for s in spec.siblings if s in own)}
            out[name] = "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return out[name]

    for name in specs:
        digest(name)
    return out


def lock_path(loaded: LoadedMatrix, name: str) -> Path:
    from factory.core.lockpath import relative_path

    return loaded.root / relative_path(loaded.matrix.defaults.lock_dir, name)


def lock_specs(loaded: LoadedMatrix, plan: Plan) -> dict[str, LockSpec]:
    """The lock request of every image in the plan, parents first (bases, vLLM images, extra layers)."""
    matrix = loaded.matrix
    out: dict[str, LockSpec] = {}
    for spec in plan.images:
        if spec.lock is None or spec.kind == "runtime":
            continue  # installs from no lock (a fixture, a custom image), or copies its dev base's (a runtime image)
        if spec.kind == "base":
            lock_spec = _base(matrix, spec)
        elif spec.kind == "vllm":
            lock_spec = _vllm(matrix, spec, plan)
        else:
            lock_spec = _extra(matrix, spec, plan)
        if lock_spec.parent and lock_spec.parent not in out:
            lock_spec = replace(lock_spec, parent=None, hold=None)
        elif lock_spec.kind == "extra":
            # what the image under it compiles is in the extra's environment too, and stays unresolved; the
            # CUDA 12 builds it keeps out stay out
            parent = out[lock_spec.parent] if lock_spec.parent else None
            assert parent is not None, "an extra layer always has its image as parent"
            lock_spec = replace(lock_spec, built=tuple(dict.fromkeys(parent.built + lock_spec.built)),
                                overrides=tuple(dict.fromkeys(CUDA12_OFF + lock_spec.overrides)))
        out[spec.name] = lock_spec
    return out


def _common(matrix: Matrix, spec: ImageSpec, base_name: str) -> dict[str, Any]:
    base = matrix.base[base_name]
    ubuntu = setting(matrix, "ubuntu", base=base)
    return {
        "image": spec.name, "kind": spec.kind, "mode": spec.mode, "platform": spec.platform,
        "python": setting(matrix, "python", base=base), "glibc": GLIBC.get(ubuntu, "2.39"), "cuda": base.cuda,
        "index": matrix.defaults.index_url,
    }


def _base(matrix: Matrix, spec: ImageSpec) -> LockSpec:
    base = matrix.base[spec.name]
    major = base.cuda.split(".")[0]
    torch = (f"torch=={base.torch}", f"torchvision=={base.torchvision}", f"torchaudio=={base.torchaudio}")
    if base.mode == "wheels":
        groups = (Group(layer="tools", requirements=(f"uv=={UV_VERSION}",), no_deps=True),
                  Group(layer="torch", requirements=(*torch, f"nvidia-nccl-cu{major}=={base.nccl}")))
        built: tuple[str, ...] = ()
    else:
        # torch, torchvision and torchaudio are compiled in the image; what they need at run time is resolved
        # from the same versions' published metadata and locked; NCCL is compiled too (no wheel).
        groups = (Group(layer="tools", requirements=(f"uv=={UV_VERSION}", f"nvidia-cudnn-cu{major}=={base.cudnn}"),
                        no_deps=True),
                  Group(layer="torch", requirements=torch))
        built = torch
    return LockSpec(**_common(matrix, spec, spec.name), extra_index=matrix.defaults.torch_index_url or "",
                    parent=None, groups=groups, built=built, files=(spec.dockerfile,))


def _siblings(plan: Plan, spec: ImageSpec) -> tuple[str, ...]:
    """The other vLLM images built like this one except for Transformers (the `-t4`/`-t5` of one vLLM)."""
    def key(s: ImageSpec) -> dict[str, str]:
        return {k: v for k, v in s.build_args.items() if k != "TRANSFORMERS_VERSION"} | {"m": s.mode}
    return tuple(s.name for s in plan.vllm_images if s.name != spec.name and key(s) == key(spec))


def _vllm(matrix: Matrix, spec: ImageSpec, plan: Plan) -> LockSpec:
    args = spec.build_args
    image = matrix.image[spec.name]
    ray = f"ray[default]=={args['RAY_VERSION']}"
    groups = [Group(layer="transformers", requirements=(f"transformers=={image.transformers}",))]
    flashinfer = args["FLASHINFER_VERSION"]
    if args.get("FLASHINFER_INDEX_URL"):
        groups.append(Group(layer="flashinfer", no_deps=True, optional=True,
                            extra_indexes=(args["FLASHINFER_INDEX_URL"],),
                            requirements=(f"flashinfer-cubin=={flashinfer}", f"flashinfer-jit-cache=={flashinfer}")))
    base = plan.get(image.base)
    major = matrix.base[image.base].cuda.split(".")[0]
    # what the base's /etc/factory/constraints.txt holds for every later pip or uv call
    hold = ("torch", "torchvision", "torchaudio", f"nvidia-nccl-cu{major}", "nvidia-cudnn-cu" + major)
    common: dict[str, Any] = dict(_common(matrix, spec, image.base), extra_index="", parent=image.base,
                                  last_layer="transformers", hold=hold, siblings=_siblings(plan, spec),
                                  # the matrix's Transformers wins over vLLM's declared range: a -t5 is a
                                  # waived override
                                  overrides=(*CUDA12_OFF, f"transformers=={image.transformers}"))
    # on a runtime image (no CUDA toolkit) Triton's ptxas comes from the venv: CUDA's nvcc wheel, held to the
    # image's CUDA by the cuda-toolkit constraints like every pip CUDA component
    ptxas = (PTXAS_DIST if int(major) >= 13 else f"{PTXAS_DIST}-cu{major}",) \
        if ships_on(matrix, image) == "runtime" else ()
    if spec.mode == "wheels":
        vllm = Group(layer="vllm", requirements=(f"triton=={args['TRITON_VERSION']}",
                                                 f"flashinfer-python=={flashinfer}", f"vllm=={image.vllm}", ray,
                                                 *ptxas))
        return LockSpec(**common, groups=(vllm, *groups), files=(spec.dockerfile,))
    # source: vLLM is compiled; its requirements/cuda.txt (as the Dockerfile edits it) and the matrix's pins
    built = tuple(f"{n}=={base.build_args[a]}" for n, a in
                  (("torch", "TORCH_VERSION"), ("torchvision", "TORCHVISION_VERSION"),
                   ("torchaudio", "TORCHAUDIO_VERSION")))
    pins = (args["FLASHINFER_REQUIREMENT"], f"ray=={args['RAY_VERSION']}")
    vllm = Group(layer="vllm", requirements=("-r requirements/cuda.txt", "-r requirements/common.txt",
                                             args["TRITON_REQUIREMENT"], args["FLASHINFER_REQUIREMENT"], ray,
                                             *ptxas))
    # vLLM's build requirements, resolved with the rest (grpcio-tools pins protobuf<7, so the run-time set must
    # agree with them), installed only in the Dockerfile's discarded deps/build stages
    build = Group(layer="build", requirements=("-r requirements/build.txt",))
    return LockSpec(**common, groups=(vllm, build, *groups), built=(*built, f"vllm=={image.vllm}"),
                    vllm_sdist=image.vllm, vllm_ref=args["VLLM_REF"],
                    transform_pins=pins, transform_drop=("torch", "torchvision", "torchaudio"),
                    files=(spec.dockerfile, TRANSFORM))


def _extra(matrix: Matrix, spec: ImageSpec, plan: Plan) -> LockSpec:
    image = plan.get(spec.depends_on or "")
    tag = matrix.image[image.name]
    args = spec.build_args
    major = matrix.base[tag.base].cuda.split(".")[0]
    common: dict[str, Any] = dict(_common(matrix, spec, tag.base), extra_index="", parent=image.name,
                                  files=(spec.dockerfile,))
    if spec.mode != "wheels" or "NIXL_VERSION" not in args:
        # a source-built layer installs only what it compiles (and its build tools in a discarded stage)
        built = tuple(f"{d}=={args['NIXL_VERSION']}" for d in (f"nixl-cu{major}", "nixl")) if "NIXL_VERSION" in args \
            else ()
        return LockSpec(**common, groups=(), built=built)
    nixl = args["NIXL_VERSION"]
    groups = (Group(layer="nixl", requirements=(f"nixl-cu{major}=={nixl}",)),
              Group(layer="nixl", requirements=(f"nixl=={nixl}",), no_deps=True))
    return LockSpec(**common, groups=groups)
