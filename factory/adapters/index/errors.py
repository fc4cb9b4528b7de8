"""The errors of the package-index adapter: one clear sentence each, credentials of any URL redacted."""

from __future__ import annotations

from factory.core.errors import WorkFailed
from factory.core.redact import redact

__all__ = ["BadMetadataHash", "NotFound", "NotInCache", "UpstreamError", "UpstreamUnavailable"]

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

