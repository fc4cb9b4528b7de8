#!/usr/bin/env bash
# scripts/twin.sh - a faithful local "CUDA twin": a stand-in for NVIDIA's
# CUDA images (13.0.3-devel-ubuntu24.04 and 13.0.3-base-ubuntu24.04), for
# linux/amd64 and linux/arm64, so the project's real Dockerfiles can be built
# here, where no NVIDIA image can be pulled. docs/twin.md says what the twin
# holds, where each property comes from, and where it differs from NVIDIA's
# image.
#
# Usage: scripts/twin.sh build [--arch amd64|arm64|all] [--cuda 13.0.3] [--flavor devel|base|all]
#        scripts/twin.sh ref --arch amd64|arm64 [--cuda 13.0.3] [--flavor devel|base]
#        scripts/twin.sh status [--cuda 13.0.3] [--flavor devel|base|all]
#   build   (root) make the twin image(s) and import them into the engine on
#           /var/run/docker.sock as factory-twin/cuda:<cuda>-<flavor>-<arch>
#   ref     print the image reference of one architecture and flavor
#   status  print what is imported and what is cached (no root needed;
#           both flavors unless --flavor says one)
#   --flavor  devel (the default for build and ref): NVIDIA's devel image, the
#             whole toolkit, NCCL, build-essential; base: NVIDIA's base image,
#             only the CUDA runtime library (libcudart) and NVIDIA's base
#             environment, no compiler, headers or NCCL.
#
# What a build does, per architecture and flavor (every step is cached):
#   1. OS:    a Debian trixie root filesystem from `mmdebstrap --variant=minbase`
#             (Ubuntu 24.04 cannot be fetched here; trixie is the documented
#             deviation), with the packages NVIDIA's image carries;
#   2. CUDA:  NVIDIA's own wheels on PyPI at the pins of cuda-toolkit==13.0.3.0,
#             plus nvidia-nccl-cu13 at the NCCL of NVIDIA's image (devel); only
#             nvidia-cuda-runtime (base), taken from the devel wheel cache when
#             it holds it;
#   3. twin:  the wheels laid out as NVIDIA's .deb packages lay them out
#             (/usr/local/cuda-13.0/..., alternatives links, ld.so.conf.d, apt's
#             libnccl2/libnccl-dev with a held dpkg status; base: cuda-cudart's
#             files only), the entrypoint (devel), then one root filesystem tar;
#   4. image: `docker import --platform linux/<arch>` with --change lines for
#             NVIDIA's environment, entrypoint (devel) or command (base) and label.
#
# Cache: ${FACTORY_ENGINE_CACHE:-/var/cache/spark-image-factory-engine}/twin/
#   rootfs/  the mmdebstrap tarballs      wheels/  the downloaded wheels
#   image/   the finished twin rootfs tars (.tar.gz)   imported/  what was imported last
# Each entry is named by a hash of its inputs (versions, package lists, mirror
# and the code of the functions that make it), so a changed input makes a new
# entry and an unchanged one is reused: a second build only runs `docker
# import` when the image is missing (about a minute), and nothing when it is
# present (under a second).
# Entries of older hashes are removed once a newer one is complete; the two
# flavors' entries are named apart and never remove each other.
#
# Environment knobs:
#   FACTORY_ENGINE_CACHE  cache root (default /var/cache/spark-image-factory-engine)
set -euo pipefail

# ----------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------
CACHE=${FACTORY_ENGINE_CACHE:-/var/cache/spark-image-factory-engine}
TWIN=$CACHE/twin
REPO=factory-twin/cuda
DEFAULT_CUDA=13.0.3
ARCHES=(amd64 arm64)
SUITE=trixie
# What NVIDIA's image brings besides CUDA (docs/twin.md, "Packages"):
# ca-certificates and gnupg from the base layer, build-essential because the
# devel layer's cuda-nvcc-13-0 depends on it.
ROOTFS_PACKAGES=(ca-certificates gnupg build-essential)
FLAVORS=(devel base)
# The flavor being worked on; flavor_profile sets it (and ROOTFS_PACKAGES).
FLAVOR=devel
# NVIDIA's base image: only the base layer's packages (build-essential comes
# with the devel layer's cuda-nvcc).
DEVEL_ROOTFS_PACKAGES=("${ROOTFS_PACKAGES[@]}")
BASE_ROOTFS_PACKAGES=(ca-certificates gnupg)

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
unset DOCKER_HOST DOCKER_CONTEXT

# ----------------------------------------------------------------------------
# Small helpers (the same conventions as scripts/engine.sh)
# ----------------------------------------------------------------------------
log() { printf '[twin] %s\n' "$*"; }
warn() { printf '[twin] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[twin] ERROR: %s\n' "$*" >&2
  exit 1
}

now() { date +%s.%N; }
# step "description" command...  - run a command and print how long it took.
step() {
  local what=$1 t0
  shift
  t0=$(now)
  "$@"
  printf '[twin] %-44s %6ss\n' "$what" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "'$1' needs root (mmdebstrap, chroot, files owned by root)"
}

# Serialize builds between concurrent callers; the lock fd is 8.
take_lock() {
  mkdir -p "$TWIN"
  exec 8>"$TWIN/.lock"
  flock -w 3600 8 || die "could not take $TWIN/.lock within an hour"
}

APT_COMMON=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -q)

# Tools this script runs on the host, installed from the machine's own sources.
need_host_tools() {
  local missing=() tool pkg
  for tool in mmdebstrap:mmdebstrap arch-test:arch-test unzip:unzip pigz:pigz chroot:coreutils flock:util-linux; do
    pkg=${tool#*:}
    command -v "${tool%%:*}" >/dev/null || missing+=("$pkg")
  done
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing from the machine's sources: ${missing[*]}"
  apt-get "${APT_COMMON[@]}" update
  apt-get "${APT_COMMON[@]}" install -y --no-install-recommends "${missing[@]}"
}

# The URI of the machine's Debian mirror (as scripts/engine.sh finds it).
debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find the Debian mirror URI in /etc/apt/sources*"
  echo "${uri%/}"
}

# The machine's security mirror, if it has one (a deb822 stanza whose Suites
# end in -security, or a one-line source naming one); empty when none.
debian_security_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk 'BEGIN {RS = ""} /Suites:[^\n]*-security/ {if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit}}' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 ~ /-security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${uri%/}"
}

# key WORDS... - a short hash of its arguments (the inputs of a cache entry).
key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

human_size() { du -sh "$1" 2>/dev/null | cut -f1; }

