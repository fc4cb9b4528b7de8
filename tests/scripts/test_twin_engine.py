"""scripts/twin.sh on the real engine: the amd64 CUDA twins (devel and base flavor) are built (cached after the
first time) and inspected.

The facts asserted are the ones docs/twin.md establishes about NVIDIA's CUDA 13.0.3 devel and base images (and the
one documented deviation, the OS): if the twin drifts from them, builds here stop meaning what they mean on NVIDIA's
image. The first run takes minutes (mmdebstrap, 1.6 GB of wheels, an import); later runs find the images present.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import ROOT
from tests.engine_support import require_engine

pytestmark = pytest.mark.engine
SCRIPT = ROOT / "scripts" / "twin.sh"
REF = "factory-twin/cuda:13.0.3-devel-amd64"
BASE_REF = "factory-twin/cuda:13.0.3-base-amd64"
# NVIDIA's base Dockerfile sets these, and only these, on top of Ubuntu's PATH (docs/twin.md, "The base flavor").
BASE_ENV_NAMES = ["PATH", "NVARCH", "NVIDIA_REQUIRE_CUDA", "NV_CUDA_CUDART_VERSION", "CUDA_VERSION",
                  "LD_LIBRARY_PATH", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"]


def twin_script(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def flavor_args(flavor: str) -> tuple[str, ...]:
    """twin.sh's arguments for the amd64 twin of a flavor (devel is the default, named by no flag)."""
    return ("--arch", "amd64") if flavor == "devel" else ("--arch", "amd64", "--flavor", flavor)


def built_twin(flavor: str, expected_ref: str) -> str:
    """Build (or find present) the amd64 twin of `flavor` and check that twin.sh names it `expected_ref`."""
    require_engine()
    if os.geteuid() != 0:
        pytest.skip("scripts/twin.sh build needs root (mmdebstrap, chroot)")
    built = twin_script("build", *flavor_args(flavor), timeout=3600)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    ref = twin_script("ref", *flavor_args(flavor))
    assert ref.returncode == 0, ref.stderr
    assert ref.stdout.strip() == expected_ref
    return expected_ref


def assert_second_build_finds_it_present(flavor: str) -> None:
    again = twin_script("build", *flavor_args(flavor), timeout=600)
    assert again.returncode == 0, again.stderr
    assert "present and current" in again.stdout
    assert "docker import" not in again.stdout


def assert_linux_amd64_debian_trixie(ref: str) -> None:
    assert (config(ref)["Os"], config(ref)["Architecture"]) == ("linux", "amd64")
    release = sh(ref, "cat /etc/os-release").stdout
    assert "ID=debian" in release.splitlines()
    assert "VERSION_CODENAME=trixie" in release.splitlines()


@pytest.fixture(scope="module")
def twin() -> str:
    return built_twin("devel", REF)


def sh(ref: str, script: str) -> subprocess.CompletedProcess:
    """Run a shell script in the image, past the entrypoint (no banner)."""
    return subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/sh", ref, "-c", script],
                          capture_output=True, text=True, timeout=120)


def config(ref: str) -> dict:
    done = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[0]


def env(ref: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config(ref)["Config"]["Env"])


def test_a_second_build_finds_the_image_present(twin):
    assert_second_build_finds_it_present("devel")


def test_the_image_is_linux_amd64_debian_trixie(twin):
    assert_linux_amd64_debian_trixie(twin)


