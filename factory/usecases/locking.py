"""`factory lock`: resolve each image's whole Python environment with uv, check it, write `locks/<image>.txt`.

For every image of the plan (parents first) the request from `factory.core.lockspec` is resolved by
`uv pip compile` for the image's platform and Python, with hashes. It inherits its parent's lock: the base's
torch, torchvision, torchaudio, NCCL and cuDNN exactly, every other version as a preference (as uv prefers an
output file's pins); what the image compiles is dropped from the resolution (a source base locks its torch's
published needs instead); the venv's CUDA components are held to the image's CUDA release (the versions
`cuda-toolkit==<cuda>` pins, its own ranges capped at the image's major.minor). The resolved set is checked
(nothing built for another CUDA major, the matrix's `forbid_dists` and `require_dists` rules) and split into
the Dockerfile's layers: Transformers, what only it needs and whatever differs between `-t4`/`-t5` siblings go
last. A lock whose input digest matches its spec, resolved against its parent's current content, is left
alone: `factory lock` with nothing changed resolves nothing, and `--check` needs no network at all.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from factory.core import lockfile
from factory.core.components import DIST_COMPONENTS, IMAGE_COMPONENTS
from factory.core.errors import InputError, WorkFailed
from factory.core.lockfile import Lock, Pin, canonical
from factory.core.lockspec import MACHINE, TRANSFORM, LockSpec, input_digests, lock_path, lock_specs
from factory.core.matrix import LoadedMatrix, Matrix
from factory.core.plan import Plan
from factory.core.redact import redact

#: A distribution built for a CUDA major: nvidia-cublas-cu12, cupy-cuda12x, nixl-cu13, nvidia-cutlass-dsl-libs-cu13
_CUDA_BUILD = re.compile(r"-(?:cu|cuda)(?P<major>\d{2})x?$")


class LockFailed(WorkFailed):
    """An image cannot be locked: unresolvable, or its resolved set breaks a rule (exit 1)."""


@dataclass
class LockResult:
    written: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Resolved:
    name: str
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]


# -- uv ------------------------------------------------------------------------------------------------------


def uv_binary() -> str:
    """The uv that ships as a Python package beside the factory (the `uv` dependency), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise WorkFailed("uv is not installed: `pip install uv` (the factory resolves locks with it)") from None
        return found


@functools.cache
def uv_version() -> str:
    out = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "uv (unknown version)"


def parse_compiled(text: str) -> list[Resolved]:
    """The pins of `uv pip compile --generate-hashes` output (both annotation styles)."""
    out: list[Resolved] = []
    name = version = None
    hashes: list[str] = []
    via: list[str] = []
    in_via = False

    def flush() -> None:
        nonlocal name, version, hashes, via
        if name is not None:
            out.append(Resolved(name, version or "", tuple(hashes), tuple(via)))
        name, version, hashes, via = None, None, [], []

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith(" ") and not line.startswith("#"):
            flush()
            in_via = False
            requirement, _, comment = line.partition(" #")
            requirement = requirement.rstrip(" \\")
            if " @ " in requirement:
                raise LockFailed(f"{requirement.strip()} is a direct reference (a `sources` entry): a lock pins "
                                 "releases of an index by hash, so build such a component into a wheel on an index")
            pin_name, sep, pin_version = requirement.partition("==")
            if not sep:
                raise WorkFailed(f"uv wrote a line that is not a pin: {line[:80]!r}")
            name, version = pin_name.strip(), pin_version.strip()
            if comment.strip().startswith("via "):
                via.extend(w.strip() for w in comment.strip()[4:].split(","))
            continue
        if stripped.startswith("--hash="):
            hashes.append(stripped[len("--hash="):].rstrip(" \\"))
        elif stripped.startswith("# via"):
            rest = stripped[len("# via"):].strip()
            in_via = not rest
            if rest:
                via.extend(w.strip() for w in rest.split(","))
        elif in_via and stripped.startswith("#   "):
            via.append(stripped[4:].strip())
    flush()
    return out


def _uv_compile(spec: LockSpec, workdir: Path, requirements: list[str], *, constraints: list[str],
                overrides: list[str], no_deps: bool, extra_indexes: tuple[str, ...],
                preferred: list[str], offline: bool = False) -> list[Resolved]:
    (workdir / "preferred.txt").write_text("".join(f"{p}\n" for p in preferred), encoding="utf-8")
    (workdir / "requirements.in").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (workdir / "constraints.txt").write_text("\n".join(constraints) + "\n", encoding="utf-8")
    (workdir / "overrides.txt").write_text("\n".join(overrides) + "\n", encoding="utf-8")
    argv = [uv_binary(), "pip", "compile", "requirements.in", "--quiet", "--generate-hashes", "--no-header",
            "--annotation-style", "line", "--python-platform", spec.python_platform,
            "--python-version", spec.python, "--index-url", spec.index, "--index-strategy", "first-index",
            "-c", "constraints.txt", "--override", "overrides.txt", "--no-config", "-o", "preferred.txt",
            # a missing interpreter of the target version must not send uv looking for one to download
            "--no-python-downloads"]
    for url in ((spec.extra_index,) if spec.extra_index else ()) + extra_indexes:
        argv += ["--extra-index-url", url]
    if no_deps:
        argv.append("--no-deps")
    if offline:  # answers from uv's cache only: a package it never saw fails the resolution, named
        argv.append("--offline")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR", str(_uv_cache()))
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise LockFailed(_explain(proc.stderr))
    return parse_compiled((workdir / "preferred.txt").read_text(encoding="utf-8"))


