"""Issue 16, the servers-and-publishing half: hostile registries and indexes, credentials in URLs, the request
deadline, and what publishing may overwrite and in which order.

Every server is real (tests/registry_server.py, tests/pypi_server.py on 127.0.0.1, in their hostile mode where
it matters); no HTTP client is mocked. The Docker engine is not used: where publishing pushes, a fake engine
(`FakeEngine`) stands in for `factory.adapters.docker` and "pushes" by storing the image in the test registry, so the
registry side (what is checked, in which order, what is left after a failure) runs for real.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from factory.adapters import docker
from factory.adapters.http import Deadline, has_deadline, new_client
from factory.adapters.index import BadMetadataHash, PackageIndex, UpstreamError, UpstreamUnavailable
from factory.adapters.index.cache import Cache
from factory.adapters.registry import (
    InvalidReference,
    MalformedDocument,
    RegistryClient,
    RegistryError,
    RegistryUnreachable,
    parse_reference,
)
from factory.core.errors import WorkFailed
from factory.core.matrix import load
from factory.core.plan import Plan, build_plan
from factory.core.resolve import resolve
from factory.usecases.build import (
    BUILT,
    PUSHED,
    UP_TO_DATE,
    BuildOptions,
    BuildReport,
    ImageResult,
    _push_all,
    _up_to_date,
)
from factory.usecases.publish import TagConflict, check_immutable, push_order
from tests.conftest import SMALL
from tests.pypi_server import HOSTILE_PROJECTS, PyPIServer, unused_port
from tests.registry_server import HOSTILE_CASES, RegistryServer

SECRET = "s3cr3t-T0ken"
NS = "dev.scitrera"


# ---------------------------------------------------------------------------------------------
# item 6: one wall-clock deadline for every request
# ---------------------------------------------------------------------------------------------


def test_every_client_runs_its_connections_under_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    with new_client(5) as client:
        assert has_deadline(client)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # proxies get pools of their own
    with new_client(5) as client:
        assert client._mounts and has_deadline(client)  # noqa: SLF001


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_dripping_registry_fails_at_the_deadline_without_retries(headers: Any) -> None:
    """A byte every 50 ms never trips a read timeout; before the deadline a 4 KB manifest took minutes."""
    with RegistryServer() as srv:
        srv.add_index("img", "v1", {"linux/arm64": {"a": "b" * 4000}})
        srv.drip("/v2/img/manifests/v1", 0.05, times=5, headers=headers)
        start = time.monotonic()
        with RegistryClient(credentials=None, timeout=1, retries=2, backoff=0.01) as client, \
                pytest.raises(RegistryUnreachable) as info:
            client.labels(srv.ref("img", "v1"))
        took = time.monotonic() - start
        asked = [r for r in srv.requests if r.path == "/v2/img/manifests/v1"]
    assert took < 2.5, took
    assert str(info.value).startswith(f"cannot reach registry {srv.host}: timed out: no complete answer within 1 s")
    assert len(asked) == 1, "a request that ran out of time is not repeated"


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_dripping_index_fails_at_the_deadline_without_retries(headers: Any) -> None:
    with PyPIServer() as server:
        server.drip("/simple/vllm/", interval=0.05, times=5, headers=headers)
        start = time.monotonic()
        with PackageIndex(server.index_url, timeout=1, retries=3, backoff=0.01) as ix, \
                pytest.raises(UpstreamUnavailable, match=r"/simple/vllm/: timed out: no complete answer within 1 s$"):
            ix.releases("vllm")
        assert time.monotonic() - start < 2.5
        assert server.count("/simple/vllm/") == 1


def test_the_deadline_caps_connect_and_is_not_a_read_timeout() -> None:
    """An ordinary slow answer inside the deadline still works; the deadline only ends what outlives it."""
    with RegistryServer() as srv:
        srv.add_index("img", "v1", {"linux/arm64": {"a": "b"}})
        srv.stall("/v2/img/manifests/v1", 0.3)
        with RegistryClient(credentials=None, timeout=2, retries=0) as client:
            assert client.labels(srv.ref("img", "v1")) == {"a": "b"}
    deadline = Deadline(0.0)
    assert deadline.remaining() <= 0 and not deadline.fired


# ---------------------------------------------------------------------------------------------
# item 7: hostile JSON from a registry
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_registry() -> Iterator[RegistryServer]:
    with RegistryServer(hostile=True) as srv:
        yield srv


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_hostile_registry_documents_are_one_clear_registry_error(hostile_registry: RegistryServer, case: str) -> None:
    ref = hostile_registry.ref(f"hostile/{case}", "v1")
    with RegistryClient(credentials=None, timeout=5, retries=0) as client:
        assert client.exists(ref)
        with pytest.raises(RegistryError) as info:
            client.labels(ref, "linux/arm64")
    message = str(info.value)
    assert isinstance(info.value, WorkFailed) and info.value.exit_code == 1
    assert "\n" not in message and len(message) < 400, message
    assert f"hostile/{case}" in message or "sha256:" in message, message


@pytest.mark.parametrize("case,expected", [
    ("manifest-not-object", "is a list, not a JSON object"),
    ("manifest-media-type-list", "has a 'mediaType' that is a list, not a string"),
    ("config-descriptor-string", "the config descriptor of the manifest sha256:"),
    ("config-digest-list", "has a 'digest' that is a list, not a string"),
    ("config-digest-bad", "names an invalid digest 'sha256:not-hex'"),
    ("config-size-huge", "has a 'size' out of range"),
    ("config-size-string", "has a 'size' that is a string, not a whole number"),
    ("number-too-long", "is not JSON"),
    ("deep-nesting", "is not JSON"),
    ("index-manifests-object", "has a 'manifests' that is an object, not a list"),
    ("index-entry-string", "entry 0 of the index of"),
    ("index-platform-string", "the platform of entry 0 of the index of"),
    ("index-variant-number", "has a 'variant' that is a number, not a string"),
    ("index-annotations-list", "has 'annotations' that is a list, not an object"),
    ("index-entry-no-digest", "has no 'digest'"),
    ("image-config-string", "is a string, not a JSON object"),
    ("image-config-config-list", "the 'config' of the image config"),
    ("image-config-os-number", "has a 'os' that is a number, not a string"),
    ("labels-list", "has 'Labels' that is a list, not an object"),
    ("label-value-object", "has 'Labels' whose 'a' is an object, not a string"),
])
def test_hostile_registry_documents_name_what_is_wrong(hostile_registry: RegistryServer, case: str,
                                                       expected: str) -> None:
    with RegistryClient(credentials=None, timeout=5, retries=0) as client, \
            pytest.raises(MalformedDocument) as info:
        client.labels(hostile_registry.ref(f"hostile/{case}", "v1"), "linux/arm64")
    assert expected in str(info.value)


def test_a_hostile_token_answer_is_a_registry_error() -> None:
    with RegistryServer(auth="bearer") as srv:
        srv.add_single("img", "v1", {"a": "b"})
        for document, expected in ((["token"], "is a list, not a JSON object"),
                                   ({"token": ["x"]}, "has a 'token' that is a list, not a string"),
                                   ({"token": ""}, "without a token")):
            srv.token_document = document
            with RegistryClient(credentials=None, timeout=5, retries=0) as client, \
                    pytest.raises(MalformedDocument, match=expected):
                client.labels(srv.ref("img", "v1"))


def test_cli_inspect_remote_on_hostile_documents_is_one_line_exit_1(hostile_registry: RegistryServer,
                                                                    capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from factory.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    for case in ("labels-list", "index-platform-string", "config-size-huge"):
        assert main(["inspect", hostile_registry.ref(f"hostile/{case}", "v1"), "--remote"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("factory: ") and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# item 2: credentials in URLs (client side)
# ---------------------------------------------------------------------------------------------


def test_index_credentials_go_to_the_index_only_and_never_into_a_message_a_log_or_the_cache(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cache = Cache(tmp_path / "cache")
    with PyPIServer() as index, PyPIServer(fixtures=None) as elsewhere:
        # a file on another origin: it must not receive the index's credentials
        elsewhere.add_file("six-1.17.0-py2.py3-none-any.whl.metadata", b"Metadata-Version: 2.1\nName: six\n"
                                                                        b"Version: 1.17.0\n")
        index.add_project("other", [{"filename": "six-1.17.0-py2.py3-none-any.whl",
                                     "url": elsewhere.file_url("six-1.17.0-py2.py3-none-any.whl")}])
        url = index.index_url.replace("http://", f"http://user:{SECRET}@")
        with PackageIndex(url, cache=cache, retries=1, backoff=0.01, timeout=5) as ix:
            assert SECRET not in repr(ix) and SECRET not in ix.index_url
            assert ix.release("vllm", "0.15.0").files
            [other] = ix.releases("other")
            ix.metadata_of(other.files[0])
            index.fail("/simple/torch/", status=503, times=5)
            with pytest.raises(UpstreamError) as info:
                ix.releases("torch")
        sent = {r.headers.get("authorization") for r in index.requests_to("/simple/")}
        foreign = [r.headers.get("authorization") for r in elsewhere.requests]
    assert len(sent) == 1 and str(next(iter(sent))).startswith("Basic "), "the index gets its credentials"
    assert foreign == [None], "another origin never gets them"
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    for f in cache.directory.rglob("*"):
        assert SECRET not in f.name and (f.is_dir() or SECRET.encode() not in f.read_bytes())


def test_the_cache_redacts_credentials_in_keys(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = f"files:https://user:{SECRET}@index.invalid/simple/vllm/"
    path = cache.put(key, b"[]")
    assert SECRET.encode() not in path.read_bytes() and path == cache.path_for("files:https://***@index.invalid"
                                                                                "/simple/vllm/")
    assert cache.get(key) == b"[]"


@pytest.mark.parametrize("ref", [f"user:{SECRET}@127.0.0.1:5000/repo:tag", f"user:{SECRET}@registry.invalid/x",
                                 f"https://user:{SECRET}@registry.invalid/x:1"])
def test_a_reference_with_credentials_is_refused_without_showing_them(ref: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(ref)
    assert SECRET not in str(info.value) and "***@" in str(info.value)


def test_registry_errors_redact_credentials_of_a_realm_or_redirect() -> None:
    dead = unused_port()
    with RegistryServer(auth="bearer", realm=f"http://user:{SECRET}@127.0.0.1:{dead}/token") as srv:
        srv.add_single("img", "v1", {})
        with RegistryClient(credentials=None, timeout=5, retries=0) as client, \
                pytest.raises(RegistryUnreachable) as info:
            client.labels(srv.ref("img", "v1"))
    assert SECRET not in str(info.value) and "***@" in str(info.value)


# ---------------------------------------------------------------------------------------------
# items 8 and 9: METADATA hashes and hostile index data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_index() -> Iterator[PyPIServer]:
    with PyPIServer(fixtures=None, hostile=True) as server:
        yield server


def test_hostile_index_projects_are_all_served(hostile_index: PyPIServer) -> None:
    for project in HOSTILE_PROJECTS:
        assert hostile_index.count(f"/simple/{project}/") == 0
    with PackageIndex(hostile_index.index_url, retries=0, timeout=5) as ix:
        assert ix.files("hostile-mixed-times")


def test_mixed_naive_and_aware_upload_times_compare(hostile_index: PyPIServer) -> None:
    with PackageIndex(hostile_index.index_url, retries=0, timeout=5) as ix:
        [release] = ix.releases("hostile-mixed-times")
    assert release.uploaded is not None and release.uploaded.tzinfo is not None
    assert release.uploaded.isoformat() == "2026-01-01T00:00:00+00:00"  # the naive time, taken as UTC


@pytest.mark.parametrize("project,expected", [
    ("hostile-bad-marker", r"declares 'dep>=1; platform_machine ~= \"aarch64\"', whose marker cannot be evaluated"),
    ("hostile-invalid-requirement", r"has a Requires-Dist that is not a requirement: 'dep==junk'"),
    ("hostile-junk-pin", r"pins 'dep===junk': 'junk' is not a version"),
])
def test_hostile_requirements_are_one_clear_error(hostile_index: PyPIServer, project: str, expected: str) -> None:
    from factory.adapters.index import requirement_for

    with PackageIndex(hostile_index.index_url, retries=0, timeout=5) as ix:
        meta = ix.wheel_metadata(project, "1.0")
        with pytest.raises(UpstreamError, match=expected) as info:
            requirement_for(meta, "dep")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("project,expected", [
    ("hostile-page-types", r"has a 'size' of the wrong type"),
    ("hostile-filename-list", r"lists a file \(entry 0\) whose filename or url is not a string"),
])
def test_hostile_index_pages_are_one_clear_error(hostile_index: PyPIServer, project: str, expected: str) -> None:
    with PackageIndex(hostile_index.index_url, retries=0, timeout=5) as ix, \
            pytest.raises(UpstreamError, match=expected):
        ix.releases(project)


def test_a_metadata_hash_mismatch_fails_is_never_cached_and_never_falls_back(hostile_index: PyPIServer,
                                                                             tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with PackageIndex(hostile_index.index_url, cache=cache, retries=0, timeout=5) as ix, \
            pytest.raises(BadMetadataHash, match=r"does not match the hash the index advertises for it \(sha256 "):
        ix.wheel_metadata("hostile-bad-hash", "1.0")
    assert hostile_index.count("/files/hostile_bad_hash-1.0-py3-none-any.whl") == 1  # only the .metadata
    assert not any(key.startswith("metadata:") for key in _cache_keys(cache))


def test_a_cached_metadata_that_does_not_match_its_hash_is_not_used(hostile_index: PyPIServer, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with PackageIndex(hostile_index.index_url, cache=cache, retries=0, timeout=5) as ix:
        wheel = ix.release("hostile-bad-hash", "1.0").files[0]
        cache.put(f"metadata:{wheel.url}", b"Metadata-Version: 2.1\nName: hostile-bad-hash\nVersion: 1.0\n"
                                           b"Requires-Dist: dep>=666\n")  # what an older client cached
        with pytest.raises(BadMetadataHash):
            ix.metadata_of(wheel)
    with PackageIndex(hostile_index.index_url, cache=cache, offline=True) as ix, \
            pytest.raises(BadMetadataHash, match="cached metadata .* refresh it online"):
        ix.metadata_of(wheel)


def _cache_keys(cache: Cache) -> list[str]:
    return [json.loads(f.read_bytes().partition(b"\n")[0])["key"]
            for f in cache.directory.glob("*/*") if not f.name.startswith(".tmp-")]


def test_cli_upstream_check_on_hostile_index_data_is_one_line_exit_1(
        write_matrix: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`upstream check` and `check --upstream` against vLLM METADATA with an unevaluable marker."""
    from factory.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    matrix = write_matrix()
    wheel = "vllm-0.17.0-cp38-abi3-manylinux_2_31_aarch64.whl"
    torch = "torch-2.10.0-cp312-cp312-manylinux_2_28_aarch64.whl"
    with PyPIServer(fixtures=None) as server:
        server.add_project("vllm", [
            {"filename": wheel, "upload-time": "2026-03-07T00:00:00Z", "core-metadata": True,
             "metadata": b"Metadata-Version: 2.1\nName: vllm\nVersion: 0.17.0\n"
                         b"Requires-Dist: torch==2.10.0; platform_machine ~= 'aarch64'\n"},
            {"filename": "vllm-0.17.0.tar.gz", "upload-time": "2026-03-06T00:00:00"}])
        server.add_project("torch", [{"filename": torch, "core-metadata": True,
                                      "metadata": b"Metadata-Version: 2.1\nName: torch\nVersion: 2.10.0\n"}])
        for argv in (["upstream", "check"], ["check", "--upstream"]):
            assert main([*argv, "--matrix", str(matrix), "--index-url", server.index_url]) == 1
            err = capsys.readouterr().err
            assert err.startswith("factory: the metadata of vllm-0.17.0-cp38-abi3-manylinux_2_31_aarch64.whl "
                                  "declares 'torch==2.10.0; platform_machine ~= \"aarch64\"', whose marker cannot be "
                                  "evaluated"), err
            assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# item 3: publishing
