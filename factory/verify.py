"""Verification: every component label of an image must equal what is really installed in it.

The image is read, never run: its filesystem is exported and scanned (`factory.content`), so an arm64
image can be verified on an x86 host without a GPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from factory import labels as L


def verify_local(ref: str, kind: str | None, namespace: str):
    """Mismatches between a local image's labels and its content (empty when every label is true)."""
    from factory import content, docker

    labels = docker.local_labels(ref)
    if labels is None:
        from factory.errors import InputError

        raise InputError(f"no local image {ref} (build it, or pull it first)")
    kind = kind or ("vllm" if L.component_key(namespace, "vllm") in labels else "base")
    with tempfile.TemporaryDirectory(prefix="factory-verify-") as tmp:
        root = Path(tmp) / "rootfs"
        docker.export_rootfs(ref, root)
        findings = content.scan(root)
    return content.verify(findings, labels, namespace, kind)
