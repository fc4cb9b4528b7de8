"""factory.adapters.index.cache: the store itself, and PackageIndex's use of it (TTL, offline, refresh)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.adapters.index import NotInCache, PackageIndex
from factory.adapters.index.cache import DEFAULT_TTL, Cache, default_cache_dir
from tests.pypi_server import PyPIServer


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> Cache:
    return Cache(tmp_path / "cache", clock=clock)


# -- the store ---------------------------------------------------------------------------------


def test_roundtrip_bytes_and_json(cache: Cache) -> None:
    assert cache.get("k") is None and "k" not in cache
    cache.put("k", b"\x00binary\nwith newlines\n")
    assert cache.get("k") == b"\x00binary\nwith newlines\n" and "k" in cache
    cache.put_json("j", {"b": [1, 2], "a": None})
    assert cache.get_json("j") == {"a": None, "b": [1, 2]}
    cache.put("k", b"new")
    assert cache.get("k") == b"new"
    with pytest.raises(TypeError):
        cache.put("k", "text")  # type: ignore[arg-type]


def test_ttl(cache: Cache, clock: Clock) -> None:
    cache.put("k", b"v")
    entry = cache.entry("k")
    assert entry is not None and entry.stored_at == clock.now
    clock.now += 60
    assert cache.get("k", ttl=60) == b"v"
    clock.now += 1
    assert cache.get("k", ttl=60) is None
    assert cache.get("k", ttl=None) == b"v"  # never expires
    assert cache.get("k") == b"v"
    assert cache.get("k", ttl=0) is None
    entry = cache.entry("k")
    assert entry is not None and entry.data == b"v"  # an expired entry is still there (for offline use)
    assert DEFAULT_TTL == 6 * 3600


def test_keys_are_hashed_into_file_names(cache: Cache) -> None:
    key = "metadata:https://files.example.invalid/a/b/../c d?x=1#frag"
    path = cache.put(key, b"v")
    assert path == cache.path_for(key)
    assert path.parent.parent == cache.directory
    assert len(path.name) == 64 and all(c in "0123456789abcdef" for c in path.name)
    assert path.parent.name == path.name[:2]
    assert cache.path_for("other") != path


def test_writes_are_atomic_and_leave_no_temporary_files(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.put("k", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        cache.put("k", b"new")
    monkeypatch.undo()
    assert cache.get("k") == b"old"
    files = [p for p in cache.directory.rglob("*") if p.is_file()]
    assert files == [cache.path_for("k")]


def test_unreadable_entries_count_as_missing(cache: Cache) -> None:
    cache.path_for("a").parent.mkdir(parents=True, exist_ok=True)
    cache.path_for("a").write_bytes(b"no header line")
    cache.path_for("b").parent.mkdir(parents=True, exist_ok=True)
    cache.path_for("b").write_bytes(b"{not json\npayload")
    cache.path_for("c").parent.mkdir(parents=True, exist_ok=True)
    cache.path_for("c").write_bytes(json.dumps({"key": "someone else", "stored": 1}).encode() + b"\nx")
    cache.put("d", b"not json")
    assert cache.get("a") is None and cache.get("b") is None and cache.get("c") is None
    assert cache.get_json("d") is None


def test_delete_and_clear(cache: Cache) -> None:
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.delete("a") and not cache.delete("a")
    assert cache.clear() == 1 and cache.get("b") is None
    assert Cache(cache.directory / "nothing-here").clear() == 0


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "spark-image-factory"
    assert Cache().directory == tmp_path / "xdg" / "spark-image-factory"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "spark-image-factory"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path(tmp_path / "home" / ".cache" / "spark-image-factory")


# -- PackageIndex with a cache -----------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[PyPIServer]:
    with PyPIServer() as srv:
        yield srv


def _index(server: PyPIServer, cache: Cache, **kw: Any) -> PackageIndex:
    kw.setdefault("retries", 0)
    return PackageIndex(server.index_url, cache=cache, timeout=5, **kw)


def _work(ix: PackageIndex) -> tuple[Any, ...]:
    return (
        [r.version for r in ix.releases("vllm")],
        ix.wheel_metadata("vllm", "0.15.0"),
        ix.wheel_metadata("six", "1.17.0"),  # range path
        ix.torch_aarch64_is_cuda("2.11.0"),
    )


def test_offline_after_one_online_run_makes_no_requests(server: PyPIServer, cache: Cache, clock: Clock) -> None:
    with _index(server, cache) as ix:
        online = _work(ix)
    assert server.count() > 0
    server.reset_log()
    clock.now += 365 * 24 * 3600  # offline mode ignores the TTL
    with _index(server, cache, offline=True) as ix:
        assert _work(ix) == online
        assert ix._client is None  # no HTTP client was even created
    assert server.count() == 0


def test_offline_and_missing_raises_not_in_cache(server: PyPIServer, cache: Cache) -> None:
    with _index(server, cache, offline=True) as ix:
        with pytest.raises(NotInCache, match="file list of vllm"):
            ix.releases("vllm")
        with _index(server, cache) as online:
            online.releases("vllm")
        with pytest.raises(NotInCache, match="metadata of vllm-0.15.0"):
            ix.wheel_metadata("vllm", "0.15.0")
    assert server.count() == 1


def test_release_lists_expire_metadata_does_not(server: PyPIServer, cache: Cache, clock: Clock) -> None:
    with _index(server, cache) as ix:
        _work(ix)
    server.reset_log()
    clock.now += DEFAULT_TTL - 1
    with _index(server, cache) as ix:
        _work(ix)
    assert server.count() == 0  # everything from the cache
    clock.now += 2  # release lists are now stale; a wheel's METADATA never is
    with _index(server, cache) as ix:
        _work(ix)
    assert {r.path for r in server.requests} == {"/simple/vllm/", "/simple/six/", "/simple/torch/"}


def test_custom_ttl(server: PyPIServer, cache: Cache, clock: Clock) -> None:
    with _index(server, cache, releases_ttl=10) as ix:
        ix.releases("six")
    clock.now += 11
    with _index(server, cache, releases_ttl=10) as ix:
        ix.releases("six")
    assert server.count("/simple/six/") == 2


def test_refresh_ignores_but_rewrites_the_cache(server: PyPIServer, cache: Cache) -> None:
    with _index(server, cache) as ix:
        _work(ix)
    server.reset_log()
    server.add_project("six", [{"filename": "six-9.0-py3-none-any.whl"}])  # upstream moved on
    with _index(server, cache) as ix:
        assert ix.releases("six")[-1].version == "1.17.0"  # still the cached list
    with _index(server, cache, refresh=True) as ix:
        assert ix.releases("six")[-1].version == "9.0"
        ix.wheel_metadata("vllm", "0.15.0")
    assert server.count("/simple/six/") == 1
    assert server.count("/files/vllm-0.15.0") == 1  # metadata asked again too
    server.reset_log()
    with _index(server, cache) as ix:
        assert ix.releases("six")[-1].version == "9.0"  # the refreshed answer was stored
    assert server.count() == 0


def test_errors_are_not_cached(server: PyPIServer, cache: Cache) -> None:
    server.fail("/simple/vllm/", status=503)
    with _index(server, cache) as ix, pytest.raises(Exception, match="503"):
        ix.releases("vllm")
    with _index(server, cache) as ix:
        assert len(ix.releases("vllm")) == 4


def test_unwritable_cache_does_not_break_lookups(server: PyPIServer, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with _index(server, Cache(blocker / "cache")) as ix:
        assert len(ix.releases("vllm")) == 4
