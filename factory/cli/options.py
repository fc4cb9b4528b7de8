"""The parser and the options commands share: `--matrix`, `--json`, the index options, a selection of tags.

Every command is added through `Commands.add`, which gives it the shared `--matrix`, a description and an
example (the help's epilog), and records its handler; one spelling of each shared option follows from that.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import NoReturn, cast

from factory.core.errors import InputError

DEFAULT_MATRIX = "matrix.toml"

#: A command's handler: parsed arguments in, exit code out (0 ok, 1 failed work or violated rules, 2 bad input).
Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as InputError (exit 2) with one clear line."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]  # "factory plan" -> "plan"; the CLI prefixes "factory: " itself
        raise InputError(f"{command + ': ' if command else ''}{message} (see `{self.prog} --help`)")


def _matrix_parent() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--matrix", default=os.environ.get("FACTORY_MATRIX", DEFAULT_MATRIX),
                        help="path of matrix.toml (default: ./matrix.toml or $FACTORY_MATRIX)")
    return common


def epilog(*examples: str) -> str:
    """The help's epilog: the examples, one command line each."""
    return "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)


class _Unused:
    """Stands in for the parser of a command this run does not dispatch to: argparse spends about a millisecond
    on each command's options, and only the chosen command's are ever parsed. Every call is accepted and ignored."""

    def __getattr__(self, name: str) -> Callable[..., _Unused]:
        return self._ignore

    def _ignore(self, *args: object, **kwargs: object) -> _Unused:
        return self


class Commands:
    """The subcommands of one parser level and their handlers (`table`, shared with main's dispatch). With `only`,
    the parsers of the other commands are not built (their handlers are still recorded)."""

    def __init__(self, sub: argparse._SubParsersAction[Parser], table: dict[str, Handler],
                 only: str | None = None) -> None:
        self._sub = sub
        self._table = table
        self._only = only
        self._common = _matrix_parent()

    def add(self, name: str, help: str, examples: tuple[str, ...], handler: Handler | None = None, *,
            description: str | None = None) -> Parser:
        if handler is not None:
            self._table.setdefault(name, handler)  # an entry set before (a test's stand-in) is kept
        if self._only is not None and name != self._only:
            return cast(Parser, _Unused())
        return self._sub.add_parser(name, help=help, description=description or help, epilog=epilog(*examples),
                                    parents=[self._common], formatter_class=argparse.RawDescriptionHelpFormatter)


def add_json(p: argparse.ArgumentParser, help: str = "machine-readable output on stdout (progress stays on "
                                                     "stderr)") -> None:
    p.add_argument("--json", action="store_true", help=help)


def index_url(text: str) -> str:
    """--index-url: an http(s) URL with a host that parses, never empty (an empty one used to mean the default).
    Credentials in it are the HTTP client's to split off; every message shows them as `***@`."""
    from factory.core.grammar import check_url

    try:
        return check_url(text, what="an http(s) URL of a simple index (e.g. https://pypi.org/simple/)",
                         userinfo=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_index_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index-url", default=None, type=index_url,
                   help="package index (PEP 691 simple API) for upstream facts")
    p.add_argument("--offline", action="store_true", help="use only the on-disk cache")
    p.add_argument("--refresh", action="store_true", help="ignore cached answers and ask again")


def add_selection(p: argparse.ArgumentParser, help: str = "tags, base names or globs") -> None:
    p.add_argument("tags", nargs="*", metavar="TAG|GLOB", help=help)
    p.add_argument("--all", action="store_true", help="every tag")


def add_registry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--platform", default=None, help="platform to read from an index (default: the matrix's)")
    p.add_argument("--remote", action="store_true", help="read the registry even if a local image exists")
    p.add_argument("--allow-http", action="store_true", help="plain HTTP to a non-loopback registry")


def check_jobs(jobs: int) -> int:
    if jobs < 1:
        raise InputError("--jobs must be at least 1")
    return jobs
