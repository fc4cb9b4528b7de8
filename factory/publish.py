"""Publishing rules: a published tag is immutable unless the matrix bumps its revision."""

from __future__ import annotations

from factory import labels as L
from factory.errors import WorkFailed


class TagConflict(WorkFailed):
    """A tag is already published with other content and its revision was not bumped."""


def check_immutable(plan, report, options, out) -> None:
    """Refuse to overwrite a published tag whose input digest differs, unless its revision went up or --force."""
    from factory.registry import RegistryClient, RegistryError

    conflicts = []
    with RegistryClient(allow_http=options.allow_http) as client:
        for spec in plan.images:
            try:
                if client.exists(spec.ref) is None:
                    continue
                remote = client.labels(spec.ref, spec.platform)
            except RegistryError as error:
                raise WorkFailed(f"cannot check {spec.ref} before pushing: {error}") from None
            key = L.factory_key(plan.namespace, "input_digest")
            if remote.get(key) in (None, spec.input_digest):
                continue
            old_rev = int(remote.get(L.factory_key(plan.namespace, "revision"), "0") or 0)
            new_rev = int(spec.labels[L.factory_key(plan.namespace, "revision")])
            if new_rev > old_rev:
                out(f"push {spec.ref}: replacing revision {old_rev} with revision {new_rev}")
                continue
            conflicts.append(f"{spec.ref} is already published with other content (input {remote.get(key)[:19]}"
                             f"..., now {spec.input_digest[:19]}...) at revision {old_rev}")
    if conflicts and not options.force:
        raise TagConflict("refusing to overwrite published tags: " + "; ".join(conflicts)
                          + ". Bump the tag's `revision` in matrix.toml, or pass --force.")
    for conflict in conflicts:
        out(f"push: --force: {conflict}")
