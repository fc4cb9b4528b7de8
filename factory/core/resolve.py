"""The resolver: checks every tag against the matrix's rules and the built-in structural rules.

Every violation is collected (never just the first), each carrying the rule's reason and source, and a
tag's waiver turns a violation into a visible, explained deviation instead of hiding it.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from factory.core.cascade import setting
from factory.core.components import COMPONENTS
from factory.core.matrix import (
    FACTS,
    Base,
    Image,
    LoadedMatrix,
    Matrix,
    Rule,
    Waiver,
    extra_images,
    version_of,
)

BUILTIN_SOURCE = "built-in (factory/core/resolve.py)"

#: Structural rules that hold for every matrix; ids are what a waiver or `--list-rules` names.
BUILTIN_RULES = {
    "builtin/tag-name": "a vLLM tag is <vllm version>-t<transformers major>",
    "builtin/base-name": "a base name starts with its torch version and ends in cu<cuda major><minor>",
    "builtin/base-exists": "every tag's base is defined under [base]",
    "builtin/sm121-cuda13": "sm_121 (GB10) code needs CUDA 13 or newer",
    "builtin/one-default": "at most one tag is the default (`latest`)",
    "builtin/extra-on": "every pattern in an extra layer's `on` matches a vLLM tag",
    "builtin/extra-name": "an extra layer's image name <tag>-<suffix> is not also a vLLM tag or a base",
    "builtin/lock": "(`check --lock`) every image has a current lock (`factory lock`) whose distributions break "
                    "no rule: nothing built for another CUDA major, the matrix's forbid_dists/require_dists",
    "builtin/waiver-unknown": "a waiver names a rule that exists",
    "builtin/waiver-unused": "a waiver waives something (stale waivers hide future deviations)",
}


@dataclass(frozen=True)
class TagFacts:
    """Everything rules can see about one vLLM tag: component versions (text) and platform facts."""

    tag: str
    base: str
    components: dict[str, str]
    facts: dict[str, str]


@dataclass(frozen=True)
class Violation:
    subject: str
    rule: str
    severity: str
    found: str
    required: str
    reason: str
    source: str
    tag: str | None = None
    component: str | None = None
    waiver: Waiver | None = None

    @property
    def waived(self) -> bool:
        return self.waiver is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "tag": self.tag,
            "rule": self.rule,
            "severity": self.severity,
            "component": self.component,
            "found": self.found,
            "required": self.required,
            "reason": self.reason,
            "source": self.source,
            "waived": self.waived,
            "waiver_reason": self.waiver.reason if self.waiver else None,
        }


@dataclass(frozen=True)
class Resolution:
    loaded: LoadedMatrix
    tags: dict[str, TagFacts]
    violations: tuple[Violation, ...] = field(default=())

    @property
    def matrix(self) -> Matrix:
        return self.loaded.matrix

    @property
    def blocking(self) -> tuple[Violation, ...]:
        """Unwaived errors: what makes `factory check` exit 1."""
        return tuple(v for v in self.violations if v.severity == "error" and not v.waived)

    @property
    def waived(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.waived)

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "warning" and not v.waived)

    @property
    def ok(self) -> bool:
        return not self.blocking


def tag_facts(matrix: Matrix, tag: str) -> TagFacts:
    """The components of a tag: its base's (when the base exists), its own, and the defaults."""
    image = matrix.image[tag]
    base = matrix.base.get(image.base)
    defaults = matrix.defaults
    components: dict[str, str] = {
        "ubuntu": setting(matrix, "ubuntu", image=image),
        "python": setting(matrix, "python", image=image),
    }
    if base is not None:
        for name in ("cuda", "nccl", "torch", "torchvision", "torchaudio"):
            components[name] = getattr(base, name)
    components.update(
        triton=image.triton,
        flashinfer=image.flashinfer,
        vllm=image.vllm,
        transformers=image.transformers,
        ray=setting(matrix, "ray", image=image),
    )
    facts = {
        "platform": defaults.platform,
        "mode": image.mode,
        "base_mode": base.mode if base else "",
    }
    return TagFacts(tag=tag, base=image.base, components=components, facts=facts)