# ---------------------------------------------------------------------------------------------


class FakeEngine:
    """Stands in for `factory.adapters.docker`: local images are labels by ref; a push stores the image in the test
    registry (a single-platform Docker manifest, as `docker push` of a loaded image does)."""

    def __init__(self, registry: RegistryServer, fail_on: str | None = None) -> None:
        self.registry = registry
        self.images: dict[str, tuple[dict[str, str], str]] = {}
        self.pushed: list[str] = []
        self.fail_on = fail_on

    def local_image(self, ref: str) -> tuple[str, dict[str, str]] | None:
        found = self.images.get(ref)
        return (f"sha256:{abs(hash(ref)):064d}"[:71], dict(found[0])) if found else None

    def push(self, ref: str, on_line: Any) -> None:
        if ref == self.fail_on:
            raise docker.EngineError(f"push of {ref} failed: connection reset by the fake engine")
        labels, platform = self.images[ref]
        name, tag = ref.rsplit(":", 1)
        self.registry.add_single(name.split("/", 1)[1], tag, labels, platform)
        self.pushed.append(ref)


MATRIX = SMALL.replace("schema = 1\n", """schema = 1

[defaults.repositories]
base = "{host}/factory-test/pytorch-dev"
vllm = "{host}/factory-test/vllm"
""").replace('torchaudio = "2.10.0"\n', 'torchaudio = "2.10.0"\nrevision = 1\n', 1).replace(
    'transformers = "4.57.6"\n', 'transformers = "4.57.6"\nrevision = 2\n', 1)