def _uv_cache() -> Path:
    from factory.adapters.cache import default_cache_dir

    return default_cache_dir() / "uv"


def _explain(stderr: str) -> str:
    """uv's own explanation of a failed resolution, without its box-drawing prefixes."""
    lines = [re.sub(r"^[\s×╰─▶│├┬┴┼╭╮╯\-]*", "", line).rstrip() for line in stderr.splitlines()]
    text = " ".join(line for line in lines if line)
    return redact(text)[:2000] or "uv failed without saying why"


# -- inputs ---------------------------------------------------------------------------------------------------


def _environment(spec: LockSpec, extra: str = "") -> dict[str, str]:
    """The marker environment of the image (the index client's, for the spec's machine and Python)."""
    from factory.adapters.pypi import target_environment

    return {**target_environment(MACHINE.get(spec.platform, "aarch64"), spec.python), "extra": extra}


def cuda_constraints(index, spec: LockSpec) -> tuple[list[str], str]:
    """Constraints that hold the venv's CUDA components to the image's CUDA release, and a note saying so.

    `cuda-toolkit==<cuda>` names every component of that release (its `all` extra): exact versions where it
    pins them, and for a range (nvJitLink's `>=13.0.88,<14`) the image's major.minor, since code JIT-linked by
    a newer nvJitLink can need a newer driver than the image's CUDA promises.
    """
    from factory.adapters.pypi import NotFound, _requirements

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
def _transform_module(root: Path):
    """The shared requirement transform, loaded once per matrix folder."""
    path = root / TRANSFORM
    loader = importlib.util.spec_from_file_location("factory_vllm_requirements", path)
    if loader is None or loader.loader is None:
        raise InputError(f"{path}: cannot load the requirement transform")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def vllm_requirement_files(index, spec: LockSpec, root: Path) -> tuple[dict[str, str], list[str]]:
    """vLLM's requirement files for a source-mode image, edited exactly as the Dockerfile's `deps` stage edits
    them (the same script), and notes on where they came from."""
    version = spec.vllm_sdist or ""
    files = index.sdist_files("vllm", version)
    notes = []
    if files:
        notes.append(f"vllm {version}: requirement files of its sdist on the index")
    else:
        from factory.adapters.pypi import _requirements

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


def _needs_of_built(index, spec: LockSpec, requirements: list[str], built: set[str]) -> tuple[list[str], list[str]]:
    """The requirements with each one on a compiled distribution (a source base's `torch==2.10.0`) replaced by
    what it needs at run time: its published wheel's Requires-Dist for the image's platform, without what only
    the published CUDA build needs and without the other compiled ones."""
    from factory.adapters.pypi import _requirements

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
    module = _transform_module(root)
    have = {canonical(r.name): r.version for r in resolved}
    return [f"{name}[{extra.format(major=spec.cuda_major)}]=={have[canonical(name)]}"
            for name, extra in sorted(module.CUDA_EXTRA.items()) if canonical(name) in have]


# -- resolving one image --------------------------------------------------------------------------------------


def _names(requirements: tuple[str, ...]) -> set[str]:
    out = set()
    for text in requirements:
        if text.startswith("-"):
            continue
        try:
            out.add(canonical(Requirement(text).name))
        except InvalidRequirement:
            continue
    return out


def assign_layers(spec: LockSpec, resolved: list[Resolved], parent: Lock | None) -> dict[str, str]:
    """Canonical name -> layer: the parent's pins stay `base`; each group's layer gets what its requirements
    reach (through uv's `via` edges) without passing through the last layer's requirements; the rest is last."""
    inherited = parent.installed() if parent else {}
    same = {canonical(r.name) for r in resolved if inherited.get(canonical(r.name)) == r.version}
    children: dict[str, set[str]] = {}
    requested_by_file: dict[str, set[str]] = {}  # `-r requirements/cuda.txt` -> what that file asks for
    for r in resolved:
        for who in r.via:
            if who.startswith("-r requirements/"):
                requested_by_file.setdefault(who, set()).add(canonical(r.name))
            elif not who.startswith("-"):
                children.setdefault(canonical(who.split("[")[0].split(" ")[0]), set()).add(canonical(r.name))
    last = next((g for g in spec.groups if g.layer == spec.last_layer), None)
    stop = _names(last.requirements) if last else set()
    out = {name: "base" for name in same}
    for group in spec.groups:
        if group is last:
            continue
        roots = _names(group.requirements)
        for text in group.requirements:
            roots |= requested_by_file.get(text, set())
        todo = [n for n in roots if n not in stop]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            out.setdefault(name, group.layer)
            todo.extend(c for c in children.get(name, ()) if c not in stop)
    fallback = spec.last_layer or (spec.groups[-1].layer if spec.groups else "base")
    for r in resolved:
        out.setdefault(canonical(r.name), fallback)
    return out


