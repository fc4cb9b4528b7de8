"""Labels that never lie: scan fake root filesystems and verify labels against what is really there."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from factory.adapters.rootfs import cuda as rootfs_cuda
from factory.adapters.rootfs import dists, libraries
from factory.adapters.rootfs.fatbin import KIND_ELF, KIND_PTX
from factory.adapters.rootfs.paths import resolve_in_root
from factory.adapters.rootfs.scan import scan
from factory.core.components import DIST_COMPONENTS
from factory.core.findings import Findings, Mismatch
from factory.core.image_checks import measured_labels, verify
from factory.core.labels import component_key
from factory.core.release_versions import versions_equal
from factory.core.toolchain import toolchain_kind
from tests.adapters.test_elf import gcc_library, needs_gcc, write_elf
from tests.adapters.test_fatbin import container, fat_entry

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


@pytest.fixture
def image(tmp_path) -> Path:
    return make_image(tmp_path / "rootfs")


def components(mismatches: list[Mismatch]) -> list[str]:
    return [m.component for m in mismatches]


# --- the truthful image ------------------------------------------------------------------------------------


def test_correct_image_has_no_mismatch(image):
    findings = scan(image)
    assert findings.components == {**VERSIONS, "nccl": "2.29.2", "cuda": "13.1.0", "torch": "2.10.0+cu131"}
    assert findings.locations["torch"] == f"/{SITE}/torch-2.10.0+cu131.dist-info"
    assert findings.locations["cuda"] == "/usr/local/cuda-13.1/version.json"
    assert findings.locations["nccl"] == "/usr/local/lib/libnccl.so.2.29.2"
    assert findings.locations["python"] == "/opt/venv/pyvenv.cfg"
    assert findings.locations["ubuntu"] == "/etc/os-release"
    assert findings.torch_cuda is True
    assert findings.cuda12_objects == ()
    assert findings.duplicates == {}
    assert verify(findings, labels(), NS, "vllm") == []
    json.dumps(findings.as_dict())


def test_base_image_with_base_labels_has_no_mismatch(tmp_path):
    root = make_image(tmp_path / "base", kind="base")
    assert verify(scan(root), labels("base"), NS, "base") == []


def test_findings_are_frozen(image):
    findings = scan(image)
    with pytest.raises(AttributeError):
        findings.torch_cuda = False  # type: ignore[misc]
    assert isinstance(findings, Findings)


# --- lies --------------------------------------------------------------------------------------------------


def test_wrong_version_in_a_dist_info(tmp_path):
    root = make_image(tmp_path / "r", skip=("torch",))
    dist(root, SITE, "torch", "torch", "2.9.1")
    [mismatch] = verify(scan(root), labels(), NS, "vllm")
    assert mismatch == Mismatch(
        "torch", "dev.scitrera.torch_version", "2.10.0", "2.9.1", f"/{SITE}/torch-2.9.1.dist-info",
        f"torch: label dev.scitrera.torch_version=2.10.0 but /{SITE}/torch-2.9.1.dist-info says 2.9.1",
    )
    assert str(mismatch) == mismatch.message


def test_cpu_only_torch(image):
    (image / SITE / "torch/lib/libtorch_cuda.so").unlink()
    findings = scan(image)
    assert findings.torch_cuda is False
    [mismatch] = verify(findings, labels(), NS, "vllm")
    assert (mismatch.component, mismatch.found) == ("torch", "cpu-only")
    assert "CPU-only build" in mismatch.message


def test_object_needing_cuda_12_in_a_cuda_13_image(image):
    bad = write_elf(image / SITE / "flash_attn_2_cuda.cpython-312-aarch64-linux-gnu.so",
                    ["libc10.so", "libcudart.so.12", "libcublas.so.12"], bits=64)
    write_elf(image / "usr/local/lib/libfine.so.1", ["libcusparse.so.12", "libcufft.so.12", "libcurand.so.10"])
    findings = scan(image)
    where = f"/{SITE}/{bad.name}"
    assert findings.cuda12_objects == (where,)
    assert findings.cuda12_needed[where] == ("libcudart.so.12", "libcublas.so.12")
    [mismatch] = verify(findings, labels(), NS, "vllm")
    assert (mismatch.component, mismatch.label, mismatch.where) == ("cuda-abi", "dev.scitrera.cuda_version", where)
    assert mismatch.found == "libcudart.so.12, libcublas.so.12"
    assert "needs libcudart.so.12, libcublas.so.12 from CUDA 12" in mismatch.message


def test_cuda_12_objects_are_fine_in_a_cuda_12_image(image):
    write_elf(image / "opt/venv/lib/python3.12/site-packages/x/_C.so", ["libcudart.so.12"], bits=32,
              byteorder="big")
    put(image, "usr/local/cuda-13.1/version.json", json.dumps({"cuda": {"version": "12.8.1"}}))
    os.rename(image / "usr/local/cuda-13.1/lib64/libcudart.so.13.1.80",
              image / "usr/local/cuda-13.1/lib64/libcudart.so.12.8.90")
    findings = scan(image)
    assert len(findings.cuda12_objects) == 1
    assert verify(findings, labels(cuda="12.8.1"), NS, "vllm") == []


@needs_gcc
def test_gcc_built_object_needing_libcudart_12_is_found(image, tmp_path):
    built = gcc_library(tmp_path / "build", "libuses12.so", needs=("libcudart.so.12",))
    target = image / "opt/venv/lib/python3.12/site-packages/thing/libuses12.so"
    target.parent.mkdir(parents=True)
    target.write_bytes(built.read_bytes())
    (image / "usr/local/lib/libcudart.so.12").write_bytes((built.parent / "libcudart.so.12").read_bytes())
    findings = scan(image)
    assert findings.cuda12_objects == ("/opt/venv/lib/python3.12/site-packages/thing/libuses12.so",)
    assert components(verify(findings, labels(), NS, "vllm")) == ["cuda-abi"]


def test_missing_component(tmp_path):
    root = make_image(tmp_path / "r", skip=("vllm",))
    [mismatch] = verify(scan(root), labels(), NS, "vllm")
    assert (mismatch.component, mismatch.expected, mismatch.found, mismatch.where) == ("vllm", "0.17.0", "", "")
    assert mismatch.message == ("vllm: label dev.scitrera.vllm_version=0.17.0 but the image has no vllm "
                                "distribution (*.dist-info) in any site-packages")


def test_missing_cuda_nccl_and_ubuntu(image):
    os.unlink(image / "usr/local/cuda")
    for rel in ("usr/local/cuda-13.1/version.json", "usr/local/cuda-13.1/lib64/libcudart.so.13.1.80",
                "usr/local/lib/libnccl.so.2.29.2", "usr/local/lib/libnccl.so.2", "usr/local/include/nccl.h"):
        os.unlink(image / rel)
    put(image, "etc/os-release", "ID=debian\nVERSION_ID=12\n")
    findings = scan(image)
    mismatches = verify(findings, labels(), NS, "vllm")
    assert components(mismatches) == ["ubuntu", "cuda", "nccl"]
    assert all(m.found == "" for m in mismatches)
    assert any("ID=debian" in note for note in findings.notes)


def test_unlabelled_component_of_the_kind(image):
    [mismatch] = verify(scan(image), labels(ray=None), NS, "vllm")
    assert (mismatch.component, mismatch.expected, mismatch.found) == ("ray", "", "2.53.0")
    assert "must carry label dev.scitrera.ray_version" in mismatch.message


def test_shadowed_duplicate_dist(image):
    other = "usr/local/lib/python3.12/dist-packages"
    dist(image, other, "torch", "torch", "2.9.1")
    dist(image, other, "transformers", "transformers", "4.57.6")
    findings = scan(image)
    assert findings.duplicates["torch"] == (("2.10.0+cu131", f"/{SITE}/torch-2.10.0+cu131.dist-info"),
                                            ("2.9.1", f"/{other}/torch-2.9.1.dist-info"))
    assert set(findings.duplicates) == {"torch", "transformers"}
    assert any("torch is installed 2 times" in note for note in findings.notes)
    [mismatch] = verify(findings, labels(), NS, "vllm")  # the transformers copy agrees with its label
    assert (mismatch.component, mismatch.found, mismatch.where) == ("torch", "2.9.1", f"/{other}/torch-2.9.1.dist-info")
    assert "shadowing" in mismatch.message


def test_duplicate_in_the_same_site_packages(image):
    dist(image, SITE, "vllm", "vllm", "0.16.0")
    findings = scan(image)
    assert [v for v, _ in findings.duplicates["vllm"]] == ["0.16.0", "0.17.0"]
    assert components(verify(findings, labels(), NS, "vllm")) == ["vllm"]


# --- NCCL --------------------------------------------------------------------------------------------------


def test_nccl_label_with_package_revision_matches_the_file_name(tmp_path):
    root = tmp_path / "r"
    (root / "usr/lib/aarch64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib/aarch64-linux-gnu/libnccl.so.2.29.2").write_bytes(b"")  # empty: the name is what counts
    findings = scan(root)
    assert findings.components == {"nccl": "2.29.2"}
    assert findings.locations["nccl"] == "/usr/lib/aarch64-linux-gnu/libnccl.so.2.29.2"
    only_nccl = {component_key(NS, "nccl"): "2.29.2-1"}
    assert [m for m in verify(findings, only_nccl, NS, "vllm") if m.expected] == []
    wrong = verify(findings, {component_key(NS, "nccl"): "2.28.3-1"}, NS, "vllm")
    assert [(m.component, m.expected, m.found) for m in wrong if m.expected] == [("nccl", "2.28.3-1", "2.29.2")]


def test_nccl_from_header_only(tmp_path):
    root = tmp_path / "r"
    put(root, "opt/nccl/include/nccl.h", "#define NCCL_MAJOR 2\n#define NCCL_MINOR 27\n#define NCCL_PATCH 7\n")
    assert scan(root).components["nccl"] == "2.27.7"


def test_nccl_wheel_next_to_torch_wins_and_other_copies_are_noted(image):
    dist(image, SITE, "nvidia_nccl_cu13", "nvidia-nccl-cu13", "2.28.9")
    (image / SITE / "nvidia/nccl/lib").mkdir(parents=True)
    (image / SITE / "nvidia/nccl/lib/libnccl.so.2").write_bytes(b"")
    findings = scan(image)
    assert findings.components["nccl"] == "2.28.9"
    assert findings.locations["nccl"] == f"/{SITE}/nvidia_nccl_cu13-2.28.9.dist-info"
    assert any("also has NCCL 2.29.2" in note for note in findings.notes)
    assert components(verify(findings, labels(), NS, "vllm")) == ["nccl"]
    assert verify(findings, labels(nccl="2.28.9"), NS, "vllm") == []


def test_scan_without_reading_objects_still_finds_nccl(image):
    findings = scan(image, check_objects=False)
    assert findings.components["nccl"] == "2.29.2"
    assert findings.cuda12_objects == ()


# --- robustness --------------------------------------------------------------------------------------------


def test_garbage_and_truncated_elf_files_do_not_crash_the_scan(image):
    (image / "usr/lib/libgarbage.so").write_bytes(b"\x7fELF" + os.urandom(200))
    (image / "usr/lib/libtrunc.so.1").write_bytes(
        (image / SITE / "torch/lib/libtorch_cuda.so").read_bytes()[:100])
    (image / "usr/lib/libempty.so").write_bytes(b"")
    (image / "usr/lib/notelf.so.3").write_bytes(os.urandom(64))
    findings = scan(image)
    assert any(n.startswith("/usr/lib/libtrunc.so.1: unreadable ELF") for n in findings.notes)
    assert verify(findings, labels(), NS, "vllm") == []


def test_unreadable_metadata_falls_back_to_the_directory_name(image):
    (image / SITE / "ray-2.53.0.dist-info/METADATA").unlink()
    findings = scan(image)
    assert findings.components["ray"] == "2.53.0"
    assert any("using the directory name" in note for note in findings.notes)


def test_absolute_cuda_symlink_resolves_inside_the_root(image, tmp_path):
    # The link is absolute (/usr/local/cuda-13.1): it must land in the root, not on this host.
    assert resolve_in_root(image, "/usr/local/cuda") == image / "usr/local/cuda-13.1"
    assert resolve_in_root(image, "usr/local/cuda/version.json") == image / "usr/local/cuda-13.1/version.json"

    # A link to a host path outside the root is read as that path inside the root: here, nothing.
    outside = tmp_path / "outside"
    put(outside, "version.json", json.dumps({"cuda": {"version": "99.0.0"}}))
    os.unlink(image / "usr/local/cuda")
    os.symlink(str(outside), image / "usr/local/cuda")
    assert resolve_in_root(image, "usr/local/cuda") is None
    findings = scan(image)
    assert "cuda" not in findings.components
    assert any("/usr/local/cuda is a link to" in note for note in findings.notes)
    assert components(verify(findings, labels(), NS, "vllm")) == ["cuda"]

    # `..` cannot climb above the root.
    os.unlink(image / "usr/local/cuda")
    os.symlink("../../../../../../../../usr/local/cuda-13.1", image / "usr/local/cuda")
    assert scan(image).locations["cuda"] == "/usr/local/cuda-13.1/version.json"


def test_chained_and_looping_symlinks(image):
    os.unlink(image / "usr/local/cuda")
    link(image, "etc/alternatives/cuda", "/usr/local/cuda-13.1")
    link(image, "usr/local/cuda", "/etc/alternatives/cuda")
    assert scan(image).components["cuda"] == "13.1.0"
    link(image, "loop/a", "b")
    link(image, "loop/b", "/loop/a")
    assert resolve_in_root(image, "loop/a/x") is None


def test_cuda_directory_without_the_link(image):
    os.unlink(image / "usr/local/cuda")
    findings = scan(image)
    assert findings.components["cuda"] == "13.1.0"
    assert any("no /usr/local/cuda link" in note for note in findings.notes)


def test_python_without_a_venv(tmp_path):
    root = tmp_path / "r"
    put(root, "usr/bin/python3.11")
    put(root, "usr/bin/python3.12")
    link(root, "usr/bin/python3", "python3.12")
    assert scan(root).components == {"python": "3.12"}
    os.unlink(root / "usr/bin/python3")
    findings = scan(root)
    assert findings.components == {"python": "3.12"}
    assert any("several Pythons" in note for note in findings.notes)


def test_scan_of_a_missing_root_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="root filesystem"):
        scan(tmp_path / "nope")


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


def test_dist_names_are_normalised():
    assert dists.normalize_name("Flashinfer_Python") == "flashinfer-python"
    assert DIST_COMPONENTS[dists.normalize_name("flashinfer.python")] == "flashinfer"


def test_egg_info_distributions_are_read(tmp_path):
    root = tmp_path / "r"
    put(root, "usr/local/lib/python3.12/dist-packages/ray-2.53.0-py3.12.egg-info/PKG-INFO",
        "Metadata-Version: 2.1\nName: ray\nVersion: 2.53.0\n")
    put(root, "usr/local/lib/python3.12/dist-packages/vllm-0.17.0-py3.12.egg-info",
        "Metadata-Version: 2.1\nName: vllm\nVersion: 0.17.0\n")
    findings = scan(root)
    assert (findings.components["ray"], findings.components["vllm"]) == ("2.53.0", "0.17.0")
    assert findings.components["python"] == "3.12"  # from the site-packages path, the last resort


def test_verify_rejects_an_unknown_kind(image):
    with pytest.raises(ValueError, match="unknown image kind"):
        verify(scan(image), labels(), NS, "image")  # type: ignore[arg-type]


def test_dist_info_and_egg_info_of_one_install_are_not_a_duplicate(tmp_path):
    root = tmp_path / "r"
    site = "usr/lib/python3/dist-packages"
    dist(root, site, "cryptography", "cryptography", "38.0.4")
    put(root, f"{site}/cryptography.egg-info/PKG-INFO", "Name: cryptography\nVersion: 38.0.4\n")
    assert scan(root).duplicates == {}


# --- extra layers (UCX + NIXL) --------------------------------------------------------------------------------


def extra_labels(**changes: str) -> dict[str, str]:
    return {**labels(), component_key(NS, "ucx"): "1.19.0", component_key(NS, "nixl"): "1.5.1",
            f"{NS}.extra": "nixl", f"{NS}.cuda_linked": "/opt/ucx/lib:/opt/nixl/lib", **changes}


def add_nixl(root: Path, *, cuda: int = 13, dist_name: str = "nixl-cu13", ucx: str = "1.19.0",
             nixl_cuda: int | None = None) -> Path:
    """What dockerfiles/nixl.Dockerfile installs: UCX under /opt/ucx, NIXL under /opt/nixl, NIXL's wheel."""
    put(root, "opt/ucx/lib/pkgconfig/ucx.pc", f"prefix=/opt/ucx\nName: ucx\nDescription: x\nVersion: {ucx}\n")
    write_elf(root / "opt/ucx/lib/libucs.so.0.0.0", ["libc.so.6"])
    write_elf(root / "opt/ucx/lib/ucx/libucm_cuda.so.0.0.0", [f"libcudart.so.{cuda}", "libucm.so.0"])
    write_elf(root / "opt/nixl/lib/aarch64-linux-gnu/libnixl.so",
              [f"libcudart.so.{nixl_cuda or cuda}", "libucp.so.0"])
    write_elf(root / "opt/nixl/lib/aarch64-linux-gnu/plugins/libplugin_UCX.so", ["libnixl.so"])
    dist(root, SITE, dist_name.replace("-", "_"), dist_name, "1.5.1")
    return root


