"""The Python package index adapter, by concern:

* :mod:`~factory.adapters.index.pages` -- what a simple page (PEP 691 JSON / PEP 503 HTML) lists: files, releases;
* :mod:`~factory.adapters.index.metadata` -- a wheel's METADATA and the requirements it declares for the target;
* :mod:`~factory.adapters.index.wheels` -- which wheel an image would install (platform, interpreter,
  Requires-Python);
* :mod:`~factory.adapters.index.remote_zip` -- one member of a remote zip via HTTP range requests;
* :mod:`~factory.adapters.index.cache` -- the on-disk cache of answers;
* :mod:`~factory.adapters.index.client` -- :class:`PackageIndex`, which asks the index and keeps the cache policy.

The names callers use are importable from here.
"""

from factory.adapters.index.cache import Cache, default_cache_dir
from factory.adapters.index.client import DEFAULT_INDEX_URL, TORCH_CUDA_WHEEL_MIN_SIZE, PackageIndex, TransferStats
from factory.adapters.index.errors import BadMetadataHash, NotFound, NotInCache, UpstreamError, UpstreamUnavailable
from factory.adapters.index.metadata import (
    WheelMetadata,
    applicable_requirements,
    is_cuda_requirement,
    parse_metadata,
    requirement_for,
    target_environment,
)
from factory.adapters.index.pages import DistFile, Release, split_userinfo
from factory.adapters.index.wheels import PLATFORMS, allows_python, select_wheel

__all__ = [
    "DEFAULT_INDEX_URL",
    "PLATFORMS",
    "TORCH_CUDA_WHEEL_MIN_SIZE",
    "BadMetadataHash",
    "Cache",
    "DistFile",
    "NotFound",
    "NotInCache",
    "PackageIndex",
    "Release",
    "TransferStats",
    "UpstreamError",
    "UpstreamUnavailable",
    "WheelMetadata",
    "allows_python",
    "applicable_requirements",
    "default_cache_dir",
    "is_cuda_requirement",
    "parse_metadata",
    "requirement_for",
    "select_wheel",
    "split_userinfo",
    "target_environment",
]