#: What the `publishing` fixture gives: (registry, plan, engine).
Publishing = tuple[RegistryServer, Plan, "FakeEngine"]


@pytest.fixture
def publishing(write_matrix: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RegistryServer,
               Plan, FakeEngine]]:
    """(registry, plan, engine): a registry, the plan of the small matrix on it (base and 0.17.0-t4 with
    revisions, 0.17.0-t5 without) and a fake engine holding every image of the plan, verified."""
    with RegistryServer() as srv:
        plan = build_plan(resolve(load(write_matrix(MATRIX.replace("{host}", srv.host)))))
        engine = FakeEngine(srv)
        for spec in plan.images:
            for ref in spec.refs:
                engine.images[ref] = ({**spec.labels, f"{NS}.verified": spec.input_digest}, spec.platform)
        monkeypatch.setattr(docker, "push", engine.push)
        monkeypatch.setattr(docker, "local_image", engine.local_image)
        yield srv, plan, engine


#: The folder the plan's locks are read from when SBOMs are attached: none here, so none is attached.
NO_LOCKS = Path("/nonexistent-matrix-folder")


def _options(**kw: Any) -> BuildOptions:
    return BuildOptions(push=True, push_attempts=1, push_backoff_s=0, **kw)


def _report(plan: Plan, status: str = BUILT, where: str | None = None) -> BuildReport:
    return BuildReport(started="now", images=[
        ImageResult(name=s.name, kind=s.kind, refs=list(s.refs), status=status, input_digest=s.input_digest,
                    where=where) for s in plan.images])