# ----------------------------------------------------------------------------
# What one CUDA version is: NVIDIA's pins and environment (docs/twin.md)
# ----------------------------------------------------------------------------
# cuda_profile VERSION - set the variables describing that CUDA release.
cuda_profile() {
  case "$1" in
  13.0.3)
    CUDA_VERSION=13.0.3
    CUDA_MM=13.0    # /usr/local/cuda-13.0
    CUDA_MAJOR=13   # /usr/local/cuda-13
    CUDA_DASH=13-0  # deb package suffix
    # The pins of cuda-toolkit==13.0.3.0 (its METADATA, extra "all"); the
    # nvjitlink pin there is a range (>=13.0.88,<14): its 13.0 release is used.
    WHEELS=(
      nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
      nvidia-cuda-cupti==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-nvtx==13.0.85
      nvidia-nvjitlink==13.0.88 nvidia-cuda-profiler-api==13.0.85
      nvidia-nvml-dev==13.0.87 nvidia-cuda-cuxxfilt==13.0.85
      nvidia-cuda-culibos==13.0.85 nvidia-cuda-sanitizer-api==13.0.85
      nvidia-nvfatbin==13.0.85 nvidia-nvptxcompiler==13.0.88
      nvidia-cublas==13.1.1.3 nvidia-cufft==12.0.0.61 nvidia-curand==10.4.0.35
      nvidia-cusolver==12.0.4.66 nvidia-cusparse==12.6.3.3
      nvidia-npp==13.0.1.2 nvidia-nvjpeg==13.0.1.86 nvidia-cufile==1.15.1.6
    )
    WHEELS_AMD64=(nvidia-cuda-opencl==13.0.85) # x86_64 only in the METADATA
    # The base flavor: cuda-cudart-13-0's library only, from the same wheel.
    BASE_WHEELS=(nvidia-cuda-runtime==13.0.96)
    # apt's NCCL in NVIDIA's image: libnccl2/libnccl-dev 2.28.3-1+cuda13.0.
    NCCL_WHEEL=nvidia-nccl-cu13==2.28.3
    NCCL_SO_VERSION=2.28.3
    NCCL_PKG_VERSION=2.28.3-1
    NCCL_DEB_VERSION=2.28.3-1+cuda13.0
    # Debian package versions NVIDIA's Dockerfiles name in their ENV lines.
    DEB_CUDA_LIB=13.0.3-1
    DEB_CUDART=13.0.96-1
    DEB_NVTX=13.0.85-1
    DEB_NPP=13.0.1.2-1
    DEB_CUSPARSE=12.6.3.3-1
    DEB_CUBLAS=13.1.1.3-1
    DEB_NVML=13.0.87-1
    DEB_NSIGHT_COMPUTE=13.0.3-1
    # NVIDIA_REQUIRE_CUDA: cuda>=13.0 and, for every driver branch, every brand.
    REQUIRE_CUDA_MIN=13.0
    REQUIRE_DRIVER_BRANCHES=(535 550 565 570 575)
    REQUIRE_BRANDS=(unknown grid tesla nvidia quadro quadrortx nvidiartx vapps vpc vcs vws cloudgaming)
    ALTERNATIVES_PRIORITY=130
    ;;
  *)
    die "CUDA $1 is not defined here (defined: 13.0.3); add its pins to cuda_profile"
    ;;
  esac
}

# arch_profile ARCH - the names one Debian architecture goes by.
arch_profile() {
  case "$1" in
  amd64)
    NVARCH=x86_64 TARGET=x86_64-linux TRIPLET=x86_64-linux-gnu WHEEL_MACHINE=x86_64
    ;;
  arm64)
    NVARCH=sbsa TARGET=sbsa-linux TRIPLET=aarch64-linux-gnu WHEEL_MACHINE=aarch64
    ;;
  *) die "unknown architecture '$1' (amd64 or arm64)" ;;
  esac
}

# flavor_profile FLAVOR - select the flavor the functions below work on.
flavor_profile() {
  case "$1" in
  devel) FLAVOR=devel ROOTFS_PACKAGES=("${DEVEL_ROOTFS_PACKAGES[@]}") ;;
  base) FLAVOR=base ROOTFS_PACKAGES=("${BASE_ROOTFS_PACKAGES[@]}") ;;
  *) die "unknown flavor '$1' (devel or base)" ;;
  esac
}

image_ref() { echo "$REPO:$CUDA_VERSION-$FLAVOR-$1"; }

nvidia_require_cuda() {
  local out="cuda>=$REQUIRE_CUDA_MIN" d b
  for d in "${REQUIRE_DRIVER_BRANCHES[@]}"; do
    for b in "${REQUIRE_BRANDS[@]}"; do
      out+=" brand=$b,driver>=$d,driver<$((d + 1))"
    done
  done
  echo "$out"
}

# The image config: one NAME=VALUE a line, in the order NVIDIA's three
# Dockerfiles (base, runtime, devel) set them; PATH first, as Ubuntu's base
# image sets it.
image_env() {
  cat <<EOF
PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NVARCH=$NVARCH
NVIDIA_REQUIRE_CUDA=$(nvidia_require_cuda)
NV_CUDA_CUDART_VERSION=$DEB_CUDART
CUDA_VERSION=$CUDA_VERSION
LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64:/usr/local/cuda/lib64
NVIDIA_VISIBLE_DEVICES=all
NVIDIA_DRIVER_CAPABILITIES=compute,utility
NV_CUDA_LIB_VERSION=$DEB_CUDA_LIB
NV_NVTX_VERSION=$DEB_NVTX
NV_LIBNPP_VERSION=$DEB_NPP
NV_LIBNPP_PACKAGE=libnpp-$CUDA_DASH=$DEB_NPP
NV_LIBCUSPARSE_VERSION=$DEB_CUSPARSE
NV_LIBCUBLAS_PACKAGE_NAME=libcublas-$CUDA_DASH
NV_LIBCUBLAS_VERSION=$DEB_CUBLAS
NV_LIBCUBLAS_PACKAGE=libcublas-$CUDA_DASH=$DEB_CUBLAS
NV_LIBNCCL_PACKAGE_NAME=libnccl2
NV_LIBNCCL_PACKAGE_VERSION=$NCCL_PKG_VERSION
NCCL_VERSION=$NCCL_PKG_VERSION
NV_LIBNCCL_PACKAGE=libnccl2=$NCCL_DEB_VERSION
NVIDIA_PRODUCT_NAME=CUDA
NV_CUDA_CUDART_DEV_VERSION=$DEB_CUDART
NV_NVML_DEV_VERSION=$DEB_NVML
NV_LIBCUSPARSE_DEV_VERSION=$DEB_CUSPARSE
NV_LIBNPP_DEV_VERSION=$DEB_NPP
NV_LIBNPP_DEV_PACKAGE=libnpp-dev-$CUDA_DASH=$DEB_NPP
NV_LIBCUBLAS_DEV_VERSION=$DEB_CUBLAS
NV_LIBCUBLAS_DEV_PACKAGE_NAME=libcublas-dev-$CUDA_DASH
NV_LIBCUBLAS_DEV_PACKAGE=libcublas-dev-$CUDA_DASH=$DEB_CUBLAS
NV_CUDA_NSIGHT_COMPUTE_VERSION=$DEB_NSIGHT_COMPUTE
NV_CUDA_NSIGHT_COMPUTE_DEV_PACKAGE=cuda-nsight-compute-$CUDA_DASH=$DEB_NSIGHT_COMPUTE
NV_LIBNCCL_DEV_PACKAGE_NAME=libnccl-dev
NV_LIBNCCL_DEV_PACKAGE_VERSION=$NCCL_PKG_VERSION
NV_LIBNCCL_DEV_PACKAGE=libnccl-dev=$NCCL_DEB_VERSION
LIBRARY_PATH=/usr/local/cuda/lib64/stubs
EOF
}

