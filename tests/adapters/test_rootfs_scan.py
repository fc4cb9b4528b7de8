"""The rootfs scan: fake root filesystems scanned, and the labels verified against what the scan found."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from factory.adapters.rootfs import cuda as rootfs_cuda
from factory.adapters.rootfs import dists
from factory.adapters.rootfs.fatbin import KIND_ELF, KIND_PTX
from factory.adapters.rootfs.paths import resolve_in_root
from factory.adapters.rootfs.scan import scan
from factory.core.components import DIST_COMPONENTS
from factory.core.findings import Findings, Mismatch
from factory.core.image_checks import measured_labels, verify
from factory.core.labels import component_key
from factory.core.toolchain import toolchain_kind
from tests.adapters.test_elf import gcc_library, needs_gcc, write_elf
from tests.adapters.test_fatbin import container, fat_entry
from tests.rootfs_fixtures import (
    NS,
    SITE,
    VERSIONS,
    components,
    dist,
    labels,
    link,
    make_image,
    put,
    runtime_labels,
    runtime_mismatches,
)

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


# --- runtime images: no build toolchain, a C compiler -----------------------------------------------------


def test_runtime_image_with_every_library_and_a_c_compiler_passes(runtime):
    findings = scan(runtime)
    assert (findings.unresolved, findings.toolchain, findings.c_compiler) == ((), (), "/usr/bin/gcc")
    assert verify(findings, runtime_labels(), NS, "vllm") == []
    data = json.loads(json.dumps(findings.as_dict()))
    assert (data["unresolved"], data["toolchain"], data["c_compiler"]) == ([], [], "/usr/bin/gcc")


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
