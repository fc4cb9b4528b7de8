"""What a Dockerfile declares and reads: its build ARGs and the context files it copies in.

The plan must pass exactly the ARGs a Dockerfile declares, and an image's input digest must cover the
files it copies, so both are read from the Dockerfile itself rather than listed a second time.

Instructions are read as BuildKit reads them: backslash continuations joined (comment lines inside them
dropped), heredocs (`RUN <<EOF`, `COPY <<EOF /dest`) kept out of the instruction stream, COPY/ADD in shell
form or JSON form (`COPY ["a", "/x/"]`). Every problem with a Dockerfile is an InputError naming the file and
line, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import InputError

_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE | re.MULTILINE)
_USE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
#: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` (not a here-string `<<<`)
_HEREDOC = re.compile(r"(?<!<)<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
_FLAGS = re.compile(r"^((?:--\S+\s+)*)(.*)$", re.S)
#: sources ADD fetches instead of reading the context: URLs and scp-like git addresses (git@host:org/repo)
_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[\w.-]+@[\w.-]+:)")


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts (1-based)
    keyword: str  # upper-case: FROM, RUN, COPY, ...
    arguments: str  # the rest of the logical line
    heredocs: tuple[str, ...] = ()  # bodies of the heredocs it opens, in order


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuations joined, comments dropped, heredoc bodies attached."""
    lines = text.splitlines()
    out: list[Instruction] = []
    number = 0
    while number < len(lines):
        first = lines[number]
        if not first.strip() or first.lstrip().startswith("#"):
            number += 1
            continue
        start, logical, current = number + 1, "", first
        while True:
            number += 1
            if current.rstrip().endswith("\\"):
                logical += current.rstrip()[:-1] + " "
                while number < len(lines) and (lines[number].lstrip().startswith("#") or not lines[number].strip()):
                    number += 1  # comment and empty lines inside a continuation are not part of it
                if number >= len(lines):
                    break
                current = lines[number]
                continue
            logical += current
            break
        keyword, arguments = (re.split(r"\s+", logical.strip(), maxsplit=1) + [""])[:2]
        keyword = keyword.upper()
        bodies = []
        if keyword in _HEREDOC_INSTRUCTIONS:
            for marker in _HEREDOC.finditer(arguments):
                body = []
                while number < len(lines):
                    line = lines[number]
                    number += 1
                    if (line.lstrip("\t") if marker[1] else line) == marker[3]:
                        break
                    body.append(line)
                bodies.append("\n".join(body))
        out.append(Instruction(line=start, keyword=keyword, arguments=arguments.strip(), heredocs=tuple(bodies)))
    return out


def declared_args(text: str) -> set[str]:
    return set(_ARG.findall(text))


def used_args(text: str) -> set[str]:
    """Names referenced as $NAME or ${NAME...} outside ARG lines (heredoc bodies included)."""
    used: set[str] = set()
    for instruction in instructions(text):
        if instruction.keyword != "ARG":
            used.update(_USE.findall(instruction.arguments))
        for body in instruction.heredocs:
            used.update(_USE.findall(body))
    return used


def read_dockerfile(path: Path) -> str:
    """A Dockerfile's text; FileNotFoundError when it is missing, InputError when it cannot be one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot read the Dockerfile ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: the Dockerfile is {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the Dockerfile is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot read the Dockerfile ({exc.strerror or exc})") from None


def copy_sources(dockerfile: Path, instruction: Instruction) -> list[str]:
    """The build-context sources of a COPY/ADD (none for `--from`, heredocs, URLs and git addresses)."""
    found = _FLAGS.match(instruction.arguments)
    assert found is not None  # the pattern matches any text (both groups may be empty)
    flags, rest = found.groups()
    if any(flag.startswith("--from") for flag in flags.split()):
        return []
    words: list[str] | None = None
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(word, str) for word in parsed):
            words = parsed
    if words is None:
        try:
            words = shlex.split(rest)  # no inline comments in a Dockerfile: `ADD URL#ref` is one word
        except ValueError as exc:
            raise InputError(f"{dockerfile}:{instruction.line}: {instruction.keyword} cannot be read: {exc} "
                             "(an unbalanced quote?)") from None
    if len(words) < 2:
        raise InputError(f"{dockerfile}:{instruction.line}: {instruction.keyword} needs a source and a destination")
    sources = []
    for word in words[:-1]:
        if _HEREDOC.fullmatch(word) or word.startswith("<<"):
            continue  # inline content, already part of the Dockerfile
        if instruction.keyword == "ADD" and _REMOTE.match(word):
            continue  # fetched by the builder (an http(s) URL, a git URL or git@host:repo)
        if "://" in word:
            continue
        sources.append(word)
    return sources


def _inside(context: Path, relative: str, dockerfile: Path, instruction: Instruction) -> str:
    """A source as BuildKit reads it: relative to the context root (a leading `/` means the root); one that
    climbs out of the context with `..` is refused."""
    normal = posixpath.normpath(relative.lstrip("/") or ".")
    if normal == ".." or normal.startswith("../"):
        raise InputError(f"{dockerfile}:{instruction.line}: {instruction.keyword} source {relative!r} is outside "
                         f"the build context {context}")
    return normal


def _regular_files(path: Path, root: Path, dockerfile: Path, instruction: Instruction) -> list[Path]:
    """`path` (a file, or every file under a folder) after checking it stays inside `root` and is regular.

    Inside a copied folder a symlinked folder is not followed (the builder copies the link itself)."""
    where = f"{dockerfile}:{instruction.line}: {instruction.keyword} source"
    if not path.is_symlink() and not path.exists():
        return [path]  # missing: the digest reports it ("file missing")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        raise InputError(f"{where} {path} cannot be resolved (a symlink loop?)") from None
    if not resolved.is_relative_to(root):
        raise InputError(f"{where} {path} resolves outside the build context (to {resolved})")
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        return [path]
    except OSError as exc:
        raise InputError(f"{where} {path} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return [path]
    if not stat.S_ISDIR(mode):
        raise InputError(f"{where} {path} is not a regular file or folder")
    found = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            found.extend(_regular_files(Path(folder) / name, root, dockerfile, instruction))
    return found


def dockerfile_inputs(dockerfile: Path) -> list[Path]:
    """Files of the build context a Dockerfile copies in (COPY/ADD without --from), sorted.

    FileNotFoundError when the Dockerfile is missing; InputError when it cannot be read or a COPY cannot be
    understood or reaches outside the context.
    """
    context = dockerfile.parent
    root = context.resolve()
    found: set[Path] = set()
    for instruction in instructions(read_dockerfile(dockerfile)):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        for source in copy_sources(dockerfile, instruction):
            relative = _inside(context, source, dockerfile, instruction)
            hits = [context / relative]
            if any(c in relative for c in "*?["):
                with contextlib.suppress(ValueError, NotImplementedError):  # else: the literal name
                    hits = sorted(context.glob(relative)) or hits
            for hit in hits:
                found.update(_regular_files(hit, root, dockerfile, instruction))
    return sorted(found)
