"""Read an image's manifest, config and labels straight from a registry, without pulling it.

A small client for the OCI distribution API (``/v2/``), enough to answer "what does this
tag hold?" for the factory:

* :func:`parse_reference` normalises an image reference the way Docker does;
* :meth:`RegistryClient.manifest` resolves a reference to one platform's image manifest,
  walking an OCI index / Docker manifest list and skipping attestation manifests;
* :meth:`RegistryClient.config` and :meth:`RegistryClient.labels` read the image config
  blob (checking its digest) and the labels in it;
* :meth:`RegistryClient.exists` asks, with a ``HEAD``, whether a tag is published and
  which digest it points at;
* :meth:`RegistryClient.attach` pushes an artifact (an SBOM) as an OCI 1.1 referrer of an
  image, and :meth:`RegistryClient.referrers` / :meth:`RegistryClient.fetch_artifact` read
  it back -- through the referrers API where the registry has it, else through the
  referrers tag schema (the tag ``sha256-<hex>`` holding an index of the referrers).

Authentication follows the registry's ``WWW-Authenticate`` challenge: ``Bearer`` (token
service, anonymous or with the user's credentials) or ``Basic``.  Credentials come from
the Docker config by default (:mod:`factory.adapters.credentials`).

Plain HTTP is spoken only to loopback registries (127.0.0.0/8, ::1, localhost) unless the
client is built with ``allow_http=True``; everything else is HTTPS with the certificate
verified.  httpx is imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import ipaddress
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from factory.adapters.http import Deadline, describe_error, new_client, redacting_logger, retry_after_seconds
from factory.core.errors import InputError, WorkFailed
from factory.core.redact import redact

if TYPE_CHECKING:

    import httpx

    from factory.adapters.credentials import Credential, CredentialProvider

__all__ = [
    "DEFAULT_PLATFORM",
    "DEFAULT_REGISTRY",
    "DOCKER_CONFIG",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_AUTH_KEY",
    "BadDigest",
    "InvalidArtifact",
    "InvalidPlatform",
    "InvalidReference",
    "MalformedDocument",
    "NotFound",
    "PlainHTTPRefused",
    "PlatformNotFound",
    "Reference",
    "RegistryAccessDenied",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "RegistryUnreachable",
    "ResolvedManifest",
    "is_loopback",
    "parse_challenges",
    "parse_reference",
]

log = redacting_logger(__name__)

# ---------------------------------------------------------------------------------------------
# Docker Hub: where a reference without a registry host goes.  These constants are the only
# place the factory names it.
# ---------------------------------------------------------------------------------------------

#: The registry API host a reference without a host resolves to (Docker Hub).
DEFAULT_REGISTRY = "registry-1.docker.io"
#: Other names Docker accepts for that registry in a reference; they normalise to it.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DEFAULT_REGISTRY})
#: The key ``docker login`` files the default registry's credentials under (config and helpers).
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

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
_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
_SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})

#: Manifests are limited to 4 MiB by the reference registry; configs are small JSON too.
_MAX_MANIFEST = 4 * 1024 * 1024
#: Also the cap on an artifact (an SBOM) read back by :meth:`RegistryClient.fetch_artifact`.
_MAX_CONFIG = 32 * 1024 * 1024
#: Pages of a referrers list followed at most (the API may paginate with ``Link: <...>; rel="next"``).
_MAX_PAGES = 100
_MAX_TOKEN = 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024

_DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


class RegistryError(WorkFailed):
    """Talking to (or understanding) a container registry failed; one clear sentence, in which the credentials
    of any URL are redacted (a server's realm or a redirect may carry them)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(redact(str(message)))


class InvalidReference(RegistryError, InputError):
    """An image reference that is not well formed (a usage error: exit status 2)."""

    exit_code = 2


class PlainHTTPRefused(RegistryError, InputError):
    """Plain HTTP to a registry (or token service) that is not on loopback, without ``allow_http``."""

    exit_code = 2


class InvalidPlatform(RegistryError, InputError):
    """A platform that is not ``os/architecture[/variant]`` (a usage error: exit status 2)."""

    exit_code = 2


class InvalidArtifact(RegistryError, InputError):
    """An artifact to attach that is not well formed: its media type, subject or annotations (exit status 2)."""

    exit_code = 2


class RegistryUnreachable(RegistryError):
    """No HTTP answer from the registry or its token service (connection, DNS, TLS, timeout)."""


class RegistryUnavailable(RegistryError):
    """The registry kept answering 5xx or 429 after the retries."""


class RegistryAccessDenied(RegistryError):
    """401/403: the registry (or its token service) refused access to a repository."""


class NotFound(RegistryError):
    """The manifest or blob does not exist (404)."""


class PlatformNotFound(RegistryError):
    """The image has no manifest for the platform asked for."""


class BadDigest(RegistryError):
    """What the registry sent does not hash to the digest it was asked for (or claims)."""


class MalformedDocument(RegistryError):
    """A manifest, index, image config or token answer is JSON of the wrong shape (a list where a string
    belongs, a missing key, a number out of range)."""


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"([a-z0-9]+(?:[-_+.][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: ``registry/repository[:tag][@digest]``.

    ``tag`` is ``latest`` when neither a tag nor a digest was given, ``None`` for a reference
    by digest alone.  When both are given the digest is what is fetched.
    """

    registry: str
    repository: str
    tag: str | None = "latest"
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes in the manifest URL: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _check_digest(digest: str, what: str) -> str:
    m = _DIGEST.fullmatch(digest)
    if not m:
        raise InvalidReference(f"invalid digest {digest!r} in {what!r}: expected algorithm:hex")
    algorithm, hexpart = m.groups()
    if algorithm not in _DIGEST_ALGORITHMS:
        raise InvalidReference(f"unsupported digest algorithm {algorithm!r} in {what!r} (sha256 or sha512)")
    if len(hexpart) != _DIGEST_ALGORITHMS[algorithm] or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise InvalidReference(f"invalid {algorithm} digest in {what!r}: expected "
                               f"{_DIGEST_ALGORITHMS[algorithm]} lowercase hex digits")
    return digest


def parse_reference(ref: str) -> Reference:
    """Parse and normalise an image reference with Docker's rules.

    The first path component is a registry host when it contains ``.`` or ``:``, is
    ``localhost``, or has upper-case letters; otherwise the reference is on the default
    registry, where a one-component name gets ``library/`` in front.  A missing tag is
    ``latest`` (unless a digest is given).  Raises :class:`InvalidReference`.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidReference("empty image reference")
    text = ref.strip()
    if "://" in text:
        raise InvalidReference(f"invalid image reference {ref!r}: a reference has no URL scheme")
    if any(c.isspace() for c in text):
        raise InvalidReference(f"invalid image reference {ref!r}: it contains white space")
    userinfo, at, rest = text.partition("@")
    if at and "/" in rest:  # only a digest may follow '@': this is `user[:password]@host/...`
        raise InvalidReference(f"invalid image reference {'***@' + rest!r}: a reference carries no user name or "
                               "password (registries get credentials from `docker login`)")

    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        _check_digest(digest, ref)
    tag = None
    colon = text.rfind(":")
    if colon > text.rfind("/") and not text.endswith("]"):
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r} in {ref!r}: up to 128 letters, digits, '_', '.' or '-', "
                                   "not starting with '.' or '-'")
    if not text:
        raise InvalidReference(f"invalid image reference {ref!r}: no repository name")

    slash = text.find("/")
    first = text[:slash] if slash >= 0 else ""
    if slash >= 0 and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        registry, remainder = first, text[slash + 1:]
        if not _DOMAIN.fullmatch(registry):
            raise InvalidReference(f"invalid registry host {registry!r} in {ref!r}")
    else:
        registry, remainder = DEFAULT_REGISTRY, text
    if registry.lower() in DOCKER_HUB_ALIASES:
        registry = DEFAULT_REGISTRY
        if "/" not in remainder:
            remainder = f"library/{remainder}"
    for component in remainder.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            if component.lower() != component and _PATH_COMPONENT.fullmatch(component.lower()):
                raise InvalidReference(f"invalid image reference {ref!r}: repository name must be lowercase")
            raise InvalidReference(
                f"invalid image reference {ref!r}: bad path component {component!r} (lowercase letters and "
                "digits, separated by '.', '_', '__' or '-')")
    if len(f"{registry}/{remainder}") > _MAX_NAME:
        raise InvalidReference(f"invalid image reference {ref!r}: name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, remainder, tag, digest)


def _as_reference(ref: Reference | str) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


# ---------------------------------------------------------------------------------------------
# platforms
# ---------------------------------------------------------------------------------------------


def _normalize_platform(os_name: str, arch: str, variant: str | None) -> tuple[str, str, str]:
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


def _parse_platform(platform: str) -> tuple[str, str, str]:
    parts = platform.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidPlatform(f"invalid platform {platform!r}: expected os/architecture[/variant], e.g. linux/arm64")
    return _normalize_platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


# ---------------------------------------------------------------------------------------------
# documents: every JSON document read from a registry is parsed into these typed values first, so a
# document of the wrong shape is one MalformedDocument naming the field, never a TypeError later
# ---------------------------------------------------------------------------------------------

#: Sizes beyond this are not sizes (OCI: int64); JSON numbers can be arbitrarily large.
_MAX_SIZE = 2 ** 63 - 1
_NO_VALUE = object()


def _kind(value: Any) -> str:
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


def _load_json(body: bytes, what: str) -> Any:
    """The JSON value of ``body``; MalformedDocument when it is not JSON (or has numbers Python refuses)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedDocument(f"{what} is not JSON") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedDocument(f"{what} is {_kind(value)}, not a JSON object")
    return value


def _string(doc: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str | None:
    value = doc.get(key, _NO_VALUE)
    if value is _NO_VALUE or value is None:
        if required:
            raise MalformedDocument(f"{what} has no {key!r}")
        return None
    if not isinstance(value, str):
        raise MalformedDocument(f"{what} has a {key!r} that is {_kind(value)}, not a string")
    return value


def _size(doc: Mapping[str, Any], key: str, what: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedDocument(f"{what} has a {key!r} that is {_kind(value)}, not a whole number")
    if not 0 <= value <= _MAX_SIZE:
        shown = str(value) if len(str(value)) <= 24 else f"a number of {len(str(value))} digits"
        raise MalformedDocument(f"{what} has a {key!r} out of range ({shown})")
    return value


def _string_map(doc: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedDocument(f"{what} has {key!r} that is {_kind(value)}, not an object")
    for k, v in value.items():
        if not isinstance(v, str):
            raise MalformedDocument(f"{what} has {key!r} whose {k[:80]!r} is {_kind(v)}, not a string")
    return dict(value)


def _remote_digest(value: str, what: str) -> str:
    """A digest a server sent: well formed, or MalformedDocument (never the usage error of a bad argument)."""
    try:
        return _check_digest(value, what)
    except InvalidReference as error:
        raise MalformedDocument(f"{what} names an invalid digest {value[:100]!r}: "
                                f"{str(error).rsplit(': ', 1)[-1]}") from None


@dataclass(frozen=True)
class _Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, value: Any, what: str) -> _Platform:
        doc = _object(value, f"the platform of {what}")
        return cls(_string(doc, "os", f"the platform of {what}", required=True) or "",
                   _string(doc, "architecture", f"the platform of {what}", required=True) or "",
                   _string(doc, "variant", f"the platform of {what}") or "")

    @property
    def normalized(self) -> tuple[str, str, str]:
        return _normalize_platform(self.os, self.architecture, self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os or "?", self.architecture or "?", self.variant) if p)


@dataclass(frozen=True)
class _Descriptor:
    """An OCI descriptor: an index entry or a manifest's config."""

    digest: str
    media_type: str | None
    size: int | None
    platform: _Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, what: str) -> _Descriptor:
        doc = _object(value, what)
        digest = _remote_digest(_string(doc, "digest", what, required=True) or "", what)
        platform = doc.get("platform")
        return cls(digest=digest, media_type=_string(doc, "mediaType", what), size=_size(doc, "size", what),
                   platform=None if platform is None else _Platform.parse(platform, what),
                   annotations=_string_map(doc, "annotations", what))

    @property
    def is_attestation(self) -> bool:
        if self.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            return True
        return self.platform is not None and (self.platform.os, self.platform.architecture) == ("unknown", "unknown")

    @property
    def platform_text(self) -> str:
        return str(self.platform) if self.platform is not None else "?/?"


