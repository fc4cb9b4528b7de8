"""What a PEP 503 / PEP 691 "simple" index page says: the files of a project (:class:`DistFile`), grouped into
releases (:class:`Release`).

Both page kinds are read: the JSON API (PEP 691, with PEP 700 sizes and upload times, PEP 658/714 metadata
flags) and the HTML one. Every field of a JSON page is checked for its type, so a page of the wrong shape is
one :class:`~factory.adapters.index.errors.UpstreamError` naming the file and the field. Credentials found in
URLs are taken out of them (:func:`split_userinfo`) and never reach a message, a log line or the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit, urlunsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from factory.adapters.index.errors import UpstreamError

__all__ = [
    "ACCEPT",
    "JSON_TYPE",
    "DistFile",
    "Origins",
    "Release",
    "group_releases",
    "origin_of",
    "parse_html_page",
    "parse_json_page",
    "split_userinfo",
    "strip_fragment",
]

#: The content type of a PEP 691 JSON page, and what a client accepts (JSON first, HTML as a fallback).
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


@lru_cache(maxsize=4096)
def _wheel_parts(filename: str) -> tuple[Version, tuple[int, str] | tuple[()], frozenset[Any]] | None:
    try:
        _name, version, build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return None
    return version, build, tags


@lru_cache(maxsize=4096)
def _file_version(filename: str) -> Version | None:
    if filename.endswith(".whl"):
        parts = _wheel_parts(filename)
        return parts[0] if parts else None
    if filename.endswith((".tar.gz", ".zip")):
        try:
            return parse_sdist_filename(filename)[1]
        except (InvalidSdistFilename, InvalidVersion):
            return None
    return None


@dataclass(frozen=True)
class DistFile:
    """One file of a release, as the simple index describes it."""

    filename: str
    url: str
    size: int | None = None
    upload_time: datetime | None = None
    yanked: bool = False
    #: The index serves this file's core metadata at ``url + ".metadata"`` (PEP 658/714).
    core_metadata: bool = False
    #: ``(algorithm, hex digest)`` pairs of the file itself.
    hashes: tuple[tuple[str, str], ...] = ()
    requires_python: str | None = None
    yanked_reason: str | None = None
    #: ``(algorithm, hex digest)`` pairs of the ``.metadata`` file, when the index gives them.
    metadata_hashes: tuple[tuple[str, str], ...] = ()

    def digest(self, algorithm: str = "sha256") -> str | None:
        return dict(self.hashes).get(algorithm)

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl") and _wheel_parts(self.filename) is not None

    @property
    def version(self) -> Version | None:
        return _file_version(self.filename)

    @property
    def build_tag(self) -> tuple[int, str] | tuple[()]:
        parts = _wheel_parts(self.filename)
        return parts[1] if parts else ()

    @property
    def tags(self) -> frozenset[Any]:
        """The wheel's compatibility tags (``packaging.tags.Tag``); empty for non-wheels."""
        parts = _wheel_parts(self.filename)
        return parts[2] if parts else frozenset()

    @property
    def platform_tags(self) -> frozenset[str]:
        return frozenset(t.platform for t in self.tags)

    @property
    def is_aarch64_linux(self) -> bool:
        """Has a ``manylinux*_aarch64`` platform tag."""
        return any(p.startswith("manylinux") and p.endswith("_aarch64") for p in self.platform_tags)

    @property
    def is_x86_64_linux(self) -> bool:
        """Has a ``manylinux*_x86_64`` platform tag."""
        return any(p.startswith("manylinux") and p.endswith("_x86_64") for p in self.platform_tags)

    @property
    def is_any(self) -> bool:
        """A pure wheel: its only platform is ``any``."""
        return self.platform_tags == frozenset({"any"})

    @property
    def metadata_url(self) -> str:
        return strip_fragment(self.url) + ".metadata"

    # (de)serialisation for the cache
    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "url": self.url,
            "size": self.size,
            "upload_time": self.upload_time.isoformat() if self.upload_time else None,
            "yanked": self.yanked,
            "yanked_reason": self.yanked_reason,
            "core_metadata": self.core_metadata,
            "metadata_hashes": [list(h) for h in self.metadata_hashes],
            "hashes": [list(h) for h in self.hashes],
            "requires_python": self.requires_python,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DistFile:
        return cls(
            filename=d["filename"],
            url=split_userinfo(d["url"]),  # an entry cached by an older client may carry credentials
            size=d.get("size"),
            upload_time=_parse_time(d.get("upload_time")),
            yanked=bool(d.get("yanked")),
            yanked_reason=d.get("yanked_reason"),
            core_metadata=bool(d.get("core_metadata")),
            metadata_hashes=tuple((a, h) for a, h in d.get("metadata_hashes", ())),
            hashes=tuple((a, h) for a, h in d.get("hashes", ())),
            requires_python=d.get("requires_python"),
        )


