"""The HTTP core of the two HTTP adapters (package index, OCI registry): one TLS context, one client shape
(:func:`new_client`), one retrying request with a size cap and a deadline (:func:`request`), one way to read
Retry-After and to say in a few words why a request failed, and log lines without the credentials of a URL.

**The request.** :func:`request` sends one request, repeating it after a connection error, a 429 or a 5xx
as its :class:`RetryPolicy` says, and returns the first other :class:`Answer` with its body read (a 2xx body
up to a cap, or :class:`TooLarge`; any other body cut at 64 KiB). What went wrong is a :class:`RequestFailed`
with the facts (status, attempts, the transport error), which each adapter turns into its own sentence and
error class.

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
import math
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Self

from factory.core.redact import redact

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Answer",
    "Deadline",
    "InvalidRequestURL",
    "KeptFailing",
    "NoAnswer",
    "RequestFailed",
    "RetryPolicy",
    "TooLarge",
    "TransferStats",
    "describe_error",
    "host_port",
    "new_client",
    "redacting_logger",
    "request",
    "retry_after_seconds",
    "ssl_context",
]


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

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.at = clock() + seconds
        self.fired = False
        self._token: contextvars.Token[Deadline | None] | None = None

    def remaining(self) -> float:
        return float(self.at - self._clock())

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


def _bounded(timeout: float | None, spent: type[Exception], call: Callable[..., Any], *args: Any,
             **kwargs: Any) -> Any:
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

        data: bytes = _bounded(timeout, httpcore.ReadTimeout, self._stream.read, max_bytes)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        _bounded(timeout, httpcore.WriteTimeout, self._stream.write, buffer)

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


def new_client(timeout: float, user_agent: str | None = None, **options: Any) -> httpx.Client:
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


class ClientOwner:
    """Owns one httpx client, made at first use (`_new_client`) and closed by `close()` or the end of a `with`:
    the registry and index clients are both one, so neither opens a connection pool it does not use."""

    _client: httpx.Client | None = None

    def _new_client(self) -> httpx.Client:
        raise NotImplementedError

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# the retrying request
# ---------------------------------------------------------------------------------------------

#: Bodies of answers that are not 2xx (error documents) are read up to this many bytes, the rest dropped.
ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When :func:`request` repeats a request: after a connection error, a 429 or a 5xx, at most ``retries``
    times, waiting ``backoff * 2**n`` seconds (+ up to 10 % jitter) or what a ``Retry-After`` asks when that is
    at most ``max_retry_after``; never more than ``max_wait`` seconds of waiting in all. ``sleep`` waits (tests
    pass a recorder)."""

    retries: int = 2
    backoff: float = 0.5
    max_wait: float = math.inf
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (0 for the first)."""
        return float(self.backoff * (2 ** attempt) * (1 + random.uniform(0, 0.1)))


@dataclass
class TransferStats:
    """What a client has received from the network: answers, and bytes of their bodies."""

    requests: int = 0
    bytes_received: int = 0


@dataclass(frozen=True)
class Answer:
    """The final answer to a request: its status, headers and body (empty for HEAD)."""

    url: str
    status: int
    reason: str
    headers: httpx.Headers = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class RequestFailed(Exception):
    """A request got no usable answer; the attributes say why, the adapter says it in words."""

    def __init__(self, method: str, url: str) -> None:
        super().__init__(f"{method} {redact(url)}")
        self.method = method
        self.url = url


class InvalidRequestURL(RequestFailed):
    """The URL cannot be requested (a bad URL, an unsupported scheme); ``cause`` is httpx's error."""

    def __init__(self, method: str, url: str, cause: Exception) -> None:
        super().__init__(method, url)
        self.cause = cause


class NoAnswer(RequestFailed):
    """No complete HTTP answer: the connection, TLS, a timeout or the deadline failed (after the retries
    when the failure was one a retry may cure). ``request_url``: the URL of the request that failed (a
    redirect's target, say); ``detail``: :func:`describe_error`'s words."""

    def __init__(self, method: str, url: str, cause: Exception, request_url: httpx.URL, detail: str) -> None:
        super().__init__(method, url)
        self.cause = cause
        self.request_url = request_url
        self.detail = detail


class KeptFailing(RequestFailed):
    """The server answered 429 or 5xx on every attempt, or asked (Retry-After) to wait longer than allowed:
    then ``wait_asked`` is what it asked for, in seconds."""

    def __init__(self, method: str, url: str, answer: Answer, attempts: int,
                 wait_asked: float | None = None) -> None:
        super().__init__(method, url)
        self.answer = answer
        self.attempts = attempts
        self.wait_asked = wait_asked


