"""The registry adapter and its credentials against a real HTTP registry on 127.0.0.1 (tests/registry_server.py)."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from factory.adapters.registry import (
    DEFAULT_REGISTRY,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_AUTH_KEY,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    BadDigest,
    InvalidPlatform,
    InvalidReference,
    NotFound,
    PlainHTTPRefused,
    PlatformNotFound,
    Reference,
    RegistryAccessDenied,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    RegistryUnreachable,
    is_loopback,
    parse_challenges,
    parse_reference,
)
from factory.adapters.registry.credentials import (
    Credential,
    CredentialsError,
    DockerCredentials,
    docker_credentials,
    static_credentials,
)
from factory.core.errors import InputError, WorkFailed
from tests.registry_server import RegistryServer, sha256

ROOT = Path(__file__).resolve().parents[2]
NS = "dev.scitrera"
ARM_LABELS = {f"{NS}.vllm_version": "0.17.0", f"{NS}.torch_version": "2.10.0",
              "org.opencontainers.image.title": "vllm", f"{NS}.cuda_arch": "sm_121"}
AMD_LABELS = {f"{NS}.vllm_version": "0.17.0", f"{NS}.torch_version": "2.10.0+amd64"}
USER, PASSWORD = "alice", "pa55-w0rd-xyz"
DIGEST = "sha256:" + "ab" * 32


def anonymous(**kw: Any) -> RegistryClient:
    return RegistryClient(credentials=None, timeout=5, **kw)


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], Path]:
    """Write a Docker config.json into a temp DOCKER_CONFIG; returns the writer."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))

    def write(doc: dict[str, Any]) -> Path:
        path = folder / "config.json"
        path.write_text(json.dumps(doc))
        return path

    return write


@pytest.fixture
def fake_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str, str], Path]:
    """Install ``docker-credential-fake`` on PATH: it knows ``server`` -> (user, secret)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "helper.log"

    def install(server: str, user: str, secret: str) -> Path:
        script = bindir / "docker-credential-fake"
        script.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            [ "$1" = get ] || {{ echo "unsupported: $1"; exit 1; }}
            read -r url
            echo "$url" >> '{log}'
            if [ "$url" = '{server}' ]; then
              printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\\n' "$url"
            else
              echo "credentials not found in native keychain"
              exit 1
            fi
            """))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return log

    return install


def auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------

H = DEFAULT_REGISTRY


@pytest.mark.parametrize(("text", "expected"), [
    ("ubuntu", (H, "library/ubuntu", "latest", None)),
    ("ubuntu:24.04", (H, "library/ubuntu", "24.04", None)),
    ("scitrera/vllm:0.17.0-t4", (H, "scitrera/vllm", "0.17.0-t4", None)),
    ("scitrera/dgx-spark/vllm", (H, "scitrera/dgx-spark/vllm", "latest", None)),
    (f"ubuntu@{DIGEST}", (H, "library/ubuntu", None, DIGEST)),
    (f"ubuntu:24.04@{DIGEST}", (H, "library/ubuntu", "24.04", DIGEST)),
    ("localhost/vllm", ("localhost", "vllm", "latest", None)),
    ("localhost:5000/scitrera/vllm:0.17.0", ("localhost:5000", "scitrera/vllm", "0.17.0", None)),
    ("127.0.0.1:5000/vllm", ("127.0.0.1:5000", "vllm", "latest", None)),
    (f"127.0.0.1:5000/a/b@{DIGEST}", ("127.0.0.1:5000", "a/b", None, DIGEST)),
    ("registry.example.invalid/team/img:v1", ("registry.example.invalid", "team/img", "v1", None)),
    ("registry.example.invalid:8443/img", ("registry.example.invalid:8443", "img", "latest", None)),
    ("[::1]:5000/img:tag", ("[::1]:5000", "img", "tag", None)),
    ("Registry/img", ("Registry", "img", "latest", None)),  # an upper-case first component is a host
    ("team/img_name__x.y-z:Tag_1.0", (H, "team/img_name__x.y-z", "Tag_1.0", None)),
    ("localhost:5000", (H, "library/localhost", "5000", None)),  # as Docker reads it: repository:tag
])
def test_parse_reference(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("alias", sorted(DOCKER_HUB_ALIASES))
def test_parse_reference_default_registry_aliases(alias: str) -> None:
    assert parse_reference(f"{alias}/ubuntu") == Reference(H, "library/ubuntu", "latest", None)
    assert parse_reference(f"{alias}/team/img:1") == Reference(H, "team/img", "1", None)


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("   ", "empty"),
    ("Ubuntu", "must be lowercase"),
    ("team/Img", "must be lowercase"),
    ("ubuntu:", "invalid tag"),
    ("ubuntu:.hidden", "invalid tag"),
    ("ubuntu:" + "t" * 129, "invalid tag"),
    ("ubuntu@sha256:abc", "64 lowercase hex"),
    ("ubuntu@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("ubuntu@" + DIGEST.upper(), "invalid digest"),
    ("http://registry.example.invalid/img", "URL scheme"),
    ("a//b", "bad path component"),
    ("-foo", "bad path component"),
    ("foo-", "bad path component"),
    ("foo bar", "white space"),
    ("bad_host.example.invalid/img", "invalid registry host"),
    ("x" * 256, "longer than"),
])
def test_parse_reference_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message) as info:
        parse_reference(text)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_reference_str_round_trips() -> None:
    for text in ("127.0.0.1:5000/a/b:1", f"localhost/x@{DIGEST}", f"registry.example.invalid/t/i:v@{DIGEST}"):
        assert str(parse_reference(text)) == text
    assert str(parse_reference("ubuntu")) == f"{H}/library/ubuntu:latest"