def _publish(srv: RegistryServer, spec: Any, labels: dict[str, str] | None = None, platform: str = "linux/arm64",
             refs: Sequence[str] | None = None) -> None:
    for ref in refs or spec.refs:
        name, tag = ref.rsplit(":", 1)
        srv.add_single(name.split("/", 1)[1], tag, {**spec.labels, f"{NS}.verified": spec.input_digest}
                       if labels is None else labels, platform)


def test_push_order_is_every_immutable_ref_first_then_every_mutable_one(publishing: tuple[RegistryServer, Plan,
                                                                        FakeEngine]) -> None:
    srv, plan, engine = publishing
    report = _report(plan)
    _push_all(plan, report, _options(), lambda line: None, NO_LOCKS)
    refs = [ref for spec in plan.images for ref in spec.refs]
    immutable = [r for r in refs if r.rsplit(":", 1)[1].rsplit("-", 1)[-1] in ("r1", "r2")]
    # the base's revision is its runtime image's too
    assert sorted(immutable) == sorted(r for r in refs if r.endswith(("-r1", "-r2"))) and len(immutable) == 3
    assert engine.pushed == immutable + [spec.refs[0] for spec in plan.images]
    assert [spec for spec, _ in push_order(plan.images)][:2] == list(plan.images[:2])
    assert {r.status for r in report.images} == {PUSHED} and report.pushed


