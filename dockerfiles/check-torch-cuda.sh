#!/bin/sh
# Fails the build when the installed torch is not a CUDA build (pip on aarch64 can silently install a
# CPU-only torch: it has no libtorch_cuda.so). Reads files only, so it runs without a GPU.
set -eu
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -e "$site/torch/lib/libtorch_cuda.so" ]; then
  echo "check-torch-cuda: $site/torch/lib/libtorch_cuda.so is missing: torch is a CPU-only build" >&2
  exit 1
fi
echo "check-torch-cuda: ok ($site/torch/lib/libtorch_cuda.so)"
