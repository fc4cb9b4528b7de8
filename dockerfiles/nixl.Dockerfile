# Extra layer "nixl" on a vLLM image (BASE_IMAGE): UCX and NIXL compiled against the image's own CUDA, for
# NIXL-based KV-cache transfer between vLLM instances (disaggregated prefill/decode, e.g. with Dynamo).
# Every ARG is passed by `factory build` from [extra.nixl] in matrix.toml; `factory plan` shows the values.
#
# Why from source: a NIXL built for CUDA 12 fails in a CUDA 13 image with "libcudart.so.12: cannot open shared
# object file". `factory verify` reads every library under /opt/ucx/lib and /opt/nixl/lib (the label
# dev.scitrera.cuda_linked) and fails the image unless they link the image's CUDA major, and only that one.

ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS build
ARG CUDA_VERSION
ARG MAX_JOBS
ARG INDEX_URL
ARG UCX_REPO
ARG UCX_REF
ARG UCX_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV UV_INDEX_URL=${INDEX_URL}
RUN apt-get update \
 && apt-get install -y --no-install-recommends autoconf automake libtool build-essential git pkg-config \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# UCX with its CUDA transports (libuct_cuda, libucm_cuda link libcudart of this image's CUDA).
WORKDIR /src/ucx
RUN git clone --depth 1 --branch "${UCX_REF}" "${UCX_REPO}" . \
 && ./autogen.sh \
 && ./contrib/configure-release --prefix=/opt/ucx --with-cuda=/usr/local/cuda --enable-mt --without-java \
      --disable-doxygen-doc \
 && make -j"${MAX_JOBS}" install \
 && grep -qx "Version: ${UCX_VERSION}" /opt/ucx/lib/pkgconfig/ucx.pc \
 && grep -q "\"version\" : \"${CUDA_VERSION}\"" /usr/local/cuda/version.json

ARG NIXL_REPO
ARG NIXL_REF
ARG NIXL_VERSION
# NIXL's C++ core and plugins with meson against that UCX, then its Python bindings as a wheel.
WORKDIR /src/nixl
RUN --mount=type=cache,target=/root/.cache/uv \
    git clone --depth 1 --branch "${NIXL_REF}" "${NIXL_REPO}" . \
 && uv pip install "meson>=1.3" ninja pybind11 \
 && meson setup build --prefix=/opt/nixl -Ducx_path=/opt/ucx -Dcudapath_inc=/usr/local/cuda/include \
      -Dcudapath_lib=/usr/local/cuda/lib64 \
 && ninja -C build -j"${MAX_JOBS}" install \
 && uv build --wheel --out-dir /wheels . \
 && ls /wheels/nixl*-"${NIXL_VERSION}"-*.whl

FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /opt/ucx/ /opt/ucx/
COPY --from=build /opt/nixl/ /opt/nixl/
COPY --from=build /wheels/ /opt/wheels/nixl/
ENV UCX_HOME=/opt/ucx \
    NIXL_PLUGIN_DIR=/opt/nixl/plugins
# ldconfig instead of LD_LIBRARY_PATH: meson puts NIXL's libraries under lib/<multiarch triplet>.
RUN --mount=type=cache,target=/root/.cache/uv \
    printf '%s\n' /opt/ucx/lib /opt/nixl/lib/*-linux-gnu > /etc/ld.so.conf.d/factory-nixl.conf \
 && ln -s /opt/nixl/lib/*-linux-gnu/plugins /opt/nixl/plugins \
 && ldconfig \
 && uv pip install --no-deps /opt/wheels/nixl/*.whl \
 && check-torch-cuda