# The base flavor's config: the lines of NVIDIA's base Dockerfile, in its
# order (image_env, the devel flavor's, starts with the same lines). No
# NVIDIA_PRODUCT_NAME, LIBRARY_PATH or NV_* package variables: the runtime
# and devel Dockerfiles add those.
base_image_env() {
  cat <<EOF
PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
NVARCH=$NVARCH
NVIDIA_REQUIRE_CUDA=$(nvidia_require_cuda)
NV_CUDA_CUDART_VERSION=$DEB_CUDART
CUDA_VERSION=$CUDA_VERSION
LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64:/usr/local/cuda/lib64
NVIDIA_VISIBLE_DEVICES=all
NVIDIA_DRIVER_CAPABILITIES=compute,utility
EOF
}

# flavor_env - the environment of the flavor being worked on.
flavor_env() {
  case "$FLAVOR" in
  devel) image_env ;;
  base) base_image_env ;;
  esac
}

IMAGE_ENTRYPOINT='["/opt/nvidia/nvidia_entrypoint.sh"]'
# NVIDIA's base Dockerfile sets no ENTRYPOINT (its runtime Dockerfile does):
# the command stays that of Ubuntu's image.
BASE_IMAGE_CMD='["/bin/bash"]'
IMAGE_LABEL_MAINTAINER='NVIDIA CORPORATION <cudatools@nvidia.com>'

# ----------------------------------------------------------------------------
# 1. OS: the Debian root filesystem (mmdebstrap)
# ----------------------------------------------------------------------------
# The apt source lines: the machine's mirror for trixie and trixie-updates, its
# security mirror (if it has one) for trixie-security.
apt_source_lines() {
  local m sec
  m=$(debian_mirror)
  sec=$(debian_security_mirror)
  echo "deb $m $SUITE main"
  echo "deb $m $SUITE-updates main"
  [ -z "$sec" ] || echo "deb $sec $SUITE-security main"
}

make_rootfs() { # make_rootfs ARCH OUT.tar
  local arch=$1 out=$2 sources=()
  mapfile -t sources < <(apt_source_lines)
  rm -f "$out.tmp"
  # --skip=output/dev: no device nodes in the tar (the engine makes /dev).
  mmdebstrap --quiet --variant=minbase --architectures="$arch" \
    --include="$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")" \
    --aptopt='Acquire::Retries "3"' --skip=output/dev \
    --format=tar "$SUITE" "$out.tmp" "${sources[@]}"
  mv "$out.tmp" "$out"
}

rootfs_key() { # rootfs_key ARCH
  key rootfs "$SUITE" "$1" "${ROOTFS_PACKAGES[*]}" "$(apt_source_lines)" "$(declare -f make_rootfs)"
}
# The cache entries of the two flavors are named apart (PREFIX<key>...), so
# that pruning one flavor's older entries never touches the other's.
rootfs_prefix() { # rootfs_prefix ARCH
  case "$FLAVOR" in
  devel) echo "$SUITE-$1-" ;;
  base) echo "$SUITE-base-$1-" ;;
  esac
}
rootfs_tar() { echo "$TWIN/rootfs/$(rootfs_prefix "$1")$(rootfs_key "$1").tar"; }

# ----------------------------------------------------------------------------
# 2. CUDA: NVIDIA's wheels from PyPI
# ----------------------------------------------------------------------------
wheel_pins() { # wheel_pins ARCH
  if [ "$FLAVOR" = base ]; then
    printf '%s\n' "${BASE_WHEELS[@]}"
    return 0
  fi
  printf '%s\n' "${WHEELS[@]}" "$NCCL_WHEEL"
  [ "$1" != amd64 ] || printf '%s\n' "${WHEELS_AMD64[@]}"
}

download_wheels() { # download_wheels ARCH DIR
  local arch=$1 dir=$2 pins=() platforms=() v cert=()
  mapfile -t pins < <(wheel_pins "$arch")
  # Every manylinux tag a wheel of these may carry (pip matches an explicit
  # --platform literally), newest first.
  for v in $(seq 28 -1 5); do platforms+=(--platform "manylinux_2_${v}_$WHEEL_MACHINE"); done
  platforms+=(--platform "manylinux2014_$WHEEL_MACHINE")
  [ "$arch" != amd64 ] || platforms+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  # --isolated: none of the machine's pip configuration (extra indexes, local
  # find-links, constraints): only PyPI. The machine's CA bundle is kept, for
  # TLS through a re-signing proxy.
  [ ! -f /etc/ssl/certs/ca-certificates.crt ] || cert=(--cert /etc/ssl/certs/ca-certificates.crt)
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial"
  python3 -m pip download --isolated "${cert[@]}" --quiet --progress-bar off --disable-pip-version-check \
    --no-deps --only-binary=:all: --python-version 3.12 "${platforms[@]}" \
    --dest "$dir.partial" "${pins[@]}"
  local got
  got=$(find "$dir.partial" -name '*.whl' | wc -l)
  [ "$got" -eq "${#pins[@]}" ] || die "expected ${#pins[@]} wheels for $arch, got $got in $dir.partial"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
}

