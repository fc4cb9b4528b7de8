"""Image references (``registry/repository[:tag][@digest]``), parsed and normalised the way Docker does, and
the names of Docker Hub, where a reference without a registry host goes."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from factory.adapters.registry.errors import InvalidReference

__all__ = [
    "DEFAULT_REGISTRY",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_AUTH_KEY",
    "DIGEST",
    "Reference",
    "as_reference",
    "check_digest",
    "is_loopback",
    "parse_reference",
]

# Docker Hub: these constants are the only place the factory names it.
#: The registry API host a reference without a host resolves to (Docker Hub).
DEFAULT_REGISTRY = "registry-1.docker.io"
#: Other names Docker accepts for that registry in a reference; they normalise to it.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DEFAULT_REGISTRY})
#: The key ``docker login`` files the default registry's credentials under (config and helpers).
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

_DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[a-fA-F0-9:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
DIGEST = re.compile(r"([a-z0-9]+(?:[-_+.][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
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


def check_digest(digest: str, what: str) -> str:
    m = DIGEST.fullmatch(digest)
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
        check_digest(digest, ref)
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


def as_reference(ref: Reference | str) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


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