def test_extra_layer_with_cuda_13_libraries_verifies(image):
    add_nixl(image)
    found = scan(image)
    assert found.components["ucx"] == "1.19.0" and found.locations["ucx"] == "/opt/ucx/lib/pkgconfig/ucx.pc"
    assert found.components["nixl"] == "1.5.1" and found.cuda_flavours == {"nixl": 13}
    assert found.cuda_runtime["/opt/ucx/lib/ucx/libucm_cuda.so.0.0.0"] == ("libcudart.so.13",)
    assert verify(found, extra_labels(), NS, "extra") == []


def test_nixl_built_for_cuda_12_in_a_cuda_13_image_is_refused(image):
    add_nixl(image, nixl_cuda=12)
    mismatches = verify(scan(image), extra_labels(), NS, "extra")
    messages = [m.message for m in mismatches]
    assert any("/opt/nixl/lib/aarch64-linux-gnu/libnixl.so needs libcudart.so.12" in m for m in messages), messages
    assert any("libcudart.so.12" in m and "from CUDA 12" in m for m in messages)  # the image-wide check too


def test_a_cuda_12_nixl_wheel_is_refused_by_its_name(image):
    add_nixl(image, dist_name="nixl-cu12")
    mismatches = verify(scan(image), extra_labels(), NS, "extra")
    assert [m.message for m in mismatches if m.component == "cuda-abi"] == [
        f"cuda-abi: /{SITE}/nixl_cu12-1.5.1.dist-info is the CUDA 12 build of nixl, but the image is CUDA 13"]