wheels_key() { key wheels "$1" "$(wheel_pins "$1")" "$(declare -f download_wheels)"; }
wheels_prefix() { # wheels_prefix ARCH
  case "$FLAVOR" in
  devel) echo "$1-" ;;
  base) echo "base-$1-" ;;
  esac
}
wheels_dir() { echo "$TWIN/wheels/$(wheels_prefix "$1")$(wheels_key "$1")"; }

# base_wheels_from_cache ARCH DIR - the base flavor's wheels, hard-linked (or
# copied) from a complete devel cache entry of ARCH that holds the same files
# (the same pins from PyPI), so the base flavor downloads nothing when the
# devel one is cached. Fails when one of them is in no such entry.
base_wheels_from_cache() {
  local arch=$1 dir=$2 pin name f found=()
  while IFS= read -r pin; do
    name=${pin%%==*}
    f=$(compgen -G "$TWIN/wheels/$arch-*/${name//-/_}-${pin#*==}-*.whl" | grep -v '\.partial/' | head -n1) || return 1
    [ -n "$f" ] || return 1
    found+=("$f")
  done < <(wheel_pins "$arch")
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial"
  for f in "${found[@]}"; do
    ln "$f" "$dir.partial/" 2>/dev/null || cp "$f" "$dir.partial/"
  done
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
}

# ----------------------------------------------------------------------------
# 3. The twin's root filesystem: OS + CUDA laid out as NVIDIA's .debs do
# ----------------------------------------------------------------------------
# place_lib FILE VERSION LIBDIR - a shared library from a wheel, at its .deb
# name: libX.so.MAJOR from a wheel of version MAJOR.y.z becomes the file
# libX.so.MAJOR.y.z, with the SONAME link libX.so.MAJOR and the -dev link
# libX.so. Names whose full form the .debs are not known to use stay as the
# wheel has them (docs/twin.md, "Libraries").
place_lib() {
  local f=$1 ver=$2 dir=$3 b stem suffix
  b=$(basename "$f")
  case "$b" in
  libOpenCL.so.1)
    install -m 644 "$f" "$dir/libOpenCL.so.1.0.0"
    ln -sfn libOpenCL.so.1.0.0 "$dir/libOpenCL.so.1.0"
    ln -sfn libOpenCL.so.1.0 "$dir/libOpenCL.so.1"
    ln -sfn libOpenCL.so.1 "$dir/libOpenCL.so"
    ;;
  lib*.so.*)
    stem=${b%%.so.*}.so
    suffix=${b#*.so.}
    if [[ "$b" != libcupti.so.* && "$b" != libcufile* && "$ver" == "$suffix".* ]]; then
      install -m 644 "$f" "$dir/$stem.$ver"
      ln -sfn "$stem.$ver" "$dir/$b"
    else
      install -m 644 "$f" "$dir/$b"
    fi
    ln -sfn "$b" "$dir/$stem"
    ;;
  *) install -m 644 "$f" "$dir/$b" ;;
  esac
}

