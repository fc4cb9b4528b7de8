"""The JSON documents of the OCI distribution API -- indexes, manifests, image configs, referrers lists --
parsed into typed values first, so a document of the wrong shape is one :class:`MalformedDocument` naming
the field, never a TypeError later; their media types; platforms as containerd normalises them."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from factory.adapters.registry.errors import InvalidPlatform, InvalidReference, MalformedDocument
from factory.adapters.registry.reference import Reference, check_digest

__all__ = [
    "ACCEPT",
    "CREATED",
    "DEFAULT_PLATFORM",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_EMPTY",
    "OCI_EMPTY_DATA",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageConfig",
    "Platform",
    "ResolvedManifest",
    "compute_digest",
    "error_detail",
    "next_link",
    "parse_index",
    "parse_manifest",
    "parse_platform",
    "referrer_entries",
]

DEFAULT_PLATFORM = "linux/arm64"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: OCI 1.1's empty descriptor: the config of an artifact manifest, which has no image config.
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_DATA = b"{}"
#: The annotation of an artifact manifest saying when it was made (OCI 1.1 artifacts guidance).
CREATED = "org.opencontainers.image.created"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})


#: Sizes beyond this are not sizes (OCI: int64); JSON numbers can be arbitrarily large.
MAX_SIZE = 2 ** 63 - 1
_NO_VALUE = object()
#: Error documents are read up to this many bytes.
_MAX_ERROR_BODY = 64 * 1024


def normalize_platform(os_name: str, arch: str, variant: str | None) -> tuple[str, str, str]:
    """Normalise like containerd: arm64's ``v8`` and amd64's ``v1`` are the default variants."""
    os_name, arch, variant = os_name.lower(), arch.lower(), (variant or "").lower()
    if variant.isdigit():
        variant = f"v{variant}"
    if arch in ("aarch64", "arm64"):
        arch = "arm64"
        if variant in ("v8", "v8.0"):
            variant = ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        if variant == "v1":
            variant = ""
    elif arch in ("armhf", "armel", "arm"):
        variant = variant or {"armhf": "v7", "armel": "v6"}.get(arch, "v7")
        arch = "arm"
    elif arch in ("i386", "i686", "386"):
        arch = "386"
    return os_name, arch, variant


def parse_platform(platform: str) -> tuple[str, str, str]:
    parts = platform.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidPlatform(f"invalid platform {platform!r}: expected os/architecture[/variant], e.g. linux/arm64")
    return normalize_platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")



def kind(value: Any) -> str:
    """What a JSON value is, in words: 'a list', 'a string', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def load_json(body: bytes, what: str) -> Any:
    """The JSON value of ``body``; MalformedDocument when it is not JSON (or has numbers Python refuses)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedDocument(f"{what} is not JSON") from None


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedDocument(f"{what} is {kind(value)}, not a JSON object")
    return value


def string_field(doc: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str | None:
    value = doc.get(key, _NO_VALUE)
    if value is _NO_VALUE or value is None:
        if required:
            raise MalformedDocument(f"{what} has no {key!r}")
        return None
    if not isinstance(value, str):
        raise MalformedDocument(f"{what} has a {key!r} that is {kind(value)}, not a string")
    return value


def size_field(doc: Mapping[str, Any], key: str, what: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedDocument(f"{what} has a {key!r} that is {kind(value)}, not a whole number")
    if not 0 <= value <= MAX_SIZE:
        shown = str(value) if len(str(value)) <= 24 else f"a number of {len(str(value))} digits"
        raise MalformedDocument(f"{what} has a {key!r} out of range ({shown})")
    return value


def string_map(doc: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedDocument(f"{what} has {key!r} that is {kind(value)}, not an object")
    for k, v in value.items():
        if not isinstance(v, str):
            raise MalformedDocument(f"{what} has {key!r} whose {k[:80]!r} is {kind(v)}, not a string")
    return dict(value)


def remote_digest(value: str, what: str) -> str:
    """A digest a server sent: well formed, or MalformedDocument (never the usage error of a bad argument)."""
    try:
        return check_digest(value, what)
    except InvalidReference as error:
        raise MalformedDocument(f"{what} names an invalid digest {value[:100]!r}: "
                                f"{str(error).rsplit(': ', 1)[-1]}") from None


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, value: Any, what: str) -> Platform:
        doc = json_object(value, f"the platform of {what}")
        return cls(string_field(doc, "os", f"the platform of {what}", required=True) or "",
                   string_field(doc, "architecture", f"the platform of {what}", required=True) or "",
                   string_field(doc, "variant", f"the platform of {what}") or "")

    @property
    def normalized(self) -> tuple[str, str, str]:
        return normalize_platform(self.os, self.architecture, self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os or "?", self.architecture or "?", self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor: an index entry or a manifest's config."""

    digest: str
    media_type: str | None
    size: int | None
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, what: str) -> Descriptor:
        doc = json_object(value, what)
        digest = remote_digest(string_field(doc, "digest", what, required=True) or "", what)
        platform = doc.get("platform")
        return cls(digest=digest, media_type=string_field(doc, "mediaType", what), size=size_field(doc, "size", what),
                   platform=None if platform is None else Platform.parse(platform, what),
                   annotations=string_map(doc, "annotations", what))

    @property
    def is_attestation(self) -> bool:
        if self.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            return True
        return self.platform is not None and (self.platform.os, self.platform.architecture) == ("unknown", "unknown")

    @property
    def platform_text(self) -> str:
        return str(self.platform) if self.platform is not None else "?/?"


