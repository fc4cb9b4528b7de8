"""The matrix commands: plan, check, list, schema, labels, docs, bake. They need no engine and no index
(`check --upstream` asks the index), so none of them imports httpx or python-on-whales unless asked to."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from factory.cli.options import Commands, add_index_options, add_json, add_selection

if TYPE_CHECKING:
    from factory.core.matrix import Rule
    from factory.core.resolve import Resolution, Violation


def register(commands: Commands) -> None:
    plan = commands.add("plan", "show the build graph: bases, their runtime images, the vLLM images and extra "
                                "layers on them, one line each with its mode and key versions",
                        ("factory plan 0.15.0-t5", "factory plan '0.17.*' --verbose",
                         "factory plan --all --format github > plan.json"), cmd_plan)
    plan.add_argument("tags", nargs="*", metavar="TAG|GLOB", help="tags, base names or globs (default: all)")
    plan.add_argument("--all", action="store_true", help="every tag")
    plan.add_argument("-v", "--verbose", action="store_true",
                      help="every image's refs, FROM, Dockerfile, lock, input digest, build args and labels")
    add_json(plan, "the whole plan as JSON (every field of every image)")
    plan.add_argument("--format", choices=["text", "github", "json"], default="text", metavar="{text,github}",
                      help="github: a CI job matrix (one job per base, then per image)")

    check = commands.add("check", "check every tag against the rules; exit 1 on unwaived errors",
                         ("factory check", "factory check --upstream --offline", "factory check --lock --json"),
                         cmd_check)
    add_json(check)
    check.add_argument("--list-rules", action="store_true", help="list every rule and exit")
    check.add_argument("--upstream", action="store_true",
                       help="also check against what upstream releases declare (needs the index or cache)")
    check.add_argument("--lock", action="store_true",
                       help="also check every image's lock: current, and its distributions within the rules "
                            "(offline)")
    add_index_options(check)

    lst = commands.add("list", "a table of tags and their key versions", ("factory list", "factory list --json"),
                       cmd_list)
    add_json(lst)

    schema = commands.add("schema", "print the JSON Schema of matrix.toml",
                          ("factory schema > matrix.schema.json",), cmd_schema)
    add_json(schema, "accepted for uniformity: the schema is JSON already")

    labels = commands.add("labels", "write or check labels/: the label contract, its JSON Schema, one golden file "
                                    "per tag", ("factory labels --check", "factory labels --write"), cmd_labels)
    labels.add_argument("--write", action="store_true", help="regenerate the files")
    labels.add_argument("--check", action="store_true", help="exit 1 when labels/ is out of date (CI)")
    labels.add_argument("--dir", type=Path, default=None, help="folder (default: labels/ beside the matrix)")
    add_json(labels)

    docs = commands.add("docs", "rewrite the generated image table in README.md from the matrix",
                        ("factory docs", "factory docs --check"), cmd_docs)
    docs.add_argument("--check", action="store_true", help="exit 1 when the README table is stale (CI)")
    docs.add_argument("--readme", type=Path, default=None, help="default: README.md beside the matrix")
    add_json(docs)

    bake = commands.add("bake", "write a Buildx bake file of the selected graph (bases as targets, images on them)",
                        ("factory bake 0.17.0-t5 -o docker-bake.json && docker buildx bake -f docker-bake.json "
                         "--load",), cmd_bake)
    add_selection(bake)
    bake.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: stdout)")
    bake.add_argument("--cache-from", action="append", default=[], metavar="SPEC")
    bake.add_argument("--cache-to", metavar="SPEC")
    bake.add_argument("--platform", action="append", default=[],
                      help="build for this platform instead of the matrix's (its locks: factory lock --platform)")
    add_json(bake, "with -o: what was written, as JSON (without -o the bake file itself is JSON)")


# -- plan ------------------------------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    from factory.cli import plan_view
    from factory.cli.inputs import resolve
    from factory.cli.output import emit, to_json
    from factory.core.plan import build_plan, select

    resolution = resolve(args)
    plan = build_plan(resolution, select(resolution.matrix, args.tags, args.all))
    fmt = "json" if args.json else args.format
    if fmt == "json":
        emit(to_json(plan.as_dict()))
    elif fmt == "github":
        from factory.core.exports.ci import github_matrix

        emit(to_json(github_matrix(plan)))
    elif args.verbose:
        emit(plan_view.details(plan, resolution))
    else:
        emit(plan_view.tree(plan, resolution))
    return 0


# -- check -----------------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from factory.cli.inputs import load, resolve
    from factory.cli.output import emit, table, to_json
    from factory.core.resolve import BUILTIN_RULES

    extra: tuple[Rule, ...] = ()
    unavailable: tuple[Violation, ...] = ()
    if args.upstream:
        from factory.usecases.upstream import upstream_rules, wheel_violations

        options = {"index_url": args.index_url, "offline": args.offline, "refresh": args.refresh}
        extra = tuple(upstream_rules(load(args), **options))
        if not args.list_rules:
            unavailable = tuple(wheel_violations(load(args), **options))
    resolution = resolve(args, extra)
    if args.lock and not args.list_rules and not resolution.blocking:
        unavailable += tuple(_lock_violations(resolution))
    if unavailable:  # wheel-mode components without a wheel on the index, stale locks: not waivable
        resolution = replace(resolution, violations=resolution.violations + unavailable)
    matrix = resolution.matrix
    rules = (*matrix.rule, *extra)
    if args.list_rules:
        rows = [(rid, "error", why, "built-in") for rid, why in BUILTIN_RULES.items()]
        rows += [(r.id, r.severity, r.reason, r.source) for r in rules]
        if args.json:
            emit(to_json([dict(zip(("id", "severity", "reason", "source"), r, strict=True)) for r in rows]))
        else:
            emit(table(["rule", "severity", "reason", "source"], rows))
        return 0
    if args.json:
        emit(to_json({
            "ok": resolution.ok,
            "tags": len(matrix.image),
            "bases": len(matrix.base),
            "rules": len(rules) + len(BUILTIN_RULES),
            "violations": [v.as_dict() for v in resolution.violations],
        }))
    else:
        emit(_check_text(resolution, len(extra)))
    return 0 if resolution.ok else 1


def _lock_violations(resolution: Resolution) -> Iterator[Violation]:
    from factory.core.plan import build_plan
    from factory.core.resolve import BUILTIN_RULES, BUILTIN_SOURCE, Violation
    from factory.usecases import locking

    plan = build_plan(resolution)
    for name, problems in locking.audit(resolution.loaded, plan).items():
        for problem in problems:
            yield Violation(subject=f'image "{name}"', rule="builtin/lock", severity="error", found=problem,
                            required="a current lock within the rules (run `factory lock`)",
                            reason=BUILTIN_RULES["builtin/lock"], source=BUILTIN_SOURCE, tag=name)


def _check_text(resolution: Resolution, extra_rules: int) -> str:
    from factory.core.resolve import BUILTIN_RULES

    m = resolution.matrix
    rules = len(m.rule) + extra_rules
    out = [f"{resolution.loaded.path}: {len(m.image)} tags, {len(m.base)} bases, "
           f"{rules} rules + {len(BUILTIN_RULES)} built-in"]

    def block(title: str, items: tuple[Violation, ...], with_waiver: bool = False) -> None:
        if not items:
            return
        out.append("")
        out.append(f"{title} ({len(items)})")
        for v in items:
            out.append(f"  {v.subject}: [{v.rule}] found {v.found}, required {v.required}")
            out.append(f"      why: {v.reason}")
            out.append(f"      source: {v.source}")
            if with_waiver and v.waiver is not None:
                out.append(f"      waived: {v.waiver.reason}")

    block("ERRORS", tuple(resolution.blocking))
    block("WARNINGS", tuple(resolution.warnings))
    block("WAIVED deviations", tuple(resolution.waived), with_waiver=True)
    out.append("")
    if resolution.ok:
        out.append(f"OK: no unwaived errors ({len(resolution.waived)} waived deviation(s) listed above)")
    else:
        out.append(f"FAILED: {len(resolution.blocking)} unwaived error(s)")
    return "\n".join(out)


# -- list, schema ----------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from factory.cli.inputs import resolve
    from factory.cli.output import emit, table, to_json
    from factory.core.components import KEY_COMPONENTS as keys

    resolution = resolve(args)
    rows = []
    for tag, facts in resolution.tags.items():
        image = resolution.matrix.image[tag]
        rows.append({"tag": tag, "base": facts.base, "mode": image.mode,
                     **{k: facts.components.get(k) for k in keys},
                     "default": image.default})
    if args.json:
        emit(to_json(rows))
    else:
        emit(table(["tag", "base", "mode", *keys],
                   [[str(r["tag"]) + (" *" if r["default"] else ""), r["base"], r["mode"], *(r[k] for k in keys)]
                    for r in rows]))
        emit("\n* default tag (latest)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from factory.cli.output import emit, to_json
    from factory.core.schema import json_schema

    schema = json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "spark-image-factory matrix.toml"
    emit(to_json(schema))
    return 0


# -- labels, docs ----------------------------------------------------------------------------------------------


def cmd_labels(args: argparse.Namespace) -> int:
    from factory.cli.inputs import load
    from factory.cli.output import emit, to_json
    from factory.core.exports.golden import label_files, sync
    from factory.core.plan import build_plan
    from factory.core.resolve import resolve

    loaded = load(args)
    folder = args.dir or loaded.root / "labels"
    problems = sync(folder, label_files(build_plan(resolve(loaded))), write=args.write)
    failed = bool(problems) and not args.write
    if args.json:
        emit(to_json({"folder": str(folder), "written": bool(args.write), "ok": not failed,
                      "problems" if not args.write else "updated": problems}))
    elif args.write:
        emit(f"{folder}: {len(problems)} file(s) updated" if problems else f"{folder}: already up to date")
    else:
        for problem in problems:
            emit(problem)
        if problems:
            emit("labels/ is out of date with matrix.toml: run `factory labels --write` and review the diff")
        else:
            emit(f"{folder}: up to date with {loaded.path.name}")
    return 1 if failed else 0


def cmd_docs(args: argparse.Namespace) -> int:
    from factory.cli.inputs import load
    from factory.cli.output import emit, to_json
    from factory.core.exports.golden import image_table, render_readme
    from factory.core.resolve import resolve

    loaded = load(args)
    readme = args.readme or loaded.root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = render_readme(text, image_table(resolve(loaded)), readme)
    stale = new != text
    if not args.check and stale:
        readme.write_text(new, encoding="utf-8")
    if args.json:
        emit(to_json({"readme": str(readme), "stale": stale, "rewritten": stale and not args.check}))
    elif args.check:
        emit(f"{readme}: the image table is stale; run `factory docs`" if stale
             else f"{readme}: the image table is up to date")
    else:
        emit(f"{readme}: image table {'rewritten' if stale else 'already up to date'}")
    return 1 if args.check and stale else 0


# -- bake ------------------------------------------------------------------------------------------------------


def cmd_bake(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from factory.cli.inputs import plan_for, require_current_locks
    from factory.cli.output import emit, to_json
    from factory.core.errors import InputError
    from factory.core.exports.bake import bake_file
    from factory.usecases.build import BuildOptions, git_revision, lock_context

    if not args.tags:
        args.all = True
    platforms = list(dict.fromkeys(args.platform))
    if len(platforms) > 1:
        raise InputError(f"--platform {' --platform '.join(platforms)}: every image installs its platform's own "
                         "lock, so a bake file is for one platform; write one per platform")
    planned = argparse.Namespace(**{**vars(args), "platform": platforms[0] if platforms else None})
    loaded, plan = plan_for(planned)
    if args.output:
        _check_output(args.output)
    require_current_locks(loaded, plan, planned.platform)
    options = BuildOptions()
    lock_dirs = {spec.name: lock_context(spec, loaded.root, options) for spec in plan.images if spec.lock}
    data = bake_file(plan, loaded.root, created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     revision=git_revision(loaded.root), cache_from=tuple(args.cache_from), cache_to=args.cache_to,
                     platforms=tuple(platforms) or None,
                     lock_dirs={k: v.resolve() for k, v in lock_dirs.items() if v is not None})
    text = to_json(data) + "\n"
    if not args.output:
        print(text, end="")
        return 0
    _write_output(args.output, text)
    if args.json:
        emit(to_json({"output": str(args.output), "targets": len(data["target"])}))
    else:
        emit(f"{args.output}: {len(data['target'])} target(s); run `docker buildx bake -f {args.output} --load`")
    return 0


def _check_output(path: Path) -> None:
    """`bake -o`: a file in an existing folder, never onto a folder; one clear message otherwise."""
    from factory.core.errors import InputError

    if path.is_dir():
        raise InputError(f"-o {path}: is a folder; name the file to write (e.g. {path / 'docker-bake.json'})")
    if not path.parent.is_dir():
        raise InputError(f"-o {path}: the folder {path.parent} does not exist")


def _write_output(path: Path, text: str) -> None:
    from factory.core.errors import InputError

    _check_output(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"-o {path}: cannot write it ({exc.strerror or exc})") from None
