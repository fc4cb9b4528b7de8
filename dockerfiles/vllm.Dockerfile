# vLLM for NVIDIA DGX Spark, built from source on a PyTorch-dev base (BASE_IMAGE, passed by `factory build`).
# Transformers is installed last, in a layer of its own, so the -t4 and -t5 images of one vLLM version share
# every other layer. `--target wheels --output type=local,dest=DIR` exports the built vLLM wheel.

ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS build
ARG VLLM_REPO
ARG VLLM_REF
ARG VLLM_VERSION
ARG TORCH_CUDA_ARCH_LIST
ARG MAX_JOBS
ARG NVCC_THREADS
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# use_existing_torch.py drops vLLM's own torch pins so it compiles against the base's source-built torch.
WORKDIR /src/vllm
RUN --mount=type=cache,target=/root/.cache/ccache --mount=type=cache,target=/root/.cache/uv \
    git clone --depth 1 --branch "${VLLM_REF}" "${VLLM_REPO}" . \
 && python use_existing_torch.py \
 && uv pip install -r requirements/build.txt \
 && SETUPTOOLS_SCM_PRETEND_VERSION="${VLLM_VERSION}" VLLM_TARGET_DEVICE=cuda \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" MAX_JOBS="${MAX_JOBS}" NVCC_THREADS="${NVCC_THREADS}" \
    uv build --wheel --no-build-isolation --out-dir /wheels . \
 && find /src/vllm -mindepth 1 -delete \
 && check-torch-cuda

FROM scratch AS wheels
COPY --from=build /wheels/ /

FROM ${BASE_IMAGE} AS runtime
ARG TRITON_REQUIREMENT
ARG FLASHINFER_REQUIREMENT
ARG RAY_VERSION
ARG INDEX_URL
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas \
    UV_INDEX_URL=${INDEX_URL}
COPY --from=build /wheels/ /opt/wheels/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install "${TRITON_REQUIREMENT}" "${FLASHINFER_REQUIREMENT}" /opt/wheels/vllm-*.whl \
      "ray[default]==${RAY_VERSION}" \
 && check-torch-cuda
COPY --chmod=755 smoke.py /opt/factory/smoke.py

# Last and alone: the only layer in which a -t4 and a -t5 image differ.
ARG TRANSFORMERS_VERSION
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install "transformers==${TRANSFORMERS_VERSION}" \
 && check-torch-cuda
