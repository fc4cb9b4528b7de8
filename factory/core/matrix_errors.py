"""Where a problem of the matrix is: `file:line: image "0.17.0-t5", field "vllm": message`.

Problems are collected (never just the first) with the path of keys they are at; `describe` turns them into one
message that names the file, its line, the table, the tag and the field. `raw_problems` and `composed_names`
are the checks no pydantic type can express: they look at every raw string, and at names the factory composes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from factory.core.grammar import CREDENTIALS_HINT, NAME, NAME_RULE, shown_url
from factory.core.matrix import Matrix, extra_images, runtime_name
from factory.core.redact import has_userinfo, redact

#: Deeper nesting than this is no matrix (Python's TOML reader recurses: 500 nested arrays overflow it).
MAX_DEPTH = 16
#: Errors listed in one message; the count says how many there are in all.
MAX_REPORTED = 100

#: Characters no value of the matrix may hold: they would start a new line (or hide text) in build args,
#: labels, `plan` output and logs.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Problem:
    loc: tuple[str, ...]
    message: str



def raw_problems(value: object, loc: tuple[str, ...] = ()) -> Iterator[Problem]:
    """What no field of the matrix may hold, whatever its type: credentials in a URL, control characters,
    absurd nesting. Checked on the raw TOML so that every string is covered, named or not."""
    if len(loc) > MAX_DEPTH:
        yield Problem(loc[:2], f"values nested deeper than {MAX_DEPTH} levels")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from raw_problems(item, (*loc, str(key)))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from raw_problems(item, (*loc, str(number)))
    elif isinstance(value, str):
        if has_userinfo(value):
            yield Problem(loc, f"{shown_url(value)}: user-info (user:password@) in a URL is refused; "
                                f"{CREDENTIALS_HINT}")
        elif _UNPRINTABLE.search(value):
            yield Problem(loc, f"{value!r} has a control character (newline, tab, ...): a value is one line of "
                                "printable text")



def composed_names(matrix: Matrix) -> list[Problem]:
    """Names the factory makes from the matrix's (`<name>-r<revision>`, `<tag>-<suffix>`) obey the grammar too."""
    out = []
    for kind, table in (("base", matrix.base), ("image", matrix.image)):
        for name, item in table.items():
            if item.revision and not NAME.fullmatch(f"{name}-r{item.revision}"):
                out.append(Problem((kind, name, "revision"),
                                    f"the revision's tag {name}-r{item.revision} is longer than 128 characters"))
    for name in matrix.base:
        made = runtime_name(name)
        if made in matrix.base or not NAME.fullmatch(made):
            why = "is also a base's name" if made in matrix.base else f"is not valid: {NAME_RULE}"
            out.append(Problem(("base", name, "(its name)"), f"its runtime image's tag {made!r} {why}"))
    for image_name, (layer, _) in extra_images(matrix).items():
        revision = matrix.extra[layer].revision
        for made in (image_name, f"{image_name}-r{revision}" if revision else image_name):
            if not NAME.fullmatch(made):
                out.append(Problem(("extra", layer, "suffix"), f"the layer's image name {made!r} is not valid: "
                                                                f"{NAME_RULE}"))
                break
    return out


def describe(problems: list[Problem], text: str, path: Path) -> str:
    index = _line_index(text)  # once: locating each error is a lookup, so 6,000 errors cost what 1 does
    located = sorted(((_line_of(index, problem.loc), problem) for problem in problems), key=lambda r: r[0] or 0)
    lines = [f"{path}: {len(problems)} error(s) in the matrix:"]
    for line, problem in located[:MAX_REPORTED]:
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"  {where}: {_where(list(problem.loc))}: {problem.message}")
    if len(located) > MAX_REPORTED:
        lines.append(f"  ... and {len(located) - MAX_REPORTED} more")
    return redact("\n".join(lines))


def _shown_part(part: str) -> str:
    return part if part.isprintable() else repr(part)


def _where(loc: list[str]) -> str:
    if not loc:
        return "the matrix"
    name = f'"{loc[1]}"' if len(loc) >= 2 and NAME.fullmatch(loc[1]) else repr(loc[1]) if len(loc) >= 2 else ""
    loc = [_shown_part(part) for part in loc]
    if len(loc) >= 2 and loc[0] in ("base", "image", "extra"):
        field = ".".join(loc[2:]) or "(the table)"
        return f'{loc[0]} {name}, field "{field}"'
    if len(loc) >= 2 and loc[0] == "rule" and loc[1].isdigit():
        return f"rule #{int(loc[1]) + 1}, field \"{'.'.join(loc[2:]) or '(the table)'}\""
    return f'field "{".".join(loc)}"'



_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*""")
_HEADER = re.compile(r"^\s*(\[\[?)(.*?)(\]\]?)\s*(?:#.*)?$")
_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_ASSIGN = re.compile(rf"^\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*=")


def _key_parts(text: str) -> tuple[str, ...] | None:
    """The parts of a dotted TOML key (`image."0.17.0-t5".sources`), or None when it is not one."""
    parts: list[str] = []
    position = 0
    while True:
        found = _KEY_PART.match(text, position)
        if not found:
            return None
        if found[1] is not None:
            try:
                parts.append(json.loads(f'"{found[1]}"'))
            except ValueError:
                parts.append(found[1])
        else:
            parts.append(found[2] if found[2] is not None else found[3])
        position = found.end()
        if position == len(text):
            return tuple(parts)
        if text[position] != ".":
            return None
        position += 1


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Line of every table header and key of the TOML text, by its full path, in one pass."""
    index: dict[tuple[str, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and len(header[1]) == len(header[3]):
            parts = _key_parts(header[2])
            if parts is None:
                continue
            if header[1] == "[[":
                arrays[parts] = arrays.get(parts, -1) + 1
                parts = (*parts, str(arrays[parts]))
            table = parts
            for end in range(1, len(table) + 1):
                index.setdefault(table[:end], number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            parts = _key_parts(assign[1])
            if parts:
                for end in range(1, len(parts) + 1):
                    index.setdefault((*table, *parts[:end]), number)
    return index


def _line_of(index: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    """Line of a located error: its key, else the closest enclosing table or key that has a line."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in index:
            return index[loc[:end]]
    return None
