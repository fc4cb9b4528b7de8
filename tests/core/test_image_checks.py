"""The pure image checks: version comparison and the pip CUDA report, on Findings and labels (no filesystem)."""

from __future__ import annotations

import pytest

from factory.core.findings import Findings
from factory.core.release_versions import versions_equal


@pytest.mark.parametrize(
    ("component", "label", "found", "equal"),
    [
        ("nccl", "2.29.2-1", "2.29.2", True),
        ("nccl", "2.29.2-1", "2.29.3", False),
        ("torch", "2.10.0", "2.10.0+cu131", True),
        ("torch", "2.10.0", "2.9.1", False),
        ("cuda", "13.1", "13.1.0", True),
        ("python", "3.12", "3.12.3", True),
        ("python", "3.12", "3.11", False),
        ("ubuntu", "24.04", "24.04", True),
        ("transformers", "5.0.0rc3", "5.0.0rc3", True),
        ("ubuntu", "noble", "noble", True),
    ],
)
def test_versions_equal(component, label, found, equal):
    assert versions_equal(component, label, found) is equal


def test_pip_cuda_components_of_another_cuda_minor_are_mismatches():
    from factory.core.image_checks import pip_cuda_report, verify_pip_cuda

    findings = Findings(cuda_dists={"nvidia-cuda-runtime": "13.0.96", "nvidia-nvjitlink": "13.5.37",
                                    "nvidia-cublas": "13.1.1.3", "cuda-bindings": "13.4.4"})
    labels = {"dev.scitrera.cuda_version": "13.0.3"}
    found = verify_pip_cuda(findings, labels, "dev.scitrera")
    assert [(m.component, m.found, m.where) for m in found] == [("cuda", "13.5.37", "pip nvidia-nvjitlink")]
    assert found[0].message == ("cuda: pip's nvidia-nvjitlink 13.5.37 is CUDA 13.5, but label "
                                "dev.scitrera.cuda_version=13.0.3")
    # cuBLAS and the driver bindings have their own numbering: reported, never compared
    assert pip_cuda_report(findings, "13.0.3") == [
        ("cuda-bindings", "13.4.4", "own numbering"), ("nvidia-cublas", "13.1.1.3", "own numbering"),
        ("nvidia-cuda-runtime", "13.0.96", "same CUDA"),
        ("nvidia-nvjitlink", "13.5.37", "CUDA 13.5, not the image's 13.0")]
    assert verify_pip_cuda(findings, {}, "dev.scitrera") == []  # no CUDA label (an extra's own check): nothing