def _chain(name: str, by_name: dict[str, Resolved], limit: int = 6) -> str:
    """`a <- b <- c`: who pulled `name` in, following the first `via` back to a requirement."""
    parts, current, seen = [name], by_name.get(name), {name}
    while current and current.via and len(parts) < limit:
        who = current.via[0]
        parts.append(who)
        key = canonical(who.split("[")[0])
        if who.startswith("-") or key in seen:
            break
        seen.add(key)
        current = by_name.get(key)
    return " <- ".join(parts)


#: Which matrix field pins a requirement, by distribution (the rest come from the Dockerfile's own choices).
_FIELDS = {**DIST_COMPONENTS, "nvidia-cudnn-cu13": "cudnn", "nvidia-nccl-cu13": "nccl"}  # CUDA 13 images


def _origin(requirement: str, spec: LockSpec, matrix: Matrix) -> str:
    """`flashinfer-python==0.6.2 (matrix: image."0.15.0-t5".flashinfer)`: a requirement and who asked for it."""
    try:
        name = canonical(Requirement(requirement).name)
    except InvalidRequirement:
        return requirement  # `-r requirements/cuda.txt`: vLLM's own files, as the transform edited them
    field_ = _FIELDS.get(name)
    if field_ is None:
        return requirement
    if spec.image in matrix.image and field_ in IMAGE_COMPONENTS:
        if field_ == "ray" and matrix.image[spec.image].ray is None:
            return f"{requirement} (matrix: defaults.ray)"
        return f'{requirement} (matrix: image."{spec.image}".{field_})'
    base = spec.image if spec.image in matrix.base else None
    return f'{requirement} (matrix: base."{base}".{field_})' if base else requirement


def check_rules(spec: LockSpec, pins: list[Resolved], matrix: Matrix, *, severity: str = "error") -> list[str]:
    """Why this resolved set may not be shipped (empty: it may); with `severity="warning"`, what the matrix's
    warning rules say about it instead. A tag's waiver (`allow`) of a rule waives that rule here too."""
    by_name = {canonical(r.name): r for r in pins}
    problems = []
    for r in pins if severity == "error" else ():
        match = _CUDA_BUILD.search(canonical(r.name))
        if match and match["major"] != spec.cuda_major:
            problems.append(f"{r.name}=={r.version} is built for CUDA {match['major']}, the image is CUDA "
                            f"{spec.cuda}: pulled in by {_chain(canonical(r.name), by_name)}")
    waived = _waived(spec, matrix)
    for rule in matrix.rule:
        if not (rule.forbid_dists or rule.require_dists) or rule.severity != severity or rule.id in waived:
            continue
        if not _rule_applies(rule, spec, matrix):
            continue
        for r in pins:
            if any(fnmatch.fnmatchcase(canonical(r.name), canonical(g)) for g in rule.forbid_dists):
                problems.append(f"{r.name}=={r.version} is forbidden by rule {rule.id} ({rule.reason}): pulled "
                                f"in by {_chain(canonical(r.name), by_name)}")
        for name, wanted in rule.require_dists.items():
            have = by_name.get(canonical(name))
            try:
                ok = have is not None and SpecifierSet(wanted).contains(Version(have.version), prereleases=True)
            except InvalidVersion:
                ok = False
            if not ok:
                found = f"{have.name}=={have.version}" if have else f"no {name}"
                problems.append(f"rule {rule.id} requires {name}{wanted}, the lock has {found} ({rule.reason})")
    return problems


def _waived(spec: LockSpec, matrix: Matrix) -> set[str]:
    """The rule ids the image's tag waives (an extra layer: the tag it is built on; a base waives nothing)."""
    tag = spec.image if spec.image in matrix.image else (spec.parent if spec.parent in matrix.image else None)
    return {w.rule for w in matrix.image[tag].allow} if tag else set()


