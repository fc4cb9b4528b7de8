"""The rules of a lock, pure: how a resolved environment splits into the Dockerfile's layers, which resolved
sets may not be shipped, and who asked for a requirement.

A resolved set is what `uv pip compile` gave (`factory.adapters.uv`): names, versions, hashes and uv's `via`
edges. `assign_layers` follows those edges from each layer's requirements; `check_rules` refuses a distribution
built for another CUDA major (a cu12 package in a CUDA 13 image, naming the chain that pulled it in) and applies
the matrix's `forbid_dists` / `require_dists` rules; `split_siblings` keeps `-t4`/`-t5` siblings' shared
layers byte-identical.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from factory.core import lockfile
from factory.core.components import DIST_COMPONENTS, IMAGE_COMPONENTS
from factory.core.errors import WorkFailed
from factory.core.lockfile import Lock, canonical
from factory.core.lockspec import LockSpec
from factory.core.matrix import Matrix, Rule

#: A distribution built for a CUDA major: nvidia-cublas-cu12, cupy-cuda12x, nixl-cu13, nvidia-cutlass-dsl-libs-cu13
_CUDA_BUILD = re.compile(r"-(?:cu|cuda)(?P<major>\d{2})x?$")


class LockFailed(WorkFailed):
    """An image cannot be locked: unresolvable, or its resolved set breaks a rule (exit 1)."""



@dataclass(frozen=True)
class Resolved:
    """One distribution of a resolution: its pin, the hashes of its files, and who asked for it (uv's `via`)."""

    name: str
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]



def requirement_names(requirements: tuple[str, ...]) -> set[str]:
    """The canonical names of requirement lines (`-r` lines and unparsable text left out)."""
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
    stop = requirement_names(last.requirements) if last else set()
    out = {name: "base" for name in same}
    for group in spec.groups:
        if group is last:
            continue
        roots = requirement_names(group.requirements)
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


def origin(requirement: str, spec: LockSpec, matrix: Matrix) -> str:
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


def _rule_applies(rule: Rule, spec: LockSpec, matrix: Matrix) -> bool:
    """Whether a matrix rule's `when` holds for this image: its tag's facts (an extra layer's: the tag it is
    built on), or a base's own components."""
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



def recorded_parent(lock_: Lock) -> str | None:
    """The content digest of its parent's lock that a lock was resolved against (None: no parent)."""
    value = lock_.value("parent")
    return value.split(" ", 1)[1] if " " in value else None


