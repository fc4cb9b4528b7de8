"""The dynamic loader in a fake root: which library each DT_NEEDED resolves to, what is missing, what is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factory.adapters.rootfs import libraries
from factory.adapters.rootfs.scan import scan
from factory.core.image_checks import verify
from tests.adapters.test_elf import write_elf
from tests.rootfs_fixtures import (
    FLAVOR,
    MULTIARCH_LIB,
    NS,
    SITE,
    components,
    dist,
    labels,
    link,
    put,
    runtime_labels,
    runtime_mismatches,
    ubuntu_ld_so_conf,
)

# --- NCCL: the one the dynamic loader gives torch ------------------------------------------------------------


def nccl_file(root: Path, directory: str, version: str, *, wheel: bool = False) -> None:
    name = "libnccl.so.2" if wheel else f"libnccl.so.{version}"
    write_elf(root / directory / name, ["libcudart.so.13"], soname="libnccl.so.2")
    if not wheel:
        link(root, f"{directory}/libnccl.so.2", name)


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


# --- runtime images: every library its objects need is found ---------------------------------------------


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
