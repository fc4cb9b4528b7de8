"""Whether an image's labels tell the truth about what a scan found in it, and the labels only a scan can set.

`verify` compares the findings of `factory.adapters.rootfs.scan` with the image's labels and returns one
`Mismatch` per lie; an image whose `flavor` label is `runtime` must also have every library its shared objects
need, no build toolchain and a C compiler (`verify_runtime`). `measured_labels` gives the labels that only a
measurement can set (`os`, `cuda_sass`, `cuda_ptx`). Pure: no image is read here.
"""

from __future__ import annotations

import re

from factory.core.components import COMPONENT, COMPONENTS, DIST_COMPONENTS, EXTRA_COMPONENTS
from factory.core.cuda_abi import TOOLKIT_VERSIONED, runtime_major
from factory.core.cuda_arch import format_archs, runs_on
from factory.core.findings import Findings, Mismatch
from factory.core.kinds import KINDS
from factory.core.labels import component_key, components_for, factory_key
from factory.core.release_versions import major_minor, major_of, versions_equal
from factory.core.toolchain import C_COMPILER_REASON, toolchain_kind

#: The value of a `flavor` label for an image built on NVIDIA's small CUDA base image (no compilers, no
#: headers): verify checks its libraries and its toolchain (`dev` images are not checked for either).
RUNTIME_FLAVOR = "runtime"

#: At most this many objects are named in the message about one missing library, and this many paths of one
#: kind of build tool are reported one mismatch each (more are one mismatch for the kind).
MAX_LISTED = 3


#: What the image lacks when a labelled component is not found, by how the component is measured.
_ABSENT = {
    "os-release": "no Ubuntu /etc/os-release",
    "interpreter": "no Python (no pyvenv.cfg, python3.X or site-packages)",
    "cuda": ("no CUDA toolkit version (no /usr/local/cuda with libcudart.so.X.Y.Z, version.json, version.txt, "
             "include/cuda.h or bin/nvcc)"),
    "nccl": "no NCCL (no libnccl.so.X.Y.Z, nccl.h or nvidia-nccl wheel)",
    "pkgconfig": "no lib/pkgconfig/{name}.pc",
    "dist": "no {name} distribution (*.dist-info) in any site-packages",
}


def _absent(name: str) -> str:
    return _ABSENT[COMPONENT[name].measure].format(name=name)


def verify(findings: Findings, labels: dict[str, str], namespace: str, kind: str) -> list[Mismatch]:
    """Every way the labels disagree with the findings; [] when every label tells the truth.

    Each component label is compared with the version found (PEP 440 public versions; NCCL without its
    Debian revision; Python by major.minor). A label for something the image lacks, a component the kind
    must carry without a label, copies of a labelled distribution at other versions, a CPU-only torch and,
    in a CUDA 13 (or later) image, every shared object that needs a CUDA 12 library are mismatches too. An
    image labelled `flavor` `runtime` must also have every library its shared objects need, no build toolchain
    and a C compiler (`verify_runtime`).
    """
    if kind not in KINDS:
        known = ", ".join(repr(k) for k in KINDS[:-1]) + f" or {KINDS[-1]!r}"
        raise ValueError(f"unknown image kind {kind!r} (expected {known})")
    labels = labels or {}
    mismatches: list[Mismatch] = []
    required = set(components_for(kind))
    for component in COMPONENTS:
        key = component_key(namespace, component)
        expected = labels.get(key)
        found = findings.components.get(component)
        where = findings.locations.get(component, "")
        if expected is None:
            if component in required:
                seen = f"the image has {found} at {where}" if found else "the image does not have it either"
                mismatches.append(Mismatch(component, key, "", found or "", where,
                                           f"{component}: a {kind} image must carry label {key}, but it has "
                                           f"none ({seen})"))
            continue
        if found is None:
            what = _absent(component)
            mismatches.append(Mismatch(component, key, expected, "", "",
                                       f"{component}: label {key}={expected} but the image has {what}"))
            continue
        if not versions_equal(component, expected, found):
            mismatches.append(Mismatch(component, key, expected, found, where,
                                       f"{component}: label {key}={expected} but {where} says {found}"))
            continue
        mismatches.extend(_shadowed(findings, component, key, expected))

    torch_key = component_key(namespace, "torch")
    if findings.torch_cuda is False:
        where = findings.locations.get("torch", "")
        expected = labels.get(torch_key, "")
        mismatches.append(Mismatch("torch", torch_key, expected, "cpu-only", where,
                                   f"torch: label {torch_key}={expected or '(none)'} but torch is a CPU-only "
                                   f"build (no torch/lib/libtorch_cuda.so next to {where})"))

    cuda_key = component_key(namespace, "cuda")
    cuda = labels.get(cuda_key) or findings.components.get("cuda")
    major = major_of(cuda)
    if major is not None and major >= 13:
        for path in findings.cuda12_objects:
            libs = findings.cuda12_needed.get(path, ())
            needs = ", ".join(libs) or "CUDA 12 libraries"
            owner = findings.owners.get(path)
            brought = f" (installed by {owner})" if owner else ""
            mismatches.append(Mismatch("cuda-abi", cuda_key, cuda or "", needs, path,
                                       f"cuda-abi: {path}{brought} needs {needs} from CUDA 12, but the image is "
                                       f"CUDA {cuda}"))
    mismatches.extend(_verify_extra(findings, labels, namespace, major))
    mismatches.extend(_verify_cuda_facts(findings, labels, namespace))
    mismatches.extend(verify_pip_cuda(findings, labels, namespace))
    mismatches.extend(_verify_device_code(findings, labels, namespace))
    mismatches.extend(_verify_measured(findings, labels, namespace))
    mismatches.extend(verify_runtime(findings, labels, namespace))
    return mismatches


