"""The kinds of image the factory builds, named once.

A `base` carries CUDA, NCCL, Python and torch; a `runtime` image is a base's slim twin on NVIDIA's small CUDA
image; a `vllm` image is built on a base; an `extra` layer is built on a vLLM image. Which components each kind
carries is the component registry's business (`factory.core.components`); this is only the list of names.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["base", "runtime", "vllm", "extra"]

#: Every image kind, in build order (a base and its runtime twin first, an extra layer last).
KINDS: tuple[Kind, ...] = ("base", "runtime", "vllm", "extra")
