"""Exports of the plan for CI systems: a job matrix where each job builds one image after its base."""

from __future__ import annotations

from factory.plan import Plan


def github_matrix(plan: Plan) -> dict:
    """A GitHub Actions matrix: `bases` jobs first, then `images` jobs that need them (`needs: bases`), then
    `extras` jobs (extra layers) that need the images."""

    def job(spec) -> dict:
        return {"name": spec.name, "kind": spec.kind, "ref": spec.ref, "depends_on": spec.depends_on,
                "platform": spec.platform, "input_digest": spec.input_digest}

    return {
        "bases": {"include": [job(s) for s in plan.bases]},
        "images": {"include": [job(s) for s in plan.vllm_images]},
        "extras": {"include": [job(s) for s in plan.extras]},
    }