def test_a_failed_push_moves_no_mutable_tag_before_every_revision_ref_is_there(publishing: tuple[RegistryServer, Plan,
                                                                               FakeEngine]) -> None:
    srv, plan, engine = publishing
    first_mutable = plan.images[0].refs[0]
    engine.fail_on = first_mutable
    report = _report(plan)
    with pytest.raises(WorkFailed) as info:
        _push_all(plan, report, _options(), lambda line: None, NO_LOCKS)
    assert all(ref.endswith(("-r1", "-r2")) for ref in engine.pushed) and len(engine.pushed) == 3
    assert "not pushed: " + ", ".join(spec.refs[0] for spec in plan.images) in str(info.value)
    assert not any(r.status == PUSHED for r in report.images) and not report.pushed


def test_an_image_is_up_to_date_in_the_registry_only_when_every_ref_holds_it_for_the_platform(
        publishing: Publishing) -> None:
    srv, plan, engine = publishing
    spec = plan.get("0.17.0-t4")  # refs: <tag> and <tag>-r2
    engine.images.clear()  # nothing local: only the registry can make it up to date
    assert _up_to_date(spec, _options()) == (None, None)
    _publish(srv, spec, refs=spec.refs[:1])  # half-pushed: <tag> without <tag>-r2
    assert _up_to_date(spec, _options()) == (None, None)
    _publish(srv, spec, platform="linux/amd64")  # every ref, but another platform's image
    assert _up_to_date(spec, _options()) == (None, None)
    assert _up_to_date(spec, _options(platform="linux/amd64")) == ("registry", None)
    _publish(srv, spec)
    assert _up_to_date(spec, _options()) == ("registry", None)
    unverified = {k: v for k, v in spec.labels.items() if k != f"{NS}.verified"}
    _publish(srv, spec, labels=unverified, refs=spec.refs[1:])
    assert _up_to_date(spec, _options()) == (None, None), "the verify stamp is still required"