# install_cuda ROOT WHEELS_DIR STAGE - unpack every CUDA wheel into
# /usr/local/cuda-X.Y as the .deb packages lay the toolkit out.
install_cuda() {
  local root=$1 wheels=$2 stage=$3 whl name ver s f
  local cuda=$root/usr/local/cuda-$CUDA_MM
  local tgt=$cuda/targets/$TARGET
  mkdir -p "$cuda/bin" "$cuda/nvvm/bin" "$cuda/nvvm/include" "$cuda/nvvm/lib64" "$cuda/nvvm/libdevice" \
    "$cuda/compute-sanitizer/include" "$tgt/include" "$tgt/lib/stubs"
  for whl in "$wheels"/*.whl; do
    name=$(basename "$whl" | cut -d- -f1)
    ver=$(basename "$whl" | cut -d- -f2)
    [ "$name" != nvidia_nccl_cu13 ] || continue # apt's NCCL: install_nccl
    rm -rf "$stage"
    mkdir -p "$stage"
    unzip -q -o "$whl" -x '*.dist-info/*' -d "$stage"
    s=$stage/nvidia/cu$CUDA_MAJOR
    [ -d "$s" ] || die "$whl has no nvidia/cu$CUDA_MAJOR/"
    rm -rf "$s/.metadata" # the packaging's own scan reports
    case "$name" in
    nvidia_cuda_sanitizer_api)
      # cuda-sanitizer: /usr/local/cuda-X.Y/compute-sanitizer/, bin/ links it.
      install -m 755 "$s/bin/compute-sanitizer" "$cuda/compute-sanitizer/"
      install -m 644 "$s/bin/libsanitizer-collection.so" "$cuda/compute-sanitizer/"
      for f in "$s"/lib/*; do install -m 644 "$f" "$cuda/compute-sanitizer/"; done
      cp -R "$s/include/." "$cuda/compute-sanitizer/include/"
      ln -sfn ../compute-sanitizer/compute-sanitizer "$cuda/bin/compute-sanitizer"
      ;;
    nvidia_nvvm)
      # libnvvm: /usr/local/cuda-X.Y/nvvm/{bin,include,lib64,libdevice}.
      install -m 644 "$s/lib/libnvvm.so.4" "$cuda/nvvm/lib64/libnvvm.so.4.0.0"
      ln -sfn libnvvm.so.4.0.0 "$cuda/nvvm/lib64/libnvvm.so.4"
      ln -sfn libnvvm.so.4 "$cuda/nvvm/lib64/libnvvm.so"
      install -m 644 "$s/include/nvvm.h" "$cuda/nvvm/include/"
      cp -R "$s/nvvm/." "$cuda/nvvm/"
      ;;
    *)
      [ ! -d "$s/bin" ] || cp -R "$s/bin/." "$cuda/bin/"
      [ ! -d "$s/include" ] || cp -R "$s/include/." "$tgt/include/"
      if [ -d "$s/lib" ]; then
        for f in "$s"/lib/*; do
          if [ -d "$f" ]; then
            cp -R "$f" "$tgt/lib/" # lib/cmake/{cccl,cub,libcudacxx,thrust}
          else
            place_lib "$f" "$ver" "$tgt/lib"
          fi
        done
      fi
      ;;
    esac
  done
  rm -rf "$stage"
  # .deb modes: directories and executables 755, everything else 644.
  find "$cuda" -type d -exec chmod 755 {} +
  find "$cuda" -type f -perm -u+x -exec chmod 755 {} +
  find "$cuda" -type f ! -perm -u+x -exec chmod 644 {} +
  [ -x "$cuda/bin/nvcc" ] || die "no nvcc in $cuda/bin after unpacking the wheels"
  # The toolkit's include and lib64 are links into targets/.
  ln -sfn "targets/$TARGET/include" "$cuda/include"
  ln -sfn "targets/$TARGET/lib" "$cuda/lib64"
  link_toolkit "$root"
  # libcufile (a runtime-layer package) adds its own linker path.
  echo "/usr/local/cuda-$CUDA_MM/targets/$TARGET/lib" >"$root/etc/ld.so.conf.d/gds-$CUDA_DASH.conf"
}

# dpkg_register ROOT PACKAGE DEPENDS DESCRIPTION PATH... - make dpkg believe
# PACKAGE is installed, held (NVIDIA's Dockerfiles `apt-mark hold` it), and
# owns PATHs, so that `apt-get purge` and `apt-mark unhold` act as on
# NVIDIA's image (docs/twin.md, "apt's NCCL").
dpkg_register() {
  local root=$1 pkg=$2 depends=$3 description=$4
  shift 4
  local info=$root/var/lib/dpkg/info p d size=0 dirs=()
  for p in "$@"; do
    d=$(dirname "$p")
    while [ "$d" != / ]; do
      dirs+=("$d")
      d=$(dirname "$d")
    done
    [ -L "$root$p" ] || size=$((size + $(stat -c %s "$root$p")))
  done
  {
    echo "/."
    printf '%s\n' "${dirs[@]}" "$@" | sort -u
  } >"$info/$pkg.list"
  for p in "$@"; do
    [ -L "$root$p" ] || (cd "$root" && md5sum "${p#/}")
  done >"$info/$pkg.md5sums"
  {
    echo "Package: $pkg"
    echo "Status: hold ok installed"
    echo "Priority: optional"
    echo "Section: libs"
    echo "Installed-Size: $(((size + 1023) / 1024))"
    echo "Maintainer: cudatools <cudatools@nvidia.com>"
    echo "Architecture: $ARCH"
    echo "Source: nccl"
    echo "Version: $NCCL_DEB_VERSION"
    [ -z "$depends" ] || echo "Depends: $depends"
    echo "Description: $description"
    echo " A twin's entry (scripts/twin.sh): these files come from the nvidia-nccl-cu$CUDA_MAJOR wheel."
    echo
  } >>"$root/var/lib/dpkg/status"
}

# install_nccl ROOT WHEELS_DIR STAGE - apt's libnccl2 and libnccl-dev, as
# NVIDIA's runtime and devel Dockerfiles install them, from the NCCL wheel.
install_nccl() {
  local root=$1 wheels=$2 stage=$3 whl lib=/usr/lib/$TRIPLET h
  whl=$(compgen -G "$wheels/nvidia_nccl_cu${CUDA_MAJOR}-*.whl" | head -n1) || die "no NCCL wheel in $wheels"
  rm -rf "$stage"
  mkdir -p "$stage" "$root$lib" "$root/usr/include"
  unzip -q -o "$whl" -x '*.dist-info/*' -d "$stage"
  install -m 644 "$stage/nvidia/nccl/lib/libnccl.so.2" "$root$lib/libnccl.so.$NCCL_SO_VERSION"
  ln -sfn "libnccl.so.$NCCL_SO_VERSION" "$root$lib/libnccl.so.2"
  ln -sfn libnccl.so.2 "$root$lib/libnccl.so"
  cp -R "$stage/nvidia/nccl/include/." "$root/usr/include/"
  local headers=()
  while IFS= read -r h; do headers+=("/usr/include/${h#"$stage"/nvidia/nccl/include/}"); done \
    < <(find "$stage/nvidia/nccl/include" -type f | sort)
  for h in "${headers[@]}"; do
    chmod 644 "$root$h"
    [ "$(dirname "$h")" = /usr/include ] || chmod 755 "$root$(dirname "$h")"
  done
  rm -rf "$stage"
  dpkg_register "$root" libnccl2 "" "NVIDIA Collective Communication Library (NCCL) Runtime" \
    "$lib/libnccl.so.$NCCL_SO_VERSION" "$lib/libnccl.so.2"
  dpkg_register "$root" libnccl-dev "libnccl2 (= $NCCL_DEB_VERSION)" \
    "NVIDIA Collective Communication Library (NCCL) Development Files" \
    "$lib/libnccl.so" "${headers[@]}"
}

# configure_os ROOT - what Ubuntu's and NVIDIA's layers add around the packages.
configure_os() {
  local root=$1 m sec days
  m=$(debian_mirror)
  sec=$(debian_security_mirror)
  # apt: the machine's Debian mirror (deb822, as trixie writes it).
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$m" "$SUITE" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$sec" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$sec" "$SUITE"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  # Ubuntu's container images keep apt from caching .debs and binary caches
  # in image layers; the same three settings as their docker-clean.
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
# As in Ubuntu's container images: no downloaded .deb files and no binary
# package caches are kept, so they never end up in an image layer.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  # Ubuntu 24.04's image has a user "ubuntu" (uid and gid 1000).
  if ! grep -q '^ubuntu:' "$root/etc/passwd"; then
    days=$(awk -F: '$1 == "root" {print $3}' "$root/etc/shadow")
    echo "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash" >>"$root/etc/passwd"
    echo "ubuntu:x:1000:" >>"$root/etc/group"
    echo "ubuntu:!:${days}:0:99999:7:::" >>"$root/etc/shadow"
    echo "ubuntu:!::" >>"$root/etc/gshadow"
    mkdir -p "$root/home/ubuntu"
    cp -R "$root/etc/skel/." "$root/home/ubuntu/"
    chown -R 1000:1000 "$root/home/ubuntu"
    chmod 750 "$root/home/ubuntu"
  fi
  # The build machine's name and DNS are not the image's: the engine mounts its own.
  rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
}

# install_entrypoint ROOT - NVIDIA's runtime image runs every command through
# /opt/nvidia/nvidia_entrypoint.sh, which prints a banner from the parts in
# /opt/nvidia/entrypoint.d/ (in name order: *.txt printed, *.sh sourced) and
# then runs the command (bash when none). This one behaves the same way; its
# parts are written here, not copied from NVIDIA (docs/twin.md, "Entrypoint").
install_entrypoint() {
  local root=$1 d=$1/opt/nvidia
  mkdir -p "$d/entrypoint.d"
  cat >"$d/nvidia_entrypoint.sh" <<'EOF'
#!/bin/bash
# The CUDA twin's entrypoint (scripts/twin.sh): print the banner parts of
# entrypoint.d/ in name order (*.txt printed, *.sh sourced), then run the
# command given, or bash when there is none.
shopt -s nullglob extglob
_SCRIPT_DIR="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
declare -a _PARTS=( "${_SCRIPT_DIR}/entrypoint.d"/*@(.txt|.sh) )
shopt -u nullglob extglob

print_repeats() {
  local -r char="$1" count="$2"
  local i
  for ((i = 1; i <= count; i++)); do echo -n "$char"; done
  echo
}

print_banner_text() {
  local -r char="$1" text="$2"
  print_repeats "$char" $((${#text} + 6))
  echo "${char}${char} ${text} ${char}${char}"
  print_repeats "$char" $((${#text} + 6))
}

for _file in "${_PARTS[@]}"; do
  case "${_file}" in
    *.txt) cat "${_file}" ;;
    *.sh) source "${_file}" ;;
  esac
done

echo

if [[ $# -eq 0 ]]; then
  exec /bin/bash
else
  exec "$@"
fi
EOF
  cat >"$d/entrypoint.d/10-banner.sh" <<'EOF'
#!/bin/bash
# The product name in a frame of "=".
if [[ -n "${NVIDIA_PRODUCT_NAME}" ]]; then
  echo
  print_banner_text "=" "${NVIDIA_PRODUCT_NAME}"
fi
EOF
  cat >"$d/entrypoint.d/12-banner.sh" <<'EOF'
#!/bin/bash
# "<product> Version <version>", the version from <PRODUCT>_VERSION.
_version_var="$(echo "${NVIDIA_PRODUCT_NAME}" | tr '[:lower:] ' '[:upper:]_' | sed 's/^NVIDIA_//')_VERSION"
echo
[ -n "${!_version_var}" ] && echo "${NVIDIA_PRODUCT_NAME} Version ${!_version_var}"
EOF
  cat >"$d/entrypoint.d/15-twin.txt" <<'EOF'

This is a CUDA twin made by spark-image-factory's scripts/twin.sh: a local stand-in
for NVIDIA's CUDA devel image (Debian trixie, CUDA from NVIDIA's wheels), not NVIDIA's image.
EOF
  cat >"$d/entrypoint.d/50-gpu-driver-check.sh" <<'EOF'
#!/bin/bash
# Warn when no NVIDIA driver is visible: no libcuda.so.1 for the dynamic
# linker, or no GPU device node.
_libcuda="$(ldconfig -p 2>/dev/null | grep libcuda.so.1)"
_libcuda+="$( (IFS=: ; for _d in ${LD_LIBRARY_PATH}; do ls "${_d}/libcuda.so.1" 2>/dev/null | grep -v compat; done) )"
_devices="$(ls /dev/nvidiactl /dev/dxg /dev/nvgpu 2>/dev/null)"
if [[ -z "${_libcuda}" || -z "${_devices}" ]]; then
  echo
  echo "WARNING: The NVIDIA Driver was not detected.  GPU functionality will not be available."
  echo "   Use the NVIDIA Container Toolkit to start this container with GPU support."
  export NVIDIA_CPU_ONLY=1
fi
EOF
  chmod 755 "$d/nvidia_entrypoint.sh" "$d"/entrypoint.d/*.sh
  chmod 644 "$d"/entrypoint.d/*.txt
}

# ldconfig inside the tree (through QEMU for arm64), so ld.so.cache knows the
# CUDA and NCCL libraries as the packages' triggers leave it.
run_ldconfig() { chroot "$1" /sbin/ldconfig; }

assemble() { # assemble ARCH ROOTFS_TAR WHEELS_DIR OUT.tar
  local arch=$1 rootfs=$2 wheels=$3 out=$4 work
  work=$(mktemp -d "$TWIN/tmp/assemble-$arch.XXXXXX")
  # shellcheck disable=SC2064  # expand now: the trap must remove this very dir
  trap "rm -rf '$work'" EXIT
  mkdir "$work/root"
  tar -C "$work/root" --numeric-owner -xpf "$rootfs"
  install_cuda "$work/root" "$wheels" "$work/stage"
  install_nccl "$work/root" "$wheels" "$work/stage"
  configure_os "$work/root"
  install_entrypoint "$work/root"
  run_ldconfig "$work/root"
  # gzip-compressed, as NVIDIA's image layers are: `docker import` stores a
  # compressed tar as the layer blob as it is, which makes importing fast.
  rm -f "$out.tmp"
  tar -C "$work/root" --numeric-owner --sort=name -cf - . | pigz -p "$(nproc)" -6 >"$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$work"
  trap - EXIT
}

image_key() { # image_key ARCH
  key image "$1" "$CUDA_VERSION" "$(rootfs_key "$1")" "$(wheels_key "$1")" "$(image_env)" \
    "$(declare -f assemble place_lib install_cuda link_toolkit dpkg_register install_nccl configure_os install_entrypoint \
      run_ldconfig)"
}

# ----------------------------------------------------------------------------
# 3b. The base flavor's root filesystem: OS + NVIDIA's base layer
# ----------------------------------------------------------------------------
# install_cudart ROOT WHEELS_DIR STAGE - what NVIDIA's base Dockerfile puts
# in with cuda-cudart-X-Y: the CUDA runtime library as the .deb names it,
# /usr/local/cuda-X.Y/targets/<t>/lib/libcudart.so.X.Y.Z with its SONAME link
# (no libcudart.so, headers or static libraries: those are cuda-cudart-dev's,
# a devel package), the lib64 link, and what its dependencies, the
# cuda-toolkit config packages, add: the alternatives links and the
# ld.so.conf.d entries (no gds-X-Y.conf: libcufile is a runtime package).
install_cudart() {
  local root=$1 wheels=$2 stage=$3 whl ver so
  local cuda=$root/usr/local/cuda-$CUDA_MM
  local lib=$cuda/targets/$TARGET/lib
  whl=$(compgen -G "$wheels/nvidia_cuda_runtime-*.whl" | head -n1) || die "no nvidia-cuda-runtime wheel in $wheels"
  ver=$(basename "$whl" | cut -d- -f2)
  so=libcudart.so.$CUDA_MAJOR
  rm -rf "$stage"
  mkdir -p "$stage" "$lib"
  unzip -q -o "$whl" "nvidia/cu$CUDA_MAJOR/lib/$so" -d "$stage"
  install -m 644 "$stage/nvidia/cu$CUDA_MAJOR/lib/$so" "$lib/$so.${ver#"$CUDA_MAJOR".}"
  ln -sfn "$so.${ver#"$CUDA_MAJOR".}" "$lib/$so"
  rm -rf "$stage"
  find "$cuda" -type d -exec chmod 755 {} +
  ln -sfn "targets/$TARGET/lib" "$cuda/lib64"
  link_toolkit "$root"
}

# link_toolkit ROOT - what the cuda-toolkit config packages leave, in both
# flavors: update-alternatives as cuda-toolkit-*-config-common's postinst
# leaves it (/usr/local/cuda -> /etc/alternatives/cuda -> /usr/local/cuda-X.Y,
# and /usr/local/cuda-X likewise, with their entries in dpkg's database), and
# the dynamic linker's paths (NVIDIA's base Dockerfile writes nvidia.conf, the
# config packages the others).
link_toolkit() {
  local root=$1 alt
  mkdir -p "$root/etc/alternatives" "$root/var/lib/dpkg/alternatives"
  for alt in cuda "cuda-$CUDA_MAJOR"; do
    ln -sfn "/usr/local/cuda-$CUDA_MM" "$root/etc/alternatives/$alt"
    ln -sfn "/etc/alternatives/$alt" "$root/usr/local/$alt"
    printf 'auto\n/usr/local/%s\n\n/usr/local/cuda-%s\n%s\n\n' "$alt" "$CUDA_MM" "$ALTERNATIVES_PRIORITY" \
      >"$root/var/lib/dpkg/alternatives/$alt"
  done
  mkdir -p "$root/etc/ld.so.conf.d"
  echo "/usr/local/cuda/lib64" >"$root/etc/ld.so.conf.d/nvidia.conf"
  echo "/usr/local/cuda/targets/$TARGET/lib" >"$root/etc/ld.so.conf.d/000_cuda.conf"
  echo "/usr/local/cuda-$CUDA_MAJOR/targets/$TARGET/lib" >"$root/etc/ld.so.conf.d/987_cuda-$CUDA_MAJOR.conf"
}

assemble_base() { # assemble_base ARCH ROOTFS_TAR WHEELS_DIR OUT.tar
  local arch=$1 rootfs=$2 wheels=$3 out=$4 work
  work=$(mktemp -d "$TWIN/tmp/assemble-base-$arch.XXXXXX")
  # shellcheck disable=SC2064  # expand now: the trap must remove this very dir
  trap "rm -rf '$work'" EXIT
  mkdir "$work/root"
  tar -C "$work/root" --numeric-owner -xpf "$rootfs"
  install_cudart "$work/root" "$wheels" "$work/stage"
  configure_os "$work/root"
  run_ldconfig "$work/root"
  rm -f "$out.tmp"
  tar -C "$work/root" --numeric-owner --sort=name -cf - . | pigz -p "$(nproc)" -6 >"$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$work"
  trap - EXIT
}

base_image_key() { # base_image_key ARCH
  key image-base "$1" "$CUDA_VERSION" "$(rootfs_key "$1")" "$(wheels_key "$1")" "$(base_image_env)" \
    "$BASE_IMAGE_CMD" "$IMAGE_LABEL_MAINTAINER" \
    "$(declare -f assemble_base install_cudart link_toolkit configure_os run_ldconfig)"
}

# The flavor being worked on: its image key, its assembly, its tar.
flavor_image_key() {
  case "$FLAVOR" in
  devel) image_key "$1" ;;
  base) base_image_key "$1" ;;
  esac
}
flavor_assemble() {
  case "$FLAVOR" in
  devel) assemble "$@" ;;
  base) assemble_base "$@" ;;
  esac
}
image_prefix() { echo "cuda-$CUDA_VERSION-$FLAVOR-$1-"; } # image_prefix ARCH
image_tar() { echo "$TWIN/image/$(image_prefix "$1")$(flavor_image_key "$1").tar.gz"; }

# ----------------------------------------------------------------------------
# 4. The image: docker import
# ----------------------------------------------------------------------------
imported_record() { echo "$TWIN/imported/$(image_ref "$1" | tr '/:' '__')"; }

# True when the engine has the image and it is the one this script last
# imported from the current inputs.
image_current() { # image_current ARCH KEY
  local id rec
  id=$(docker image inspect -f '{{.Id}}' "$(image_ref "$1")" 2>/dev/null) || return 1
  rec=$(imported_record "$1")
  [ -f "$rec" ] && [ "$(cat "$rec")" = "$2 $id" ]
}

import_image() { # import_image ARCH TAR KEY
  local arch=$1 tar=$2 k=$3 ref old id line changes=()
  ref=$(image_ref "$arch")
  old=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
  while IFS= read -r line; do
    if [[ "$line" == *' '* ]]; then
      changes+=(--change "ENV ${line%%=*}=\"${line#*=}\"")
    else
      changes+=(--change "ENV $line")
    fi
  done < <(flavor_env)
  if [ "$FLAVOR" = base ]; then
    changes+=(--change "CMD $BASE_IMAGE_CMD")
  else
    changes+=(--change "ENTRYPOINT $IMAGE_ENTRYPOINT")
  fi
  changes+=(--change "LABEL maintainer=\"$IMAGE_LABEL_MAINTAINER\"")
  docker import --platform "linux/$arch" "${changes[@]}" "$tar" "$ref" >/dev/null
  id=$(docker image inspect -f '{{.Id}}' "$ref")
  mkdir -p "$TWIN/imported"
  echo "$k $id" >"$(imported_record "$arch")"
  # The image this import replaced, if this script made it and nothing else
  # names it now (an image built FROM it keeps its own layers).
  if [ -n "$old" ] && [ "$old" != "$id" ] &&
    [ -z "$(docker image inspect -f '{{join .RepoTags " "}}' "$old" 2>/dev/null)" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
}

# prune_old DIR PREFIX KEEP - remove cache entries DIR/PREFIX* other than KEEP.
prune_old() {
  local dir=$1 prefix=$2 keep=$3 e
  for e in "$dir/$prefix"*; do
    [ -e "$e" ] || continue
    case "$e" in "$keep" | *.tmp | *.partial) continue ;; esac
    rm -rf "$e"
    log "removed an older cache entry: $e"
  done
}

# ----------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------
build_arch() { # build_arch ARCH  (of the flavor flavor_profile selected)
  ARCH=$1
  arch_profile "$ARCH"
  local ref k tar rootfs wheels
  ref=$(image_ref "$ARCH")
  k=$(flavor_image_key "$ARCH")
  tar=$(image_tar "$ARCH")
  if image_current "$ARCH" "$k"; then
    log "$ref is present and current (key $k): nothing to do"
    return 0
  fi
  if [ -s "$tar" ]; then
    log "twin rootfs tar cached: $tar"
  else
    rootfs=$(rootfs_tar "$ARCH")
    wheels=$(wheels_dir "$ARCH")
    mkdir -p "$TWIN/rootfs" "$TWIN/wheels" "$TWIN/image" "$TWIN/tmp"
    if [ -s "$rootfs" ]; then
      log "Debian rootfs cached: $rootfs"
    else
      step "mmdebstrap $SUITE $ARCH ($FLAVOR)" make_rootfs "$ARCH" "$rootfs"
      prune_old "$TWIN/rootfs" "$(rootfs_prefix "$ARCH")" "$rootfs"
    fi
    if [ -d "$wheels" ]; then
      log "wheels cached: $wheels"
    elif [ "$FLAVOR" = base ] && base_wheels_from_cache "$ARCH" "$wheels"; then
      log "wheels taken from the devel flavor's cache: $wheels"
      prune_old "$TWIN/wheels" "$(wheels_prefix "$ARCH")" "$wheels"
    else
      step "wheels $ARCH $FLAVOR (pip download)" download_wheels "$ARCH" "$wheels"
      prune_old "$TWIN/wheels" "$(wheels_prefix "$ARCH")" "$wheels"
    fi
    step "twin rootfs tar $FLAVOR $ARCH" flavor_assemble "$ARCH" "$rootfs" "$wheels" "$tar"
    prune_old "$TWIN/image" "$(image_prefix "$ARCH")" "$tar"
    log "twin rootfs tar: $tar ($(human_size "$tar"))"
  fi
  step "docker import $ref" import_image "$ARCH" "$tar" "$k"
  log "$ref: $(docker image inspect -f '{{.Os}}/{{.Architecture}}, {{.Size}} bytes' "$ref")"
}

# selected_flavors DEFAULT - the flavors --flavor names (DEFAULT when not given).
selected_flavors() {
  case "${OPT_FLAVOR:-$1}" in
  all) echo "${FLAVORS[@]}" ;;
  devel | base) echo "${OPT_FLAVOR:-$1}" ;;
  *) die "--flavor must be devel, base or all (got '$OPT_FLAVOR')" ;;
  esac
}

cmd_build() {
  need_root build
  local arch flavor fl arches=() flavors=() refs=() t0=$SECONDS
  fl=$(selected_flavors devel)
  read -r -a flavors <<<"$fl"
  case "$OPT_ARCH" in
  all) arches=("${ARCHES[@]}") ;;
  amd64 | arm64) arches=("$OPT_ARCH") ;;
  *) die "--arch must be amd64, arm64 or all (got '$OPT_ARCH')" ;;
  esac
  command -v docker >/dev/null || die "no docker CLI on PATH"
  docker info >/dev/null 2>&1 || die "no engine answers on /var/run/docker.sock (start one: scripts/engine.sh up)"
  take_lock
  step "host tools" need_host_tools
  for flavor in "${flavors[@]}"; do
    flavor_profile "$flavor"
    for arch in "${arches[@]}"; do
      build_arch "$arch"
      refs+=("$(image_ref "$arch")")
    done
  done
  log "build done in $((SECONDS - t0))s: ${refs[*]}"
}

cmd_ref() {
  local flavor
  flavor=$(selected_flavors devel)
  case "$flavor" in
  devel | base) flavor_profile "$flavor" ;;
  *) die "ref needs one flavor: --flavor devel or --flavor base" ;;
  esac
  case "$OPT_ARCH" in
  amd64 | arm64) image_ref "$OPT_ARCH" ;;
  *) die "ref needs --arch amd64 or --arch arm64" ;;
  esac
}

cmd_status() {
  local arch flavor fl flavors=() ref id k rec engine=1
  fl=$(selected_flavors all)
  read -r -a flavors <<<"$fl"
  echo "cache:      $TWIN"
  if ! docker info >/dev/null 2>&1; then
    engine=0
    echo "engine:     not reachable on /var/run/docker.sock (not running, or no permission)"
  fi
  for flavor in "${flavors[@]}"; do
    flavor_profile "$flavor"
    for arch in "${ARCHES[@]}"; do
      ARCH=$arch
      arch_profile "$arch"
      ref=$(image_ref "$arch")
      k=$(flavor_image_key "$arch")
      if [ "$engine" -eq 0 ]; then
        echo "$ref: unknown (no engine)"
      elif id=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null); then
        rec=$(imported_record "$arch")
        if [ -f "$rec" ] && [ "$(cat "$rec")" = "$k $id" ]; then
          echo "$ref: present, current (key $k, ${id:7:12})"
        else
          echo "$ref: present, NOT from the current inputs (key $k): 'build' re-imports it"
        fi
      else
        echo "$ref: not in the engine"
      fi
      printf '  %-8s %s\n' "rootfs" "$(if [ -s "$(rootfs_tar "$arch")" ]; then echo "cached $(rootfs_tar "$arch")"; else echo "missing"; fi)"
      printf '  %-8s %s\n' "wheels" "$(if [ -d "$(wheels_dir "$arch")" ]; then echo "cached $(wheels_dir "$arch")"; else echo "missing"; fi)"
      printf '  %-8s %s\n' "image" "$(if [ -s "$(image_tar "$arch")" ]; then echo "cached $(image_tar "$arch") ($(human_size "$(image_tar "$arch")"))"; else echo "missing"; fi)"
    done
  done
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  [ $# -eq 0 ] || shift
  OPT_ARCH=all
  OPT_FLAVOR=""
  local cuda=$DEFAULT_CUDA
  while [ $# -gt 0 ]; do
    case "$1" in
    --arch) OPT_ARCH=${2:?--arch needs a value}; shift 2 ;;
    --arch=*) OPT_ARCH=${1#*=}; shift ;;
    --cuda) cuda=${2:?--cuda needs a value}; shift 2 ;;
    --cuda=*) cuda=${1#*=}; shift ;;
    --flavor) OPT_FLAVOR=${2:?--flavor needs a value}; shift 2 ;;
    --flavor=*) OPT_FLAVOR=${1#*=}; shift ;;
    *) usage >&2; die "unknown argument '$1'" ;;
    esac
  done
  cuda_profile "$cuda"
  case "$cmd" in
  build) cmd_build ;;
  ref) cmd_ref ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
