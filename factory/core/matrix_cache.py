"""The cache of validated matrices: an unchanged `matrix.toml` loads without pydantic.

Validating the matrix means importing pydantic and building its models, which costs more than everything
`factory plan` does with the result. So a validated matrix is stored, as JSON of its dataclasses, under
`<user cache>/matrix/<key>.json`, where the key hashes the matrix's bytes together with the fingerprint of
the code that validates it (the factory's version and the source of the schema modules): an edited matrix
or an upgraded factory misses. A missing, unreadable, corrupt or foreign entry is a miss and is written
again; a cache that cannot be written is no error. Only valid matrices are stored, so a bad one fails the same
way every time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path

from factory.core.cachedir import user_cache_dir
from factory.core.matrix import Matrix, as_dict, from_dict

#: The layout of an entry; a different one is a miss.
FORMAT = 1
#: The modules whose code decides what a valid matrix is and what it becomes.
SCHEMA_SOURCES = ("schema.py", "grammar.py", "matrix.py", "matrix_errors.py", "components.py", "cascade.py")
#: Entries kept; older ones (by modification time) are removed when a new one is written.
KEEP = 32


def cache_dir() -> Path:
    return user_cache_dir() / "matrix"


@functools.cache
def schema_fingerprint() -> str:
    """The factory's version and the source of the schema modules, hashed: code that validates differently
    must not read entries another version wrote. The running code does not change, so it is read once per
    process (a miss reads the cache and writes it: two keys)."""
    from factory import __version__

    digest = hashlib.sha256(f"factory {__version__} format {FORMAT}".encode())
    here = Path(__file__).parent
    for name in SCHEMA_SOURCES:
        digest.update(name.encode() + b"\0")
        with contextlib.suppress(OSError):  # no source (a zipped install): the version alone decides
            digest.update((here / name).read_bytes())
    return digest.hexdigest()


def key_of(text: str) -> str:
    """The entry's key: the matrix's bytes under the schema's fingerprint."""
    return hashlib.sha256(schema_fingerprint().encode() + b"\0" + text.encode("utf-8")).hexdigest()


def entry_path(text: str) -> Path:
    return cache_dir() / f"{key_of(text)}.json"


def get(text: str) -> Matrix | None:
    """The validated matrix of `text` when the cache holds a sound entry for it, else None."""
    key = key_of(text)
    try:
        stored = json.loads((cache_dir() / f"{key}.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or stored.get("key") != key:
        return None
    try:
        return from_dict(Matrix, stored["matrix"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def put(text: str, matrix: Matrix) -> None:
    """Store a validated matrix (atomically: readers never see half an entry); failures are ignored."""
    key = key_of(text)
    folder = cache_dir()
    payload = json.dumps({"format": FORMAT, "key": key, "matrix": as_dict(matrix)}, default=str,
                         separators=(",", ":")).encode()
    import tempfile  # only when writing: a cache hit stays lean

    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(payload)
            os.replace(temporary, folder / f"{key}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _prune(folder)
    except OSError:
        return


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
