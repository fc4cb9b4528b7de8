"""The client of one Python package index (PEP 503 / PEP 691 "simple" API): :class:`PackageIndex`.

Used to check the version matrix against what upstream releases really declare:

* :meth:`PackageIndex.releases` lists a project's releases from its simple page
  (:mod:`factory.adapters.index.pages`);
* :meth:`PackageIndex.wheel_metadata` reads the ``METADATA`` of a wheel suiting a platform -- from the
  PEP 658 ``<wheel>.metadata`` file when the index has one, else with HTTP range requests into the wheel
  (:mod:`factory.adapters.index.remote_zip`). It never uses the legacy JSON API's ``info.requires_dist``,
  which has been seen to disagree with the wheels.

The policy of the on-disk cache (offline, refresh, time to live) lives here; requests go through the HTTP
core (:func:`factory.adapters.http.request`). httpx is imported lazily (only when a request is made), so
importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from factory.adapters.http import (
    Answer,
    ClientOwner,
    InvalidRequestURL,
    KeptFailing,
    NoAnswer,
    RequestFailed,
    RetryPolicy,
    TooLarge,
    TransferStats,
    describe_error,
    new_client,
    redacting_logger,
    request,
)
from factory.adapters.index.errors import BadMetadataHash, NotFound, NotInCache, UpstreamError, UpstreamUnavailable
from factory.adapters.index.metadata import (
    WheelMetadata,
    applicable_requirements,
    is_cuda_requirement,
    parse_metadata,
    target_environment,
)
from factory.adapters.index.pages import (
    ACCEPT,
    DistFile,
    Origins,
    Release,
    group_releases,
    origin_of,
    parse_html_page,
    parse_json_page,
    split_userinfo,
    strip_fragment,
)
from factory.adapters.index.remote_zip import HttpRangeFile, read_member
from factory.adapters.index.wheels import select_wheel
from factory.core.errors import InputError
from factory.core.redact import redact

if TYPE_CHECKING:

    import httpx

    from factory.adapters.index.cache import Cache

__all__ = ["DEFAULT_INDEX_URL", "TORCH_CUDA_WHEEL_MIN_SIZE", "PackageIndex", "TransferStats"]

log = redacting_logger(__name__)

DEFAULT_INDEX_URL = "https://pypi.org/simple/"

_RELEASES_TTL = 6 * 60 * 60
#: A server that ignores Range may send a whole wheel only up to this size ...
MAX_FULL_BODY = 16 * 1024 * 1024
#: ... and reading a wheel's METADATA by range requests may download at most this much in all.
MAX_RANGE_DOWNLOAD = 32 * 1024 * 1024
#: Index pages larger than this are refused (PyPI's torch page is under 1 MB) ...
_MAX_DOCUMENT = 64 * 1024 * 1024
#: ... and so are METADATA documents larger than this.
_MAX_METADATA = 16 * 1024 * 1024
#: Above this size an aarch64 torch wheel is taken to be a CUDA build (CPU ones are ~100 MB).
TORCH_CUDA_WHEEL_MIN_SIZE = 400 * 1000 * 1000
_METADATA_MEMBER = re.compile(r"^[^/]+\.dist-info/METADATA$")


class PackageIndex(ClientOwner):
    """A client for one simple index; use as a context manager (it owns an ``httpx.Client``).

    ``cache``: where answers are kept (None: no caching).  Release lists are kept for
    ``releases_ttl`` seconds, wheel metadata forever.  ``offline``: never touch the network;
    answer from the cache whatever its age, raise :class:`NotInCache` when missing.
    ``refresh``: ignore cached answers but store the fresh ones.  ``retries``: how many
    times a request is repeated after a connection error, a 429 or a 5xx, waiting
    ``backoff * 2**n`` seconds (+ up to 10 % jitter; a 429's ``Retry-After`` when it is at
    most ``max_retry_after``), with at most ``max_wait`` seconds of waiting in all.
    """

    def __init__(self, index_url: str = DEFAULT_INDEX_URL, *, cache: Cache | None = None,
                 offline: bool = False, refresh: bool = False, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.5, max_wait: float = 60.0,
                 max_retry_after: float = 30.0, releases_ttl: float | None = _RELEASES_TTL,
                 sleep: Callable[[float], None] = time.sleep,
                 user_agent: str | None = None) -> None:
        self.policy = RetryPolicy(retries=retries, backoff=backoff, max_wait=max_wait,
                                  max_retry_after=max_retry_after, sleep=sleep)
        #: credentials of the index URL (and of file URLs that carried some), by origin: sent as a Basic
        #: Authorization header to that origin only, never part of a URL, a message or a cache key
        self._origins: Origins = {}
        try:
            urlsplit(index_url).port  # noqa: B018 - raises ValueError for a bad host or port
        except ValueError as exc:
            raise InputError(f"invalid index URL {redact(index_url)!r}: {exc}") from None
        index_url = split_userinfo(index_url, self._origins)
        self.index_url = index_url if index_url.endswith("/") else index_url + "/"
        self.cache = cache
        self.offline = offline
        self.refresh = refresh
        self.timeout = timeout
        self.releases_ttl = releases_ttl
        self.stats = TransferStats()
        self._user_agent = user_agent
        self._files_memo: dict[str, list[DistFile]] = {}

    def __repr__(self) -> str:
        mode = " offline" if self.offline else ""
        return f"<PackageIndex {self.index_url}{mode}>"

    def _new_client(self) -> httpx.Client:
        return new_client(self.timeout, self._user_agent)

    # -- HTTP ------------------------------------------------------------------------------

    def _auth(self, url: str) -> httpx.Auth | None:
        cred = self._origins.get(origin_of(url) or ("", "", 0))
        if cred is None:
            return None
        import httpx

        return httpx.BasicAuth(*cred)

    def _get(self, url: str, *, headers: Mapping[str, str] | None = None,
             max_bytes: int = _MAX_DOCUMENT, what: str = "the index") -> Answer:
        """GET through the HTTP core (retries, a deadline of ``timeout`` seconds per attempt, a size cap of
        ``max_bytes``); 2xx is returned, 404/410 raise NotFound, the rest UpstreamError."""
        if self.offline:
            raise NotInCache(f"offline, and {url} is not in the cache")
        url = split_userinfo(url, self._origins)
        try:
            resp = request(self.client, "GET", url, timeout=self.timeout, policy=self.policy, max_bytes=max_bytes,
                           headers=headers, auth=self._auth(url), stats=self.stats)
        except RequestFailed as failure:
            raise _failed(failure, what, ranged=bool(headers and "Range" in headers)) from None
        if resp.ok:
            return resp
        if resp.status in (404, 410):
            raise NotFound(f"{url} does not exist ({resp.status} {resp.reason})")
        raise UpstreamError(f"{url} answered {resp.status} {resp.reason}")

    # -- cache plumbing ----------------------------------------------------------------------

    def _cached(self, key: str, ttl: float | None, what: str) -> bytes | None:
        """A cached payload, honouring offline/refresh; raises NotInCache when offline."""
        if self.offline:
            entry = self.cache.entry(key) if self.cache is not None else None
            if entry is None:
                raise NotInCache(f"offline, and {what} is not in the cache")
            return entry.data
        if self.refresh or self.cache is None:
            return None
        return self.cache.get(key, ttl)

    def _store(self, key: str, data: bytes) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(key, data)
        except OSError as exc:
            log.warning("cannot write the cache %s: %s", self.cache.directory, exc)

    # -- releases ------------------------------------------------------------------------------

    def project_url(self, project: str) -> str:
        return urljoin(self.index_url, canonicalize_name(project) + "/")

    def files(self, project: str) -> list[DistFile]:
        """Every file the index lists for ``project`` (asked once per client and project)."""
        url = self.project_url(project)
        if url not in self._files_memo:
            self._files_memo[url] = self._load_files(project, url)
        return list(self._files_memo[url])

    def _load_files(self, project: str, url: str) -> list[DistFile]:
        key = f"files:{url}"
        cached = self._cached(key, self.releases_ttl, f"the file list of {project}")
        if cached is not None:
            try:
                return [DistFile.from_json(d) for d in json.loads(cached)]
            except (ValueError, KeyError, TypeError):
                if self.offline:
                    raise NotInCache(f"offline, and the cached file list of {project} is unreadable"
                                     ) from None
        try:
            resp = self._get(url, headers={"Accept": ACCEPT})
        except NotFound:
            raise NotFound(f"project {project!r} is not on {self.index_url} (404)") from None
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype.endswith("json"):
            try:
                doc = json.loads(resp.body)
            except (ValueError, RecursionError) as exc:
                raise UpstreamError(f"{url} sent invalid JSON ({str(exc)[:200]})") from None
            files = parse_json_page(doc, split_userinfo(resp.url), self._origins)
        elif "html" in ctype:
            files = parse_html_page(resp.body.decode("utf-8", errors="replace"), split_userinfo(resp.url),
                                     self._origins)
        else:
            raise UpstreamError(f"{url} sent {ctype or 'no content type'}, not a simple index page")
        self._store(key, json.dumps([f.to_json() for f in files], separators=(",", ":")).encode())
        return files

    def releases(self, project: str) -> list[Release]:
        """The project's releases, oldest first (by ``packaging.version.Version``)."""
        return group_releases(self.files(project))

    def release(self, project: str, version: str) -> Release:
        """One release; :class:`NotFound` when the index has no file of that version."""
        try:
            wanted = Version(version)
        except InvalidVersion:
            raise NotFound(f"{version!r} is not a valid version (of {project})") from None
        for rel in self.releases(project):
            if rel.parsed_version == wanted:
                return rel
        raise NotFound(f"{project} {version} is not on {self.index_url}")

    def has_aarch64_wheel(self, project: str, version: str) -> bool:
        """Whether the release has a ``manylinux*_aarch64`` wheel."""
        return self.release(project, version).has_aarch64_wheel

    def sdist_files(self, project: str, version: str, *, prefixes: tuple[str, ...] = ("requirements/",),
                    names: tuple[str, ...] = ("pyproject.toml",), max_bytes: int = 200 << 20) -> dict[str, str] | None:
        """Text files of the release's sdist whose path (below the sdist's top folder) starts with one of
        ``prefixes`` or equals one of ``names``; None when the release has no sdist. The download must match
        the sha256 the index gives (refused otherwise); the extracted files are cached forever."""
        import io
        import tarfile

        rel = self.release(project, version)
        sdists = [f for f in rel.files if f.filename.endswith(".tar.gz") and not f.yanked]
        if not sdists:
            return None
        sdist = sdists[0]
        key = f"sdist-files:{split_userinfo(strip_fragment(sdist.url))}:{','.join(prefixes + names)}"
        cached = self._cached(key, None, f"the files of {sdist.filename}")
        if cached is not None:
            return dict(json.loads(cached))
        data = self._get(strip_fragment(sdist.url), max_bytes=max_bytes, what="an sdist").body
        want = sdist.digest("sha256")
        if want is None or hashlib.sha256(data).hexdigest() != want:
            raise UpstreamError(f"{sdist.filename} does not match the sha256 the index gives for it: refused")
        out: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar:
                    path = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if member.isfile() and (path in names or path.startswith(prefixes)) and member.size < 1 << 20:
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            out[path] = extracted.read().decode("utf-8", errors="replace")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UpstreamError(f"{sdist.filename} is not a readable .tar.gz: {exc}") from None
        self._store(key, json.dumps(out, sort_keys=True).encode())
        return out

    # -- metadata --------------------------------------------------------------------------------

    def wheel_metadata(self, project: str, version: str, *, platform: str | None = "linux/arm64",
                       python_version: str = "3.12") -> WheelMetadata:
        """The core metadata of the release's wheel best suited to ``platform`` and CPython ``python_version``.

        See :func:`select_wheel` for the choice.  Raises :class:`NotFound` when the release
        has no suitable wheel.
        """
        rel = self.release(project, version)
        wheel = select_wheel(rel.files, platform, python_version=python_version)
        if wheel is None:
            where = f" for {platform}" if platform else ""
            raise NotFound(f"{project} {rel.version} has no wheel{where} on {self.index_url}")
        return self.metadata_of(wheel)

    def metadata_of(self, wheel: DistFile) -> WheelMetadata:
        """The core metadata of one wheel (cached forever: a wheel is immutable).

        When the index advertises the METADATA's hash (PEP 658/714), the bytes must match it -- fetched or
        cached; a mismatch is a :class:`BadMetadataHash` and nothing is cached.
        """
        key = f"metadata:{split_userinfo(strip_fragment(wheel.url))}"
        data = self._cached(key, None, f"the metadata of {wheel.filename}")
        if data is not None and self._metadata_mismatch(wheel, data):
            if self.offline:
                raise BadMetadataHash(f"the cached metadata of {wheel.filename} does not match the hash the "
                                      f"index advertises ({self._metadata_mismatch(wheel, data)}); refresh it "
                                      "online")
            data = None
        if data is None:
            data = self._fetch_metadata(wheel)
            self._store(key, data)
        meta = parse_metadata(data, wheel.filename)
        if canonicalize_name(meta.name) != canonicalize_name(wheel.filename.split("-", 1)[0]):
            raise UpstreamError(f"the metadata of {wheel.filename} names another project ({meta.name})")
        return meta

    def _fetch_metadata(self, wheel: DistFile) -> bytes:
        # PEP 658: try <url>.metadata -- also when the page does not advertise it, since some
        # mirrors serve it without saying so; a 404 sends us to the range path.
        try:
            resp = self._get(wheel.metadata_url, max_bytes=_MAX_METADATA, what="a METADATA file")
        except (UpstreamUnavailable, NotInCache):
            raise
        except UpstreamError as exc:  # 404, or e.g. a 403 from a bucket-backed mirror
            if wheel.core_metadata:
                log.info("%s is advertised but unusable (%s); reading the wheel instead",
                         wheel.metadata_url, exc)
        else:
            mismatch = self._metadata_mismatch(wheel, resp.body)
            if mismatch:
                raise BadMetadataHash(f"{wheel.metadata_url} does not match the hash the index advertises for "
                                      f"it ({mismatch}): refusing to use it")
            return resp.body
        data = self._metadata_by_range(wheel)
        mismatch = self._metadata_mismatch(wheel, data)
        if mismatch:  # PEP 658: the .metadata file is the wheel's METADATA, byte for byte
            raise BadMetadataHash(f"the METADATA in {strip_fragment(wheel.url)} does not match the hash the "
                                  f"index advertises for it ({mismatch}): refusing to use it")
        return data

    @staticmethod
    def _metadata_mismatch(wheel: DistFile, data: bytes) -> str:
        """'' when ``data`` matches the METADATA hash the index advertises (or it advertises none this client
        can compute), else ``algorithm expected ..., got ...``."""
        for algo, digest in wheel.metadata_hashes:
            if algo.lower() in hashlib.algorithms_guaranteed:
                got = hashlib.new(algo.lower(), data).hexdigest()
                if got == digest.strip().lower():
                    return ""
                return f"{algo.lower()} advertised {digest[:64]}, got {got}"
        return ""

    def _metadata_by_range(self, wheel: DistFile) -> bytes:
        """The wheel's ``<name>-<version>.dist-info/METADATA`` (else any ``*.dist-info/METADATA``), read with
        zipfile over range requests."""
        url = strip_fragment(wheel.url)
        name, _, rest = wheel.filename.partition("-")
        dist_info = f"{name}-{rest.split('-')[0]}.dist-info/METADATA".lower() if wheel.is_wheel else None

        def pick(names: list[str]) -> str | None:
            candidates = [n for n in names if _METADATA_MEMBER.match(n)]
            exact = [n for n in candidates if n.lower() == dist_info]
            return (exact or candidates)[0] if candidates else None

        def get(spec: str) -> Answer:
            return self._get(url, headers={"Range": f"bytes={spec}", "Accept-Encoding": "identity"},
                             max_bytes=MAX_FULL_BODY, what="a wheel")

        try:
            remote = HttpRangeFile(url, get, max_download=MAX_RANGE_DOWNLOAD)
            _name, data = read_member(remote, pick, max_size=_MAX_METADATA, what="*.dist-info/METADATA")
        except NotFound:
            raise NotFound(f"{url} does not exist (404)") from None
        return data

    # -- torch -------------------------------------------------------------------------------------

    def torch_aarch64_is_cuda(self, version: str) -> bool | None:
        """Whether PyPI's aarch64 torch wheel of ``version`` is a CUDA build.

        True when its metadata, evaluated for Linux aarch64 / CPython 3.12, requires NVIDIA
        CUDA runtime packages (``nvidia-*``, ``cuda-toolkit``); failing metadata, when the
        wheel is large (> 400 MB; CPU-only aarch64 wheels are ~100 MB).  None when the
        release has no aarch64 wheel.
        """
        rel = self.release("torch", version)
        wheel = select_wheel([f for f in rel.files if f.is_aarch64_linux], "linux/arm64")
        if wheel is None:
            return None
        big = wheel.size is not None and wheel.size > TORCH_CUDA_WHEEL_MIN_SIZE
        try:
            meta = self.metadata_of(wheel)
        except (BadMetadataHash, NotInCache, UpstreamUnavailable):
            raise
        except UpstreamError as exc:
            if wheel.size is None:
                raise
            log.info("no metadata for %s (%s); judging by its size", wheel.filename, exc)
            return big
        if any(is_cuda_requirement(r) for r in applicable_requirements(meta, target_environment("aarch64"))):
            return True
        return big