def verify_runtime(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """What a runtime image (label `<ns>.flavor` = `runtime`) must be; [] for any other flavor.

    One mismatch per library that shared objects need and the loader would find nowhere (naming the first
    MAX_LISTED objects that need it); one per toolchain path outside site-packages (one per kind when a kind
    has more than MAX_LISTED); and one when there is no C compiler, which Triton needs (C_COMPILER_REASON).
    """
    key = factory_key(namespace, "flavor")
    if (labels or {}).get(key) != RUNTIME_FLAVOR:
        return []
    out = []
    needing: dict[str, list[str]] = {}
    for path, soname in findings.unresolved:
        needing.setdefault(soname, []).append(path)
    for soname, paths in sorted(needing.items()):
        out.append(Mismatch("runtime-libraries", key, RUNTIME_FLAVOR, soname, paths[0],
                            f"runtime-libraries: {soname} is needed by {_listed(paths)}, but the dynamic loader "
                            "would find it nowhere in the image (DT_RPATH/DT_RUNPATH, LD_LIBRARY_PATH, "
                            "ld.so.conf, the system directories; no library of that name anywhere in it, and it "
                            "is not an optional integration's)"))
    kinds: dict[str, list[str]] = {}
    for path in findings.toolchain:
        kinds.setdefault(toolchain_kind(path), []).append(path)
    for kind, paths in kinds.items():
        groups = [paths] if len(paths) > MAX_LISTED else [[path] for path in paths]
        for group in groups:
            out.append(Mismatch("runtime-toolchain", key, RUNTIME_FLAVOR, group[0], group[0],
                                f"runtime-toolchain: a runtime image carries no build toolchain outside its "
                                f"Python environment's site-packages, but it has {kind} at {_listed(group)}"))
    if findings.c_compiler is None:
        out.append(Mismatch("runtime-toolchain", key, RUNTIME_FLAVOR, "", "",
                            "runtime-toolchain: a runtime image needs a C compiler, and it has none (no CC, gcc "
                            f"or clang on PATH): {C_COMPILER_REASON}"))
    return out


def _listed(paths: list[str]) -> str:
    """The first MAX_LISTED paths, and how many more there are."""
    shown = ", ".join(paths[:MAX_LISTED])
    return f"{shown} and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else shown


def torch_device_object(findings: Findings) -> str | None:
    """The image path of torch's libtorch_cuda.so when its GPU code was measured, else None."""
    return next((p for p in findings.device_objects.get("torch", ()) if p.endswith("/libtorch_cuda.so")), None)


def measured_labels(findings: Findings, namespace: str) -> dict[str, str]:
    """The labels only a measurement can set, for the keys that were measured.

    `<ns>.os`: the os-release `ID VERSION_ID` ("ubuntu 24.04"); `<ns>.cuda_sass` / `<ns>.cuda_ptx`: the cubin
    and PTX architectures of torch's libtorch_cuda.so, sorted by number and space-separated
    ("sm_80 sm_90 sm_100 sm_110 sm_120"; "" for none), present once its fat binary was read.
    """
    out: dict[str, str] = {}
    if findings.os:
        out[factory_key(namespace, "os")] = findings.os
    torch = torch_device_object(findings)
    if torch is not None:
        out[factory_key(namespace, "cuda_sass")] = format_archs(findings.sass.get(torch, ()))
        out[factory_key(namespace, "cuda_ptx")] = format_archs(findings.ptx.get(torch, ()))
    return out


def pip_cuda_report(findings: Findings, cuda: str | None) -> list[tuple[str, str, str]]:
    """(distribution, version, verdict) of every pip CUDA component found: `same CUDA` / `CUDA X.Y, not the
    image's` for the toolkit-versioned ones, `own numbering` for the rest."""
    want = major_minor(cuda or "")
    out = []
    for name, version in sorted(findings.cuda_dists.items()):
        if name in TOOLKIT_VERSIONED:
            have = major_minor(version)
            out.append((name, version, "same CUDA" if have == want else f"CUDA {have}, not the image's {want}"))
        else:
            out.append((name, version, "own numbering"))
    return out


def verify_pip_cuda(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """A mismatch per pip CUDA toolkit component of another CUDA major.minor than the image's label (nvJitLink
    13.5 in a CUDA 13.0 image links code the image's driver may not load)."""
    key = component_key(namespace, "cuda")
    cuda = labels.get(key)
    if not cuda:
        return []
    return [Mismatch("cuda", key, cuda, version, f"pip {name}",
                     f"cuda: pip's {name} {version} is {verdict.split(',')[0]}, but label {key}={cuda}")
            for name, version, verdict in pip_cuda_report(findings, cuda) if verdict.startswith("CUDA ")]


def _verify_cuda_facts(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """One mismatch when the image's facts of its CUDA version (files, env) disagree on major.minor."""
    versions = {major_minor(v) for v in findings.cuda_facts.values()}
    if len(versions) < 2:
        return []
    key = component_key(namespace, "cuda")
    listed = ", ".join(f"{where} says {v}" for where, v in findings.cuda_facts.items())
    found = findings.components.get("cuda", "")
    return [Mismatch("cuda", key, labels.get(key, ""), found, findings.locations.get("cuda", ""),
                     f"cuda: the image's CUDA facts disagree: {listed}")]


def _verify_device_code(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """With a `cuda_arch` label: torch's libtorch_cuda.so and vLLM's _C libraries must carry code that runs
    there (a compatible cubin, or PTX to JIT-compile; see factory.core.cuda_arch.runs_on)."""
    key = factory_key(namespace, "cuda_arch")
    arch = labels.get(key)
    if not arch:
        return []
    objects = [p for p in findings.device_objects.get("torch", ()) if p.endswith("/libtorch_cuda.so")]
    objects += [p for p in findings.device_objects.get("vllm", ()) if re.search(r"/vllm/_C[^/]*\.so$", p)]
    out = []
    for path in objects:
        sass, ptx = findings.sass.get(path, ()), findings.ptx.get(path, ())
        have = " ".join([*sass, *ptx]) or "no device code"
        try:
            ok, why = runs_on(sass, ptx, arch)
        except ValueError as exc:
            out.append(Mismatch("cuda-arch", key, arch, have, path, f"cuda-arch: label {key}={arch}: {exc}"))
            continue
        if not ok:
            out.append(Mismatch("cuda-arch", key, arch, have, path,
                                f"cuda-arch: label {key}={arch} but {path} cannot run there: {why}"))
    return out


def _verify_measured(findings: Findings, labels: dict[str, str], namespace: str) -> list[Mismatch]:
    """Labels `os`, `cuda_sass` and `cuda_ptx`, where present, must be what `measured_labels` measures."""
    measured = measured_labels(findings, namespace)
    torch = torch_device_object(findings) or "torch/lib/libtorch_cuda.so"
    what = {"os": ("/etc/os-release", "no readable os-release ID"),
            "cuda_sass": (torch, "no torch/lib/libtorch_cuda.so with CUDA device code (.nv_fatbin)"),
            "cuda_ptx": (torch, "no torch/lib/libtorch_cuda.so with CUDA device code (.nv_fatbin)")}
    out = []
    for name, (where, missing) in what.items():
        key = factory_key(namespace, name)
        if key not in labels:
            continue
        expected, found = labels[key], measured.get(key)
        if found is None:
            out.append(Mismatch(name, key, expected, "", "", f"{name}: label {key}={expected} but the image has "
                                                             f"{missing}"))
        elif " ".join(expected.split()) != found:
            out.append(Mismatch(name, key, expected, found, where,
                                f"{name}: label {key}={expected!r} but {where} says {found!r}"))
    return out


def _verify_extra(findings: Findings, labels: dict[str, str], namespace: str, major: int | None) -> list[Mismatch]:
    """An extra layer's own components, and that its libraries link the image's CUDA major (and only that)."""
    out = []
    for component in EXTRA_COMPONENTS:
        key = component_key(namespace, component)
        expected, found = labels.get(key), findings.components.get(component)
        where = findings.locations.get(component, "")
        if expected is None:
            continue
        if found is None:
            what = _absent(component)
            out.append(Mismatch(component, key, expected, "", "", f"{component}: label {key}={expected} but the "
                                                                  f"image has {what}"))
        elif not versions_equal(component, expected, found):
            out.append(Mismatch(component, key, expected, found, where,
                                f"{component}: label {key}={expected} but {where} says {found}"))
        flavour = findings.cuda_flavours.get(component)
        if flavour is not None and major is not None and flavour != major:
            out.append(Mismatch("cuda-abi", key, f"cu{major}", f"cu{flavour}", where,
                                f"cuda-abi: {where} is the CUDA {flavour} build of {component}, "
                                f"but the image is CUDA {major}"))
    if major is None:
        return out
    cuda_key = component_key(namespace, "cuda")
    for directory in filter(None, labels.get(factory_key(namespace, "cuda_linked"), "").split(":")):
        prefix = directory.rstrip("/") + "/"
        linked = False
        for path, libs in findings.cuda_runtime.items():
            if not path.startswith(prefix):
                continue
            other = [lib for lib in libs if runtime_major(lib) != major]
            linked = linked or len(other) < len(libs)
            if other:
                out.append(Mismatch("cuda-abi", cuda_key, str(major), ", ".join(other), path,
                                    f"cuda-abi: {path} needs {', '.join(other)}, but the image is CUDA {major}"))
        if not linked:
            out.append(Mismatch("cuda-abi", cuda_key, str(major), "", directory,
                                f"cuda-abi: no library under {directory} links a CUDA {major} runtime "
                                f"(libcudart.so.{major}, ...): built without CUDA, or not there at all"))
    return out


def _shadowed(findings: Findings, component: str, key: str, expected: str) -> list[Mismatch]:
    """A mismatch when a labelled distribution is installed more than once and a copy has another version."""
    names = [name for name, c in DIST_COMPONENTS.items() if c == component]
    out = []
    for name in names:
        copies = findings.duplicates.get(name, ())
        other = [(v, w) for v, w in copies[1:] if not versions_equal(component, expected, v)]
        if other:
            listed = ", ".join(f"{v} at {w}" for v, w in other)
            out.append(Mismatch(component, key, expected, other[0][0], other[0][1],
                                f"{component}: label {key}={expected} matches {copies[0][1]}, but {name} is also "
                                f"installed as {listed} (shadowing)"))
    return out