def _parse_index(doc: Mapping[str, Any], what: str) -> list[_Descriptor]:
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise MalformedDocument(f"{what} has a 'manifests' that is {_kind(entries)}, not a list"
                                if entries is not None else f"{what} has no manifests list")
    return [_Descriptor.parse(e, f"entry {n} of {what}") for n, e in enumerate(entries)]


def _parse_manifest(doc: Mapping[str, Any], what: str) -> _Descriptor:
    if doc.get("config") is None:
        raise MalformedDocument(f"{what} names no config blob")
    return _Descriptor.parse(doc["config"], f"the config descriptor of {what}")


@dataclass(frozen=True)
class _ImageConfig:
    """What the factory reads of an image config: its platform and its labels."""

    platform: _Platform
    labels: dict[str, str]

    @classmethod
    def parse(cls, doc: Mapping[str, Any], what: str) -> _ImageConfig:
        platform = _Platform(_string(doc, "os", what) or "", _string(doc, "architecture", what) or "",
                             _string(doc, "variant", what) or "")
        inner = doc.get("config")
        if inner is None:
            return cls(platform, {})
        inner = _object(inner, f"the 'config' of {what}")
        return cls(platform, _string_map(inner, "Labels", what))


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether a registry host (``host``, ``host:port``, ``[v6]:port``) is on loopback."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _compute_digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_challenges(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Parse ``WWW-Authenticate`` header values into ``[(scheme, {param: value})]``.

    Schemes and parameter names are lower-cased; quoted values are unescaped.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    for value in values:
        i, n = 0, len(value)
        current: dict[str, str] | None = None
        while i < n:
            while i < n and value[i] in " \t,":
                i += 1
            m = _TOKEN_CHARS.match(value, i)
            if not m:
                break
            token, i = m.group(), m.end()
            j = i
            while j < n and value[j] in " \t":
                j += 1
            if current is not None and j < n and value[j] == "=" and value[j + 1:j + 2] != "=":
                j += 1
                while j < n and value[j] in " \t":
                    j += 1
                if j < n and value[j] == '"':
                    j += 1
                    chars = []
                    while j < n and value[j] != '"':
                        if value[j] == "\\" and j + 1 < n:
                            j += 1
                        chars.append(value[j])
                        j += 1
                    param = "".join(chars)
                    i = j + 1
                else:
                    k = j
                    while k < n and value[k] not in ", \t":
                        k += 1
                    param, i = value[j:k], k
                current[token.lower()] = param
            else:
                current = {}
                challenges.append((token.lower(), current))
    return challenges


