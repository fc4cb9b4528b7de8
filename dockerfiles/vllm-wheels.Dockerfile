# vLLM from released wheels on a wheel-mode base: minutes instead of hours. Torch is protected by the base's
# constraints; Transformers is still installed last, in a layer of its own.

ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS runtime
ARG VLLM_VERSION
ARG TRITON_VERSION
ARG FLASHINFER_VERSION
ARG RAY_VERSION
ARG INDEX_URL
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas \
    UV_INDEX_URL=${INDEX_URL}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install "triton==${TRITON_VERSION}" "flashinfer-python==${FLASHINFER_VERSION}" \
      "vllm==${VLLM_VERSION}" "ray[default]==${RAY_VERSION}" \
 && check-torch-cuda
COPY --chmod=755 smoke.py /opt/factory/smoke.py

ARG TRANSFORMERS_VERSION
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install "transformers==${TRANSFORMERS_VERSION}" \
 && check-torch-cuda
