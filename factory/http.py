"""What the two HTTP adapters (package index, OCI registry) share: one TLS context, one client shape,
one way to read Retry-After and to say in a few words why a request failed.

httpx is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import re
import ssl
import time
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (CA bundle, SSL_CERT_FILE/SSL_CERT_DIR), built once:
    loading the CA bundle costs ~50 ms, which every new client would otherwise pay."""
    import httpx

    return httpx.create_ssl_context()


def new_client(timeout: float, user_agent: str | None = None, **options) -> httpx.Client:
    """A redirect-following client with verified TLS and the factory's User-Agent; `options` go to httpx."""
    import httpx

    from factory import __version__

    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        verify=ssl_context(),
        follow_redirects=True,
        headers={"User-Agent": user_agent or f"spark-image-factory/{__version__} httpx/{httpx.__version__}"},
        **options,
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_error(exc: BaseException) -> str:
    """A transport error in a few lower-case words, for the end of a one-sentence message."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for an answer"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection without a complete answer"
    text = str(exc).strip() or type(exc).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text).rstrip(".")
    return text[:1].lower() + text[1:]
