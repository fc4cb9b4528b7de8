#!/bin/sh
# Fails the build when TRITON_PTXAS_PATH is not the ptxas of the image's CUDA (major.minor of the CUDA image's
# ENV CUDA_VERSION). Triton's bundled ptxas may be older than GB10 (sm_121a); vLLM images point Triton at CUDA's:
# the toolkit's on the dev base, the venv's nvidia-cuda-nvcc wheel on a runtime base. Runs no GPU code.
set -eu
want="${CUDA_VERSION%.*}"
if [ -z "${TRITON_PTXAS_PATH:-}" ] || [ ! -x "${TRITON_PTXAS_PATH}" ]; then
  echo "check-ptxas: TRITON_PTXAS_PATH='${TRITON_PTXAS_PATH:-}' is not an executable (is nvidia-cuda-nvcc locked?)" >&2
  exit 1
fi
got=$("${TRITON_PTXAS_PATH}" --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\),.*/\1/p')
if [ "${got}" != "${want}" ]; then
  echo "check-ptxas: ${TRITON_PTXAS_PATH} is CUDA '${got}', the image is CUDA ${want}" >&2
  exit 1
fi
echo "check-ptxas: ok (${TRITON_PTXAS_PATH}, CUDA ${got})"
