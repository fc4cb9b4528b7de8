"""A real HTTP package index for tests: ``http.server`` on 127.0.0.1, in a thread.

It serves the recorded documents in ``tests/fixtures/pypi/``:

* ``simple/<project>.json`` -- trimmed PEP 691 project pages recorded from PyPI; the file
  URLs in them are rewritten to point at this server (``/files/<filename>``);
* ``files/<name>`` -- real files: PEP 658 ``<wheel>.metadata`` documents and a small wheel;
* ``extracted/<wheel>.METADATA`` -- METADATA read (with range requests) out of real wheels
  that have no ``.metadata`` file on the index; the server stands in for such a wheel
  with a small zip holding that member, so clients take the range path as they would
  against the real index.

Tests can add more (:meth:`PyPIServer.add`, :meth:`PyPIServer.add_project`), inject
faults (drop the connection, answer a status such as 503 or 429 N times, stall, drip an
answer one byte at a time), switch Range support off, and inspect every request made
(:attr:`PyPIServer.requests`).
Single ``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-N`` requests get 206 answers (which lie as
``range_lie`` says, to play a hostile server: :data:`RANGE_LIES`).

**Hostile mode** (``PyPIServer(hostile=True)``) also serves the projects of :data:`HOSTILE_PROJECTS`:
index data of the wrong shape or with content a client must refuse (see each description).
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import EllipsisType
from typing import Any

from tests.drip import send_dripping

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pypi"

#: Hostile mode: project -> what is wrong with it. Each has one release, 1.0, with a py3-none-any wheel.
HOSTILE_PROJECTS = {
    "hostile-mixed-times": "upload times with and without a time zone on one page",
    "hostile-bad-marker": "a Requires-Dist whose marker cannot be evaluated (`platform_machine ~= ...`)",
    "hostile-invalid-requirement": "a Requires-Dist that is not a requirement (`dep==junk`)",
    "hostile-junk-pin": "an arbitrary-equality pin on something that is not a version (`dep===junk`)",
    "hostile-bad-hash": "a .metadata file that does not match the sha256 the page advertises",
    "hostile-page-types": "a file entry whose size is a string and whose hashes are a list",
    "hostile-filename-list": "a file entry whose filename is a list",
}
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_RECORDED_FILE_HOST = re.compile(r"^https://files\.pythonhosted\.org/.*/")


@dataclass
class Request:
    """One request the server answered (or dropped)."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0  # 0: the connection was dropped
    body_bytes: int = 0

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


@dataclass
class Fault:
    path_prefix: str | None
    kind: str  # "drop" | "status" | "delay" | "drip" | "drip-all"
    times: int
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.times > 0 and (self.path_prefix is None or path.startswith(self.path_prefix))


@dataclass
class _Route:
    body: bytes
    content_type: str


def wheel_zip(members: Mapping[str, bytes], *, stored: Iterable[str] = ()) -> bytes:
    """A zip (wheel) of ``members``; names in ``stored`` are not compressed."""
    stored = set(stored)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            method = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buf.getvalue()


