"""Upstream facts as rules: what vLLM and torch releases declare in their own wheels' METADATA.

`upstream_rules` reads, for every vLLM version of the matrix, the Requires-Dist of its linux/arm64
wheel (the x86_64 wheel when a release has no aarch64 one) and, for every torch version of the bases,
torch's own Triton requirement, and turns them into `factory.core.matrix.Rule` objects that `resolve` checks
next to the matrix's own rules. They carry the ids of the matrix's shipped rules with an `upstream/`
prefix (`upstream/vllm-0.15.0/torch`), and a tag's waiver of `vllm-0.15.0/torch` covers
`upstream/vllm-0.15.0/torch` too (see `factory.core.resolve._apply_waivers`): a deliberate deviation is
explained once.

`upstream_check` lists each tag's deviations from upstream with their waivers; `outdated` lists the
releases newer than anything the matrix knows. `wheel_availability` checks on the index that every
component a wheel-mode base or image installs from wheels has a wheel the image can install (and, for
torch, a CUDA build of the base's CUDA major): the index-backed form of the matrix's `arm64/...` and
`wheels/...` rules. The PyPI client (and with it httpx) is imported only inside the functions that need
an index.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from packaging.specifiers import Specifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from factory.core.cascade import setting
from factory.core.components import IMAGE_WHEELS, PROJECTS
from factory.core.components import TRACKED_UPSTREAM as OUTDATED_COMPONENTS
from factory.core.errors import InputError
from factory.core.matrix import LoadedMatrix, Rule, version_of
from factory.core.resolve import UPSTREAM_PREFIX, Violation, resolve, tag_facts, tag_sort_key

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from factory.adapters.index import DistFile, PackageIndex

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
    from factory.adapters.index import DEFAULT_INDEX_URL, Cache, PackageIndex

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
    from factory.adapters.index import NotFound, requirement_for, select_wheel

    release = index.release("vllm", version)
    wheel = select_wheel(release.files, "linux/arm64", python_version=python)
    if wheel is None or not (wheel.is_aarch64_linux or wheel.is_x86_64_linux or wheel.is_any):
        raise NotFound(f"vllm {release.version} has no Linux wheel on {index.index_url}")
    meta = index.metadata_of(wheel)
    requires = {
        component: requirement_for(meta, PROJECTS[component], machine="aarch64", python_version=python)
        for component in PROJECTS if component not in ("vllm", "ray")
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
    from factory.adapters.index import requirement_for, select_wheel

    release = index.release("torch", version)
    arm = select_wheel([f for f in release.files if f.is_aarch64_linux], "linux/arm64", python_version=python)
    if arm is not None:
        meta = index.metadata_of(arm)
        for machine in ("aarch64", "x86_64"):
            req = requirement_for(meta, "triton", machine=machine, python_version=python)
            if req is not None:
                return TorchTriton(version, req, machine, arm)
    x86 = select_wheel([f for f in release.files if f.is_x86_64_linux], "linux/amd64", python_version=python)
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
        require = {c: spec_text(req.specifier) for c in components
                   if (req := facts.requires[c]) is not None and str(req.specifier)}
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
    versions. Raises `factory.adapters.index.UpstreamError` (a WorkFailed) when the index fails.
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

    def as_dict(self) -> dict[str, Any]:
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

    def as_dict(self) -> dict[str, Any]:
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


# -- wheel availability --------------------------------------------------------------------------

#: What a wheel-mode base installs from the index (dockerfiles/pytorch-dev-wheels.Dockerfile) ...
BASE_WHEELS = ("torch", "torchvision", "torchaudio", "nccl")
#: (what a wheel-mode vLLM image installs from it is components.IMAGE_WHEELS: dockerfiles/vllm-wheels.Dockerfile).
#: OCI platform -> the machine its wheels are tagged for.
MACHINES = {"linux/arm64": "aarch64", "linux/amd64": "x86_64"}
#: glibc 2.N of the Ubuntu releases images are built on: a manylinux_2_M wheel installs when M <= N.
#: An Ubuntu not listed here is not checked for the glibc a wheel needs.
UBUNTU_GLIBC = {"20.04": 31, "22.04": 35, "24.04": 39, "24.10": 40, "25.04": 41, "25.10": 42}
#: Legacy manylinux names (PEP 513/571/599) -> the glibc 2.N they stand for.
_LEGACY_MANYLINUX = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
_MANYLINUX = re.compile(r"^manylinux_2_(?P<minor>\d+)_(?P<arch>.+)$")
_LINUX_ARCH = re.compile(r"^(?:many|musl)?linux.*?_(?P<arch>x86_64|aarch64|i686|ppc64le|s390x|armv7l|riscv64)$")
#: CUDA wheels named for their CUDA major (nvidia-cudnn-cu13, nvidia-nccl-cu12) ...
_CU_SUFFIX = re.compile(r"-cu(?P<major>\d+)$")
#: ... and those whose own version major is the CUDA major (cuda-toolkit==13.0.3, nvidia-cuda-runtime==13.0.48).
_CUDA_VERSIONED = frozenset({"cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cuda-cupti",
                             "nvidia-cublas", "nvidia-nvjitlink", "nvidia-nvtx"})


def wheel_project(component: str, cuda: str | None = None) -> str:
    """The distribution a wheel-mode build installs for `component` (NCCL: nvidia-nccl-cu<major of `cuda`>)."""
    if component == "nccl":
        if cuda is None:
            raise ValueError("NCCL's wheel is named for a CUDA major: pass the base's cuda")
        return f"nvidia-nccl-cu{version_of('cuda', cuda).major}"
    return PROJECTS[component]


@dataclass(frozen=True)
class WheelProblem:
    """A component of a wheel-mode base or tag that cannot be installed from a suitable wheel."""

    kind: str  # "base" or "image"
    name: str  # the base's name or the tag
    component: str
    project: str
    version: str
    #: not-on-index, no-release, no-wheel, no-platform-wheel, musllinux-only, no-python-wheel, glibc-too-old,
    #: cpu-only, cuda-mismatch
    problem: str
    #: why, completing "<project> <version> ..."
    detail: str
    #: what a build would need, in a few words
    required: str
    index_url: str
    #: the wheel or index page behind the finding
    source: str
    #: for a base: the (selected) tags built on it
    tags: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return f"{'base' if self.kind == 'base' else 'tag'} {self.name}"

    @property
    def reason(self) -> str:
        return f"{self.subject} is mode wheels but {self.project} {self.version} {self.detail}"

    @property
    def rule_id(self) -> str:
        """The id it carries among `factory check --upstream`'s violations (not waivable)."""
        return f"{UPSTREAM_PREFIX}wheels/{self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "component": self.component,
            "project": self.project,
            "version": self.version,
            "problem": self.problem,
            "reason": self.reason,
            "required": self.required,
            "index_url": self.index_url,
            "source": self.source,
            "tags": list(self.tags),
        }

    def as_violation(self) -> Violation:
        """The finding as a resolver violation, for `factory check --upstream`."""
        return Violation(
            subject=f'{"base" if self.kind == "base" else "image"} "{self.name}"',
            rule=self.rule_id,
            severity="error",
            found=f"mode wheels, {self.project} {self.version}",
            required=self.required,
            reason=self.reason,
            source=self.source,
            tag=self.name if self.kind == "image" else None,
            component=self.component,
        )