def test_parse_challenges() -> None:
    got = parse_challenges([
        'Bearer realm="https://auth.example.invalid/token",service="reg.example.invalid",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"',
        'Basic realm="with \\"quotes\\", and commas"',
        "Bearer realm=unquoted , service = spaced",
    ])
    assert got == [
        ("bearer", {"realm": "https://auth.example.invalid/token", "service": "reg.example.invalid",
                    "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}),
        ("basic", {"realm": 'with "quotes", and commas'}),
        ("bearer", {"realm": "unquoted", "service": "spaced"}),
    ]


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.1:5000", True), ("127.8.9.10:1", True), ("localhost", True),
    ("localhost:5000", True), ("[::1]:5000", True), ("::1", True), ("LOCALHOST:1", True),
    ("10.0.0.1:5000", False), ("registry.example.invalid", False), ("localhost.example.invalid", False),
    ("[::2]:5000", False), ("128.0.0.1", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---------------------------------------------------------------------------------------------
# manifests, platforms, labels
# ---------------------------------------------------------------------------------------------


def test_index_picks_arm64_and_reads_its_labels() -> None:
    with RegistryServer() as srv:
        image = srv.add_index("scitrera/vllm", "0.17.0-t4",
                              {"linux/amd64": AMD_LABELS, "linux/arm64": ARM_LABELS})
        ref = srv.ref("scitrera/vllm", "0.17.0-t4")
        with anonymous() as client:
            resolved = client.manifest(ref)
            assert resolved.digest == image.manifests["linux/arm64"]
            assert resolved.index_digest == image.digest
            assert resolved.media_type == OCI_MANIFEST
            assert resolved.platform == "linux/arm64"
            assert resolved.config_digest == image.configs["linux/arm64"]
            assert client.labels(ref) == ARM_LABELS
            assert client.labels(ref, "linux/amd64") == AMD_LABELS
            config = client.config(ref)
            assert config["architecture"] == "arm64" and config["os"] == "linux"
        # the client asked for every manifest type, and fetched the chosen manifest by digest
        manifest_paths = [r.path for r in srv.requests if "/manifests/" in r.path]
        assert f"/v2/scitrera/vllm/manifests/{image.manifests['linux/arm64']}" in manifest_paths


def test_attestation_manifests_are_skipped() -> None:
    with RegistryServer() as srv:
        # attestation entries (and a decoy annotated as one but claiming linux/arm64) come first
        image = srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS, "linux/amd64": AMD_LABELS}, decoy_first=True)
        with anonymous() as client:
            resolved = client.manifest(srv.ref("img", "v1"), "linux/arm64")
            assert resolved.digest == image.manifests["linux/arm64"]
            assert client.labels(srv.ref("img", "v1")) == ARM_LABELS
            # no platform given: the one real image is picked, attestation aside
            srv.add_index("one", "v1", {"linux/arm64": ARM_LABELS})
            assert client.manifest(srv.ref("one", "v1"), None).platform == "linux/arm64"
            with pytest.raises(PlatformNotFound, match="multi-platform"):
                client.manifest(srv.ref("img", "v1"), None)


def test_no_matching_platform_lists_what_is_there() -> None:
    with RegistryServer() as srv:
        srv.add_index("img", "v1", {"linux/amd64": AMD_LABELS, "linux/arm/v7": {}})
        with anonymous() as client, pytest.raises(PlatformNotFound) as info:
            client.manifest(srv.ref("img", "v1"), "linux/arm64")
    message = str(info.value)
    assert message == (f"{srv.host}/img:v1 has no manifest for linux/arm64; "
                       "platforms available: linux/amd64, linux/arm/v7")
    assert "unknown" not in message


def test_arm64_variant_v8_is_optional() -> None:
    with RegistryServer() as srv:
        with_variant = srv.add_index("v8", "v1", {"linux/arm64": ARM_LABELS}, variants={"linux/arm64": "v8"})
        without = srv.add_index("plain", "v1", {"linux/arm64": ARM_LABELS})
        with anonymous() as client:
            assert client.manifest(srv.ref("v8", "v1"), "linux/arm64").digest == with_variant.manifests["linux/arm64"]
            assert client.manifest(srv.ref("v8", "v1"), "linux/arm64/v8").platform == "linux/arm64/v8"
            assert client.manifest(srv.ref("plain", "v1"), "linux/arm64/v8").digest == without.manifests["linux/arm64"]
            assert client.manifest(srv.ref("plain", "v1"), "linux/aarch64").digest == without.manifests["linux/arm64"]
            with pytest.raises(InvalidPlatform, match="invalid platform") as info:
                client.manifest(srv.ref("plain", "v1"), "arm64")
            assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_single_docker_v2_manifest() -> None:
    with RegistryServer() as srv:
        image = srv.add_single("base", "2.10.0-cu131", ARM_LABELS)
        srv.add_single("nolabels", "v1", {})
        ref = srv.ref("base", "2.10.0-cu131")
        with anonymous() as client:
            resolved = client.manifest(ref)
            assert (resolved.digest, resolved.media_type, resolved.index_digest, resolved.platform) == (
                image.digest, DOCKER_MANIFEST, None, "linux/arm64")
            assert client.labels(ref) == ARM_LABELS
            assert client.labels(srv.ref("nolabels", "v1")) == {}
            # by digest too
            assert client.labels(srv.ref("base", image.digest)) == ARM_LABELS
            with pytest.raises(PlatformNotFound, match="single-platform image for linux/arm64, not linux/amd64"):
                client.manifest(ref, "linux/amd64")
            # the config blob is fetched once and kept (content addressed, digest checked)
            assert sum(1 for r in srv.requests if "/blobs/" in r.path) == 2


def test_blob_redirect_is_followed() -> None:
    with RegistryServer(redirect_blobs=True) as srv:
        srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        with anonymous() as client:
            assert client.labels(srv.ref("img", "v1")) == ARM_LABELS
        assert any(r.path.startswith("/storage/") for r in srv.requests)


def test_tampered_config_blob_is_caught() -> None:
    with RegistryServer() as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        digest = image.configs["linux/arm64"]
        evil = json.loads(srv.blobs[digest])
        evil["config"]["Labels"][f"{NS}.vllm_version"] = "9.9.9"
        srv.tamper(digest, json.dumps(evil).encode())
        with anonymous() as client, pytest.raises(BadDigest) as info:
            client.labels(srv.ref("img", "v1"))
    assert f"hashes to {sha256(json.dumps(evil).encode())}, not {digest}" in str(info.value)
    assert "altered or corrupted" in str(info.value)


def test_tampered_manifest_is_caught() -> None:
    with RegistryServer() as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        arm = image.manifests["linux/arm64"]
        body, media_type = srv.manifests[arm]
        srv.manifests[arm] = (body.replace(b'"layers"', b' "layers"'), media_type)
        with anonymous() as client, pytest.raises(BadDigest, match="content does not match the digest asked for"):
            client.manifest(srv.ref("img", "v1"))


def test_exists() -> None:
    with RegistryServer() as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        single = srv.add_single("img", "single", ARM_LABELS)
        with anonymous() as client:
            assert client.exists(srv.ref("img", "v1")) == image.digest
            assert client.exists(srv.ref("img", "single")) == single.digest
            assert client.exists(srv.ref("img", image.digest)) == image.digest
            assert client.exists(srv.ref("img", "nope")) is None
            assert client.exists(srv.ref("no/such/repo", "v1")) is None
            assert client.exists(srv.ref("img", DIGEST)) is None
        heads = [r for r in srv.requests if "/manifests/" in r.path]
        assert heads and all(r.method == "HEAD" for r in heads)


def test_not_found_is_one_clear_sentence() -> None:
    with RegistryServer() as srv:
        srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        with anonymous() as client:
            with pytest.raises(NotFound) as info:
                client.labels(srv.ref("img", "v2"))
            assert str(info.value) == f"{srv.host}/img:v2 not found in registry"
            with pytest.raises(NotFound, match=f"{srv.host}/other:latest not found in registry"):
                client.manifest(f"{srv.host}/other")
    assert isinstance(info.value, WorkFailed) and info.value.exit_code == 1


def test_retries_a_503_then_succeeds() -> None:
    with RegistryServer() as srv:
        srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        srv.fail("/v2/img/manifests/", 503, times=2)
        with anonymous(backoff=0) as client:
            assert client.labels(srv.ref("img", "v1")) == ARM_LABELS
        srv.fail("/v2/img/manifests/", 503, times=5)
        with anonymous(backoff=0, retries=1) as client, pytest.raises(RegistryUnavailable,
                                                                      match="503 Service Unavailable"):
            client.manifest(srv.ref("img", "v1"))


# ---------------------------------------------------------------------------------------------
# authentication
# ---------------------------------------------------------------------------------------------


def test_bearer_anonymous_token_for_public_repo_is_cached() -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"}) as srv:
        srv.add_index("public/img", "v1", {"linux/arm64": ARM_LABELS, "linux/amd64": AMD_LABELS})
        with anonymous() as client:
            assert client.labels(srv.ref("public/img", "v1")) == ARM_LABELS
            assert client.labels(srv.ref("public/img", "v1"), "linux/amd64") == AMD_LABELS
            assert client.exists(srv.ref("public/img", "v1"))
        token_requests = [r for r in srv.requests if r.path.startswith("/token")]
        assert len(token_requests) == 1 and token_requests[0].auth == "" and token_requests[0].account is None
        assert "scope=repository%3Apublic%2Fimg%3Apull" in token_requests[0].path
        # once the token is known it is sent up front: a single 401 in all
        assert sum(1 for r in srv.requests if r.status == 401) == 1


def test_bearer_private_repo_with_auths_from_docker_config(docker_config: Callable[[dict[str, Any]], Path]) -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"}) as srv:
        srv.add_index("private/img", "v1", {"linux/arm64": ARM_LABELS})
        docker_config({"auths": {srv.host: auth_entry(USER, PASSWORD)}})
        with RegistryClient(timeout=5) as client:  # default: credentials from DOCKER_CONFIG
            assert client.labels(srv.ref("private/img", "v1")) == ARM_LABELS
        token_requests = [r for r in srv.requests if r.path.startswith("/token")]
        assert [(r.auth, r.account) for r in token_requests] == [("Basic", USER)]


def test_bearer_private_repo_with_cred_helper(docker_config: Callable[[dict[str, Any]], Path],
                                              fake_helper: Callable[[str, str, str], Path]) -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"}) as srv:
        srv.add_index("private/img", "v1", {"linux/arm64": ARM_LABELS})
        log = fake_helper(srv.host, USER, PASSWORD)
        # credHelpers wins over a (wrong) inline entry for the same host
        docker_config({"auths": {srv.host: auth_entry(USER, "wrong")}, "credHelpers": {srv.host: "fake"}})
        with RegistryClient(timeout=5) as client:
            assert client.labels(srv.ref("private/img", "v1")) == ARM_LABELS
        assert log.read_text().split() == [srv.host]
        assert [r.account for r in srv.requests if r.path.startswith("/token")] == [USER]


def test_bearer_private_repo_with_creds_store(docker_config: Callable[[dict[str, Any]], Path],
                                              fake_helper: Callable[[str, str, str], Path]) -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"}) as srv:
        srv.add_index("private/img", "v1", {"linux/arm64": ARM_LABELS})
        fake_helper(srv.host, USER, PASSWORD)
        docker_config({"auths": {srv.host: {}}, "credsStore": "fake"})
        with RegistryClient(timeout=5) as client:
            assert client.labels(srv.ref("private/img", "v1")) == ARM_LABELS


def test_bearer_identity_token_uses_refresh_grant(docker_config: Callable[[dict[str, Any]], Path]) -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"},
                        refresh_tokens={"refresh-123": USER}) as srv:
        srv.add_index("private/img", "v1", {"linux/arm64": ARM_LABELS})
        docker_config({"auths": {srv.host: {"auth": base64.b64encode(b"<token>:").decode(),
                                            "identitytoken": "refresh-123"}}})
        with RegistryClient(timeout=5) as client:
            assert client.labels(srv.ref("private/img", "v1")) == ARM_LABELS
        assert [(r.method, r.account) for r in srv.requests if r.path.startswith("/token")] == [("POST", USER)]


