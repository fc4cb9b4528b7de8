"""Labels that never lie: what an image really contains, read from its exported root filesystem.

`scan` walks a root filesystem on disk (an image exported with `docker export` or unpacked layers; often an
arm64 image on an x86 host, so nothing in it is executed) and finds the version of every labelled component:
Python distributions from their `*.dist-info/METADATA` (`dists`); CUDA from the toolkit's files (`cuda`); NCCL
from the library the dynamic loader would give torch (`nccl`, `libraries`); Python, the OS and UCX (`system`).
It also checks that torch is a CUDA build, lists the GPU code torch, vLLM and FlashInfer carry, every shared
object that needs a CUDA 12 library and every library the dynamic loader would find nowhere in the image
(`objects`), and the build toolchain outside site-packages and the C compiler Triton would use (`toolchain`).

The findings are judged against the image's labels by `factory.core.image_checks`. Paths in findings and
messages are image paths (`/opt/venv/...`).
"""

from __future__ import annotations

from pathlib import Path

from factory.adapters.rootfs.cuda import cuda_dists, scan_cuda, scan_device_code, torch_is_cuda_build
from factory.adapters.rootfs.dists import environment_of, owners_of, scan_dists
from factory.adapters.rootfs.libraries import classify_misses
from factory.adapters.rootfs.nccl import nccl_from_usual_directories, scan_nccl
from factory.adapters.rootfs.objects import walk_objects
from factory.adapters.rootfs.state import ScanState
from factory.adapters.rootfs.system import scan_os, scan_python, scan_ucx
from factory.adapters.rootfs.toolchain import find_c_compiler, scan_toolchain
from factory.core.findings import Findings


def scan(root: Path, *, check_objects: bool = True, env: dict[str, str] | None = None) -> Findings:
    """Find what is really installed in the root filesystem at `root` (nothing in it is executed).

    `env` is the image config's environment (`CUDA_VERSION`, `LD_LIBRARY_PATH`, ...), which the root
    filesystem does not hold: CUDA_VERSION is checked against the toolkit's files, LD_LIBRARY_PATH joins the
    dynamic loader's search, PATH and CC where Triton looks for a C compiler. `check_objects=False` skips
    reading every shared object (no `cuda12_objects`, no `unresolved`, NCCL's other copies only from the usual
    library directories); the GPU code of torch, vLLM and FlashInfer and the toolchain are read either way.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory (expected an image's root filesystem)")
    s = ScanState(root, env=dict(env or {}))
    sites = scan_dists(s)
    scan_os(s)
    scan_python(s, sites)
    scan_cuda(s)
    torch_cuda = torch_is_cuda_build(s)
    scan_device_code(s)
    walk_objects(s, read=check_objects)
    scan_toolchain(s)
    if not check_objects:
        nccl_from_usual_directories(s, sites)
    scan_nccl(s, sites)
    scan_ucx(s)
    c_compiler = find_c_compiler(s)
    unresolved, preloaded, optional = classify_misses(set(s.unresolved), s.shared_names)
    return Findings(
        components=dict(s.components),
        locations=dict(s.locations),
        torch_cuda=torch_cuda,
        cuda12_objects=tuple(sorted(s.cuda12)),
        notes=tuple(s.notes),
        cuda12_needed=dict(sorted(s.cuda12.items())),
        duplicates={
            name: tuple((d.version, d.where) for d in copies) for name, copies in s.dists.items() if len(copies) > 1
        },
        cuda_runtime=dict(sorted(s.cuda_runtime.items())),
        cuda_flavours=dict(s.flavours),
        os=s.os,
        sass=dict(s.sass),
        ptx=dict(s.ptx),
        device_objects={c: tuple(paths) for c, paths in s.device_objects.items()},
        cuda_facts=dict(s.cuda_facts),
        cuda_dists=cuda_dists(s),
        resolved=dict(s.resolved),
        owners=owners_of(s, sorted(s.cuda12)),
        environment=environment_of(s),
        unresolved=unresolved,
        preloaded=preloaded,
        optional=optional,
        toolchain=tuple(sorted(s.toolchain)),
        c_compiler=c_compiler,
    )
