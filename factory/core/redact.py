"""One redaction function: credentials written into URLs never reach a message, a log line or a report.

`https://user:token@host/simple` becomes `https://***@host/simple`. It is applied to every message the CLI
prints for an error, so even a message built from a URL the matrix (or a flag, or a server) handed in cannot
leak the user-info part of it.
"""

from __future__ import annotations

import re

#: `scheme://userinfo@`: the user-info is everything up to the last `@` before the host's path, query or
#: fragment (a sloppy password may itself contain an unescaped `@`), never across whitespace or quotes.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s'\"<>@]*(?:@[^/?#\s'\"<>@]*)*@")


def redact(text: str) -> str:
    """`text` with the user-info of every URL in it replaced by `***`."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def has_userinfo(url: str) -> bool:
    """Whether a URL carries user-info (`user@` or `user:password@`) in its authority."""
    return redact(url) != url