def standin_wheel(filename: str, metadata: bytes) -> bytes:
    """A small wheel named like ``filename`` whose dist-info holds the real ``metadata``."""
    name, version = filename.split("-")[:2]
    dist_info = f"{name}-{version}.dist-info"
    wheel = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: false\n"
    return wheel_zip({
        f"{name}/__init__.py": b"",
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": wheel,
        f"{dist_info}/RECORD": b"",
    })


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        record = Request(self.command, path, {k.lower(): v for k, v in self.headers.items()})
        owner._log(record)
        fault = owner._take_fault(path)
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                return
            if fault.kind in ("drip", "drip-all"):
                self._drip = (fault.seconds, fault.kind == "drip-all")
            if fault.kind == "delay":
                time.sleep(fault.seconds)
            elif fault.kind == "status":
                body = f"{fault.status} injected\n".encode()
                self._send(record, fault.status, body, "text/plain", fault.headers, head=head)
                return
        route = owner._route(path)
        if route is None:
            self._send(record, 404, b"not found\n", "text/plain", head=head)
            return
        body = route.body
        wanted = self.headers.get("Range")
        if wanted and owner.ranges:
            span = _parse_range(wanted, len(body))
            if span is None:
                self._send(record, 416, b"", "text/plain",
                           {"Content-Range": f"bytes */{len(body)}"}, head=head)
                return
            if span is not Ellipsis:
                part, content_range = _partial(body, *span, owner.range_lie)
                self._send(record, 206, part, route.content_type, {"Content-Range": content_range}, head=head)
                return
        self._send(record, 200, body, route.content_type, {"Accept-Ranges": "bytes"} if owner.ranges
                   else {}, head=head)

    _drip: tuple[float, bool] | None = None

    def _send(self, record: Request, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None, *, head: bool) -> None:
        # record first: the client may act on the answer before this thread runs again
        record.status = status
        record.body_bytes = 0 if head else len(body)
        if self._drip is not None:
            return self._send_dripping(status, b"" if head else body, content_type, headers or {})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)


    def _send_dripping(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        assert self._drip is not None
        send_dripping(self, self._drip, status, body, content_type, headers,
                      lambda: self.server.owner._httpd is None)


#: The ways a hostile server's 206 answers can be wrong, for ``PyPIServer.range_lie``.
RANGE_LIES = {
    "short": "one byte fewer than its Content-Range says",
    "long": "one byte more than its Content-Range says",
    "shifted": "the range one byte further on (back, at the end) than asked for, and a Content-Range saying so",
    "no-size": "a Content-Range without the file's size (bytes a-b/*)",
}


def _partial(body: bytes, first: int, last: int, lie: str | None) -> tuple[bytes, str]:
    """(the body of a 206 for bytes first..last, its Content-Range), told the way ``lie`` says."""
    size = len(body)
    if lie == "short":
        return body[first:last], f"bytes {first}-{last}/{size}"
    if lie == "long":
        return body[first:last + 2].ljust(last - first + 2, b"\0"), f"bytes {first}-{last}/{size}"
    if lie == "shifted":  # one byte on, or back when the range ends the file
        step = 1 if last + 1 < size else -1 if first > 0 else 0
        return body[first + step:last + step + 1], f"bytes {first + step}-{last + step}/{size}"
    if lie == "no-size":
        return body[first:last + 1], f"bytes {first}-{last}/*"
    return body[first:last + 1], f"bytes {first}-{last}/{size}"


def _parse_range(value: str, size: int) -> tuple[int, int] | None | EllipsisType:
    """(first, last) for one satisfiable range; None if unsatisfiable; ... to ignore it."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (not m[1] and not m[2]):
        return Ellipsis  # several ranges or nonsense: answer with the whole file
    if not m[1]:  # suffix: the last N bytes
        n = int(m[2])
        if n == 0 or size == 0:
            return None
        return max(0, size - n), size - 1
    first = int(m[1])
    last = int(m[2]) if m[2] else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: PyPIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-answer (as tests make it do) is no server error
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class PyPIServer:
    """A package index on an ephemeral port of 127.0.0.1; use as a context manager."""

    def __init__(self, fixtures: Path | None = FIXTURES, *, hostile: bool = False) -> None:
        self._fixtures = fixtures
        self.hostile = hostile
        self._routes: dict[str, _Route] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        #: Honour Range headers (switch off to play a server that ignores them).
        self.ranges = True
        #: How a 206 lies (see :data:`RANGE_LIES`); None: it does not.
        self.range_lie: str | None = None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PyPIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        if self._fixtures is not None:
            self._load_fixtures(self._fixtures)
        if self.hostile:
            self._add_hostile()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="pypi-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> PyPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def index_url(self) -> str:
        return f"{self.url}/simple/"

    def file_url(self, filename: str) -> str:
        return f"{self.url}/files/{filename}"

    # -- content -------------------------------------------------------------------------------

    def add(self, path: str, body: bytes | str, content_type: str = "application/octet-stream") -> None:
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._routes[path] = _Route(body, content_type)

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    def add_file(self, filename: str, body: bytes, *, metadata: bytes | None = None) -> str:
        """Serve ``/files/<filename>`` (and its PEP 658 ``.metadata`` if given); return its URL."""
        self.add(f"/files/{filename}", body, "application/octet-stream")
        if metadata is not None:
            self.add(f"/files/{filename}.metadata", metadata, "application/octet-stream")
        return self.file_url(filename)

    def add_project(self, name: str, files: Iterable[Mapping[str, Any]], *, api_version: str = "1.1") -> None:
        """Serve a PEP 691 page for ``name``.

        Each file is a PEP 691 file mapping; ``url`` defaults to ``/files/<filename>``,
        ``hashes`` to ``{}``; the extra keys ``body`` and ``metadata`` (bytes) are served
        as the file and its PEP 658 document.
        """
        entries = []
        for f in files:
            entry = {k: v for k, v in f.items() if k not in ("body", "metadata")}
            entry.setdefault("url", self.file_url(entry["filename"]))
            entry.setdefault("hashes", {})
            if "body" in f:
                self.add_file(entry["filename"], f["body"], metadata=f.get("metadata"))
            elif f.get("metadata") is not None:
                self.add(f"/files/{entry['filename']}.metadata", f["metadata"])
            entries.append(entry)
        doc = {"meta": {"api-version": api_version}, "name": name, "files": entries}
        self.add(f"/simple/{name}/", json.dumps(doc), JSON_TYPE)

    def _load_fixtures(self, root: Path) -> None:
        for page in sorted((root / "simple").glob("*.json")):
            doc = json.loads(page.read_text())
            for f in doc["files"]:
                f["url"] = _RECORDED_FILE_HOST.sub(self.url + "/files/", f["url"])
            self.add(f"/simple/{page.stem}/", json.dumps(doc), JSON_TYPE)
        for f in sorted((root / "files").glob("*")):
            self.add(f"/files/{f.name}", f.read_bytes())
        for f in sorted((root / "extracted").glob("*.METADATA")):
            wheel = f.name.removesuffix(".METADATA")
            self.add(f"/files/{wheel}", standin_wheel(wheel, f.read_bytes()))

    # -- faults ------------------------------------------------------------------------------

    def fail(self, path_prefix: str | None = None, *, status: int = 503, times: int = 1,
             headers: Mapping[str, str] | None = None) -> None:
        """Answer ``status`` to the next ``times`` requests under ``path_prefix``."""
        self._add_fault(Fault(path_prefix, "status", times, status=status, headers=dict(headers or {})))

    def drop(self, path_prefix: str | None = None, *, times: int = 1) -> None:
        """Close the connection without answering the next ``times`` requests."""
        self._add_fault(Fault(path_prefix, "drop", times))

    def stall(self, path_prefix: str | None = None, *, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering the next ``times`` requests."""
        self._add_fault(Fault(path_prefix, "delay", times, seconds=seconds))

    def drip(self, path_prefix: str | None = None, *, interval: float, times: int = 1,
             headers: bool = False) -> None:
        """Answer the next ``times`` requests one byte every ``interval`` seconds (with ``headers``: from the
        status line on), so that no single read ever times out."""
        self._add_fault(Fault(path_prefix, "drip-all" if headers else "drip", times, seconds=interval))

    # -- hostile mode --------------------------------------------------------------------------

    def _add_hostile(self) -> None:
        import hashlib

        def meta(name: str, *requires: str) -> bytes:
            lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0",
                     *(f"Requires-Dist: {r}" for r in requires)]
            return ("\n".join(lines) + "\n").encode()

        def wheel(name: str, **extra: Any) -> dict[str, Any]:
            filename = f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
            return {"filename": filename, "upload-time": "2026-01-02T00:00:00Z", "core-metadata": True,
                    "metadata": meta(name, "dep>=1"), **extra}

        self.add_project("hostile-mixed-times", [
            wheel("hostile-mixed-times"),
            {"filename": "hostile_mixed_times-1.0.tar.gz", "upload-time": "2026-01-01T00:00:00"}])
        self.add_project("hostile-bad-marker", [wheel("hostile-bad-marker", metadata=meta(
            "hostile-bad-marker", 'dep>=1; platform_machine ~= "aarch64"'))])
        self.add_project("hostile-invalid-requirement", [wheel("hostile-invalid-requirement", metadata=meta(
            "hostile-invalid-requirement", "dep==junk"))])
        self.add_project("hostile-junk-pin", [wheel("hostile-junk-pin", metadata=meta(
            "hostile-junk-pin", "dep===junk"))])
        advertised = hashlib.sha256(meta("hostile-bad-hash", "dep>=1")).hexdigest()
        self.add_project("hostile-bad-hash", [wheel("hostile-bad-hash", **{
            "core-metadata": {"sha256": advertised}, "metadata": meta("hostile-bad-hash", "dep>=666")})])
        self.add_project("hostile-page-types", [wheel("hostile-page-types", size="12", hashes=["sha256"])])
        self.add_project("hostile-filename-list", [{"filename": ["hostile_filename_list-1.0.tar.gz"],
                                                    "url": self.file_url("hostile_filename_list-1.0.tar.gz")}])

    def _add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.times -= 1
                    return fault
        return None

    # -- inspection ----------------------------------------------------------------------------

    def _log(self, record: Request) -> None:
        with self._lock:
            self.requests.append(record)

    def _route(self, path: str) -> _Route | None:
        with self._lock:
            return self._routes.get(path)

    def requests_to(self, path_prefix: str = "/") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def count(self, path_prefix: str = "/") -> int:
        return len(self.requests_to(path_prefix))

    def bytes_sent(self, path_prefix: str = "/") -> int:
        return sum(r.body_bytes for r in self.requests_to(path_prefix))

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