@dataclass(frozen=True)
class Release:
    """All files of one version of a project."""

    version: str
    #: The earliest upload time of its files (PEP 700), None when the index gives none.
    uploaded: datetime | None
    #: Every file of the release is yanked (PEP 592).
    yanked: bool
    files: tuple[DistFile, ...] = field(default=())

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    @property
    def wheels(self) -> tuple[DistFile, ...]:
        return tuple(f for f in self.files if f.is_wheel)

    @property
    def has_aarch64_wheel(self) -> bool:
        return any(f.is_aarch64_linux for f in self.files)


def strip_fragment(url: str) -> str:
    return urldefrag(url)[0]


def _parse_time(value: Any) -> datetime | None:
    """An upload time (PEP 700: ISO 8601 in UTC) as an aware datetime; a time without a zone is taken as UTC,
    so naive and aware times of one page compare; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _hash_pairs(value: Any, what: str = "the index") -> tuple[tuple[str, str], ...]:
    """``{algorithm: hex digest}`` as sorted pairs; values that are not strings are an UpstreamError."""
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise UpstreamError(f"{what} has hashes that are not a mapping of algorithm to hex digest")
    return tuple(sorted((str(k), v) for k, v in value.items()))



def group_releases(files: Iterable[DistFile]) -> list[Release]:
    groups: dict[Version, list[DistFile]] = {}
    for f in files:
        v = f.version
        if v is None:
            continue
        groups.setdefault(v, []).append(f)
    releases = []
    for v in sorted(groups):
        fs = sorted(groups[v], key=lambda f: f.filename)
        times = [f.upload_time for f in fs if f.upload_time is not None]
        releases.append(Release(version=str(v), uploaded=min(times) if times else None,
                                yanked=all(f.yanked for f in fs), files=tuple(fs)))
    return releases


# -- index documents ---------------------------------------------------------------------------


#: (scheme, host, port) -> (user, password) for URLs that carried credentials.
Origins = dict[tuple[str, str, int], tuple[str, str]]


def origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def split_userinfo(url: str, origins: Origins | None = None) -> str:
    """``url`` without the ``user:password@`` of its authority; the credentials go into ``origins`` (by
    origin), so they are sent as an Authorization header to that origin only and never appear in a message,
    a log line or the cache."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    origin = origin_of(clean)
    if origins is not None and origin is not None:
        origins.setdefault(origin, (unquote(user), unquote(password)))
    return clean


def _metadata_flag(value: Any, what: str) -> tuple[bool, tuple[tuple[str, str], ...]]:
    """PEP 691 ``core-metadata``/``dist-info-metadata``: bool or a hash mapping."""
    if isinstance(value, Mapping):
        return True, _hash_pairs(value, what)
    if value is not None and not isinstance(value, bool):
        raise UpstreamError(f"{what} has a core-metadata value that is neither true/false nor hashes")
    return bool(value), ()


