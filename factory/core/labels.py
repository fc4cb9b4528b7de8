"""The label contract: which OCI labels every image carries and what they mean.

Plan, verify and inspect all read the keys from here, so a label is named in exactly one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from factory.core.components import (
    BASE_COMPONENTS,
    COMPONENT_MEANING,
    COMPONENTS,
    EXTRA_COMPONENTS,
    MEASURED_COMPONENTS,
)

if TYPE_CHECKING:
    from factory.core.plan import ImageSpec

OCI = "org.opencontainers.image"

#: OCI annotation keys the factory sets, and when.
OCI_PLAN_KEYS = ("title", "description", "version", "source", "vendor", "base.name")
OCI_BUILD_KEYS = ("created", "revision", "base.digest")

#: Keys in the factory's namespace besides the component versions.
FACTORY_KEYS = {
    "build_mode": "how the image was made: source (compiled) or wheels (installed from an index)",
    "flavor": "dev: on the PyTorch-dev base (CUDA toolkit, compilers, headers); runtime: on the base's slim runtime "
              "image (`<base>-runtime`: no CUDA compiler, headers or C++ toolchain)",
    "cuda_arch": "the GPU architecture the image's CUDA code targets (sm_121 for GB10)",
    "revision": "the tag's revision; bumped when a published tag must be rebuilt with other content",
    "input_digest": "sha256 over everything that determines the image; equal digests mean nothing changed",
    "extra": "extra-layer images only: the matrix's [extra.<name>] the image was built with (e.g. nixl)",
    "cuda_linked": "extra-layer images only: ':'-separated directories whose libraries link the image's CUDA",
}

#: Keys the factory stamps after a build, from what verify measured in the image's files (never planned: no
#: matrix can promise them). An image carries them only once it passed verify.
MEASURED_KEYS = {
    "os": "the image's OS from its os-release, `<ID> <VERSION_ID>` (e.g. `ubuntu 24.04`)",
    "cuda_sass": "GPU machine code (SASS) torch's libtorch_cuda.so carries, e.g. `sm_90 sm_100 sm_120`",
    "cuda_ptx": "PTX torch's libtorch_cuda.so carries for JIT compilation (empty: none)",
    "verified": "the input digest of the image that passed verify and was measured: equal to its own "
                "input_digest only on an image that passed (a base's stamp is inherited with the base's digest)",
}

def component_key(namespace: str, component: str) -> str:
    return f"{namespace}.{component}_version"


def factory_key(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def oci_key(name: str) -> str:
    return f"{OCI}.{name}"


def components_for(kind: str) -> tuple[str, ...]:
    """Components an image of this kind must be labelled with: a base its own, a vLLM image (or a layer on one) all.

    An extra layer also carries the extra components it declares (EXTRA_COMPONENTS), which vary per layer.
    """
    chosen = BASE_COMPONENTS if kind in ("base", "runtime") else COMPONENTS
    return tuple(c for c in chosen if c not in MEASURED_COMPONENTS)


def components_from_labels(labels: dict[str, str], namespace: str) -> dict[str, str]:
    """The component versions an image's labels claim, by component name."""
    found = {}
    for component in COMPONENTS + EXTRA_COMPONENTS:
        value = labels.get(component_key(namespace, component))
        if value is not None:
            found[component] = value
    return found


def contract(namespace: str) -> dict[str, Any]:
    """The contract as data (written to labels/contract.json)."""
    return {
        "namespace": namespace,
        "components": {
            component_key(namespace, c): {"component": c, "meaning": COMPONENT_MEANING[c],
                                          "images": ["base", "runtime", "vllm"] if c in BASE_COMPONENTS else ["vllm"]}
            for c in COMPONENTS if c not in MEASURED_COMPONENTS
        } | {
            component_key(namespace, c): {"component": c, "meaning": COMPONENT_MEANING[c], "images": ["extra"]}
            for c in EXTRA_COMPONENTS
        },
        "factory": {factory_key(namespace, k): v for k, v in FACTORY_KEYS.items()},
        "measured": {factory_key(namespace, k): v for k, v in MEASURED_KEYS.items()},
        "oci": {
            "planned": [oci_key(k) for k in OCI_PLAN_KEYS],
            "stamped_at_build": [oci_key(k) for k in OCI_BUILD_KEYS],
        },
    }


def build_time_labels(spec: ImageSpec, *, created: str, revision: str, base_digest: str | None) -> dict[str, str]:
    """The plan's labels plus what only the build knows: when, from which commit, on which FROM digest."""
    out = {**spec.labels, oci_key("created"): created, oci_key("revision"): revision}
    if base_digest:
        out[oci_key("base.digest")] = base_digest
    return out