def test_a_published_tag_without_the_input_digest_label_is_refused_unless_force(publishing: tuple[RegistryServer,
                                                                                Plan, FakeEngine]) -> None:
    srv, plan, engine = publishing
    spec = plan.get("0.17.0-t5")
    _publish(srv, spec, labels={"org.opencontainers.image.title": "someone else's image"})
    with pytest.raises(TagConflict, match=rf"{spec.ref} is published without the label {NS}.input_digest"):
        check_immutable(plan, _report(plan), _options(), lambda line: None)
    said: list[str] = []
    check_immutable(plan, _report(plan), _options(force=True), said.append)
    assert any(line.startswith(f"push: --force: {spec.ref} is published without") for line in said)


def test_a_remote_revision_that_is_not_a_number_is_a_clear_refusal(publishing: tuple[RegistryServer, Plan,
                                                                   FakeEngine]) -> None:
    srv, plan, engine = publishing
    spec = plan.get("0.17.0-t5")
    _publish(srv, spec, labels={f"{NS}.input_digest": "sha256:" + "1" * 64, f"{NS}.revision": "seven"})
    with pytest.raises(TagConflict, match=rf"{spec.ref} is published with a {NS}.revision label 'seven' that is "
                                          "not a whole number"):
        check_immutable(plan, _report(plan), _options(), lambda line: None)


