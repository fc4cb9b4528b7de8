"""The `factory` command line: the parser, dispatch to one command, and the mapping of errors to exit codes.

Exit codes: 0 ok, 1 rule violations or failed work, 2 bad input or usage. The commands live in families
(`matrix`, `images`, `locks`, `upstream`); heavy libraries (python-on-whales, httpx) are imported only inside
the commands that talk to an engine, a registry or an index.
"""

from __future__ import annotations

import argparse
import sys

from factory.cli.options import DEFAULT_MATRIX, Commands, Handler, Parser
from factory.core.errors import FactoryError

__all__ = ["COMMANDS", "DEFAULT_MATRIX", "main"]

#: Every command's handler by name, filled when the parser is built (tests replace entries to inject errors).
COMMANDS: dict[str, Handler] = {}

_DESCRIPTION = """Build, check and publish versioned vLLM images for DGX Spark.

Data goes to stdout (`--json` on every command), progress and logs to stderr.
Exit codes: 0 ok, 1 the work failed or rules are violated, 2 bad input or usage."""

_EXAMPLES = """examples:
  factory plan                      the build graph of ./matrix.toml
  factory check                     every tag against every rule
  factory build 0.17.0-t5 --json    build it; the report as JSON on stdout
  factory COMMAND --help            a command's options and examples"""


#: Which family module registers each command, so a run imports its own family only and builds the parser of its
#: own command only (about 15 ms less for `factory plan`); `--help` and an unknown command build every one.
FAMILIES: dict[str, str] = {
    **dict.fromkeys(("plan", "check", "list", "schema", "labels", "docs", "bake"), "matrix"),
    **dict.fromkeys(("upstream", "outdated", "propose"), "upstream"),
    "lock": "locks",
    **dict.fromkeys(("build", "release", "verify", "smoke", "inspect", "diff"), "images"),
}


def _parser(command: str | None = None) -> Parser:
    """The parser of every command, or of `command` only when it names a known command."""
    import importlib

    from factory import __version__

    parser = Parser(prog="factory", description=_DESCRIPTION, epilog=_EXAMPLES,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"factory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    family = FAMILIES.get(command or "")
    commands = Commands(sub, COMMANDS, only=command if family else None)
    for name in [family] if family else dict.fromkeys(FAMILIES.values()):
        importlib.import_module(f"factory.cli.{name}").register(commands)
    return parser


def _command_word(argv: list[str]) -> str | None:
    """The command argparse will dispatch to: the first word, when it is not an option."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def _error(message: str) -> None:
    """Every error the CLI prints goes through here: one line of context, credentials in URLs redacted."""
    from factory.core.redact import redact

    print(f"factory: {redact(message)}", file=sys.stderr)


#: OSErrors about a path the user named (a --readme, an -o, a --dir): bad input, exit 2; any other is failed work.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def _docker_missing(exc: BaseException) -> bool:
    """python-on-whales' ClientNotFoundError (no `docker` on PATH), recognised without importing the library."""
    kind = type(exc)
    return kind.__name__ == "ClientNotFoundError" and kind.__module__.startswith("python_on_whales")


def _parse(argv: list[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code of `--help`/`--version` (0) or of no command at all (2)."""
    words = sys.argv[1:] if argv is None else argv
    parser = _parser(_command_word(words))
    try:
        args = parser.parse_args(words)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else 0
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
        if isinstance(args, int):
            return args
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
