# PyTorch-dev base from wheels: for torch releases whose aarch64 wheels are CUDA builds (torch >= 2.11 on
# PyPI). No compile stage; the resolver refuses this mode where the wheel would be CPU-only.
# Every ARG is passed by `factory build` from matrix.toml; `factory plan` shows the values.

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
# No index URL in ENV: it would be baked into the published image config (and a private one may carry a
# token). Each installing RUN names the index on its own command line.
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/cuda/bin:${PATH} \
    UV_CACHE_DIR=/root/.cache/uv \
    UV_LINK_MODE=copy \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --chmod=755 check-torch-cuda.sh /usr/local/bin/check-torch-cuda
COPY --chmod=755 with-build-ca.sh /usr/local/bin/with-build-ca
# The CUDA image must be the toolkit the matrix names: nvcc's release (major.minor) and the runtime library's
# versioned file are read from the image itself (NVIDIA's images ship no /usr/local/cuda/version.json).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python${PYTHON_VERSION} python${PYTHON_VERSION}-dev python${PYTHON_VERSION}-venv \
      build-essential git ninja-build ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && nvcc --version | grep -q "release ${CUDA_VERSION%.*}," \
 && compgen -G "/usr/local/cuda/lib64/libcudart.so.${CUDA_VERSION%%.*}.*" >/dev/null \
 && python${PYTHON_VERSION} -m venv /opt/venv \
 && mkdir -p /etc/factory \
 && printf 'torch==%s\ntorchvision==%s\ntorchaudio==%s\nnvidia-nccl-cu13==%s\n' "${TORCH_VERSION}" \
      "${TORCHVISION_VERSION}" "${TORCHAUDIO_VERSION}" "${NCCL_VERSION}" > /etc/factory/constraints.txt
# From here on every pip or uv call is held to the base's torch and NCCL.
ENV PIP_CONSTRAINT=/etc/factory/constraints.txt \
    UV_CONSTRAINT=/etc/factory/constraints.txt
# Everything comes from the image's lock (locks/<base>.txt, `factory lock`), handed over by `factory build` as
# the build context `lock`: exact versions, every file checked against its hash, nothing resolved here. uv
# itself first (pip, from the lock's `tools` layer), then torch, its CUDA libraries and NCCL (`torch` layer).
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=tools.txt,target=/tmp/lock/tools.txt \
    --mount=type=bind,from=lock,source=torch.txt,target=/tmp/lock/torch.txt \
    with-build-ca /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --require-hashes \
      --index-url "${INDEX_URL}" -r /tmp/lock/tools.txt \
 && with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" \
      ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} -r /tmp/lock/torch.txt \
 && for pin in "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "torchaudio==${TORCHAUDIO_VERSION}" \
      "nvidia-nccl-cu${CUDA_VERSION%%.*}==${NCCL_VERSION}"; do \
      grep -q "^${pin} " /tmp/lock/torch.txt || { echo "the lock does not pin ${pin} (run factory lock)" >&2; exit 1; }; \
    done \
 && check-torch-cuda