def test_the_environment_is_nvidias(twin):
    e = env(twin)
    assert e["CUDA_VERSION"] == "13.0.3"
    assert e["NV_CUDA_CUDART_VERSION"] == "13.0.96-1"
    assert e["NCCL_VERSION"] == "2.28.3-1"
    assert e["NV_LIBNCCL_PACKAGE"] == "libnccl2=2.28.3-1+cuda13.0"
    assert e["NVARCH"] == "x86_64"
    assert e["PATH"].startswith("/usr/local/nvidia/bin:/usr/local/cuda/bin:")
    assert e["LD_LIBRARY_PATH"].startswith("/usr/local/nvidia/lib:/usr/local/nvidia/lib64")
    assert e["LIBRARY_PATH"] == "/usr/local/cuda/lib64/stubs"
    assert e["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert e["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert e["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=13.0 brand=unknown,driver>=535,driver<536 ")
    assert config(twin)["Config"]["Entrypoint"] == ["/opt/nvidia/nvidia_entrypoint.sh"]


def test_nvcc_says_release_13_0_through_the_entrypoint(twin):
    done = subprocess.run(["docker", "run", "--rm", twin, "nvcc", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CUDA Version 13.0.3" in done.stdout  # the entrypoint's banner
    assert re.search(r"release 13\.0, V13\.0\.\d+", done.stdout), done.stdout


def test_the_toolkit_is_laid_out_as_the_debs_do(twin):
    done = sh(twin, "readlink /usr/local/cuda; readlink -f /usr/local/cuda; readlink -f /usr/local/cuda-13;"
                    " readlink /usr/local/cuda/lib64; ls /usr/local/cuda/lib64/")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["/etc/alternatives/cuda", "/usr/local/cuda-13.0", "/usr/local/cuda-13.0",
                         "targets/x86_64-linux/lib"]
    files = set(lines[4:])
    assert any(re.fullmatch(r"libcudart\.so\.13\.0\.\d+", name) for name in files), sorted(files)
    assert {"libcudart.so", "libcudart.so.13", "libcublas.so.13", "libnvJitLink.so.13"} <= files


def test_the_apt_nccl_is_installed_and_held(twin):
    done = sh(twin, "ls /usr/lib/x86_64-linux-gnu/ | grep nccl; test -f /usr/include/nccl.h && echo header;"
                    " dpkg-query -W -f '${Package} ${Status} ${Version}\\n' libnccl2 libnccl-dev")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert {"libnccl.so", "libnccl.so.2", "libnccl.so.2.28.3", "header"} <= set(lines)
    assert "libnccl2 hold ok installed 2.28.3-1+cuda13.0" in lines
    assert "libnccl-dev hold ok installed 2.28.3-1+cuda13.0" in lines


def test_purging_the_held_nccl_needs_an_unhold_first(twin):
    done = sh(twin, "apt-get purge -y libnccl2 libnccl-dev; echo rc=$?;"
                    " apt-mark unhold libnccl2 libnccl-dev >/dev/null && apt-get purge -y -q libnccl2 libnccl-dev"
                    " >/dev/null; echo rc=$?; ls /usr/lib/x86_64-linux-gnu/ | grep -c nccl")
    lines = done.stdout.splitlines()
    assert "Held packages were changed" in done.stderr
    assert lines[-3:] == ["rc=100", "rc=0", "0"], done.stdout + done.stderr


def test_there_is_no_version_json(twin):
    done = sh(twin, "ls /usr/local/cuda/version.json /usr/local/cuda-13.0/version.txt 2>&1; echo rc=$?")
    assert done.stdout.strip().endswith("rc=2"), done.stdout


# --- the base flavor: NVIDIA's 13.0.3-base-ubuntu24.04 ---------------------------------------------------------


@pytest.fixture(scope="module")
def base_twin() -> str:
    return built_twin("base", BASE_REF)


def test_ref_names_each_flavor_and_defaults_to_devel():
    assert twin_script("ref", "--arch", "arm64").stdout.strip() == "factory-twin/cuda:13.0.3-devel-arm64"
    assert twin_script("ref", "--arch", "arm64", "--flavor", "base").stdout.strip() == \
        "factory-twin/cuda:13.0.3-base-arm64"
    for bad in ("all", "runtime"):
        done = twin_script("ref", "--arch", "amd64", "--flavor", bad)
        assert done.returncode != 0 and done.stdout == "", (bad, done.stdout)


def test_status_shows_both_flavors(twin, base_twin):
    done = twin_script("status")
    assert done.returncode == 0, done.stderr
    assert f"{twin}: present, current" in done.stdout
    assert f"{base_twin}: present, current" in done.stdout
    assert "factory-twin/cuda:13.0.3-base-arm64" in done.stdout


def test_a_second_base_build_finds_the_image_present(base_twin):
    assert_second_build_finds_it_present("base")


def test_the_base_image_is_linux_amd64_debian_trixie(base_twin):
    assert_linux_amd64_debian_trixie(base_twin)


def test_the_base_environment_is_nvidias_base_dockerfiles(twin, base_twin):
    names = [item.split("=", 1)[0] for item in config(base_twin)["Config"]["Env"]]
    assert names == BASE_ENV_NAMES
    e = env(base_twin)
    assert e["CUDA_VERSION"] == "13.0.3"
    assert e["NV_CUDA_CUDART_VERSION"] == "13.0.96-1"
    assert e["NVARCH"] == "x86_64"
    assert e["PATH"].startswith("/usr/local/nvidia/bin:/usr/local/cuda/bin:")
    assert e["LD_LIBRARY_PATH"].startswith("/usr/local/nvidia/lib:/usr/local/nvidia/lib64")
    assert e["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert e["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert e["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=13.0 brand=unknown,driver>=535,driver<536 ")
    # NVIDIA's devel image is built FROM its base one: the same values, then the runtime and devel lines.
    devel = config(twin)["Config"]["Env"]
    assert devel[:len(BASE_ENV_NAMES)] == config(base_twin)["Config"]["Env"]


def test_the_base_image_has_no_entrypoint_and_runs_bash(base_twin):
    c = config(base_twin)["Config"]
    assert c["Entrypoint"] is None
    assert c["Cmd"] == ["/bin/bash"]
    assert c["Labels"] == {"maintainer": "NVIDIA CORPORATION <cudatools@nvidia.com>"}
    done = subprocess.run(["docker", "run", "--rm", base_twin, "echo", "hello"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"  # no banner: the entrypoint comes with NVIDIA's runtime image


def test_the_base_cudart_is_laid_out_as_the_deb_does_and_resolves(base_twin):
    done = sh(base_twin, "readlink /usr/local/cuda; readlink -f /usr/local/cuda; readlink -f /usr/local/cuda-13;"
                         " readlink /usr/local/cuda/lib64; ls /usr/local/cuda-13.0/; echo --;"
                         " ls /usr/local/cuda/lib64/; echo --; ldconfig -p | grep -o 'libcudart.so.13 .*'; echo --;"
                         " ls /etc/ld.so.conf.d/")
    assert done.returncode == 0, done.stderr
    head, lib, ldcache, conf = (part.strip().splitlines() for part in done.stdout.split("--\n"))
    assert head[:4] == ["/etc/alternatives/cuda", "/usr/local/cuda-13.0", "/usr/local/cuda-13.0",
                        "targets/x86_64-linux/lib"]
    assert head[4:] == ["lib64", "targets"]
    assert lib == ["libcudart.so.13", "libcudart.so.13.0.96"]
    assert ldcache == ["libcudart.so.13 (libc6,x86-64) => /usr/local/cuda/targets/x86_64-linux/lib/libcudart.so.13"]
    assert {"nvidia.conf", "000_cuda.conf", "987_cuda-13.conf"} <= set(conf)
    assert "gds-13-0.conf" not in conf


def test_the_base_image_has_no_toolkit_headers_nccl_or_compiler(base_twin):
    done = sh(base_twin, "command -v nvcc gcc cc make; echo --;"
                         " ls -d /usr/local/cuda/include /usr/local/cuda/bin /opt/nvidia 2>/dev/null; echo --;"
                         " find / -xdev \\( -name 'cuda_runtime*.h' -o -name 'cuda.h' -o -name 'nccl*.h'"
                         " -o -name 'libnccl*' -o -name 'libcublas*' -o -name 'libcufft*' -o -name 'libnvrtc*'"
                         " -o -name 'libcudart_static.a' -o -name 'libcudart.so' \\) 2>/dev/null; echo --;"
                         " dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' ca-certificates gnupg"
                         " build-essential gcc libnccl2 libnccl-dev 2>/dev/null")
    commands, dirs, files, packages = (part.strip().splitlines() for part in done.stdout.split("--\n"))
    assert commands == [], commands
    assert dirs == [], dirs
    assert files == [], files
    assert [p.split()[0] for p in packages if p.split()[1:] == ["ii"]] == ["ca-certificates", "gnupg"], packages


def test_the_base_image_is_far_smaller_than_devel(twin, base_twin):
    assert config(base_twin)["Size"] * 10 < config(twin)["Size"]
