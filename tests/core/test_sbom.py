"""CycloneDX SBOMs (factory.core.exports.sbom) and the OCI 1.1 referrers of the registry adapter
(attach, referrers, fetch_artifact) against the test registry, with and without the referrers API."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from factory.adapters.registry import (
    CREATED,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    BadDigest,
    InvalidArtifact,
    MalformedDocument,
    RegistryAccessDenied,
    RegistryClient,
    RegistryError,
)
from factory.adapters.registry.credentials import Credential, static_credentials
from factory.core import lockfile
from factory.core.errors import InputError
from factory.core.exports import sbom
from factory.core.lockfile import Lock, Pin
from tests.registry_server import RegistryServer, sha256

NS = "dev.scitrera"
HASH = {n: "sha256:" + hashlib.sha256(n.encode()).hexdigest() for n in ("a", "b", "c", "d", "e", "f")}
LABELS = {
    f"{NS}.cuda_version": "13.0.3",
    f"{NS}.nccl_version": "2.30.7",
    f"{NS}.python_version": "3.12",
    f"{NS}.os": "ubuntu 24.04",
    f"{NS}.cuda_sass": "sm_90 sm_100 sm_120",
    f"{NS}.vllm_version": "0.17.0",
    "org.opencontainers.image.version": "0.17.0-t5",
}
REF = "docker.io/scitrera/dgx-spark-vllm:0.17.0-t5"
CREATED_AT = "2026-12-01T18:02:11Z"
SIGNATURE = "application/vnd.example.signature+json"


def make_lock(pins: tuple[Pin, ...] | None = None) -> Lock:
    """A lock as `factory lock` writes it: rendered and parsed back, so the test runs on what `read` returns."""
    header = {
        "image": ("0.17.0-t5 (vllm, source mode)",),
        "input-digest": ("sha256:" + "1" * 64,),
        "platform": ("linux/arm64 (aarch64-manylinux_2_39)",),
        "python": ("3.12",),
        "index": ("https://pypi.org/simple", "https://***@private.example/simple"),
        "resolved": ("2026-12-01T18:02:11Z by uv 0.13.9",),
        "parent": ("2.10.0-v2-cu131",),
        "built": ("torch==2.10.0", "vllm==0.17.0"),
        "unlocked": ("flashinfer-cubin==0.6.5 (not locked: https://***@flashinfer.ai/whl/cu130 could not be "
                     "reached when locked)",),
    }
    pins = pins or (
        Pin(name="numpy", version="2.2.6", hashes=(HASH["b"], HASH["a"]), layer="base", via=("(parent)",)),
        Pin(name="PyYAML", version="6.0.2", hashes=(HASH["c"],), layer="vllm", via=("vllm",)),
        Pin(name="nvidia-nccl-cu13", version="2.30.7+cu13", hashes=(HASH["d"],), layer="vllm"),
        Pin(name="transformers", version="5.3.0", hashes=(HASH["e"],), layer="transformers", via=("vllm",)),
    )
    lock = Lock(header=header, pins=pins)
    return lockfile.parse(lockfile.render(lock), "locks/0.17.0-t5.txt")


def document(lock: Lock | None = None, labels: dict[str, str] | None = None, **kw) -> dict:
    args = {"image_ref": REF, "namespace": NS, "created": CREATED_AT} | kw
    return sbom.cyclonedx(lock or make_lock(), LABELS if labels is None else labels, **args)


def by_name(doc: dict) -> dict[str, dict]:
    return {c["bom-ref"]: c for c in doc["components"]}


def props(component: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for prop in component.get("properties", ()):
        out.setdefault(prop["name"].removeprefix("spark-image-factory:"), []).append(prop["value"])
    return out


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------


def test_the_document_is_cyclonedx_1_5_about_the_image():
    doc = document()
    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.5", 1)
    assert doc["serialNumber"].startswith("urn:uuid:")
    meta = doc["metadata"]
    assert meta["timestamp"] == CREATED_AT
    assert meta["tools"]["components"][0]["name"] == "spark-image-factory"
    image = meta["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "docker.io/scitrera/dgx-spark-vllm",
                                                                 "0.17.0-t5")
    facts = props(image)
    assert facts["lock:platform"] == ["linux/arm64 (aarch64-manylinux_2_39)"]
    assert facts["lock:parent"] == ["2.10.0-v2-cu131"]
    assert facts["lock:content-digest"] == [lockfile.content_digest(make_lock())]
    assert facts["label:cuda_sass"] == ["sm_90 sm_100 sm_120"]
    assert "purl" not in image  # no digest in the reference: nothing to pin the image by


def test_the_image_version_comes_from_the_tag_without_a_version_label_and_its_digest_is_a_purl():
    digest = "sha256:" + "ab" * 32
    doc = document(labels={}, image_ref=f"registry.example:5000/team/vllm:0.17.0-t4@{digest}")
    image = doc["metadata"]["component"]
    assert (image["name"], image["version"]) == ("registry.example:5000/team/vllm", "0.17.0-t4")
    assert image["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert image["purl"] == (f"pkg:oci/vllm@sha256%3A{'ab' * 32}?repository_url=registry.example:5000/team/vllm"
                             "&tag=0.17.0-t4")
    by_digest = document(labels={}, image_ref=f"registry.example/vllm@{digest}")["metadata"]["component"]
    assert "version" not in by_digest and by_digest["name"] == "registry.example/vllm"


def test_every_pin_is_a_library_with_its_purl_hashes_and_layer():
    components = by_name(document())
    numpy = components["pkg:pypi/numpy@2.2.6"]
    assert (numpy["type"], numpy["name"], numpy["version"], numpy["purl"]) == (
        "library", "numpy", "2.2.6", "pkg:pypi/numpy@2.2.6")
    assert numpy["hashes"] == [{"alg": "SHA-256", "content": h} for h in sorted(HASH[n][7:] for n in "ab")]
    assert props(numpy) == {"layer": ["base"], "origin": [sbom.HASH_LOCKED], "via": ["(parent)"]}
    # purl: the name lower-cased, a local version's '+' encoded
    assert "pkg:pypi/pyyaml@6.0.2" in components and components["pkg:pypi/pyyaml@6.0.2"]["name"] == "PyYAML"
    nccl = components["pkg:pypi/nvidia-nccl-cu13@2.30.7%2Bcu13"]
    assert nccl["version"] == "2.30.7+cu13" and props(nccl)["layer"] == ["vllm"]
    assert props(components["pkg:pypi/transformers@5.3.0"])["layer"] == ["transformers"]


def test_measured_system_facts_are_components():
    components = by_name(document())
    cuda = components["spark-image-factory:system:cuda-toolkit"]
    assert (cuda["type"], cuda["name"], cuda["version"]) == ("library", "cuda-toolkit", "13.0.3")
    assert props(cuda) == {"origin": [sbom.MEASURED], "label": [f"{NS}.cuda_version"]}
    assert components["spark-image-factory:system:nccl"]["version"] == "2.30.7"
    assert components["spark-image-factory:system:python"]["version"] == "3.12"
    os_component = components["spark-image-factory:system:os"]
    assert (os_component["type"], os_component["name"], os_component["version"]) == (
        "operating-system", "ubuntu", "24.04")
    assert props(os_component)["origin"] == [sbom.MEASURED]
    # a component verify did not measure is not made up
    without = by_name(document(labels={f"{NS}.os": "ubuntu 24.04"}))
    assert [r for r in without if r.startswith("spark-image-factory:system:")] == ["spark-image-factory:system:os"]


def test_built_and_unlocked_entries_are_components_that_say_so():
    components = by_name(document())
    torch = components["pkg:pypi/torch@2.10.0"]
    assert torch["version"] == "2.10.0" and "hashes" not in torch
    assert props(torch) == {"origin": [sbom.BUILT]}
    assert props(components["pkg:pypi/vllm@0.17.0"]) == {"origin": [sbom.BUILT]}
    cubin = components["pkg:pypi/flashinfer-cubin@0.6.5"]
    assert props(cubin) == {"origin": [sbom.UNLOCKED], "note": [
        "not locked: https://flashinfer.ai/whl/cu130 could not be reached when locked"]}


def test_a_built_entry_the_lock_also_pins_is_one_component_with_both_facts():
    pins = (Pin(name="nixl", version="1.5.1", hashes=(HASH["f"],), layer="nixl"),)
    lock = make_lock(pins)
    lock = Lock(header={**lock.header, "built": ("nixl==1.5.1",)}, pins=lock.pins, layers=lock.layers)
    nixl = [c for c in document(lock)["components"] if c["name"] == "nixl"]
    assert len(nixl) == 1 and props(nixl[0])["origin"] == [sbom.HASH_LOCKED, sbom.BUILT]


def test_equal_input_gives_equal_bytes_and_the_components_are_sorted():
    lock = make_lock()
    first = sbom.encode(document(lock))
    shuffled = list(lock.pins)
    random.Random(7).shuffle(shuffled)
    labels = dict(reversed(list(LABELS.items())))
    again = sbom.encode(document(Lock(header=lock.header, pins=tuple(shuffled), layers=lock.layers), labels))
    assert first == again
    names = [c["name"].lower() for c in json.loads(first)["components"]]
    assert names == sorted(names)
    other = document(lock, created="2026-12-02T00:00:00+00:00")
    assert other["serialNumber"] != json.loads(first)["serialNumber"]


def test_no_url_in_the_document_carries_user_info():
    text = sbom.encode(document()).decode()
    assert "***" not in text and "@private.example" not in text
    assert "https://private.example/simple" in text  # the index is named, without its user-info


@pytest.mark.parametrize(("kw", "message"), [
    ({"created": "yesterday"}, "is not an RFC 3339 time"),
    ({"created": "2026-12-01T18:02:11"}, "with a zone"),
    ({"created": "2026-12-01"}, "is not an RFC 3339 time"),
    ({"image_ref": ""}, "is empty"),
    ({"image_ref": "https://registry.example/vllm:1"}, "is not 'registry/repository"),
    ({"image_ref": "user:secret@registry.example/vllm:1"}, "is not 'registry/repository"),
    ({"namespace": ""}, "label namespace"),
    ({"labels": {f"{NS}.os": 24}}, "is not a string to a string"),
])
def test_bad_input_is_one_clear_error(kw, message):
    labels = kw.pop("labels", None)
    with pytest.raises(InputError, match=message) as info:
        document(labels=labels, **kw)
    assert "secret" not in str(info.value)


def test_a_header_entry_that_is_not_a_requirement_is_an_error():
    lock = make_lock()
    lock = Lock(header={**lock.header, "built": ("torch at its newest",)}, pins=lock.pins, layers=lock.layers)
    with pytest.raises(InputError, match="lock header 'built': 'torch at its newest' is not 'name==version"):
        document(lock)


# ---------------------------------------------------------------------------------------------
# referrers in a registry
# ---------------------------------------------------------------------------------------------

LABELS_ARM = {f"{NS}.vllm_version": "0.17.0"}


def client(**kw) -> RegistryClient:
    return RegistryClient(credentials=None, timeout=5, **kw)


def referrers_tag(digest: str) -> str:
    return digest.replace(":", "-")


@pytest.fixture(params=[True, False], ids=["referrers-api", "tag-schema"])
def server(request):
    with RegistryServer(referrers_api=request.param) as srv:
        yield srv


def test_two_artifacts_attached_to_one_image_are_read_back(server):
    image = server.add_index("scitrera/vllm", "0.17.0-t5", {"linux/arm64": LABELS_ARM})
    ref = server.ref("scitrera/vllm", "0.17.0-t5")
    with client() as c:
        subject = c.descriptor(ref)
        assert subject == {"mediaType": OCI_INDEX, "digest": image.digest,
                           "size": len(server.manifests[image.digest][0])}
        sbom_digest = c.attach(ref, subject["digest"], subject["mediaType"], subject["size"], sbom.MEDIA_TYPE,
                               b'{"bomFormat": "CycloneDX"}', {CREATED: CREATED_AT, "note": "sbom"})
        sig_digest = c.attach(ref, image.digest, OCI_INDEX, subject["size"], SIGNATURE, b"signature", {})
        assert sbom_digest != sig_digest
        found = c.referrers(ref, image.digest)
        assert [e["digest"] for e in found] == [sbom_digest, sig_digest]
        assert [e["artifactType"] for e in found] == [sbom.MEDIA_TYPE, SIGNATURE]
        assert found[0]["mediaType"] == OCI_MANIFEST
        assert found[0]["annotations"] == {CREATED: CREATED_AT, "note": "sbom"}
        assert CREATED in found[1]["annotations"]  # set when the caller gives none
        assert [e["digest"] for e in c.referrers(ref, image.digest, SIGNATURE)] == [sig_digest]
        assert c.fetch_artifact(ref, sbom_digest) == b'{"bomFormat": "CycloneDX"}'
        assert c.fetch_artifact(ref, sig_digest) == b"signature"
        # nothing is attached to the platform's manifest
        assert c.referrers(ref, image.manifests["linux/arm64"]) == []
    manifest = json.loads(server.manifests[sbom_digest][0])
    assert manifest["artifactType"] == sbom.MEDIA_TYPE and manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"] == {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}
    assert manifest["subject"] == subject
    assert manifest["layers"][0]["mediaType"] == sbom.MEDIA_TYPE
    tag = referrers_tag(image.digest)
    if server.referrers_api:
        assert tag not in server.tags["scitrera/vllm"]  # the registry lists referrers itself
    else:
        index = json.loads(server.manifests[server.tags["scitrera/vllm"][tag]][0])
        assert index["mediaType"] == OCI_INDEX
        assert [(m["digest"], m["artifactType"]) for m in index["manifests"]] == [
            (sbom_digest, sbom.MEDIA_TYPE), (sig_digest, SIGNATURE)]
        assert any(r.path.startswith("/v2/scitrera/vllm/referrers/") and r.status == 404 for r in server.requests)


def test_an_sbom_round_trips_through_the_registry(server):
    image = server.add_index("scitrera/vllm", "0.17.0-t5", {"linux/arm64": LABELS_ARM})
    ref = server.ref("scitrera/vllm", "0.17.0-t5")
    doc = document(image_ref=f"{ref}@{image.digest}")
    with client() as c:
        subject = c.descriptor(ref)
        c.attach(ref, subject["digest"], subject["mediaType"], subject["size"], sbom.MEDIA_TYPE, sbom.encode(doc),
                 {CREATED: CREATED_AT})
        (entry,) = c.referrers(ref, image.digest, sbom.MEDIA_TYPE)
        back = json.loads(c.fetch_artifact(ref, entry["digest"]))
    assert back == doc
    assert back["metadata"]["component"]["hashes"][0]["content"] == image.digest.split(":")[1]


def test_attaching_the_same_artifact_again_changes_nothing(server):
    image = server.add_single("img", "v1", LABELS_ARM)
    ref = server.ref("img", "v1")
    size = len(server.manifests[image.digest][0])
    args = (ref, image.digest, "application/vnd.docker.distribution.manifest.v2+json", size, sbom.MEDIA_TYPE,
            b"{}\n", {CREATED: CREATED_AT})
    with client() as c:
        first = c.attach(*args)
        uploads = sum(r.method == "POST" for r in server.requests)
        assert c.attach(*args) == first
        assert sum(r.method == "POST" for r in server.requests) == uploads  # blobs there already: no upload
        assert [e["digest"] for e in c.referrers(ref, image.digest)] == [first]


def test_an_image_without_artifacts_has_no_referrers(server):
    image = server.add_index("img", "v1", {"linux/arm64": LABELS_ARM})
    with client() as c:
        assert c.referrers(server.ref("img", "v1"), image.digest) == []
        assert c.referrers(server.ref("no/such/repo", "v1"), image.digest) == []


def test_the_fallback_tag_replaces_what_is_not_an_index():
    with RegistryServer(referrers_api=False) as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": LABELS_ARM})
        srv.add_single("img", referrers_tag(image.digest), LABELS_ARM)  # something else under the tag
        ref = srv.ref("img", "v1")
        with client() as c:
            assert c.referrers(ref, image.digest) == []
            digest = c.attach(ref, image.digest, OCI_INDEX, 100, sbom.MEDIA_TYPE, b"{}", {})
            assert [e["digest"] for e in c.referrers(ref, image.digest)] == [digest]


def test_a_referrers_index_of_the_wrong_shape_is_one_clear_error():
    with RegistryServer(referrers_api=False) as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": LABELS_ARM})
        entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "cd" * 32, "size": 9, "artifactType": ["a/b"]}
        srv.put_manifest("img", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode(),
                         OCI_INDEX, referrers_tag(image.digest))
        with client() as c, pytest.raises(MalformedDocument, match="entry 0 of the referrers index .* 'artifactType' "
                                                                   "that is a list, not a string"):
            c.referrers(srv.ref("img", "v1"), image.digest)


def test_referrers_are_read_across_pages():
    with RegistryServer() as srv:
        srv.referrers_page = 2
        image = srv.add_index("img", "v1", {"linux/arm64": LABELS_ARM})
        ref = srv.ref("img", "v1")
        with client() as c:
            digests = [c.attach(ref, image.digest, OCI_INDEX, 100, SIGNATURE, f"sig {n}".encode(), {})
                       for n in range(5)]
            assert [e["digest"] for e in c.referrers(ref, image.digest)] == digests
        pages = [r for r in srv.requests if "/referrers/" in r.path]
        assert len(pages) == 3 and "last=" in pages[-1].path


def test_push_blob_with_a_relative_upload_location():
    with RegistryServer() as srv:
        srv.upload_base = ""
        with client() as c:
            digest = c.push_blob(srv.ref("img", "v1"), b"some bytes")
        assert digest == sha256(b"some bytes") and srv.blobs[digest] == b"some bytes"
        put = [r for r in srv.requests if r.method == "PUT"]
        assert len(put) == 1 and f"digest={digest.replace(':', '%3A')}" in put[0].path and "_state=" in put[0].path


def test_an_upload_location_on_another_host_is_not_followed():
    with RegistryServer() as srv:
        srv.upload_base = "http://127.0.0.2:9"
        with client() as c, pytest.raises(RegistryError, match="on another host .*127.0.0.2:9.* not followed"):
            c.push_blob(srv.ref("img", "v1"), b"some bytes")
        assert not any(r.method == "PUT" for r in srv.requests)


def test_pushing_needs_credentials_and_uses_a_push_token():
    user, password = "alice", "pa55-w0rd-xyz"
    with RegistryServer(auth="bearer", users={user: password}) as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": LABELS_ARM})
        ref = srv.ref("img", "v1")
        with client() as c, pytest.raises(RegistryAccessDenied, match="no credentials are configured"):
            c.attach(ref, image.digest, OCI_INDEX, 100, SIGNATURE, b"sig", {})
        creds = static_credentials({srv.host: Credential(user, password)})
        with RegistryClient(credentials=creds, timeout=5) as c:
            digest = c.attach(ref, image.digest, OCI_INDEX, 100, SIGNATURE, b"sig", {})
            assert c.fetch_artifact(ref, digest) == b"sig"
        scopes = [r.path for r in srv.requests if r.path.startswith("/token") and r.account == user]
        assert any("pull%2Cpush" in s for s in scopes)


def test_a_tampered_artifact_is_caught():
    with RegistryServer() as srv:
        image = srv.add_index("img", "v1", {"linux/arm64": LABELS_ARM})
        ref = srv.ref("img", "v1")
        with client() as c:
            digest = c.attach(ref, image.digest, OCI_INDEX, 100, sbom.MEDIA_TYPE, b'{"a": 1}', {})
            srv.tamper(sha256(b'{"a": 1}'), b'{"a": 2}')
            with pytest.raises(BadDigest, match="altered or corrupted"):
                c.fetch_artifact(ref, digest)
            with pytest.raises(RegistryError, match="not an artifact manifest"):
                c.fetch_artifact(ref, image.digest)


@pytest.mark.parametrize(("change", "message"), [
    ({"subject_digest": "sha256:nothex"}, "cannot attach the artifact for .*: invalid sha256 digest"),
    ({"subject_media_type": "text/plain"}, "is not an image manifest or index"),
    ({"subject_size": 0}, "is not a positive number of bytes"),
    ({"artifact_type": "cyclonedx"}, "is not a media type"),
    ({"data": "text"}, "its data must be bytes"),
    ({"annotations": {"n": 1}}, "annotations must map strings to strings"),
])
def test_a_bad_artifact_is_one_clear_usage_error(change, message):
    args = {"subject_digest": "sha256:" + "ab" * 32, "subject_media_type": OCI_INDEX, "subject_size": 100,
            "artifact_type": sbom.MEDIA_TYPE, "data": b"{}", "annotations": {}} | change
    with client() as c, pytest.raises(InvalidArtifact, match=message) as info:
        c.attach("127.0.0.1:9/img:v1", **args)
    assert info.value.exit_code == 2
