"""Read one member of a remote zip (a wheel's ``METADATA``) without downloading the zip.

stdlib :mod:`zipfile` does the reading (end of central directory, zip64, central directory, local header,
inflating, CRC); it reads from an :class:`HttpRangeFile`, a seekable, read-only file whose bytes come from
HTTP range requests as they are needed -- pip's "lazy wheel" idea. For a wheel that is two or three small
requests: the tail (end of central directory, usually the whole central directory), what is missing of the
central directory, and the member. The total download is bounded, and a server that answers with ranges
other than those asked for is refused with one clear sentence.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Callable

from factory.adapters.http import Answer
from factory.adapters.index.errors import UpstreamError

__all__ = ["HttpRangeFile", "RangeGetter", "read_member"]

#: Answers ``Range: bytes=<spec>`` for one URL: a 206 with that range, or a 200 with the whole file.
RangeGetter = Callable[[str], Answer]

#: Bytes asked for first from the end: all that zipfile reads to find the end of central directory record
#: (22 bytes after a comment of up to 64 KiB), and for most wheels the whole central directory too.
TAIL_BYTES = (1 << 16) + 22
#: At least this much is asked for after a position that is not there yet, so a local header and the small
#: member behind it come in one request.
READAHEAD = 16 * 1024

_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class HttpRangeFile(io.RawIOBase):
    """A read-only, seekable file over the bytes of ``url``, fetched by ``get`` as they are read.

    The first request asks for the last ``tail`` bytes, which also tells the file's size. A server that
    ignores Range and answers 200 with the whole file is accepted when ``get`` let the body through (its
    size cap); later reads then come from memory. Everything fetched is kept; reading more than
    ``max_download`` bytes in all, an answer whose Content-Range differs from the range asked for, or a body
    of another length than its range is an :class:`UpstreamError`.
    """

    def __init__(self, url: str, get: RangeGetter, *, max_download: int, tail: int = TAIL_BYTES,
                 readahead: int = READAHEAD) -> None:
        super().__init__()
        self.url = url
        self._get = get
        self.max_download = max_download
        self._readahead = readahead
        self._pos = 0
        self._pieces: dict[int, bytes] = {}
        #: Bytes received and range requests made so far.
        self.downloaded = 0
        self.requests = 0
        self.size = self._first(tail)

    # -- the file interface zipfile uses -----------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start of {self.url}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1, /) -> bytes:
        start = self._pos
        end = self.size if size is None or size < 0 else min(self.size, start + size)
        if end <= start:
            return b""
        self._ensure(start, end)
        self._pos = end
        return self._slice(start, end)

    def readinto(self, buffer: bytearray | memoryview, /) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    # -- fetching ----------------------------------------------------------------------------

    def _first(self, tail: int) -> int:
        answer = self._ask(f"-{tail}")
        if answer.status == 200:
            return self._whole(answer)
        first, last, total = self._content_range(answer)
        if total is None:
            raise UpstreamError(f"{self.url} answered a range request without the file's size (Content-Range "
                                f"{answer.headers.get('content-range', '')[:100]!r})")
        if last != total - 1 or first != max(0, total - tail):
            raise UpstreamError(f"{self.url} answered a different range than asked for (the last {tail} bytes, "
                                f"got {first}-{last}/{total})")
        self._keep(first, answer.body, last)
        return total

    def _ensure(self, start: int, end: int) -> None:
        """Fetch what is missing of ``[start, end)``, reading ahead to at least ``start + readahead`` when
        something is."""
        if not self._gaps(start, end):
            return
        want_end = min(self.size, max(end, start + self._readahead))
        for gap_start, gap_end in self._gaps(start, want_end):
            if self.downloaded + (gap_end - gap_start) > self.max_download:
                raise UpstreamError(f"reading {self.url} would need more than the {self.max_download} bytes "
                                    "allowed to be downloaded from it: refused")
            answer = self._ask(f"{gap_start}-{gap_end - 1}")
            if answer.status == 200:
                self._whole(answer)
                return
            first, last, total = self._content_range(answer)
            if (first, last) != (gap_start, gap_end - 1) or total not in (None, self.size):
                raise UpstreamError(f"{self.url} answered a different range than asked for ({gap_start}-"
                                    f"{gap_end - 1}/{self.size}, got {first}-{last}/{total or '*'})")
            self._keep(first, answer.body, last)

    def _ask(self, spec: str) -> Answer:
        self.requests += 1
        answer = self._get(spec)
        if answer.status not in (200, 206):
            raise UpstreamError(f"{self.url} answered {answer.status} {answer.reason} to a range request")
        return answer

    def _content_range(self, answer: Answer) -> tuple[int, int, int | None]:
        match = _CONTENT_RANGE.match(answer.headers.get("content-range", ""))
        if not match or int(match[2]) < int(match[1]):
            raise UpstreamError(f"{self.url} answered a range request without a usable Content-Range")
        return int(match[1]), int(match[2]), None if match[3] == "*" else int(match[3])

    def _whole(self, answer: Answer) -> int:
        """A 200: the server ignores Range and sent everything (within the getter's size cap)."""
        if self._pieces and len(answer.body) != self.size:
            raise UpstreamError(f"{self.url} ignored a range request and sent {len(answer.body)} bytes of a file "
                                f"of {self.size}")
        self._pieces = {0: answer.body}
        self.downloaded += len(answer.body)
        self.size = len(answer.body)
        return self.size

    def _keep(self, first: int, body: bytes, last: int) -> None:
        if len(body) != last - first + 1:
            raise UpstreamError(f"{self.url} sent {len(body)} bytes for the range {first}-{last} "
                                f"({last - first + 1} bytes)")
        self.downloaded += len(body)
        self._pieces[first] = body

    def _gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        gaps, at = [], start
        for first in sorted(self._pieces):
            last = first + len(self._pieces[first])
            if last <= at:
                continue
            if first >= end:
                break
            if first > at:
                gaps.append((at, first))
            at = max(at, last)
        if at < end:
            gaps.append((at, end))
        return gaps

    def _slice(self, start: int, end: int) -> bytes:
        out = bytearray()
        for first in sorted(self._pieces):
            piece = self._pieces[first]
            lo, hi = max(start, first), min(end, first + len(piece))
            if lo < hi:
                out += piece[lo - first:hi - first]
        if len(out) != end - start:
            raise AssertionError(f"HttpRangeFile: bytes {start}-{end} of {self.url} are not all there")
        return bytes(out)


def read_member(remote: HttpRangeFile, pick: Callable[[list[str]], str | None], *, max_size: int,
                what: str) -> tuple[str, bytes]:
    """(name, bytes) of the member ``pick`` chooses among the names of the remote zip; ``what`` names what
    is looked for in the error when ``pick`` finds nothing. A member larger than ``max_size``, encrypted, or
    that does not inflate to its size and CRC is an :class:`UpstreamError`."""
    url = remote.url
    try:
        archive = zipfile.ZipFile(remote)
    except zipfile.BadZipFile as exc:
        raise UpstreamError(f"{url} is not a zip file ({str(exc)[:200] or 'unreadable'})") from None
    except (EOFError, ValueError, OverflowError) as exc:  # damaged records zipfile does not catch itself
        raise UpstreamError(f"{url} is not a readable zip file ({str(exc)[:200] or type(exc).__name__})") from None
    with archive:
        name = pick(archive.namelist())
        if name is None:
            raise UpstreamError(f"{url} has no {what} member")
        info = archive.getinfo(name)
        if info.flag_bits & 0x1:
            raise UpstreamError(f"{url}: {name} is encrypted")
        if info.file_size > max_size:
            raise UpstreamError(f"{url}: {name} is implausibly large ({info.file_size} bytes)")
        try:
            return name, archive.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
            raise UpstreamError(f"{url}: cannot read {name} ({str(exc)[:200] or type(exc).__name__})") from None
        except NotImplementedError as exc:
            raise UpstreamError(f"{url}: {name} uses an unsupported compression method ({exc})") from None
