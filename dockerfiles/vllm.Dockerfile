# vLLM for NVIDIA DGX Spark, compiled in stages on the PyTorch-dev base (BUILD_IMAGE) and shipped on BASE_IMAGE:
# the base's slim runtime image (`<base>-runtime`, the default) or the dev base itself (both passed by
# `factory build`).
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
ARG BUILD_IMAGE
FROM ${BUILD_IMAGE} AS toolchain
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

# The image's run-time environment and vLLM's build requirements from its lock (locks/<tag>.txt, `factory lock`,
# which resolved these same edited files together; the build context `lock`): exact versions, hashes checked,
# no CUDA 12 builds. The `build` layer lives only in this discarded stage and the next. The last install
# resolves nothing when the lock has every build requirement; it fills in for a release without an sdist, whose
# build requirements the lock could not know.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=vllm.txt,target=/tmp/lock/vllm.txt \
    --mount=type=bind,from=lock,source=build.txt,target=/tmp/lock/build.txt \
    with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" -r /tmp/lock/vllm.txt \
 && with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" -r /tmp/lock/build.txt \
 && with-build-ca uv pip install --index-url "${INDEX_URL}" -r requirements/build.txt \
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
ARG FLASHINFER_VERSION
ARG FLASHINFER_INDEX_URL
ARG RAY_VERSION
ARG INDEX_URL
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --chmod=755 check-ptxas.sh /usr/local/bin/check-ptxas
# Its dependencies from the lock (as in the deps stage), then the wheel, from the build stage through a bind
# mount (no second copy of it in the image), without resolving anything. TRITON_PTXAS_PATH comes from the base
# (the toolkit's ptxas on the dev base, the venv's nvidia-cuda-nvcc one on a runtime base) and must be CUDA's.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    --mount=type=bind,from=lock,source=vllm.txt,target=/tmp/lock/vllm.txt \
    with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" -r /tmp/lock/vllm.txt \
 && uv pip install --no-deps /tmp/wheels/vllm-*.whl \
 && python -c 'import sys; from importlib.metadata import version; bad = [p for p in sys.argv[1:] if version(p.split("==")[0]) != p.split("==")[1]]; sys.exit(f"installed is not {bad}: the lock is not this tag\x27s (run factory lock)" if bad else 0)' \
      "${TRITON_REQUIREMENT}" "flashinfer-python==${FLASHINFER_VERSION}" "ray==${RAY_VERSION}" \
 && check-ptxas \
 && check-torch-cuda
# FlashInfer's precompiled kernels at FlashInfer's own version, flashinfer-cubin and flashinfer-jit-cache, from
# FlashInfer's index (FLASHINFER_INDEX_URL; the package index only as a fallback: PyPI stops carrying
# flashinfer-cubin after 0.6.13). Without them the first start compiles kernels with nvcc and downloads cubins:
# slow, and broken on an air-gapped Spark. Locked like the rest when FlashInfer's index answered `factory lock`;
# otherwise the lock lists them as `unlocked` and they are installed by version (no hash to check).
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=flashinfer.txt,target=/tmp/lock/flashinfer.txt \
    --mount=type=bind,from=lock,source=unlocked.txt,target=/tmp/lock/unlocked.txt \
    if [ -s /tmp/lock/flashinfer.txt ]; then \
      with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" \
        --extra-index-url "${FLASHINFER_INDEX_URL}" -r /tmp/lock/flashinfer.txt; \
    elif [ -n "${FLASHINFER_INDEX_URL}" ] && [ -s /tmp/lock/unlocked.txt ]; then \
      echo "NOTE: installing without hashes what the lock could not lock: $(tr '\n' ' ' < /tmp/lock/unlocked.txt)" \
      && with-build-ca uv pip install --no-deps --index-url "${INDEX_URL}" \
        --extra-index-url "${FLASHINFER_INDEX_URL}" -r /tmp/lock/unlocked.txt; \
    else \
      echo "NOTE: flashinfer_index_url is empty: no flashinfer-cubin/jit-cache; FlashInfer compiles at first use"; \
    fi \
 && check-torch-cuda
COPY --chmod=755 smoke.py /opt/factory/smoke.py

# Last and alone: the only layer in which a -t4 and a -t5 image differ.
ARG TRANSFORMERS_VERSION
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=transformers.txt,target=/tmp/lock/transformers.txt \
    with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" -r /tmp/lock/transformers.txt \
 && grep -q "^transformers==${TRANSFORMERS_VERSION} " /tmp/lock/transformers.txt \
 && check-torch-cuda
