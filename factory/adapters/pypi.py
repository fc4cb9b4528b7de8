"""Client for an upstream Python package index (PEP 503 / PEP 691 "simple" API).

Used to check the version matrix against what upstream releases really declare:

* :meth:`PackageIndex.releases` lists a project's releases from the JSON simple API
  (PEP 691, with PEP 700 sizes and upload times; a PEP 503 HTML page is understood too);
* :meth:`PackageIndex.wheel_metadata` reads the ``METADATA`` of a wheel suiting a
  platform -- from the PEP 658 ``<wheel>.metadata`` file when the index has one, else
  with HTTP range requests into the wheel's zip (end of central directory, central
  directory, then only the member itself).  It never uses the legacy JSON API's
  ``info.requires_dist``, which has been seen to disagree with the wheels.

httpx is imported lazily (only when a request is made), so importing this module is
cheap and code paths that never talk to the network do not pull httpx in.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit, urlunsplit

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from factory.adapters.http import Deadline, describe_error, new_client, redacting_logger, retry_after_seconds
from factory.core.errors import InputError, WorkFailed
from factory.core.redact import redact

if TYPE_CHECKING:

    import httpx

    from factory.adapters.cache import Cache

__all__ = [
    "DEFAULT_INDEX_URL",
    "DistFile",
    "NotFound",
    "NotInCache",
    "PLATFORMS",
    "PackageIndex",
    "Release",
    "TransferStats",
    "UpstreamError",
    "UpstreamUnavailable",
    "WheelMetadata",
    "parse_metadata",
    "requirement_for",
    "select_wheel",
    "target_environment",
]

log = redacting_logger(__name__)

DEFAULT_INDEX_URL = "https://pypi.org/simple/"
PLATFORMS = ("linux/arm64", "linux/amd64")

_JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_ACCEPT = f"{_JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
_RELEASES_TTL = 6 * 60 * 60
#: Bytes asked for first from the end of a wheel: the end of central directory record
#: (22 bytes + a comment of up to 64 KiB) and, for most wheels, the whole central directory.
_TAIL_BYTES = 64 * 1024
#: A server that ignores Range may send a whole file only up to this size.
_MAX_FULL_BODY = 16 * 1024 * 1024
#: Index pages larger than this are refused (PyPI's torch page is under 1 MB) ...
_MAX_DOCUMENT = 64 * 1024 * 1024
#: ... and so are METADATA documents larger than this.
_MAX_METADATA = 16 * 1024 * 1024
#: Above this size an aarch64 torch wheel is taken to be a CUDA build (CPU ones are ~100 MB).
TORCH_CUDA_WHEEL_MIN_SIZE = 400 * 1000 * 1000


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


class UpstreamError(WorkFailed):
    """Something went wrong talking to (or understanding) the package index.

    A :class:`factory.core.errors.WorkFailed` (hence an ``Exception``), so the CLI reports it as
    one clear message with exit status 1. The credentials of any URL in it are redacted.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(redact(str(message)))


class UpstreamUnavailable(UpstreamError):
    """The index could not be reached, or kept failing (5xx, 429) after the retries."""


class NotInCache(UpstreamError):
    """Offline mode and the answer is not in the cache."""


class NotFound(UpstreamError):
    """The project, version or file does not exist on the index (404)."""


class BadMetadataHash(UpstreamError):
    """A METADATA document does not hash to what the index advertises for it (PEP 658/714)."""


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


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
        return _strip_fragment(self.url) + ".metadata"

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


@dataclass(frozen=True)
class WheelMetadata:
    """The parts of a wheel's core metadata the factory cares about."""

    name: str
    version: str
    requires_dist: tuple[str, ...]
    requires_python: str | None
    #: The wheel the metadata was read from.
    source_file: str

    def requirement(self, name: str, *, machine: str = "aarch64",
                    python_version: str = "3.12") -> Requirement | None:
        return requirement_for(self, name, machine=machine, python_version=python_version)


# ---------------------------------------------------------------------------------------------
# pure helpers
# ---------------------------------------------------------------------------------------------


def _strip_fragment(url: str) -> str:
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


def target_environment(machine: str = "aarch64", python_version: str = "3.12") -> dict[str, str]:
    """Marker environment of the images: Linux, CPython ``python_version``, no extras."""
    if machine not in ("aarch64", "x86_64"):
        raise ValueError(f"machine must be 'aarch64' or 'x86_64', not {machine!r}")
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "linux",
        "extra": "",
    }