def test_bearer_bad_credentials_is_a_clear_error() -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"}) as srv:
        srv.add_index("private/img", "v1", {"linux/arm64": ARM_LABELS})
        creds = static_credentials({srv.host: Credential(USER, "not-the-password")})
        with RegistryClient(credentials=creds, timeout=5) as client, pytest.raises(RegistryAccessDenied) as info:
            client.labels(srv.ref("private/img", "v1"))
    message = str(info.value)
    assert message.startswith(f"registry {srv.host} refused access to private/img: ")
    assert f"rejected the credentials of user {USER!r}" in message and "401" in message
    assert "not-the-password" not in message and "not-the-password" not in repr(info.value)


def test_bearer_private_repo_anonymous_is_denied() -> None:
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, private={"private/img"}) as srv:
        srv.add_index("private/img", "v1", {"linux/arm64": ARM_LABELS})
        with anonymous() as client, pytest.raises(RegistryAccessDenied) as info:
            client.labels(srv.ref("private/img", "v1"))
    message = str(info.value)
    assert message.startswith(f"registry {srv.host} refused access to private/img: 401")
    assert f"no credentials are configured for {srv.host}" in message
    assert "or the repository does not exist" in message


def test_basic_challenge_registry(docker_config: Callable[[dict[str, Any]], Path]) -> None:
    with RegistryServer(auth="basic", users={USER: PASSWORD}) as srv:
        srv.add_single("img", "v1", ARM_LABELS)
        ref = srv.ref("img", "v1")
        docker_config({"auths": {f"http://{srv.host}/v2/": auth_entry(USER, PASSWORD)}})  # host matched, not key
        with RegistryClient(timeout=5) as client:
            assert client.labels(ref) == ARM_LABELS
            assert client.exists(ref)
        # Basic is sent up front once the registry has asked for it
        assert sum(1 for r in srv.requests if r.status == 401) == 1
        assert not any(r.path.startswith("/token") for r in srv.requests)

        with anonymous() as client, pytest.raises(RegistryAccessDenied,
                                                  match=f"no credentials are configured for {srv.host}"):
            client.labels(ref)
        bad = static_credentials({srv.host: Credential(USER, "nope")})
        with RegistryClient(credentials=bad, timeout=5) as client, pytest.raises(RegistryAccessDenied) as info:
            client.labels(ref)
        assert str(info.value).startswith(f"registry {srv.host} refused access to img: 401")
        assert f"the credentials of user {USER!r} were rejected" in str(info.value)


