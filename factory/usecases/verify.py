"""Verification: every label of an image must be a fact of its content.

The image is read, never run: its filesystem is exported and scanned (`factory.adapters.rootfs.scan`), and
the findings judged against its labels (`factory.core.image_checks`), so an arm64 image can be verified on an
x86 host without a GPU. What the scan measures and no matrix can promise (the OS, the GPU code torch carries)
is returned as labels to stamp on the image once it passed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.core import labels as L
from factory.core.findings import Mismatch
from factory.core.image_checks import measured_labels, verify
from factory.core.kinds import Kind
from factory.core.lockfile import Lock


@dataclass(frozen=True)
class Verification:
    """What `measure_local` found: the mismatches (none means every label is true) and the measured labels."""

    ref: str
    kind: str
    mismatches: tuple[Mismatch, ...] = ()
    measured: dict[str, str] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.ref, "kind": self.kind, "ok": self.ok,
                "mismatches": [vars(m) for m in self.mismatches],
                "measured_labels": dict(self.measured), "findings": self.findings}


def measure_local(ref: str, kind: str | None, namespace: str, *, expect_os: str | None = None,
                  lock: Lock | None = None) -> Verification:
    """Scan a local image and check its labels against what it really contains.

    `expect_os` ("ubuntu 24.04") is the OS the matrix's CUDA image promises; the image's own os-release must
    say the same. Labels the image already carries from an earlier stamp are checked like any other.
    """
    from factory.adapters import docker
    from factory.adapters.rootfs.scan import scan

    labels = docker.local_labels(ref)
    if labels is None:
        from factory.core.errors import InputError

        raise InputError(f"no local image {ref} (build it, or pull it first)")
    kind = kind or kind_of(labels, namespace)
    env = docker.image_env(ref)
    with tempfile.TemporaryDirectory(prefix="factory-verify-") as tmp:
        root = Path(tmp) / "rootfs"
        docker.export_rootfs(ref, root)
        findings = scan(root, env=env)
    mismatches = verify(findings, labels, namespace, kind)
    measured = measured_labels(findings, namespace)
    # the proof of a passed verify names the image it was made for: labels are inherited from the base, so a
    # vLLM image FROM a verified base carries the base's stamp, with the base's input digest
    measured[L.factory_key(namespace, "verified")] = labels.get(L.factory_key(namespace, "input_digest"), "")
    os_key = L.factory_key(namespace, "os")
    if expect_os and measured.get(os_key) != expect_os:
        mismatches.append(Mismatch(
            "os", os_key, expect_os, measured.get(os_key, ""), "/etc/os-release",
            f"os: the matrix's CUDA image promises {expect_os}, but the image's os-release says "
            f"{measured.get(os_key) or 'nothing readable'}"))
    if lock is not None:
        mismatches += compare_lock(findings.environment, lock)
    return Verification(ref=ref, kind=kind, mismatches=tuple(mismatches), measured=measured,
                        findings=findings.as_dict())


#: In every venv without being locked: the interpreter's own installer, seeded by `python -m venv`.
SEEDED = frozenset({"pip"})


def compare_lock(installed: dict[str, str], lock: Lock) -> list[Mismatch]:
    """Mismatches between an image's environment (name -> version, from its dist-infos) and its lock: a locked
    distribution missing or at another version, or one installed that the lock does not hold. What the image
    compiles (the lock's `built` lines) and pip, which `python -m venv` seeds, may be there unlocked."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    from factory.core.lockfile import canonical

    where = lock.value("image").split(" ", 1)[0]
    label = f"lock {where}"
    built = set()
    for text in lock.header.get("built", ()) + tuple(u.split(" ", 1)[0] for u in lock.header.get("unlocked", ())):
        try:
            built.add(canonical(Requirement(text).name))
        except InvalidRequirement:
            continue
    have = {canonical(k): v for k, v in installed.items()}
    out = []

    def same(a: str, b: str) -> bool:
        try:
            va, vb = Version(a), Version(b)
        except InvalidVersion:
            return a == b
        return va == vb or (va.public == vb.public and not (va.local and vb.local))

    for pin in lock.pins:
        found = have.get(pin.key)
        if found is None:
            out.append(Mismatch("lock", label, pin.version, "", "site-packages",
                                f"lock: {pin.name}=={pin.version} is locked but not installed"))
        elif not same(found, pin.version):
            out.append(Mismatch("lock", label, pin.version, found, "site-packages",
                                f"lock: {pin.name} is {found}, the lock says {pin.version}"))
    locked = {p.key for p in lock.pins}
    for name, version in sorted(have.items()):
        if name not in locked and name not in built and name not in SEEDED:
            out.append(Mismatch("lock", label, "", version, "site-packages",
                                f"lock: {name}=={version} is installed but not in the lock"))
    return out


def kind_of(labels: dict[str, str], namespace: str) -> Kind:
    """An image's kind from its labels: an extra layer names its layer, a vLLM image its vLLM, a base's runtime
    image says it is of the runtime flavor."""
    if L.factory_key(namespace, "extra") in labels:
        return "extra"
    if L.component_key(namespace, "vllm") in labels:
        return "vllm"
    return "runtime" if labels.get(L.factory_key(namespace, "flavor")) == "runtime" else "base"


def is_stamped(labels: dict[str, str], namespace: str) -> bool:
    """Whether this image (not its base) passed verify: the factory stamps its own input digest as `verified`."""
    verified = labels.get(L.factory_key(namespace, "verified"))
    return bool(verified) and verified == labels.get(L.factory_key(namespace, "input_digest"))
