"""A CycloneDX SBOM of one image, from its lock and what verify measured in it.

The lock (`locks/<image>.txt`) names every Python distribution of the image with the hashes of its files;
verify's labels name what no lock can: the CUDA toolkit, NCCL, the OS and the Python interpreter found in the
image's files. Together they are the image's bill of materials, written as CycloneDX 1.5 JSON so the usual
tools (Grype, Trivy, Dependency-Track) read it; the factory attaches it to the pushed image as an OCI referrer
(:meth:`factory.adapters.registry.RegistryClient.attach`).

Pure: no network, no clock (the caller passes `created`), and equal input gives equal bytes (:func:`encode`).
The document never carries credentials: the lock's index URLs are redacted when it is written, and any
user-info left in a URL is dropped here.

Example::

    doc = cyclonedx(lockfile.read(Path("locks/0.17.0-t5.txt")), labels | verification.measured,
                    image_ref="docker.io/scitrera/dgx-spark-vllm:0.17.0-t5", namespace="dev.scitrera",
                    created="2026-12-01T18:02:11Z")
    client.attach(ref, digest, media_type, size, MEDIA_TYPE, encode(doc), {...})
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from packaging.requirements import InvalidRequirement, Requirement

from factory import __version__
from factory.core.components import COMPONENT_MEANING
from factory.core.errors import InputError
from factory.core.labels import component_key, factory_key, oci_key
from factory.core.lockfile import Lock, Pin, content_digest
from factory.core.redact import redact

#: The media type of a CycloneDX JSON document (the artifact type of the referrer that carries it).
MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPEC_VERSION = "1.5"
#: Prefix of every property the factory sets (CycloneDX asks for namespaced property names).
PROPERTY = "spark-image-factory"

#: Values of the `spark-image-factory:origin` property: where a component's version comes from.
HASH_LOCKED = "hash-locked: installed from the lock with --require-hashes"
MEASURED = "measured from the image's files by verify"
BUILT = "compiled from source in the image (or the base it is built on)"
UNLOCKED = "not hash-locked: installed without a --hash pin"

#: Components only verify knows (label `<ns>.<component>_version`): component -> SBOM name.
_SYSTEM = {"cuda": "cuda-toolkit", "nccl": "nccl", "python": "python", "ucx": "ucx"}
#: Image facts verify stamps (labels `<ns>.<key>`), kept as properties of the image.
_IMAGE_FACTS = ("build_mode", "cuda_arch", "cuda_sass", "cuda_ptx", "verified")
#: Lock header keys kept as properties of the image, in this order.
_HEADER_FACTS = ("image", "input-digest", "platform", "python", "parent", "resolved", "index", "source")
_HASH_ALGORITHMS = {"sha256": "SHA-256", "sha512": "SHA-512"}
_ENTRY = re.compile(r"^(?P<requirement>[^()]+?)\s*(?:\((?P<note>.*?)\)?)?$")  # a note may be cut short


def cyclonedx(lock: Lock, labels: Mapping[str, str], *, image_ref: str, namespace: str,
              created: str) -> dict[str, Any]:
    """The CycloneDX 1.5 document of the image `image_ref`: one component per lock pin (its purl, file hashes and
    layer), per `built` and `unlocked` header entry, and per system fact verify measured (CUDA, NCCL, OS,
    Python); `labels` are the image's labels with verify's measurements. Components are sorted and the serial
    number derives from the content, so equal input gives an equal document."""
    _check_inputs(labels, image_ref, namespace, created)
    components: dict[str, dict[str, Any]] = {}

    def add(component: dict[str, Any]) -> None:
        ref = component["bom-ref"]
        if ref in components:  # e.g. a `built` entry the lock also pins: one component, both facts
            components[ref]["properties"] += component["properties"]
        else:
            components[ref] = component

    for pin in lock.pins:
        add(_pin_component(pin))
    for key, origin in (("built", BUILT), ("unlocked", UNLOCKED)):
        for entry in lock.header.get(key, ()):
            add(_entry_component(key, entry, origin))
    for component in _system_components(labels, namespace):
        add(component)
    for component in components.values():
        component["properties"] = _unique(component["properties"])

    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": "spark-image-factory",
                                      "version": __version__}]},
            "component": _image_component(lock, labels, image_ref, namespace),
        },
        "components": sorted(components.values(), key=lambda c: (c["name"].lower(), c.get("version", ""),
                                                                   c["bom-ref"])),
    }
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"{PROPERTY}:sbom:{hashlib.sha256(encode(doc)).hexdigest()}")
    return {"bomFormat": doc.pop("bomFormat"), "specVersion": doc.pop("specVersion"),
            "serialNumber": f"urn:uuid:{serial}", **doc}


def encode(doc: Mapping[str, Any]) -> bytes:
    """The document's bytes as attached to an image: sorted keys, so an equal document is an equal blob (and
    digest) whatever order it was built in."""
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# -- components ---------------------------------------------------------------------------------------------


def purl(name: str, version: str | None) -> str:
    """`pkg:pypi/<name>@<version>`: the name lower-cased with '_' as '-' (the purl spec's pypi rule), the version
    percent-encoded (a local version's '+' is `%2B`)."""
    text = "pkg:pypi/" + quote(name.lower().replace("_", "-"), safe=".-")
    return text + ("@" + quote(version, safe=".-_~") if version else "")


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": f"{PROPERTY}:{name}", "value": _no_userinfo(value)}


def _pin_component(pin: Pin) -> dict[str, Any]:
    hashes = []
    for digest in sorted(pin.hashes):
        algorithm, _, hexpart = digest.partition(":")
        if algorithm not in _HASH_ALGORITHMS or not hexpart:
            raise InputError(f"lock pin {pin.requirement()}: hash {digest[:20]!r} is not sha256:<hex>")
        hashes.append({"alg": _HASH_ALGORITHMS[algorithm], "content": hexpart})
    properties = [_prop("layer", pin.layer), _prop("origin", HASH_LOCKED)]
    if pin.via:
        properties.append(_prop("via", ", ".join(pin.via)))
    ref = purl(pin.name, pin.version)
    return {"type": "library", "bom-ref": ref, "name": pin.name, "version": pin.version, "purl": ref,
            "hashes": hashes, "properties": properties}


def _entry_component(key: str, entry: str, origin: str) -> dict[str, Any]:
    """A `built` or `unlocked` header entry, `name==version` with an optional `(why)`, as a component."""
    match = _ENTRY.match(entry.strip())
    try:
        if match is None:
            raise InvalidRequirement(entry)
        requirement = Requirement(match["requirement"])
    except InvalidRequirement:
        raise InputError(f"lock header {key!r}: {entry[:80]!r} is not 'name==version [(note)]'") from None
    pinned = [s.version for s in requirement.specifier if s.operator in ("==", "===") and "*" not in s.version]
    version = pinned[0] if len(pinned) == 1 and len(requirement.specifier) == 1 else None
    properties = [_prop("origin", origin)]
    if version is None:
        properties.append(_prop("requirement", str(requirement)))
    if match["note"]:
        properties.append(_prop("note", match["note"]))
    ref = purl(requirement.name, version)
    component: dict[str, Any] = {"type": "library", "bom-ref": ref, "name": requirement.name}
    if version:
        component["version"] = version
    return component | {"purl": ref, "properties": properties}


def _system_components(labels: Mapping[str, str], namespace: str) -> list[dict[str, Any]]:
    out = []
    for component, name in _SYSTEM.items():
        key = component_key(namespace, component)
        if labels.get(key):
            out.append({"type": "library", "bom-ref": f"{PROPERTY}:system:{name}", "name": name,
                        "version": labels[key], "description": COMPONENT_MEANING.get(component, name),
                        "properties": [_prop("origin", MEASURED), _prop("label", key)]})
    key = factory_key(namespace, "os")
    if labels.get(key):
        os_name, _, os_version = labels[key].strip().partition(" ")
        system_os: dict[str, Any] = {"type": "operating-system", "bom-ref": f"{PROPERTY}:system:os",
                                     "name": os_name}
        if os_version.strip():
            system_os["version"] = os_version.strip()
        out.append(system_os | {"description": "the image's OS (os-release ID and VERSION_ID)",
                                "properties": [_prop("origin", MEASURED), _prop("label", key)]})
    return out


def _image_component(lock: Lock, labels: Mapping[str, str], image_ref: str, namespace: str) -> dict[str, Any]:
    name, tag, digest = _split_ref(image_ref)
    component: dict[str, Any] = {"type": "container", "bom-ref": f"{PROPERTY}:image", "name": name}
    version = labels.get(oci_key("version")) or tag
    if version:
        component["version"] = version
    if digest:
        algorithm, _, hexpart = digest.partition(":")
        path = name.rsplit("/", 1)[-1]
        qualifiers = f"repository_url={quote(name, safe='/:.-_')}" + (f"&tag={quote(tag)}" if tag else "")
        component["purl"] = f"pkg:oci/{quote(path)}@{quote(digest, safe='')}?{qualifiers}"
        if algorithm in _HASH_ALGORITHMS:
            component["hashes"] = [{"alg": _HASH_ALGORITHMS[algorithm], "content": hexpart}]
    properties = [_prop(f"lock:{key}", value) for key in _HEADER_FACTS for value in lock.header.get(key, ())]
    properties.append(_prop("lock:content-digest", content_digest(lock)))
    properties += [_prop(f"label:{fact}", labels[factory_key(namespace, fact)]) for fact in _IMAGE_FACTS
                   if factory_key(namespace, fact) in labels]
    component["properties"] = properties
    return component


# -- input ----------------------------------------------------------------------------------------------------


def _check_inputs(labels: Mapping[str, str], image_ref: str, namespace: str, created: str) -> None:
    """One clear InputError for input an SBOM must not be written from."""
    if not isinstance(image_ref, str) or not image_ref.strip() or any(c.isspace() for c in image_ref):
        raise InputError(f"SBOM: image reference {image_ref!r} is empty or contains white space")
    if "://" in image_ref or "/" in image_ref.partition("@")[2] or image_ref.count("@") > 1:
        shown = "***@" + image_ref.rpartition("@")[2] if "/" in image_ref.rpartition("@")[2] else redact(image_ref)
        raise InputError(f"SBOM: image reference {shown!r} is not 'registry/repository[:tag][@digest]' (a "
                         "reference carries no URL scheme, user name or password)")
    if not namespace or not re.fullmatch(r"[a-z0-9]+(?:[.-][a-z0-9]+)*", namespace):
        raise InputError(f"SBOM: label namespace {namespace!r} is not like 'dev.scitrera'")
    bad = [k for k, v in labels.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise InputError(f"SBOM: label {bad[0]!r} is not a string to a string")
    try:
        when = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None or "T" not in created:
        raise InputError(f"SBOM: created {created!r} is not an RFC 3339 time with a zone, like 2026-12-01T18:02:11Z")


def _split_ref(image_ref: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of `registry/repository[:tag][@digest]`, without normalising it (the SBOM names the
    image as it was published)."""
    text, _, digest = image_ref.strip().partition("@")
    tag = None
    colon = text.rfind(":")
    if colon > text.rfind("/"):
        text, tag = text[:colon], text[colon + 1:]
    if not text or (digest and ":" not in digest) or tag == "":
        raise InputError(f"SBOM: image reference {image_ref!r} is not 'registry/repository[:tag][@digest]'")
    return text, tag, digest or None


def _no_userinfo(text: str) -> str:
    """`text` with the user-info of every URL in it removed (not just masked)."""
    return redact(text).replace("://***@", "://")


def _unique(properties: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for prop in properties:
        key = (prop["name"], prop["value"])
        if key not in seen:
            seen.add(key)
            out.append(prop)
    return out
