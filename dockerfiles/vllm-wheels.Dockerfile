# vLLM from released wheels on a wheel-mode base: minutes instead of hours. Torch is protected by the base's
# constraints; Transformers is still installed last, in a layer of its own. Downloads run through
# `with-build-ca` (the base's; BuildKit secret `build-ca`), and the index is named on each command line, never
# in ENV, where it would be baked into the published image config.

ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS runtime
ARG VLLM_VERSION
ARG TRITON_VERSION
ARG FLASHINFER_VERSION
ARG FLASHINFER_INDEX_URL
ARG RAY_VERSION
ARG INDEX_URL
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas
# The override keeps cupy-cuda12x out: vLLM releases up to 0.17 declare ray[cgraph], whose extra pulls that
# CUDA 12 build (libcublas.so.12), which fails in a CUDA 13 image and which verify rejects. ray[default] does
# not pull it; vLLM 0.33.0 declares no Ray at all.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    printf '%s\n' "cupy-cuda12x; sys_platform == 'never'" > /tmp/overrides.txt \
 && with-build-ca uv pip install --index-url "${INDEX_URL}" --override /tmp/overrides.txt \
      "triton==${TRITON_VERSION}" "flashinfer-python==${FLASHINFER_VERSION}" "vllm==${VLLM_VERSION}" \
      "ray[default]==${RAY_VERSION}" \
 && rm /tmp/overrides.txt \
 && check-torch-cuda
# FlashInfer's precompiled kernels at FlashInfer's own version, flashinfer-cubin and flashinfer-jit-cache, from
# FlashInfer's index (FLASHINFER_INDEX_URL; the package index only as a fallback: PyPI stops carrying
# flashinfer-cubin after 0.6.13). Without them the first start compiles kernels with nvcc and downloads cubins:
# slow, and broken on an air-gapped Spark. Neither has dependencies; --no-deps keeps the second index from
# supplying anything else.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    if [ -n "${FLASHINFER_INDEX_URL}" ]; then \
      with-build-ca uv pip install --no-deps --index-url "${INDEX_URL}" --extra-index-url "${FLASHINFER_INDEX_URL}" \
        "flashinfer-cubin==${FLASHINFER_VERSION}" "flashinfer-jit-cache==${FLASHINFER_VERSION}"; \
    else \
      echo "NOTE: flashinfer_index_url is empty: no flashinfer-cubin/jit-cache; FlashInfer compiles at first use"; \
    fi \
 && check-torch-cuda
COPY --chmod=755 smoke.py /opt/factory/smoke.py

ARG TRANSFORMERS_VERSION
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    with-build-ca uv pip install --index-url "${INDEX_URL}" "transformers==${TRANSFORMERS_VERSION}" \
 && check-torch-cuda