@dataclass(frozen=True)
class WheelAvailability:
    """What `wheel_availability` checked and what it found."""

    bases: tuple[str, ...]  # the wheel-mode bases checked
    tags: tuple[str, ...]  # the wheel-mode tags checked
    problems: tuple[WheelProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"bases_checked": list(self.bases), "tags_checked": list(self.tags),
                "problems": [p.as_dict() for p in self.problems]}


@dataclass(frozen=True)
class _Target:
    """Where a wheel has to install: Linux on `machine`, CPython `python`, glibc 2.`glibc` (None: unknown)."""

    platform: str
    machine: str
    python: str
    ubuntu: str
    glibc: int | None
    interpreters: frozenset[Tag]  # (interpreter, abi, "any") tags CPython `python` accepts

    @classmethod
    def of(cls, platform: str, python: str, ubuntu: str) -> _Target:
        v = Version(python)
        py, cp = (v.major, v.minor), f"cp{v.major}{v.minor}"
        tags = [*cpython_tags(py, abis=[cp], platforms=["any"]), *compatible_tags(py, cp, platforms=["any"])]
        return cls(platform, MACHINES[platform], python, ubuntu, UBUNTU_GLIBC.get(ubuntu), frozenset(tags))

    def platform_kind(self, platform: str) -> tuple[str, int] | None:
        """("any", 0), ("glibc", 2.N's N) or ("musl", 0) for a platform tag of this machine; None otherwise."""
        if platform == "any":
            return ("any", 0)
        found = _MANYLINUX.match(platform)
        if found and found["arch"] == self.machine:
            return ("glibc", int(found["minor"]))
        for alias, minor in _LEGACY_MANYLINUX.items():
            if platform == f"{alias}_{self.machine}":
                return ("glibc", minor)
        if platform == f"linux_{self.machine}":
            return ("glibc", 0)
        if platform.startswith("musllinux_") and platform.endswith(f"_{self.machine}"):
            return ("musl", 0)
        return None

    def python_ok(self, tag: Tag) -> bool:
        return Tag(tag.interpreter, tag.abi, "any") in self.interpreters

    def glibc_ok(self, tag: Tag) -> bool:
        kind = self.platform_kind(tag.platform)
        return kind is not None and kind[0] != "musl" and (self.glibc is None or kind[1] <= self.glibc)

    def installs(self, wheel: DistFile) -> bool:
        return any(self.python_ok(t) and self.glibc_ok(t) for t in wheel.tags)


