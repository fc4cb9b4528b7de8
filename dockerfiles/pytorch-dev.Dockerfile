# PyTorch-dev base for NVIDIA DGX Spark (Grace arm64 + GB10 sm_121, CUDA 13), everything built from source.
# Every ARG is passed by `factory build` from matrix.toml; `factory plan` shows the values.
#
# Why from source: PyPI's aarch64 torch below 2.11 is a CPU-only wheel (no libtorch_cuda.so), and a library
# built against libcudart.so.12 breaks in a CUDA 13 image. NCCL is built for compute_121/sm_121 and torch is
# linked against it (USE_SYSTEM_NCCL=1) and against cuDNN (USE_CUDNN=1).
#
# Downloads (pip, uv, git) run through `with-build-ca`: with the BuildKit secret `build-ca` (a TLS-inspecting
# proxy's CA, `factory build --build-ca FILE`) they trust it too; without it they run unchanged. No index URL
# is put into ENV: it would be baked into the published image config.

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
COPY --chmod=755 with-build-ca.sh /usr/local/bin/with-build-ca
COPY --chmod=755 check-torch-cuda.sh /usr/local/bin/check-torch-cuda
# The CUDA image's own CUDA_VERSION, read before `ARG CUDA_VERSION` below shadows it (from there on the name
# means the build arg); the next RUN compares both.
RUN mkdir -p /etc/factory \
 && printf '%s\n' "${CUDA_VERSION:?the CUDA image sets no CUDA_VERSION}" > /etc/factory/cuda-image-version
