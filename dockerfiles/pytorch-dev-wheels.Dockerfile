# PyTorch-dev base from wheels: for torch releases whose aarch64 wheels are CUDA builds (torch >= 2.11 on
# PyPI). No compile stage; the resolver refuses this mode where the wheel would be CPU-only.

ARG CUDA_IMAGE
FROM ${CUDA_IMAGE} AS base
ARG PYTHON_VERSION
ARG CUDA_VERSION
ARG NCCL_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCHAUDIO_VERSION
ARG TORCH_CUDA_ARCH_LIST
ARG INDEX_URL
ARG TORCH_INDEX_URL
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/cuda/bin:${PATH} \
    UV_CACHE_DIR=/root/.cache/uv \
    UV_LINK_MODE=copy \
    UV_INDEX_URL=${INDEX_URL} \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    PIP_CONSTRAINT=/etc/factory/constraints.txt UV_CONSTRAINT=/etc/factory/constraints.txt \
    TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --chmod=755 check-torch-cuda.sh /usr/local/bin/check-torch-cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python${PYTHON_VERSION} python${PYTHON_VERSION}-dev python${PYTHON_VERSION}-venv \
      build-essential git ninja-build ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python${PYTHON_VERSION} -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir uv==0.9.9 \
 && grep -q "\"version\" : \"${CUDA_VERSION}\"" /usr/local/cuda/version.json \
 && mkdir -p /etc/factory \
 && printf 'torch==%s\ntorchvision==%s\ntorchaudio==%s\nnvidia-nccl-cu13==%s\n' "${TORCH_VERSION}" \
      "${TORCHVISION_VERSION}" "${TORCHAUDIO_VERSION}" "${NCCL_VERSION}" > /etc/factory/constraints.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} \
      "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "torchaudio==${TORCHAUDIO_VERSION}" \
      "nvidia-nccl-cu13==${NCCL_VERSION}" \
 && check-torch-cuda