def _error_detail(body: bytes) -> str:
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


def _host_port(url: httpx.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class _Response:
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    url: str


class _Default(enum.Enum):
    DOCKER_CONFIG = "docker-config"


#: The default ``credentials`` of :class:`RegistryClient`: read them from the Docker config.
DOCKER_CONFIG: Literal[_Default.DOCKER_CONFIG] = _Default.DOCKER_CONFIG


# ---------------------------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------------------------


class RegistryClient:
    """An OCI distribution API client; use as a context manager (it owns an ``httpx.Client``). It reads; it
    writes only through :meth:`tag`, :meth:`push_blob` and :meth:`attach`, which need push access.

    ``credentials``: a callable ``registry host -> Credential | None``; by default the Docker
    config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, with credential
    helpers); ``None`` for anonymous access only.

    Plain HTTP: loopback registries (127.0.0.0/8, ::1, localhost) are always reached over
    plain HTTP.  Any other host is HTTPS with a verified certificate unless ``allow_http``
    is set: then the hosts named in ``insecure_hosts`` (``host`` or ``host:port``) are
    reached over plain HTTP -- or every host when ``insecure_hosts`` is not given.  Naming
    a non-loopback host in ``insecure_hosts`` without ``allow_http`` raises
    :class:`PlainHTTPRefused`, and so does any request (a token realm, a redirect) that
    would go over plain HTTP to a host not allowed.

    ``retries``: how many times a request is repeated after a connection error, a 429 or a
    5xx, waiting ``backoff * 2**n`` seconds (a 429's ``Retry-After`` up to ``max_retry_after``).
    Tokens, credentials and verified config blobs are cached for the client's life.
    """

    def __init__(self, *, credentials: CredentialProvider | None | Literal[_Default.DOCKER_CONFIG] = DOCKER_CONFIG,
                 insecure_hosts: Iterable[str] | None = None, allow_http: bool = False,
                 timeout: float = 30.0, retries: int = 2, backoff: float = 0.5,
                 max_retry_after: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 user_agent: str | None = None) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if credentials is DOCKER_CONFIG:
            from factory.adapters.credentials import docker_credentials

            credentials = docker_credentials
        self._credentials: CredentialProvider | None = credentials
        self.allow_http = allow_http
        self.insecure_hosts: frozenset[str] | None = (
            None if insecure_hosts is None else frozenset(h.strip().lower() for h in insecure_hosts))
        if self.insecure_hosts and not allow_http:
            remote = sorted(h for h in self.insecure_hosts if not is_loopback(h))
            if remote:
                raise PlainHTTPRefused(
                    f"plain HTTP to {', '.join(remote)} refused: only loopback registries are reached without TLS "
                    "unless allow_http is set")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._user_agent = user_agent
        self._client: httpx.Client | None = None
        self._creds: dict[str, Credential | None] = {}
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._auth: dict[tuple[str, str], tuple[str, str]] = {}  # (registry, scope) -> (Authorization, who)
        self._blobs: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        mode = " allow_http" if self.allow_http else ""
        return f"<RegistryClient{mode}>"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = new_client(
                self.timeout, self._user_agent,
                event_hooks={"request": [self._guard]},
                # like Go's ProxyFromEnvironment (so Docker), never send loopback traffic to a proxy
                mounts={"all://localhost": None, "all://127.0.0.1": None, "all://[::1]": None},
            )
        return self._client

    # -- transport policy ------------------------------------------------------------------

    def plain_http(self, host: str) -> bool:
        """Whether ``host`` (``host[:port]``) is reached over plain HTTP."""
        if is_loopback(host):
            return True
        if not self.allow_http:
            return False
        if self.insecure_hosts is None:
            return True
        host = host.lower()
        return host in self.insecure_hosts or host.rsplit(":", 1)[0] in self.insecure_hosts

    def base_url(self, registry: str) -> str:
        """``http://registry`` or ``https://registry``."""
        return f"{'http' if self.plain_http(registry) else 'https'}://{registry}"

    def _guard(self, request: httpx.Request) -> None:
        """Request hook: no plain HTTP to a host it is not allowed for (realms and redirects included)."""
        url = request.url
        if url.scheme == "http":
            netloc = url.netloc.decode("ascii", "replace")
            if not self.plain_http(netloc):
                raise PlainHTTPRefused(
                    f"plain HTTP to {_host_port(url)} refused ({request.method} {url.copy_with(query=None)}): "
                    "only loopback registries are reached without TLS unless allow_http is set")

    # -- HTTP --------------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2 ** attempt) * (1 + random.uniform(0, 0.1))

    def _exchange(self, method: str, url: str | httpx.URL, *, target: str,
                  headers: Mapping[str, str] | None = None, data: Mapping[str, str] | None = None,
                  content: bytes | None = None, max_bytes: int = _MAX_MANIFEST) -> _Response:
        """One request with retries on connection errors, 429 and 5xx; other answers are returned.

        Each attempt runs under a wall-clock :class:`factory.adapters.http.Deadline` of ``timeout`` seconds (connect,
        headers and the whole body): a server that drips its answer fails the request then, and an attempt
        that ran out of time is not repeated.
        """
        import httpx

        attempts = self.retries + 1
        for attempt in range(attempts):
            deadline = Deadline(self.timeout)
            try:
                with deadline, self.client.stream(method, url, headers=headers, data=data, content=content) as resp:
                    status = resp.status_code
                    if status == 429 or status >= 500:
                        retry_in = self._delay(attempt)
                        if status == 429:
                            asked = retry_after_seconds(resp.headers.get("retry-after"))
                            if asked is not None and asked > self.max_retry_after:
                                raise RegistryUnavailable(
                                    f"{target} is rate limiting requests (429) and asks to wait {asked:.0f} s")
                            retry_in = asked if asked is not None else retry_in
                        error: RegistryError = RegistryUnavailable(
                            f"{target} answered {status} {resp.reason_phrase} to {method} {resp.url} "
                            f"after {attempts} attempt{'s' if attempts > 1 else ''}")
                    else:
                        body = b""
                        if method != "HEAD":
                            limit = max_bytes if 200 <= status < 300 else _MAX_ERROR_BODY
                            declared = resp.headers.get("content-length", "")
                            if declared.isdigit() and int(declared) > limit and 200 <= status < 300:
                                raise RegistryError(f"{target} sent {int(declared)} bytes for {resp.url}, "
                                                    f"more than the {limit} accepted")
                            chunks, got = [], 0
                            for chunk in resp.iter_bytes():
                                got += len(chunk)
                                if got > limit:
                                    if 200 <= status < 300:
                                        raise RegistryError(f"{target} sent more than the {limit} bytes "
                                                            f"accepted for {resp.url}")
                                    break
                                chunks.append(chunk)
                            body = b"".join(chunks)
                        return _Response(status, resp.reason_phrase, resp.headers, body, str(resp.url))
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise RegistryError(f"cannot ask {target}: bad URL {str(url)!r} ({exc})") from None
            except httpx.RequestError as exc:  # transport errors, timeouts, bad encodings, redirect loops
                req_url = exc.request.url if _has_request(exc) else httpx.URL(str(url))
                where = _host_port(req_url)
                error = RegistryUnreachable(
                    f"cannot reach {target}" + ("" if where in target.split() else f" at {where}")
                    + f": {describe_error(exc, deadline)} ({method} {req_url.copy_with(query=None)})")
                error.__cause__ = exc
                if deadline.fired or not isinstance(exc, httpx.TransportError):
                    raise error from None  # ran out of time, or an answer that a retry would repeat
                retry_in = self._delay(attempt)
            if attempt + 1 >= attempts:
                raise error
            log.debug("%s; retrying in %.2f s", error, retry_in)
            self._sleep(retry_in)
        raise AssertionError("unreachable")

    # -- authentication ----------------------------------------------------------------------

    def _credential(self, registry: str) -> Credential | None:
        if registry not in self._creds:
            self._creds[registry] = self._credentials(registry) if self._credentials else None
        return self._creds[registry]

    def _authorized(self, method: str, ref: Reference, path: str, *, headers: Mapping[str, str],
                    max_bytes: int = _MAX_MANIFEST, content: bytes | None = None,
                    actions: str = "pull", url: str | None = None) -> _Response:
        """A request to the registry, answering its authentication challenge if it makes one.

        ``actions``: what the request needs to do in the repository (``pull``, or ``pull,push`` to write).
        ``url``: a URL the registry handed out (an upload location, a next page) instead of ``/v2/<name>/<path>``;
        it must be on the registry itself (:meth:`_same_origin`), since the registry's credentials go with it.
        """
        url = url or f"{self.base_url(ref.registry)}/v2/{ref.repository}/{path}"
        target = f"registry {ref.registry}"
        scope = f"repository:{ref.repository}:{actions}"
        key = (ref.registry, scope)
        cached = self._auth.get(key) or self._auth.get((ref.registry, "*"))
        resp = self._exchange(method, url, target=target, max_bytes=max_bytes, content=content,
                              headers={**headers, "Authorization": cached[0]} if cached else headers)
        if resp.status != 401:
            if resp.status == 403:
                if cached:
                    who = cached[1]
                else:
                    who = "anonymous" if self._credential(ref.registry) is None else "an unauthenticated request"
                raise self._denied(ref, resp, who, actions=actions)
            return resp
        if cached:  # expired or revoked: start again from the challenge
            self._auth.pop(key, None)
            self._auth.pop((ref.registry, "*"), None)
            self._tokens = {k: v for k, v in self._tokens.items() if scope not in k[2].split()}
        challenges = dict(reversed(parse_challenges(resp.headers.get_list("www-authenticate"))))
        if "bearer" in challenges:
            authorization, who = self._bearer(ref, scope, challenges["bearer"])
            self._auth[key] = (authorization, who)
        elif "basic" in challenges:
            authorization, who = self._basic(ref)
            self._auth[(ref.registry, "*")] = (authorization, who)
        else:
            offered = ", ".join(sorted(challenges)) or "none"
            raise RegistryAccessDenied(
                f"registry {ref.registry} refused access to {ref.repository}: 401 Unauthorized with no Bearer or "
                f"Basic challenge (offered: {offered})")
        resp = self._exchange(method, url, target=target, max_bytes=max_bytes, content=content,
                              headers={**headers, "Authorization": authorization})
        if resp.status in (401, 403):
            self._auth.pop(key, None)
            self._auth.pop((ref.registry, "*"), None)
            rejected = resp.status == 401 and "basic" in challenges and "bearer" not in challenges
            raise self._denied(ref, resp, who, rejected=rejected, actions=actions)
        return resp

    def _denied(self, ref: Reference, resp: _Response, who: str, *, rejected: bool = False,
                actions: str = "pull") -> RegistryAccessDenied:
        detail = _error_detail(resp.body)
        status = f"{resp.status} {resp.reason}".strip()
        why = f"{status}" + (f", {detail}" if detail else "")
        if who == "anonymous":
            advice = f"; no credentials are configured for {ref.registry} (docker login {ref.registry})"
        elif rejected:
            advice = f"; the credentials of {who} were rejected"
        else:
            advice = f"; {who} is not allowed to {'push to' if 'push' in actions else 'pull'} it"
        challenge = dict(parse_challenges(resp.headers.get_list("www-authenticate"))).get("bearer", {})
        if challenge.get("error") == "insufficient_scope":
            advice += ", or the repository does not exist"
        return RegistryAccessDenied(f"registry {ref.registry} refused access to {ref.repository}: {why}{advice}")

    def _basic(self, ref: Reference) -> tuple[str, str]:
        cred = self._credential(ref.registry)
        if cred is None or not cred.username or not cred.secret:
            raise RegistryAccessDenied(
                f"registry {ref.registry} refused access to {ref.repository}: it asks for a user name and password "
                f"(Basic) and no credentials are configured for {ref.registry}")
        token = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode("ascii")
        return f"Basic {token}", f"user {cred.username!r}"

    def _bearer(self, ref: Reference, scope: str, challenge: Mapping[str, str]) -> tuple[str, str]:
        import httpx

        realm = challenge.get("realm", "")
        if not realm:
            raise RegistryAccessDenied(
                f"registry {ref.registry} refused access to {ref.repository}: its Bearer challenge names no realm")
        service = challenge.get("service", "")
        scopes = challenge.get("scope", "").split() or [scope]
        if scope not in scopes:
            scopes.append(scope)
        cred = self._credential(ref.registry)
        who = "anonymous" if cred is None else (f"user {cred.username!r}" if cred.username
                                                and cred.username != "<token>" else "the identity token")
        cache_key = (realm, service, " ".join(sorted(scopes)))
        token = self._tokens.get(cache_key)
        if token is None:
            try:
                realm_url = httpx.URL(realm)
            except httpx.InvalidURL:
                raise RegistryError(f"registry {ref.registry} names an invalid token realm {realm!r}") from None
            if realm_url.scheme not in ("http", "https") or not realm_url.host:
                raise RegistryError(f"registry {ref.registry} names an invalid token realm {realm!r}")
            target = f"the token service of registry {ref.registry}"
            params = [("service", service)] if service else []
            if cred is not None and cred.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": cred.identity_token,
                        "client_id": "spark-image-factory", "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                resp = self._exchange("POST", realm_url, target=target, data=form, max_bytes=_MAX_TOKEN)
            else:
                params += [("scope", s) for s in scopes]
                headers = {}
                if cred is not None and cred.username and cred.secret:
                    params.append(("account", cred.username))
                    basic = base64.b64encode(f"{cred.username}:{cred.secret}".encode()).decode("ascii")
                    headers["Authorization"] = f"Basic {basic}"
                resp = self._exchange("GET", realm_url.copy_merge_params(params), target=target,
                                      headers=headers, max_bytes=_MAX_TOKEN)
            if resp.status in (401, 403):
                detail = _error_detail(resp.body)
                why = f"{resp.status} {resp.reason}" + (f", {detail}" if detail else "")
                if cred is None:
                    msg = f"its token service {_host_port(realm_url)} requires credentials ({why}) and none are " \
                          f"configured for {ref.registry}"
                else:
                    msg = f"its token service {_host_port(realm_url)} rejected the credentials of {who} ({why})"
                raise RegistryAccessDenied(f"registry {ref.registry} refused access to {ref.repository}: {msg}")
            if not 200 <= resp.status < 300:
                raise RegistryError(f"{target} answered {resp.status} {resp.reason} to a token request for "
                                    f"{ref.repository}")
            what = f"the answer of {target} to a token request for {ref.repository}"
            doc = _object(_load_json(resp.body, what), what)
            token = _string(doc, "token", what) or _string(doc, "access_token", what)
            if not token:
                raise MalformedDocument(f"{target} answered a token request for {ref.repository} without a token")
            self._tokens[cache_key] = token
            log.debug("got a %s token for %s from %s", who, " ".join(scopes), realm_url.host)
        return f"Bearer {token}", who

    # -- API ---------------------------------------------------------------------------------

    def _get_manifest(self, ref: Reference) -> tuple[bytes, str, str, dict[str, Any]]:
        """(body, media type, digest, document) of the manifest ``ref`` names, its digest checked."""
        resp = self._authorized("GET", ref, f"manifests/{ref.reference}", headers={"Accept": _ACCEPT})
        if resp.status == 404:
            raise NotFound(f"{ref} not found in registry")
        if not 200 <= resp.status < 300:
            detail = _error_detail(resp.body)
            raise RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} for the manifest "
                                f"of {ref}" + (f" ({detail})" if detail else ""))
        body = resp.body
        if ref.digest:
            algorithm = ref.digest.split(":", 1)[0]
            got = _compute_digest(algorithm, body)
            if got != ref.digest:
                raise BadDigest(f"registry {ref.registry} sent a manifest for {ref} whose digest is {got}: "
                                "content does not match the digest asked for")
            digest = ref.digest
        else:
            digest = _compute_digest("sha256", body)
            claimed = resp.headers.get("docker-content-digest", "")
            if claimed.startswith("sha256:") and claimed != digest:
                raise BadDigest(f"registry {ref.registry} sent a manifest for {ref} whose digest is {digest}, "
                                f"not the {claimed} it claims")
        what = f"the manifest of {ref} from registry {ref.registry}"
        doc = _object(_load_json(body, what), what)
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        media_type = _string(doc, "mediaType", what) or content_type
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            if media_type in _SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
                raise RegistryError(f"{ref} has a Docker schema 1 manifest, which is not supported")
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else media_type
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            raise RegistryError(f"{ref} has a manifest of unsupported media type {media_type[:100]!r}")
        return body, media_type, digest, doc

    def _fetch_blob(self, ref: Reference, digest: str, size: int | None, what: str) -> bytes:
        _remote_digest(digest, f"the {what} descriptor of {ref}")
        if size is not None and size > _MAX_CONFIG:
            raise RegistryError(f"the {what} {digest} of {ref} is {size} bytes, more than the {_MAX_CONFIG} "
                                "accepted")
        resp = self._authorized("GET", ref, f"blobs/{digest}", headers={}, max_bytes=_MAX_CONFIG)
        if resp.status == 404:
            raise NotFound(f"{what} {digest} of {ref} not found in registry")
        if not 200 <= resp.status < 300:
            detail = _error_detail(resp.body)
            raise RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} for the {what} "
                                f"{digest} of {ref}" + (f" ({detail})" if detail else ""))
        got = _compute_digest(digest.split(":", 1)[0], resp.body)
        if got != digest:
            raise BadDigest(f"the {what} of {ref} from registry {ref.registry} hashes to {got}, not {digest}: "
                            "it was altered or corrupted")
        if size is not None and len(resp.body) != size:
            raise BadDigest(f"the {what} {digest} of {ref} is {len(resp.body)} bytes, not the {size} its "
                            "manifest declares")
        return resp.body

    def _config_document(self, ref: Reference, digest: str, size: int | None) -> dict[str, Any]:
        if digest not in self._blobs:
            body = self._fetch_blob(ref, digest, size, "image config")
            what = f"the image config {digest} of {ref}"
            doc = _object(_load_json(body, what), what)
            _ImageConfig.parse(doc, what)  # its shape is checked once, before it is kept
            self._blobs[digest] = doc
        return self._blobs[digest]

    def manifest(self, ref: Reference | str, platform: str | None = DEFAULT_PLATFORM) -> ResolvedManifest:
        """Resolve ``ref`` to the image manifest for ``platform`` (``os/arch[/variant]``).

        An index or manifest list is walked for the entry matching the platform (arm64's
        ``v8`` variant is optional), skipping attestation manifests; a single-platform
        image must match the platform too.  ``platform=None`` accepts any platform when
        there is only one.  A document of the wrong shape is a :class:`MalformedDocument`.
        """
        ref = _as_reference(ref)
        want = _parse_platform(platform) if platform else None
        body, media_type, digest, doc = self._get_manifest(ref)
        index_digest = None
        chosen_platform: str | None = None
        if media_type in INDEX_TYPES:
            entry = self._pick(ref, _parse_index(doc, f"the index of {ref}"), want, platform)
            index_digest = digest
            chosen_platform = entry.platform_text
            if entry.media_type in INDEX_TYPES:
                raise RegistryError(f"{ref} holds a nested index for {chosen_platform}, which is not supported")
            body, media_type, digest, doc = self._get_manifest(ref.with_digest(entry.digest))
            if media_type not in MANIFEST_TYPES:
                raise RegistryError(f"the {chosen_platform} entry of {ref} is a {media_type}, not an image manifest")
        config = _parse_manifest(doc, f"the manifest {digest} of {ref}")
        if chosen_platform is None:
            what = f"the image config {config.digest} of {ref}"
            cfg = _ImageConfig.parse(self._config_document(ref, config.digest, config.size), what)
            chosen_platform = str(cfg.platform)
            if want is not None and cfg.platform.normalized != want:
                raise PlatformNotFound(f"{ref} is a single-platform image for {chosen_platform}, not {platform}")
        return ResolvedManifest(digest=digest, media_type=media_type, config_digest=config.digest,
                                platform=chosen_platform, index_digest=index_digest, config_size=config.size,
                                reference=ref, document=doc)

    @staticmethod
    def _pick(ref: Reference, entries: list[_Descriptor], want: tuple[str, str, str] | None,
              platform: str | None) -> _Descriptor:
        candidates = [e for e in entries if not e.is_attestation]
        available = ", ".join(e.platform_text for e in candidates) or "none"
        if want is None:
            if len(candidates) == 1:
                return candidates[0]
            raise PlatformNotFound(f"{ref} is a multi-platform image; name a platform (available: {available})")
        for entry in candidates:
            if entry.platform is not None and entry.platform.normalized == want:
                return entry
        raise PlatformNotFound(f"{ref} has no manifest for {platform}; platforms available: {available}")

    def config(self, ref: Reference | str, platform: str | None = DEFAULT_PLATFORM) -> dict[str, Any]:
        """The image config (JSON) of ``ref`` for ``platform``, its digest, size and shape checked."""
        ref = _as_reference(ref)
        resolved = self.manifest(ref, platform)
        return self._config_document(ref, resolved.config_digest, resolved.config_size)

    def labels(self, ref: Reference | str, platform: str | None = DEFAULT_PLATFORM) -> dict[str, str]:
        """The image's labels (``config.Labels``), ``{}`` when it has none."""
        ref = _as_reference(ref)
        resolved = self.manifest(ref, platform)
        doc = self._config_document(ref, resolved.config_digest, resolved.config_size)
        return _ImageConfig.parse(doc, f"the image config {resolved.config_digest} of {ref}").labels

    def exists(self, ref: Reference | str) -> str | None:
        """The digest ``ref`` points at (the index's, for a multi-platform tag), or ``None`` when not found.

        Uses ``HEAD`` (which registries do not count against pull rate limits) and falls
        back to ``GET`` when the answer carries no ``Docker-Content-Digest``.  Access
        denied is an error, not ``None``.
        """
        ref = _as_reference(ref)
        resp = self._authorized("HEAD", ref, f"manifests/{ref.reference}", headers={"Accept": _ACCEPT})
        if resp.status == 404:
            return None
        if not 200 <= resp.status < 300:
            raise RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} to HEAD for {ref}")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and _DIGEST.fullmatch(claimed):
            if ref.digest and claimed != ref.digest:
                raise BadDigest(f"registry {ref.registry} says {ref} has digest {claimed}")
            return claimed
        try:
            _, _, digest, _ = self._get_manifest(ref)
        except NotFound:
            return None
        return digest

    # -- writing -------------------------------------------------------------------------------

    def tag(self, source: Reference | str, target: Reference | str) -> str:
        """Point the tag ``target`` at the manifest ``source`` names, through the registry API: the manifest
        (an index or an image manifest) is read by ``source``, its digest checked, and PUT under the target tag,
        so nothing is pulled or pushed and the target names exactly the source's digest. Both must be in the
        same repository (its blobs are already there). Returns the digest. Needs push access.
        """
        src, dst = _as_reference(source), _as_reference(target)
        if (src.registry, src.repository) != (dst.registry, dst.repository):
            raise RegistryError(f"cannot tag {src} as {dst} in the registry: only within one repository")
        if dst.digest or not dst.tag:
            raise InvalidReference(f"cannot tag {src} as {dst}: the target must be a tag, not a digest")
        body, media_type, digest, _ = self._get_manifest(src)
        resp = self._authorized("PUT", dst, f"manifests/{dst.tag}", headers={"Content-Type": media_type},
                                content=body, actions="pull,push")
        if resp.status not in (200, 201, 202):
            detail = _error_detail(resp.body)
            raise RegistryError(f"registry {dst.registry} answered {resp.status} {resp.reason} to tagging {dst} "
                                f"as {digest}" + (f" ({detail})" if detail else ""))
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and claimed != digest:
            raise BadDigest(f"registry {dst.registry} stored {dst} as {claimed}, not the {digest} sent")
        return digest

    # -- artifacts: OCI 1.1 referrers --------------------------------------------------------------

    def _same_origin(self, ref: Reference, location: str, what: str) -> str:
        """``location`` (absolute, or relative to the registry) as an absolute URL on the registry itself. The
        registry's credentials go with a request to it, so a URL on any other host is refused, never followed."""
        import httpx

        base = httpx.URL(self.base_url(ref.registry) + "/")
        try:
            url = base.join(location)
        except httpx.InvalidURL:
            raise RegistryError(f"registry {ref.registry} sent an invalid {what} {location[:200]!r}") from None
        if url.scheme != base.scheme or _host_port(url) != _host_port(base):
            raise RegistryError(f"registry {ref.registry} sent a {what} on another host ({url.scheme}://"
                                f"{_host_port(url)}), which is not followed: the registry's credentials would go "
                                "with it")
        return str(url)

    def descriptor(self, ref: Reference | str) -> dict[str, Any]:
        """The OCI descriptor (``mediaType``, ``digest``, ``size``) of the manifest or index ``ref`` names, its
        digest checked: the ``subject`` of an artifact to :meth:`attach` to it."""
        ref = _as_reference(ref)
        body, media_type, digest, _ = self._get_manifest(ref)
        return {"mediaType": media_type, "digest": digest, "size": len(body)}

    def push_blob(self, ref: Reference | str, data: bytes) -> str:
        """Upload ``data`` as a blob of ``ref``'s repository (its tag or digest is not used) and return its digest.

        A monolithic upload: ``POST /blobs/uploads/`` for a location, then one ``PUT <location>?digest=``
        with the whole blob; skipped when a ``HEAD`` says the registry holds the blob already. Needs push access.
        """
        ref = _as_reference(ref)
        if not isinstance(data, bytes | bytearray):
            raise InvalidArtifact(f"cannot push {_kind(data)} to {ref.name} as a blob: bytes are needed")
        data = bytes(data)
        digest = _compute_digest("sha256", data)
        head = self._authorized("HEAD", ref, f"blobs/{digest}", headers={}, actions="pull,push")
        if 200 <= head.status < 300:
            return digest
        if head.status != 404:
            raise _answered(ref, head, f"HEAD for the blob {digest} of {ref.name}")
        start = self._authorized("POST", ref, "blobs/uploads/", headers={}, content=b"", actions="pull,push")
        if start.status != 202:
            raise _answered(ref, start, f"starting the upload of the blob {digest} to {ref.name}")
        location = start.headers.get("location", "")
        if not location:
            raise RegistryError(f"registry {ref.registry} started the upload of the blob {digest} to {ref.name} "
                                "without a Location to send it to")
        import httpx

        url = httpx.URL(self._same_origin(ref, location, "blob upload location")).copy_merge_params(
            {"digest": digest})
        resp = self._authorized("PUT", ref, "", headers={"Content-Type": "application/octet-stream"}, content=data,
                                actions="pull,push", url=str(url))
        if resp.status not in (201, 204):
            raise _answered(ref, resp, f"the upload of the blob {digest} ({len(data)} bytes) to {ref.name}")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and claimed != digest:
            raise BadDigest(f"registry {ref.registry} stored the blob {digest} of {ref.name} as {claimed}")
        return digest

    def attach(self, ref: Reference | str, subject_digest: str, subject_media_type: str, subject_size: int,
               artifact_type: str, data: bytes, annotations: Mapping[str, str]) -> str:
        """Attach ``data`` (an SBOM, a signature) to the manifest ``subject_digest`` of ``ref``'s repository as an
        OCI 1.1 artifact, so it travels with the image without being a layer of it. Returns the digest of the
        artifact's manifest.

        Pushes the empty config and ``data`` as blobs, then an image manifest with ``artifactType``, one layer
        of that media type and ``subject`` (the image's descriptor, see :meth:`descriptor`), by digest. A
        registry with the referrers API says so with ``OCI-Subject`` and lists the artifact itself; for any
        other, the artifact is added to the index under the tag ``sha256-<hex of the subject>`` (the referrers
        tag schema), which :meth:`referrers` reads. That tag is read, extended and written back without a lock:
        two clients attaching to one image at the same moment may lose one entry (attach again). ``annotations``
        get ``org.opencontainers.image.created`` (now, UTC) unless they carry it. Needs push access.
        """
        ref = _as_reference(ref)
        what = f"the artifact for {ref.name}"
        try:
            _check_digest(subject_digest, "the subject")
        except InvalidReference as error:
            raise InvalidArtifact(f"cannot attach {what}: {error}") from None
        if subject_media_type not in INDEX_TYPES | MANIFEST_TYPES:
            raise InvalidArtifact(f"cannot attach {what}: the subject's media type {subject_media_type!r} is not "
                                  "an image manifest or index")
        if isinstance(subject_size, bool) or not isinstance(subject_size, int) or not 0 < subject_size <= _MAX_SIZE:
            raise InvalidArtifact(f"cannot attach {what}: the subject's size {subject_size!r} is not a positive "
                                  "number of bytes")
        if not isinstance(artifact_type, str) or not _MEDIA_TYPE.fullmatch(artifact_type):
            raise InvalidArtifact(f"cannot attach {what}: artifact type {artifact_type!r} is not a media type "
                                  "(type/subtype, e.g. application/vnd.cyclonedx+json)")
        if not isinstance(data, bytes | bytearray) or len(data) > _MAX_CONFIG:
            raise InvalidArtifact(f"cannot attach {what}: its data must be bytes, at most {_MAX_CONFIG} (what "
                                  "fetch_artifact reads back)")
        if not isinstance(annotations, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in annotations.items()):
            raise InvalidArtifact(f"cannot attach {what}: annotations must map strings to strings")
        notes = {CREATED: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **annotations}
        empty = {"mediaType": OCI_EMPTY, "digest": self.push_blob(ref, OCI_EMPTY_DATA), "size": len(OCI_EMPTY_DATA)}
        layer = {"mediaType": artifact_type, "digest": self.push_blob(ref, data), "size": len(data)}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type, "config": empty,
                    "layers": [layer], "annotations": notes,
                    "subject": {"mediaType": subject_media_type, "digest": subject_digest, "size": subject_size}}
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = _compute_digest("sha256", body)
        resp = self._authorized("PUT", ref, f"manifests/{digest}", headers={"Content-Type": OCI_MANIFEST},
                                content=body, actions="pull,push")
        if resp.status not in (200, 201, 202):
            raise _answered(ref, resp, f"pushing the {artifact_type} artifact manifest {digest} of "
                                       f"{ref.name}@{subject_digest}")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and claimed != digest:
            raise BadDigest(f"registry {ref.registry} stored the artifact manifest {digest} of {ref.name} as "
                            f"{claimed}")
        if resp.headers.get("oci-subject", "") != subject_digest:  # no referrers API: the tag schema
            self._add_referrer(ref, subject_digest, {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                                                     "artifactType": artifact_type, "annotations": notes})
        return digest

    def _add_referrer(self, ref: Reference, subject_digest: str, entry: dict[str, Any]) -> None:
        """Add ``entry`` to the referrers index under the tag of ``subject_digest`` (created when missing, or
        when the tag holds anything but an OCI index); an entry already there is not added twice."""
        tag = _referrers_tag(ref, subject_digest)
        try:
            _, media_type, _, doc = self._get_manifest(tag)
        except NotFound:
            media_type, doc = "", {}
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if media_type == OCI_INDEX:
            _parse_index(doc, f"the referrers index {tag}")
            index = {**doc, "mediaType": OCI_INDEX}
        if any(isinstance(e, dict) and e.get("digest") == entry["digest"] for e in index["manifests"]):
            return
        index["manifests"] = [*index["manifests"], entry]
        body = json.dumps(index, separators=(",", ":")).encode()
        resp = self._authorized("PUT", tag, f"manifests/{tag.tag}", headers={"Content-Type": OCI_INDEX},
                                content=body, actions="pull,push")
        if resp.status not in (200, 201, 202):
            raise _answered(tag, resp, f"updating the referrers index {tag}")

    def referrers(self, ref: Reference | str, subject_digest: str,
                  artifact_type: str | None = None) -> list[dict[str, Any]]:
        """The descriptors (``mediaType``, ``digest``, ``size``, ``artifactType``, ``annotations``) of the artifacts
        attached to ``subject_digest`` in ``ref``'s repository, those of ``artifact_type`` only when it is given.

        Asks the referrers API (``GET /v2/<name>/referrers/<digest>``, following ``Link`` pages); a registry
        that answers 400, 404 or 405, or something other than an OCI index, has none, and the index under the
        tag ``sha256-<hex>`` is read instead (none there: ``[]``).
        """
        ref = _as_reference(ref)
        try:
            _check_digest(subject_digest, "the subject")
        except InvalidReference as error:
            raise InvalidArtifact(f"cannot list the referrers in {ref.name}: {error}") from None
        entries = self._referrers_api(ref, subject_digest)
        if entries is None:
            tag = _referrers_tag(ref, subject_digest)
            try:
                _, media_type, _, doc = self._get_manifest(tag)
            except NotFound:
                return []
            entries = _referrer_entries(doc, f"the referrers index {tag}") if media_type == OCI_INDEX else []
        out, seen = [], set()
        for entry in entries:
            if entry["digest"] not in seen and artifact_type in (None, entry.get("artifactType")):
                seen.add(entry["digest"])
                out.append(entry)
        return out

    def _referrers_api(self, ref: Reference, subject_digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's list, or None when the registry has no such API."""
        entries: list[dict[str, Any]] = []
        url = None
        for page in range(_MAX_PAGES):
            resp = self._authorized("GET", ref, f"referrers/{subject_digest}", headers={"Accept": OCI_INDEX},
                                    url=url)
            if page == 0 and resp.status in (400, 404, 405):
                return None
            if not 200 <= resp.status < 300:
                raise _answered(ref, resp, f"the referrers of {ref.name}@{subject_digest}")
            what = f"the referrers of {ref.name}@{subject_digest} from registry {ref.registry}"
            try:
                doc = json.loads(resp.body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                doc = None
            content_type = resp.headers.get("content-type", "").split(";")[0].strip()
            if not isinstance(doc, dict) or (doc.get("mediaType") or content_type) != OCI_INDEX:
                if page == 0:
                    return None
                raise MalformedDocument(f"{what} (page {page + 1}) is not an OCI index")
            entries += _referrer_entries(doc, what)
            link = _next_link(resp.headers.get_list("link"))
            if not link:
                return entries
            url = self._same_origin(ref, link, "next page of referrers")
        raise RegistryError(f"registry {ref.registry} lists the referrers of {ref.name}@{subject_digest} on more "
                            f"than {_MAX_PAGES} pages")

    def fetch_artifact(self, ref: Reference | str, manifest_digest: str) -> bytes:
        """The data of the artifact whose manifest is ``manifest_digest`` in ``ref``'s repository: its first layer,
        checked against the manifest's digest and size, at most 32 MiB."""
        ref = _as_reference(ref)
        try:
            _check_digest(manifest_digest, "the artifact manifest")
        except InvalidReference as error:
            raise InvalidArtifact(f"cannot fetch an artifact of {ref.name}: {error}") from None
        target = Reference(ref.registry, ref.repository, None, manifest_digest)
        _, media_type, _, doc = self._get_manifest(target)
        if media_type != OCI_MANIFEST:
            raise RegistryError(f"{target} is a {media_type}, not an artifact manifest")
        what = f"the artifact manifest {target}"
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise MalformedDocument(f"{what} has no layers" if layers in (None, [])
                                    else f"{what} has 'layers' that is {_kind(layers)}, not a list")
        layer = _Descriptor.parse(layers[0], f"the first layer of {what}")
        return self._fetch_blob(target, layer.digest, layer.size, "artifact")


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_LINK_NEXT = re.compile(r'<(?P<url>[^>]*)>\s*;(?:[^,]*;)?\s*rel="?next"?', re.IGNORECASE)


def _answered(ref: Reference, resp: _Response, doing: str) -> RegistryError:
    """The error of an unexpected answer: ``registry X answered 400 Bad Request to <doing> (CODE: message)``."""
    detail = _error_detail(resp.body)
    return RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} to {doing}"
                         + (f" ({detail})" if detail else ""))


def _referrers_tag(ref: Reference, subject_digest: str) -> Reference:
    """The tag of the referrers tag schema: ``<algorithm>-<hex>`` of the subject, cut to a tag's 128 characters."""
    algorithm, _, hexpart = subject_digest.partition(":")
    return Reference(ref.registry, ref.repository, f"{algorithm}-{hexpart}"[:128])


def _referrer_entries(doc: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    """The entries of a referrers index, each checked (digest, size, artifactType, annotations) and copied."""
    _parse_index(doc, what)
    for n, entry in enumerate(doc["manifests"]):
        _string(entry, "artifactType", f"entry {n} of {what}")
    return [dict(entry) for entry in doc["manifests"]]


def _next_link(values: Iterable[str]) -> str | None:
    """The URL of ``Link: <url>; rel="next"`` (how the referrers API pages), or None."""
    for value in values:
        match = _LINK_NEXT.search(value)
        if match:
            return match["url"]
    return None


def _has_request(exc: BaseException) -> bool:
    try:
        exc.request  # type: ignore[attr-defined]  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