# ---------------------------------------------------------------------------------------------
# transport policy and failures
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_unreachable_registry_names_host_port_and_cause() -> None:
    port = free_port()
    with anonymous(retries=0) as client, pytest.raises(RegistryUnreachable) as info:
        client.labels(f"127.0.0.1:{port}/img:v1")
    message = str(info.value)
    assert message.startswith(f"cannot reach registry 127.0.0.1:{port}: connection refused (GET http://127.0.0.1:{port}/v2/")
    assert isinstance(info.value, RegistryError)


def test_stalled_registry_times_out() -> None:
    with RegistryServer() as srv:
        srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        srv.stall("/v2/img/manifests/", 1.0)
        with RegistryClient(credentials=None, timeout=0.2, retries=0) as client, \
                pytest.raises(RegistryUnreachable) as info:
            client.exists(srv.ref("img", "v1"))
    assert str(info.value).startswith(f"cannot reach registry {srv.host}: timed out: no complete answer within 0.2 s")


def test_plain_http_only_for_loopback_unless_allowed() -> None:
    with anonymous() as client:
        assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
        assert client.base_url("localhost:5000") == "http://localhost:5000"
        assert client.base_url("[::1]:5000") == "http://[::1]:5000"
        assert client.base_url("registry.example.invalid:5000") == "https://registry.example.invalid:5000"
        assert client.base_url("10.1.2.3:5000") == "https://10.1.2.3:5000"
    with pytest.raises(PlainHTTPRefused, match="plain HTTP to registry.example.invalid:5000 refused"):
        RegistryClient(credentials=None, insecure_hosts=["registry.example.invalid:5000"])
    RegistryClient(credentials=None, insecure_hosts=["localhost:5000"])  # loopback: fine
    with anonymous(insecure_hosts=["registry.example.invalid:5000"], allow_http=True) as client:
        assert client.base_url("registry.example.invalid:5000") == "http://registry.example.invalid:5000"
        assert client.base_url("other.example.invalid") == "https://other.example.invalid"
    with anonymous(allow_http=True) as client:
        assert client.base_url("other.example.invalid") == "http://other.example.invalid"


