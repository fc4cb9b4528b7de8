"""What the two HTTP adapters (package index, OCI registry) share: one TLS context, one client shape,
one request deadline, one way to read Retry-After and to say in a few words why a request failed, and
log lines without the credentials of a URL.

**The deadline.** httpx's timeouts bound each network operation (connect, one read, one write), so a server
that drips a byte every few seconds keeps a request alive for ever. Every client made by :func:`new_client`
runs its connections through a network backend that also honours the :class:`Deadline` active in the calling
thread (``with Deadline(seconds): ...``): connect, TLS handshake, every read and write get at most what is
left of it, and once it is spent the next one fails at once. The request then fails with httpx's own
timeout exception, and :attr:`Deadline.fired` tells it apart from an ordinary read timeout.

httpx is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextvars
import logging
import re
import ssl
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from factory.core.redact import redact

if TYPE_CHECKING:
    import httpx

__all__ = ["Deadline", "describe_error", "new_client", "redacting_logger", "retry_after_seconds", "ssl_context"]


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (CA bundle, SSL_CERT_FILE/SSL_CERT_DIR), built once:
    loading the CA bundle costs ~50 ms, which every new client would otherwise pay."""
    import httpx

    return httpx.create_ssl_context()


# ---------------------------------------------------------------------------------------------
# the deadline
# ---------------------------------------------------------------------------------------------

_ACTIVE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("factory_http_deadline", default=None)


class Deadline:
    """A wall-clock limit for everything one request does on the network; a context manager.

    ``fired`` becomes True when the deadline (not httpx's per-operation timeout) ended an operation.
    """

    def __init__(self, seconds: float, *, clock=time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.at = clock() + seconds
        self.fired = False
        self._token: contextvars.Token | None = None

    def remaining(self) -> float:
        return self.at - self._clock()

    def __enter__(self) -> Deadline:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    def cap(self, timeout: float | None, spent: type[Exception]) -> tuple[float | None, bool]:
        """(the timeout an operation may use, whether the deadline is what bounds it); raise ``spent`` when
        nothing is left."""
        left = self.remaining()
        if left <= 0:
            self.fired = True
            raise spent(f"the request's deadline of {self.seconds:g} s has passed")
        if timeout is None or left < timeout:
            return left, True
        return timeout, False

    def __repr__(self) -> str:
        return f"<Deadline {self.seconds:g} s, {max(0.0, self.remaining()):.2f} s left>"


def _bounded(timeout: float | None, spent: type[Exception], call, *args: Any, **kwargs: Any) -> Any:
    """Run a network operation with its timeout capped by the active deadline (if any)."""
    import httpcore

    deadline = _ACTIVE.get()
    if deadline is None:
        return call(*args, timeout=timeout, **kwargs)
    capped, by_deadline = deadline.cap(timeout, spent)
    try:
        return call(*args, timeout=capped, **kwargs)
    except httpcore.TimeoutException:
        if by_deadline:
            deadline.fired = True
        raise


class _DeadlineStream:
    """A httpcore network stream whose every operation honours the active deadline."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        return _bounded(timeout, httpcore.ReadTimeout, self._stream.read, max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        return _bounded(timeout, httpcore.WriteTimeout, self._stream.write, buffer)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> _DeadlineStream:
        import httpcore

        return _DeadlineStream(_bounded(timeout, httpcore.ConnectTimeout, self._stream.start_tls, ssl_context,
                                        server_hostname))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend:
    """A httpcore network backend (wrapping the default one) whose connections honour the deadline."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> _DeadlineStream:
        import httpcore

        return _DeadlineStream(_bounded(timeout, httpcore.ConnectTimeout, self._backend.connect_tcp, host, port,
                                        local_address=local_address, socket_options=socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> _DeadlineStream:
        import httpcore

        return _DeadlineStream(_bounded(timeout, httpcore.ConnectTimeout, self._backend.connect_unix_socket,
                                        path, socket_options=socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _install_deadline(client: httpx.Client) -> None:
    """Put every connection pool of ``client`` (direct, proxies, mounts) on the deadline backend."""
    transports = [client._transport, *client._mounts.values()]  # noqa: SLF001 - httpx has no public hook
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is None:
            continue
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            raise RuntimeError("httpcore changed: its connection pool has no _network_backend to put the "
                               "request deadline on")
        if not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # noqa: SLF001


def has_deadline(client: httpx.Client) -> bool:
    """Whether every connection pool of ``client`` honours the deadline (for tests)."""
    pools = [getattr(t, "_pool", None) for t in (client._transport, *client._mounts.values())]  # noqa: SLF001
    return all(isinstance(getattr(p, "_network_backend", None), _DeadlineBackend) for p in pools if p is not None)


def new_client(timeout: float, user_agent: str | None = None, **options) -> httpx.Client:
    """A redirect-following client with verified TLS, the factory's User-Agent and the request deadline
    (:class:`Deadline`) on every connection; `options` go to httpx."""
    import httpx

    from factory import __version__

    client = httpx.Client(
        timeout=httpx.Timeout(timeout),
        verify=ssl_context(),
        follow_redirects=True,
        headers={"User-Agent": user_agent or f"spark-image-factory/{__version__} httpx/{httpx.__version__}"},
        **options,
    )
    _install_deadline(client)
    return client


# ---------------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value) if len(value) <= 12 else None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_error(exc: BaseException, deadline: Deadline | None = None) -> str:
    """A transport error in a few lower-case words, for the end of a one-sentence message; credentials in a
    URL it names are redacted. With the request's ``deadline``: says so when the deadline ended it."""
    import httpx

    if deadline is not None and deadline.fired:
        return f"timed out: no complete answer within {deadline.seconds:g} s"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for an answer"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection without a complete answer"
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, httpx.DecodingError):
        return "its answer could not be decoded (bad Content-Encoding)"
    text = redact(str(exc).strip() or type(exc).__name__)
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text).rstrip(".")
    return text[:1].lower() + text[1:]


class _Redacting(logging.Filter):
    """Formats a record's message once and removes the credentials of every URL in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string stays the logging module's problem
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        return True


def redacting_logger(name: str) -> logging.Logger:
    """The logger ``name``, whose every line has the credentials of URLs redacted."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _Redacting) for f in logger.filters):
        logger.addFilter(_Redacting())
    return logger