def _rule_applies(rule, spec: LockSpec, matrix: Matrix) -> bool:
    from factory.core.resolve import TagFacts, rule_applies, tag_facts

    tag = spec.image
    if tag not in matrix.image:
        tag = spec.parent if spec.parent in matrix.image else ""
    if tag:
        return rule_applies(rule, tag_facts(matrix, tag))
    base = matrix.base.get(spec.image)
    if base is None:
        return False
    components = {c: getattr(base, c) for c in ("cuda", "nccl", "torch", "torchvision", "torchaudio")}
    components["python"] = spec.python
    facts = TagFacts(tag=spec.image, base=spec.image, components=components,
                     facts={"platform": spec.platform, "mode": "", "base_mode": base.mode})
    return rule_applies(rule, facts)


def resolve_image(spec: LockSpec, *, parent: Lock | None, index, root: Path, matrix: Matrix,
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
                common = dict(constraints=constraints, overrides=overrides, no_deps=False,
                              extra_indexes=(), preferred=sorted(preferred.values()),
                              offline=offline)
                first = _uv_compile(spec, work, requirements + extras, **common)
                needed = _cuda_extras(root, spec, first)
                if sorted(needed) != sorted(extras):  # new, gone, or at another version than the current lock's
                    extras = needed
                    first = _uv_compile(spec, work, requirements + extras, **common)
                if extras:
                    notes.append(f"CUDA {spec.cuda_major} builds by extra: {', '.join(extras)}")
                resolved += first
            for group in (g for g in spec.groups if g.no_deps):
                try:
                    resolved += _uv_compile(spec, work, list(group.requirements), constraints=[], overrides=[],
                                            no_deps=True, extra_indexes=group.extra_indexes, preferred=[],
                                            offline=offline)
                except LockFailed as exc:
                    if not group.optional:
                        raise
                    where = ", ".join(redact(u) for u in group.extra_indexes)
                    why = "could not be reached" if "fetch" in str(exc).lower() else str(exc)[:120]
                    unlocked += [f"{r} (not locked: {where} {why} when locked)" for r in group.requirements]
        except LockFailed as exc:
            asked = "; ".join(_origin(r, spec, matrix) for g in spec.groups for r in g.requirements)
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
        "resolved": (f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} by {uv_version()}",),
        # the parent and the content it had: a parent relocked to other versions makes this lock stale
        "parent": (f"{spec.parent} {lockfile.content_digest(parent)}",) if spec.parent and parent else (),
        "built": spec.built,
        "source": tuple(notes) + tuple(f"override {o}" for o in spec.overrides),
        "unlocked": tuple(unlocked),
    }
    header = {k: tuple(v) for k, v in header.items() if v}
    return Lock(header=header, pins=tuple(pins), layers=tuple(
        layer for layer in spec.layers if any(p.layer == layer for p in pins)))


def split_siblings(spec: LockSpec, lock: Lock, siblings: list[Lock]) -> Lock:
    """Move to the last layer every pin of an earlier (non-base) layer that a sibling does not hold at the same
    version, so that siblings' earlier layers are byte-identical and shared."""
    if not spec.last_layer or not siblings:
        return lock
    moved = {}
    for pin in lock.pins:
        if pin.layer in ("base", spec.last_layer):
            continue
        if any(s.installed().get(pin.key) != pin.version or s.by_name()[pin.key].layer in ("base", spec.last_layer)
               for s in siblings):
            moved[pin.key] = spec.last_layer
    return lockfile.with_layers(lock, moved, spec.layers)


# -- the use case ---------------------------------------------------------------------------------------------


def recorded_parent(lock_: Lock) -> str | None:
    """The content digest of its parent's lock that a lock was resolved against (None: no parent)."""
    value = lock_.value("parent")
    return value.split(" ", 1)[1] if " " in value else None


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
         upgrade: bool = False, jobs: int = 4, index_factory=None, progress=None, offline: bool = False) -> LockResult:
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
        from factory.adapters.cache import Cache
        from factory.adapters.pypi import PackageIndex

        def index_factory():  # noqa: E306
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

    def one(name: str) -> Lock:
        previous = None if upgrade else current(name)
        with index_factory() as index:
            return resolve_image(specs[name], parent=parent_of(name), index=index, root=loaded.root,
                                 matrix=loaded.matrix, digest=digests[name], previous=previous, offline=offline)

    for kind in ("base", "vllm", "extra"):  # a runtime image has no lock of its own (its dev base's)
        members = [n for n in specs if specs[n].kind == kind]
        wave = {n for n in members if needs(n)}
        for name in list(wave):  # a sibling of a relocked image is relocked with it (their layers are shared)
            wave |= {s for s in specs[name].siblings if s in specs}
        result.current += [n for n in members if n in wanted and n not in wave]
        wave_list = [n for n in members if n in wave]
        wave = wave_list
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
            siblings = []
            for s in specs[name].siblings:
                if s in unsplit:
                    siblings.append(unsplit[s])
                elif s not in result.failed and current(s) is not None:
                    siblings.append(current(s))
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
