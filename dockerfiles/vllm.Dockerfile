# vLLM for NVIDIA DGX Spark, built from source on a PyTorch-dev base (BASE_IMAGE, passed by `factory build`).
# Transformers is installed last, in a layer of its own, so the -t4 and -t5 images of one vLLM version share
# every other layer. `--target wheels --output type=local,dest=DIR` exports the built vLLM wheel.
#
# Stages: vllm-source (the tree at VLLM_REF) -> deps (its requirements edited for this base and installed:
# `--target deps` proves the resolution in minutes, before the hours of compiling) -> build (the wheel) ->
# runtime (the base plus the wheel and its dependencies). A build without access to git hosts, or a test,
# replaces the source with `--build-context vllm-source=DIR`, DIR holding the tree at its root (an unpacked
# sdist). Downloads run through `with-build-ca` (the base's; BuildKit secret `build-ca`), and the index is
# named on each command line, never in ENV, where it would be baked into the published image config.

ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS toolchain
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# VLLM_REF may be a tag, a branch or a commit: fetched by name, so a commit that no tag holds works too.
FROM toolchain AS vllm-clone
ARG VLLM_REPO
ARG VLLM_REF
WORKDIR /src/vllm
RUN --mount=type=secret,id=build-ca \
    git init -q . \
 && git remote add origin "${VLLM_REPO}" \
 && with-build-ca git fetch -q --depth 1 origin "${VLLM_REF}" \
 && git -c advice.detachedHead=false checkout -q FETCH_HEAD

FROM scratch AS vllm-source
COPY --from=vllm-clone /src/vllm/ /

# vLLM's requirement files edited for this base (vllm_requirements.py says why and how: its own torch,
# torchvision and torchaudio pins dropped, FlashInfer and Ray pinned to the matrix, CUDA 13 builds of CuPy
# and CUTLASS DSL), then everything the build and the runtime need, resolved against the base's torch.
FROM toolchain AS deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TRITON_REQUIREMENT
ARG FLASHINFER_REQUIREMENT
ARG RAY_VERSION
ARG INDEX_URL
COPY vllm_requirements.py /usr/local/lib/factory/vllm_requirements.py
COPY --from=vllm-source / /src/vllm
WORKDIR /src/vllm
RUN cuda_major=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p') \
 && python /usr/local/lib/factory/vllm_requirements.py /src/vllm \
      --drop torch --drop torchvision --drop torchaudio \
      --pin "${FLASHINFER_REQUIREMENT}" --pin "ray==${RAY_VERSION}" --cuda-major "${cuda_major}" --require-all

# ray[default] beside vLLM's rewritten `ray` + `cupy-cuda13x`: ray's cgraph extra (vLLM's own `ray[cgraph]`)
# pulls cupy-cuda12x, a CUDA 12 build (libcublas.so.12, libnvrtc.so.12) that fails in this CUDA 13 image and
# that verify rejects; the override keeps every other path to it out as well.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    printf '%s\n' "cupy-cuda12x; sys_platform == 'never'" > /tmp/overrides.txt \
 && with-build-ca uv pip install --index-url "${INDEX_URL}" --override /tmp/overrides.txt \
      -r requirements/build.txt -r requirements/cuda.txt \
      "${TRITON_REQUIREMENT}" "${FLASHINFER_REQUIREMENT}" "ray[default]==${RAY_VERSION}" \
 && rm /tmp/overrides.txt \
 && check-torch-cuda

FROM deps AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG VLLM_VERSION
ARG TORCH_CUDA_ARCH_LIST
ARG MAX_JOBS
ARG NVCC_THREADS
# vLLM's CMake clones CUTLASS, its FlashAttention and other kernels while it builds: with-build-ca again.
# The wheel's Requires-Dist comes from the edited requirements/cuda.txt: checked to name no torch,
# torchvision, torchaudio or CUDA 12 CuPy, which would reach for PyPI's wheels in the runtime stage.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/ccache \
    --mount=type=cache,target=/root/.cache/uv \
    SETUPTOOLS_SCM_PRETEND_VERSION="${VLLM_VERSION}" VLLM_TARGET_DEVICE=cuda \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" MAX_JOBS="${MAX_JOBS}" NVCC_THREADS="${NVCC_THREADS}" \
    with-build-ca uv build --wheel --no-build-isolation --out-dir /wheels . \
 && find /src/vllm -mindepth 1 -delete \
 && python -c 'import sys, zipfile; w = zipfile.ZipFile(sys.argv[1]); \
      print(w.read(next(n for n in w.namelist() if n.endswith(".dist-info/METADATA"))).decode())' \
      /wheels/vllm-*.whl | grep '^Requires-Dist:' > /tmp/requires.txt \
 && { ! grep -E '^Requires-Dist: (torch|torchvision|torchaudio|cupy-cuda12x) ?([=<>~!;[]|$)' /tmp/requires.txt \
      || { echo "the vLLM wheel still requires the packages above" >&2; exit 1; }; } \
 && rm /tmp/requires.txt \
 && check-torch-cuda

FROM scratch AS wheels
COPY --from=build /wheels/ /

FROM ${BASE_IMAGE} AS runtime
ARG TRITON_REQUIREMENT
ARG FLASHINFER_REQUIREMENT
ARG FLASHINFER_VERSION
ARG FLASHINFER_INDEX_URL
ARG RAY_VERSION
ARG INDEX_URL
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas
# The wheel is installed from the build stage through a bind mount: no second copy of it in the image.
# ray[default], and the override against cupy-cuda12x: see the deps stage.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    printf '%s\n' "cupy-cuda12x; sys_platform == 'never'" > /tmp/overrides.txt \
 && with-build-ca uv pip install --index-url "${INDEX_URL}" --override /tmp/overrides.txt \
      "${TRITON_REQUIREMENT}" "${FLASHINFER_REQUIREMENT}" /tmp/wheels/vllm-*.whl "ray[default]==${RAY_VERSION}" \
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

# Last and alone: the only layer in which a -t4 and a -t5 image differ.
ARG TRANSFORMERS_VERSION
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    with-build-ca uv pip install --index-url "${INDEX_URL}" "transformers==${TRANSFORMERS_VERSION}" \
 && check-torch-cuda
