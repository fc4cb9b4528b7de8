# PyTorch runtime base `<base>-runtime`: what vLLM images ship on. NVIDIA's small CUDA image plus exactly the
# dev base's Python environment (torch, torchvision, torchaudio, NCCL, cuDNN and everything its lock installed),
# copied from the built dev base (DEV_IMAGE): the same files, never re-resolved or rebuilt. No CUDA compiler,
# no CUDA headers, no C++ toolchain. Every ARG is passed by `factory build` from matrix.toml.
#
# What stays, and why:
#   - the CUDA image the matrix's `runtime_cuda_image` names: for a wheel-mode base NVIDIA's `base` flavor
#     (libcudart, the driver's forward compatibility, NVIDIA's ENV that the container toolkit reads), because
#     torch's pip wheels carry every CUDA library torch loads; for a source-mode base the `runtime` flavor,
#     because a torch compiled in the dev base links the toolkit's cuBLAS, cuFFT, ... in /usr/local/cuda;
#   - Python and its headers, and a C compiler (gcc, libc6-dev): Triton compiles its CUDA launcher stub with
#     the system C compiler the first time a kernel runs, and that stub includes Python.h; without them vLLM
#     fails at its first Triton kernel with "Failed to find C compiler";
#   - TRITON_PTXAS_PATH points at /opt/venv/bin/ptxas, a link to the ptxas of the venv's nvidia-cuda-nvcc wheel
#     (CUDA's ptxas: Triton's bundled one may not know sm_121a); vLLM images lock that wheel.
#
# Layers: the environment is copied in four layers so that none is larger than the registries' practical limit
# the factory designs for (2 GiB compressed; README "Runtime images and sizes"): the CUDA libraries of torch's
# wheels (nvidia/cu<major>), the rest of nvidia/ (cuDNN, NCCL, cuSPARSELt, ...), torch itself, everything else.

ARG DEV_IMAGE
ARG CUDA_IMAGE

# The dev base, read through bind mounts below (nothing of it is copied in a stage of its own).
FROM ${DEV_IMAGE} AS dev

# ---- the runtime image ------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ARG PYTHON_VERSION
ARG CUDA_VERSION
ARG NCCL_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCHAUDIO_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# NCCL_VERSION names the NCCL the image has (the dev base's), not an apt package.
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    UV_CACHE_DIR=/root/.cache/uv \
    UV_LINK_MODE=copy \
    PIP_CONSTRAINT=/etc/factory/constraints.txt \
    UV_CONSTRAINT=/etc/factory/constraints.txt \
    TRITON_PTXAS_PATH=/opt/venv/bin/ptxas \
    NCCL_VERSION=${NCCL_VERSION}
# The CUDA image must be the matrix's CUDA (its runtime library's versioned file) and must hold no compiler.
# NVIDIA's runtime flavor carries an apt NCCL: purged (unhold first), so the loader finds only the dev base's.
# hadolint ignore=SC2086
RUN compgen -G "/usr/local/cuda/lib64/libcudart.so.${CUDA_VERSION%.*}.*" >/dev/null \
      || { echo "the CUDA image has no libcudart.so.${CUDA_VERSION%.*}.*: it is not CUDA ${CUDA_VERSION}" >&2; exit 1; } \
 && { [ ! -e /usr/local/cuda/bin/nvcc ] || { echo "the runtime CUDA image has nvcc: use a base or runtime flavor" >&2; exit 1; }; } \
 && held=$(dpkg-query -W -f '${Package}\n' 'libnccl*' 2>/dev/null || true) \
 && if [ -n "${held}" ]; then apt-mark unhold ${held} >/dev/null && apt-get purge -y ${held}; fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python${PYTHON_VERSION} libpython${PYTHON_VERSION}-dev gcc libc6-dev ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# The dev base's environment, from a read-only bind mount of the dev image (no intermediate copy, nothing
# installed or resolved), one layer per part: torch's CUDA libraries (nvidia/cu<major>), the rest of nvidia/
# (cuDNN, NCCL, cuSPARSELt, ...), torch, then everything else: the venv, the constraints that hold torch, the
# base's helper scripts and, for a source-mode base, its compiled NCCL and cuDNN with the loader configuration
# that finds it.
RUN --mount=type=bind,from=dev,source=/,target=/dev-base \
    site="opt/venv/lib/python${PYTHON_VERSION}/site-packages" cuda="nvidia/cu${CUDA_VERSION%%.*}" \
 && test -d "/dev-base/${site}/torch" \
 && if [ -d "/dev-base/${site}/${cuda}" ]; then tar -C /dev-base -cf - "${site}/${cuda}" | tar -C / -xf -; fi
RUN --mount=type=bind,from=dev,source=/,target=/dev-base \
    site="opt/venv/lib/python${PYTHON_VERSION}/site-packages" cuda="nvidia/cu${CUDA_VERSION%%.*}" \
 && if [ -d "/dev-base/${site}/nvidia" ]; then \
      tar -C /dev-base -cf - --exclude="${site}/${cuda}" "${site}/nvidia" | tar -C / -xf -; fi
RUN --mount=type=bind,from=dev,source=/,target=/dev-base \
    site="opt/venv/lib/python${PYTHON_VERSION}/site-packages" \
 && tar -C /dev-base -cf - "${site}/torch" | tar -C / -xf -
# hadolint ignore=SC2086
RUN --mount=type=bind,from=dev,source=/,target=/dev-base \
    site="opt/venv/lib/python${PYTHON_VERSION}/site-packages" \
 && extra=$({ compgen -G "/dev-base/usr/local/lib/libnccl.so*" || true; \
      compgen -G "/dev-base/etc/ld.so.conf.d/000-factory-*.conf" || true; \
      [ ! -d /dev-base/opt/cudnn ] || echo /dev-base/opt/cudnn; } | sed 's|^/dev-base/||') \
 && tar -C /dev-base -cf - --exclude="${site}/nvidia" --exclude="${site}/torch" opt/venv etc/factory/constraints.txt \
      usr/local/bin/check-torch-cuda usr/local/bin/with-build-ca ${extra} | tar -C / -xf -
# The copied environment must be the dev base's and complete here: the pins, torch a CUDA build, every library
# libtorch_cuda.so needs found by the loader (libcuda.so.1 comes from the host's driver at run time).
RUN ldconfig \
 && python -c 'import sys; from importlib.metadata import version; bad = [p for p in sys.argv[1:] if version(p.split("==")[0]) != p.split("==")[1]]; sys.exit(f"the copied environment is not the dev base\x27s: {bad}" if bad else 0)' \
      "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "torchaudio==${TORCHAUDIO_VERSION}" \
 && check-torch-cuda \
 && lib="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch/lib/libtorch_cuda.so" \
 && missing=$(ldd "${lib}" | awk '/not found/ && $1 != "libcuda.so.1" {print $1}') \
 && { [ -z "${missing}" ] || { echo "libtorch_cuda.so cannot find: ${missing}" >&2; exit 1; }; } \
 && ln -sfn "../lib/python${PYTHON_VERSION}/site-packages/nvidia/cu${CUDA_VERSION%%.*}/bin/ptxas" /opt/venv/bin/ptxas \
 && echo "runtime: torch ${TORCH_VERSION}, libnccl.so.2 -> $(ldd "${lib}" | awk '$1 == "libnccl.so.2" {print $3}')"
