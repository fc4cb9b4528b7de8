"""The build plan: a frozen, ordered graph of images with their exact build args, refs and labels.

Pure apart from reading the Dockerfiles (and the files they COPY) to fingerprint them: the input digest of
an image covers everything that decides its content, so an image whose digest label already matches the
plan need not be built again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from factory.core import labels as L
from factory.core.cascade import setting
from factory.core.dockerfile import dockerfile_inputs
from factory.core.errors import InputError
from factory.core.matrix import (
    RUNTIME_CUDA_FLAVOR,
    Base,
    Extra,
    Image,
    Matrix,
    Source,
    extra_images,
    runtime_name,
    ships_on,
)
from factory.core.resolve import Resolution, tag_facts, tag_sort_key

#: Default upstream sources, used when the matrix names no fork: (git URL, ref template).
UPSTREAM_SOURCES = {
    "nccl": ("https://github.com/NVIDIA/nccl.git", "v{version}"),
    "torch": ("https://github.com/pytorch/pytorch.git", "v{version}"),
    "torchvision": ("https://github.com/pytorch/vision.git", "v{version}"),
    "torchaudio": ("https://github.com/pytorch/audio.git", "v{version}"),
    "vllm": ("https://github.com/vllm-project/vllm.git", "v{version}"),
    "ucx": ("https://github.com/openucx/ucx.git", "v{version}"),
    "nixl": ("https://github.com/ai-dynamo/nixl.git", "v{version}"),  # v-prefixed from v1.0.0 on (0.x: bare)
}

#: pip distribution names of the components installed from an index.
DISTRIBUTIONS = {"triton": "triton", "flashinfer": "flashinfer-python"}


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: what it is called, how it is built and what it promises."""

    kind: str  # "base", "runtime" (a base's slim runtime image), "vllm" or "extra" (an optional layer on a vLLM image)
    name: str  # the tag (vLLM), base name, <base>-runtime, or <tag>-<suffix> of an extra layer
    mode: str  # "source" or "wheels"
    refs: tuple[str, ...]
    dockerfile: str  # relative to the matrix folder
    context: str
    platform: str
    build_args: dict[str, str]
    labels: dict[str, str]
    input_digest: str
    depends_on: str | None = None  # what it is built FROM: a vLLM image's base, an extra layer's tag
    from_ref: str | None = None  # the image named in FROM (base ref, or the CUDA image)
    target: str | None = None
    #: the image's lock file, relative to the matrix's folder (`factory lock`); its content is an input
    lock: str | None = None
    #: the OS the CUDA image promises (`ubuntu 24.04`), checked against the image's os-release; None when the
    #: matrix's `cuda_image` does not name an Ubuntu release (a stand-in such as the CUDA twin)
    os: str | None = None
    #: the lock the image's Python environment must equal (verify, SBOM): its own lock, or for a runtime image
    #: its dev base's (it copies that environment; it installs nothing)
    env_lock: str | None = None

    @property
    def ref(self) -> str:
        return self.refs[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    images: tuple[ImageSpec, ...]
    namespace: str

    def get(self, name: str) -> ImageSpec:
        for spec in self.images:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def bases(self) -> tuple[ImageSpec, ...]:
        return tuple(s for s in self.images if s.kind == "base")

    @property
    def runtimes(self) -> tuple[ImageSpec, ...]:
        return tuple(s for s in self.images if s.kind == "runtime")

    @property
    def vllm_images(self) -> tuple[ImageSpec, ...]:
        return tuple(s for s in self.images if s.kind == "vllm")

    @property
    def extras(self) -> tuple[ImageSpec, ...]:
        return tuple(s for s in self.images if s.kind == "extra")

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "images": [spec.as_dict() for spec in self.images]}


