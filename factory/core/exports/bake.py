"""`factory bake`: the build graph as a Buildx bake file, so one BuildKit solve builds it on any builder.

Each image gets every image of the plan that it names in a build arg (BASE_IMAGE, a runtime image's DEV_IMAGE,
the dev base as BUILD_IMAGE of source stages) through a named context keyed by that image's reference
(`contexts = {"<base ref>" = "target:<base target>"}`): the Dockerfile's `FROM ${BASE_IMAGE}` then resolves
to the image built in the same solve, while the arg keeps the value the plan fingerprinted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from factory.core.errors import InputError
from factory.core.labels import build_time_labels
from factory.core.matrix import confined_file
from factory.core.plan import ImageSpec, Plan


def target_name(spec: ImageSpec) -> str:
    return f"{spec.kind}-{re.sub(r'[^A-Za-z0-9_-]', '_', spec.name)}"


def bake_file(plan: Plan, root: Path, *, created: str, revision: str, cache_from: tuple[str, ...] = (),
              cache_to: str | None = None, platforms: tuple[str, ...] | None = None,
              lock_dirs: dict[str, Path] | None = None) -> dict[str, Any]:
    """`lock_dirs`: image -> its `lock` build context (`factory.usecases.build.lock_context`), which every
    Dockerfile installs from."""
    targets: dict[str, dict[str, Any]] = {}
    by_ref = {spec.ref: spec for spec in plan.images}
    for spec in plan.images:
        problem = confined_file(root, spec.dockerfile)  # the context is its folder: never one outside the matrix's
        if problem or not (root / spec.dockerfile).is_file():
            raise InputError(f"{spec.kind} {spec.name}: dockerfile {problem or repr(spec.dockerfile) + ' is missing'}")
        target = {
            "context": str(root / spec.context),
            "dockerfile": str(root / spec.dockerfile),
            "tags": list(spec.refs),
            "args": dict(spec.build_args),
            "labels": build_time_labels(spec, created=created, revision=revision, base_digest=None),
            "platforms": list(platforms or (spec.platform,)),
        }
        if spec.target:
            target["target"] = spec.target
        contexts = {}
        for value in spec.build_args.values():
            if value in by_ref and by_ref[value] is not spec:
                contexts[value] = f"target:{target_name(by_ref[value])}"
        if lock_dirs and spec.name in lock_dirs:
            contexts["lock"] = str(lock_dirs[spec.name])
        if contexts:
            target["contexts"] = contexts
        if cache_from:
            target["cache-from"] = list(cache_from)
        if cache_to:
            target["cache-to"] = [cache_to]
        targets[target_name(spec)] = target
    groups = {
        "default": {"targets": list(targets)},
        "bases": {"targets": [target_name(s) for s in plan.bases]},
        "runtimes": {"targets": [target_name(s) for s in plan.runtimes]},
        "images": {"targets": [target_name(s) for s in plan.vllm_images]},
    }
    if plan.extras:
        groups["extras"] = {"targets": [target_name(s) for s in plan.extras]}
    return {"group": groups, "target": targets}
