"""Verification: every label of an image must be a fact of its content.

The image is read, never run: its filesystem is exported and scanned (`factory.content`), so an arm64
image can be verified on an x86 host without a GPU. What the scan measures and no matrix can promise (the
OS, the GPU code torch carries) is returned as labels to stamp on the image once it passed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from factory import labels as L


@dataclass(frozen=True)
class Verification:
    """What `measure_local` found: the mismatches (none means every label is true) and the measured labels."""

    ref: str
    kind: str
    mismatches: tuple = ()
    measured: dict[str, str] = field(default_factory=dict)
    findings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict:
        return {"image": self.ref, "kind": self.kind, "ok": self.ok,
                "mismatches": [vars(m) for m in self.mismatches],
                "measured_labels": dict(self.measured), "findings": self.findings}


def measure_local(ref: str, kind: str | None, namespace: str, *, expect_os: str | None = None) -> Verification:
    """Scan a local image and check its labels against what it really contains.

    `expect_os` ("ubuntu 24.04") is the OS the matrix's CUDA image promises; the image's own os-release must
    say the same. Labels the image already carries from an earlier stamp are checked like any other.
    """
    from factory import content, docker

    labels = docker.local_labels(ref)
    if labels is None:
        from factory.errors import InputError

        raise InputError(f"no local image {ref} (build it, or pull it first)")
    kind = kind or kind_of(labels, namespace)
    env = docker.image_env(ref)
    with tempfile.TemporaryDirectory(prefix="factory-verify-") as tmp:
        root = Path(tmp) / "rootfs"
        docker.export_rootfs(ref, root)
        findings = content.scan(root, env=env)
    mismatches = list(content.verify(findings, labels, namespace, kind))
    measured = content.measured_labels(findings, namespace)
    # the proof of a passed verify names the image it was made for: labels are inherited from the base, so a
    # vLLM image FROM a verified base carries the base's stamp, with the base's input digest
    measured[L.factory_key(namespace, "verified")] = labels.get(L.factory_key(namespace, "input_digest"), "")
    os_key = L.factory_key(namespace, "os")
    if expect_os and measured.get(os_key) != expect_os:
        mismatches.append(content.Mismatch(
            "os", os_key, expect_os, measured.get(os_key, ""), "/etc/os-release",
            f"os: the matrix's CUDA image promises {expect_os}, but the image's os-release says "
            f"{measured.get(os_key) or 'nothing readable'}"))
    return Verification(ref=ref, kind=kind, mismatches=tuple(mismatches), measured=measured,
                        findings=findings.as_dict())


def kind_of(labels: dict[str, str], namespace: str) -> str:
    """An image's kind from its labels: an extra layer names its layer, a vLLM image its vLLM."""
    if L.factory_key(namespace, "extra") in labels:
        return "extra"
    return "vllm" if L.component_key(namespace, "vllm") in labels else "base"


def is_stamped(labels: dict[str, str], namespace: str) -> bool:
    """Whether this image (not its base) passed verify: the factory stamps its own input digest as `verified`."""
    verified = labels.get(L.factory_key(namespace, "verified"))
    return bool(verified) and verified == labels.get(L.factory_key(namespace, "input_digest"))