@dataclass(frozen=True)
class _Choice:
    """The wheel an installer would take for `project==version`, or why there is none."""

    index: PackageIndex
    wheel: DistFile | None
    problem: str = ""
    detail: str = ""
    required: str = ""
    source: str = ""


def _pinned(version: Version, wanted: Version) -> bool:
    """`version` satisfies `==wanted` (a pin without a local label accepts any: 2.9.1+cu130 for 2.9.1)."""
    return version == wanted or (not wanted.local and Version(version.public) == wanted)


def _machine_word(platform: str) -> str:
    if platform == "any":
        return "any platform"
    found = _LINUX_ARCH.match(platform)
    if found:
        return f"Linux {found['arch']}"
    if platform.startswith("macosx"):
        return "macOS"
    if platform.startswith("win"):
        return "Windows"
    return platform


def _why_no_wheel(wheels: list[DistFile], target: _Target) -> tuple[str, str]:
    """(problem, detail) when none of a release's `wheels` installs on `target`."""
    machine = target.machine
    tags = [t for f in wheels for t in f.tags]
    mine = [t for t in tags if target.platform_kind(t.platform) is not None]
    if not mine:
        others = ", ".join(sorted({_machine_word(t.platform) for t in tags}))
        return "no-platform-wheel", f"has no {machine} wheel (its wheels are for {others} only)"
    glibc = [t for t in mine if (kind := target.platform_kind(t.platform)) is not None and kind[0] != "musl"]
    if not glibc:
        musl = ", ".join(sorted({t.platform for t in mine}))
        return "musllinux-only", (f"has no {machine} wheel for glibc (only {musl}, which does not install on "
                                  f"Ubuntu {target.ubuntu})")
    for_python = [t for t in glibc if target.python_ok(t)]
    if not for_python:
        interpreters = ", ".join(sorted({f"{t.interpreter}-{t.abi}" for t in glibc}))
        return "no-python-wheel", (f"has no {machine} wheel for CPython {target.python} (its {machine} wheels "
                                   f"are for {interpreters})")
    need = min(kind[1] for t in for_python if (kind := target.platform_kind(t.platform)) is not None)
    return "glibc-too-old", (f"has no {machine} wheel that installs on Ubuntu {target.ubuntu}'s glibc "
                             f"2.{target.glibc} (its {machine} wheels for CPython {target.python} need glibc "
                             f"2.{need} or newer)")


def _choose(indexes: tuple[PackageIndex, ...], project: str, version: str, target: _Target) -> _Choice:
    """What `pip/uv install project==version` would take from `indexes` (the first that has the project)."""
    from factory.adapters.index import NotFound, select_wheel

    for ix in indexes:
        try:
            files = ix.files(project)
        except NotFound:
            continue
        break
    else:
        where = " or ".join(i.index_url for i in indexes)
        return _Choice(indexes[0], None, "not-on-index", f"is not on {where} (no project {project})",
                       f"{project} {version} on the index", indexes[0].project_url(project))
    page = ix.project_url(project)
    wanted = Version(version)
    release = [f for f in files if f.version is not None and _pinned(f.version, wanted)]
    wheel_text = f"a {target.platform} wheel of {project} {version}"
    if not release:
        return _Choice(ix, None, "no-release", f"is not on {ix.index_url} (no release {version} of {project})",
                       f"{project} {version} on the index", page)
    wheels = [f for f in release if f.is_wheel]
    if not wheels:
        names = ", ".join(sorted(f.filename for f in release))
        return _Choice(ix, None, "no-wheel", f"has no wheel on {ix.index_url}, only {names} (a source build)",
                       wheel_text, page)
    fitting = [f for f in wheels if target.installs(f)]
    if not fitting:
        problem, detail = _why_no_wheel(wheels, target)
        return _Choice(ix, None, problem, detail, wheel_text, page)
    versions = [f.version for f in fitting if f.version is not None]
    newest_fit = max(versions) if versions else None
    return _Choice(ix, select_wheel([f for f in fitting if f.version == newest_fit], None))


