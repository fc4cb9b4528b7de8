"""Exports of the plan for CI systems: a job matrix where each job builds one image after its base.

Every value of a job lands in a CI runner's environment; the matrix's names are checked against Docker's
tag grammar when it is loaded, and checked again here, so a job value can never carry shell syntax. The
example workflow (`examples/github-workflow.yml`) still passes them through `env:` and quotes them.
"""

from __future__ import annotations

import re

from factory.core.errors import InputError
from factory.core.plan import ImageSpec, Plan

#: What a job value may hold: names, image references (`host:port/repo:tag`), platforms, digests.
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@+-]{0,254}")


def github_matrix(plan: Plan) -> dict[str, dict[str, list[dict[str, str | None]]]]:
    """A GitHub Actions matrix: `bases` jobs first, then `runtimes` jobs (each base's runtime image) that need
    them, then `images` jobs that need those (`needs: runtimes`), then `extras` jobs (extra layers) that need
    the images."""

    def job(spec: ImageSpec) -> dict[str, str | None]:
        values: dict[str, str | None] = {
            "name": spec.name, "kind": spec.kind, "ref": spec.ref, "depends_on": spec.depends_on,
            "platform": spec.platform, "input_digest": spec.input_digest}
        for key, value in values.items():
            if value is not None and not _SAFE.fullmatch(value):
                raise InputError(f"{spec.kind} {spec.name!r}: {key} {value!r} cannot be a CI job value")
        return values

    return {
        "bases": {"include": [job(s) for s in plan.bases]},
        "runtimes": {"include": [job(s) for s in plan.runtimes]},
        "images": {"include": [job(s) for s in plan.vllm_images]},
        "extras": {"include": [job(s) for s in plan.extras]},
    }