def _applies(req: Requirement, env: dict[str, str], source_file: str = "a wheel") -> bool:
    if req.marker is None:
        return True
    try:
        return req.marker.evaluate(env)
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker, ValueError, TypeError) as exc:
        raise UpstreamError(f"the metadata of {source_file} declares {str(req)[:200]!r}, whose marker cannot be "
                            f"evaluated ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
                            ) from None


def _requirements(metadata: WheelMetadata, env: dict[str, str]) -> Iterable[Requirement]:
    """The Requires-Dist of ``metadata`` that apply in ``env``; a line that is not a requirement, or whose
    marker cannot be evaluated, is an UpstreamError (skipping it could hide a pin)."""
    for line in metadata.requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise UpstreamError(f"the metadata of {metadata.source_file} has a Requires-Dist that is not a "
                                f"requirement: {line[:200]!r} ({str(exc).splitlines()[0][:200]})") from None
        if _applies(req, env, metadata.source_file):
            yield req


def requirement_for(metadata: WheelMetadata, name: str, *, machine: str = "aarch64",
                    python_version: str = "3.12") -> Requirement | None:
    """The requirement on ``name`` that ``metadata`` declares for the target, or None.

    Markers are evaluated for Linux on ``machine`` (``aarch64`` or ``x86_64``) with CPython
    ``python_version`` and no extras requested; the first applicable line wins. An arbitrary-equality
    pin (``===``) on something that is not a PEP 440 version is an UpstreamError: the factory pins versions.
    """
    env = target_environment(machine, python_version)
    wanted = canonicalize_name(name)
    for req in _requirements(metadata, env):
        if canonicalize_name(req.name) == wanted:
            for spec in req.specifier:
                if spec.operator == "===":
                    try:
                        Version(spec.version)
                    except InvalidVersion:
                        raise UpstreamError(
                            f"the metadata of {metadata.source_file} pins {str(req)[:200]!r}: "
                            f"{spec.version[:100]!r} is not a version") from None
            return req
    return None


def parse_metadata(data: bytes, source_file: str) -> WheelMetadata:
    """Parse a core metadata (``METADATA``) document -- an RFC 822 style header block."""
    from email.parser import HeaderParser

    text = data.decode("utf-8", errors="replace")
    msg = HeaderParser().parsestr(text)

    def one(key: str) -> str | None:
        value = msg.get(key)
        return " ".join(str(value).split()) if value is not None else None

    name, version = one("Name"), one("Version")
    if not name or not version:
        raise UpstreamError(f"the metadata of {source_file} has no Name or Version field")
    requires = tuple(" ".join(str(v).split()) for v in (msg.get_all("Requires-Dist") or ()))
    return WheelMetadata(name=name, version=version, requires_dist=requires,
                         requires_python=one("Requires-Python"), source_file=source_file)


def _interpreter_rank(f: DistFile) -> int:
    """0 for cp312, 1 for abi3, 2 for py3 (or py312), 3 for anything else."""
    tags = f.tags
    if any(t.interpreter == "cp312" for t in tags):
        return 0
    if any(t.abi == "abi3" for t in tags):
        return 1
    if any(t.interpreter in ("py3", "py312") for t in tags):
        return 2
    return 3


def select_wheel(files: Iterable[DistFile], platform: str | None = "linux/arm64") -> DistFile | None:
    """The wheel best suited to ``platform`` among ``files``, or None.

    ``linux/arm64``: a manylinux aarch64 wheel, else a manylinux x86_64 one, else a pure
    (``any``) wheel; ``linux/amd64``: x86_64, else aarch64, else pure; ``None``: the same
    as arm64 and then any other wheel.  Among several, cp312 beats abi3 beats py3, a higher
    build tag wins, and non-yanked files are preferred.
    """
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS} or None, not {platform!r}")
    wheels = [f for f in files if f.is_wheel]
    tiers: list[Callable[[DistFile], bool]]
    if platform == "linux/amd64":
        tiers = [lambda f: f.is_x86_64_linux, lambda f: f.is_aarch64_linux, lambda f: f.is_any]
    else:
        tiers = [lambda f: f.is_aarch64_linux, lambda f: f.is_x86_64_linux, lambda f: f.is_any]
    if platform is None:
        tiers.append(lambda f: True)

    def preference(f: DistFile) -> tuple[int, int, Any, str]:
        build = f.build_tag
        return (int(f.yanked), _interpreter_rank(f), (-build[0], build[1]) if build else (0, ""),
                f.filename)

    for tier in tiers:
        matching = [f for f in wheels if tier(f)]
        if matching:
            return min(matching, key=preference)
    return None