def cuda_majors(requirements: Iterable[Requirement]) -> dict[int, list[str]]:
    """CUDA major -> the requirements that pull it (`nvidia-*-cu13`, `cuda-toolkit==13.0.3`, ...)."""
    out: dict[int, list[str]] = {}
    for req in requirements:
        name = canonicalize_name(req.name)
        major = None
        suffix = _CU_SUFFIX.search(name)
        if suffix:
            digits = suffix["major"]
            major = int(digits if len(digits) <= 2 else digits[:-1])  # cu13, or cu130 -> 13
        elif name in _CUDA_VERSIONED:
            for spec in req.specifier:
                if spec.operator in ("==", "===", "~=", ">="):
                    try:
                        major = Version(spec.version.removesuffix(".*")).major
                    except InvalidVersion:
                        continue
                    break
        if major is not None:
            out.setdefault(major, []).append(f"{req.name}{spec_text(req.specifier)}")
    return out


def _torch_cuda(index: PackageIndex, wheel: DistFile, target: _Target) -> tuple[bool, dict[int, list[str]]]:
    """(whether torch's `wheel` is a CUDA build, the CUDA majors its METADATA pulls for the target).

    As `PackageIndex.torch_aarch64_is_cuda`: CUDA when its Requires-Dist, evaluated for the target, pulls
    NVIDIA CUDA packages, else when it is big (libraries bundled); by size alone when its METADATA cannot
    be read. Offline misses, an unreachable index and METADATA that does not match its advertised hash are
    errors, not guesses.
    """
    from factory.adapters.index import (
        TORCH_CUDA_WHEEL_MIN_SIZE,
        BadMetadataHash,
        NotInCache,
        UpstreamError,
        UpstreamUnavailable,
        applicable_requirements,
        is_cuda_requirement,
        target_environment,
    )

    big = wheel.size is not None and wheel.size > TORCH_CUDA_WHEEL_MIN_SIZE
    try:
        meta = index.metadata_of(wheel)
    except (NotInCache, UpstreamUnavailable, BadMetadataHash):
        raise
    except UpstreamError:
        if wheel.size is None:
            raise
        return big, {}
    cuda = [r for r in applicable_requirements(meta, target_environment(target.machine, target.python))
            if is_cuda_requirement(r)]
    if not cuda:
        return big, {}
    return True, cuda_majors(cuda)


def _selection(loaded: LoadedMatrix, tags: Iterable[str] | None) -> tuple[list[str], list[str], list[str]]:
    """(the selected tags, the wheel-mode bases among theirs, the wheel-mode tags among them)."""
    matrix = loaded.matrix
    selected = select_tags(loaded, tags)
    names = sorted(matrix.image if selected is None else selected, key=tag_sort_key)
    if selected is None:
        base_names = list(matrix.base)
    else:
        base_names = list(dict.fromkeys(matrix.image[t].base for t in names if matrix.image[t].base in matrix.base))
    bases = [b for b in base_names if matrix.base[b].mode == "wheels"]
    images = [t for t in names if matrix.image[t].mode == "wheels"]
    return names, bases, images


