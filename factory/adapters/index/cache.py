"""A small on-disk key -> bytes/JSON cache with stored times.

Entries live under ``$XDG_CACHE_HOME/spark-image-factory`` (falling back to
``~/.cache/spark-image-factory``).  Every key is hashed into a file name, so keys may
be any string (URLs included); the credentials of a URL in a key (``https://user:token@host/``)
are redacted first (:func:`factory.core.redact.redact`), so they reach neither a file name nor a
file.  A file holds one JSON header line (the key and the time it was stored) followed by
the raw payload.  Writes go to a temporary file in
the same directory and are moved into place with :func:`os.replace`, so readers
never see a half-written entry.

The cache only stores and expires; the policy of *when* to consult it (offline
mode, ``refresh``) belongs to its users, e.g. :class:`factory.adapters.index.client.PackageIndex`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.core.cachedir import APP_NAME, user_cache_dir
from factory.core.redact import redact

__all__ = ["APP_NAME", "Cache", "CacheEntry", "DEFAULT_TTL", "default_cache_dir"]

#: Default time-to-live of mutable things (release lists): six hours.
DEFAULT_TTL: float = 6 * 60 * 60

_FORMAT = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/spark-image-factory``, else ``~/.cache/spark-image-factory``.

    As the XDG base directory specification asks, a relative ``XDG_CACHE_HOME`` is ignored.
    """
    return user_cache_dir()  # one definition, in core, shared with the cache of validated matrices


@dataclass(frozen=True)
class CacheEntry:
    """One stored value: its key, payload and the (epoch) time it was stored."""

    key: str
    data: bytes
    stored_at: float

    def age(self, now: float) -> float:
        return now - self.stored_at

    def json(self) -> Any:
        return json.loads(self.data)


class Cache:
    """Key -> bytes (or JSON) store in one directory.

    ``get(key, ttl)`` returns ``None`` when the key is missing, unreadable or older than
    ``ttl`` seconds; ``ttl=None`` means the entry never expires (use it for immutable
    things such as a given wheel's METADATA).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self._clock = clock

    def __repr__(self) -> str:
        return f"Cache({str(self.directory)!r})"

    # -- paths ---------------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file an entry for ``key`` lives in (whether or not it exists)."""
        digest = hashlib.sha256(f"v{_FORMAT}\0{redact(key)}".encode()).hexdigest()
        return self.directory / digest[:2] / digest

    # -- reading -------------------------------------------------------------------------------

    def entry(self, key: str) -> CacheEntry | None:
        """The stored entry for ``key`` regardless of its age, or None."""
        key = redact(key)
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        header, sep, data = raw.partition(b"\n")
        if not sep:
            return None
        try:
            meta = json.loads(header)
            stored_at = float(meta["stored"])
            stored_key = meta["key"]
        except (ValueError, KeyError, TypeError):
            return None
        if stored_key != key:  # a (practically impossible) hash collision, or a foreign file
            return None
        return CacheEntry(key=key, data=data, stored_at=stored_at)

    def is_fresh(self, entry: CacheEntry, ttl: float | None) -> bool:
        if ttl is None:
            return True
        if ttl <= 0:
            return False
        return entry.age(self._clock()) <= ttl

    def get(self, key: str, ttl: float | None = None) -> bytes | None:
        """The payload stored under ``key`` if present and at most ``ttl`` seconds old."""
        entry = self.entry(key)
        if entry is None or not self.is_fresh(entry, ttl):
            return None
        return entry.data

    def get_json(self, key: str, ttl: float | None = None) -> Any | None:
        """Like :meth:`get`, decoding JSON; an undecodable entry counts as missing."""
        data = self.get(key, ttl)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def __contains__(self, key: str) -> bool:
        return self.entry(key) is not None

    # -- writing -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> Path:
        """Store ``data`` under ``key`` (atomically) and return the file written."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"cache payloads are bytes, not {type(data).__name__}")
        key = redact(key)
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"key": key, "stored": self._clock()}, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(header.encode())
                fh.write(b"\n")
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def put_json(self, key: str, value: Any) -> Path:
        return self.put(key, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())

    def delete(self, key: str) -> bool:
        """Remove the entry for ``key``; True when there was one."""
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def clear(self) -> int:
        """Remove every entry (and stray temporary files); return how many files went."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for sub in self.directory.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for f in sub.iterdir():
                with contextlib.suppress(OSError):
                    f.unlink()
                    removed += 1
            with contextlib.suppress(OSError):
                sub.rmdir()
        return removed