ARG CUDA_VERSION
# The CUDA image must be the toolkit the matrix names, checked on two facts of the image itself (NVIDIA's
# devel images ship no /usr/local/cuda/version.json): its CUDA_VERSION (full version) and nvcc's release
# (major.minor). Then NVIDIA's apt NCCL goes: it lives in /usr/lib/<multiarch>, which the loader searches
# before /usr/local/lib, so torch would load it instead of the NCCL built below (it is held: unhold first).
# No ffmpeg/sox/libav: torchaudio >= 2.9 builds no FFmpeg or SoX extension (its wheels carry none).
RUN image_cuda=$(cat /etc/factory/cuda-image-version) \
 && { [ "${image_cuda}" = "${CUDA_VERSION}" ] \
      || { echo "CUDA image is CUDA ${image_cuda}, the matrix says ${CUDA_VERSION}" >&2; exit 1; }; } \
 && { nvcc --version | grep "release ${CUDA_VERSION%.*}," \
      || { echo "nvcc is not CUDA ${CUDA_VERSION%.*}: $(nvcc --version | tail -n 2)" >&2; exit 1; }; } \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python${PYTHON_VERSION} python${PYTHON_VERSION}-dev python${PYTHON_VERSION}-venv \
      build-essential git ccache ninja-build cmake ca-certificates curl pkg-config binutils \
      libjpeg-dev libpng-dev \
 && apt_nccl=$(dpkg-query -W -f '${Package} ${db:Status-Status}\n' 'libnccl*' 2>/dev/null \
               | awk '$2 == "installed" {print $1}') \
 && if [ -n "${apt_nccl}" ]; then \
      echo "removing the CUDA image's NCCL packages: $(echo "${apt_nccl}" | tr '\n' ' ')" \
      && echo "${apt_nccl}" | xargs apt-mark unhold \
      && echo "${apt_nccl}" | xargs apt-get purge -y; \
    fi \
 && rm -rf /var/lib/apt/lists/* \
 && left=$(find /usr/lib -path '*-linux-gnu/libnccl.so*') \
 && { [ -z "${left}" ] || { echo "NCCL still in the multiarch lib folder: ${left}" >&2; exit 1; }; } \
 && python${PYTHON_VERSION} -m venv /opt/venv
# cuDNN: NVIDIA's nvidia-cudnn-cu<major> wheel at the matrix's version (the package PyPI's CUDA torch wheels
# depend on), linked at /opt/cudnn with the unversioned libcudnn.so the build's find_library needs, and made
# known to the loader. It stays in the base: torch needs it at run time. --no-deps: its one dependency,
# nvidia-cublas, would be the newest cuBLAS 13.x wheel (13.10, of CUDA 13.5, when tried), a second cuBLAS
# beside the toolkit's; cuDNN uses the toolkit's, as NVIDIA's apt cuDNN does.
ARG CUDNN_VERSION
# uv and cuDNN from the lock's `tools` layer (locks/<base>.txt, `factory lock`; the build context `lock`): exact
# versions, hashes checked, nothing resolved here.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=tools.txt,target=/tmp/lock/tools.txt \
    grep -q "^nvidia-cudnn-cu${CUDA_VERSION%%.*}==${CUDNN_VERSION} " /tmp/lock/tools.txt \
 && with-build-ca /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --require-hashes \
      -r /tmp/lock/tools.txt \
 && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && ln -s "${site}/nvidia/cudnn" /opt/cudnn \
 && ln -s libcudnn.so.9 /opt/cudnn/lib/libcudnn.so \
 && echo /opt/cudnn/lib > /etc/ld.so.conf.d/000-factory-cudnn.conf \
 && ldconfig

# NCCL at its pinned release, for the GB10 architecture only (a full gencode list takes hours and memory).
FROM toolchain AS nccl
ARG NCCL_REPO
ARG NCCL_REF
ARG NCCL_GENCODE
ARG MAX_JOBS
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/ccache \
    with-build-ca git clone --depth 1 --branch "${NCCL_REF}" "${NCCL_REPO}" /src/nccl \
 && make -C /src/nccl -j"${MAX_JOBS}" src.build NVCC_GENCODE="${NCCL_GENCODE}" BUILDDIR=/opt/nccl \
 && rm -rf /src/nccl

# torch, torchvision and torchaudio at their pins, against that NCCL and cuDNN, for TORCH_CUDA_ARCH_LIST (12.1a).
FROM toolchain AS torch
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_REPO
ARG TORCH_REF
ARG TORCH_VERSION
ARG TORCH_CUDA_ARCH_LIST
ARG MAX_JOBS
ARG NVCC_THREADS
COPY --from=nccl /opt/nccl /opt/nccl
# torch's CMake turns cuDNN off with only a warning when it does not find it: the paths are given, and the
# wheel is checked for a libcudnn.so.9 dependency before it leaves this stage.
ENV USE_CUDA=1 USE_SYSTEM_NCCL=1 NCCL_ROOT=/opt/nccl NCCL_INCLUDE_DIR=/opt/nccl/include \
    NCCL_LIB_DIR=/opt/nccl/lib USE_CUDNN=1 CUDNN_INCLUDE_DIR=/opt/cudnn/include CUDNN_LIB_DIR=/opt/cudnn/lib \
    CUDNN_LIBRARY=/opt/cudnn/lib USE_DISTRIBUTED=1 BUILD_TEST=0 USE_CCACHE=1 CMAKE_BUILD_TYPE=Release
WORKDIR /src/pytorch
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    with-build-ca git clone --depth 1 --branch "${TORCH_REF}" --recurse-submodules --shallow-submodules \
      "${TORCH_REPO}" . \
 && with-build-ca uv pip install -r requirements.txt
RUN --mount=type=cache,target=/root/.cache/ccache \
    PYTORCH_BUILD_VERSION="${TORCH_VERSION}" PYTORCH_BUILD_NUMBER=1 \
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" MAX_JOBS="${MAX_JOBS}" NVCC_THREADS="${NVCC_THREADS}" \
    python setup.py bdist_wheel --dist-dir /wheels \
 && find /src/pytorch -mindepth 1 -delete \
 && uv pip install --no-deps /wheels/torch-*.whl \
 && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && { readelf -d "${site}/torch/lib/libtorch_cuda.so" | grep 'Shared library: \[libcudnn.so.9\]' \
      || { echo "torch was built without cuDNN (libtorch_cuda.so needs no libcudnn.so.9)" >&2; exit 1; }; } \
 && check-torch-cuda

FROM torch AS vision
ARG TORCHVISION_REPO
ARG TORCHVISION_REF
ARG TORCHVISION_VERSION
ARG TORCHAUDIO_REPO
ARG TORCHAUDIO_REF
ARG TORCHAUDIO_VERSION
WORKDIR /src/vision
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/ccache \
    with-build-ca git clone --depth 1 --branch "${TORCHVISION_REF}" "${TORCHVISION_REPO}" . \
 && FORCE_CUDA=1 BUILD_VERSION="${TORCHVISION_VERSION}" python setup.py bdist_wheel --dist-dir /wheels \
 && find /src/vision -mindepth 1 -delete
WORKDIR /src/audio
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/ccache \
    with-build-ca git clone --depth 1 --branch "${TORCHAUDIO_REF}" "${TORCHAUDIO_REPO}" . \
 && USE_CUDA=1 BUILD_VERSION="${TORCHAUDIO_VERSION}" python setup.py bdist_wheel --dist-dir /wheels \
 && find /src/audio -mindepth 1 -delete

# The base: toolchain + cuDNN + NCCL + the three wheels, installed from the build stage without copying the
# wheel files in (a second copy of every wheel would ship in every image).
FROM toolchain AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG NCCL_VERSION
ARG TORCH_VERSION
ARG TORCHVISION_VERSION
ARG TORCHAUDIO_VERSION
ARG TORCH_CUDA_ARCH_LIST
COPY --from=nccl /opt/nccl/lib/ /usr/local/lib/
COPY --from=nccl /opt/nccl/include/ /usr/local/include/
# Torch cannot be swapped by a later install: PIP_CONSTRAINT/UV_CONSTRAINT pin torch, torchvision, torchaudio
# and cuDNN to what is installed here. A resolving `uv pip install` (with or without --upgrade) keeps an
# installed distribution that satisfies the constraint and never reinstalls the same version; a package
# asking for another torch makes the install fail instead of replacing it. The version has no local label
# (the source build's torch is plain `2.10.0`), so only an explicit --reinstall could fetch PyPI's wheel of
# the same version: every Dockerfile on this base runs check-torch-cuda after each install, which fails on
# PyPI's CPU-only aarch64 wheel (no libtorch_cuda.so).
# NCCL_VERSION: the CUDA image's ENV names its apt NCCL (purged above); the image says which NCCL it has.
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    PIP_CONSTRAINT=/etc/factory/constraints.txt UV_CONSTRAINT=/etc/factory/constraints.txt \
    TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas \
    NCCL_VERSION=${NCCL_VERSION}
# Last, the loader is asked which NCCL and cuDNN torch really gets: libnccl.so.2 must resolve to the NCCL built
# here (no other in the cache), libcudnn.so.9 to the pinned wheel.
# What the built wheels need at run time comes from the lock's `torch` layer (resolved from the published
# metadata of the same versions), hashes checked; the wheels themselves go in with --no-deps.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=vision,source=/wheels,target=/tmp/wheels \
    --mount=type=bind,from=lock,source=torch.txt,target=/tmp/lock/torch.txt \
    ldconfig \
 && printf 'torch==%s\ntorchvision==%s\ntorchaudio==%s\n' \
      "${TORCH_VERSION}" "${TORCHVISION_VERSION}" "${TORCHAUDIO_VERSION}" > /etc/factory/constraints.txt \
 && uv pip freeze | grep '^nvidia-cudnn-cu' >> /etc/factory/constraints.txt \
 && with-build-ca uv pip install --no-deps --require-hashes -r /tmp/lock/torch.txt \
 && uv pip install --no-deps /tmp/wheels/*.whl \
 && check-torch-cuda \
 && lib="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch/lib/libtorch_cuda.so" \
 && nccl_want="/usr/local/lib/libnccl.so.${NCCL_VERSION%-*}" \
 && test -e "${nccl_want}" \
 && ldconfig -p | grep -F 'libnccl.so.2 ' \
 && { [ "$(ldconfig -p | grep -cF 'libnccl.so.2 ')" = 1 ] \
      || { echo "more than one libnccl.so.2 in the loader cache" >&2; exit 1; }; } \
 && nccl_got=$(ldd "${lib}" | awk '$1 == "libnccl.so.2" {print $3}') \
 && { [ "$(readlink -f "${nccl_got}")" = "$(readlink -f "${nccl_want}")" ] \
      || { echo "libtorch_cuda.so loads NCCL from '${nccl_got}', not ${nccl_want}" >&2; exit 1; }; } \
 && cudnn_got=$(ldd "${lib}" | awk '$1 == "libcudnn.so.9" {print $3}') \
 && { [ "$(readlink -f "${cudnn_got}")" = "$(readlink -f /opt/cudnn/lib/libcudnn.so.9)" ] \
      || { echo "libtorch_cuda.so loads cuDNN from '${cudnn_got}', not /opt/cudnn/lib" >&2; exit 1; }; } \
 && echo "base: libnccl.so.2 -> $(readlink -f "${nccl_got}"), libcudnn.so.9 -> $(readlink -f "${cudnn_got}")"
