"""`factory lock`: each image's whole Python environment resolved with uv into `locks/<image>.txt`
(resolving progress on stderr; which locks were written, current or stale on stdout)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from factory.cli.options import Commands, add_json

if TYPE_CHECKING:
    from factory.core.matrix import LoadedMatrix
    from factory.core.plan import Plan


def register(commands: Commands) -> None:
    lock = commands.add("lock", "resolve each image's whole Python environment for its platform (uv) and write "
                                "locks/<image>.txt; only missing or stale locks are resolved",
                        ("factory lock 0.17.0-t5", "factory lock --check",
                         "factory lock 0.33.0-t5 --platform linux/amd64"), cmd_lock)
    lock.add_argument("tags", nargs="*", metavar="TAG|GLOB",
                      help="tags, extra layers, base names or globs (default: every image; parents come along)")
    lock.add_argument("--check", action="store_true",
                      help="exit 1 when a lock is missing or stale against the matrix, its Dockerfile or the "
                           "requirement transform (offline: no resolving; CI runs it)")
    lock.add_argument("--refresh", action="store_true", help="resolve again even when current (keeps versions "
                                                            "where still allowed)")
    lock.add_argument("--upgrade", action="store_true", help="resolve again, preferring nothing from the current "
                                                            "locks (newest allowed versions)")
    lock.add_argument("--platform", default=None,
                      help="lock for another platform than the matrix's (what `build --platform` builds); those "
                           "locks live in <lock_dir>/<os>-<arch>/")
    lock.add_argument("--jobs", type=int, default=4, help="images resolved at once (default 4)")
    lock.add_argument("--offline", action="store_true", help="resolve from uv's and the factory's caches only "
                                                            "(after one online run); a package never seen fails")
    add_json(lock)


def _lock_plan(args: argparse.Namespace) -> tuple[LoadedMatrix, Plan, list[str]]:
    from factory.cli.inputs import for_platform, load
    from factory.core.plan import build_plan, select
    from factory.core.resolve import resolve

    loaded = for_platform(load(args), args.platform)
    resolution = resolve(loaded)
    names = select(loaded.matrix, args.tags, not args.tags)
    images = loaded.matrix.image
    # -t4/-t5 siblings share their layers, so they are locked together
    names += [t for t in images for n in list(names) if n in images and t not in names
              and (images[t].vllm, images[t].base) == (images[n].vllm, images[n].base)]
    names = list(dict.fromkeys(names))
    return loaded, build_plan(resolution, names), names


def cmd_lock(args: argparse.Namespace) -> int:
    from factory.cli.inputs import platform_flag
    from factory.cli.options import check_jobs
    from factory.cli.output import emit, progress, to_json
    from factory.usecases import locking

    check_jobs(args.jobs)
    loaded, plan, names = _lock_plan(args)
    if args.check:
        problems = locking.stale(loaded, plan)
        if args.json:
            emit(to_json({"stale": problems}))
            return 1 if problems else 0
        for name, why in problems.items():
            emit(f"lock: {name}: {why}")
        if problems:
            emit(f"lock: {len(problems)} lock(s) to refresh: factory lock {' '.join(problems)}"
                 f"{platform_flag(args.platform)}")
            return 1
        emit(f"lock: {sum(1 for s in plan.images if s.lock)} lock(s) current")
        return 0
    result = locking.lock(loaded, plan, names=names if args.tags else None, refresh=args.refresh,
                          upgrade=args.upgrade, jobs=args.jobs, offline=args.offline, progress=progress)
    if args.json:
        emit(to_json({"written": result.written, "current": result.current, "failed": result.failed}))
    else:
        for name in result.written:
            emit(f"lock: {name}: written")
        if result.current:
            emit(f"lock: {len(result.current)} lock(s) already current")
        for name, why in result.failed.items():
            emit(f"lock: {name}: FAILED: {why}")
    return 1 if result.failed else 0