def resolve(loaded: LoadedMatrix, extra_rules: Iterable[Rule] = ()) -> Resolution:
    """Check the whole matrix; `extra_rules` lets upstream facts join the matrix's own rules."""
    matrix = loaded.matrix
    rules = tuple(matrix.rule) + tuple(extra_rules)
    tags = {tag: tag_facts(matrix, tag) for tag in sorted(matrix.image, key=tag_sort_key)}
    found: list[Violation] = []
    for name, base in sorted(matrix.base.items()):
        found.extend(_check_base(matrix, name, base))
    defaults = [tag for tag, image in matrix.image.items() if image.default]
    if len(defaults) > 1:
        found.append(
            _builtin(
                "builtin/one-default", "matrix", found=", ".join(sorted(defaults)), required="one default tag"
            )
        )
    found.extend(_check_extras(matrix))
    known_rules = {rule.id for rule in rules} | set(BUILTIN_RULES)
    for tag, facts in tags.items():
        image = matrix.image[tag]
        tag_violations = list(_check_tag(matrix, tag, image, facts))
        for rule in rules:
            tag_violations.extend(_check_rule(rule, facts))
        # a waiver of a distribution rule is used where the lock is resolved (`factory lock`), not here
        lock_time = {r.id for r in rules if (r.forbid_dists or r.require_dists) and rule_applies(r, facts)}
        found.extend(_apply_waivers(tag, image, tag_violations, known_rules, lock_time))
    return Resolution(loaded=loaded, tags=tags, violations=tuple(found))


def tag_sort_key(tag: str) -> tuple[int, Version, str, str]:
    """Tags in release order: by vLLM version, then the transformers variant; odd names last."""
    head, _, variant = tag.partition("-")
    try:
        return (0, Version(head), variant, tag)
    except ValueError:
        return (1, Version("0"), "", tag)