def _failed(failure: RequestFailed, what: str, *, ranged: bool = False) -> UpstreamError:
    """The index's sentence for a request that got no usable answer."""
    url = failure.url
    if isinstance(failure, InvalidRequestURL):
        import httpx

        reason = describe_error(failure.cause) if isinstance(failure.cause, httpx.UnsupportedProtocol) \
            else str(failure.cause)
        return UpstreamError(f"cannot fetch {url}: {reason}")
    if isinstance(failure, NoAnswer):
        return UpstreamUnavailable(f"cannot reach {url}: {failure.detail}")
    if isinstance(failure, KeptFailing):
        answer = failure.answer
        if failure.wait_asked is not None:
            doing = "is rate limiting requests" if answer.status == 429 else "is unavailable"
            return UpstreamUnavailable(f"{url} {doing} ({answer.status}) and asks to wait {failure.wait_asked:.0f} s")
        return UpstreamUnavailable(f"{url} answered {answer.status} {answer.reason} after {failure.attempts} "
                                   "attempts")
    if isinstance(failure, TooLarge):
        ignored = " (it ignores Range requests)" if ranged and failure.status == 200 else ""
        if failure.declared is not None:
            return UpstreamError(f"{url} is {failure.declared} bytes{ignored}, more than the {failure.limit} "
                                 f"accepted for {what}")
        return UpstreamError(f"{url} sent more than the {failure.limit} bytes accepted for {what}{ignored}")
    return UpstreamError(f"cannot fetch {url}: {failure}")
