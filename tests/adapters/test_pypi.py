"""factory.adapters.index against a real HTTP server on 127.0.0.1 serving recorded PyPI documents.

No mocks of httpx: every request goes over a socket to tests/pypi_server.py.  The one
online test (``-m online``) reads real metadata from the real index.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from factory.adapters import http as http
from factory.adapters.index import (
    DistFile,
    NotFound,
    NotInCache,
    PackageIndex,
    UpstreamError,
    UpstreamUnavailable,
    WheelMetadata,
    parse_metadata,
    requirement_for,
    select_wheel,
)
from factory.adapters.index import client as index_client
from factory.adapters.index.cache import Cache
from tests.pypi_server import PyPIServer, standin_wheel, unused_port, wheel_zip

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pypi"

VLLM_015_ARM = "vllm-0.15.0-cp38-abi3-manylinux_2_31_aarch64.whl"
VLLM_033_ARM = "vllm-0.33.0-cp38-abi3-manylinux_2_28_aarch64.whl"
SIX = "six-1.17.0-py2.py3-none-any.whl"


class Sleeps(list[float]):
    """Records the waits asked for instead of sleeping (keeps retry tests fast)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server() -> Iterator[PyPIServer]:
    with PyPIServer() as srv:
        yield srv


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def index(server: PyPIServer, sleeps: Sleeps) -> Iterator[PackageIndex]:
    with PackageIndex(server.index_url, retries=3, backoff=0.01, timeout=5, sleep=sleeps) as ix:
        yield ix


def _metadata(name: str, version: str, *requires: str, requires_python: str = ">=3.9") -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Requires-Python: {requires_python}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n\nA long description.\nRequires-Dist: not-a-header\n").encode()


# -- releases -----------------------------------------------------------------------------------


def test_releases_grouped_sorted_and_dated(index: PackageIndex) -> None:
    releases = index.releases("vllm")
    assert [r.version for r in releases] == ["0.2.1", "0.9.2", "0.15.0", "0.33.0"]
    by = {r.version: r for r in releases}
    assert by["0.2.1"].yanked and not any(r.yanked for r in releases[1:])
    assert [f.filename for f in by["0.33.0"].files] == [
        "vllm-0.33.0-cp38-abi3-manylinux_2_28_aarch64.whl",
        "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl",
        "vllm-0.33.0.tar.gz",
    ]
    # the earliest upload of the release's files (the sdist went up first), PEP 700
    assert by["0.33.0"].uploaded == datetime(2026, 11, 2, 10, 12, 56, tzinfo=UTC)
    assert by["0.15.0"].uploaded == datetime(2026, 1, 29, 18, 59, 48, 245478, tzinfo=UTC)
    f = by["0.15.0"].files[0]
    assert f.size == 461337080 and f.digest("sha256") and f.requires_python == "<3.14,>=3.10"
    assert f.url.startswith(index.index_url.removesuffix("simple/"))


