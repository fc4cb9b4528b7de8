"""A hostile HTTP answer shared by the test servers: one byte at a time, slower than any client should wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler


def send_dripping(handler: BaseHTTPRequestHandler, drip: tuple[float, bool], status: int, body: bytes,
                  content_type: str, headers: Mapping[str, str], stopping: Callable[[], bool]) -> None:
    """Answer one byte every `drip[0]` seconds: the body after a complete head, or (`drip[1]`) everything from
    the status line on. Stops when the client gives up or `stopping()` says the server is shutting down."""
    interval, whole = drip
    head = (f"HTTP/1.1 {status} {handler.responses.get(status, ('',))[0]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode("latin-1")
    payload, start = head + body, 0
    if not whole:
        handler.wfile.write(head)
        handler.wfile.flush()
        start = len(head)
    handler.close_connection = True
    try:
        for i in range(start, len(payload)):
            if stopping():
                return
            handler.wfile.write(payload[i:i + 1])
            handler.wfile.flush()
            time.sleep(interval)
    except OSError:  # the client gave up: that is the point
        return
