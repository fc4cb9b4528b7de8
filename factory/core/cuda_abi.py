"""Which CUDA a library or a pip distribution is for, from its name alone.

A shared object's DT_NEEDED sonames say which CUDA it was linked against (`libcudart.so.12`), and a pip CUDA
component's version is the toolkit's own (`nvidia-cuda-runtime 13.0.96` is CUDA 13.0). Pure: the rootfs scan
applies these to what it reads, and the image checks to what it found.
"""

from __future__ import annotations

import re

#: CUDA 12 sonames. Only libraries whose soname major follows the CUDA major are listed (cudart, cuBLAS,
#: NVRTC, nvJitLink, CUPTI, NPP, nvJPEG, nvFatbin), plus cuFFT/cuSOLVER's CUDA 12 sonames (.so.11). cuSPARSE,
#: cuFFT and cuSOLVER are `.so.12` in CUDA 13 too and cuRAND is `.so.10` in both, so those prove nothing.
CUDA12_SONAME = re.compile(
    r"^lib(?:cudart|cublas|cublasLt|nvblas|nvrtc|nvrtc-builtins|nvJitLink|cupti|nvperf_host|nvperf_target"
    r"|npp[a-z]*|nvjpeg|nvfatbin)\.so\.12(?:\.[0-9.]*)?$"
    r"|^lib(?:cufft|cufftw|cusolver|cusolverMg)\.so\.11(?:\.[0-9.]*)?$"
)

#: Libraries whose soname major IS the CUDA major (cudart, cuBLAS, NVRTC, nvJitLink, CUPTI): what an object
#: needs of these says which CUDA it was built for.
CUDA_RUNTIME_SONAME = re.compile(r"^lib(?:cudart|cublas|cublasLt|nvrtc|nvJitLink|cupti)\.so\.(\d+)(?:\.[0-9.]*)?$")


#: pip's CUDA toolkit components whose version is the toolkit's (`cuda-toolkit==13.0.3` pins
#: nvidia-cuda-runtime 13.0.96, nvidia-nvjitlink 13.0.88, ...): their major.minor is the CUDA they are. Libraries
#: with their own numbering (cuBLAS 13.1, cuFFT 12.0, cuDNN 9) and the driver bindings (cuda-bindings, any 13.x
#: on a CUDA 13 driver) are checked by the lock's CUDA constraints and the CUDA-major rules instead.
TOOLKIT_VERSIONED = frozenset({
    "cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cuda-nvcc", "nvidia-cuda-crt",
    "nvidia-nvvm", "nvidia-cuda-cccl", "nvidia-cuda-cupti", "nvidia-nvjitlink", "nvidia-nvtx",
    "nvidia-cuda-culibos", "nvidia-cuda-cuxxfilt", "nvidia-cuda-sanitizer-api", "nvidia-cuda-profiler-api",
    "nvidia-nvfatbin", "nvidia-nvptxcompiler", "nvidia-nvml-dev", "nvidia-cuda-opencl",
})


def runtime_major(soname: str) -> int | None:
    """The CUDA major of a CUDA runtime library's soname (`libcudart.so.13` -> 13), None for any other."""
    match = CUDA_RUNTIME_SONAME.match(soname)
    return int(match[1]) if match else None