def parse_json_page(doc: Any, page_url: str, origins: Origins | None = None) -> list[DistFile]:
    """The files of a PEP 691 page; every field is checked for its type (a page of the wrong shape is one
    UpstreamError naming the file and the field). Credentials in file URLs go to ``origins``."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("files"), list):
        raise UpstreamError(f"{page_url} is not a PEP 691 project page (no 'files' list)")
    meta = doc.get("meta")
    api = str(meta.get("api-version", "1.0")) if isinstance(meta, Mapping) else "1.0"
    if not api.startswith("1."):
        raise UpstreamError(f"{page_url} speaks simple API {api[:20]}, which this client does not know")
    out = []
    for n, item in enumerate(doc["files"]):
        if not isinstance(item, Mapping) or "filename" not in item or "url" not in item:
            continue
        filename, url = item["filename"], item["url"]
        if not isinstance(filename, str) or not isinstance(url, str):
            raise UpstreamError(f"{page_url} lists a file (entry {n}) whose filename or url is not a string")
        what = f"{page_url} (file {filename[:120]!r})"

        def optional(key: str, kind: type | tuple[type, ...], what: str = what,
                     item: Mapping[str, Any] = item) -> Any:
            value = item.get(key)
            if value is None:
                return None
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise UpstreamError(f"{what} has a {key!r} of the wrong type")
            return value

        if "core-metadata" in item:
            has_meta, meta_hashes = _metadata_flag(item["core-metadata"], what)
        else:
            has_meta, meta_hashes = _metadata_flag(item.get("dist-info-metadata"), what)
        yanked = optional("yanked", (bool, str)) or False
        out.append(DistFile(
            filename=filename,
            url=split_userinfo(_join(page_url, url), origins),
            size=optional("size", int),
            upload_time=_parse_time(optional("upload-time", str)),
            yanked=bool(yanked),
            yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
            core_metadata=has_meta,
            metadata_hashes=meta_hashes,
            hashes=_hash_pairs(item.get("hashes"), what),
            requires_python=optional("requires-python", str) or None,
        ))
    return out


def _join(page_url: str, href: str) -> str:
    try:
        return urljoin(page_url, href)
    except ValueError:
        raise UpstreamError(f"{page_url} links to an invalid URL {href[:200]!r}") from None


def parse_html_page(text: str, page_url: str, origins: Origins | None = None) -> list[DistFile]:
    from html.parser import HTMLParser

    class AnchorParser(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.anchors: list[tuple[dict[str, str | None], str]] = []
            self._current: dict[str, str | None] | None = None
            self._text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self._current, self._text = dict(attrs), []

        def handle_data(self, data: str) -> None:
            if self._current is not None:
                self._text.append(data)

        def handle_endtag(self, tag: str) -> None:
            if tag == "a" and self._current is not None:
                self.anchors.append((self._current, "".join(self._text).strip()))
                self._current = None

    parser = AnchorParser()
    parser.feed(text)
    parser.close()
    out = []
    for attrs, label in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url = split_userinfo(_join(page_url, href), origins)
        base, fragment = urldefrag(url)
        filename = label or base.rsplit("/", 1)[-1]
        hashes: tuple[tuple[str, str], ...] = ()
        if "=" in fragment:
            algo, _, digest = fragment.partition("=")
            hashes = ((algo, digest),)
        meta = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        meta_hashes: tuple[tuple[str, str], ...] = ()
        if meta is not None and "=" in meta:
            algo, _, digest = meta.partition("=")
            meta_hashes = ((algo, digest),)
        has_meta = meta is not None and meta.lower() != "false"
        yanked_attr = attrs.get("data-yanked", None) if "data-yanked" in attrs else None
        out.append(DistFile(
            filename=filename,
            url=base,
            yanked="data-yanked" in attrs,
            yanked_reason=yanked_attr or None,
            core_metadata=has_meta,
            metadata_hashes=meta_hashes,
            hashes=hashes,
            requires_python=attrs.get("data-requires-python") or None,
        ))
    return out