def test_extra_libraries_without_any_cuda_link_are_refused(image):
    add_nixl(image)
    os.remove(image / "opt/ucx/lib/ucx/libucm_cuda.so.0.0.0")  # UCX configured without --with-cuda
    mismatches = verify(scan(image), extra_labels(), NS, "extra")
    assert [m.where for m in mismatches] == ["/opt/ucx/lib"]
    assert "no library under /opt/ucx/lib links a CUDA 13 runtime" in mismatches[0].message


def test_extra_component_versions_are_checked(image):
    add_nixl(image, ucx="1.18.1")
    (image / SITE / "nixl_cu13-1.5.1.dist-info").rename(image / SITE / "other")
    mismatches = verify(scan(image), extra_labels(), NS, "extra")
    assert sorted(components(mismatches)) == ["nixl", "ucx"]
    assert any(m.message == "ucx: label dev.scitrera.ucx_version=1.19.0 but /opt/ucx/lib/pkgconfig/ucx.pc says 1.18.1"
               for m in mismatches)


# --- the OS ----------------------------------------------------------------------------------------------------


def test_os_is_measured_for_any_distribution(image):
    findings = scan(image)
    assert findings.os == "ubuntu 24.04" and findings.components["ubuntu"] == "24.04"
    put(image, "etc/os-release", 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="13"\n')
    findings = scan(image)
    assert findings.os == "debian 13" and "ubuntu" not in findings.components
    assert measured_labels(findings, NS) == {f"{NS}.os": "debian 13"}
    put(image, "etc/os-release", "NAME=nothing\n")
    assert scan(image).os is None


# --- GPU code: SASS and PTX --------------------------------------------------------------------------------------

TORCH_FATBIN = container(*(fat_entry(KIND_ELF, arch) for arch in (80, 90, 100, 110, 120))) + container(
    fat_entry(KIND_ELF, 100, "a", extended=True), fat_entry(KIND_ELF, 121, "a", extended=True))
TORCH_SASS = "sm_80 sm_90 sm_100 sm_100a sm_110 sm_120 sm_121a"


def torch_with_code(root: Path, fat: bytes = TORCH_FATBIN, **kwargs) -> Path:
    return write_elf(root / SITE / "torch/lib/libtorch_cuda.so", ["libcudart.so.13", "libnccl.so.2"],
                     soname="libtorch_cuda.so", sections={".nv_fatbin": fat}, **kwargs)


def arch_labels(**changes: str | None) -> dict[str, str]:
    extra = {f"{NS}.cuda_arch": "sm_121", **changes}
    return {**labels(), **{k if "." in k else f"{NS}.{k}": v for k, v in extra.items() if v is not None}}


def test_gpu_code_of_torch_vllm_and_flashinfer_is_recorded(image):
    torch = torch_with_code(image)
    vllm = f"/{SITE}/vllm/_C.abi3.so"
    write_elf(image / vllm.lstrip("/"), ["libc10.so"], sections={".nv_fatbin": container(
        fat_entry(KIND_ELF, 90, "a"), fat_entry(KIND_ELF, 100, "f", extended=True),
        fat_entry(KIND_ELF, 120, extended=True), fat_entry(KIND_PTX, 120, payload=b".version 9.0"))})
    fa2 = f"/{SITE}/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so"
    write_elf(image / fa2.lstrip("/"), [], sections={".nv_fatbin": container(fat_entry(KIND_ELF, 80),
                                                                              fat_entry(KIND_PTX, 80))})
    write_elf(image / SITE / "vllm/cumem_allocator.abi3.so", ["libcuda.so.1"])  # no GPU code: not listed
    dist(image, SITE, "flashinfer_jit_cache", "flashinfer-jit-cache", "0.6.4")
    jit = f"/{SITE}/flashinfer_jit_cache/jit_cache/batch_decode/batch_decode.so"
    write_elf(image / jit.lstrip("/"), [], sections={".nv_fatbin": container(fat_entry(KIND_ELF, 121, "a"))})
    findings = scan(image)
    where = f"/{SITE}/torch/lib/libtorch_cuda.so"
    assert torch.is_file() and findings.sass[where] == tuple(TORCH_SASS.split()) and findings.ptx[where] == ()
    assert findings.sass[vllm] == ("sm_90a", "sm_100f", "sm_120") and findings.ptx[vllm] == ("compute_120",)
    assert findings.sass[fa2] == ("sm_80",) and findings.ptx[fa2] == ("compute_80",)
    assert findings.device_objects == {"torch": (where,), "vllm": (vllm, fa2), "flashinfer": (jit,)}
    data = json.loads(json.dumps(findings.as_dict()))
    assert data["sass"][where] == TORCH_SASS.split() and data["device_objects"]["vllm"] == [vllm, fa2]
    assert measured_labels(findings, NS) == {f"{NS}.os": "ubuntu 24.04", f"{NS}.cuda_sass": TORCH_SASS,
                                                     f"{NS}.cuda_ptx": ""}
    assert verify(findings, arch_labels(), NS, "vllm") == []


def test_torch_without_a_fat_binary_measures_no_gpu_code(image):
    findings = scan(image)  # the fixture's libtorch_cuda.so has no .nv_fatbin
    assert findings.sass == {} and findings.device_objects == {}
    assert any("carries no CUDA device code" in note for note in findings.notes)
    assert measured_labels(findings, NS) == {f"{NS}.os": "ubuntu 24.04"}
    assert verify(findings, arch_labels(), NS, "vllm") == []  # nothing measured: no verdict on sm_121


@pytest.mark.parametrize(("fat", "ok"), [
    (container(*(fat_entry(KIND_ELF, a) for a in (80, 90, 100))), False),  # no 12.x SASS, no PTX
    (container(fat_entry(KIND_ELF, 80), fat_entry(KIND_PTX, 90)), True),  # compute_90 PTX JIT-compiles
    (container(fat_entry(KIND_ELF, 120, "a")), False),  # arch-specific: 12.0 only
    (container(fat_entry(KIND_ELF, 121, "a")), True),
    (container(fat_entry(KIND_ELF, 120, "f")), True),
    (container(fat_entry(KIND_ELF, 90), fat_entry(KIND_PTX, 90, "a")), False),
])
def test_torch_that_cannot_run_on_the_labelled_arch(image, fat, ok):
    torch_with_code(image, fat)
    mismatches = verify(scan(image), arch_labels(), NS, "vllm")
    if ok:
        assert mismatches == []
    else:
        [mismatch] = mismatches
        assert (mismatch.component, mismatch.label, mismatch.expected) == ("cuda-arch", f"{NS}.cuda_arch", "sm_121")
        assert mismatch.where == f"/{SITE}/torch/lib/libtorch_cuda.so"
        assert f"label {NS}.cuda_arch=sm_121 but /{SITE}/torch/lib/libtorch_cuda.so cannot run there" in \
            mismatch.message


def test_vllm_core_ops_that_cannot_run_on_the_labelled_arch(image):
    torch_with_code(image)
    write_elf(image / SITE / "vllm/_C.abi3.so", [], sections={".nv_fatbin": container(fat_entry(KIND_ELF, 90, "a"))})
    write_elf(image / SITE / "vllm/_flashmla_C.abi3.so", [],  # not a core-ops library: not judged
              sections={".nv_fatbin": container(fat_entry(KIND_ELF, 100, "f"))})
    [mismatch] = verify(scan(image), arch_labels(), NS, "vllm")
    assert mismatch.where == f"/{SITE}/vllm/_C.abi3.so" and "sm_90a is architecture-specific" in mismatch.message


def test_measured_labels_must_match_what_is_measured(image):
    torch_with_code(image)
    findings = scan(image)
    good = arch_labels(os="ubuntu 24.04", cuda_sass=TORCH_SASS, cuda_ptx="")
    assert verify(findings, good, NS, "vllm") == []
    bad = arch_labels(os="ubuntu 22.04", cuda_sass="sm_80 sm_90 sm_120", cuda_ptx="compute_120")
    mismatches = verify(findings, bad, NS, "vllm")
    assert [(m.component, m.expected, m.found) for m in mismatches] == [
        ("os", "ubuntu 22.04", "ubuntu 24.04"), ("cuda_sass", "sm_80 sm_90 sm_120", TORCH_SASS),
        ("cuda_ptx", "compute_120", "")]
    assert mismatches[1].where == f"/{SITE}/torch/lib/libtorch_cuda.so"
    write_elf(image / SITE / "torch/lib/libtorch_cuda.so", ["libcudart.so.13"])  # no fat binary: not measured
    [missing] = verify(scan(image), {**labels(), f"{NS}.cuda_ptx": ""}, NS, "vllm")
    assert missing.component == "cuda_ptx" and "no torch/lib/libtorch_cuda.so with CUDA device code" in \
        missing.message


# --- CUDA from the toolkit's files --------------------------------------------------------------------------------


def without_version_json(image: Path) -> Path:
    os.unlink(image / "usr/local/cuda-13.1/version.json")
    return image


def test_cuda_from_the_env_confirmed_by_libcudart(image):
    findings = scan(without_version_json(image), env={"CUDA_VERSION": "13.1.0", "PATH": "/usr/bin"})
    assert findings.components["cuda"] == "13.1.0" and findings.locations["cuda"] == rootfs_cuda.ENV_CUDA
    assert findings.cuda_facts == {"/usr/local/cuda-13.1/lib64/libcudart.so.13.1.80": "13.1.80",
                                   rootfs_cuda.ENV_CUDA: "13.1.0"}
    assert verify(findings, labels(), NS, "vllm") == []


def test_cuda_from_libcudart_alone_is_its_major_minor(image):
    findings = scan(without_version_json(image))
    assert findings.components["cuda"] == "13.1"
    assert findings.locations["cuda"] == "/usr/local/cuda-13.1/lib64/libcudart.so.13.1.80"
    assert verify(findings, labels(), NS, "vllm") == []  # the label 13.1.0 is a 13.1
    [mismatch] = verify(findings, labels(cuda="13.0.2"), NS, "vllm")
    assert mismatch.message == ("cuda: label dev.scitrera.cuda_version=13.0.2 but "
                                "/usr/local/cuda-13.1/lib64/libcudart.so.13.1.80 says 13.1")


def test_version_json_is_reported_when_there_is_no_env(image):
    findings = scan(image)
    assert (findings.components["cuda"], findings.locations["cuda"]) == ("13.1.0", "/usr/local/cuda-13.1/version.json")
    assert set(findings.cuda_facts) == {"/usr/local/cuda-13.1/version.json",
                                        "/usr/local/cuda-13.1/lib64/libcudart.so.13.1.80"}


def test_env_that_disagrees_with_the_files_is_a_mismatch(image):
    findings = scan(image, env={"CUDA_VERSION": "13.0.1"})
    assert findings.components["cuda"] == "13.1.0"  # the files, not the env
    assert any("env says CUDA_VERSION=13.0.1, but" in note for note in findings.notes)
    [mismatch] = verify(findings, labels(), NS, "vllm")
    assert mismatch.component == "cuda" and mismatch.message.startswith("cuda: the image's CUDA facts disagree: ")
    assert f"{rootfs_cuda.ENV_CUDA} says 13.0.1" in mismatch.message


def test_files_that_disagree_are_a_mismatch(image):
    put(image, "usr/local/cuda-13.1/include/cuda.h", "#define CUDA_VERSION 12080\n")
    findings = scan(image)
    assert findings.cuda_facts["/usr/local/cuda-13.1/include/cuda.h"] == "12.8"
    assert components(verify(findings, labels(), NS, "vllm")) == ["cuda"]


def test_env_without_any_cuda_file_is_not_a_cuda(image):
    os.unlink(image / "usr/local/cuda")
    shutil.rmtree(image / "usr/local/cuda-13.1")
    findings = scan(image, env={"CUDA_VERSION": "13.1.0"})
    assert "cuda" not in findings.components
    assert any("no CUDA file in the image confirms it" in note for note in findings.notes)
    [mismatch] = verify(findings, labels(), NS, "vllm")
    assert "no CUDA toolkit version (no /usr/local/cuda with libcudart.so.X.Y.Z" in mismatch.message
    assert "version.json" not in mismatch.message.split("(", 1)[0]


def test_nvidia_layout_cuda_h_and_nvcc_banner(tmp_path):
    """As in NVIDIA's images: lib64 and include link into targets/sbsa-linux; nvcc carries its banner."""
    root = tmp_path / "r"
    cuda = "usr/local/cuda-13.0"
    write_elf(root / cuda / "targets/sbsa-linux/lib/libcudart.so.13.0.96", [], soname="libcudart.so.13")
    link(root, f"{cuda}/targets/sbsa-linux/lib/libcudart.so.13", "libcudart.so.13.0.96")
    link(root, f"{cuda}/lib64", "targets/sbsa-linux/lib")
    put(root, f"{cuda}/targets/sbsa-linux/include/cuda.h", "/* x */\n#define CUDA_VERSION 13000\n")
    link(root, f"{cuda}/include", "targets/sbsa-linux/include")
    banner = b"\x00" * 5000 + b"Cuda compilation tools, release 13.0, V13.0.88\x00" + b"\x01" * 100
    (root / cuda / "bin").mkdir(parents=True)
    (root / cuda / "bin/nvcc").write_bytes(banner)
    link(root, "usr/local/cuda", "/usr/local/cuda-13.0")
    findings = scan(root, env={"CUDA_VERSION": "13.0.2"})
    assert findings.cuda_facts == {
        f"/{cuda}/targets/sbsa-linux/lib/libcudart.so.13.0.96": "13.0.96",
        f"/{cuda}/targets/sbsa-linux/include/cuda.h": "13.0",
        f"/{cuda}/bin/nvcc": "13.0.88",
        rootfs_cuda.ENV_CUDA: "13.0.2",
    }
    assert findings.components["cuda"] == "13.0.2"
    assert scan(root).components["cuda"] == "13.0"
    assert rootfs_cuda.nvcc_banner(root / cuda / "bin/nvcc", chunk=64) == ("13.0", "13.0.88")  # across chunks


# --- NCCL: the one the dynamic loader gives torch ------------------------------------------------------------


def nccl_file(root: Path, directory: str, version: str, *, wheel: bool = False) -> None:
    name = "libnccl.so.2" if wheel else f"libnccl.so.{version}"
    write_elf(root / directory / name, ["libcudart.so.13"], soname="libnccl.so.2")
    if not wheel:
        link(root, f"{directory}/libnccl.so.2", name)


def ubuntu_ld_so_conf(root: Path) -> None:
    put(root, "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n\n")
    put(root, "etc/ld.so.conf.d/aarch64-linux-gnu.conf",
        "# Multiarch support\n/usr/local/lib/aarch64-linux-gnu\n/lib/aarch64-linux-gnu\n/usr/lib/aarch64-linux-gnu\n")
    put(root, "etc/ld.so.conf.d/libc.conf", "# libc default configuration\n/usr/local/lib\n")


def test_ld_so_conf_order_and_includes(tmp_path):
    root = tmp_path / "r"
    ubuntu_ld_so_conf(root)
    put(root, "etc/ld.so.conf.d/zz-cuda.conf", "/usr/local/cuda/lib64 /usr/local/nvidia/lib:/usr/local/nvidia/lib64\n")
    put(root, "etc/ld.so.conf.d/loop.conf", "include ld.so.conf\n")
    assert libraries.ld_so_conf(root) == ["/usr/local/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
                                        "/usr/lib/aarch64-linux-gnu", "/usr/local/lib", "/usr/local/cuda/lib64",
                                        "/usr/local/nvidia/lib", "/usr/local/nvidia/lib64"]
    assert libraries.ld_so_conf(tmp_path / "empty") == []


def test_apt_nccl_in_the_multiarch_directory_shadows_usr_local_lib(image):
    ubuntu_ld_so_conf(image)
    nccl_file(image, "usr/lib/aarch64-linux-gnu", "2.27.7")  # the apt package
    findings = scan(image)
    assert findings.components["nccl"] == "2.27.7"
    assert findings.locations["nccl"] == "/usr/lib/aarch64-linux-gnu/libnccl.so.2.27.7"
    assert findings.resolved == {"libnccl.so.2": "/usr/lib/aarch64-linux-gnu/libnccl.so.2.27.7"}
    assert any("is the one torch's libtorch_cuda.so loads (/usr/lib/aarch64-linux-gnu/libnccl.so.2 through "
               "/etc/ld.so.conf), but the image also has NCCL 2.29.2 at /usr/local/include/nccl.h, 2.29.2 at "
               "/usr/local/lib/libnccl.so.2.29.2" in note
               for note in findings.notes)
    assert components(verify(findings, labels(), NS, "vllm")) == ["nccl"]
    assert scan(image, check_objects=False).components["nccl"] == "2.27.7"


def test_ld_library_path_comes_before_ld_so_conf(image):
    ubuntu_ld_so_conf(image)
    nccl_file(image, "usr/lib/aarch64-linux-gnu", "2.27.7")
    findings = scan(image, env={"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/lib"})
    assert findings.locations["nccl"] == "/usr/local/lib/libnccl.so.2.29.2"
    assert verify(findings, labels(), NS, "vllm") == []


def test_the_wheel_found_through_torchs_rpath_wins(image):
    write_elf(image / SITE / "torch/lib/libtorch_cuda.so", ["libcudart.so.13", "libnccl.so.2"],
              rpath="$ORIGIN/../../nvidia/cudnn/lib:$ORIGIN/../../nvidia/nccl/lib:$ORIGIN")
    ubuntu_ld_so_conf(image)
    nccl_file(image, "usr/lib/aarch64-linux-gnu", "2.27.7")
    nccl_file(image, f"{SITE}/nvidia/nccl/lib", "2.28.9", wheel=True)
    dist(image, SITE, "nvidia_nccl_cu13", "nvidia-nccl-cu13", "2.28.9")
    findings = scan(image, env={"LD_LIBRARY_PATH": "/usr/local/lib"})  # DT_RPATH is searched before it
    assert (findings.components["nccl"], findings.locations["nccl"]) == (
        "2.28.9", f"/{SITE}/nvidia_nccl_cu13-2.28.9.dist-info")
    assert findings.resolved["libnccl.so.2"] == f"/{SITE}/nvidia/nccl/lib/libnccl.so.2"
    assert any("through DT_RPATH $ORIGIN/../../nvidia/nccl/lib" in note and "2.27.7" in note and "2.29.2" in note
               for note in findings.notes)
    assert findings.cuda_dists == {"nvidia-nccl-cu13": "2.28.9"}


def test_runpath_comes_after_ld_library_path_and_foreign_candidates_are_passed_by(image):
    write_elf(image / SITE / "torch/lib/libtorch_cuda.so", ["libnccl.so.2"], runpath="/opt/a")
    nccl_file(image, "opt/a", "2.26.1")
    nccl_file(image, "opt/b", "2.25.1")
    where = f"/{SITE}/torch/lib/libtorch_cuda.so"
    assert libraries.find_library(image, where, "libnccl.so.2", env={"LD_LIBRARY_PATH": "/opt/b"}).path == \
        "/opt/b/libnccl.so.2"
    found = libraries.find_library(image, where, "libnccl.so.2")
    assert (found.path, found.via) == ("/opt/a/libnccl.so.2", "DT_RUNPATH /opt/a")
    (image / "opt/b/libnccl.so.2.25.1").write_bytes(b"")  # not ELF: the loader goes on
    write_elf(image / "opt/c/libnccl.so.2", [], machine=62)  # x86-64: the loader goes on
    found = libraries.find_library(image, where, "libnccl.so.2", env={"LD_LIBRARY_PATH": "/opt/b:/opt/c:relative"})
    assert found.path == "/opt/a/libnccl.so.2"
    assert [s.split(" ")[0] for s in found.skipped] == ["/opt/b/libnccl.so.2", "/opt/c/libnccl.so.2"]
    assert found.searched[:3] == ("/opt/b", "/opt/c", "/opt/a")
    assert scan(image).components["nccl"] == "2.26.1"


def test_a_library_the_loader_cannot_find_falls_back_to_the_ranking(image):
    findings = scan(image)  # no ld.so.conf: /usr/local/lib is not searched
    assert findings.locations["nccl"] == "/usr/local/lib/libnccl.so.2.29.2" and findings.resolved == {}
    assert any("the dynamic loader would find no libnccl.so.2" in note for note in findings.notes)


# --- pip CUDA distributions ------------------------------------------------------------------------------------


def test_pip_cuda_distributions_are_listed(image):
    for stem, name, version in [("nvidia_cuda_runtime", "nvidia-cuda-runtime", "13.0.96"),
                                ("nvidia_cublas", "nvidia-cublas", "13.1.0.3"),
                                ("nvidia_nvjitlink", "nvidia-nvjitlink", "13.0.88"),
                                ("cuda_bindings", "cuda-bindings", "13.0.3"),
                                ("cuda_toolkit", "cuda-toolkit", "13.0.2"),
                                ("nvidia_ml_py", "nvidia-ml-py", "13.580.82")]:
        dist(image, SITE, stem, name, version)
    findings = scan(image)
    assert findings.cuda_dists == {"cuda-bindings": "13.0.3", "cuda-toolkit": "13.0.2", "nvidia-cublas": "13.1.0.3",
                                   "nvidia-cuda-runtime": "13.0.96", "nvidia-ml-py": "13.580.82",
                                   "nvidia-nvjitlink": "13.0.88"}
    assert findings.as_dict()["cuda_dists"]["cuda-bindings"] == "13.0.3"


def test_a_cuda_12_object_is_named_with_the_package_that_installed_it(image):
    """The review's cupy-cuda12x case: the finding must say which distribution brought the library."""
    bad = write_elf(image / SITE / "cupy_backends/cuda/libs/cublas.so", ["libcublas.so.12"], bits=64)
    info = dist(image, SITE, "cupy_cuda12x", "cupy-cuda12x", "13.6.0").parent
    (info / "RECORD").write_text("cupy_backends/cuda/libs/cublas.so,sha256=x,10\n"
                                 "cupy_cuda12x-13.6.0.dist-info/RECORD,,\n")
    findings = scan(image)
    where = f"/{SITE}/cupy_backends/cuda/libs/cublas.so"
    assert findings.owners == {where: "cupy-cuda12x 13.6.0"} and bad.exists()
    [mismatch] = verify(findings, labels(), NS, "vllm")
    assert f"{where} (installed by cupy-cuda12x 13.6.0) needs libcublas.so.12" in mismatch.message


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


@pytest.fixture
def runtime(tmp_path) -> Path:
    return make_runtime_image(tmp_path / "runtime")


def runtime_mismatches(root: Path, **scan_kwargs) -> list[Mismatch]:
    return verify(scan(root, **scan_kwargs), runtime_labels(), NS, "vllm")


def test_runtime_image_with_every_library_and_a_c_compiler_passes(runtime):
    findings = scan(runtime)
    assert (findings.unresolved, findings.toolchain, findings.c_compiler) == ((), (), "/usr/bin/gcc")
    assert verify(findings, runtime_labels(), NS, "vllm") == []
    data = json.loads(json.dumps(findings.as_dict()))
    assert (data["unresolved"], data["toolchain"], data["c_compiler"]) == ([], [], "/usr/bin/gcc")


def lone_object(root: Path, rel: str = "opt/app/lib/plugins/libplugin.so", **kwargs) -> str:
    """A root with one shared object that needs libx.so.1 (and nothing else); returns its image path."""
    write_elf(root / rel, ["libx.so.1"], **kwargs)
    return f"/{rel}"


@pytest.mark.parametrize("how", ["runpath-origin", "rpath-origin", "ld-library-path", "ld.so.conf.d",
                                 "multiarch", "lib"])
def test_a_library_is_found_the_way_the_loader_finds_it(tmp_path, how):
    root = tmp_path / "r"
    runpath = "$ORIGIN/..:/nonexistent" if how == "runpath-origin" else None
    rpath = "${ORIGIN}/../../x" if how == "rpath-origin" else None
    where = lone_object(root, runpath=runpath, rpath=rpath)
    env = {"LD_LIBRARY_PATH": "/nowhere:/opt/x/lib"} if how == "ld-library-path" else {}
    place = {"runpath-origin": "opt/app/lib", "rpath-origin": "opt/app/x", "ld-library-path": "opt/x/lib",
             "ld.so.conf.d": "opt/x/lib", "multiarch": MULTIARCH_LIB, "lib": "usr/lib"}[how]
    assert scan(root, env=env).unresolved == ((where, "libx.so.1"),)  # not there yet
    write_elf(root / place / "libx.so.1.2.3", [], soname="libx.so.1")
    link(root, f"{place}/libx.so.1", "libx.so.1.2.3")
    if how == "ld.so.conf.d":
        # /opt/x/lib is searched only once listed; until then the library is only held elsewhere in the image
        assert scan(root).preloaded == ((where, "libx.so.1"),) and scan(root).unresolved == ()
        put(root, "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
        put(root, "etc/ld.so.conf.d/x.conf", "# x\n/opt/x/lib\n")
    assert scan(root, env=env).unresolved == ()
    if how == "ld-library-path":
        assert scan(root).preloaded == ((where, "libx.so.1"),)  # the image's env is what finds it


def test_a_library_for_another_machine_or_in_another_multiarch_directory_is_not_found(tmp_path):
    root = tmp_path / "r"
    where = lone_object(root, machine=62)  # x86-64: its system directory is /usr/lib/x86_64-linux-gnu
    write_elf(root / MULTIARCH_LIB / "libx.so.1", [])  # aarch64's: not searched for an x86-64 object
    write_elf(root / "usr/lib/libx.so.1", [])  # searched, but aarch64: passed by
    # the loader misses it; a library of that name is in the image, so it counts as one its owner loads first
    assert scan(root).preloaded == ((where, "libx.so.1"),) and scan(root).unresolved == ()
    write_elf(root / "usr/lib/x86_64-linux-gnu/libx.so.1", [], machine=62)
    assert scan(root).unresolved == ()


def test_a_needed_path_is_loaded_as_it_is(tmp_path):
    root = tmp_path / "r"
    write_elf(root / "opt/app/libapp.so", ["/opt/dep/libdep.so", "dep/librel.so"])
    assert scan(root).unresolved == (("/opt/app/libapp.so", "/opt/dep/libdep.so"),
                                     ("/opt/app/libapp.so", "dep/librel.so"))
    write_elf(root / "opt/dep/libdep.so", [])
    assert scan(root).unresolved == (("/opt/app/libapp.so", "dep/librel.so"),)  # from the working directory


def test_unresolved_libraries_fail_a_runtime_image_only(runtime):
    lost = [f"/{SITE}/pkg/_ext{i}.so" for i in range(5)]
    for path in lost:
        write_elf(runtime / path.lstrip("/"), ["libc.so.6", "libgomp.so.1"])
    write_elf(runtime / "usr/local/lib/libone.so.1", ["libnuma.so.1", "libc.so.6"])
    findings = scan(runtime)
    assert findings.unresolved == (*((p, "libgomp.so.1") for p in lost), ("/usr/local/lib/libone.so.1", "libnuma.so.1"))
    mismatches = verify(findings, runtime_labels(), NS, "vllm")
    assert [(m.component, m.label, m.found, m.where) for m in mismatches] == [
        ("runtime-libraries", FLAVOR, "libgomp.so.1", lost[0]),
        ("runtime-libraries", FLAVOR, "libnuma.so.1", "/usr/local/lib/libone.so.1")]
    assert mismatches[0].message == (
        f"runtime-libraries: libgomp.so.1 is needed by {lost[0]}, {lost[1]}, {lost[2]} and 2 more, but the "
        "dynamic loader would find it nowhere in the image (DT_RPATH/DT_RUNPATH, LD_LIBRARY_PATH, ld.so.conf, "
        "the system directories; no library of that name anywhere in it, and it is not an optional integration's)")
    assert verify(findings, runtime_labels("dev"), NS, "vllm") == []
    assert verify(findings, runtime_labels(None), NS, "vllm") == []
    assert scan(runtime, check_objects=False).unresolved == ()


def test_the_drivers_libraries_are_expected_to_be_missing(runtime):
    driver = ["libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1",
              "libnvidia-nvvm.so.4", "libnvcuvid.so.1", "libnvidia-encode.so.1", "libnvidia-gpucomp.so.580.95.05"]
    write_elf(runtime / SITE / "vllm/cumem_allocator.abi3.so", [*driver, "libc.so.6"])
    assert all(libraries.is_driver_library(soname) for soname in driver)
    assert not libraries.is_driver_library("libcudart.so.13") and not libraries.is_driver_library("libnvrtc.so.13")
    assert runtime_mismatches(runtime) == []


def test_the_loader_lists_each_directory_once(runtime, monkeypatch):
    for i in range(50):
        write_elf(runtime / SITE / f"pkg/_m{i}.so", ["libc.so.6", "libstdc++.so.6", "libmissing.so.1"])
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(str(path)) or real(path))
    loader = libraries.Loader(runtime)
    for i in range(50):
        where = f"/{SITE}/pkg/_m{i}.so"
        assert loader.find(where, "libc.so.6").path == "/usr/lib/aarch64-linux-gnu/libc.so.6"
        assert loader.find(where, "libmissing.so.1").path is None
    assert listed and len(listed) == len(set(listed))


def test_nvcc_outside_site_packages_fails_a_runtime_image(runtime):
    (runtime / "usr/local/cuda-13.1/bin").mkdir()
    put(runtime, "usr/local/cuda-13.1/bin/nvcc")
    link(runtime, "usr/bin/nvcc", "/usr/local/cuda/bin/nvcc")
    link(runtime, "usr/local/bin/nvcc", "/usr/local/cuda-12.8/bin/nvcc")  # dangling: nothing
    put(runtime, f"{SITE}/nvidia/cu13/bin/nvcc")  # pip's nvidia-cuda-nvcc: the lock's business
    put(runtime, f"{SITE}/nvidia/cu13/bin/ptxas")
    findings = scan(runtime)
    assert findings.toolchain == ("/usr/bin/nvcc", "/usr/local/cuda-13.1/bin/nvcc")
    assert [m.message for m in verify(findings, runtime_labels(), NS, "vllm")] == [
        f"runtime-toolchain: a runtime image carries no build toolchain outside its Python environment's "
        f"site-packages, but it has nvcc at {path}" for path in findings.toolchain]
    assert verify(findings, runtime_labels("dev"), NS, "vllm") == []


def test_nvcc_in_site_packages_only_passes(runtime):
    put(runtime, f"{SITE}/nvidia/cu13/bin/nvcc")
    put(runtime, f"{SITE}/triton/backends/nvidia/include/cuda.h")
    assert scan(runtime).toolchain == ()
    assert runtime_mismatches(runtime) == []


def test_cuda_headers_outside_site_packages_fail_a_runtime_image(runtime):
    put(runtime, "usr/local/cuda-13.1/include/cuda_runtime.h", "/* CUDA runtime API */\n")
    put(runtime, "usr/include/hwloc/cuda.h")  # hwloc's, not the toolkit's
    put(runtime, f"{SITE}/nvidia/cu13/include/cuda_runtime_api.h")
    findings = scan(runtime)
    assert findings.toolchain == ("/usr/local/cuda-13.1/include/cuda_runtime.h",)  # also /usr/local/cuda/include
    [mismatch] = verify(findings, runtime_labels(), NS, "vllm")
    assert (mismatch.component, mismatch.found) == ("runtime-toolchain", "/usr/local/cuda-13.1/include/cuda_runtime.h")
    assert "it has a CUDA toolkit header at /usr/local/cuda-13.1/include/cuda_runtime.h" in mismatch.message


def test_a_cpp_compiler_and_build_tools_fail_a_runtime_image(runtime):
    write_elf(runtime / "usr/bin/aarch64-linux-gnu-g++-13", ["libc.so.6"])
    link(runtime, "usr/bin/g++-13", "aarch64-linux-gnu-g++-13")
    link(runtime, "usr/bin/g++", "g++-13")
    put(runtime, "usr/lib/gcc/aarch64-linux-gnu/13/cc1plus")
    put(runtime, "usr/local/bin/cmake")
    put(runtime, "usr/bin/git")
    link(runtime, "bin", "usr/bin")  # merged /usr: listed once, as /usr/bin
    findings = scan(runtime)
    assert findings.toolchain == ("/usr/bin/aarch64-linux-gnu-g++-13", "/usr/bin/g++", "/usr/bin/g++-13",
                                  "/usr/bin/git", "/usr/lib/gcc/aarch64-linux-gnu/13/cc1plus", "/usr/local/bin/cmake")
    assert toolchain_kind("/usr/bin/c++") == "a C++ compiler"
    messages = [m.message.split("but it has ", 1)[1] for m in verify(findings, runtime_labels(), NS, "vllm")]
    assert messages == [  # four C++ compiler paths: one mismatch for the kind
        "a C++ compiler at /usr/bin/aarch64-linux-gnu-g++-13, /usr/bin/g++, /usr/bin/g++-13 and 1 more",
        "git at /usr/bin/git", "cmake at /usr/local/bin/cmake"]


def test_make_ninja_and_a_real_bin_directory(runtime):
    put(runtime, "bin/make")
    put(runtime, "usr/local/bin/ninja")
    put(runtime, "usr/bin/gcc-ar-13")  # gcc's, allowed
    assert scan(runtime).toolchain == ("/bin/make", "/usr/local/bin/ninja")


def test_gcc_alone_passes_and_gcc_without_cc1_is_noted(runtime):
    assert runtime_mismatches(runtime) == []
    (runtime / "usr/lib/gcc/aarch64-linux-gnu/13/cc1").unlink()
    findings = scan(runtime)
    assert findings.c_compiler == "/usr/bin/gcc"
    assert any("/usr/bin/gcc is gcc, but the image has no cc1" in note for note in findings.notes)


def test_no_c_compiler_fails_a_runtime_image_with_tritons_reason(runtime):
    (runtime / "usr/bin/gcc").unlink()
    findings = scan(runtime)
    assert findings.c_compiler is None
    [mismatch] = verify(findings, runtime_labels(), NS, "vllm")
    assert mismatch.component == "runtime-toolchain"
    assert "needs a C compiler, and it has none" in mismatch.message
    assert "Triton" in mismatch.message and '"Failed to find C compiler"' in mismatch.message
    assert "Python.h" in mismatch.message
    assert verify(findings, runtime_labels("dev"), NS, "vllm") == []


def test_the_c_compiler_is_found_as_triton_finds_it(runtime):
    assert scan(runtime, env={"PATH": "/opt/venv/bin:/usr/local/bin"}).c_compiler is None  # gcc not on PATH
    put(runtime, "usr/local/bin/clang")
    assert scan(runtime, env={"PATH": "/opt/venv/bin:/usr/local/bin"}).c_compiler == "/usr/local/bin/clang"
    assert scan(runtime).c_compiler == "/usr/bin/gcc"  # gcc before clang
    put(runtime, "opt/cc/bin/mycc")
    assert scan(runtime, env={"CC": "/opt/cc/bin/mycc -O2"}).c_compiler == "/opt/cc/bin/mycc"
    findings = scan(runtime, env={"CC": "tcc"})  # CC wins, found on PATH or not at all
    assert findings.c_compiler is None
    assert any("CC=tcc, which is not in the image" in note for note in findings.notes)


def test_the_export_filter_keeps_what_the_runtime_checks_read(tmp_path):
    import io
    import tarfile

    from factory.adapters.docker import unpack_rootfs

    big = 3 * 1024 * 1024
    so = write_elf(tmp_path / "lib.so", ["libc.so.6"])
    files = {
        "usr/bin/g++": b"\x7fELF" + bytes(big),
        "usr/local/cuda-13.0/include/cuda_runtime.h": b"/* CUDA runtime API */\n",
        "usr/lib/aarch64-linux-gnu/libbig.so.1": so.read_bytes() + bytes(big),
        "usr/share/model/weights.bin": bytes(big),
    }
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, data in files.items():
            tar.addfile(_member(name, len(data)), io.BytesIO(data))
        info = tarfile.TarInfo("usr/local/cuda")
        info.type, info.linkname = tarfile.SYMTYPE, "/usr/local/cuda-13.0"
        tar.addfile(info)
    stream.seek(0)
    root = tmp_path / "rootfs"
    unpack_rootfs(stream, root)
    assert (root / "usr/bin/g++").stat().st_size == 0  # only its path is needed: a placeholder
    assert (root / "usr/local/cuda/include/cuda_runtime.h").read_bytes() == files[
        "usr/local/cuda-13.0/include/cuda_runtime.h"]
    assert (root / "usr/lib/aarch64-linux-gnu/libbig.so.1").stat().st_size == len(files[
        "usr/lib/aarch64-linux-gnu/libbig.so.1"])
    assert (root / "usr/share/model/weights.bin").stat().st_size == 0  # dropped
    findings = scan(root)
    assert findings.toolchain == ("/usr/bin/g++", "/usr/local/cuda-13.0/include/cuda_runtime.h")
    assert findings.unresolved == (("/usr/lib/aarch64-linux-gnu/libbig.so.1", "libc.so.6"),)


def _member(name: str, size: int):
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o755
    return info


def test_an_images_kind_follows_from_its_labels_a_runtime_image_included():
    from factory.usecases.verify import kind_of

    ns = "dev.scitrera"
    assert kind_of({f"{ns}.torch_version": "2.14.0", f"{ns}.flavor": "dev"}, ns) == "base"
    assert kind_of({f"{ns}.torch_version": "2.14.0", f"{ns}.flavor": "runtime"}, ns) == "runtime"
    assert kind_of({f"{ns}.vllm_version": "0.33.0", f"{ns}.flavor": "runtime"}, ns) == "vllm"
    assert kind_of({f"{ns}.vllm_version": "0.33.0", f"{ns}.extra": "nixl"}, ns) == "extra"


def test_a_library_held_elsewhere_is_preloaded_and_an_optional_integrations_is_not_a_failure(runtime):
    """What the real vLLM image showed: torchaudio's extensions need libc10.so, which only torch's own RUNPATH
    finds (torch loads it first); torchcodec needs the FFmpeg a user installs; NVSHMEM's MPI bootstrap an MPI.
    Neither fails a runtime image; a library absent from the image that no table excuses does."""
    write_elf(runtime / SITE / "torch/lib/libc10.so", ["libc.so.6"], soname="libc10.so")
    write_elf(runtime / SITE / "torchaudio/lib/libtorchaudio.so", ["libc10.so", "libc.so.6"])
    write_elf(runtime / SITE / "torchcodec/libtorchcodec_core7.so", ["libavcodec.so.61", "libc.so.6"])
    write_elf(runtime / SITE / "nvidia/nvshmem/lib/nvshmem_bootstrap_mpi.so.3", ["libmpi.so.40"])
    findings = scan(runtime)
    assert findings.preloaded == ((f"/{SITE}/torchaudio/lib/libtorchaudio.so", "libc10.so"),)
    assert findings.optional == ((f"/{SITE}/nvidia/nvshmem/lib/nvshmem_bootstrap_mpi.so.3", "libmpi.so.40"),
                                 (f"/{SITE}/torchcodec/libtorchcodec_core7.so", "libavcodec.so.61"))
    assert findings.unresolved == () and runtime_mismatches(runtime) == []
    assert findings.as_dict()["optional"][0] == [f"/{SITE}/nvidia/nvshmem/lib/nvshmem_bootstrap_mpi.so.3",
                                                 "libmpi.so.40"]
    # the same FFmpeg library needed by vLLM itself is not excused: only the listed package's plugins are
    write_elf(runtime / SITE / "vllm/_C.abi3.so", ["libavcodec.so.61", "libc.so.6"])
    assert [m.found for m in runtime_mismatches(runtime)] == ["libavcodec.so.61"]


def test_nixls_optional_backends_and_ucx_modules_are_optional_its_ucx_core_is_not(runtime):
    """What the real nixl-cu13 1.5.1 wheel showed: its OBJ/GPUNetIO/libfabric/Infinia plugins and UCX's EFA,
    FlexIO and MAD modules need libraries no image carries; UCX's verbs core needing libibverbs would not be."""
    nixl = f"{SITE}/nixl_cu13.libs"
    write_elf(runtime / nixl / "nixl/libplugin_GPUNETIO.so", ["libdoca_gpunetio.so.2", "libc.so.6"])
    write_elf(runtime / nixl / "ucx/libuct_ib_efa.so.0.0.0", ["libefa.so.1", "libc.so.6"])
    assert runtime_mismatches(runtime) == [] and len(scan(runtime).optional) == 2
    write_elf(runtime / nixl / "ucx/libuct_ib.so.0.0.0", ["libibverbs.so.1", "libc.so.6"])
    assert [m.found for m in runtime_mismatches(runtime)] == ["libibverbs.so.1"]


def test_a_large_shared_object_is_unpacked_sparse_with_everything_verify_reads_from_it(tmp_path):
    """verify's export keeps only the headers of a big library whose GPU code it does not read: the dynamic
    section, ELF header and section table read back exactly as from the whole file; torch's, vLLM's and
    FlashInfer's objects and anything that is not ELF are written whole."""
    import io
    import tarfile

    import pydantic_core._pydantic_core as real

    from factory.adapters.docker import unpack_rootfs
    from factory.adapters.rootfs import elf

    data = Path(real.__file__).read_bytes()  # a real ELF shared object of a few MB
    junk = bytes(range(256)) * 8192
    members = {f"{SITE}/pkg/libbig.so": data, f"{SITE}/vllm/_C.abi3.so": data, f"{SITE}/pkg/libjunk.so": junk}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    root = tmp_path / "r"
    unpack_rootfs(buffer, root, sparse_min=0)
    original = tmp_path / "original.so"
    original.write_bytes(data)
    sparse = root / SITE / "pkg/libbig.so"
    assert sparse.stat().st_size == len(data)
    assert elf.dynamic(sparse) == elf.dynamic(original) and elf.dynamic(sparse).needed
    assert elf.header(sparse) == elf.header(original) and elf.sections(sparse) == elf.sections(original)
    assert sparse.stat().st_blocks * 512 < len(data) // 2, "the code in between takes no disk"
    assert (root / SITE / "vllm/_C.abi3.so").read_bytes() == data  # its GPU code is read: whole
    assert (root / SITE / "pkg/libjunk.so").read_bytes() == junk  # not ELF: whole