def test_release_yanked_only_when_every_file_is(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("demo", [
        {"filename": "demo-1.0-py3-none-any.whl", "yanked": "broken METADATA"},
        {"filename": "demo-1.0.tar.gz", "yanked": False},
        {"filename": "demo-2.0-py3-none-any.whl", "yanked": True},
        {"filename": "demo-2.0.tar.gz", "yanked": "bad"},
        {"filename": "demo-10.0.tar.gz"},
    ])
    r1, r2, r10 = index.releases("demo")
    assert (r1.version, r1.yanked) == ("1.0", False)
    assert r1.files[0].yanked and r1.files[0].yanked_reason == "broken METADATA"
    assert (r2.version, r2.yanked) == ("2.0", True)
    assert (r10.version, r10.yanked, r10.uploaded) == ("10.0", False, None)


def test_unparseable_files_are_skipped_and_names_normalised(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("my-proj", [
        {"filename": "My_Proj-1.0-py3-none-any.whl", "upload-time": "2024-01-02T00:00:00Z"},
        {"filename": "my_proj-1.0.tar.gz", "upload-time": "2024-01-01T00:00:00.5Z"},
        {"filename": "my_proj-1.0.win32.exe"},
        {"filename": "my_proj-1.0-py2.7.egg"},
        {"filename": "my_proj-notaversion.tar.gz"},
        {"filename": "garbage.whl"},
    ])
    [release] = index.releases("My.Proj")  # the URL uses the normalised name
    assert release.version == "1.0" and len(release.files) == 2
    assert release.uploaded == datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)


def test_build_tagged_wheels_join_their_release(index: PackageIndex) -> None:
    rel = index.release("torch", "2.10.0")
    assert {f.filename for f in rel.files} >= {"torch-2.10.0-3-cp312-cp312-manylinux_2_28_x86_64.whl",
                                               "torch-2.10.0-cp312-cp312-manylinux_2_28_x86_64.whl"}


def test_pep_503_html_page(server: PyPIServer, index: PackageIndex) -> None:
    server.add("/simple/htmlproj/", """<!DOCTYPE html><html><body>
      <a href="../../files/htmlproj-1.0-py3-none-any.whl#sha256=abc" data-requires-python="&gt;=3.9"
         data-core-metadata="sha256=def">htmlproj-1.0-py3-none-any.whl</a><br/>
      <a href="/files/htmlproj-1.0.tar.gz" data-yanked="">htmlproj-1.0.tar.gz</a>
      <a href="/files/htmlproj-0.9.tar.gz" data-yanked="gone" data-dist-info-metadata="true">htmlproj-0.9.tar.gz</a>
    </body></html>""", "text/html; charset=utf-8")
    old, new = index.releases("htmlproj")
    assert (old.version, old.yanked) == ("0.9", True)
    assert old.files[0].yanked_reason == "gone" and old.files[0].core_metadata
    whl = next(f for f in new.files if f.is_wheel)
    assert whl.url == server.file_url("htmlproj-1.0-py3-none-any.whl")
    assert whl.hashes == (("sha256", "abc"),) and whl.metadata_hashes == (("sha256", "def"),)
    assert whl.requires_python == ">=3.9" and whl.core_metadata and not new.yanked


def test_pep_691_metadata_keys(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("keys", [
        {"filename": "keys-1-py3-none-any.whl", "core-metadata": {"sha256": "aa"}},
        {"filename": "keys-2-py3-none-any.whl", "dist-info-metadata": True},  # the pre-PEP 714 name
        {"filename": "keys-3-py3-none-any.whl", "core-metadata": False, "dist-info-metadata": True},
        {"filename": "keys-4-py3-none-any.whl"},
    ])
    flags = [(r.files[0].core_metadata, r.files[0].metadata_hashes) for r in index.releases("keys")]
    assert flags == [(True, (("sha256", "aa"),)), (True, ()), (False, ()), (False, ())]


def test_unknown_major_api_version_is_refused(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("future", [{"filename": "future-1.0.tar.gz"}], api_version="2.0")
    with pytest.raises(UpstreamError, match="simple API 2.0"):
        index.releases("future")


def test_has_aarch64_wheel(index: PackageIndex) -> None:
    assert index.has_aarch64_wheel("vllm", "0.15.0")
    assert not index.has_aarch64_wheel("vllm", "0.9.2")
    with pytest.raises(NotFound, match="vllm 9.9.9"):
        index.has_aarch64_wheel("vllm", "9.9.9")


def test_page_is_fetched_once_per_client(server: PyPIServer, index: PackageIndex) -> None:
    index.releases("vllm")
    index.wheel_metadata("vllm", "0.15.0")
    index.has_aarch64_wheel("vllm", "0.33.0")
    assert server.count("/simple/vllm/") == 1


# -- files and wheel choice ----------------------------------------------------------------------


def _f(name: str, **kw: Any) -> DistFile:
    return DistFile(filename=name, url=f"https://example.invalid/{name}", **kw)


def test_distfile_helpers() -> None:
    arm = _f("torch-2.11.0-cp312-cp312-manylinux_2_28_aarch64.whl")
    assert arm.is_wheel and arm.is_aarch64_linux and not arm.is_any and not arm.is_x86_64_linux
    assert arm.platform_tags == {"manylinux_2_28_aarch64"}
    legacy = _f("numpy-1.26.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert legacy.is_aarch64_linux and legacy.platform_tags == {"manylinux_2_17_aarch64",
                                                                 "manylinux2014_aarch64"}
    pure = _f(SIX)
    assert pure.is_any and not pure.is_aarch64_linux and pure.platform_tags == {"any"}
    musl = _f("x-1.0-cp312-cp312-musllinux_1_2_aarch64.whl")
    assert not musl.is_aarch64_linux
    sdist = _f("vllm-0.33.0.tar.gz")
    assert not sdist.is_wheel and not sdist.is_any and sdist.platform_tags == frozenset()
    assert _f("x-1.0-py3-none-any.whl#sha256=00").metadata_url.endswith("any.whl.metadata")
    assert hash(arm) == hash(_f(arm.filename))  # frozen, hashable


def _pick(files: Iterable[DistFile], platform: str | None) -> DistFile:
    """select_wheel's choice, which must exist."""
    wheel = select_wheel(files, platform)
    assert wheel is not None, f"no wheel chosen for {platform}"
    return wheel


def test_select_wheel_by_platform(index: PackageIndex) -> None:
    torch211 = index.release("torch", "2.11.0").files
    assert _pick(torch211, "linux/arm64").filename == "torch-2.11.0-cp312-cp312-manylinux_2_28_aarch64.whl"
    assert _pick(torch211, "linux/amd64").filename == "torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert _pick(torch211, None).is_aarch64_linux
    # no aarch64 wheel: the x86_64 one stands in (its METADATA is read, markers evaluated later)
    vllm092 = index.release("vllm", "0.9.2").files
    assert _pick(vllm092, "linux/arm64").filename == "vllm-0.9.2-cp38-abi3-manylinux1_x86_64.whl"
    # the highest build tag wins
    torch210 = index.release("torch", "2.10.0").files
    assert _pick(torch210, "linux/amd64").filename.startswith("torch-2.10.0-3-")
    assert _pick(index.release("six", "1.17.0").files, "linux/arm64").filename == SIX
    assert select_wheel([_f("a-1.0.tar.gz")], "linux/arm64") is None
    with pytest.raises(ValueError, match="platform"):
        select_wheel(torch211, "linux/riscv64")


def test_select_wheel_prefers_cp312_then_abi3_then_py3_and_unyanked() -> None:
    names = ["p-1-cp311-cp311-manylinux_2_28_aarch64.whl", "p-1-py3-none-manylinux_2_28_aarch64.whl",
             "p-1-cp38-abi3-manylinux_2_28_aarch64.whl", "p-1-cp312-cp312-manylinux_2_28_aarch64.whl",
             "p-1-py3-none-any.whl", "p-1-cp312-cp312-manylinux_2_28_x86_64.whl"]
    files = [_f(n) for n in names]
    assert _pick(files, "linux/arm64").filename == names[3]
    assert _pick([f for f in files if "cp312" not in f.filename], "linux/arm64").filename == names[2]
    assert _pick([files[0], files[1]], "linux/arm64").filename == names[1]
    assert _pick([files[4], files[5]], "linux/arm64").filename == names[5]  # x86_64 before any
    assert _pick([files[4]], "linux/amd64").filename == names[4]
    yanked = _f(names[3], yanked=True)
    assert _pick([yanked, files[0]], "linux/arm64").filename == names[0]
    assert select_wheel([yanked], "linux/arm64") is yanked


# -- metadata: PEP 658 ------------------------------------------------------------------------


def test_pep658_metadata_file_is_used(server: PyPIServer, index: PackageIndex) -> None:
    meta = index.wheel_metadata("vllm", "0.15.0")
    assert (meta.name, meta.version, meta.source_file) == ("vllm", "0.15.0", VLLM_015_ARM)
    assert meta.requires_python == "<3.14,>=3.10"
    assert str(requirement_for(meta, "torch")) == "torch==2.9.1"
    assert str(requirement_for(meta, "flashinfer-python")) == "flashinfer-python==0.6.1"
    assert len(meta.requires_dist) > 60
    assert server.count(f"/files/{VLLM_015_ARM}.metadata") == 1
    assert [r.path for r in server.requests_to("/files/")] == [f"/files/{VLLM_015_ARM}.metadata"]
    amd = index.wheel_metadata("vllm", "0.15.0", platform="linux/amd64")
    assert amd.source_file == "vllm-0.15.0-cp38-abi3-manylinux_2_31_x86_64.whl"


def test_pep658_hash_mismatch_fails_and_is_not_cached(server: PyPIServer, tmp_path: Path) -> None:
    """The advertised hash is the only thing that ties a .metadata file to its wheel: a mismatch fails, without
    falling back to the wheel's own METADATA and without caching anything (issue 16, item 8)."""
    from factory.adapters.index import BadMetadataHash
    from factory.adapters.index.cache import Cache

    good = _metadata("hashy", "1.0", "dep==1")
    server.add_project("hashy", [{
        "filename": "hashy-1.0-py3-none-any.whl",
        "core-metadata": {"sha256": "0" * 64},
        "body": wheel_zip({"hashy-1.0.dist-info/METADATA": good}),
        "metadata": _metadata("hashy", "1.0", "dep==666"),
    }])
    cache = Cache(tmp_path / "cache")
    with PackageIndex(server.index_url, cache=cache, retries=0, timeout=5) as ix, \
            pytest.raises(BadMetadataHash, match=r"hashy-1\.0-py3-none-any\.whl\.metadata does not match the hash "
                                                 r"the index advertises for it \(sha256 advertised 0{64}, got"):
        ix.wheel_metadata("hashy", "1.0")
    assert server.count("/files/hashy-1.0-py3-none-any.whl") == 1  # the .metadata only, never the wheel
    assert not any(k.startswith("metadata:") for k in _cache_keys(cache))


def _cache_keys(cache: Cache) -> list[str]:
    import json as _json

    return [_json.loads(f.read_bytes().partition(b"\n")[0])["key"]
            for f in cache.directory.glob("*/*") if not f.name.startswith(".tmp-")]


def test_pep658_with_matching_hash(server: PyPIServer, index: PackageIndex) -> None:
    import hashlib

    doc = _metadata("hashok", "1.0", "dep==2")
    server.add_project("hashok", [{"filename": "hashok-1.0-py3-none-any.whl",
                                   "core-metadata": {"sha256": hashlib.sha256(doc).hexdigest()},
                                   "metadata": doc}])
    assert index.wheel_metadata("hashok", "1.0").requires_dist == ("dep==2",)


def test_metadata_file_refused_falls_back_to_the_wheel(server: PyPIServer, index: PackageIndex) -> None:
    server.fail(f"/files/{VLLM_015_ARM}.metadata", status=403)
    server.add_file(VLLM_015_ARM, standin_wheel(VLLM_015_ARM, (FIXTURES / "files" / (
        VLLM_015_ARM + ".metadata")).read_bytes()))
    assert str(index.wheel_metadata("vllm", "0.15.0").requirement("torch")) == "torch==2.9.1"
    assert [r.status for r in server.requests_to("/files/")][:2] == [403, 206]


def test_metadata_naming_another_project_is_refused(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("liar", [{"filename": "liar-1.0-py3-none-any.whl",
                                 "metadata": _metadata("honest", "1.0")}])
    with pytest.raises(UpstreamError, match="names another project"):
        index.wheel_metadata("liar", "1.0")


# -- metadata: range requests into the wheel -----------------------------------------------------


def test_range_path_on_a_real_wheel(server: PyPIServer, index: PackageIndex) -> None:
    meta = index.wheel_metadata("six", "1.17.0")
    assert (meta.name, meta.version) == ("six", "1.17.0")
    # (the wheel spells it differently from the index page: ">=2.7, !=3.0.*, ...")
    assert meta.requires_python == ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*" and meta.requires_dist == ()
    wheel_requests = server.requests_to(f"/files/{SIX}")
    assert wheel_requests[0].path.endswith(".metadata") and wheel_requests[0].status == 404
    ranged = [r for r in wheel_requests if not r.path.endswith(".metadata")]
    assert ranged and all(r.range and r.status == 206 for r in ranged)
    real = (FIXTURES / "files" / SIX).read_bytes()
    with zipfile.ZipFile(io.BytesIO(real)) as zf:
        assert parse_metadata(zf.read("six-1.17.0.dist-info/METADATA"), SIX) == meta


def test_range_path_reads_what_the_wheel_declares(server: PyPIServer, index: PackageIndex) -> None:
    """vLLM 0.33.0: the JSON API's info.requires_dist said torch==2.13.0, the wheels torch==2.14.0."""
    meta = index.wheel_metadata("vllm", "0.33.0")
    assert meta.source_file == VLLM_033_ARM
    assert str(requirement_for(meta, "torch")) == "torch==2.14.0"
    assert str(requirement_for(meta, "torchvision")) == "torchvision==0.29.0"
    assert all(r.range for r in server.requests_to(f"/files/{VLLM_033_ARM}") if r.status == 206)


def _big_wheel(tmp_stored: bytes, *, metadata_stored: bool = False, members: int = 0) -> bytes:
    buf = io.BytesIO()
    meta = _metadata("big", "1.0", "torch==2.14.0", 'numpy; python_version < "3.10"')
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("big/blob.bin", tmp_stored, compress_type=zipfile.ZIP_STORED)
        for i in range(members):
            zf.writestr(f"big/some/deeply/nested/package/path/module_number_{i:06d}.py", b"",
                        compress_type=zipfile.ZIP_STORED)
        zf.writestr("big-1.0.dist-info/METADATA", meta,
                    compress_type=zipfile.ZIP_STORED if metadata_stored else zipfile.ZIP_DEFLATED)
        zf.writestr("big-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n")
        zf.writestr("big-1.0.dist-info/RECORD", b"")
    return buf.getvalue()


@pytest.mark.parametrize("metadata_stored", [False, True], ids=["deflate", "stored"])
def test_range_path_fetches_only_ranges(server: PyPIServer, index: PackageIndex, metadata_stored: bool) -> None:
    blob = bytes(range(256)) * (16 * 1024)  # 4 MiB, stored uncompressed
    body = _big_wheel(blob, metadata_stored=metadata_stored)
    server.add_project("big", [{"filename": "big-1.0-cp312-cp312-manylinux_2_28_aarch64.whl", "body": body}])
    meta = index.wheel_metadata("big", "1.0")
    assert meta.requires_dist == ("torch==2.14.0", 'numpy; python_version < "3.10"')
    assert requirement_for(meta, "numpy") is None
    sent = server.bytes_sent("/files/big-1.0")
    assert len(body) > 4_000_000 and sent < len(body) / 40, (sent, len(body))
    assert all(r.status in (206, 404) for r in server.requests_to("/files/big-1.0"))


def test_range_path_with_a_central_directory_beyond_the_first_tail(server: PyPIServer, index: PackageIndex) -> None:
    body = _big_wheel(b"x" * 200_000, members=1500)  # ~140 KB of central directory
    server.add_project("big", [{"filename": "big-1.0-py3-none-any.whl", "body": body}])
    assert index.wheel_metadata("big", "1.0").name == "big"
    ranged = [r for r in server.requests_to("/files/big-1.0-py3-none-any.whl") if r.status == 206]
    assert len(ranged) == 3  # tail, the rest of the central directory, the member


def test_range_path_zip64(server: PyPIServer, index: PackageIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # Make zipfile write zip64 structures for a small archive (zip64 end of central directory
    # and locator, zip64 extra fields with sizes and offsets), as it would past 4 GiB.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 8)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", allowZip64=True) as zf:
        zf.writestr("z64/data.bin", b"y" * 5000, compress_type=zipfile.ZIP_STORED)
        zf.writestr("z64-1.0.dist-info/METADATA", _metadata("z64", "1.0", "dep>=1"),
                    compress_type=zipfile.ZIP_DEFLATED)
    monkeypatch.undo()
    body = buf.getvalue()
    assert b"PK\x06\x06" in body and b"PK\x06\x07" in body  # it really is zip64
    with zipfile.ZipFile(io.BytesIO(body)) as zf:  # and a valid one
        assert zf.read("z64/data.bin") == b"y" * 5000
    server.add_project("z64", [{"filename": "z64-1.0-py3-none-any.whl", "body": body}])
    assert index.wheel_metadata("z64", "1.0").requires_dist == ("dep>=1",)


def test_server_ignoring_range_small_file(server: PyPIServer, index: PackageIndex) -> None:
    server.ranges = False
    assert index.wheel_metadata("six", "1.17.0").version == "1.17.0"
    # the whole (small) file came once and was read from memory afterwards
    assert server.count(f"/files/{SIX}") == 2  # .metadata probe + one 200


def test_server_ignoring_range_big_file_is_refused(server: PyPIServer, index: PackageIndex,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_client, "MAX_FULL_BODY", 100_000)
    server.ranges = False
    body = _big_wheel(b"z" * 300_000)
    server.add_project("big", [{"filename": "big-1.0-py3-none-any.whl", "body": body}])
    with pytest.raises(UpstreamError, match="more than the 100000 accepted for a wheel"):
        index.wheel_metadata("big", "1.0")


def test_not_a_zip(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("nozip", [{"filename": "nozip-1.0-py3-none-any.whl", "body": b"x" * 5000}])
    with pytest.raises(UpstreamError, match="not a zip file"):
        index.wheel_metadata("nozip", "1.0")


def test_wheel_without_metadata_member(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("nometa", [{"filename": "nometa-1.0-py3-none-any.whl",
                                   "body": wheel_zip({"nometa/__init__.py": b""})}])
    with pytest.raises(UpstreamError, match="no \\*.dist-info/METADATA"):
        index.wheel_metadata("nometa", "1.0")


def test_no_wheel_for_the_release(server: PyPIServer, index: PackageIndex) -> None:
    with pytest.raises(NotFound, match="no wheel for linux/arm64"):
        server.add_project("sdistonly", [{"filename": "sdistonly-1.0.tar.gz"}])
        index.wheel_metadata("sdistonly", "1.0")


# -- markers and torch -------------------------------------------------------------------------


def test_requirement_for_evaluates_markers_for_the_target(index: PackageIndex) -> None:
    torch291 = index.wheel_metadata("torch", "2.9.1")
    assert requirement_for(torch291, "nvidia-cuda-runtime-cu12") is None  # x86_64 only
    x86 = requirement_for(torch291, "nvidia_cuda_runtime_cu12", machine="x86_64")
    assert x86 is not None and str(x86.specifier) == "==12.8.90"
    assert requirement_for(torch291, "setuptools") is not None  # python_version >= "3.12"
    assert requirement_for(torch291, "setuptools", python_version="3.11") is None
    assert requirement_for(torch291, "optree") is None  # extra == "optree": no extras asked
    typing_extensions, filelock = requirement_for(torch291, "Typing_Extensions"), torch291.requirement("filelock")
    assert typing_extensions is not None and typing_extensions.name == "typing-extensions"
    assert filelock is not None and filelock.name == "filelock"
    with pytest.raises(ValueError, match="machine"):
        requirement_for(torch291, "filelock", machine="armv7l")


def test_requirement_for_refuses_bad_lines_instead_of_skipping_them() -> None:
    """A Requires-Dist line that cannot be read is an error, not skipped: `torch==junk` skipped made
    `upstream check` answer 'no deviation' (issue 16, item 9)."""
    meta = WheelMetadata("x", "1", ("not a requirement !!", "ok>=1"), None, "x-1-py3-none-any.whl")
    with pytest.raises(UpstreamError, match=r"^the metadata of x-1-py3-none-any.whl has a Requires-Dist that is "
                                            r"not a requirement: 'not a requirement !!' \(Expected"):
        requirement_for(meta, "ok")
    assert str(requirement_for(WheelMetadata("x", "1", ("ok>=1",), None, "x.whl"), "ok")) == "ok>=1"


def test_parse_metadata_multiple_requires_and_body() -> None:
    meta = parse_metadata(_metadata("m", "1", "a", "b; extra == 'x'"), "m-1-py3-none-any.whl")
    assert meta.requires_dist == ("a", "b; extra == 'x'")  # not the line in the body
    with pytest.raises(UpstreamError, match="no Name or Version"):
        parse_metadata(b"Summary: nothing\n", "m-1-py3-none-any.whl")


def test_torch_aarch64_cuda_detection(server: PyPIServer, index: PackageIndex) -> None:
    assert index.torch_aarch64_is_cuda("2.9.1") is False
    assert index.torch_aarch64_is_cuda("2.10.0") is False
    assert index.torch_aarch64_is_cuda("2.11.0") is True  # cuda-toolkit / nvidia-*-cu13 for Linux
    assert server.count("/files/torch-2.11.0-cp312-cp312-manylinux_2_28_aarch64.whl.metadata") == 1
    # only the .metadata documents were read, never a torch wheel
    assert all(r.path.endswith(".metadata") for r in server.requests_to("/files/torch"))


def test_torch_aarch64_cuda_none_and_size_fallback(server: PyPIServer, index: PackageIndex) -> None:
    server.add_project("torch", [
        {"filename": "torch-1.0.0-cp312-cp312-manylinux_2_28_x86_64.whl", "size": 900_000_000},
        {"filename": "torch-3.0.0-cp312-cp312-manylinux_2_28_aarch64.whl", "size": 900_000_000},
        {"filename": "torch-3.1.0-cp312-cp312-manylinux_2_28_aarch64.whl", "size": 100_000_000},
        {"filename": "torch-3.2.0-cp312-cp312-manylinux_2_28_aarch64.whl", "size": 100_000_000,
         "metadata": _metadata("torch", "3.2.0", 'nvidia-cudnn-cu13==9; platform_system == "Linux"')},
    ])  # no wheels behind 1.0.0 - 3.1.0: the metadata cannot be read, the size decides
    assert index.torch_aarch64_is_cuda("1.0.0") is None
    assert index.torch_aarch64_is_cuda("3.0.0") is True
    assert index.torch_aarch64_is_cuda("3.1.0") is False
    assert index.torch_aarch64_is_cuda("3.2.0") is True


# -- errors and retries -----------------------------------------------------------------------


def test_404_project_is_not_found_without_retries(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    with pytest.raises(NotFound, match="project 'No_Such_Thing' is not on http://127"):
        index.releases("No_Such_Thing")
    assert server.count("/simple/no-such-thing/") == 1 and sleeps == []
    with pytest.raises(NotFound, match="vllm 0.0.1 is not on"):
        index.release("vllm", "0.0.1")
    with pytest.raises(NotFound, match="not a valid version"):
        index.release("vllm", "latest!")


def test_503_then_200_is_retried_with_growing_waits(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.fail("/simple/vllm/", status=503, times=2)
    assert len(index.releases("vllm")) == 4
    assert [r.status for r in server.requests_to("/simple/vllm/")] == [503, 503, 200]
    assert len(sleeps) == 2 and 0.01 <= sleeps[0] < sleeps[1] <= 0.02 * 1.1


def test_5xx_forever_gives_up(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.fail("/simple/vllm/", status=502, times=100)
    with pytest.raises(UpstreamUnavailable) as err:
        index.releases("vllm")
    assert str(err.value) == (f"{server.index_url}vllm/ answered 502 Bad Gateway after 4 attempts")
    assert server.count("/simple/vllm/") == 4 and len(sleeps) == 3


def test_dropped_connection_is_retried(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.drop("/simple/vllm/", times=1)
    server.drop(f"/files/{SIX}", times=1)
    assert len(index.releases("vllm")) == 4
    assert [r.status for r in server.requests_to("/simple/vllm/")] == [0, 200]
    assert index.wheel_metadata("six", "1.17.0").name == "six"  # also mid range requests
    assert len(sleeps) == 2


def test_429_honours_a_small_retry_after(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.fail("/simple/vllm/", status=429, headers={"Retry-After": "2"})
    assert len(index.releases("vllm")) == 4
    assert sleeps == [2.0]


def test_429_with_a_long_retry_after_fails_at_once(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.fail("/simple/vllm/", status=429, times=5, headers={"Retry-After": "3600"})
    with pytest.raises(UpstreamUnavailable, match=r"rate limiting requests \(429\) and asks to wait 3600 s"):
        index.releases("vllm")
    assert sleeps == [] and server.count("/simple/vllm/") == 1


def test_503_retry_after_is_honoured_too(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.fail("/simple/six/", status=503, headers={"Retry-After": "1"})
    assert index.releases("six")[-1].version == "1.17.0" and sleeps == [1.0]
    server.fail("/simple/torch/", status=503, headers={"Retry-After": "86400"})
    with pytest.raises(UpstreamUnavailable, match=r"is unavailable \(503\) and asks to wait 86400 s"):
        index.releases("torch")


def test_retry_after_forms() -> None:
    assert http.retry_after_seconds("7") == 7.0
    assert http.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert http.retry_after_seconds("soon") is None and http.retry_after_seconds(None) is None


def test_other_4xx_are_not_retried(server: PyPIServer, index: PackageIndex, sleeps: Sleeps) -> None:
    server.fail("/simple/vllm/", status=403, times=5)
    with pytest.raises(UpstreamError, match="403 Forbidden") as err:
        index.releases("vllm")
    assert not isinstance(err.value, UpstreamUnavailable)
    assert sleeps == [] and server.count("/simple/vllm/") == 1


def test_total_wait_is_bounded(server: PyPIServer, sleeps: Sleeps) -> None:
    server.fail("/simple/vllm/", status=503, times=100)
    with PackageIndex(server.index_url, retries=10, backoff=1.0, max_wait=2.5, sleep=sleeps) as ix, \
            pytest.raises(UpstreamUnavailable):
        ix.releases("vllm")
    assert len(sleeps) == 1 and server.count("/simple/vllm/") == 2  # 1 s, then 2 s would pass 2.5 s


def test_unreachable_index_message(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{unused_port()}/simple/"
    with PackageIndex(url, retries=2, backoff=0.001, sleep=sleeps) as ix, \
            pytest.raises(UpstreamUnavailable) as err:
        ix.releases("vllm")
    assert str(err.value) == f"cannot reach {url}vllm/: connection refused"
    assert len(sleeps) == 2


def test_timeout(server: PyPIServer, sleeps: Sleeps) -> None:
    server.stall("/simple/vllm/", seconds=0.5, times=2)
    with PackageIndex(server.index_url, retries=1, timeout=0.1, sleep=sleeps) as ix, \
            pytest.raises(UpstreamUnavailable, match=r"^cannot reach .*/simple/vllm/: timed out"):
        ix.releases("vllm")


def test_upstream_errors_are_factory_work_failures() -> None:
    from factory.core.errors import WorkFailed

    assert issubclass(UpstreamError, WorkFailed) and issubclass(UpstreamUnavailable, UpstreamError)
    assert issubclass(NotInCache, UpstreamError) and issubclass(NotFound, UpstreamError)


def test_offline_without_cache_raises_not_in_cache(server: PyPIServer) -> None:
    with PackageIndex(server.index_url, offline=True) as ix, pytest.raises(NotInCache):
        ix.releases("vllm")
    assert server.count() == 0



def test_standin_wheel_helper_is_a_valid_zip() -> None:
    data = standin_wheel(VLLM_033_ARM, b"Name: vllm\nVersion: 0.33.0\n")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("vllm-0.33.0.dist-info/METADATA").startswith(b"Name: vllm")


# -- the real index (opt in) --------------------------------------------------------------------


@pytest.mark.online
def test_online_vllm_metadata_from_the_real_index(request: pytest.FixtureRequest) -> None:
    if "online" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("talks to the real package index; run with -m online")
    with PackageIndex(retries=2, timeout=30) as ix:
        meta = ix.wheel_metadata("vllm", "0.15.0", platform="linux/arm64")
        assert meta.source_file.endswith("_aarch64.whl")
        assert str(requirement_for(meta, "torch")) == "torch==2.9.1"
        assert ix.has_aarch64_wheel("vllm", "0.15.0")
        assert ix.torch_aarch64_is_cuda("2.9.1") is False
        assert ix.torch_aarch64_is_cuda("2.11.0") is True
        assert ix.stats.bytes_received < 5_000_000


def _sdist(files: dict[str, str]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"vllm-0.17.0/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_sdist_files_reads_requirement_files_checks_the_hash_and_caches(tmp_path: Path) -> None:
    import hashlib

    from factory.adapters.index.cache import Cache

    body = _sdist({"requirements/cuda.txt": "-r common.txt\nray[cgraph]>=2.48\n", "requirements/common.txt": "x\n",
                   "pyproject.toml": "[project]\n", "vllm/__init__.py": "", "requirements/big.bin": "z"})
    good = {"filename": "vllm-0.17.0.tar.gz", "body": body, "hashes": {"sha256": hashlib.sha256(body).hexdigest()}}
    with PyPIServer(fixtures=None) as srv:
        srv.add_project("vllm", [good])
        with PackageIndex(srv.index_url, cache=Cache(tmp_path / "cache")) as index:
            files = index.sdist_files("vllm", "0.17.0")
        assert files == {"requirements/cuda.txt": "-r common.txt\nray[cgraph]>=2.48\n",
                         "requirements/common.txt": "x\n", "requirements/big.bin": "z", "pyproject.toml": "[project]\n"}
        with PackageIndex(srv.index_url, cache=Cache(tmp_path / "cache"), offline=True) as index:
            assert index.sdist_files("vllm", "0.17.0") == files  # from the cache, no request
        srv.add_project("vllm", [{**good, "hashes": {"sha256": "0" * 64}}])  # the index's hash disagrees
        with (PackageIndex(srv.index_url, cache=Cache(tmp_path / "other")) as index,
              pytest.raises(UpstreamError, match="does not match the sha256")):
            index.sdist_files("vllm", "0.17.0")
        srv.add_project("vllm", [{"filename": "vllm-0.17.0-py3-none-any.whl", "body": b"",
                                  "hashes": {"sha256": hashlib.sha256(b"").hexdigest()}}])
        with PackageIndex(srv.index_url, cache=Cache(tmp_path / "none")) as index:
            assert index.sdist_files("vllm", "0.17.0") is None  # a release without an sdist
