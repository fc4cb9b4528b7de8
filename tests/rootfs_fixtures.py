"""Fake root filesystems for the rootfs tests: an image whose labels all tell the truth, a runtime image, labels."""

from __future__ import annotations

import json
import os
from pathlib import Path

from factory.adapters.rootfs.scan import scan
from factory.core.findings import Mismatch
from factory.core.image_checks import verify
from factory.core.labels import component_key
from tests.adapters.test_elf import write_elf

NS = "dev.scitrera"
SITE = "opt/venv/lib/python3.12/site-packages"

VERSIONS = {
    "ubuntu": "24.04",
    "python": "3.12",
    "cuda": "13.1.0",
    "nccl": "2.29.2-1",
    "torch": "2.10.0",
    "torchvision": "0.25.0",
    "torchaudio": "2.10.0",
    "triton": "3.6.0",
    "flashinfer": "0.6.4",
    "vllm": "0.17.0",
    "transformers": "4.57.6",
    "ray": "2.53.0",
}
BASE = ("ubuntu", "python", "cuda", "nccl", "torch", "torchvision", "torchaudio")
DISTS = {  # dist-info directory stem -> (METADATA Name, Version)
    "torch": ("torch", "2.10.0+cu131"),
    "torchvision": ("torchvision", "0.25.0"),
    "torchaudio": ("torchaudio", "2.10.0"),
    "triton": ("triton", "3.6.0"),
    "flashinfer_python": ("flashinfer-python", "0.6.4"),
    "vllm": ("vllm", "0.17.0"),
    "transformers": ("transformers", "4.57.6"),
    "ray": ("ray", "2.53.0"),
    "numpy": ("numpy", "2.2.6"),
}


def labels(kind: str = "vllm", **changes: str | None) -> dict[str, str]:
    versions = {**VERSIONS, **changes}
    components = BASE if kind == "base" else tuple(VERSIONS)
    return {component_key(NS, c): v for c, v in versions.items() if c in components and v is not None}


def put(root: Path, rel: str, text: str = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def link(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def dist(root: Path, site: str, stem: str, name: str, version: str) -> Path:
    return put(root, f"{site}/{stem}-{version}.dist-info/METADATA",
               f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nVersion: 0.0.0 in the body\n")


def make_image(root: Path, kind: str = "vllm", skip: tuple[str, ...] = ()) -> Path:
    """A root filesystem with everything the labels above promise (a CUDA 13 source-mode image)."""
    put(root, "etc/os-release", 'PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\n')
    put(root, "usr/bin/python3.12")
    link(root, "usr/bin/python3", "python3.12")
    put(root, "opt/venv/pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.12.3\n")
    link(root, "opt/venv/lib64", "lib")
    for stem, (name, version) in DISTS.items():
        if kind == "base" and stem not in ("torch", "torchvision", "torchaudio", "numpy"):
            continue
        if stem not in skip:
            dist(root, SITE, stem, name, version)
    torch_lib = root / SITE / "torch/lib"
    write_elf(torch_lib / "libtorch_cuda.so", ["libcudart.so.13", "libnccl.so.2", "libcusparse.so.12"],
              soname="libtorch_cuda.so")
    write_elf(torch_lib / "libc10.so", ["libstdc++.so.6"], soname="libc10.so")
    put(root, "usr/local/cuda-13.1/version.json",
        json.dumps({"cuda": {"name": "CUDA SDK", "version": "13.1.0"}, "cuda_cudart": {"version": "13.1.80"}}))
    link(root, "usr/local/cuda", "/usr/local/cuda-13.1")  # absolute, as in the real images
    write_elf(root / "usr/local/cuda-13.1/lib64/libcudart.so.13.1.80", ["libc.so.6"], soname="libcudart.so.13")
    link(root, "usr/local/cuda-13.1/lib64/libcudart.so.13", "libcudart.so.13.1.80")
    write_elf(root / "usr/local/lib/libnccl.so.2.29.2", ["libcudart.so.13"], soname="libnccl.so.2")
    link(root, "usr/local/lib/libnccl.so.2", "libnccl.so.2.29.2")
    put(root, "usr/local/include/nccl.h", "#define NCCL_MAJOR 2\n#define NCCL_MINOR 29\n#define NCCL_PATCH 2\n")
    put(root, "usr/lib/aarch64-linux-gnu/libc.so", "/* GNU ld script */\nGROUP ( libc.so.6 )\n")
    return root


def components(mismatches: list[Mismatch]) -> list[str]:
    return [m.component for m in mismatches]


def ubuntu_ld_so_conf(root: Path) -> None:
    put(root, "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n\n")
    put(root, "etc/ld.so.conf.d/aarch64-linux-gnu.conf",
        "# Multiarch support\n/usr/local/lib/aarch64-linux-gnu\n/lib/aarch64-linux-gnu\n/usr/lib/aarch64-linux-gnu\n")
    put(root, "etc/ld.so.conf.d/libc.conf", "# libc default configuration\n/usr/local/lib\n")


# --- runtime images: every library found, no build toolchain, a C compiler ---------------------------------

FLAVOR = f"{NS}.flavor"  # factory_key(NS, "flavor")
MULTIARCH_LIB = "usr/lib/aarch64-linux-gnu"


def runtime_labels(flavor: str | None = "runtime") -> dict[str, str]:
    return {**labels(), **({FLAVOR: flavor} if flavor else {})}


def make_runtime_image(root: Path) -> Path:
    """`make_image` completed the way a runtime image is: every library its objects need is where the loader
    looks (Ubuntu's and the CUDA image's ld.so.conf, the multiarch directory) and gcc is there."""
    make_image(root)
    ubuntu_ld_so_conf(root)
    put(root, "etc/ld.so.conf.d/988_cuda-13.conf", "/usr/local/cuda-13.1/lib64\n")
    for soname in ("libc.so.6", "libstdc++.so.6"):
        write_elf(root / MULTIARCH_LIB / soname, [], soname=soname)
    write_elf(root / "usr/local/cuda-13.1/lib64/libcusparse.so.12", ["libc.so.6"], soname="libcusparse.so.12")
    write_elf(root / "usr/bin/aarch64-linux-gnu-gcc-13", ["libc.so.6"])
    link(root, "usr/bin/gcc-13", "aarch64-linux-gnu-gcc-13")
    link(root, "usr/bin/gcc", "gcc-13")
    put(root, "usr/lib/gcc/aarch64-linux-gnu/13/cc1")
    return root


def runtime_mismatches(root: Path, **scan_kwargs) -> list[Mismatch]:
    return verify(scan(root, **scan_kwargs), runtime_labels(), NS, "vllm")
