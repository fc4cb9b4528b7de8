"""Upstream facts as rules: what vLLM and torch releases declare in their own wheels' METADATA.

`upstream_rules` reads, for every vLLM version of the matrix, the Requires-Dist of its linux/arm64
wheel (the x86_64 wheel when a release has no aarch64 one) and, for every torch version of the bases,
torch's own Triton requirement, and turns them into `factory.matrix.Rule` objects that `resolve` checks
next to the matrix's own rules. They carry the ids of the matrix's shipped rules with an `upstream/`
prefix (`upstream/vllm-0.15.0/torch`), and a tag's waiver of `vllm-0.15.0/torch` covers
`upstream/vllm-0.15.0/torch` too (see `factory.resolve._apply_waivers`): a deliberate deviation is
explained once.

`upstream_check` lists each tag's deviations from upstream with their waivers; `outdated` lists the
releases newer than anything the matrix knows. The PyPI client (and with it httpx) is imported only
inside the functions that need an index.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from packaging.specifiers import Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from factory.errors import InputError
from factory.matrix import LoadedMatrix, Rule
from factory.resolve import UPSTREAM_PREFIX, resolve, tag_sort_key

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from factory.pypi import DistFile, PackageIndex

#: Matrix component -> the PyPI project it is released as.
PROJECTS = {
    "vllm": "vllm",
    "transformers": "transformers",
    "flashinfer": "flashinfer-python",
    "triton": "triton",
    "torch": "torch",
    "torchvision": "torchvision",
    "torchaudio": "torchaudio",
}
#: Components `outdated` looks for newer releases of.
OUTDATED_COMPONENTS = ("vllm", "transformers", "flashinfer", "triton", "torch")
#: vLLM rule suffix -> the components (declared by vLLM's wheel) it requires, as in the shipped rules.
VLLM_RULES = {
    "torch": ("torch", "torchvision", "torchaudio"),
    "flashinfer": ("flashinfer",),
    "transformers": ("transformers",),
}
_UPSTREAM_ID = re.compile(r"^upstream/(?P<project>[a-z]+)-(?P<version>[^/]+)/")
_OPERATOR_ORDER = {"===": 0, "==": 0, "~=": 1, ">=": 2, ">": 2, "<=": 3, "<": 3, "!=": 4}


# -- the index ---------------------------------------------------------------------------------


@contextmanager
def open_index(loaded: LoadedMatrix | None = None, *, index_url: str | None = None, offline: bool = False,
               refresh: bool = False, index: PackageIndex | None = None) -> Iterator[PackageIndex]:
    """`index` itself when given, else a cached client for `index_url` (default: the matrix's index)."""
    if index is not None:
        yield index
        return
    from factory.cache import Cache
    from factory.pypi import DEFAULT_INDEX_URL, PackageIndex

    url = index_url or (loaded.matrix.defaults.index_url if loaded is not None else DEFAULT_INDEX_URL)
    with PackageIndex(url, cache=Cache(), offline=offline, refresh=refresh) as client:
        yield client


def spec_text(specifier: SpecifierSet | str) -> str:
    """A specifier set written the way people write it: pins and lower bounds first (`>=4.56.0,<5`)."""
    specs = SpecifierSet(str(specifier))

    def order(spec: Specifier) -> tuple[int, str]:
        return (_OPERATOR_ORDER.get(spec.operator, 5), spec.version)

    return ",".join(str(spec) for spec in sorted(specs, key=order))


def _url(wheel: DistFile) -> str:
    return wheel.url.split("#", 1)[0]


def _machine(wheel: DistFile) -> str:
    if wheel.is_aarch64_linux:
        return "aarch64"
    if wheel.is_x86_64_linux:
        return "x86_64"
    return "any"


# -- facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VllmFacts:
    """What one vLLM release declares for linux/arm64 (markers evaluated for aarch64 Linux)."""

    version: str
    wheel: DistFile
    released: datetime | None
    #: component -> its requirement (None: not declared)
    requires: dict[str, Requirement | None]

    @property
    def machine(self) -> str:
        """`aarch64`, or the platform of the wheel read instead when the release has no aarch64 wheel."""
        return _machine(self.wheel)

    @property
    def has_aarch64_wheel(self) -> bool:
        return self.wheel.is_aarch64_linux


def vllm_facts(index: PackageIndex, version: str, *, python: str = "3.12") -> VllmFacts:
    """Read the METADATA of vLLM `version`'s arm64 wheel (x86_64 when it has none)."""
    from factory.pypi import NotFound, requirement_for, select_wheel

    release = index.release("vllm", version)
    wheel = select_wheel(release.files, "linux/arm64")
    if wheel is None or not (wheel.is_aarch64_linux or wheel.is_x86_64_linux or wheel.is_any):
        raise NotFound(f"vllm {release.version} has no Linux wheel on {index.index_url}")
    meta = index.metadata_of(wheel)
    requires = {
        component: requirement_for(meta, PROJECTS[component], machine="aarch64", python_version=python)
        for component in ("torch", "torchvision", "torchaudio", "flashinfer", "transformers", "triton")
    }
    return VllmFacts(version=version, wheel=wheel, released=release.uploaded, requires=requires)


@dataclass(frozen=True)
class TorchTriton:
    """torch's own Triton requirement and where it was read."""

    torch: str
    requirement: Requirement | None
    #: the machine the requirement's markers were evaluated for (aarch64, else x86_64)
    machine: str
    wheel: DistFile | None

    @property
    def declared(self) -> str:
        """Where the requirement was read, for a rule's reason."""
        spec = spec_text(self.requirement.specifier) if self.requirement is not None else ""
        if self.requirement is None:
            return f"torch {self.torch}'s wheels declare no Triton"
        if self.machine == "aarch64":
            return f"torch {self.torch} aarch64 wheel METADATA declares triton{spec}"
        if self.wheel is not None and self.wheel.is_aarch64_linux:
            return (f"torch {self.torch} wheel METADATA declares triton{spec} for x86_64 only "
                    "(evaluated for x86_64: its aarch64 wheel declares no Triton)")
        return (f"torch {self.torch} x86_64 wheel METADATA declares triton{spec} "
                "(evaluated for x86_64: torch has no aarch64 wheel declaring Triton)")


def torch_triton(index: PackageIndex, version: str, *, python: str = "3.12") -> TorchTriton:
    """torch `version`'s Triton requirement: for aarch64 when its aarch64 wheel declares one, else x86_64."""
    from factory.pypi import requirement_for, select_wheel

    release = index.release("torch", version)
    arm = select_wheel([f for f in release.files if f.is_aarch64_linux], "linux/arm64")
    if arm is not None:
        meta = index.metadata_of(arm)
        for machine in ("aarch64", "x86_64"):
            req = requirement_for(meta, "triton", machine=machine, python_version=python)
            if req is not None:
                return TorchTriton(version, req, machine, arm)
    x86 = select_wheel([f for f in release.files if f.is_x86_64_linux], "linux/amd64")
    if x86 is not None:
        req = requirement_for(index.metadata_of(x86), "triton", machine="x86_64", python_version=python)
        if req is not None:
            return TorchTriton(version, req, "x86_64", x86)
    return TorchTriton(version, None, "aarch64", arm or x86)


# -- rules ---------------------------------------------------------------------------------------


def vllm_rules(facts: VllmFacts, *, prefix: str = UPSTREAM_PREFIX) -> list[Rule]:
    """`vllm-<ver>/torch`, `/flashinfer`, `/transformers` (ids prefixed with `prefix`) from vLLM's METADATA."""
    version = facts.version
    read_from = "" if facts.has_aarch64_wheel else f" (read from its {facts.machine} wheel: no aarch64 wheel)"
    rules = []
    for suffix, components in VLLM_RULES.items():
        require = {c: spec_text(facts.requires[c].specifier) for c in components
                   if facts.requires[c] is not None and str(facts.requires[c].specifier)}
        if not require:
            continue
        declared = ", ".join(f"{PROJECTS[c]}{spec}" for c, spec in require.items())
        rules.append(Rule(
            id=f"{prefix}vllm-{version}/{suffix}",
            when={"vllm": f"=={version}"},
            require=require,
            reason=f"vLLM {version} wheel METADATA declares {declared}{read_from}",
            source=_url(facts.wheel),
        ))
    return rules


def triton_rule(triton: TorchTriton, *, prefix: str = UPSTREAM_PREFIX) -> Rule | None:
    """`torch-<ver>/triton` (id prefixed with `prefix`) from torch's own METADATA, or None."""
    req = triton.requirement
    if req is None or not str(req.specifier) or triton.wheel is None:
        return None
    spec = spec_text(req.specifier)
    return Rule(
        id=f"{prefix}torch-{triton.torch}/triton",
        when={"torch": f"=={triton.torch}"},
        require={"triton": spec},
        reason=triton.declared,
        source=_url(triton.wheel),
    )


def _versions(loaded: LoadedMatrix, tags: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """The vLLM versions of the (selected) tags and the torch versions of their bases, in order."""
    matrix = loaded.matrix
    if tags is None:
        images = list(matrix.image.values())
        bases = list(matrix.base.values())
    else:
        images = [matrix.image[t] for t in tags]
        bases = [matrix.base[i.base] for i in images if i.base in matrix.base]
    vllm = sorted({i.vllm for i in images}, key=Version)
    torch = sorted({b.torch for b in bases}, key=Version)
    return vllm, torch


def select_tags(loaded: LoadedMatrix, tags: Iterable[str] | None) -> list[str] | None:
    """Validated tag names (None: all); an unknown tag is an InputError naming close ones."""
    if not tags:
        return None
    known = loaded.matrix.image
    out = []
    for tag in tags:
        if tag not in known:
            close = difflib.get_close_matches(tag, list(known), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise InputError(f"{loaded.path}: no tag {tag!r} in the matrix{hint}")
        if tag not in out:
            out.append(tag)
    return out


def upstream_rules(loaded: LoadedMatrix, *, index_url: str | None = None, offline: bool = False,
                   refresh: bool = False, index: PackageIndex | None = None,
                   tags: Iterable[str] | None = None) -> tuple[Rule, ...]:
    """Rules from upstream METADATA for every vLLM version of the matrix and every torch of its bases.

    Ids are the matrix's own rule ids prefixed with `upstream/`; `tags` limits them to those tags'
    versions. Raises `factory.pypi.UpstreamError` (a WorkFailed) when the index fails.
    """
    python = loaded.matrix.defaults.python
    vllm_versions, torch_versions = _versions(loaded, select_tags(loaded, tags))
    rules: list[Rule] = []
    with open_index(loaded, index_url=index_url, offline=offline, refresh=refresh, index=index) as ix:
        for version in vllm_versions:
            rules.extend(vllm_rules(vllm_facts(ix, version, python=python)))
        for version in torch_versions:
            rule = triton_rule(torch_triton(ix, version, python=python))
            if rule is not None:
                rules.append(rule)
    return tuple(rules)


# -- check ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deviation:
    """A tag's component outside what an upstream release declares."""

    tag: str
    component: str
    matrix_value: str | None
    requirement: str
    source_release: str
    rule_id: str
    waived: bool
    waiver_reason: str | None
    source: str = ""
    reason: str = ""

    @property
    def waiver_rule(self) -> str:
        """The rule id a waiver names to allow this deviation (the matrix's id, without `upstream/`)."""
        return self.rule_id.removeprefix(UPSTREAM_PREFIX)

    def as_dict(self) -> dict:
        return {
            "tag": self.tag,
            "component": self.component,
            "matrix_value": self.matrix_value,
            "requirement": self.requirement,
            "source_release": self.source_release,
            "rule_id": self.rule_id,
            "waiver_rule": self.waiver_rule,
            "waived": self.waived,
            "waiver_reason": self.waiver_reason,
            "reason": self.reason,
            "source": self.source,
        }


def source_release(rule_id: str) -> str:
    """`upstream/vllm-0.15.0/torch` -> `vllm 0.15.0`."""
    found = _UPSTREAM_ID.match(rule_id)
    return f"{found['project']} {found['version']}" if found else rule_id


def upstream_check(loaded: LoadedMatrix, tags: Iterable[str] | None = None, *, index_url: str | None = None,
                   offline: bool = False, refresh: bool = False,
                   index: PackageIndex | None = None) -> list[Deviation]:
    """Every deviation of the (selected) tags from what upstream declares, waived or not."""
    selected = select_tags(loaded, tags)
    rules = upstream_rules(loaded, index_url=index_url, offline=offline, refresh=refresh, index=index,
                           tags=selected)
    resolution = resolve(loaded, rules)
    wanted = set(selected) if selected is not None else set(resolution.tags)
    out = []
    for v in resolution.violations:
        if not v.rule.startswith(UPSTREAM_PREFIX) or v.tag not in wanted or v.component is None:
            continue
        out.append(Deviation(
            tag=v.tag,
            component=v.component,
            matrix_value=resolution.tags[v.tag].components.get(v.component),
            requirement=v.required,
            source_release=source_release(v.rule),
            rule_id=v.rule,
            waived=v.waived,
            waiver_reason=v.waiver.reason if v.waiver else None,
            source=v.source,
            reason=v.reason,
        ))
    out.sort(key=lambda d: (tag_sort_key(d.tag), d.rule_id, d.component))
    return out


# -- outdated ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outdated:
    """A release newer than the newest version of its component the matrix knows."""

    component: str
    project: str
    newest_known: str
    version: str
    uploaded: datetime | None

    def as_dict(self) -> dict:
        return {
            "component": self.component,
            "project": self.project,
            "newest_known": self.newest_known,
            "version": self.version,
            "uploaded": self.uploaded.isoformat() if self.uploaded else None,
        }


def known_versions(loaded: LoadedMatrix, component: str) -> list[str]:
    """Every version of `component` the matrix names (bases' and images' values)."""
    matrix = loaded.matrix
    values = [getattr(b, component, None) for b in matrix.base.values()]
    values += [getattr(i, component, None) for i in matrix.image.values()]
    return [v for v in values if isinstance(v, str)]


def newest(versions: Iterable[str]) -> str | None:
    parsed = []
    for text in versions:
        try:
            parsed.append((Version(text), text))
        except InvalidVersion:
            continue
    return max(parsed)[1] if parsed else None


def outdated(loaded: LoadedMatrix, *, index_url: str | None = None, offline: bool = False,
             refresh: bool = False, index: PackageIndex | None = None,
             components: Iterable[str] = OUTDATED_COMPONENTS) -> list[Outdated]:
    """Final, unyanked releases newer than the newest version the matrix knows, per component."""
    out = []
    with open_index(loaded, index_url=index_url, offline=offline, refresh=refresh, index=index) as ix:
        for component in components:
            known = newest(known_versions(loaded, component))
            if known is None:
                continue
            floor = Version(known)
            project = PROJECTS[component]
            for release in ix.releases(project):
                v = release.parsed_version
                if release.yanked or v.is_prerelease or v <= floor:
                    continue
                out.append(Outdated(component, project, known, release.version, release.uploaded))
    return out
