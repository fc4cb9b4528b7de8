# vLLM from released wheels on a wheel-mode base (BASE_IMAGE: its slim runtime image `<base>-runtime`, the
# default, or the dev base itself): minutes instead of hours, nothing to compile, so no stage on the dev base. Every package comes from the image's
# lock (locks/<tag>.txt, `factory lock`), which `factory build` hands over as the build context `lock`, one file
# per layer: exact versions, every file checked against its hash, nothing resolved here (--no-deps). Transformers
# and whatever differs between a -t4 and a -t5 of one vLLM is the last layer, so the two share every other layer
# (the layer files carry no tag: equal pins are equal bytes, one BuildKit cache entry). Downloads run through
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
# TRITON_PTXAS_PATH comes from the base (the toolkit's ptxas on the dev base, the venv's nvidia-cuda-nvcc one
# on a runtime base); check-ptxas proves it is CUDA's once the lock is installed.
COPY --chmod=755 check-ptxas.sh /usr/local/bin/check-ptxas
# The lock has no CUDA 12 builds (`factory lock` refuses them: cupy-cuda12x from ray's cgraph extra, the
# cu12 libraries nvidia-cutlass-dsl pulls by default) and holds the venv's CUDA components to the image's CUDA.
# Then the matrix's pins must be what is installed (from this layer or the base's): else the lock is
# another tag's.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=vllm.txt,target=/tmp/lock/vllm.txt \
    with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" -r /tmp/lock/vllm.txt \
 && python -c 'import sys; from importlib.metadata import version; bad = [p for p in sys.argv[1:] if version(p.split("==")[0]) != p.split("==")[1]]; sys.exit(f"installed is not {bad}: the lock is not this tag\x27s (run factory lock)" if bad else 0)' \
      "vllm==${VLLM_VERSION}" "triton==${TRITON_VERSION}" "flashinfer-python==${FLASHINFER_VERSION}" \
      "ray==${RAY_VERSION}" \
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