def select(matrix: Matrix, patterns: list[str] | tuple[str, ...], everything: bool = False) -> list[str]:
    """Names (vLLM tags, extra layers, base names) matching tags or shell globs; no pattern means everything."""
    extras = sorted(extra_images(matrix), key=tag_sort_key)
    names = (sorted(matrix.image, key=tag_sort_key) + extras + sorted(matrix.base)
             + sorted(runtime_name(b) for b in matrix.base))
    if everything or not patterns:
        return sorted(matrix.image, key=tag_sort_key) + extras
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            import difflib

            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known tags: {', '.join(names[:6])} ..."
            raise InputError(f"no tag or base matches {pattern!r}{hint}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def build_plan(resolution: Resolution, names: list[str] | None = None) -> Plan:
    """The images needed for `names` (all when None): bases, their runtime images, then the vLLM images on them,
    then extra layers. A vLLM image shipped on a runtime image needs both: the runtime image is built from (and
    copies) its dev base, and source-mode stages compile on the dev base."""
    loaded = resolution.loaded
    matrix = loaded.matrix
    recipes = Recipes(loaded.root)
    layers = extra_images(matrix)
    runtimes_by_name = {runtime_name(b): b for b in matrix.base}
    names = names if names is not None else select(matrix, (), True)
    chosen_layers = [n for n in names if n in layers]
    tags = list(dict.fromkeys([n for n in names if n in matrix.image] + [layers[n][1] for n in chosen_layers]))
    missing = [matrix.image[t].base for t in tags if matrix.image[t].base not in matrix.base]
    if missing:
        raise InputError(f"base {missing[0]!r} is not defined under [base] (run `factory check`)")
    runtime_bases = {runtimes_by_name[n] for n in names if n in runtimes_by_name}
    runtime_bases |= {matrix.image[t].base for t in tags if ships_on(matrix, matrix.image[t]) == "runtime"}
    base_names = sorted({n for n in names if n in matrix.base} | {matrix.image[t].base for t in tags}
                        | runtime_bases)
    bases = {name: _base_spec(matrix, recipes, name, matrix.base[name]) for name in base_names}
    runtimes = {name: _runtime_spec(matrix, recipes, name, matrix.base[name], bases[name])
                for name in sorted(runtime_bases)}
    images = {tag: _image_spec(matrix, recipes, tag, matrix.image[tag], bases[matrix.image[tag].base],
                               runtimes.get(matrix.image[tag].base))
              for tag in sorted(tags, key=tag_sort_key)}
    extras = [_extra_spec(matrix, recipes, name, layers[name][0], images[layers[name][1]],
                          bases[matrix.image[layers[name][1]].base])
              for name in sorted(chosen_layers, key=tag_sort_key)]
    return Plan(images=tuple(bases.values()) + tuple(runtimes.values()) + tuple(images.values()) + tuple(extras),
                namespace=matrix.defaults.label_namespace)



def _source(component: str, version: str, override: Source | None) -> tuple[str, str]:
    if override is not None:
        return override.repo, override.ref
    repo, ref = UPSTREAM_SOURCES[component]
    return repo, ref.format(version=version)


def _cuda_image(matrix: Matrix, base: Base, *, runtime: bool = False) -> str:
    ubuntu = setting(matrix, "ubuntu", base=base)
    template = matrix.defaults.runtime_cuda_image if runtime else matrix.defaults.cuda_image
    digest = base.runtime_cuda_image_digest if runtime else base.cuda_image_digest
    ref = template.format(cuda=base.cuda, ubuntu=ubuntu, flavor=RUNTIME_CUDA_FLAVOR[base.mode])
    return f"{ref}@{digest}" if digest else ref


def _expected_os(matrix: Matrix, base: Base) -> str | None:
    if "{ubuntu}" not in matrix.defaults.cuda_image:
        return None
    return f"ubuntu {setting(matrix, 'ubuntu', base=base)}"


def _dockerfile(matrix: Matrix, kind: str, mode: str) -> str:
    files = matrix.defaults.dockerfiles
    key = kind if mode == "source" else f"{kind}_wheels"
    return str(getattr(files, key))


def _base_spec(matrix: Matrix, recipes: Recipes, name: str, base: Base) -> ImageSpec:
    d = matrix.defaults
    cuda_image = _cuda_image(matrix, base)
    components = {
        "ubuntu": setting(matrix, "ubuntu", base=base),
        "python": setting(matrix, "python", base=base),
        "cuda": base.cuda,
        "nccl": base.nccl,
        "torch": base.torch,
        "torchvision": base.torchvision,
        "torchaudio": base.torchaudio,
    }
    args = {
        "CUDA_IMAGE": cuda_image,
        "CUDA_VERSION": base.cuda,
        "PYTHON_VERSION": components["python"],
        "NCCL_VERSION": base.nccl,
        "TORCH_VERSION": base.torch,
        "TORCHVISION_VERSION": base.torchvision,
        "TORCHAUDIO_VERSION": base.torchaudio,
        "TORCH_CUDA_ARCH_LIST": d.build.torch_cuda_arch_list,
    }
    if base.mode == "source":
        for component in ("nccl", "torch", "torchvision", "torchaudio"):
            repo, ref = _source(component, getattr(base, component), base.sources.get(component))
            args[f"{component.upper()}_REPO"] = repo
            args[f"{component.upper()}_REF"] = ref
        args.update(NCCL_GENCODE=d.build.nccl_gencode, MAX_JOBS=str(d.build.max_jobs),
                    NVCC_THREADS=str(d.build.nvcc_threads), CUDNN_VERSION=base.cudnn)
    else:
        args.update(INDEX_URL=d.index_url, TORCH_INDEX_URL=d.torch_index_url or "")
    repo = d.repositories.base
    labels = _labels(matrix, "base", name, base.mode, base.revision, components, cuda_image,
                     description="PyTorch development base for NVIDIA DGX Spark (GB10, sm_121)",
                     title=repo.rsplit("/", 1)[-1], flavor="dev")
    return _finish(recipes, d.label_namespace, lock_dir=d.lock_dir, kind="base", name=name, mode=base.mode, repo=repo,
                   revision=base.revision,
                   dockerfile=_dockerfile(matrix, "base", base.mode), platform=d.platform, args=args,
                   labels=labels, parent_digest="", depends_on=None, from_ref=cuda_image,
                   os=_expected_os(matrix, base))


def _runtime_spec(matrix: Matrix, recipes: Recipes, name: str, base: Base, dev: ImageSpec) -> ImageSpec:
    """A base's slim runtime image `<base>-runtime`: NVIDIA's small CUDA image plus exactly the dev base's Python
    environment (copied from the built dev base, never re-resolved), so it is built after, and changes with, it."""
    d = matrix.defaults
    cuda_image = _cuda_image(matrix, base, runtime=True)
    components = {c: dev.labels[L.component_key(d.label_namespace, c)] for c in L.components_for("runtime")}
    args = {
        "CUDA_IMAGE": cuda_image,
        "DEV_IMAGE": dev.ref,
        "CUDA_VERSION": base.cuda,
        "PYTHON_VERSION": setting(matrix, "python", base=base),
        "NCCL_VERSION": base.nccl,
        "TORCH_VERSION": base.torch,
        "TORCHVISION_VERSION": base.torchvision,
        "TORCHAUDIO_VERSION": base.torchaudio,
    }
    repo = d.repositories.base
    runtime = runtime_name(name)
    labels = _labels(matrix, "runtime", runtime, base.mode, base.revision, components, cuda_image,
                     description="PyTorch runtime base for NVIDIA DGX Spark (GB10, sm_121): the dev base's torch "
                                 "and NCCL without its toolchain",
                     title=repo.rsplit("/", 1)[-1], flavor="runtime")
    spec = _finish(recipes, d.label_namespace, lock_dir=d.lock_dir, kind="runtime", name=runtime, mode=base.mode,
                   repo=repo, revision=base.revision, dockerfile=d.dockerfiles.runtime, platform=d.platform,
                   args=args, labels=labels, parent_digest=dev.input_digest, depends_on=dev.name,
                   from_ref=cuda_image, os=dev.os)
    return replace(spec, lock=None, env_lock=dev.lock)


def _image_spec(matrix: Matrix, recipes: Recipes, tag: str, image: Image, dev: ImageSpec,
                runtime: ImageSpec | None) -> ImageSpec:
    """A vLLM image, FROM its base's runtime image (`ship_on = "runtime"`) or the dev base itself; source-mode
    stages always compile on the dev base (BUILD_IMAGE)."""
    d = matrix.defaults
    components = tag_facts(matrix, tag).components
    flavor = ships_on(matrix, image)
    base = runtime if flavor == "runtime" and runtime is not None else dev
    args = {
        "BASE_IMAGE": base.ref,
        "VLLM_VERSION": image.vllm,
        "TRITON_VERSION": image.triton,
        "FLASHINFER_VERSION": image.flashinfer,
        "TRANSFORMERS_VERSION": image.transformers,
        "RAY_VERSION": components["ray"],
        "INDEX_URL": d.index_url,
        "FLASHINFER_INDEX_URL": d.flashinfer_index_url,
    }
    if image.mode == "source":
        repo, ref = _source("vllm", image.vllm, image.sources.get("vllm"))
        args.update(BUILD_IMAGE=dev.ref, VLLM_REPO=repo, VLLM_REF=ref,
                    TORCH_CUDA_ARCH_LIST=d.build.torch_cuda_arch_list, MAX_JOBS=str(d.build.max_jobs),
                    NVCC_THREADS=str(d.build.nvcc_threads))
        for component, dist in DISTRIBUTIONS.items():
            source = image.sources.get(component)
            version = getattr(image, component)
            args[f"{component.upper()}_REQUIREMENT"] = (
                f"{dist} @ git+{source.repo}@{source.ref}" if source else f"{dist}=={version}"
            )
        del args["TRITON_VERSION"]  # FLASHINFER_VERSION stays: flashinfer-cubin and -jit-cache match it
    repo = d.repositories.vllm
    labels = _labels(matrix, "vllm", tag, image.mode, image.revision, components, base.ref,
                     description=f"vLLM {image.vllm} with Transformers {image.transformers} for NVIDIA DGX Spark",
                     title=repo.rsplit("/", 1)[-1], flavor=flavor)
    return _finish(recipes, d.label_namespace, lock_dir=d.lock_dir, kind="vllm", name=tag, mode=image.mode, repo=repo,
                   revision=image.revision,
                   dockerfile=_dockerfile(matrix, "vllm", image.mode), platform=d.platform, args=args,
                   labels=labels, parent_digest=base.input_digest, depends_on=base.name, from_ref=base.ref,
                   os=base.os)


def _extra_spec(matrix: Matrix, recipes: Recipes, name: str, layer: str, image: ImageSpec,
                base: ImageSpec) -> ImageSpec:
    """The extra layer `layer` on a vLLM image: its labels are the image's plus its own components.

    A wheel-mode layer clones nothing, so its *_REPO/*_REF args are empty, and it is built from the Dockerfile's
    stage `wheels` (the target); a source-mode layer is the Dockerfile's last stage, compiled in a stage on the
    dev base (BUILD_IMAGE: a runtime-based vLLM image has no compiler).
    """
    extra: Extra = matrix.extra[layer]
    d = matrix.defaults
    ns = d.label_namespace
    cuda = matrix.base[base.name].cuda
    args = {"BASE_IMAGE": image.ref, "CUDA_VERSION": cuda, "MAX_JOBS": str(d.build.max_jobs),
            "INDEX_URL": d.index_url, "BUILD_IMAGE": base.ref}
    for component, version in sorted(extra.versions.items()):
        repo, ref = ("", "") if extra.mode == "wheels" else _source(component, version, extra.sources.get(component))
        args.update({f"{component.upper()}_VERSION": version, f"{component.upper()}_REPO": repo,
                     f"{component.upper()}_REF": ref})
    inherited = {k: v for k, v in image.labels.items() if k != L.factory_key(ns, "input_digest")}
    listed = ", ".join(f"{c.upper()} {v}" for c, v in sorted(extra.versions.items(), reverse=True))
    labels = {
        **inherited,
        **{L.component_key(ns, c): v for c, v in extra.versions.items()},
        L.factory_key(ns, "extra"): layer,
        L.factory_key(ns, "revision"): str(extra.revision),
        L.oci_key("version"): name,
        L.oci_key("description"): f"vLLM {image.name} with {listed}: {extra.description}",
        L.oci_key("base.name"): image.ref,
    }
    if extra.cuda_linked:
        python = setting(matrix, "python", base=matrix.base[base.name])
        labels[L.factory_key(ns, "cuda_linked")] = ":".join(
            path.format(python=python, cuda_major=cuda.split(".")[0]) for path in extra.cuda_linked)
    spec = _finish(recipes, ns, lock_dir=d.lock_dir, kind="extra", name=name, mode=image.mode, repo=d.repositories.vllm,
                   revision=extra.revision, dockerfile=extra.dockerfile, platform=d.platform, args=args,
                   labels=labels, parent_digest=image.input_digest, depends_on=image.name, from_ref=image.ref,
                   os=image.os)
    return replace(spec, mode=extra.mode, target="wheels" if extra.mode == "wheels" else None)


def _labels(matrix: Matrix, kind: str, name: str, mode: str, revision: int, components: dict[str, str],
            from_ref: str, *, description: str, title: str, flavor: str) -> dict[str, str]:
    d = matrix.defaults
    ns = d.label_namespace
    out = {L.component_key(ns, c): components[c] for c in L.components_for(kind)}
    out[L.factory_key(ns, "build_mode")] = mode
    out[L.factory_key(ns, "flavor")] = flavor
    out[L.factory_key(ns, "cuda_arch")] = d.build.cuda_arch
    out[L.factory_key(ns, "revision")] = str(revision)
    out.update({
        L.oci_key("title"): title,
        L.oci_key("description"): description,
        L.oci_key("version"): name,
        L.oci_key("source"): d.source_url,
        L.oci_key("vendor"): d.vendor,
        L.oci_key("base.name"): from_ref,
    })
    return out


def _finish(recipes: Recipes, namespace: str, *, lock_dir: str, kind: str, name: str, mode: str, repo: str,
            revision: int, dockerfile: str, platform: str, args: dict[str, str], labels: dict[str, str],
            parent_digest: str, depends_on: str | None, from_ref: str, os: str | None) -> ImageSpec:
    context = str(Path(dockerfile).parent)
    from factory.core.lockpath import relative_path

    lock = relative_path(lock_dir, name) if recipes.uses_lock(dockerfile) else None
    digest = input_digest(recipes.root, dockerfile, platform, args, labels, parent_digest, lock=lock,
                          recipes=recipes)
    labels = {**labels, L.factory_key(namespace, "input_digest"): digest}
    refs = [f"{repo}:{name}"]
    if revision:
        refs.append(f"{repo}:{name}-r{revision}")
    return ImageSpec(kind=kind, name=name, mode=mode, refs=tuple(refs), dockerfile=dockerfile,
                     context=context, platform=platform, build_args=dict(sorted(args.items())),
                     labels=dict(sorted(labels.items())), input_digest=digest, depends_on=depends_on,
                     from_ref=from_ref, os=os, lock=lock, env_lock=lock)


_LOCK_MOUNT = re.compile(r"--mount=\S*\bfrom=lock\b")


def uses_lock(dockerfile: Path) -> bool:
    """Whether a Dockerfile installs from the build context `lock` (then the image needs a current lock)."""
    try:
        return bool(_LOCK_MOUNT.search(dockerfile.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


class Recipes:
    """The files one plan reads from the matrix's folder, each read and hashed once: Dockerfiles and what they
    COPY (every tag of a kind shares its Dockerfile, so `plan --all` would otherwise parse it 15 times)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._digests: dict[Path, str] = {}
        self._inputs: dict[str, tuple[str, dict[str, str]]] = {}
        self._locking: dict[str, bool] = {}

    def uses_lock(self, dockerfile: str) -> bool:
        if dockerfile not in self._locking:
            self._locking[dockerfile] = uses_lock(self.root / dockerfile)
        return self._locking[dockerfile]

    def sha256(self, path: Path) -> str:
        if path not in self._digests:
            self._digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._digests[path]

    def fingerprint(self, dockerfile: str) -> tuple[str, dict[str, str]]:
        """The Dockerfile's sha256 and that of every file it copies in (by path relative to its folder);
        InputError when one is missing."""
        if dockerfile not in self._inputs:
            path = self.root / dockerfile
            try:
                files = {str(p.relative_to(path.parent)): self.sha256(p) for p in dockerfile_inputs(path)}
                self._inputs[dockerfile] = (self.sha256(path), files)
            except FileNotFoundError as exc:
                raise InputError(f"{exc.filename}: file missing (named by the matrix's dockerfiles or a COPY)") \
                    from None
        return self._inputs[dockerfile]


def input_digest(root: Path, dockerfile: str, platform: str, args: dict[str, str], labels: dict[str, str],
                 parent_digest: str, lock: str | None = None, recipes: Recipes | None = None) -> str:
    """sha256 over everything that decides an image's content: its Dockerfile and the files it copies, platform,
    build args, labels, the parent's digest and its lock's body. `recipes` shares what one plan already read."""
    recipe, files = (recipes or Recipes(root)).fingerprint(dockerfile)
    payload: dict[str, object] = {
        "dockerfile": recipe,
        "files": files,
        "platform": platform,
        "build_args": dict(sorted(args.items())),
        "labels": dict(sorted(labels.items())),
        "parent": parent_digest,
    }
    if lock is not None:  # what the image installs: a changed lock is a changed image
        from factory.core.lockpath import body_digest

        path = root / lock
        payload["lock"] = body_digest(path) if path.exists() else "missing"

    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def aliases(matrix: Matrix, plan: Plan) -> dict[str, str]:
    """Moving tags, docker-library style: `latest` is the default tag; `<major>.<minor>-t<N>` is the newest
    tag of that vLLM minor and Transformers variant. Only tags in the plan move."""
    from packaging.version import Version

    repo = matrix.defaults.repositories.vllm
    planned = {spec.name for spec in plan.vllm_images}
    out: dict[str, str] = {}
    newest: dict[str, tuple[Version, str]] = {}
    for tag, image in matrix.image.items():
        version = Version(image.vllm)
        variant = tag.rsplit("-", 1)[-1]
        key = f"{version.major}.{version.minor}-{variant}"
        if key not in newest or version > newest[key][0]:
            newest[key] = (version, tag)
        if image.default and tag in planned:
            out[f"{repo}:latest"] = f"{repo}:{tag}"
    for key, (_, tag) in sorted(newest.items()):
        if tag in planned:
            out[f"{repo}:{key}"] = f"{repo}:{tag}"
    return out