def _close_matches(word: str, possibilities: list[str], n: int) -> list[str]:
    """Names like `word`, for a hint; difflib is imported only when a hint is needed."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n)


def _builtin(rule: str, subject: str, *, found: str, required: str, tag: str | None = None,
             component: str | None = None, severity: str = "error") -> Violation:
    return Violation(
        subject=subject, rule=rule, severity=severity, found=found, required=required,
        reason=BUILTIN_RULES[rule], source=BUILTIN_SOURCE, tag=tag, component=component,
    )


def _check_base(matrix: Matrix, name: str, base: Base) -> Iterable[Violation]:
    subject = f'base "{name}"'
    cuda = version_of("cuda", base.cuda)
    suffix = f"cu{cuda.major}{cuda.minor}"
    if not (name.startswith(f"{base.torch}-") and name.endswith(f"-{suffix}")):
        yield _builtin(
            "builtin/base-name", subject, found=name, required=f"{base.torch}-[variant-]{suffix}"
        )
    arch = matrix.defaults.build
    if (arch.cuda_arch.startswith("sm_121") or "12.1" in arch.torch_cuda_arch_list) and cuda.major < 13:
        yield _builtin("builtin/sm121-cuda13", subject, found=f"cuda {base.cuda}", required="cuda >=13",
                       component="cuda")


def _check_extras(matrix: Matrix) -> Iterable[Violation]:
    for name, extra in sorted(matrix.extra.items()):
        subject = f'extra "{name}"'
        for pattern in extra.on:
            if not any(fnmatch.fnmatchcase(tag, pattern) for tag in matrix.image):
                close = _close_matches(pattern, list(matrix.image), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                yield _builtin("builtin/extra-on", subject, found=f"on {pattern!r}",
                               required=f"a vLLM tag of the matrix{hint}")
    for image_name, (name, tag) in extra_images(matrix).items():
        if image_name in matrix.image or image_name in matrix.base:
            yield _builtin("builtin/extra-name", f'extra "{name}"', found=image_name,
                           required="a name no tag or base has", tag=tag)


def _check_tag(matrix: Matrix, tag: str, image: Image, facts: TagFacts) -> Iterable[Violation]:
    subject = f'image "{tag}"'
    transformers = version_of("transformers", image.transformers)
    expected = f"{image.vllm}-t{transformers.major}"
    if tag != expected:
        yield _builtin("builtin/tag-name", subject, found=tag, required=expected, tag=tag)
    if image.base not in matrix.base:
        close = _close_matches(image.base, list(matrix.base), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        yield _builtin(
            "builtin/base-exists", subject, found=f"base = {image.base!r}",
            required=f"one of {', '.join(sorted(matrix.base))}{hint}", tag=tag, component="base",
        )


def rule_applies(rule: Rule, facts: TagFacts) -> bool:
    for key, wanted in rule.when.items():
        if key in FACTS:
            if facts.facts.get(key) != wanted:
                return False
        elif not _satisfies(key, facts.components.get(key), wanted):
            return False
    return True


def _check_rule(rule: Rule, facts: TagFacts) -> Iterable[Violation]:
    if not rule_applies(rule, facts):
        return
    for key, wanted in rule.require.items():
        have = facts.facts.get(key) if key in FACTS else facts.components.get(key)
        holds = have == wanted if key in FACTS else _satisfies(key, have, wanted)
        if not holds:
            yield Violation(
                subject=f'image "{facts.tag}"', rule=rule.id, severity=rule.severity,
                found=f"{key} {have}" if have is not None else f"{key} not set",
                required=f"{key}{wanted}" if key in COMPONENTS else f"{key} = {wanted}",
                reason=rule.reason, source=rule.source, tag=facts.tag, component=key,
            )


def _satisfies(component: str, text: str | None, spec: str) -> bool:
    if text is None:
        return False
    return _specifier(spec).contains(version_of(component, text), prereleases=True)


@functools.lru_cache(maxsize=4096)
def _specifier(spec: str) -> SpecifierSet:
    """A rule's specifier, parsed once: every rule is checked against every tag."""
    return SpecifierSet(spec)


#: Prefix of rules derived from upstream metadata (factory/usecases/upstream.py); see `_apply_waivers`.
UPSTREAM_PREFIX = "upstream/"


def _apply_waivers(tag: str, image: Image, violations: list[Violation], known: set[str],
                   lock_time: AbstractSet[str] = frozenset()) -> list[Violation]:
    """Attach the tag's waivers to its violations and flag unknown or unused waivers.

    A waiver for rule `X` also waives `upstream/X`, the same fact read from upstream metadata
    (`factory check --upstream`), so one written reason covers both; a waiver naming
    `upstream/X` itself waives only that rule.
    """
    by_rule = {waiver.rule: waiver for waiver in image.allow}

    def waiver_for(rule: str) -> Waiver | None:
        return by_rule.get(rule) or by_rule.get(rule.removeprefix(UPSTREAM_PREFIX))

    out = [
        Violation(**{**v.__dict__, "waiver": w}) if (w := waiver_for(v.rule)) else v
        for v in violations
    ]
    used = {v.rule for v in violations} | set(lock_time)
    used |= {rule.removeprefix(UPSTREAM_PREFIX) for rule in used}
    known = known | {rule.removeprefix(UPSTREAM_PREFIX) for rule in known}
    subject = f'image "{tag}"'
    for waiver in image.allow:
        if waiver.rule not in known:
            close = _close_matches(waiver.rule, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(_builtin("builtin/waiver-unknown", subject, found=f"allow {waiver.rule!r}",
                                required=f"an existing rule id{hint}", tag=tag))
        elif waiver.rule not in used:
            out.append(_builtin("builtin/waiver-unused", subject, found=f"allow {waiver.rule!r}",
                                required="a rule this tag breaks", tag=tag, severity="warning"))
    return out