def test_plain_http_token_realm_off_loopback_is_refused() -> None:
    realm = "http://auth.example.invalid/token"
    with RegistryServer(auth="bearer", users={USER: PASSWORD}, realm=realm) as srv:
        srv.add_index("img", "v1", {"linux/arm64": ARM_LABELS})
        creds = static_credentials({srv.host: Credential(USER, PASSWORD)})
        with RegistryClient(credentials=creds, timeout=5) as client, pytest.raises(PlainHTTPRefused) as info:
            client.labels(srv.ref("img", "v1"))
    assert "plain HTTP to auth.example.invalid:80 refused" in str(info.value)
    assert PASSWORD not in str(info.value)


# ---------------------------------------------------------------------------------------------
# credentials
# ---------------------------------------------------------------------------------------------


def test_credential_repr_hides_secrets() -> None:
    cred = Credential("bob", "hunter2-secret", identity_token="tok-secret", source="test")
    for text in (repr(cred), str(cred), f"{cred}", repr([cred])):
        assert "hunter2-secret" not in text and "tok-secret" not in text
        assert "bob" in text
    assert not Credential("bob")


def test_docker_config_lookups(docker_config: Callable[[dict[str, Any]], Path], fake_helper: Callable[[str, str, str],
                               Path], tmp_path: Path) -> None:
    docker_config({
        "auths": {
            DOCKER_HUB_AUTH_KEY: auth_entry("hubuser", "hubpass"),
            "https://registry.example.invalid": auth_entry("u1", "p:with:colons"),
            "empty.example.invalid": {},
        },
        "credHelpers": {"helped.example.invalid": "fake"},
    })
    fake_helper("helped.example.invalid", "helper-user", "helper-secret")
    cred = docker_credentials(DEFAULT_REGISTRY)  # the default registry's key quirk
    assert cred is not None and (cred.username, cred.secret) == ("hubuser", "hubpass")
    for alias in DOCKER_HUB_ALIASES:
        assert docker_credentials(alias) == cred
    cred = docker_credentials("registry.example.invalid")
    assert cred is not None and (cred.username, cred.secret) == ("u1", "p:with:colons")
    cred = docker_credentials("helped.example.invalid")
    assert cred is not None and (cred.username, cred.secret) == ("helper-user", "helper-secret")
    assert "docker-credential-fake" in cred.source
    assert docker_credentials("empty.example.invalid") is None
    assert docker_credentials("unknown.example.invalid") is None
    # an explicit file, and a missing one
    assert DockerCredentials(tmp_path / "nope.json").get("registry.example.invalid") is None


