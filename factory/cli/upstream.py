"""`factory upstream check`, `factory outdated` and `factory propose`: the matrix against the package index.

Everything that talks to the index is imported inside the commands, so registering them costs nothing
and `factory plan/check/list` never import httpx. Answers are cached on disk (`factory.adapters.index.Cache`),
so each command works `--offline` after one online run.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from factory.cli.options import Commands, Parser, add_index_options, add_json, epilog
from factory.core.errors import InputError


def register(commands: Commands) -> None:
    """`upstream check`, `outdated` and `propose`."""
    upstream = commands.add("upstream", "compare the matrix with what upstream releases declare in their wheels' "
                                        "METADATA", ("factory upstream check", "factory upstream check 0.17.0-t5 "
                                                     "--offline --json"), cmd_upstream)
    nested = upstream.add_subparsers(dest="upstream_command", metavar="SUBCOMMAND", parser_class=Parser)
    check = nested.add_parser(
        "check", help="list every tag's deviations from upstream and their waivers, and check wheel-mode "
                      "wheels on the index; exit 1 on unwaived deviations or missing wheels",
        description="List every tag's deviations from what its vLLM and torch releases declare, with the "
                    "waiver that allows each, and check on the index that every wheel-mode base and tag has "
                    "the wheels it installs (torch: a CUDA build of the base's CUDA major); exit 1 when a "
                    "deviation is not waived or a wheel is missing.",
        epilog=epilog("factory upstream check", "factory upstream check 0.33.0-t5 --index-url "
                      "https://pypi.org/simple/ --json"), formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--matrix", default=argparse.SUPPRESS, help="path of matrix.toml")
    check.add_argument("tags", nargs="*", metavar="TAG", help="tags to check (default: all)")
    add_json(check)
    add_index_options(check)

    old = commands.add("outdated", "releases of vLLM, Transformers, FlashInfer, Triton and torch newer than the "
                                   "matrix knows", ("factory outdated", "factory outdated --offline --json"),
                       cmd_outdated)
    add_json(old)
    add_index_options(old)

    prop = commands.add("propose", "the matrix entries a vLLM release needs, from its wheels' METADATA",
                        ("factory propose 0.33.0", "factory propose 0.33.0 --write && factory lock 0.33.0-t5"),
                        cmd_propose)
    prop.add_argument("vllm_version", metavar="VLLM_VERSION", help="a vLLM release on the index, e.g. 0.33.0")
    prop.add_argument("--write", action="store_true", help="insert the entries into the matrix file")
    add_json(prop)
    add_index_options(prop)


# -- shared --------------------------------------------------------------------------------------


def _index_args(args: argparse.Namespace) -> dict[str, Any]:
    url = getattr(args, "index_url", None)
    if url is not None:
        parts = urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"--index-url {url!r} is not an http(s) URL of a simple index "
                             "(e.g. https://pypi.org/simple/)")
    return {"index_url": url, "offline": bool(getattr(args, "offline", False)),
            "refresh": bool(getattr(args, "refresh", False))}


@contextmanager
def _index_errors(offline: bool) -> Iterator[None]:
    """Index failures as one line; offline misses say how to fill the cache."""
    from factory.adapters.index import NotInCache

    try:
        yield
    except NotInCache as exc:
        hint = " (run it once without --offline to fill the cache)" if offline else ""
        raise NotInCache(f"{exc}{hint}") from None


# -- upstream check ------------------------------------------------------------------------------


def cmd_upstream(args: argparse.Namespace) -> int:
    if getattr(args, "upstream_command", None) == "check":
        return cmd_upstream_check(args)
    raise InputError("factory upstream: name what to do: `factory upstream check [TAG ...]`")


def cmd_upstream_check(args: argparse.Namespace) -> int:
    from factory.cli.inputs import load
    from factory.cli.output import emit, table, to_json
    from factory.usecases.upstream import upstream_check, wheel_availability

    loaded = load(args)
    options = _index_args(args)
    with _index_errors(options["offline"]):
        deviations = upstream_check(loaded, args.tags or None, **options)
        wheels = wheel_availability(loaded, args.tags or None, **options)
    unwaived = [d for d in deviations if not d.waived]
    failed = bool(unwaived or wheels.problems)
    if args.json:
        emit(to_json({"ok": not failed, "deviations": [d.as_dict() for d in deviations],
                       "wheels": wheels.as_dict()}))
        return 1 if failed else 0
    if deviations:
        rows = []
        for d in deviations:
            status = "waived" if d.waived else "NOT WAIVED"
            why = d.waiver_reason if d.waived else f"no waiver of {d.waiver_rule} ({d.reason}; {d.source})"
            rows.append((d.tag, d.component, d.matrix_value or "-", d.requirement, d.source_release, status, why))
        emit(table(["tag", "component", "matrix", "upstream", "declared by", "status", "reason"], rows))
        emit()
    if wheels.problems:
        missing = [(p.subject, p.component, f"{p.project} {p.version} {p.detail}", p.source) for p in wheels.problems]
        emit(table(["mode wheels", "component", "problem", "source"], missing))
        emit()
    tags = len(args.tags) if args.tags else len(loaded.matrix.image)
    checked = f"{len(wheels.bases)} base(s) and {len(wheels.tags)} tag(s) in mode wheels"
    if unwaived:
        emit(f"FAILED: {len(unwaived)} of {len(deviations)} deviation(s) from upstream are NOT WAIVED "
              f"({tags} tag(s) checked); allow them in the tag with a reason, or follow upstream")
    if wheels.problems:
        emit(f"FAILED: {len(wheels.problems)} wheel-mode component(s) have no wheel to install ({checked} "
              "checked); pin versions the index has wheels of, or build them with mode = \"source\"")
    if failed:
        return 1
    emit(f"OK: {len(deviations)} deviation(s) from upstream, all waived ({tags} tag(s) checked); every "
          f"wheel-mode component has its wheel ({checked})")
    return 0


# -- outdated ------------------------------------------------------------------------------------


def cmd_outdated(args: argparse.Namespace) -> int:
    from factory.cli.inputs import load
    from factory.cli.output import emit, table, to_json
    from factory.usecases.upstream import outdated

    loaded = load(args)
    options = _index_args(args)
    with _index_errors(options["offline"]):
        found = outdated(loaded, **options)
    if args.json:
        emit(to_json([o.as_dict() for o in found]))
        return 0
    if not found:
        emit("up to date: no release newer than the matrix knows")
        return 0
    rows = [(o.project, o.newest_known, o.version, o.uploaded.date().isoformat() if o.uploaded else "-")
            for o in found]
    emit(table(["project", "matrix newest", "newer release", "uploaded"], rows))
    return 0


# -- propose -------------------------------------------------------------------------------------


def cmd_propose(args: argparse.Namespace) -> int:
    from factory.cli.inputs import load
    from factory.cli.output import emit, to_json
    from factory.core.matrix import load as load_matrix
    from factory.core.resolve import resolve
    from factory.usecases.propose import propose
    from factory.usecases.upstream import open_index

    loaded = load(args)
    options = _index_args(args)
    with _index_errors(options["offline"]), open_index(loaded, **options) as index:
        proposal = propose(loaded, args.vllm_version, index)
    if args.write:
        proposal.write(loaded.path)
        resolution = resolve(load_matrix(loaded.path))
    else:
        resolution = proposal.resolution(loaded)
    blocking = resolution.blocking
    if args.json:
        emit(to_json({**proposal.as_dict(), "written": bool(args.write), "check_ok": not blocking,
                       "check_errors": [v.as_dict() for v in blocking]}))
        return 1 if blocking else 0
    for note in proposal.notes:
        emit(f"# {note}")
    if proposal.existing_tags:
        emit(f"# already in the matrix, left alone: {', '.join(proposal.existing_tags)}")
    emit()
    emit(proposal.toml_text().rstrip())
    emit()
    what = f"{len(proposal.images)} image(s)" + (", 1 base" if proposal.base.new else "")
    what += f", {len(proposal.rules)} rule(s)"
    if args.write:
        emit(f"wrote {what} into {loaded.path}")
    else:
        emit(f"not written ({what}); pass --write to insert them into {loaded.path}")
    if blocking:
        emit(f"factory check {'now' if args.write else 'would'} FAIL: {len(blocking)} unwaived error(s)")
        for v in blocking:
            emit(f"  {v.subject}: [{v.rule}] found {v.found}, required {v.required}")
        return 1
    emit(f"factory check {'passes' if args.write else 'would pass'} with them")
    return 0