def _group_releases(files: Iterable[DistFile]) -> list[Release]:
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


def _origin(url: str) -> tuple[str, str, int] | None:
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
    origin = _origin(clean)
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


def _parse_json_page(doc: Any, page_url: str, origins: Origins | None = None) -> list[DistFile]:
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


def _parse_html_page(text: str, page_url: str, origins: Origins | None = None) -> list[DistFile]:
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


# -- zip (wheel) structures ----------------------------------------------------------------------

_EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_LOCAL_SIG = b"PK\x03\x04"
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
_METADATA_MEMBER = re.compile(r"^[^/]+\.dist-info/METADATA$")


@dataclass(frozen=True)
class _ZipMember:
    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    local_offset: int


def _find_eocd(tail: bytes) -> int:
    # the record is 22 bytes long; rfind's end bounds where the 4-byte signature must end
    pos = tail.rfind(_EOCD_SIG, 0, max(0, len(tail) - _EOCD.size + len(_EOCD_SIG)))
    while pos >= 0:
        comment_len = _EOCD.unpack_from(tail, pos)[7]
        if pos + _EOCD.size + comment_len <= len(tail):
            return pos
        pos = tail.rfind(_EOCD_SIG, 0, pos)
    raise ValueError("no end of central directory record")


def _parse_central_directory(cd: bytes, entries: int) -> list[_ZipMember]:
    members = []
    pos = 0
    for _ in range(entries):
        if cd[pos:pos + 4] != _CENTRAL_SIG:
            raise ValueError(f"bad central directory entry at +{pos}")
        (_sig, _made, _needed, flags, method, _time, _date, crc, csize, usize, name_len,
         extra_len, comment_len, _disk, _iattr, _eattr, offset) = _CENTRAL.unpack_from(cd, pos)
        pos += _CENTRAL.size
        raw_name = cd[pos:pos + name_len]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        extra = cd[pos + name_len:pos + name_len + extra_len]
        pos += name_len + extra_len + comment_len
        if _U32 in (usize, csize, offset):
            usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        members.append(_ZipMember(name, method, flags, crc, csize, usize, offset))
    return members


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4:i + 4 + length]
        if tag == 0x0001:
            values = [v[0] for v in struct.iter_unpack("<Q", body[:len(body) // 8 * 8])]
            if usize == _U32 and values:
                usize = values.pop(0)
            if csize == _U32 and values:
                csize = values.pop(0)
            if offset == _U32 and values:
                offset = values.pop(0)
            break
        i += 4 + length
    return usize, csize, offset


# ---------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------


@dataclass
class TransferStats:
    """What this client has sent to / received from the network."""

    requests: int = 0
    bytes_received: int = 0


@dataclass
class _Response:
    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes


class _RemoteFile:
    """Random access to a remote file through HTTP range requests."""

    def __init__(self, index: PackageIndex, url: str) -> None:
        self._index = index
        self.url = url
        self.size: int | None = None
        self._whole: bytes | None = None  # set when the server ignored Range and sent it all

    def _ask(self, spec: str, start: int | None) -> tuple[int, bytes]:
        """Request ``bytes=spec``; return (absolute start offset, bytes)."""
        resp = self._index._get(self.url, headers={"Range": f"bytes={spec}",
                                                   "Accept-Encoding": "identity"},
                                max_bytes=_MAX_FULL_BODY, what="a wheel")
        if resp.status == 206:
            m = re.match(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)", resp.headers.get("content-range", ""))
            if not m:
                raise UpstreamError(f"{self.url} answered a range request without a usable Content-Range")
            first, last, total = int(m[1]), int(m[2]), m[3]
            if total != "*":
                self.size = int(total)
            if (start is not None and first != start) or len(resp.content) != last - first + 1:
                raise UpstreamError(f"{self.url} answered a different range than asked for")
            return first, resp.content
        # 200: the server ignored Range and sent the whole (small enough) file
        self._whole = resp.content
        self.size = len(resp.content)
        return 0, resp.content

    def tail(self, n: int) -> tuple[int, bytes]:
        if self._whole is not None:
            return max(0, len(self._whole) - n), self._whole[-n:]
        first, data = self._ask(f"-{n}", None)
        if self._whole is not None:
            return max(0, len(data) - n), data[-n:]
        return first, data

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``."""
        if end <= start:
            return b""
        if self.size is not None:
            end = min(end, self.size)
        if self._whole is not None:
            return self._whole[start:end]
        first, data = self._ask(f"{start}-{end - 1}", start)
        if self._whole is not None:
            return data[start:end]
        return data


def _read_zip_member(remote: _RemoteFile, pick: Callable[[list[_ZipMember]], _ZipMember | None],
                     tail_bytes: int = _TAIL_BYTES) -> tuple[_ZipMember, bytes]:
    """Find a member with ``pick`` in a remote zip and return it inflated, via range requests."""
    tail_start, tail = remote.tail(tail_bytes)
    try:
        eocd_pos = _find_eocd(tail)
    except ValueError as exc:
        raise UpstreamError(f"{remote.url} is not a zip file ({exc})") from None
    _sig, _disk, _cd_disk, _n_here, entries, cd_size, cd_offset, _clen = _EOCD.unpack_from(tail, eocd_pos)
    if entries == _U16 or _U32 in (cd_size, cd_offset):
        loc_pos = eocd_pos - _ZIP64_LOCATOR.size
        locator = (tail[loc_pos:eocd_pos] if loc_pos >= 0
                   else remote.read(tail_start + loc_pos, tail_start + eocd_pos))
        if len(locator) != _ZIP64_LOCATOR.size or locator[:4] != _ZIP64_LOCATOR_SIG:
            raise UpstreamError(f"{remote.url} has a damaged zip64 end of central directory")
        z64_offset = _ZIP64_LOCATOR.unpack(locator)[2]
        if z64_offset >= tail_start:
            rec = tail[z64_offset - tail_start:z64_offset - tail_start + _ZIP64_EOCD.size]
        else:
            rec = remote.read(z64_offset, z64_offset + _ZIP64_EOCD.size)
        if len(rec) != _ZIP64_EOCD.size or rec[:4] != _ZIP64_EOCD_SIG:
            raise UpstreamError(f"{remote.url} has a damaged zip64 end of central directory")
        *_, entries, cd_size, cd_offset = _ZIP64_EOCD.unpack(rec)
    if cd_offset >= tail_start:
        cd = tail[cd_offset - tail_start:cd_offset - tail_start + cd_size]
    else:
        cd = remote.read(cd_offset, tail_start) + tail[:max(0, cd_offset + cd_size - tail_start)]
    if len(cd) != cd_size:
        raise UpstreamError(f"{remote.url} has a truncated central directory")
    try:
        members = _parse_central_directory(cd, entries)
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise UpstreamError(f"{remote.url} has a damaged central directory ({exc})") from None
    member = pick(members)
    if member is None:
        raise UpstreamError(f"{remote.url} has no *.dist-info/METADATA member")
    if member.flags & 0x1:
        raise UpstreamError(f"{remote.url}: {member.name} is encrypted")
    if member.size > _MAX_METADATA:
        raise UpstreamError(f"{remote.url}: {member.name} is implausibly large ({member.size} bytes)")

    # local header (its extra field may differ from the central one) + the data
    guess = _LOCAL.size + len(member.name.encode()) + 256 + member.compressed_size
    local = remote.read(member.local_offset, member.local_offset + guess)
    if len(local) < _LOCAL.size or local[:4] != _LOCAL_SIG:
        raise UpstreamError(f"{remote.url}: no local header for {member.name}")
    name_len, extra_len = _LOCAL.unpack_from(local)[9:11]
    data_start = _LOCAL.size + name_len + extra_len
    data_end = data_start + member.compressed_size
    if data_end > len(local):
        local += remote.read(member.local_offset + len(local), member.local_offset + data_end)
    raw = local[data_start:data_end]
    if member.method == 0:
        data = raw
    elif member.method == 8:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(raw, member.size + 1)  # bounded: no zip bombs
        except zlib.error as exc:
            raise UpstreamError(f"{remote.url}: cannot inflate {member.name} ({exc})") from None
    else:
        raise UpstreamError(f"{remote.url}: {member.name} uses unsupported compression method "
                            f"{member.method}")
    if len(data) != member.size or zlib.crc32(data) != member.crc:
        raise UpstreamError(f"{remote.url}: {member.name} fails its CRC/size check")
    return member, data


class PackageIndex:
    """A client for one simple index; use as a context manager (it owns an ``httpx.Client``).

    ``cache``: where answers are kept (None: no caching).  Release lists are kept for
    ``releases_ttl`` seconds, wheel metadata forever.  ``offline``: never touch the network;
    answer from the cache whatever its age, raise :class:`NotInCache` when missing.
    ``refresh``: ignore cached answers but store the fresh ones.  ``retries``: how many
    times a request is repeated after a connection error, a 429 or a 5xx, waiting
    ``backoff * 2**n`` seconds (+ up to 10 % jitter; a 429's ``Retry-After`` when it is at
    most ``max_retry_after``), with at most ``max_wait`` seconds of waiting in all.
    """

    def __init__(self, index_url: str = DEFAULT_INDEX_URL, *, cache: Cache | None = None,
                 offline: bool = False, refresh: bool = False, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5, max_wait: float = 60.0,
                 max_retry_after: float = 30.0, releases_ttl: float | None = _RELEASES_TTL,
                 sleep: Callable[[float], None] = time.sleep,
                 user_agent: str | None = None) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        #: credentials of the index URL (and of file URLs that carried some), by origin: sent as a Basic
        #: Authorization header to that origin only, never part of a URL, a message or a cache key
        self._origins: Origins = {}
        try:
            urlsplit(index_url).port  # noqa: B018 - raises ValueError for a bad host or port
        except ValueError as exc:
            raise InputError(f"invalid index URL {redact(index_url)!r}: {exc}") from None
        index_url = split_userinfo(index_url, self._origins)
        self.index_url = index_url if index_url.endswith("/") else index_url + "/"
        self.cache = cache
        self.offline = offline
        self.refresh = refresh
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_retry_after = max_retry_after
        self.releases_ttl = releases_ttl
        self.stats = TransferStats()
        self._sleep = sleep
        self._user_agent = user_agent
        self._client: httpx.Client | None = None
        self._files_memo: dict[str, list[DistFile]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PackageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        mode = " offline" if self.offline else ""
        return f"<PackageIndex {self.index_url}{mode}>"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = new_client(self.timeout, self._user_agent)
        return self._client

    # -- HTTP ------------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2 ** attempt) * (1 + random.uniform(0, 0.1))

    def _auth(self, url: str) -> httpx.Auth | None:
        cred = self._origins.get(_origin(url) or ("", "", 0))
        if cred is None:
            return None
        import httpx

        return httpx.BasicAuth(*cred)

    def _get(self, url: str, *, headers: Mapping[str, str] | None = None,
             max_bytes: int = _MAX_DOCUMENT, what: str = "the index") -> _Response:
        """GET with retries; 2xx is returned, 404/410 raise NotFound, the rest UpstreamError.

        Each attempt runs under a wall-clock :class:`factory.adapters.http.Deadline` of ``timeout`` seconds (connect,
        headers and the whole body): a server that drips its answer fails the request then, and an attempt
        that ran out of time is not repeated.
        """
        if self.offline:
            raise NotInCache(f"offline, and {url} is not in the cache")
        import httpx

        url = split_userinfo(url, self._origins)
        auth = self._auth(url)
        waited = 0.0
        attempts = self.retries + 1
        for attempt in range(attempts):
            retry_in: float
            deadline = Deadline(self.timeout)
            try:
                with deadline, self.client.stream("GET", url, headers=headers,
                                                  auth=auth or httpx.USE_CLIENT_DEFAULT) as resp:
                    self.stats.requests += 1
                    status = resp.status_code
                    if 200 <= status < 300:
                        declared = resp.headers.get("content-length")
                        if declared and declared.isdigit() and int(declared) > max_bytes:
                            raise UpstreamError(
                                f"{url} is {int(declared)} bytes, more than the {max_bytes} "
                                f"accepted for {what}")
                        chunks, got = [], 0
                        try:
                            for chunk in resp.iter_bytes():
                                got += len(chunk)
                                if got > max_bytes:
                                    raise UpstreamError(f"{url} sent more than the {max_bytes} "
                                                        f"bytes accepted for {what}")
                                chunks.append(chunk)
                        finally:
                            self.stats.bytes_received += resp.num_bytes_downloaded
                        return _Response(str(resp.url), status, resp.headers, b"".join(chunks))
                    if status in (404, 410):
                        raise NotFound(f"{url} does not exist ({status} {resp.reason_phrase})")
                    if status != 429 and status < 500:
                        raise UpstreamError(f"{url} answered {status} {resp.reason_phrase}")
                    asked = retry_after_seconds(resp.headers.get("retry-after"))
                    if asked is not None and asked > self.max_retry_after:
                        doing = "is rate limiting requests" if status == 429 else "is unavailable"
                        raise UpstreamUnavailable(
                            f"{url} {doing} ({status}) and asks to wait {asked:.0f} s")
                    retry_in = asked if asked is not None else self._delay(attempt)
                    error: UpstreamError = UpstreamUnavailable(
                        f"{url} answered {status} {resp.reason_phrase} after {attempts} attempts")
            except httpx.UnsupportedProtocol as exc:
                raise UpstreamError(f"cannot fetch {url}: {describe_error(exc)}") from None
            except httpx.InvalidURL as exc:
                raise UpstreamError(f"cannot fetch {url}: {exc}") from None
            except httpx.RequestError as exc:  # transport errors, timeouts, bad encodings, redirect loops
                error = UpstreamUnavailable(f"cannot reach {url}: {describe_error(exc, deadline)}")
                if deadline.fired or not isinstance(exc, httpx.TransportError):
                    raise error from None  # ran out of time, or an answer that a retry would repeat
                retry_in = self._delay(attempt)
                error.__cause__ = exc
            if attempt + 1 >= attempts or waited + retry_in > self.max_wait:
                raise error
            log.debug("%s; retrying in %.2f s", error, retry_in)
            self._sleep(retry_in)
            waited += retry_in
        raise AssertionError("unreachable")

    # -- cache plumbing ----------------------------------------------------------------------

    def _cached(self, key: str, ttl: float | None, what: str) -> bytes | None:
        """A cached payload, honouring offline/refresh; raises NotInCache when offline."""
        if self.offline:
            entry = self.cache.entry(key) if self.cache is not None else None
            if entry is None:
                raise NotInCache(f"offline, and {what} is not in the cache")
            return entry.data
        if self.refresh or self.cache is None:
            return None
        return self.cache.get(key, ttl)

    def _store(self, key: str, data: bytes) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(key, data)
        except OSError as exc:
            log.warning("cannot write the cache %s: %s", self.cache.directory, exc)

    # -- releases ------------------------------------------------------------------------------

    def project_url(self, project: str) -> str:
        return urljoin(self.index_url, canonicalize_name(project) + "/")

    def files(self, project: str) -> list[DistFile]:
        """Every file the index lists for ``project`` (asked once per client and project)."""
        url = self.project_url(project)
        if url not in self._files_memo:
            self._files_memo[url] = self._load_files(project, url)
        return list(self._files_memo[url])

    def _load_files(self, project: str, url: str) -> list[DistFile]:
        key = f"files:{url}"
        cached = self._cached(key, self.releases_ttl, f"the file list of {project}")
        if cached is not None:
            try:
                return [DistFile.from_json(d) for d in json.loads(cached)]
            except (ValueError, KeyError, TypeError):
                if self.offline:
                    raise NotInCache(f"offline, and the cached file list of {project} is unreadable"
                                     ) from None
        try:
            resp = self._get(url, headers={"Accept": _ACCEPT})
        except NotFound:
            raise NotFound(f"project {project!r} is not on {self.index_url} (404)") from None
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype.endswith("json"):
            try:
                doc = json.loads(resp.content)
            except (ValueError, RecursionError) as exc:
                raise UpstreamError(f"{url} sent invalid JSON ({str(exc)[:200]})") from None
            files = _parse_json_page(doc, split_userinfo(resp.url), self._origins)
        elif "html" in ctype:
            files = _parse_html_page(resp.content.decode("utf-8", errors="replace"), split_userinfo(resp.url),
                                     self._origins)
        else:
            raise UpstreamError(f"{url} sent {ctype or 'no content type'}, not a simple index page")
        self._store(key, json.dumps([f.to_json() for f in files], separators=(",", ":")).encode())
        return files

    def releases(self, project: str) -> list[Release]:
        """The project's releases, oldest first (by ``packaging.version.Version``)."""
        return _group_releases(self.files(project))

    def release(self, project: str, version: str) -> Release:
        """One release; :class:`NotFound` when the index has no file of that version."""
        try:
            wanted = Version(version)
        except InvalidVersion:
            raise NotFound(f"{version!r} is not a valid version (of {project})") from None
        for rel in self.releases(project):
            if rel.parsed_version == wanted:
                return rel
        raise NotFound(f"{project} {version} is not on {self.index_url}")

    def has_aarch64_wheel(self, project: str, version: str) -> bool:
        """Whether the release has a ``manylinux*_aarch64`` wheel."""
        return self.release(project, version).has_aarch64_wheel

    def sdist_files(self, project: str, version: str, *, prefixes: tuple[str, ...] = ("requirements/",),
                    names: tuple[str, ...] = ("pyproject.toml",), max_bytes: int = 200 << 20) -> dict[str, str] | None:
        """Text files of the release's sdist whose path (below the sdist's top folder) starts with one of
        ``prefixes`` or equals one of ``names``; None when the release has no sdist. The download must match
        the sha256 the index gives (refused otherwise); the extracted files are cached forever."""
        import io
        import tarfile

        rel = self.release(project, version)
        sdists = [f for f in rel.files if f.filename.endswith(".tar.gz") and not f.yanked]
        if not sdists:
            return None
        sdist = sdists[0]
        key = f"sdist-files:{split_userinfo(_strip_fragment(sdist.url))}:{','.join(prefixes + names)}"
        cached = self._cached(key, None, f"the files of {sdist.filename}")
        if cached is not None:
            return dict(json.loads(cached))
        data = self._get(_strip_fragment(sdist.url), max_bytes=max_bytes, what="an sdist").content
        want = sdist.digest("sha256")
        if want is None or hashlib.sha256(data).hexdigest() != want:
            raise UpstreamError(f"{sdist.filename} does not match the sha256 the index gives for it: refused")
        out: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar:
                    path = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if member.isfile() and (path in names or path.startswith(prefixes)) and member.size < 1 << 20:
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            out[path] = extracted.read().decode("utf-8", errors="replace")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UpstreamError(f"{sdist.filename} is not a readable .tar.gz: {exc}") from None
        self._store(key, json.dumps(out, sort_keys=True).encode())
        return out

    # -- metadata --------------------------------------------------------------------------------

    def wheel_metadata(self, project: str, version: str, *,
                       platform: str | None = "linux/arm64") -> WheelMetadata:
        """The core metadata of the release's wheel best suited to ``platform``.

        See :func:`select_wheel` for the choice.  Raises :class:`NotFound` when the release
        has no suitable wheel.
        """
        rel = self.release(project, version)
        wheel = select_wheel(rel.files, platform)
        if wheel is None:
            where = f" for {platform}" if platform else ""
            raise NotFound(f"{project} {rel.version} has no wheel{where} on {self.index_url}")
        return self.metadata_of(wheel)

    def metadata_of(self, wheel: DistFile) -> WheelMetadata:
        """The core metadata of one wheel (cached forever: a wheel is immutable).

        When the index advertises the METADATA's hash (PEP 658/714), the bytes must match it -- fetched or
        cached; a mismatch is a :class:`BadMetadataHash` and nothing is cached.
        """
        key = f"metadata:{split_userinfo(_strip_fragment(wheel.url))}"
        data = self._cached(key, None, f"the metadata of {wheel.filename}")
        if data is not None and self._metadata_mismatch(wheel, data):
            if self.offline:
                raise BadMetadataHash(f"the cached metadata of {wheel.filename} does not match the hash the "
                                      f"index advertises ({self._metadata_mismatch(wheel, data)}); refresh it "
                                      "online")
            data = None
        if data is None:
            data = self._fetch_metadata(wheel)
            self._store(key, data)
        meta = parse_metadata(data, wheel.filename)
        if canonicalize_name(meta.name) != canonicalize_name(wheel.filename.split("-", 1)[0]):
            raise UpstreamError(f"the metadata of {wheel.filename} names another project ({meta.name})")
        return meta

    def _fetch_metadata(self, wheel: DistFile) -> bytes:
        # PEP 658: try <url>.metadata -- also when the page does not advertise it, since some
        # mirrors serve it without saying so; a 404 sends us to the range path.
        try:
            resp = self._get(wheel.metadata_url, max_bytes=_MAX_METADATA, what="a METADATA file")
        except (UpstreamUnavailable, NotInCache):
            raise
        except UpstreamError as exc:  # 404, or e.g. a 403 from a bucket-backed mirror
            if wheel.core_metadata:
                log.info("%s is advertised but unusable (%s); reading the wheel instead",
                         wheel.metadata_url, exc)
        else:
            mismatch = self._metadata_mismatch(wheel, resp.content)
            if mismatch:
                raise BadMetadataHash(f"{wheel.metadata_url} does not match the hash the index advertises for "
                                      f"it ({mismatch}): refusing to use it")
            return resp.content
        data = self._metadata_by_range(wheel)
        mismatch = self._metadata_mismatch(wheel, data)
        if mismatch:  # PEP 658: the .metadata file is the wheel's METADATA, byte for byte
            raise BadMetadataHash(f"the METADATA in {_strip_fragment(wheel.url)} does not match the hash the "
                                  f"index advertises for it ({mismatch}): refusing to use it")
        return data

    @staticmethod
    def _metadata_mismatch(wheel: DistFile, data: bytes) -> str:
        """'' when ``data`` matches the METADATA hash the index advertises (or it advertises none this client
        can compute), else ``algorithm expected ..., got ...``."""
        for algo, digest in wheel.metadata_hashes:
            if algo.lower() in hashlib.algorithms_guaranteed:
                got = hashlib.new(algo.lower(), data).hexdigest()
                if got == digest.strip().lower():
                    return ""
                return f"{algo.lower()} advertised {digest[:64]}, got {got}"
        return ""

    def _metadata_by_range(self, wheel: DistFile) -> bytes:
        url = _strip_fragment(wheel.url)
        parts = _wheel_parts(wheel.filename)
        dist_info = None
        if parts is not None:
            name = wheel.filename.split("-", 1)[0]
            dist_info = f"{name}-{wheel.filename.split('-')[1]}.dist-info/METADATA"

        def pick(members: list[_ZipMember]) -> _ZipMember | None:
            candidates = [m for m in members if _METADATA_MEMBER.match(m.name)]
            for m in candidates:
                if dist_info and m.name.lower() == dist_info.lower():
                    return m
            return candidates[0] if candidates else None

        remote = _RemoteFile(self, url)
        try:
            _member, data = _read_zip_member(remote, pick)
        except NotFound:
            raise NotFound(f"{url} does not exist (404)") from None
        return data

    # -- torch -------------------------------------------------------------------------------------

    def torch_aarch64_is_cuda(self, version: str) -> bool | None:
        """Whether PyPI's aarch64 torch wheel of ``version`` is a CUDA build.

        True when its metadata, evaluated for Linux aarch64 / CPython 3.12, requires NVIDIA
        CUDA runtime packages (``nvidia-*``, ``cuda-toolkit``); failing metadata, when the
        wheel is large (> 400 MB; CPU-only aarch64 wheels are ~100 MB).  None when the
        release has no aarch64 wheel.
        """
        rel = self.release("torch", version)
        wheel = select_wheel([f for f in rel.files if f.is_aarch64_linux], "linux/arm64")
        if wheel is None:
            return None
        big = wheel.size is not None and wheel.size > TORCH_CUDA_WHEEL_MIN_SIZE
        try:
            meta = self.metadata_of(wheel)
        except (BadMetadataHash, NotInCache, UpstreamUnavailable):
            raise
        except UpstreamError as exc:
            if wheel.size is None:
                raise
            log.info("no metadata for %s (%s); judging by its size", wheel.filename, exc)
            return big
        if any(_is_cuda_requirement(r) for r in _requirements(meta, target_environment("aarch64"))):
            return True
        return big


def _is_cuda_requirement(req: Requirement) -> bool:
    name = canonicalize_name(req.name)
    return name.startswith("nvidia-") or name == "cuda-toolkit"
