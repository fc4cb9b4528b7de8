# PyTorch-dev base for NVIDIA DGX Spark (Grace arm64 + GB10 sm_121, CUDA 13), everything built from source.
# Every ARG is passed by `factory build` from matrix.toml; `factory plan` shows the values.
#
# Why from source: PyPI's aarch64 torch below 2.11 is a CPU-only wheel (no libtorch_cuda.so), and a library
# built against libcudart.so.12 breaks in a CUDA 13 image. NCCL is built for compute_121/sm_121 and torch is
# linked against it (USE_SYSTEM_NCCL=1).

ARG CUDA_IMAGE
FROM ${CUDA_IMAGE} AS toolchain
ARG PYTHON_VERSION
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/cuda/bin:${PATH} \
    CCACHE_DIR=/root/.cache/ccache \
    UV_CACHE_DIR=/root/.cache/uv \
    UV_LINK_MODE=copy
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python${PYTHON_VERSION} python${PYTHON_VERSION}-dev python${PYTHON_VERSION}-venv \
      build-essential git ccache ninja-build cmake ca-certificates curl pkg-config \
      libjpeg-dev libpng-dev libsox-dev ffmpeg libavformat-dev libavcodec-dev libswscale-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python${PYTHON_VERSION} -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir uv==0.9.9
COPY --chmod=755 check-torch-cuda.sh /usr/local/bin/check-torch-cuda

# NCCL at its pinned release, for the GB10 architecture only (a full gencode list takes hours and memory).
FROM toolchain AS nccl
ARG NCCL_REPO
ARG NCCL_REF
ARG NCCL_GENCODE
ARG MAX_JOBS
RUN --mount=type=cache,target=/root/.cache/ccache \
    git clone --depth 1 --branch "${NCCL_REF}" "${NCCL_REPO}" /src/nccl \
 && make -C /src/nccl -j"${MAX_JOBS}" src.build NVCC_GENCODE="${NCCL_GENCODE}" BUILDDIR=/opt/nccl \
 && rm -rf /src/nccl

# torch, torchvision and torchaudio at their pins, against that NCCL, for TORCH_CUDA_ARCH_LIST (12.1a).
FROM toolchain AS torch
ARG TORCH_REPO
ARG TORCH_REF
ARG TORCH_VERSION
ARG TORCH_CUDA_ARCH_LIST
ARG MAX_JOBS
ARG NVCC_THREADS
COPY --from=nccl /opt/nccl /opt/nccl
ENV USE_CUDA=1 USE_SYSTEM_NCCL=1 NCCL_ROOT=/opt/nccl NCCL_INCLUDE_DIR=/opt/nccl/include \
    NCCL_LIB_DIR=/opt/nccl/lib USE_DISTRIBUTED=1 BUILD_TEST=0 USE_CCACHE=1 CMAKE_BUILD_TYPE=Release
WORKDIR /src/pytorch
RUN --mount=type=cache,target=/root/.cache/ccache --mount=type=cache,target=/root/.cache/uv \
    git clone --depth 1 --branch "${TORCH_REF}" --recurse-submodules --shallow-submodules "${TORCH_REPO}" . \
 && uv pip install -r requirements.txt \
 && PYTORCH_BUILD_VERSION="${TORCH_VERSION}" PYTORCH_BUILD_NUMBER=1 \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" MAX_JOBS="${MAX_JOBS}" NVCC_THREADS="${NVCC_THREADS}" \
    python setup.py bdist_wheel --dist-dir /wheels \
 && uv pip install /wheels/torch-*.whl \
 && find /src/pytorch -mindepth 1 -delete

FROM torch AS vision
ARG TORCHVISION_REPO
ARG TORCHVISION_REF
ARG TORCHVISION_VERSION
ARG TORCHAUDIO_REPO
ARG TORCHAUDIO_REF
ARG TORCHAUDIO_VERSION
WORKDIR /src/vision
RUN --mount=type=cache,target=/root/.cache/ccache \
    git clone --depth 1 --branch "${TORCHVISION_REF}" "${TORCHVISION_REPO}" . \
 && FORCE_CUDA=1 BUILD_VERSION="${TORCHVISION_VERSION}" python setup.py bdist_wheel --dist-dir /wheels \
 && find /src/vision -mindepth 1 -delete
WORKDIR /src/audio
RUN --mount=type=cache,target=/root/.cache/ccache \
    git clone --depth 1 --branch "${TORCHAUDIO_REF}" "${TORCHAUDIO_REPO}" . \
 && USE_CUDA=1 BUILD_VERSION="${TORCHAUDIO_VERSION}" python setup.py bdist_wheel --dist-dir /wheels \
 && find /src/audio -mindepth 1 -delete

# The base: toolchain + NCCL + the three wheels, protected so no later install can swap torch.
FROM toolchain AS base
ARG CUDA_VERSION
ARG NCCL_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCHAUDIO_VERSION
ARG TORCH_CUDA_ARCH_LIST
COPY --from=nccl /opt/nccl/lib/ /usr/local/lib/
COPY --from=nccl /opt/nccl/include/ /usr/local/include/
COPY --from=vision /wheels/ /opt/wheels/
# PIP_CONSTRAINT/UV_CONSTRAINT pin torch for every later pip or uv call; /opt/wheels is searched first, so
# nothing can pull PyPI's CPU-only aarch64 wheel of the same version over it.
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    PIP_CONSTRAINT=/etc/factory/constraints.txt UV_CONSTRAINT=/etc/factory/constraints.txt \
    PIP_FIND_LINKS=/opt/wheels UV_FIND_LINKS=/opt/wheels \
    TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas
RUN --mount=type=cache,target=/root/.cache/uv \
    ldconfig \
 && mkdir -p /etc/factory \
 && printf 'torch==%s\ntorchvision==%s\ntorchaudio==%s\n' \
      "${TORCH_VERSION}" "${TORCHVISION_VERSION}" "${TORCHAUDIO_VERSION}" > /etc/factory/constraints.txt \
 && uv pip install /opt/wheels/*.whl \
 && grep -q "\"version\" : \"${CUDA_VERSION}\"" /usr/local/cuda/version.json \
 && test -e "/usr/local/lib/libnccl.so.${NCCL_VERSION%-*}" \
 && check-torch-cuda
