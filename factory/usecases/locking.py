"""`factory lock`: resolve each image's whole Python environment with uv, check it, write `locks/<image>.txt`.

For every image of the plan (parents first) the request from `factory.core.lockspec` is resolved by
`uv pip compile` (`factory.adapters.uv`) for the image's platform and Python, with hashes. It inherits its
parent's lock: the base's torch, torchvision, torchaudio, NCCL and cuDNN exactly, every other version as a
preference (as uv prefers an output file's pins); what the image compiles is dropped from the resolution (a
source base locks its torch's published needs instead); the venv's CUDA components are held to the image's
CUDA release (the versions `cuda-toolkit==<cuda>` pins, its own ranges capped at the image's major.minor). The
resolved set is checked (nothing built for another CUDA major, the matrix's `forbid_dists` and `require_dists`
rules) and split into the Dockerfile's layers (`factory.core.lockrules`): Transformers, what only it needs and
whatever differs between `-t4`/`-t5` siblings go last. A lock whose input digest matches its spec, resolved
against its parent's current content, is left alone: `factory lock` with nothing changed resolves nothing, and
`--check` needs no network at all.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import re
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from packaging.requirements import InvalidRequirement, Requirement

from factory.adapters import uv
from factory.core import lockfile
from factory.core.errors import InputError, WorkFailed
from factory.core.kinds import KINDS
from factory.core.lockfile import Lock, Pin, canonical
from factory.core.lockrules import (
    LockFailed,
    Resolved,
    assign_layers,
    check_rules,
    origin,
    recorded_parent,
    split_siblings,
)
from factory.core.lockspec import MACHINE, TRANSFORM, LockSpec, input_digests, lock_path, lock_specs
from factory.core.matrix import LoadedMatrix, Matrix
from factory.core.plan import Plan
from factory.core.redact import redact

if TYPE_CHECKING:
    from factory.adapters.index import WheelMetadata

__all__ = ["LockFailed", "LockResult", "audit", "lock", "resolve_image", "stale"]


class LockIndex(Protocol):
    """What locking asks of a package index (`factory.adapters.index.PackageIndex` is one)."""

    def wheel_metadata(self, project: str, version: str, *, platform: str | None = ...) -> WheelMetadata: ...

    def sdist_files(self, project: str, version: str) -> dict[str, str] | None: ...


@dataclass
class LockResult:
    """What `lock` did: the images whose locks it wrote, those already current, and why others failed."""

    written: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)




# -- inputs ---------------------------------------------------------------------------------------------------


def _environment(spec: LockSpec, extra: str = "") -> dict[str, str]:
    """The marker environment of the image (the index client's, for the spec's machine and Python)."""
    from factory.adapters.index import target_environment

    return {**target_environment(MACHINE.get(spec.platform, "aarch64"), spec.python), "extra": extra}


def cuda_constraints(index: LockIndex, spec: LockSpec) -> tuple[list[str], str]:
    """Constraints that hold the venv's CUDA components to the image's CUDA release, and a note saying so.

    `cuda-toolkit==<cuda>` names every component of that release (its `all` extra): exact versions where it
    pins them, and for a range (nvJitLink's `>=13.0.88,<14`) the image's major.minor, since code JIT-linked by
    a newer nvJitLink can need a newer driver than the image's CUDA promises.
    """
    from factory.adapters.index import NotFound
    from factory.adapters.index import applicable_requirements as _requirements

    try:
        meta = index.wheel_metadata("cuda-toolkit", spec.cuda, platform=spec.platform)
    except NotFound:
        return [], f"no cuda-toolkit=={spec.cuda} on the index: the venv's CUDA components are not held"
    major_minor = ".".join(spec.cuda.split(".")[:2])
    out = [f"cuda-toolkit=={spec.cuda}"]
    for req in _requirements(meta, _environment(spec, extra="all")):
        specifier = str(req.specifier)
        if not any(s.operator == "==" for s in req.specifier):
            specifier = f"{specifier},=={major_minor}.*" if specifier else f"=={major_minor}.*"
        out.append(f"{req.name}{specifier}")
    return sorted(set(out)), f"CUDA components held to cuda-toolkit=={spec.cuda} (capped at {major_minor}.*)"


@functools.cache
def _transform_module(root: Path) -> ModuleType:
    """The shared requirement transform, loaded once per matrix folder."""
    path = root / TRANSFORM
    loader = importlib.util.spec_from_file_location("factory_vllm_requirements", path)
    if loader is None or loader.loader is None:
        raise InputError(f"{path}: cannot load the requirement transform")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def vllm_requirement_files(index: LockIndex, spec: LockSpec, root: Path) -> tuple[dict[str, str], list[str]]:
    """vLLM's requirement files for a source-mode image, edited exactly as the Dockerfile's `deps` stage edits
    them (the same script), and notes on where they came from."""
    version = spec.vllm_sdist or ""
    files = index.sdist_files("vllm", version)
    notes = []
    if files:
        notes.append(f"vllm {version}: requirement files of its sdist on the index")
    else:
        from factory.adapters.index import applicable_requirements as _requirements

        meta = index.wheel_metadata("vllm", version, platform=spec.platform)
        lines = [str(req).split(";")[0].strip() for req in _requirements(meta, _environment(spec))]
        files = {"requirements/cuda.txt": "\n".join(lines) + "\n"}
        notes.append(f"vllm {version}: no sdist on the index; its wheel's Requires-Dist stands in for "
                     "requirements/cuda.txt")
    if spec.vllm_ref and not re.fullmatch(r"v?" + re.escape(version), spec.vllm_ref):
        notes.append(f"built from {spec.vllm_ref}, locked with the requirements of release {version}")
    module = _transform_module(root)
    pins = dict(module.parse_pin(p) for p in spec.transform_pins)
    edited = module.transform(files, pins, drop=spec.transform_drop, cuda_major=int(spec.cuda_major))
    installed = ("requirements/cuda.txt", "requirements/common.txt")  # what the image's cuda.txt reads
    notes += [f"edited: {n}" for n in module.describe(files, pins, drop=spec.transform_drop,
                                                         cuda_major=int(spec.cuda_major))
              if n.startswith(installed)]
    return {k: v for k, v in edited.items() if k.startswith("requirements/")}, notes


#: What a published torch (or torchvision) wheel requires only because it is NVIDIA's CUDA build of it: a
#: torch compiled in the image links the image's own CUDA, NCCL and cuDNN, and declares no Triton.
_CUDA_BUILD_NEEDS = re.compile(r"^(nvidia-|cuda-|triton$|pytorch-triton)")


def _needs_of_built(index: LockIndex, spec: LockSpec, requirements: list[str],
                    built: set[str]) -> tuple[list[str], list[str]]:
    """The requirements with each one on a compiled distribution (a source base's `torch==2.10.0`) replaced by
    what it needs at run time: its published wheel's Requires-Dist for the image's platform, without what only
    the published CUDA build needs and without the other compiled ones."""
    from factory.adapters.index import applicable_requirements as _requirements

    out, notes = [], []
    env = _environment(spec)
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            out.append(text)
            continue
        if canonical(req.name) not in built:
            out.append(text)
            continue
        version = next((s.version for s in req.specifier if s.operator == "=="), None)
        meta = index.wheel_metadata(req.name, version or "", platform=spec.platform)
        needs = [str(dep).split(";")[0].strip() for dep in _requirements(meta, env)
                 if canonical(dep.name) not in built and not _CUDA_BUILD_NEEDS.match(canonical(dep.name))]
        out += needs
        notes.append(f"{req.name} {version} is compiled in the image: locked are its needs from the published "
                     f"wheel's METADATA ({', '.join(needs) or 'none'}), not that build's CUDA packages")
    return list(dict.fromkeys(out)), notes


def _cuda_extras(root: Path, spec: LockSpec, resolved: list[Resolved]) -> list[str]:
    """`name[cuNN]==version` for each resolved distribution whose CUDA build is an extra (the transform's list)."""
    module = _transform_module(root)
    have = {canonical(r.name): r.version for r in resolved}
    return [f"{name}[{extra.format(major=spec.cuda_major)}]=={have[canonical(name)]}"
            for name, extra in sorted(module.CUDA_EXTRA.items()) if canonical(name) in have]


def resolve_image(spec: LockSpec, *, parent: Lock | None, index: LockIndex, root: Path, matrix: Matrix,
                  digest: str, previous: Lock | None = None, offline: bool = False) -> Lock:
    """Resolve one image (no sibling split yet); raises LockFailed naming the image."""
    notes: list[str] = []
    constraints = [p.requirement() for p in parent.pins
                   if spec.hold is None or p.key in spec.hold] if parent else []
    built = {canonical(Requirement(b).name) for b in spec.built}
    # what the image compiles is not resolved at all: every requirement on it is dropped (the base provides it)
    overrides = list(spec.overrides) + [f"{name}; sys_platform == 'never'" for name in sorted(built)]
    # versions uv prefers (pip-tools' output-file idiom): the parent's, then this image's current lock
    preferred = {p.key: p.requirement() for p in (previous.pins if previous else ())}
    preferred.update({p.key: p.requirement() for p in (parent.pins if parent else ())})
    held, note = cuda_constraints(index, spec)
    constraints += held
    notes.append(note)
    unlocked: list[str] = []
    resolved: list[Resolved] = []
    with tempfile.TemporaryDirectory(prefix="factory-lock-") as tmp:
        work = Path(tmp)
        together = [g for g in spec.groups if not g.no_deps]
        requirements = [r for g in together for r in g.requirements]
        requirements, more = _needs_of_built(index, spec, requirements, built)
        notes += more
        if spec.vllm_sdist:
            files, more = vllm_requirement_files(index, spec, root)
            notes += more
            for path in ("requirements/common.txt", "requirements/build.txt"):
                if path not in files:  # a release without an sdist: its wheel's Requires-Dist stands in
                    files[path] = ""
                    if path.endswith("build.txt"):
                        notes.append("no requirements/build.txt: the deps stage resolves vLLM's build "
                                     "requirements itself")
            for path, text in files.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_text(text, encoding="utf-8")
        try:
            if requirements:
                # a distribution whose CUDA 13 build is an extra (the transform's list) gets that extra, at the
                # version resolved, as the source build's edited requirements give it: asked for up front when
                # the current lock has it, else after a first resolution finds it
                previous_pins = [Resolved(p.name, p.version, (), ()) for p in (previous.pins if previous else ())]
                extras = _cuda_extras(root, spec, previous_pins)

                def compile_together(asked: list[str]) -> list[Resolved]:
                    return uv.compile_requirements(spec, work, asked, constraints=constraints, overrides=overrides,
                                                   no_deps=False, extra_indexes=(),
                                                   preferred=sorted(preferred.values()), offline=offline)

                first = compile_together(requirements + extras)
                needed = _cuda_extras(root, spec, first)
                if sorted(needed) != sorted(extras):  # new, gone, or at another version than the current lock's
                    extras = needed
                    first = compile_together(requirements + extras)
                if extras:
                    notes.append(f"CUDA {spec.cuda_major} builds by extra: {', '.join(extras)}")
                resolved += first
            for group in (g for g in spec.groups if g.no_deps):
                try:
                    resolved += uv.compile_requirements(spec, work, list(group.requirements), constraints=[],
                                                        overrides=[], no_deps=True,
                                                        extra_indexes=group.extra_indexes, preferred=[],
                                                        offline=offline)
                except LockFailed as exc:
                    if not group.optional:
                        raise
                    where = ", ".join(redact(u) for u in group.extra_indexes)
                    why = "could not be reached" if "fetch" in str(exc).lower() else str(exc)[:120]
                    unlocked += [f"{r} (not locked: {where} {why} when locked)" for r in group.requirements]
        except LockFailed as exc:
            asked = "; ".join(origin(r, spec, matrix) for g in spec.groups for r in g.requirements)
            raise LockFailed(f"{spec.image}: cannot resolve its environment for {spec.platform}, Python "
                             f"{spec.python}: {exc} [the image asks for: {asked}; overrides: "
                             f"{', '.join(spec.overrides) or 'none'}]") from None
    problems = check_rules(spec, resolved, matrix)
    if problems:
        raise LockFailed(f"{spec.image}: " + "; ".join(problems))
    notes += [f"WARNING: {w}" for w in check_rules(spec, resolved, matrix, severity="warning")]
    layers = assign_layers(spec, resolved, parent)
    pins = [Pin(name=r.name, version=r.version, hashes=tuple(sorted(r.hashes)), layer=layers[canonical(r.name)],
                via=r.via) for r in resolved]
    if parent:  # the whole environment: what the parent holds and this image's resolution did not need
        have = {p.key for p in pins}
        pins += [Pin(name=p.name, version=p.version, hashes=p.hashes, layer="base", via=("(parent)",))
                 for p in parent.pins if p.key not in have]
    header = {
        "image": (f"{spec.image} ({spec.kind}, {spec.mode} mode)",),
        "input-digest": (digest,),
        "platform": (f"{spec.platform} ({spec.python_platform})",),
        "python": (spec.python,),
        "index": tuple(redact(u) for u in (spec.index, spec.extra_index, *(u for g in spec.groups
                                                                             for u in g.extra_indexes)) if u),
        "resolved": (f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} by {uv.uv_version()}",),
        # the parent and the content it had: a parent relocked to other versions makes this lock stale
        "parent": (f"{spec.parent} {lockfile.content_digest(parent)}",) if spec.parent and parent else (),
        "built": spec.built,
        "source": tuple(notes) + tuple(f"override {o}" for o in spec.overrides),
        "unlocked": tuple(unlocked),
    }
    header = {k: tuple(v) for k, v in header.items() if v}
    return Lock(header=header, pins=tuple(pins), layers=tuple(
        layer for layer in spec.layers if any(p.layer == layer for p in pins)))



# -- the use case ---------------------------------------------------------------------------------------------


def stale(loaded: LoadedMatrix, plan: Plan, names: list[str] | None = None) -> dict[str, str]:
    """Image -> why its lock is not current (missing, stale, or resolved against other parent content);
    offline."""
    specs = lock_specs(loaded, plan)
    digests = input_digests(specs, loaded.root)
    out = {}
    for name in names or list(specs):
        path = lock_path(loaded, name)
        if not path.exists():
            out[name] = f"{_rel(loaded, path)} is missing"
            continue
        lock_ = lockfile.read(path)
        if lock_.input_digest != digests[name]:
            out[name] = f"{_rel(loaded, path)} is stale (the matrix, its Dockerfile, the requirement transform " \
                        "or a parent/sibling changed)"
            continue
        parent = specs[name].parent
        if parent:
            parent_path = lock_path(loaded, parent)
            content = lockfile.content_digest(lockfile.read(parent_path)) if parent_path.exists() else None
            if recorded_parent(lock_) != content:
                out[name] = f"{_rel(loaded, path)} is stale (its parent {parent}'s lock changed since)"
    return out


def audit(loaded: LoadedMatrix, plan: Plan) -> dict[str, list[str]]:
    """Image -> what is wrong with its committed lock, offline: missing or stale, or its distributions break a
    rule (a rule added after the lock was written counts too)."""
    out: dict[str, list[str]] = {name: [why] for name, why in stale(loaded, plan).items()}
    specs = lock_specs(loaded, plan)
    for name, spec in specs.items():
        path = lock_path(loaded, name)
        if name in out or not path.exists():
            continue
        lock_ = lockfile.read(path)
        pins = [Resolved(p.name, p.version, p.hashes, p.via) for p in lock_.pins if p.layer != "base"]
        problems = check_rules(spec, pins, loaded.matrix)
        if problems:
            out[name] = problems
    return out


def _rel(loaded: LoadedMatrix, path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def lock(loaded: LoadedMatrix, plan: Plan, *, names: list[str] | None = None, refresh: bool = False,
         upgrade: bool = False, jobs: int = 4,
         index_factory: Callable[[], AbstractContextManager[LockIndex]] | None = None,
         progress: Callable[[str], None] | None = None, offline: bool = False) -> LockResult:
    """Resolve and write the locks of `names` (default: every image of the plan) that are missing or stale
    (all of them with `refresh`, or `upgrade`, which also forgets the versions the current locks prefer).
    Parents are locked first; an image whose parent's lock changed in the run is locked again too; `-t4`/`-t5`
    siblings together."""
    refresh = refresh or upgrade
    specs = lock_specs(loaded, plan)
    digests = input_digests(specs, loaded.root)
    wanted = set(names or specs)
    for name in list(wanted):  # siblings share layers: they are locked together
        wanted |= set(specs[name].siblings)
    result = LockResult()
    fresh: dict[str, Lock] = {}

    on_disk: dict[str, Lock | None] = {}

    def current(name: str) -> Lock | None:
        """The committed lock (read once per run; an unreadable one counts as missing)."""
        if name not in on_disk:
            path = lock_path(loaded, name)
            try:
                on_disk[name] = lockfile.read(path) if path.exists() else None
            except InputError:
                on_disk[name] = None
        return on_disk[name]

    def parent_content(name: str) -> str | None:
        parent = specs[name].parent
        if not parent:
            return None
        lock_ = fresh.get(parent) or current(parent)
        return lockfile.content_digest(lock_) if lock_ else None

    def needs(name: str) -> bool:
        if name in wanted and refresh:
            return True
        have = current(name)
        if have is None or have.input_digest != digests[name]:
            return name in wanted
        return recorded_parent(have) != parent_content(name)  # its parent's lock moved under it

    if index_factory is None:
        from factory.adapters.index import PackageIndex
        from factory.adapters.index.cache import Cache

        def index_factory() -> AbstractContextManager[LockIndex]:  # noqa: E306
            return PackageIndex(loaded.matrix.defaults.index_url, cache=Cache(), offline=offline)

    def parent_of(name: str) -> Lock | None:
        parent = specs[name].parent
        if not parent:
            return None
        if parent in fresh:
            return fresh[parent]
        if parent in result.failed:
            raise LockFailed(f"{name}: its parent {parent} could not be locked")
        have = current(parent)
        if have is None:
            raise LockFailed(f"{name}: its parent {parent} has no readable lock (lock it too)")
        return have

    open_index = index_factory

    def one(name: str) -> Lock:
        previous = None if upgrade else current(name)
        with open_index() as index:
            return resolve_image(specs[name], parent=parent_of(name), index=index, root=loaded.root,
                                 matrix=loaded.matrix, digest=digests[name], previous=previous, offline=offline)

    for kind in (k for k in KINDS if k != "runtime"):  # a runtime image has no lock of its own (its dev base's)
        members = [n for n in specs if specs[n].kind == kind]
        relock = {n for n in members if needs(n)}
        for name in list(relock):  # a sibling of a relocked image is relocked with it (their layers are shared)
            relock |= {s for s in specs[name].siblings if s in specs}
        result.current += [n for n in members if n in wanted and n not in relock]
        wave = [n for n in members if n in relock]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(one, name): name for name in wave}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    fresh[name] = future.result()
                    if progress:
                        progress(f"lock: {name}: resolved {len(fresh[name].pins)} distributions")
                except (LockFailed, InputError) as exc:
                    result.failed[name] = str(exc)
                except WorkFailed as exc:
                    result.failed[name] = f"{name}: {exc}"
        unsplit = dict(fresh)
        for name in wave:
            if name not in fresh:
                continue
            siblings: list[Lock] = []
            for s in specs[name].siblings:
                committed = current(s)
                if s in unsplit:
                    siblings.append(unsplit[s])
                elif s not in result.failed and committed is not None:
                    siblings.append(committed)
            fresh[name] = split_siblings(specs[name], fresh[name], siblings)
        for name in wave:
            if name in fresh:
                path = lock_path(loaded, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".txt.tmp")
                tmp.write_text(lockfile.render(fresh[name]), encoding="utf-8")
                tmp.replace(path)
                result.written.append(name)
    return result
