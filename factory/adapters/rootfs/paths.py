"""Paths inside an exported root filesystem, resolved as a chroot would.

Symlinks inside the root (`/usr/local/cuda -> /usr/local/cuda-13.1`, often absolute) are resolved relative to
the root, never outside it. Image paths (`/opt/venv/...`) are what findings and messages name; these helpers
turn them into files on disk, glob them and read them.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections import deque
from pathlib import Path, PurePosixPath


def resolve_in_root(root: Path, path: str | PurePosixPath, *, max_links: int = 40) -> Path | None:
    """`path` (an image path) resolved inside `root` like a chroot would, or None where it does not exist.

    Absolute symlink targets start again at `root` and `..` never climbs above it, so the result is always
    inside `root`; a symlink loop gives None.
    """
    rel = resolve_parts(Path(root), str(path), max_links)
    return None if rel is None else Path(root).joinpath(*rel)


def image_path(parts: tuple[str, ...] | list[str]) -> str:
    """The image path of resolved parts: ('opt', 'venv') -> '/opt/venv'."""
    return "/" + "/".join(parts)


def resolve_parts(root: Path, path: str, max_links: int = 40) -> tuple[str, ...] | None:
    """`path` (an image path) resolved inside `root`, as parts below it; None where it does not exist."""
    pending = deque(PurePosixPath(path).parts)
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part in ("/", "", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            links += 1
            if links > max_links:
                return None
            try:
                target = PurePosixPath(os.readlink(candidate))
            except OSError:
                return None
            if target.is_absolute():
                resolved = []
            pending.extendleft(reversed(target.parts))
        else:
            resolved.append(part)
    return tuple(resolved)


def glob_parts(root: Path, pattern: str) -> list[tuple[str, ...]]:
    """Resolved paths (as parts) matching a `/`-separated pattern; symlinks are followed inside the root."""
    current: list[tuple[str, ...]] = [()]
    for part in pattern.strip("/").split("/"):
        found: dict[tuple[str, ...], None] = {}
        for base in current:
            if any(c in part for c in "*?["):
                try:
                    names = sorted(os.listdir(root.joinpath(*base)))
                except OSError:
                    continue
                candidates = [(*base, n) for n in fnmatch.filter(names, part)]
            else:
                candidates = [(*base, part)]
            for candidate in candidates:
                rel = resolve_parts(root, image_path(candidate))
                if rel is not None:
                    found[rel] = None
        current = list(found)
    return current


def read_text(root: Path, path: str | tuple[str, ...], limit: int = 1 << 20) -> str | None:
    """The start of a regular file at an image path (symlinks resolved inside the root), or None."""
    rel = resolve_parts(root, path if isinstance(path, str) else image_path(path))
    if rel is None:
        return None
    try:
        with open(root.joinpath(*rel), encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:  # a directory, unreadable, or gone
        return None