def test_docker_config_errors(docker_config: Callable[[dict[str, Any]], Path], fake_helper: Callable[[str, str, str],
                              Path]) -> None:
    path = docker_config({"credsStore": "missing-helper"})
    with pytest.raises(CredentialsError, match="docker-credential-missing-helper .*is not on PATH") as info:
        docker_credentials("registry.example.invalid")
    assert isinstance(info.value, RegistryError)  # callers catching RegistryError see it too
    docker_config({"auths": {"registry.example.invalid": {"auth": "%%%not-base64"}}})
    with pytest.raises(CredentialsError, match="not base64 of user:password"):
        docker_credentials("registry.example.invalid")
    path.write_text('{"auths": {"x": {"auth": "c2VjcmV0"}')  # truncated JSON holding a secret
    with pytest.raises(CredentialsError) as info:
        docker_credentials("registry.example.invalid")
    assert "not valid JSON" in str(info.value) and "c2VjcmV0" not in str(info.value)
    docker_config({"credsStore": "../evil"})
    with pytest.raises(CredentialsError, match="invalid credential helper name"):
        docker_credentials("registry.example.invalid")
    # a helper that knows nothing for a host: no credentials (not an error)
    fake_helper("other.example.invalid", "u", "s")
    docker_config({"credsStore": "fake"})
    assert docker_credentials("registry.example.invalid") is None
