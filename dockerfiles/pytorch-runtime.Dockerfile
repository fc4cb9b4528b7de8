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
# the factory designs for (2 GiB compressed; README "Image sizes"): the CUDA libraries of torch's wheels
# (nvidia/cu<major>), the rest of nvidia/ (cuDNN, NCCL, cuSPARSELt, ...), torch itself, and everything else.

ARG DEV_IMAGE
ARG CUDA_IMAGE

# ---- the dev base's environment, sorted into the layers this image ships -------------------------------------
FROM ${DEV_IMAGE} AS split
ARG PYTHON_VERSION
ARG CUDA_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Only files move (mv within the stage): nothing is installed or resolved. A source-mode base's compiled NCCL
# (/usr/local/lib/libnccl*) and cuDNN (/opt/cudnn, with the loader configuration that finds it) live outside the
# venv and go along.
RUN site="opt/venv/lib/python${PYTHON_VERSION}/site-packages" \
 && test -d "/${site}" \
 && mkdir -p "/split/cuda/${site}/nvidia" "/split/nvidia/${site}" "/split/torch/${site}" /split/rest/opt \
      /split/rest/etc/factory /split/rest/usr/local/bin /split/system/usr/local/lib /split/system/opt \
      /split/system/etc/ld.so.conf.d \
 && cuda_libs="nvidia/cu${CUDA_VERSION%%.*}" \
 && if [ -d "/${site}/${cuda_libs}" ]; then mv "/${site}/${cuda_libs}" "/split/cuda/${site}/nvidia/"; fi \
 && if [ -d "/${site}/nvidia" ]; then mv "/${site}/nvidia" "/split/nvidia/${site}/"; fi \
 && mv "/${site}/torch" "/split/torch/${site}/" \
 && mv /opt/venv /split/rest/opt/ \
 && cp -a /etc/factory/constraints.txt /split/rest/etc/factory/ \
 && cp -a /usr/local/bin/check-torch-cuda /usr/local/bin/with-build-ca /split/rest/usr/local/bin/ \
 && if compgen -G "/usr/local/lib/libnccl.so*" >/dev/null; then cp -a /usr/local/lib/libnccl.so* /split/system/usr/local/lib/; fi \
 && if [ -d /opt/cudnn ]; then cp -a /opt/cudnn /split/system/opt/; fi \
 && if compgen -G "/etc/ld.so.conf.d/000-factory-*.conf" >/dev/null; then \
      cp -a /etc/ld.so.conf.d/000-factory-*.conf /split/system/etc/ld.so.conf.d/; fi \
 && du -sh /split/*

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
COPY --from=split /split/cuda/ /
COPY --from=split /split/nvidia/ /
COPY --from=split /split/torch/ /
COPY --from=split /split/rest/ /
COPY --from=split /split/system/ /
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
