"""What commands read before they work: the matrix, its resolution, the plan of a selection, the locks.

Imports of the core happen inside the functions, so that registering the commands costs nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from factory.core.errors import FactoryError, InputError

if TYPE_CHECKING:
    from factory.core.matrix import LoadedMatrix, Rule
    from factory.core.plan import Plan
    from factory.core.resolve import Resolution


class RulesViolated(FactoryError):
    """The matrix breaks a rule without a waiver: the work is refused (exit 1, like `factory check`)."""

    exit_code = 1


def load(args: argparse.Namespace) -> LoadedMatrix:
    from factory.core.matrix import load as load_matrix

    return load_matrix(args.matrix)


def matrix_or_none(path: str | Path) -> LoadedMatrix | None:
    """The matrix when its file exists: commands on image refs work without one."""
    from factory.core.matrix import load as load_matrix

    return load_matrix(path) if Path(path).exists() else None


def resolve(args: argparse.Namespace, extra_rules: Iterable[Rule] = ()) -> Resolution:
    from factory.core.resolve import resolve as resolve_matrix

    return resolve_matrix(load(args), extra_rules)


def for_platform(loaded: LoadedMatrix, platform: str | None) -> LoadedMatrix:
    """The matrix planned for another platform than its own (`--platform`): the override is planned like the
    matrix's own platform, so it is part of every input digest (an image built for one platform never counts
    as up to date for another), and its locks live in `<lock_dir>/<os>-<arch>/` beside the platform's own."""
    if not platform or platform == loaded.matrix.defaults.platform:
        return loaded
    from dataclasses import replace

    from factory.core.matrix import LoadedMatrix

    matrix = loaded.matrix
    lock_dir = f"{matrix.defaults.lock_dir}/{platform.replace('/', '-')}"
    defaults = replace(matrix.defaults, platform=platform, lock_dir=lock_dir)
    return LoadedMatrix(replace(matrix, defaults=defaults), loaded.path)


def plan_for(args: argparse.Namespace) -> tuple[LoadedMatrix, Plan]:
    """The plan of the named tags (or --all) for --platform; an unwaived rule violation refuses it (exit 1)."""
    from factory.core.plan import build_plan, select
    from factory.core.resolve import resolve as resolve_matrix

    if not args.tags and not args.all:
        raise InputError("name the tags to build (TAG, GLOB ...) or pass --all")
    loaded = for_platform(load(args), getattr(args, "platform", None))
    resolution = resolve_matrix(loaded)
    if resolution.blocking:
        first = resolution.blocking[0]
        raise RulesViolated(f"{loaded.path}: {len(resolution.blocking)} unwaived rule violation(s), first: "
                            f"{first.subject} [{first.rule}] found {first.found}, required {first.required}"
                            " (run `factory check`)")
    return loaded, build_plan(resolution, select(loaded.matrix, args.tags, args.all))


def platform_flag(platform: str | None) -> str:
    return f" --platform {platform}" if platform else ""


def require_current_locks(loaded: LoadedMatrix, plan: Plan, platform: str | None = None) -> None:
    """A build installs exactly its lock: a missing or stale one is bad input, named, before anything runs."""
    from factory.usecases import locking

    problems = locking.stale(loaded, plan)
    if problems:
        first = next(iter(problems.items()))
        raise InputError(f"{len(problems)} lock(s) not current, first: {first[0]}: {first[1]}; run `factory lock "
                         f"{' '.join(problems)}{platform_flag(platform)}`")


def lock_of(ref: str, loaded: LoadedMatrix | None) -> Path | None:
    """The lock of the matrix image `ref` names (a tag, a base name or one of their refs), if it has one."""
    if loaded is None:
        return None
    from factory.core.plan import build_plan
    from factory.core.resolve import resolve as resolve_matrix

    plan = build_plan(resolve_matrix(loaded))
    for spec in plan.images:
        if ref == spec.name or ref in spec.refs:
            if spec.env_lock is None:
                return None
            path = loaded.root / spec.env_lock  # a runtime image's environment is its dev base's
            return path if path.exists() else None
    return None
