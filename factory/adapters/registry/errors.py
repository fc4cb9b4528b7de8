"""The errors of the registry adapter: one clear sentence each; usage errors (a bad reference, platform or
artifact, plain HTTP refused) exit 2, the rest 1."""

from __future__ import annotations

from factory.core.errors import InputError, WorkFailed
from factory.core.redact import redact

__all__ = [
    "BadDigest",
    "InvalidArtifact",
    "InvalidPlatform",
    "InvalidReference",
    "MalformedDocument",
    "NotFound",
    "PlainHTTPRefused",
    "PlatformNotFound",
    "RegistryAccessDenied",
    "RegistryError",
    "RegistryUnavailable",
    "RegistryUnreachable",
]


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
