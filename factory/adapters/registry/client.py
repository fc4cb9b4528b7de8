"""The OCI distribution API client (``/v2/``): :class:`RegistryClient`, enough to answer "what does this tag
hold?" for the factory, and to publish:

* :meth:`RegistryClient.manifest` resolves a reference to one platform's image manifest, walking an OCI
  index / Docker manifest list and skipping attestation manifests;
* :meth:`RegistryClient.config` and :meth:`RegistryClient.labels` read the image config blob (checking its
  digest) and the labels in it;
* :meth:`RegistryClient.exists` asks, with a ``HEAD``, whether a tag is published and which digest it
  points at; :meth:`RegistryClient.tag` points a tag at a manifest;
* :meth:`RegistryClient.attach` pushes an artifact (an SBOM) as an OCI 1.1 referrer of an image, and
  :meth:`RegistryClient.referrers` / :meth:`RegistryClient.fetch_artifact` read it back -- through the
  referrers API where the registry has it, else through the referrers tag schema (the tag
  ``sha256-<hex>`` holding an index of the referrers).

Authentication is :mod:`factory.adapters.registry.auth`; credentials come from the Docker config by default
(:mod:`factory.adapters.registry.credentials`). Requests go through the HTTP core
(:func:`factory.adapters.http.request`).

Plain HTTP is spoken only to loopback registries (127.0.0.0/8, ::1, localhost) unless the client is built
with ``allow_http=True``; everything else is HTTPS with the certificate verified. httpx is imported lazily,
so importing this module stays cheap.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from factory.adapters.http import (
    Answer,
    ClientOwner,
    InvalidRequestURL,
    KeptFailing,
    NoAnswer,
    RequestFailed,
    RetryPolicy,
    TooLarge,
    host_port,
    new_client,
    request,
)
from factory.adapters.registry.auth import Authenticator, parse_challenges
from factory.adapters.registry.documents import (
    ACCEPT,
    CREATED,
    DEFAULT_PLATFORM,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_SIZE,
    MEDIA_TYPE,
    OCI_EMPTY,
    OCI_EMPTY_DATA,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
    Descriptor,
    ImageConfig,
    ResolvedManifest,
    compute_digest,
    error_detail,
    json_object,
    kind,
    load_json,
    next_link,
    parse_index,
    parse_manifest,
    parse_platform,
    referrer_entries,
    remote_digest,
    string_field,
)
from factory.adapters.registry.errors import (
    BadDigest,
    InvalidArtifact,
    InvalidReference,
    MalformedDocument,
    NotFound,
    PlainHTTPRefused,
    PlatformNotFound,
    RegistryError,
    RegistryUnavailable,
    RegistryUnreachable,
)
from factory.adapters.registry.reference import DIGEST, Reference, as_reference, check_digest, is_loopback

if TYPE_CHECKING:

    import httpx

    from factory.adapters.registry.credentials import CredentialProvider

__all__ = ["DOCKER_CONFIG", "RegistryClient"]

#: Manifests are limited to 4 MiB by the reference registry; configs are small JSON too.
_MAX_MANIFEST = 4 * 1024 * 1024
#: Also the cap on an artifact (an SBOM) read back by :meth:`RegistryClient.fetch_artifact`.
_MAX_CONFIG = 32 * 1024 * 1024
#: Pages of a referrers list followed at most (the API may paginate with ``Link: <...>; rel="next"``).
_MAX_PAGES = 100


class _Default(enum.Enum):
    DOCKER_CONFIG = "docker-config"


#: The default ``credentials`` of :class:`RegistryClient`: read them from the Docker config.
DOCKER_CONFIG: Literal[_Default.DOCKER_CONFIG] = _Default.DOCKER_CONFIG


# ---------------------------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------------------------


class RegistryClient(ClientOwner):
    """An OCI distribution API client; use as a context manager (it owns an ``httpx.Client``). It reads; it
    writes only through :meth:`tag`, :meth:`push_blob` and :meth:`attach`, which need push access.

    ``credentials``: a callable ``registry host -> Credential | None``; by default the Docker
    config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, with credential
    helpers); ``None`` for anonymous access only.

    Plain HTTP: loopback registries (127.0.0.0/8, ::1, localhost) are always reached over
    plain HTTP.  Any other host is HTTPS with a verified certificate unless ``allow_http``
    is set: then the hosts named in ``insecure_hosts`` (``host`` or ``host:port``) are
    reached over plain HTTP -- or every host when ``insecure_hosts`` is not given.  Naming
    a non-loopback host in ``insecure_hosts`` without ``allow_http`` raises
    :class:`PlainHTTPRefused`, and so does any request (a token realm, a redirect) that
    would go over plain HTTP to a host not allowed.

    ``retries``: how many times a request is repeated after a connection error, a 429 or a
    5xx, waiting ``backoff * 2**n`` seconds (or what a ``Retry-After`` asks, up to ``max_retry_after``).
    Tokens, credentials and verified config blobs are cached for the client's life.
    """

    def __init__(self, *, credentials: CredentialProvider | None | Literal[_Default.DOCKER_CONFIG] = DOCKER_CONFIG,
                 insecure_hosts: Iterable[str] | None = None, allow_http: bool = False,
                 timeout: float = 30.0, retries: int = 2, backoff: float = 0.5,
                 max_retry_after: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 user_agent: str | None = None) -> None:
        self.policy = RetryPolicy(retries=retries, backoff=backoff, max_retry_after=max_retry_after, sleep=sleep)
        if credentials is DOCKER_CONFIG:
            from factory.adapters.registry.credentials import docker_credentials

            credentials = docker_credentials
        self._authenticator = Authenticator(credentials, self._exchange)
        self.allow_http = allow_http
        self.insecure_hosts: frozenset[str] | None = (
            None if insecure_hosts is None else frozenset(h.strip().lower() for h in insecure_hosts))
        if self.insecure_hosts and not allow_http:
            remote = sorted(h for h in self.insecure_hosts if not is_loopback(h))
            if remote:
                raise PlainHTTPRefused(
                    f"plain HTTP to {', '.join(remote)} refused: only loopback registries are reached without TLS "
                    "unless allow_http is set")
        self.timeout = timeout
        self._user_agent = user_agent
        self._blobs: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        mode = " allow_http" if self.allow_http else ""
        return f"<RegistryClient{mode}>"

    def _new_client(self) -> httpx.Client:
        return new_client(
            self.timeout, self._user_agent,
            event_hooks={"request": [self._guard]},
            # like Go's ProxyFromEnvironment (so Docker), never send loopback traffic to a proxy
            mounts={"all://localhost": None, "all://127.0.0.1": None, "all://[::1]": None},
        )

    # -- transport policy ------------------------------------------------------------------

    def plain_http(self, host: str) -> bool:
        """Whether ``host`` (``host[:port]``) is reached over plain HTTP."""
        if is_loopback(host):
            return True
        if not self.allow_http:
            return False
        if self.insecure_hosts is None:
            return True
        host = host.lower()
        return host in self.insecure_hosts or host.rsplit(":", 1)[0] in self.insecure_hosts

    def base_url(self, registry: str) -> str:
        """``http://registry`` or ``https://registry``."""
        return f"{'http' if self.plain_http(registry) else 'https'}://{registry}"

    def _guard(self, request: httpx.Request) -> None:
        """Request hook: no plain HTTP to a host it is not allowed for (realms and redirects included)."""
        url = request.url
        if url.scheme == "http":
            netloc = url.netloc.decode("ascii", "replace")
            if not self.plain_http(netloc):
                raise PlainHTTPRefused(
                    f"plain HTTP to {host_port(url)} refused ({request.method} {url.copy_with(query=None)}): "
                    "only loopback registries are reached without TLS unless allow_http is set")

    # -- HTTP --------------------------------------------------------------------------------

    def _exchange(self, method: str, url: str | httpx.URL, *, target: str,
                  headers: Mapping[str, str] | None = None, data: Mapping[str, str] | None = None,
                  content: bytes | None = None, max_bytes: int = _MAX_MANIFEST) -> Answer:
        """One request through the HTTP core (retries on connection errors, 429 and 5xx; a deadline of
        ``timeout`` seconds per attempt; a cap of ``max_bytes`` on a 2xx body); other answers are returned,
        what got none is the registry's error naming ``target``."""
        try:
            return request(self.client, method, url, timeout=self.timeout, policy=self.policy, max_bytes=max_bytes,
                           headers=headers, content=content, data=data)
        except RequestFailed as failure:
            raise _failed(failure, target) from None

    # -- authentication ----------------------------------------------------------------------

    def _authorized(self, method: str, ref: Reference, path: str, *, headers: Mapping[str, str],
                    max_bytes: int = _MAX_MANIFEST, content: bytes | None = None,
                    actions: str = "pull", url: str | None = None) -> Answer:
        """A request to the registry, answering its authentication challenge if it makes one.

        ``actions``: what the request needs to do in the repository (``pull``, or ``pull,push`` to write).
        ``url``: a URL the registry handed out (an upload location, a next page) instead of ``/v2/<name>/<path>``;
        it must be on the registry itself (:meth:`_same_origin`), since the registry's credentials go with it.
        """
        auth = self._authenticator
        url = url or f"{self.base_url(ref.registry)}/v2/{ref.repository}/{path}"
        target = f"registry {ref.registry}"
        scope = f"repository:{ref.repository}:{actions}"
        cached = auth.cached(ref.registry, scope)
        resp = self._exchange(method, url, target=target, max_bytes=max_bytes, content=content,
                              headers={**headers, "Authorization": cached[0]} if cached else headers)
        if resp.status != 401:
            if resp.status == 403:
                who = cached[1] if cached else auth.unauthenticated(ref.registry)
                raise auth.denied(ref, resp, who, actions=actions)
            return resp
        if cached:  # expired or revoked: start again from the challenge
            auth.expire(ref.registry, scope)
        challenges = dict(reversed(parse_challenges(resp.headers.get_list("www-authenticate"))))
        authorization, who = auth.answer(ref, scope, challenges)
        resp = self._exchange(method, url, target=target, max_bytes=max_bytes, content=content,
                              headers={**headers, "Authorization": authorization})
        if resp.status in (401, 403):
            auth.drop(ref.registry, scope)
            rejected = resp.status == 401 and "basic" in challenges and "bearer" not in challenges
            raise auth.denied(ref, resp, who, rejected=rejected, actions=actions)
        return resp

    # -- API ---------------------------------------------------------------------------------

    def _get_manifest(self, ref: Reference) -> tuple[bytes, str, str, dict[str, Any]]:
        """(body, media type, digest, document) of the manifest ``ref`` names, its digest checked."""
        resp = self._authorized("GET", ref, f"manifests/{ref.reference}", headers={"Accept": ACCEPT})
        if resp.status == 404:
            raise NotFound(f"{ref} not found in registry")
        if not 200 <= resp.status < 300:
            detail = error_detail(resp.body)
            raise RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} for the manifest "
                                f"of {ref}" + (f" ({detail})" if detail else ""))
        body = resp.body
        if ref.digest:
            algorithm = ref.digest.split(":", 1)[0]
            got = compute_digest(algorithm, body)
            if got != ref.digest:
                raise BadDigest(f"registry {ref.registry} sent a manifest for {ref} whose digest is {got}: "
                                "content does not match the digest asked for")
            digest = ref.digest
        else:
            digest = compute_digest("sha256", body)
            claimed = resp.headers.get("docker-content-digest", "")
            if claimed.startswith("sha256:") and claimed != digest:
                raise BadDigest(f"registry {ref.registry} sent a manifest for {ref} whose digest is {digest}, "
                                f"not the {claimed} it claims")
        what = f"the manifest of {ref} from registry {ref.registry}"
        doc = json_object(load_json(body, what), what)
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        media_type = string_field(doc, "mediaType", what) or content_type
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            if media_type in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
                raise RegistryError(f"{ref} has a Docker schema 1 manifest, which is not supported")
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else media_type
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            raise RegistryError(f"{ref} has a manifest of unsupported media type {media_type[:100]!r}")
        return body, media_type, digest, doc

    def _fetch_blob(self, ref: Reference, digest: str, size: int | None, what: str) -> bytes:
        remote_digest(digest, f"the {what} descriptor of {ref}")
        if size is not None and size > _MAX_CONFIG:
            raise RegistryError(f"the {what} {digest} of {ref} is {size} bytes, more than the {_MAX_CONFIG} "
                                "accepted")
        resp = self._authorized("GET", ref, f"blobs/{digest}", headers={}, max_bytes=_MAX_CONFIG)
        if resp.status == 404:
            raise NotFound(f"{what} {digest} of {ref} not found in registry")
        if not 200 <= resp.status < 300:
            detail = error_detail(resp.body)
            raise RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} for the {what} "
                                f"{digest} of {ref}" + (f" ({detail})" if detail else ""))
        got = compute_digest(digest.split(":", 1)[0], resp.body)
        if got != digest:
            raise BadDigest(f"the {what} of {ref} from registry {ref.registry} hashes to {got}, not {digest}: "
                            "it was altered or corrupted")
        if size is not None and len(resp.body) != size:
            raise BadDigest(f"the {what} {digest} of {ref} is {len(resp.body)} bytes, not the {size} its "
                            "manifest declares")
        return resp.body

    def _config_document(self, ref: Reference, digest: str, size: int | None) -> dict[str, Any]:
        if digest not in self._blobs:
            body = self._fetch_blob(ref, digest, size, "image config")
            what = f"the image config {digest} of {ref}"
            doc = json_object(load_json(body, what), what)
            ImageConfig.parse(doc, what)  # its shape is checked once, before it is kept
            self._blobs[digest] = doc
        return self._blobs[digest]

    def manifest(self, ref: Reference | str, platform: str | None = DEFAULT_PLATFORM) -> ResolvedManifest:
        """Resolve ``ref`` to the image manifest for ``platform`` (``os/arch[/variant]``).

        An index or manifest list is walked for the entry matching the platform (arm64's
        ``v8`` variant is optional), skipping attestation manifests; a single-platform
        image must match the platform too.  ``platform=None`` accepts any platform when
        there is only one.  A document of the wrong shape is a :class:`MalformedDocument`.
        """
        ref = as_reference(ref)
        want = parse_platform(platform) if platform else None
        body, media_type, digest, doc = self._get_manifest(ref)
        index_digest = None
        chosen_platform: str | None = None
        if media_type in INDEX_TYPES:
            entry = self._pick(ref, parse_index(doc, f"the index of {ref}"), want, platform)
            index_digest = digest
            chosen_platform = entry.platform_text
            if entry.media_type in INDEX_TYPES:
                raise RegistryError(f"{ref} holds a nested index for {chosen_platform}, which is not supported")
            body, media_type, digest, doc = self._get_manifest(ref.with_digest(entry.digest))
            if media_type not in MANIFEST_TYPES:
                raise RegistryError(f"the {chosen_platform} entry of {ref} is a {media_type}, not an image manifest")
        config = parse_manifest(doc, f"the manifest {digest} of {ref}")
        if chosen_platform is None:
            what = f"the image config {config.digest} of {ref}"
            cfg = ImageConfig.parse(self._config_document(ref, config.digest, config.size), what)
            chosen_platform = str(cfg.platform)
            if want is not None and cfg.platform.normalized != want:
                raise PlatformNotFound(f"{ref} is a single-platform image for {chosen_platform}, not {platform}")
        return ResolvedManifest(digest=digest, media_type=media_type, config_digest=config.digest,
                                platform=chosen_platform, index_digest=index_digest, config_size=config.size,
                                reference=ref, document=doc)

    @staticmethod
    def _pick(ref: Reference, entries: list[Descriptor], want: tuple[str, str, str] | None,
              platform: str | None) -> Descriptor:
        candidates = [e for e in entries if not e.is_attestation]
        available = ", ".join(e.platform_text for e in candidates) or "none"
        if want is None:
            if len(candidates) == 1:
                return candidates[0]
            raise PlatformNotFound(f"{ref} is a multi-platform image; name a platform (available: {available})")
        for entry in candidates:
            if entry.platform is not None and entry.platform.normalized == want:
                return entry
        raise PlatformNotFound(f"{ref} has no manifest for {platform}; platforms available: {available}")

    def config(self, ref: Reference | str, platform: str | None = DEFAULT_PLATFORM) -> dict[str, Any]:
        """The image config (JSON) of ``ref`` for ``platform``, its digest, size and shape checked."""
        ref = as_reference(ref)
        resolved = self.manifest(ref, platform)
        return self._config_document(ref, resolved.config_digest, resolved.config_size)

    def labels(self, ref: Reference | str, platform: str | None = DEFAULT_PLATFORM) -> dict[str, str]:
        """The image's labels (``config.Labels``), ``{}`` when it has none."""
        ref = as_reference(ref)
        resolved = self.manifest(ref, platform)
        doc = self._config_document(ref, resolved.config_digest, resolved.config_size)
        return ImageConfig.parse(doc, f"the image config {resolved.config_digest} of {ref}").labels

    def exists(self, ref: Reference | str) -> str | None:
        """The digest ``ref`` points at (the index's, for a multi-platform tag), or ``None`` when not found.

        Uses ``HEAD`` (which registries do not count against pull rate limits) and falls
        back to ``GET`` when the answer carries no ``Docker-Content-Digest``.  Access
        denied is an error, not ``None``.
        """
        ref = as_reference(ref)
        resp = self._authorized("HEAD", ref, f"manifests/{ref.reference}", headers={"Accept": ACCEPT})
        if resp.status == 404:
            return None
        if not 200 <= resp.status < 300:
            raise RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} to HEAD for {ref}")
        claimed: str = resp.headers.get("docker-content-digest", "")
        if claimed and DIGEST.fullmatch(claimed):
            if ref.digest and claimed != ref.digest:
                raise BadDigest(f"registry {ref.registry} says {ref} has digest {claimed}")
            return claimed
        try:
            _, _, digest, _ = self._get_manifest(ref)
        except NotFound:
            return None
        return digest

    # -- writing -------------------------------------------------------------------------------

    def tag(self, source: Reference | str, target: Reference | str) -> str:
        """Point the tag ``target`` at the manifest ``source`` names, through the registry API: the manifest
        (an index or an image manifest) is read by ``source``, its digest checked, and PUT under the target tag,
        so nothing is pulled or pushed and the target names exactly the source's digest. Both must be in the
        same repository (its blobs are already there). Returns the digest. Needs push access.
        """
        src, dst = as_reference(source), as_reference(target)
        if (src.registry, src.repository) != (dst.registry, dst.repository):
            raise RegistryError(f"cannot tag {src} as {dst} in the registry: only within one repository")
        if dst.digest or not dst.tag:
            raise InvalidReference(f"cannot tag {src} as {dst}: the target must be a tag, not a digest")
        body, media_type, digest, _ = self._get_manifest(src)
        resp = self._authorized("PUT", dst, f"manifests/{dst.tag}", headers={"Content-Type": media_type},
                                content=body, actions="pull,push")
        if resp.status not in (200, 201, 202):
            detail = error_detail(resp.body)
            raise RegistryError(f"registry {dst.registry} answered {resp.status} {resp.reason} to tagging {dst} "
                                f"as {digest}" + (f" ({detail})" if detail else ""))
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and claimed != digest:
            raise BadDigest(f"registry {dst.registry} stored {dst} as {claimed}, not the {digest} sent")
        return digest

    # -- artifacts: OCI 1.1 referrers --------------------------------------------------------------

    def _same_origin(self, ref: Reference, location: str, what: str) -> str:
        """``location`` (absolute, or relative to the registry) as an absolute URL on the registry itself. The
        registry's credentials go with a request to it, so a URL on any other host is refused, never followed."""
        import httpx

        base = httpx.URL(self.base_url(ref.registry) + "/")
        try:
            url = base.join(location)
        except httpx.InvalidURL:
            raise RegistryError(f"registry {ref.registry} sent an invalid {what} {location[:200]!r}") from None
        if url.scheme != base.scheme or host_port(url) != host_port(base):
            raise RegistryError(f"registry {ref.registry} sent a {what} on another host ({url.scheme}://"
                                f"{host_port(url)}), which is not followed: the registry's credentials would go "
                                "with it")
        return str(url)

    def descriptor(self, ref: Reference | str) -> dict[str, Any]:
        """The OCI descriptor (``mediaType``, ``digest``, ``size``) of the manifest or index ``ref`` names, its
        digest checked: the ``subject`` of an artifact to :meth:`attach` to it."""
        ref = as_reference(ref)
        body, media_type, digest, _ = self._get_manifest(ref)
        return {"mediaType": media_type, "digest": digest, "size": len(body)}

    def push_blob(self, ref: Reference | str, data: bytes) -> str:
        """Upload ``data`` as a blob of ``ref``'s repository (its tag or digest is not used) and return its digest.

        A monolithic upload: ``POST /blobs/uploads/`` for a location, then one ``PUT <location>?digest=``
        with the whole blob; skipped when a ``HEAD`` says the registry holds the blob already. Needs push access.
        """
        ref = as_reference(ref)
        if not isinstance(data, bytes | bytearray):
            raise InvalidArtifact(f"cannot push {kind(data)} to {ref.name} as a blob: bytes are needed")
        data = bytes(data)
        digest = compute_digest("sha256", data)
        head = self._authorized("HEAD", ref, f"blobs/{digest}", headers={}, actions="pull,push")
        if 200 <= head.status < 300:
            return digest
        if head.status != 404:
            raise _answered(ref, head, f"HEAD for the blob {digest} of {ref.name}")
        start = self._authorized("POST", ref, "blobs/uploads/", headers={}, content=b"", actions="pull,push")
        if start.status != 202:
            raise _answered(ref, start, f"starting the upload of the blob {digest} to {ref.name}")
        location = start.headers.get("location", "")
        if not location:
            raise RegistryError(f"registry {ref.registry} started the upload of the blob {digest} to {ref.name} "
                                "without a Location to send it to")
        import httpx

        url = httpx.URL(self._same_origin(ref, location, "blob upload location")).copy_merge_params(
            {"digest": digest})
        resp = self._authorized("PUT", ref, "", headers={"Content-Type": "application/octet-stream"}, content=data,
                                actions="pull,push", url=str(url))
        if resp.status not in (201, 204):
            raise _answered(ref, resp, f"the upload of the blob {digest} ({len(data)} bytes) to {ref.name}")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and claimed != digest:
            raise BadDigest(f"registry {ref.registry} stored the blob {digest} of {ref.name} as {claimed}")
        return digest

    def attach(self, ref: Reference | str, subject_digest: str, subject_media_type: str, subject_size: int,
               artifact_type: str, data: bytes, annotations: Mapping[str, str]) -> str:
        """Attach ``data`` (an SBOM, a signature) to the manifest ``subject_digest`` of ``ref``'s repository as an
        OCI 1.1 artifact, so it travels with the image without being a layer of it. Returns the digest of the
        artifact's manifest.

        Pushes the empty config and ``data`` as blobs, then an image manifest with ``artifactType``, one layer
        of that media type and ``subject`` (the image's descriptor, see :meth:`descriptor`), by digest. A
        registry with the referrers API says so with ``OCI-Subject`` and lists the artifact itself; for any
        other, the artifact is added to the index under the tag ``sha256-<hex of the subject>`` (the referrers
        tag schema), which :meth:`referrers` reads. That tag is read, extended and written back without a lock:
        two clients attaching to one image at the same moment may lose one entry (attach again). ``annotations``
        get ``org.opencontainers.image.created`` (now, UTC) unless they carry it. Needs push access.
        """
        ref = as_reference(ref)
        what = f"the artifact for {ref.name}"
        try:
            check_digest(subject_digest, "the subject")
        except InvalidReference as error:
            raise InvalidArtifact(f"cannot attach {what}: {error}") from None
        if subject_media_type not in INDEX_TYPES | MANIFEST_TYPES:
            raise InvalidArtifact(f"cannot attach {what}: the subject's media type {subject_media_type!r} is not "
                                  "an image manifest or index")
        if isinstance(subject_size, bool) or not isinstance(subject_size, int) or not 0 < subject_size <= MAX_SIZE:
            raise InvalidArtifact(f"cannot attach {what}: the subject's size {subject_size!r} is not a positive "
                                  "number of bytes")
        if not isinstance(artifact_type, str) or not MEDIA_TYPE.fullmatch(artifact_type):
            raise InvalidArtifact(f"cannot attach {what}: artifact type {artifact_type!r} is not a media type "
                                  "(type/subtype, e.g. application/vnd.cyclonedx+json)")
        if not isinstance(data, bytes | bytearray) or len(data) > _MAX_CONFIG:
            raise InvalidArtifact(f"cannot attach {what}: its data must be bytes, at most {_MAX_CONFIG} (what "
                                  "fetch_artifact reads back)")
        if not isinstance(annotations, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in annotations.items()):
            raise InvalidArtifact(f"cannot attach {what}: annotations must map strings to strings")
        notes = {CREATED: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **annotations}
        empty = {"mediaType": OCI_EMPTY, "digest": self.push_blob(ref, OCI_EMPTY_DATA), "size": len(OCI_EMPTY_DATA)}
        layer = {"mediaType": artifact_type, "digest": self.push_blob(ref, data), "size": len(data)}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type, "config": empty,
                    "layers": [layer], "annotations": notes,
                    "subject": {"mediaType": subject_media_type, "digest": subject_digest, "size": subject_size}}
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = compute_digest("sha256", body)
        resp = self._authorized("PUT", ref, f"manifests/{digest}", headers={"Content-Type": OCI_MANIFEST},
                                content=body, actions="pull,push")
        if resp.status not in (200, 201, 202):
            raise _answered(ref, resp, f"pushing the {artifact_type} artifact manifest {digest} of "
                                       f"{ref.name}@{subject_digest}")
        claimed = resp.headers.get("docker-content-digest", "")
        if claimed and claimed != digest:
            raise BadDigest(f"registry {ref.registry} stored the artifact manifest {digest} of {ref.name} as "
                            f"{claimed}")
        if resp.headers.get("oci-subject", "") != subject_digest:  # no referrers API: the tag schema
            self._add_referrer(ref, subject_digest, {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                                                     "artifactType": artifact_type, "annotations": notes})
        return digest

    def _add_referrer(self, ref: Reference, subject_digest: str, entry: dict[str, Any]) -> None:
        """Add ``entry`` to the referrers index under the tag of ``subject_digest`` (created when missing, or
        when the tag holds anything but an OCI index); an entry already there is not added twice."""
        tag = _referrers_tag(ref, subject_digest)
        try:
            _, media_type, _, doc = self._get_manifest(tag)
        except NotFound:
            media_type, doc = "", {}
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if media_type == OCI_INDEX:
            parse_index(doc, f"the referrers index {tag}")
            index = {**doc, "mediaType": OCI_INDEX}
        if any(isinstance(e, dict) and e.get("digest") == entry["digest"] for e in index["manifests"]):
            return
        index["manifests"] = [*index["manifests"], entry]
        body = json.dumps(index, separators=(",", ":")).encode()
        resp = self._authorized("PUT", tag, f"manifests/{tag.tag}", headers={"Content-Type": OCI_INDEX},
                                content=body, actions="pull,push")
        if resp.status not in (200, 201, 202):
            raise _answered(tag, resp, f"updating the referrers index {tag}")

    def referrers(self, ref: Reference | str, subject_digest: str,
                  artifact_type: str | None = None) -> list[dict[str, Any]]:
        """The descriptors (``mediaType``, ``digest``, ``size``, ``artifactType``, ``annotations``) of the artifacts
        attached to ``subject_digest`` in ``ref``'s repository, those of ``artifact_type`` only when it is given.

        Asks the referrers API (``GET /v2/<name>/referrers/<digest>``, following ``Link`` pages); a registry
        that answers 400, 404 or 405, or something other than an OCI index, has none, and the index under the
        tag ``sha256-<hex>`` is read instead (none there: ``[]``).
        """
        ref = as_reference(ref)
        try:
            check_digest(subject_digest, "the subject")
        except InvalidReference as error:
            raise InvalidArtifact(f"cannot list the referrers in {ref.name}: {error}") from None
        entries = self._referrers_api(ref, subject_digest)
        if entries is None:
            tag = _referrers_tag(ref, subject_digest)
            try:
                _, media_type, _, doc = self._get_manifest(tag)
            except NotFound:
                return []
            entries = referrer_entries(doc, f"the referrers index {tag}") if media_type == OCI_INDEX else []
        out, seen = [], set()
        for entry in entries:
            if entry["digest"] not in seen and artifact_type in (None, entry.get("artifactType")):
                seen.add(entry["digest"])
                out.append(entry)
        return out

    def _referrers_api(self, ref: Reference, subject_digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's list, or None when the registry has no such API."""
        entries: list[dict[str, Any]] = []
        url = None
        for page in range(_MAX_PAGES):
            resp = self._authorized("GET", ref, f"referrers/{subject_digest}", headers={"Accept": OCI_INDEX},
                                    url=url)
            if page == 0 and resp.status in (400, 404, 405):
                return None
            if not 200 <= resp.status < 300:
                raise _answered(ref, resp, f"the referrers of {ref.name}@{subject_digest}")
            what = f"the referrers of {ref.name}@{subject_digest} from registry {ref.registry}"
            try:
                doc = json.loads(resp.body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                doc = None
            content_type = resp.headers.get("content-type", "").split(";")[0].strip()
            if not isinstance(doc, dict) or (doc.get("mediaType") or content_type) != OCI_INDEX:
                if page == 0:
                    return None
                raise MalformedDocument(f"{what} (page {page + 1}) is not an OCI index")
            entries += referrer_entries(doc, what)
            link = next_link(resp.headers.get_list("link"))
            if not link:
                return entries
            url = self._same_origin(ref, link, "next page of referrers")
        raise RegistryError(f"registry {ref.registry} lists the referrers of {ref.name}@{subject_digest} on more "
                            f"than {_MAX_PAGES} pages")

    def fetch_artifact(self, ref: Reference | str, manifest_digest: str) -> bytes:
        """The data of the artifact whose manifest is ``manifest_digest`` in ``ref``'s repository: its first layer,
        checked against the manifest's digest and size, at most 32 MiB."""
        ref = as_reference(ref)
        try:
            check_digest(manifest_digest, "the artifact manifest")
        except InvalidReference as error:
            raise InvalidArtifact(f"cannot fetch an artifact of {ref.name}: {error}") from None
        target = Reference(ref.registry, ref.repository, None, manifest_digest)
        _, media_type, _, doc = self._get_manifest(target)
        if media_type != OCI_MANIFEST:
            raise RegistryError(f"{target} is a {media_type}, not an artifact manifest")
        what = f"the artifact manifest {target}"
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise MalformedDocument(f"{what} has no layers" if layers in (None, [])
                                    else f"{what} has 'layers' that is {kind(layers)}, not a list")
        layer = Descriptor.parse(layers[0], f"the first layer of {what}")
        return self._fetch_blob(target, layer.digest, layer.size, "artifact")




def _answered(ref: Reference, resp: Answer, doing: str) -> RegistryError:
    """The error of an unexpected answer: ``registry X answered 400 Bad Request to <doing> (CODE: message)``."""
    detail = error_detail(resp.body)
    return RegistryError(f"registry {ref.registry} answered {resp.status} {resp.reason} to {doing}"
                         + (f" ({detail})" if detail else ""))


def _referrers_tag(ref: Reference, subject_digest: str) -> Reference:
    """The tag of the referrers tag schema: ``<algorithm>-<hex>`` of the subject, cut to a tag's 128 characters."""
    algorithm, _, hexpart = subject_digest.partition(":")
    return Reference(ref.registry, ref.repository, f"{algorithm}-{hexpart}"[:128])


def _failed(failure: RequestFailed, target: str) -> RegistryError:
    """The registry's sentence for a request to ``target`` that got no usable answer."""
    method, url = failure.method, failure.url
    if isinstance(failure, InvalidRequestURL):
        return RegistryError(f"cannot ask {target}: bad URL {url!r} ({failure.cause})")
    if isinstance(failure, NoAnswer):
        where = host_port(failure.request_url)
        error = RegistryUnreachable(
            f"cannot reach {target}" + ("" if where in target.split() else f" at {where}")
            + f": {failure.detail} ({method} {failure.request_url.copy_with(query=None)})")
        error.__cause__ = failure.cause
        return error
    if isinstance(failure, KeptFailing):
        answer = failure.answer
        if failure.wait_asked is not None:
            doing = "is rate limiting requests" if answer.status == 429 else "is unavailable"
            return RegistryUnavailable(f"{target} {doing} ({answer.status}) and asks to wait "
                                       f"{failure.wait_asked:.0f} s")
        attempts = failure.attempts
        return RegistryUnavailable(f"{target} answered {answer.status} {answer.reason} to {method} {answer.url} "
                                   f"after {attempts} attempt{'s' if attempts > 1 else ''}")
    if isinstance(failure, TooLarge):
        if failure.declared is not None:
            return RegistryError(f"{target} sent {failure.declared} bytes for {failure.answer_url}, more than the "
                                 f"{failure.limit} accepted")
        return RegistryError(f"{target} sent more than the {failure.limit} bytes accepted for {failure.answer_url}")
    return RegistryError(f"cannot ask {target}: {failure}")
