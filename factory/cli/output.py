"""Where the CLI writes: data on stdout (what a pipe or `--json` consumer reads), progress and logs on stderr
(what a person watches). Tables and JSON are rendered here, nothing clever."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

#: A sink for one line of text: `emit` (data) or `progress` (stderr).
Printer = Callable[[str], None]


def emit(text: str = "") -> None:
    """One piece of the command's result, on stdout."""
    print(text)


def progress(text: str) -> None:
    """A progress or log line, on stderr (flushed: a person is watching it)."""
    print(text, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)