def test_a_revision_ref_never_changes_and_a_bumped_tag_may(publishing: Publishing) -> None:
    srv, plan, engine = publishing
    spec = plan.get("0.17.0-t4")  # revision 2
    other = {**spec.labels, f"{NS}.input_digest": "sha256:" + "2" * 64, f"{NS}.revision": "1"}
    _publish(srv, spec, labels=other, refs=spec.refs[:1])
    said: list[str] = []
    check_immutable(plan, _report(plan), _options(), said.append)
    assert f"push {spec.ref}: replacing revision 1 with revision 2" in said
    _publish(srv, spec, labels=other, refs=spec.refs[1:])
    with pytest.raises(TagConflict, match=rf"{spec.refs[1]} is a revision tag, published with other content"):
        check_immutable(plan, _report(plan), _options(), lambda line: None)


def test_a_tag_holding_another_platform_is_a_conflict_and_hostile_documents_a_clean_failure(
        publishing: Publishing) -> None:
    srv, plan, engine = publishing
    spec = plan.get("0.17.0-t5")
    _publish(srv, spec, platform="linux/amd64")
    with pytest.raises(TagConflict, match=rf"{spec.ref} is published without an image for linux/arm64"):
        check_immutable(plan, _report(plan), _options(), lambda line: None)
    srv.add_hostile("factory-test/vllm", "0.17.0-t5", "labels-list")
    with pytest.raises(WorkFailed, match=rf"cannot check {spec.ref} before pushing: .* has 'Labels' that is a list"):
        _push_all(plan, _report(plan), _options(), lambda line: None, NO_LOCKS)
    assert engine.pushed == []
    assert _up_to_date(spec, _options()) == ("local", _up_to_date(spec, _options())[1])  # not a crash


def test_aliases_move_in_the_registry_when_the_images_exist_only_there(publishing: tuple[RegistryServer, Plan,
                                                                       FakeEngine]) -> None:
    srv, plan, engine = publishing
    for spec in plan.images:
        _publish(srv, spec)
    engine.images.clear()  # no local image at all: the old code raised NoSuchImage from `docker tag`
    repo = plan.get("0.17.0-t5").ref.rsplit(":", 1)[0]
    aliases = {f"{repo}:latest": f"{repo}:0.17.0-t5", f"{repo}:0.17-t4": f"{repo}:0.17.0-t4"}
    report = _report(plan, status=UP_TO_DATE, where="registry")
    said: list[str] = []
    _push_all(plan, report, _options(aliases=aliases), said.append, NO_LOCKS)
    assert engine.pushed == [] and report.aliases == aliases and report.pushed
    with RegistryClient(credentials=None, timeout=5) as client:
        for alias, source in aliases.items():
            assert client.exists(alias) == client.exists(source)
    assert any(line.startswith(f"alias {repo}:latest -> 0.17.0-t5 (sha256:") for line in said)


def test_an_alias_the_registry_refuses_is_a_clean_failure(write_matrix: Callable[..., Path],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-credentials"))
    with RegistryServer(auth="bearer") as srv:
        plan = build_plan(resolve(load(write_matrix(MATRIX.replace("{host}", srv.host)))))
        for spec in plan.images:
            _publish(srv, spec)
        repo = plan.get("0.17.0-t5").ref.rsplit(":", 1)[0]
        report = _report(plan, status=UP_TO_DATE, where="registry")
        with pytest.raises(WorkFailed, match=rf"moving {repo}:latest to {repo}:0.17.0-t5 failed: registry "
                                             rf"{srv.host} refused access .*not moved: {repo}:latest$"):
            _push_all(plan, report, _options(aliases={f"{repo}:latest": f"{repo}:0.17.0-t5"}),
                      lambda line: None, NO_LOCKS)
    assert report.aliases == {}


def test_the_readme_says_what_a_failed_push_leaves() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "immutable refs" in text and "`<tag>-r<N>`" in text and "what a failed push leaves" in text.lower()
