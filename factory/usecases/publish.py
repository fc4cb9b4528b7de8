"""Publishing rules: what may be pushed over what is already published, and in which order.

* A published ``<tag>`` is immutable unless the matrix bumps its revision (or ``--force``): pushing other
  content under it is refused, and so is pushing over a tag the factory did not publish (no input-digest
  label) or whose ``revision`` label is not a whole number.
* A revision ref ``<tag>-r<N>`` is immutable, full stop: it can only ever hold the input digest it was first
  pushed with (``--force`` aside).
* Push order: every immutable ref of the run first, every mutable ref (``<tag>``) after them, aliases last,
  so a failure part-way leaves only new, complete revision refs behind or some ``<tag>``s moved, never a
  moved ``<tag>`` whose revision ref is missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from factory.core import labels as L
from factory.core.errors import WorkFailed
from factory.core.plan import ImageSpec, Plan

if TYPE_CHECKING:
    from factory.usecases.build import BuildOptions, BuildReport


class TagConflict(WorkFailed):
    """A tag is already published with other content and its revision was not bumped."""


_WHOLE_NUMBER = re.compile(r"\d{1,9}")


def split_refs(spec: ImageSpec) -> tuple[list[str], list[str]]:
    """(immutable refs, mutable refs) of an image: ``<tag>-r<N>`` (when it has a revision), then ``<tag>``."""
    mutable = spec.refs[0]
    return [ref for ref in spec.refs[1:] if ref != mutable], [mutable]


def push_order(specs: Iterable[ImageSpec]) -> list[tuple[ImageSpec, str]]:
    """(spec, ref) in the order they are pushed: the immutable refs of every image, then every mutable one."""
    specs = list(specs)
    immutable = [(spec, ref) for spec in specs for ref in split_refs(spec)[0]]
    mutable = [(spec, ref) for spec in specs for ref in split_refs(spec)[1]]
    return immutable + mutable


def _revision(text: str | None) -> int | None:
    """A revision label as a number (absent: 0), None when it is not a whole number."""
    if text is None or text == "":
        return 0
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


def check_immutable(plan: Plan, report: BuildReport, options: BuildOptions, out: Callable[[str], None]) -> None:
    """Refuse to overwrite what is published, unless --force, before anything is pushed.

    Every ref of every image about to be pushed is read from the registry for the image's platform
    (``options.platform or spec.platform``). A ref that is not published is fine; one that holds the same
    input digest is fine. Otherwise it is a conflict: ``<tag>`` with other content whose revision was not
    bumped, ``<tag>`` without the factory's input-digest label (not published by the factory), ``<tag>`` with a
    revision label that is not a whole number, ``<tag>`` without an image for the platform, and any
    ``<tag>-r<N>`` with other content.
    """
    from factory.adapters.registry import PlatformNotFound, RegistryClient, RegistryError

    results = {r.name: r for r in report.images}
    digest_key = L.factory_key(plan.namespace, "input_digest")
    revision_key = L.factory_key(plan.namespace, "revision")
    conflicts: list[str] = []
    with RegistryClient(allow_http=options.allow_http) as client:
        for spec in plan.images:
            result = results.get(spec.name)
            if result is not None and result.where == "registry":
                continue  # every ref is published with this input digest already: nothing is pushed
            platform = options.platform or spec.platform
            immutable, _ = split_refs(spec)
            for ref in spec.refs:
                try:
                    if client.exists(ref) is None:
                        continue
                    remote = client.labels(ref, platform)
                except PlatformNotFound as error:
                    conflicts.append(f"{ref} is published without an image for {platform} ({error})")
                    continue
                except RegistryError as error:
                    raise WorkFailed(f"cannot check {ref} before pushing: {error}") from None
                published = remote.get(digest_key)
                if published == spec.input_digest:
                    continue
                if published is None:
                    conflicts.append(f"{ref} is published without the label {digest_key}: the factory did not "
                                     "publish it, so what it holds cannot be compared")
                    continue
                if ref in immutable:
                    conflicts.append(f"{ref} is a revision tag, published with other content (input "
                                     f"{published[:19]}..., now {spec.input_digest[:19]}...); a revision tag never "
                                     "changes: bump the revision")
                    continue
                old_text = remote.get(revision_key)
                old_rev = _revision(old_text)
                if old_rev is None:
                    shown = (old_text or "")[:40]
                    conflicts.append(f"{ref} is published with a {revision_key} label {shown!r} that is "
                                     "not a whole number, so no revision can be compared with it")
                    continue
                new_rev = int(spec.labels[revision_key])
                if new_rev > old_rev:
                    out(f"push {ref}: replacing revision {old_rev} with revision {new_rev}")
                    continue
                conflicts.append(f"{ref} is already published with other content (input {published[:19]}"
                                 f"..., now {spec.input_digest[:19]}...) at revision {old_rev}")
    if conflicts and not options.force:
        raise TagConflict("refusing to overwrite published tags: " + "; ".join(conflicts)
                          + ". Bump the tag's `revision` in matrix.toml, or pass --force.")
    for conflict in conflicts:
        out(f"push: --force: {conflict}")
