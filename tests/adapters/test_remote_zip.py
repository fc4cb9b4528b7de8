"""factory.adapters.index.remote_zip (zipfile over HTTP range requests) and Requires-Python in the choice of a
wheel, against the real test index on 127.0.0.1 (tests/pypi_server.py), honest and hostile."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest

from factory.adapters.http import Answer
from factory.adapters.index import DistFile, PackageIndex, UpstreamError, select_wheel
from factory.adapters.index import client as index_client
from factory.adapters.index.remote_zip import HttpRangeFile
from tests.pypi_server import RANGE_LIES, PyPIServer, wheel_zip

WHEEL = "lazy-1.0-cp312-cp312-manylinux_2_28_aarch64.whl"
METADATA = b"Metadata-Version: 2.1\nName: lazy\nVersion: 1.0\nRequires-Dist: dep==3\n"


def _wheel(padding: int = 300_000) -> bytes:
    """A wheel whose METADATA sits behind ``padding`` incompressible-enough bytes, so the tail alone does
    not hold the whole file."""
    return wheel_zip({"lazy/blob.bin": bytes(range(256)) * (padding // 256),
                      "lazy-1.0.dist-info/METADATA": METADATA, "lazy-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n"},
                     stored=["lazy/blob.bin"])


@pytest.fixture
def server() -> Iterator[PyPIServer]:
    with PyPIServer(fixtures=None) as srv:
        yield srv


@pytest.fixture
def index(server: PyPIServer) -> Iterator[PackageIndex]:
    with PackageIndex(server.index_url, retries=0, timeout=5) as ix:
        yield ix


def _serve(server: PyPIServer, body: bytes, filename: str = WHEEL, **extra: object) -> None:
    server.add_project("lazy", [{"filename": filename, "body": body, **extra}])


def _range_file(index: PackageIndex, url: str, **kw: int) -> HttpRangeFile:
    def get(spec: str) -> Answer:  # the index's own ranged GET
        return index._get(url, headers={"Range": f"bytes={spec}"}, what="a wheel")  # noqa: SLF001

    return HttpRangeFile(url, get, max_download=kw.pop("max_download", 1 << 20), **kw)


# -- the file object -------------------------------------------------------------------------------


def test_range_file_reads_like_a_file_and_fetches_only_what_is_read(server: PyPIServer, index: PackageIndex) -> None:
    body = bytes(range(256)) * 1024  # 256 KiB
    url = server.add_file("blob.bin", body)
    remote = _range_file(index, url, tail=1000, readahead=100)
    assert remote.size == len(body) and remote.requests == 1 and remote.downloaded == 1000
    assert remote.seek(-10, io.SEEK_END) == len(body) - 10 and remote.read() == body[-10:]  # from the tail
    assert remote.requests == 1
    remote.seek(5000)
    assert remote.read(10) == body[5000:5010] and remote.tell() == 5010
    assert remote.requests == 2 and remote.downloaded == 1100  # 10 asked, read ahead to 100
    assert remote.read(50) == body[5010:5060] and remote.requests == 2  # inside what came
    remote.seek(4990)
    assert remote.read(30) == body[4990:5020] and remote.requests == 3  # only the 10 missing bytes
    assert [r.range for r in server.requests_to("/files/blob.bin")] == ["bytes=-1000", "bytes=5000-5099",
                                                                         "bytes=4990-4999"]
    with pytest.raises(OSError, match="before the start"):
        remote.seek(-1)


def test_range_file_download_is_bounded(server: PyPIServer, index: PackageIndex) -> None:
    url = server.add_file("blob.bin", bytes(300_000))
    remote = _range_file(index, url, tail=1000, max_download=50_000)
    remote.seek(0)
    with pytest.raises(UpstreamError, match=r"would need more than the 50000 bytes allowed to be downloaded"):
        remote.read(100_000)


def test_zipfile_over_range_requests_reads_the_member_in_three_requests(server: PyPIServer,
                                                                        index: PackageIndex) -> None:
    body = _wheel()
    _serve(server, body)
    assert index.wheel_metadata("lazy", "1.0").requires_dist == ("dep==3",)
    ranged = [r for r in server.requests_to(f"/files/{WHEEL}") if r.range]
    assert all(r.status == 206 for r in ranged) and len(ranged) <= 3
    assert server.bytes_sent(f"/files/{WHEEL}") < len(body) / 3


def test_a_bounded_download_refuses_a_wheel_whose_directory_is_too_big(server: PyPIServer, index: PackageIndex,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_client, "MAX_RANGE_DOWNLOAD", 70_000)
    members = {f"lazy/module_{i:05d}.py": b"" for i in range(2000)}  # ~100 KB of central directory
    _serve(server, wheel_zip({**members, "lazy-1.0.dist-info/METADATA": METADATA}))
    with pytest.raises(UpstreamError, match=r"more than the 70000 bytes allowed to be downloaded from it: refused"):
        index.wheel_metadata("lazy", "1.0")


# -- hostile servers -------------------------------------------------------------------------------


@pytest.mark.parametrize("lie, expected", [
    ("short", r"sent 65557 bytes for the range 234\d+-\d+ \(65558 bytes\)"),
    ("long", r"sent 65559 bytes for the range 234\d+-\d+ \(65558 bytes\)"),
    ("shifted", r"answered a different range than asked for \(the last 65558 bytes, got \d+-\d+/\d+\)"),
    ("no-size", r"answered a range request without the file's size \(Content-Range 'bytes \d+-\d+/\*'\)"),
], ids=list(RANGE_LIES))
def test_a_server_answering_other_ranges_than_asked_is_refused(server: PyPIServer, index: PackageIndex, lie: str,
                                                               expected: str) -> None:
    _serve(server, _wheel())
    server.range_lie = lie
    with pytest.raises(UpstreamError, match=expected) as info:
        index.wheel_metadata("lazy", "1.0")
    assert str(info.value).startswith(server.file_url(WHEEL))


def test_a_server_shifting_a_later_range_is_refused(server: PyPIServer, index: PackageIndex) -> None:
    body = _wheel()
    url = server.add_file("blob.bin", body)
    remote = _range_file(index, url, tail=1000, readahead=100)
    server.range_lie = "shifted"
    remote.seek(10)
    with pytest.raises(UpstreamError, match=r"answered a different range than asked for \(10-109/\d+, got 11-110/"):
        remote.read(5)


def test_a_server_ignoring_range_sends_the_whole_small_wheel_once(server: PyPIServer, index: PackageIndex) -> None:
    _serve(server, _wheel())
    server.ranges = False
    assert index.wheel_metadata("lazy", "1.0").name == "lazy"
    assert [r.status for r in server.requests_to(f"/files/{WHEEL}")] == [404, 200]  # .metadata, then the wheel


def test_a_server_ignoring_range_on_a_big_wheel_is_refused_clearly(server: PyPIServer, index: PackageIndex,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_client, "MAX_FULL_BODY", 100_000)
    _serve(server, _wheel())
    server.ranges = False
    with pytest.raises(UpstreamError, match=r"is \d+ bytes \(it ignores Range requests\), more than the 100000 "
                                            r"accepted for a wheel"):
        index.wheel_metadata("lazy", "1.0")


@pytest.mark.parametrize("cut", ["end", "directory"])
def test_a_truncated_zip_is_one_clear_error(server: PyPIServer, index: PackageIndex, cut: str) -> None:
    body = _wheel()
    if cut == "end":
        body = body[:len(body) - 30]  # the end of central directory record is gone
    else:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            start = zf.start_dir
        body = body[:start + 10] + body[start + 60:]  # a hole in the central directory
    _serve(server, body)
    with pytest.raises(UpstreamError, match=r"is not a zip file \("):
        index.wheel_metadata("lazy", "1.0")


def test_a_member_failing_its_crc_is_refused(server: PyPIServer, index: PackageIndex) -> None:
    body = bytearray(_wheel())
    with zipfile.ZipFile(io.BytesIO(bytes(body))) as zf:
        info = zf.getinfo("lazy-1.0.dist-info/METADATA")
        # the member's data starts after its local header: 30 bytes + name + extra
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    body[start] ^= 0xFF
    _serve(server, bytes(body))
    with pytest.raises(UpstreamError, match=r"cannot read lazy-1.0.dist-info/METADATA \((Bad CRC-32|Error -3)"):
        index.wheel_metadata("lazy", "1.0")


# -- Requires-Python -------------------------------------------------------------------------------


def _file(filename: str, requires_python: str | None) -> DistFile:
    return DistFile(filename=filename, url=f"https://files.example/{filename}", requires_python=requires_python)


def test_select_wheel_skips_a_wheel_whose_requires_python_excludes_the_target() -> None:
    arm = _file("x-1.0-cp313-cp313-manylinux_2_28_aarch64.whl", ">=3.13")
    pure = _file("x-1.0-py3-none-any.whl", ">=3.9")
    assert select_wheel([arm, pure]) is pure  # the images' CPython 3.12 cannot install `arm`
    assert select_wheel([arm, pure], python_version="3.13") is arm
    assert select_wheel([arm], python_version="3.12") is None
    assert select_wheel([_file("x-1.0-py3-none-any.whl", "not a specifier")]) is not None  # unreadable: admitted
    with pytest.raises(ValueError, match="python_version must be a version"):
        select_wheel([pure], python_version="three")


def test_wheel_metadata_follows_requires_python_from_the_simple_page(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("pyreq", [
        {"filename": "pyreq-2.0-cp313-cp313-manylinux_2_28_aarch64.whl", "requires-python": ">=3.13",
         "metadata": b"Metadata-Version: 2.1\nName: pyreq\nVersion: 2.0\nRequires-Dist: new==1\n"},
        {"filename": "pyreq-2.0-py3-none-any.whl", "requires-python": ">=3.9,<3.13",
         "metadata": b"Metadata-Version: 2.1\nName: pyreq\nVersion: 2.0\nRequires-Dist: old==1\n"},
    ])
    assert index.wheel_metadata("pyreq", "2.0").source_file == "pyreq-2.0-py3-none-any.whl"
    newer = index.wheel_metadata("pyreq", "2.0", python_version="3.13")
    assert (newer.source_file, newer.requires_dist) == ("pyreq-2.0-cp313-cp313-manylinux_2_28_aarch64.whl", ("new==1",))
