"""The `factory` command line: parse arguments, call one use case, render text or JSON, map exit codes.

Exit codes: 0 ok, 1 rule violations or failed work, 2 bad input or usage. Heavy libraries
(python-on-whales, httpx) are imported only inside the commands that talk to an engine or an index.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from factory.core.errors import FactoryError, InputError

DEFAULT_MATRIX = "matrix.toml"

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as InputError (exit 2) with one clear line."""

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    from factory import __version__

    p = _Parser(prog="factory", description="Build, check and publish versioned vLLM images for DGX Spark.")
    p.add_argument("--version", action="version", version=f"factory {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matrix", default=os.environ.get("FACTORY_MATRIX", DEFAULT_MATRIX),
                        help="path of matrix.toml (default: ./matrix.toml or $FACTORY_MATRIX)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    plan = add("plan", "show the build graph: bases first, then vLLM images, with args, refs and labels")
    plan.add_argument("tags", nargs="*", metavar="TAG|GLOB", help="tags, base names or globs (default: all)")
    plan.add_argument("--all", action="store_true", help="every tag")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("--format", choices=["text", "json", "github"], default="text",
                      help="github: a CI job matrix (one job per base, then per image)")

    check = add("check", "check every tag against the rules; exit 1 on unwaived errors")
    check.add_argument("--json", action="store_true")
    check.add_argument("--list-rules", action="store_true", help="list every rule and exit")
    check.add_argument("--upstream", action="store_true",
                       help="also check against what upstream releases declare (needs the index or cache)")
    check.add_argument("--lock", action="store_true",
                       help="also check every image's lock: current, and its distributions within the rules "
                            "(offline)")
    _index_options(check)

    lst = add("list", "a table of tags and their key versions")
    lst.add_argument("--json", action="store_true")

    add("schema", "print the JSON Schema of matrix.toml")

    _register_more(sub, add)
    return p


def _index_url(text: str) -> str:
    """--index-url: an http(s) URL with a host that parses, never empty (an empty one used to mean the default).
    Credentials in it are the HTTP client's to split off; every message shows them as `***@`."""
    from factory.core.matrix import check_url

    try:
        return check_url(text, what="an http(s) URL of a simple index (e.g. https://pypi.org/simple/)",
                         userinfo=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index-url", default=None, type=_index_url,
                   help="package index (PEP 691 simple API) for upstream facts")
    p.add_argument("--offline", action="store_true", help="use only the on-disk cache")
    p.add_argument("--refresh", action="store_true", help="ignore cached answers and ask again")


def _register_more(sub, add) -> None:
    """Commands of the adapters' world; their modules are imported only when they run."""
    from factory.cli import commands

    commands.register(sub, add, command, _index_options)


def _load(args: argparse.Namespace):
    from factory.core.matrix import load

    return load(args.matrix)


def _resolve(args: argparse.Namespace, extra_rules=()):
    from factory.core.resolve import resolve

    return resolve(_load(args), extra_rules)


@command("plan")
def cmd_plan(args: argparse.Namespace) -> int:
    from factory.cli.output import to_json
    from factory.core.plan import build_plan, select

    resolution = _resolve(args)
    names = select(resolution.matrix, args.tags, args.all)
    plan = build_plan(resolution, names)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print(to_json(plan.as_dict()))
    elif fmt == "github":
        from factory.core.exports.ci import github_matrix

        print(to_json(github_matrix(plan)))
    else:
        print(_plan_text(plan, resolution))
    return 0


def _plan_text(plan, resolution) -> str:
    bases, images, extras = len(plan.bases), len(plan.vllm_images), len(plan.extras)
    runtimes = f" and {len(plan.runtimes)} runtime image(s)" if plan.runtimes else ""
    layers = f", then {extras} extra layer(s)" if extras else ""
    out = [f"Build plan: {bases} base(s){runtimes}, then {images} vLLM image(s){layers}, "
           f"for {resolution.matrix.defaults.platform}"]
    if resolution.blocking:
        out.append(f"  note: {len(resolution.blocking)} unwaived rule violation(s); run `factory check`")
    for step, spec in enumerate(plan.images, 1):
        on = f" on {spec.depends_on}" if spec.depends_on else ""
        out.append("")
        out.append(f"[{step}] {spec.kind} {spec.name}{on}  ({spec.mode})")
        out.append(f"    refs        {', '.join(spec.refs)}")
        out.append(f"    from        {spec.from_ref}")
        out.append(f"    dockerfile  {spec.dockerfile}")
        if spec.env_lock:
            missing = "" if (resolution.loaded.root / spec.env_lock).exists() else "  (missing: run factory lock)"
            copied = "" if spec.lock else "  (its dev base's environment, copied)"
            out.append(f"    lock        {spec.env_lock}{missing}{copied}")
        out.append(f"    input       {spec.input_digest}")
        out.append("    build args")
        out.extend(f"      {k}={v}" for k, v in spec.build_args.items())
        out.append("    labels")
        out.extend(f"      {k}={v}" for k, v in spec.labels.items())
    out.append("")
    out.append("Stamped at build time: org.opencontainers.image.{created,revision,base.digest}")
    return "\n".join(out)


@command("check")
def cmd_check(args: argparse.Namespace) -> int:
    from factory.cli.output import to_json
    from factory.core.resolve import BUILTIN_RULES

    extra, unavailable = (), ()
    if args.upstream:
        from factory.usecases.upstream import upstream_rules, wheel_violations

        extra = upstream_rules(_load(args), index_url=args.index_url, offline=args.offline,
                               refresh=args.refresh)
        if not args.list_rules:
            unavailable = wheel_violations(_load(args), index_url=args.index_url, offline=args.offline,
                                           refresh=args.refresh)
    resolution = _resolve(args, extra)
    if args.lock and not args.list_rules and not resolution.blocking:
        unavailable = tuple(unavailable) + tuple(_lock_violations(resolution))
    if unavailable:  # wheel-mode components without a wheel on the index: not waivable
        from dataclasses import replace

        resolution = replace(resolution, violations=resolution.violations + unavailable)
    matrix = resolution.matrix
    if args.list_rules:
        rows = [(rid, "error", why, "built-in") for rid, why in BUILTIN_RULES.items()]
        rows += [(r.id, r.severity, r.reason, r.source) for r in (*matrix.rule, *extra)]
        if args.json:
            print(to_json([dict(zip(("id", "severity", "reason", "source"), r, strict=True)) for r in rows]))
        else:
            from factory.cli.output import table

            print(table(["rule", "severity", "reason", "source"], rows))
        return 0
    if args.json:
        print(to_json({
            "ok": resolution.ok,
            "tags": len(matrix.image),
            "bases": len(matrix.base),
            "rules": len(matrix.rule) + len(extra) + len(BUILTIN_RULES),
            "violations": [v.as_dict() for v in resolution.violations],
        }))
        return 0 if resolution.ok else 1
    print(_check_text(resolution, len(extra)))
    return 0 if resolution.ok else 1


def _lock_violations(resolution):
    from factory.core.plan import build_plan
    from factory.core.resolve import BUILTIN_RULES, BUILTIN_SOURCE, Violation
    from factory.usecases import locking

    plan = build_plan(resolution)
    for name, problems in locking.audit(resolution.loaded, plan).items():
        for problem in problems:
            yield Violation(subject=f'image "{name}"', rule="builtin/lock", severity="error", found=problem,
                            required="a current lock within the rules (run `factory lock`)",
                            reason=BUILTIN_RULES["builtin/lock"], source=BUILTIN_SOURCE, tag=name)


def _check_text(resolution, extra_rules: int) -> str:
    from factory.core.resolve import BUILTIN_RULES

    m = resolution.matrix
    rules = len(m.rule) + extra_rules
    out = [f"{resolution.loaded.path}: {len(m.image)} tags, {len(m.base)} bases, "
           f"{rules} rules + {len(BUILTIN_RULES)} built-in"]

    def block(title: str, items, with_waiver: bool = False) -> None:
        if not items:
            return
        out.append("")
        out.append(f"{title} ({len(items)})")
        for v in items:
            out.append(f"  {v.subject}: [{v.rule}] found {v.found}, required {v.required}")
            out.append(f"      why: {v.reason}")
            out.append(f"      source: {v.source}")
            if with_waiver:
                out.append(f"      waived: {v.waiver.reason}")

    block("ERRORS", resolution.blocking)
    block("WARNINGS", resolution.warnings)
    block("WAIVED deviations", resolution.waived, with_waiver=True)
    out.append("")
    if resolution.ok:
        out.append(f"OK: no unwaived errors ({len(resolution.waived)} waived deviation(s) listed above)")
    else:
        out.append(f"FAILED: {len(resolution.blocking)} unwaived error(s)")
    return "\n".join(out)


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    from factory.cli.output import table, to_json

    resolution = _resolve(args)
    from factory.core.components import KEY_COMPONENTS as keys

    rows = []
    for tag, facts in resolution.tags.items():
        image = resolution.matrix.image[tag]
        rows.append({"tag": tag, "base": facts.base, "mode": image.mode,
                     **{k: facts.components.get(k) for k in keys},
                     "default": image.default})
    if args.json:
        print(to_json(rows))
    else:
        print(table(["tag", "base", "mode", *keys],
                    [[r["tag"] + (" *" if r["default"] else ""), r["base"], r["mode"], *(r[k] for k in keys)]
                     for r in rows]))
        print("\n* default tag (latest)")
    return 0


@command("schema")
def cmd_schema(args: argparse.Namespace) -> int:
    from factory.cli.output import to_json
    from factory.core.matrix import Matrix

    schema = Matrix.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "spark-image-factory matrix.toml"
    print(to_json(schema))
    return 0


#: OSErrors about a path the user named (a --readme, an -o, a --dir): bad input, exit 2; any other is failed work.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def _error(message: str) -> None:
    """Every error the CLI prints goes through here: one line of context, credentials in URLs redacted."""
    from factory.core.redact import redact

    print(f"factory: {redact(message)}", file=sys.stderr)


def _docker_missing(exc: BaseException) -> bool:
    """python-on-whales' ClientNotFoundError (no `docker` on PATH), recognised without importing the library."""
    kind = type(exc)
    return kind.__name__ == "ClientNotFoundError" and kind.__module__.startswith("python_on_whales")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except FactoryError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("factory: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        _error(f"{where}{exc.strerror or exc}")
        return 2 if isinstance(exc, _PATH_ERRORS) else 1
    except Exception as exc:
        if _docker_missing(exc):
            _error("docker is not installed: no `docker` client on PATH (`make engine` installs Docker Engine)")
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
