"""A real container registry for tests: ``http.server`` on 127.0.0.1 in a thread.

It speaks enough of the OCI distribution API for :mod:`factory.adapters.registry.client`:

* ``GET``/``HEAD /v2/<name>/manifests/<tag|digest>`` (honouring ``Accept`` like the
  reference registry: a manifest whose media type is not accepted is "unknown"), with
  ``Docker-Content-Digest``;
* ``GET /v2/<name>/blobs/<digest>`` (optionally redirected to ``/storage/<digest>``, as
  registries redirect to their object storage);
* authentication, one of: none; ``bearer`` -- a token service at ``/token`` (anonymous
  tokens for public repositories; ``GET`` with Basic credentials or ``POST`` with a
  refresh token for private ones; 401 for bad credentials), and the registry answering
  401 + ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; ``basic`` -- 401 +
  ``WWW-Authenticate: Basic`` unless the request carries good Basic credentials.

Helpers build images (:meth:`RegistryServer.add_index` for a multi-platform OCI index with
an attestation manifest, :meth:`RegistryServer.add_single` for a Docker v2 manifest),
tamper with blobs, inject faults, and record every request (without secrets).

``PUT /v2/<name>/manifests/<tag|digest>`` stores a manifest whose blobs (or, for an index, manifests)
the repository holds, as the reference registry does (by digest: only when the body has that digest); it
needs push access (any user with good credentials; anyone when ``auth="none"``). Blobs are pushed as the
distribution API's monolithic upload: ``POST /v2/<name>/blobs/uploads/`` answers 202 with a ``Location``
(absolute, with a ``_state`` query, as the reference registry sends; relative when ``upload_base`` is
``""``, on another host when it names one), and ``PUT <location>&digest=<digest>`` stores the body when it
has that digest.

OCI 1.1 referrers: with ``referrers_api=True`` (the default) a manifest pushed with a ``subject`` is answered
with ``OCI-Subject`` and ``GET /v2/<name>/referrers/<digest>`` lists the repository's manifests whose subject
is that digest (``referrers_page`` entries per page, with ``Link: <...>; rel="next"``, when set); with
``referrers_api=False`` the route is unknown (404), as on registries that predate OCI 1.1, so a client must use
the referrers tag schema.

**Hostile mode** (``RegistryServer(hostile=True)``) also serves, as ``hostile/<case>:v1`` for every
case in :data:`HOSTILE_CASES`, documents of the wrong shape with digests that match them (so a
client gets past its digest checks to its parsing), and :meth:`RegistryServer.drip` answers a
request one byte at a time (headers too, if asked), as a server that never times out would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from tests.drip import send_dripping

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"

SERVICE = "test-registry"

#: Hostile documents (hostile mode): case -> what is wrong with the image ``hostile/<case>:v1``.
HOSTILE_CASES = {
    "manifest-not-object": "the manifest is a JSON list",
    "manifest-media-type-list": "the manifest's mediaType is a list",
    "manifest-no-config": "the image manifest has no config",
    "config-descriptor-string": "the manifest's config is a string",
    "config-digest-list": "the config descriptor's digest is a list",
    "config-digest-bad": "the config descriptor's digest is not algorithm:hex",
    "config-size-huge": "the config descriptor's size is 10**30",
    "config-size-string": "the config descriptor's size is a string",
    "number-too-long": "the manifest holds a number of 5000 digits",
    "deep-nesting": "the manifest nests lists 100000 deep",
    "index-manifests-object": "the index's manifests is an object",
    "index-entry-string": "an index entry is a string",
    "index-platform-string": "an index entry's platform is a string",
    "index-variant-number": "an index entry's platform variant is a number",
    "index-annotations-list": "an index entry's annotations are a list",
    "index-entry-no-digest": "the linux/arm64 index entry has no digest",
    "image-config-string": "the image config blob is a JSON string",
    "image-config-config-list": "the image config's config is a list",
    "image-config-os-number": "the image config's os is a number",
    "labels-list": "the labels are a list",
    "label-value-object": "a label's value is an object",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Request:
    """One request the server answered; ``auth`` is the Authorization scheme only (never the secret)."""

    method: str
    path: str
    auth: str
    status: int = 0
    account: str | None = None


@dataclass
class Image:
    """Digests of what :meth:`RegistryServer.add_index` / :meth:`RegistryServer.add_single` stored."""

    digest: str  # what the tag points at (the index, or the single manifest)
    manifests: dict[str, str] = field(default_factory=dict)  # platform -> manifest digest
    configs: dict[str, str] = field(default_factory=dict)  # platform -> config digest


class RegistryServer:
    """A registry on ``127.0.0.1:<ephemeral port>``; use as a context manager.

    ``auth``: ``"none"``, ``"bearer"`` or ``"basic"``.  ``users``: user -> password.
    ``private``: repositories that need a user (bearer mode; in basic mode everything does).
    ``refresh_tokens``: refresh (identity) token -> user, for ``POST /token``.
    ``realm``: the token realm announced (default: this server's ``/token``).
    """

    def __init__(self, *, auth: str = "none", users: Mapping[str, str] | None = None,
                 private: Iterable[str] = (), refresh_tokens: Mapping[str, str] | None = None,
                 realm: str | None = None, redirect_blobs: bool = False, hostile: bool = False,
                 referrers_api: bool = True) -> None:
        if auth not in ("none", "bearer", "basic"):
            raise ValueError(auth)
        self.auth = auth
        self.users = dict(users or {})
        self.private = set(private)
        self.refresh_tokens = dict(refresh_tokens or {})
        self._realm = realm
        self.redirect_blobs = redirect_blobs
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}  # digest -> (body, media type)
        self.repo_manifests: dict[str, dict[str, None]] = {}  # repo -> digests of its manifests, in push order
        self.uploads: dict[str, str] = {}  # upload id -> repo, for blob uploads started and not finished
        self.referrers_api = referrers_api
        self.referrers_page = 0  # entries per page of the referrers API; 0: one page
        self.upload_base: str | None = None  # where upload locations point: None this server, "" relative
        self.tags: dict[str, dict[str, str]] = {}  # repo -> tag -> digest
        self.tokens: dict[str, dict[str, set[str]]] = {}  # token -> repository -> actions (pull, push)
        self.hostile = hostile
        #: what the token service answers instead of a token (a hostile token document), when set
        self.token_document: Any = None
        self.requests: list[Request] = []
        self.faults: list[list[Any]] = []  # [path prefix, status (0: stall, -1/-2: drip body/all), times, seconds]
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> RegistryServer:
        if self.hostile:
            for case in HOSTILE_CASES:
                self.add_hostile(f"hostile/{case}", "v1", case)
        handler = type("Handler", (_Handler,), {"registry": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry part of references."""
        return f"127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return self._realm or f"http://{self.host}/token"

    def ref(self, repo: str, tag_or_digest: str = "latest") -> str:
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    # -- content ---------------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        return digest

    def put_manifest(self, repo: str, body: bytes, media_type: str, tag: str | None = None) -> str:
        digest = sha256(body)
        self.manifests[digest] = (body, media_type)
        self.repo_manifests.setdefault(repo, {})[digest] = None
        repo_tags = self.tags.setdefault(repo, {})
        if tag:
            repo_tags[tag] = digest
        return digest

    def tamper(self, digest: str, data: bytes) -> None:
        """Serve ``data`` for the blob ``digest`` (its digest no longer matches)."""
        self.blobs[digest] = data

    def fail(self, path_prefix: str, status: int = 503, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` requests whose path starts with ``path_prefix``."""
        self.faults.append([path_prefix, status, times, 0.0])

    def stall(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering the next ``times`` such requests."""
        self.faults.append([path_prefix, 0, times, seconds])

    def drip(self, path_prefix: str, interval: float, times: int = 1, *, headers: bool = False) -> None:
        """Answer the next ``times`` such requests one byte every ``interval`` seconds: the body, or (with
        ``headers``) the status line and headers too. Each byte comes well within any read timeout."""
        self.faults.append([path_prefix, -2 if headers else -1, times, interval])

    def _image_manifest(self, repo: str, platform: str, labels: Mapping[str, str], *, docker: bool) -> \
            tuple[bytes, str, str]:
        parts = platform.split("/")
        config: dict[str, Any] = {
            "architecture": parts[1],
            "os": parts[0],
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Labels": dict(labels) if labels else None},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "test"}],
        }
        if len(parts) == 3:
            config["variant"] = parts[2]
        config_body = json.dumps(config, indent=2).encode()
        layer = f"layer of {repo} for {platform}".encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                       "digest": self.add_blob(config_body), "size": len(config_body)},
            "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER,
                        "digest": self.add_blob(layer), "size": len(layer)}],
        }
        body = json.dumps(manifest, indent=3).encode()
        return body, sha256(config_body), DOCKER_MANIFEST if docker else OCI_MANIFEST

    def add_index(self, repo: str, tag: str, labels: Mapping[str, Mapping[str, str]], *,
                  attestations: bool = True, decoy_first: bool = False,
                  variants: Mapping[str, str] | None = None) -> Image:
        """An OCI index over one image manifest per platform in ``labels`` (platform -> labels).

        ``attestations``: add a buildx-style attestation manifest (platform unknown/unknown)
        for each image, placed *before* the images.  ``decoy_first``: also put first an
        entry annotated as an attestation but claiming the first platform.  ``variants``:
        the variant to declare in the index for a platform (e.g. ``{"linux/arm64": "v8"}``).
        """
        image = Image(digest="")
        entries: list[dict[str, Any]] = []
        attest: list[dict[str, Any]] = []
        for platform, platform_labels in labels.items():
            body, config_digest, media_type = self._image_manifest(repo, platform, platform_labels, docker=False)
            digest = self.put_manifest(repo, body, media_type)
            image.manifests[platform] = digest
            image.configs[platform] = config_digest
            os_name, arch, *rest = platform.split("/")
            plat = {"architecture": arch, "os": os_name}
            variant = (variants or {}).get(platform) or (rest[0] if rest else None)
            if variant:
                plat["variant"] = variant
            entries.append({"mediaType": media_type, "digest": digest, "size": len(body), "platform": plat})
            if attestations:
                statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": []}).encode()
                att_manifest = {
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": self.add_blob(b"{}"), "size": 2},
                    "layers": [{"mediaType": IN_TOTO, "digest": self.add_blob(statement), "size": len(statement)}],
                }
                att_body = json.dumps(att_manifest).encode()
                att_digest = self.put_manifest(repo, att_body, OCI_MANIFEST)
                attest.append({"mediaType": OCI_MANIFEST, "digest": att_digest, "size": len(att_body),
                               "platform": {"architecture": "unknown", "os": "unknown"},
                               "annotations": {"vnd.docker.reference.digest": digest,
                                               "vnd.docker.reference.type": "attestation-manifest"}})
        if decoy_first and attest:
            decoy = dict(attest[0])
            decoy["platform"] = dict(entries[0]["platform"])
            attest.insert(0, decoy)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": attest + entries}
        image.digest = self.put_manifest(repo, json.dumps(index, indent=2).encode(), OCI_INDEX, tag)
        return image

    def add_single(self, repo: str, tag: str, labels: Mapping[str, str], platform: str = "linux/arm64") -> Image:
        """A single-platform image with a Docker v2 manifest (no index)."""
        body, config_digest, media_type = self._image_manifest(repo, platform, labels, docker=True)
        digest = self.put_manifest(repo, body, media_type, tag)
        return Image(digest=digest, manifests={platform: digest}, configs={platform: config_digest})

    # -- auth (server side) --------------------------------------------------------------------

    def _basic_user(self, header: str) -> tuple[str | None, bool]:
        """(user, ok) from a Basic Authorization header; (None, True) when there is none."""
        if not header.lower().startswith("basic "):
            return None, True
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except ValueError:
            return None, False
        return user, self.users.get(user) == password and bool(password)

    def issue_token(self, user: str | None, scopes: Iterable[str]) -> str:
        granted: dict[str, set[str]] = {}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if kind != "repository":
                continue
            wanted = set(actions.split(","))
            if "pull" in wanted and (user or repo not in self.private):
                granted.setdefault(repo, set()).add("pull")
            if "push" in wanted and user:
                granted.setdefault(repo, set()).add("push")
        token = secrets.token_urlsafe(16)
        with self._lock:
            self.tokens[token] = granted
        return token

    # -- hostile documents -------------------------------------------------------------------

    def add_hostile(self, repo: str, tag: str, case: str) -> str:
        """Store under ``repo:tag`` an image whose documents are hostile as :data:`HOSTILE_CASES` says (with
        digests that match them); returns the reference."""
        if case not in HOSTILE_CASES:
            raise ValueError(case)
        labels = {"org.opencontainers.image.title": case}
        config: Any = {"architecture": "arm64", "os": "linux", "config": {"Labels": labels},
                       "rootfs": {"type": "layers", "diff_ids": []}}
        if case == "image-config-string":
            config = "an image config"
        elif case == "image-config-config-list":
            config["config"] = ["Labels"]
        elif case == "image-config-os-number":
            config["os"] = 7
        elif case == "labels-list":
            config["config"]["Labels"] = ["a=b"]
        elif case == "label-value-object":
            config["config"]["Labels"] = {"a": {"b": "c"}}
        config_body = json.dumps(config).encode()
        layer = self.add_blob(f"layer of {repo}".encode())
        descriptor: Any = {"mediaType": OCI_CONFIG, "digest": self.add_blob(config_body), "size": len(config_body)}
        if case == "config-digest-list":
            descriptor["digest"] = [descriptor["digest"]]
        elif case == "config-digest-bad":
            descriptor["digest"] = "sha256:not-hex"
        elif case == "config-size-huge":
            descriptor["size"] = 10 ** 30
        elif case == "config-size-string":
            descriptor["size"] = "12"
        manifest: Any = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor,
                         "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 1}]}
        if case == "config-descriptor-string":
            manifest["config"] = descriptor["digest"]
        elif case == "manifest-no-config":
            del manifest["config"]
        elif case == "manifest-media-type-list":
            manifest["mediaType"] = [OCI_MANIFEST]
        body = json.dumps(manifest).encode()
        if case == "manifest-not-object":
            body = json.dumps([manifest]).encode()
        elif case == "number-too-long":
            body = body[:-1] + b', "n": ' + b"9" * 5000 + b"}"
        elif case == "deep-nesting":
            body = b"[" * 100000 + b"]" * 100000
        if not case.startswith("index-"):
            self.put_manifest(repo, body, OCI_MANIFEST, tag)
            return self.ref(repo, tag)
        digest = self.put_manifest(repo, body, OCI_MANIFEST)
        entry: Any = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                      "platform": {"architecture": "arm64", "os": "linux"}}
        if case == "index-platform-string":
            entry["platform"] = "linux/arm64"
        elif case == "index-variant-number":
            entry["platform"]["variant"] = 8
        elif case == "index-annotations-list":
            entry["annotations"] = ["vnd.docker.reference.type"]
        elif case == "index-entry-no-digest":
            del entry["digest"]
        index: Any = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        if case == "index-manifests-object":
            index["manifests"] = {"linux/arm64": entry}
        elif case == "index-entry-string":
            index["manifests"] = [digest]
        self.put_manifest(repo, json.dumps(index).encode(), OCI_INDEX, tag)
        return self.ref(repo, tag)


_ERRORS = {
    401: ("UNAUTHORIZED", "authentication required"),
    404: ("MANIFEST_UNKNOWN", "manifest unknown"),
}

_MAX_BODY = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    registry: RegistryServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------

    def _record(self, status: int, account: str | None = None) -> None:
        auth = self.headers.get("Authorization", "")
        with self.registry._lock:
            self.registry.requests.append(Request(self.command, self.path, auth.split(" ", 1)[0], status, account))

    _drip: tuple[float, bool] | None = None  # (seconds per byte, headers too) for this request

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: Mapping[str, str] | None = None, account: str | None = None) -> None:
        self._record(status, account)
        if self._drip is not None:
            return self._send_dripping(status, body, content_type, headers or {})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_dripping(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> None:
        assert self._drip is not None
        send_dripping(self, self._drip, status, b"" if self.command == "HEAD" else body, content_type, headers,
                      lambda: self.registry._httpd is None)

    def _error(self, status: int, code: str | None = None, message: str | None = None,
               headers: Mapping[str, str] | None = None) -> None:
        default_code, default_message = _ERRORS.get(status, ("UNKNOWN", "error"))
        body = json.dumps({"errors": [{"code": code or default_code, "message": message or default_message,
                                       "detail": None}]}).encode()
        self._send(status, body, headers=headers)

    def _fault(self) -> bool:
        with self.registry._lock:
            for fault in self.registry.faults:
                if fault[2] > 0 and self.path.startswith(fault[0]):
                    fault[2] -= 1
                    status, seconds = fault[1], fault[3]
                    break
            else:
                return False
        if status < 0:
            self._drip = (seconds, status == -2)
            return False
        if not status:
            time.sleep(seconds)
            return False
        self._error(status, "UNAVAILABLE", "injected fault")
        return True

    # -- routes --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        if self._fault():
            return
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length <= _MAX_BODY else b""
        rest = path[len("/v2/"):] if path.startswith("/v2/") else ""
        if "/blobs/uploads/" in rest:
            repo, upload = rest.rsplit("/blobs/uploads/", 1)
            return self._finish_upload(repo, upload, body)
        if "/manifests/" not in rest:
            return self._error(405, "UNSUPPORTED", "method not allowed")
        if len(body) > 4 * 1024 * 1024:
            return self._error(400, "MANIFEST_INVALID", "manifest invalid")
        repo, ref = rest.rsplit("/manifests/", 1)
        if not self._authorize(repo, "push"):
            return
        reg = self.registry
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            doc = json.loads(body)
        except ValueError:
            return self._error(400, "MANIFEST_INVALID", "manifest invalid")
        if not isinstance(doc, dict) or doc.get("mediaType", media_type) != media_type:
            return self._error(400, "MANIFEST_INVALID", "manifest invalid")
        if media_type in (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"):
            missing = [m.get("digest") for m in doc.get("manifests", []) if m.get("digest") not in reg.manifests]
        else:
            wanted = [doc.get("config", {}).get("digest")] + [layer.get("digest") for layer in doc.get("layers", [])]
            missing = [d for d in wanted if d not in reg.blobs]
        if missing:
            return self._error(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {missing[0]}")
        if ref.startswith("sha256:") and ref != sha256(body):
            return self._error(400, "DIGEST_INVALID", f"provided digest did not match uploaded content: {ref}")
        with reg._lock:
            digest = reg.put_manifest(repo, body, media_type, None if ref.startswith("sha256:") else ref)
        headers = {"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/manifests/{digest}"}
        subject = doc.get("subject")
        if reg.referrers_api and isinstance(subject, dict) and isinstance(subject.get("digest"), str):
            headers["OCI-Subject"] = subject["digest"]
        self._send(201, b"", headers=headers)

    def _start_upload(self, repo: str) -> None:
        if not self._authorize(repo, "push"):
            return
        reg = self.registry
        upload = secrets.token_hex(8)
        with reg._lock:
            reg.uploads[upload] = repo
        location = f"/v2/{repo}/blobs/uploads/{upload}?_state={secrets.token_urlsafe(8)}"
        location = (f"http://{reg.host}" if reg.upload_base is None else reg.upload_base) + location
        self._send(202, b"", headers={"Location": location, "Docker-Upload-UUID": upload, "Range": "0-0"})

    def _finish_upload(self, repo: str, upload: str, body: bytes) -> None:
        if not self._authorize(repo, "push"):
            return
        reg = self.registry
        with reg._lock:
            known = reg.uploads.get(upload) == repo
        if not known:
            return self._error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        digest = parse_qs(urlsplit(self.path).query).get("digest", [""])[0]
        if digest != sha256(body):
            return self._error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        with reg._lock:
            del reg.uploads[upload]
            reg.blobs[digest] = body
            reg.tags.setdefault(repo, {})
        self._send(201, b"", headers={"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/blobs/{digest}"})

    def _referrers(self, repo: str, subject: str) -> None:
        reg = self.registry
        if not reg.referrers_api:
            return self._error(404, "NOT_FOUND", "no such route")
        entries = []
        for digest in reg.repo_manifests.get(repo, {}):
            body, media_type = reg.manifests[digest]
            doc = json.loads(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("subject"), dict) \
                    or doc["subject"].get("digest") != subject:
                continue
            entry = {"mediaType": media_type, "digest": digest, "size": len(body),
                     "artifactType": doc.get("artifactType") or doc.get("config", {}).get("mediaType")}
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            entries.append(entry)
        headers = {}
        if reg.referrers_page:
            last = parse_qs(urlsplit(self.path).query).get("last", [""])[0]
            digests = [e["digest"] for e in entries]
            start = digests.index(last) + 1 if last in digests else 0
            page = entries[start:start + reg.referrers_page]
            if start + reg.referrers_page < len(entries):
                headers["Link"] = f'</v2/{repo}/referrers/{subject}?last={page[-1]["digest"]}>; rel="next"'
            entries = page
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        self._send(200, json.dumps(index).encode(), OCI_INDEX, headers)

    def do_POST(self) -> None:
        if self._fault():
            return
        path = urlsplit(self.path).path
        if path == "/token":
            self._token_post()
        elif path.startswith("/v2/") and path.endswith("/blobs/uploads/"):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a monolithic POST's body is not kept
            self._start_upload(path[len("/v2/"):-len("/blobs/uploads/")])
        else:
            self._error(405, "UNSUPPORTED", "method not allowed")

    def _route(self) -> None:
        if self._fault():
            return
        path = urlsplit(self.path).path
        if path == "/token" and self.command == "GET":
            return self._token_get()
        if path.startswith("/storage/"):
            return self._serve_blob(path[len("/storage/"):])
        if not path.startswith("/v2/"):
            return self._error(404, "NOT_FOUND", "no such route")
        rest = path[len("/v2/"):]
        repo = kind = ref = None
        for k in ("manifests", "blobs", "referrers"):
            marker = f"/{k}/"
            if marker in rest:
                repo, ref = rest.rsplit(marker, 1)
                kind = k
                break
        if not self._authorize(repo):
            return
        if rest == "":
            return self._send(200, b"{}")
        assert repo is not None and ref is not None
        if kind == "manifests":
            return self._manifest(repo, ref)
        if kind == "referrers":
            return self._referrers(repo, ref)
        if kind == "blobs":
            if repo not in self.registry.tags:
                return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")
            if self.registry.redirect_blobs:
                self._record(307)
                self.send_response(307)
                self.send_header("Location", f"http://{self.registry.host}/storage/{ref}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            return self._serve_blob(ref)
        return self._error(404, "NOT_FOUND", "no such route")

    def _authorize(self, repo: str | None, action: str = "pull") -> bool:
        reg = self.registry
        header = self.headers.get("Authorization", "")
        if reg.auth == "basic":
            user, ok = reg._basic_user(header)
            if user and ok:
                return True
            self._error(401, headers={"WWW-Authenticate": 'Basic realm="test registry"'})
            return False
        if reg.auth == "bearer":
            actions = "pull,push" if action == "push" else "pull"
            scope = f',scope="repository:{repo}:{actions}"' if repo else ""
            challenge = f'Bearer realm="{reg.realm}",service="{SERVICE}"{scope}'
            token = header[7:].strip() if header.lower().startswith("bearer ") else None
            with reg._lock:
                granted = reg.tokens.get(token) if token else None
            if granted is None:
                self._error(401, headers={"WWW-Authenticate": challenge})
                return False
            if repo is not None and action not in granted.get(repo, set()):
                self._error(401, headers={"WWW-Authenticate": challenge + ',error="insufficient_scope"'})
                return False
        return True

    def _manifest(self, repo: str, ref: str) -> None:
        reg = self.registry
        digest = ref if ref.startswith("sha256:") else reg.tags.get(repo, {}).get(ref)
        if repo not in reg.tags:
            return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")
        if digest is None or digest not in reg.manifests:
            return self._error(404)
        body, media_type = reg.manifests[digest]
        accept = self.headers.get("Accept")
        if accept is not None:
            accepted = {part.split(";")[0].strip() for part in accept.split(",")}
            if media_type not in accepted and "*/*" not in accepted:
                return self._error(404, "MANIFEST_UNKNOWN", f"{media_type} not in Accept")
        self._send(200, body, media_type, {"Docker-Content-Digest": digest})

    def _serve_blob(self, digest: str) -> None:
        data = self.registry.blobs.get(digest)
        if data is None:
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        self._send(200, data, "application/octet-stream", {"Docker-Content-Digest": digest})

    def _token_get(self) -> None:
        reg = self.registry
        query = parse_qs(urlsplit(self.path).query)
        if query.get("service") != [SERVICE]:
            return self._error(400, "INVALID", "unknown service")
        user, ok = reg._basic_user(self.headers.get("Authorization", ""))
        if not ok:
            return self._error(401, "UNAUTHORIZED", "incorrect username or password")
        self._issue(user, query.get("scope", []))

    def _token_post(self) -> None:
        reg = self.registry
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        if form.get("grant_type") != "refresh_token" or form.get("service") != SERVICE:
            return self._error(400, "INVALID", "unsupported grant")
        user = reg.refresh_tokens.get(form.get("refresh_token", ""))
        if user is None:
            return self._error(401, "UNAUTHORIZED", "invalid refresh token")
        self._issue(user, form.get("scope", "").split())

    def _issue(self, user: str | None, scopes: Iterable[str]) -> None:
        if self.registry.token_document is not None:
            return self._send(200, json.dumps(self.registry.token_document).encode(), account=user)
        token = self.registry.issue_token(user, scopes)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self._send(200, body, account=user)