def parse_index(doc: Mapping[str, Any], what: str) -> list[Descriptor]:
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise MalformedDocument(f"{what} has a 'manifests' that is {kind(entries)}, not a list"
                                if entries is not None else f"{what} has no manifests list")
    return [Descriptor.parse(e, f"entry {n} of {what}") for n, e in enumerate(entries)]


def parse_manifest(doc: Mapping[str, Any], what: str) -> Descriptor:
    if doc.get("config") is None:
        raise MalformedDocument(f"{what} names no config blob")
    return Descriptor.parse(doc["config"], f"the config descriptor of {what}")


@dataclass(frozen=True)
class ImageConfig:
    """What the factory reads of an image config: its platform and its labels."""

    platform: Platform
    labels: dict[str, str]

    @classmethod
    def parse(cls, doc: Mapping[str, Any], what: str) -> ImageConfig:
        platform = Platform(string_field(doc, "os", what) or "", string_field(doc, "architecture", what) or "",
                             string_field(doc, "variant", what) or "")
        inner = doc.get("config")
        if inner is None:
            return cls(platform, {})
        inner = json_object(inner, f"the 'config' of {what}")
        return cls(platform, string_map(inner, "Labels", what))



@dataclass(frozen=True)
class ResolvedManifest:
    """One platform's image manifest, as resolved from a reference.

    ``digest``: the image manifest's digest; ``index_digest``: the digest of the index
    (manifest list) it was picked from, ``None`` for a single-platform image; ``platform``:
    the manifest's platform as ``os/arch[/variant]``.
    """

    digest: str
    media_type: str
    config_digest: str
    platform: str
    index_digest: str | None = None
    config_size: int | None = None
    reference: Reference | None = None
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)



def compute_digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def error_detail(body: bytes) -> str:
    """``CODE: message`` from a distribution API error body, or '' (on one line, at most 300 characters)."""
    try:
        doc = json.loads(body[:_MAX_ERROR_BODY])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for err in errors[:3]:
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            code = code if isinstance(code, str) else ""
            message = message if isinstance(message, str) else ""
            parts.append(f"{code}: {message}" if code and message else code or message)
    return " ".join("; ".join(p for p in parts if p).split())[:300]



MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_LINK_NEXT = re.compile(r'<(?P<url>[^>]*)>\s*;(?:[^,]*;)?\s*rel="?next"?', re.IGNORECASE)


def referrer_entries(doc: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """The entries of a referrers index, each checked (digest, size, artifactType, annotations) and copied."""
    parse_index(doc, what)
    for n, entry in enumerate(doc["manifests"]):
        string_field(entry, "artifactType", f"entry {n} of {what}")
    return [dict(entry) for entry in doc["manifests"]]


def next_link(values: Iterable[str]) -> str | None:
    """The URL of ``Link: <url>; rel="next"`` (how the referrers API pages), or None."""
    for value in values:
        match = _LINK_NEXT.search(value)
        if match:
            return match["url"]
    return None