def wheel_availability(loaded: LoadedMatrix, tags: Iterable[str] | None = None, *, index_url: str | None = None,
                       torch_index_url: str | None = None, offline: bool = False, refresh: bool = False,
                       index: PackageIndex | None = None,
                       torch_index: PackageIndex | None = None) -> WheelAvailability:
    """Check on the index that every wheel-mode base and tag (of `tags`, default all) can install its wheels.

    A wheel-mode base installs torch, torchvision, torchaudio and nvidia-nccl-cu<CUDA major> (looked up
    first on `torch_index_url`, default the matrix's `defaults.torch_index_url`, then on the index, as uv
    does with an extra index); a wheel-mode tag installs vllm, triton, flashinfer-python, transformers and
    ray from the index (`index_url`, default the matrix's `defaults.index_url`). Each needs, at its pinned
    version, a wheel for the matrix platform that CPython `python` installs on the Ubuntu's glibc (manylinux
    or pure; musllinux wheels do not install on Ubuntu). torch's wheel must moreover be a CUDA build pulling
    the base's CUDA major. Source-mode bases and tags are not checked. Raises `factory.adapters.index.NotInCache`
    offline when an answer is not cached, `UpstreamUnavailable` when the index cannot be reached.
    """
    matrix = loaded.matrix
    names, bases, images = _selection(loaded, tags)
    if not bases and not images:
        return WheelAvailability((), (), ())
    platform = matrix.defaults.platform
    if platform not in MACHINES:
        raise InputError(f"{loaded.path}: cannot check wheels for platform {platform!r} "
                         f"(known: {', '.join(MACHINES)})")
    problems: list[WheelProblem] = []
    choices: dict[tuple[tuple[str, ...], str, str, _Target], _Choice] = {}
    with ExitStack() as stack:
        ix = stack.enter_context(open_index(loaded, index_url=index_url, offline=offline, refresh=refresh,
                                            index=index))
        tix = torch_index
        extra_url = torch_index_url or matrix.defaults.torch_index_url
        if tix is None and extra_url:
            tix = stack.enter_context(open_index(index_url=extra_url, offline=offline, refresh=refresh))
        base_indexes = (tix, ix) if tix is not None and tix.index_url != ix.index_url else (ix,)

        def choose(indexes: tuple[PackageIndex, ...], project: str, version: str, target: _Target) -> _Choice:
            key = (tuple(i.index_url for i in indexes), project, version, target)
            if key not in choices:
                choices[key] = _choose(indexes, project, version, target)
            return choices[key]

        def found(kind: str, name: str, component: str, project: str, version: str, choice: _Choice,
                  used_by: tuple[str, ...] = ()) -> None:
            problems.append(WheelProblem(kind, name, component, project, version, choice.problem, choice.detail,
                                         choice.required, choice.index.index_url, choice.source, used_by))

        for name in bases:
            base = matrix.base[name]
            target = _Target.of(platform, setting(matrix, "python", base=base),
                                setting(matrix, "ubuntu", base=base))
            used_by = tuple(t for t in names if matrix.image[t].base == name)
            cuda_major = version_of("cuda", base.cuda).major
            for component in BASE_WHEELS:
                project, version = wheel_project(component, base.cuda), getattr(base, component)
                choice = choose(base_indexes, project, version, target)
                if choice.wheel is None:
                    found("base", name, component, project, version, choice, used_by)
                    continue
                if component != "torch":
                    continue
                is_cuda, majors = _torch_cuda(choice.index, choice.wheel, target)
                source = _url(choice.wheel)
                if not is_cuda:
                    found("base", name, component, project, version, _Choice(
                        choice.index, None, "cpu-only",
                        f"has no {target.machine} wheel that is a CUDA build (its {target.machine} wheel is "
                        "CPU-only)", f"an {target.machine} CUDA build of torch {version}", source), used_by)
                elif majors and set(majors) != {cuda_major}:
                    other = min((m for m in majors if m != cuda_major), default=cuda_major)
                    pulls = "/".join(str(m) for m in sorted(majors))
                    found("base", name, component, project, version, _Choice(
                        choice.index, None, "cuda-mismatch",
                        f"pulls CUDA {pulls} libraries (its {target.machine} wheel requires "
                        f"{', '.join(majors[other][:2])}), not the base's CUDA {cuda_major} (cuda = {base.cuda})",
                        f"a torch {version} built for CUDA {cuda_major}", source), used_by)
        for tag in images:
            facts = tag_facts(matrix, tag)
            target = _Target.of(platform, facts.components["python"], facts.components["ubuntu"])
            for component in IMAGE_WHEELS:
                project, version = wheel_project(component), facts.components[component]
                choice = choose((ix,), project, version, target)
                if choice.wheel is None:
                    found("image", tag, component, project, version, choice)
    return WheelAvailability(tuple(bases), tuple(images), tuple(problems))


def wheel_violations(loaded: LoadedMatrix, tags: Iterable[str] | None = None, **options: Any) -> tuple[Violation, ...]:
    """`wheel_availability`'s problems as (unwaivable) violations, for `factory check --upstream`."""
    return tuple(p.as_violation() for p in wheel_availability(loaded, tags, **options).problems)