class TooLarge(RequestFailed):
    """A 2xx answer's body is larger than the request accepts: ``declared`` by its Content-Length, or (None)
    found while reading."""

    def __init__(self, method: str, url: str, answer_url: str, status: int, limit: int,
                 declared: int | None) -> None:
        super().__init__(method, url)
        self.answer_url = answer_url
        self.status = status
        self.limit = limit
        self.declared = declared


def request(client: httpx.Client, method: str, url: str | httpx.URL, *, timeout: float, policy: RetryPolicy,
            max_bytes: int, headers: Mapping[str, str] | None = None, content: bytes | None = None,
            data: Mapping[str, str] | None = None, auth: httpx.Auth | None = None,
            stats: TransferStats | None = None) -> Answer:
    """Send one request, with the retries of ``policy``, and return the first answer that is not 429/5xx.

    Each attempt runs under a wall-clock :class:`Deadline` of ``timeout`` seconds (connect, headers and the
    whole body): a server that drips its answer fails the request then, and an attempt that ran out of time
    is not repeated. A 2xx body larger than ``max_bytes`` is :class:`TooLarge`; other bodies are cut at
    :data:`ERROR_BODY_LIMIT`. Raises a :class:`RequestFailed` when there is no answer to return; exceptions
    of the client's event hooks pass through.
    """
    import httpx

    shown = str(url)
    waited = 0.0
    attempts = policy.retries + 1
    for attempt in range(attempts):
        deadline = Deadline(timeout)
        failure: RequestFailed
        try:
            with deadline, client.stream(method, url, headers=headers, content=content, data=data,
                                         auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT) as resp:
                answer = _read(resp, method, shown, max_bytes, stats)
                if answer.status != 429 and answer.status < 500:
                    return answer
                asked = retry_after_seconds(answer.headers.get("retry-after"))
                if asked is not None and asked > policy.max_retry_after:
                    raise KeptFailing(method, shown, answer, attempt + 1, wait_asked=asked)
                retry_in = asked if asked is not None else policy.delay(attempt)
                failure = KeptFailing(method, shown, answer, attempt + 1)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise InvalidRequestURL(method, shown, exc) from None
        except httpx.RequestError as exc:  # transport errors, timeouts, bad encodings, redirect loops
            request_url = exc.request.url if _has_request(exc) else httpx.URL(shown)
            failure = NoAnswer(method, shown, exc, request_url, describe_error(exc, deadline))
            failure.__cause__ = exc
            if deadline.fired or not isinstance(exc, httpx.TransportError):
                raise failure from None  # ran out of time, or an answer that a retry would repeat
            retry_in = policy.delay(attempt)
        if attempt + 1 >= attempts or waited + retry_in > policy.max_wait:
            raise failure
        log.debug("%s %s failed (%s); retrying in %.2f s", method, shown, _why(failure), retry_in)
        policy.sleep(retry_in)
        waited += retry_in
    raise AssertionError("unreachable")


def _read(resp: httpx.Response, method: str, url: str, max_bytes: int, stats: TransferStats | None) -> Answer:
    """The answer of ``resp`` with its body read: a 2xx body up to ``max_bytes`` (else TooLarge), any other
    up to ERROR_BODY_LIMIT."""
    if stats is not None:
        stats.requests += 1
    ok = 200 <= resp.status_code < 300
    body = b""
    if method != "HEAD":
        limit = max_bytes if ok else ERROR_BODY_LIMIT
        declared = resp.headers.get("content-length", "")
        if ok and declared.isdigit() and int(declared) > limit:
            raise TooLarge(method, url, str(resp.url), resp.status_code, limit, int(declared))
        chunks, got = [], 0
        try:
            for chunk in resp.iter_bytes():
                got += len(chunk)
                if got > limit:
                    if ok:
                        raise TooLarge(method, url, str(resp.url), resp.status_code, limit, None)
                    chunks.append(chunk[:len(chunk) - (got - limit)])
                    break
                chunks.append(chunk)
        finally:
            if stats is not None:
                stats.bytes_received += resp.num_bytes_downloaded
        body = b"".join(chunks)
    return Answer(str(resp.url), resp.status_code, resp.reason_phrase, resp.headers, body)


def _why(failure: RequestFailed) -> str:
    if isinstance(failure, KeptFailing):
        return f"{failure.answer.status} {failure.answer.reason}"
    if isinstance(failure, NoAnswer):
        return failure.detail
    return type(failure).__name__


def host_port(url: httpx.URL) -> str:
    """``host:port`` of ``url`` (``[v6]:port`` for IPv6), the port filled in from the scheme."""
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_request(exc: BaseException) -> bool:
    try:
        exc.request  # type: ignore[attr-defined]  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


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


#: The core's own log (retries), credentials of URLs redacted.
log = redacting_logger(__name__)
