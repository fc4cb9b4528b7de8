"""What a scan of one root filesystem has found so far: the record every part of the scan adds to.

`factory.adapters.rootfs.scan` creates one `ScanState` per root and hands it to each part (distributions,
system, CUDA, NCCL, shared objects, toolchain); at the end it becomes the frozen `Findings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from factory.adapters.rootfs.libraries import Loader


@dataclass
class Dist:
    """One installed distribution: its normalised name, version, metadata directory and site-packages."""

    name: str
    version: str
    where: str  # image path of the .dist-info / .egg-info
    site: tuple[str, ...]  # resolved site-packages directory (parts)



@dataclass
class ScanState:
    """The findings of a scan in progress, by part; `found` records a component's version and where."""

    root: Path
    components: dict[str, str] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dists: dict[str, list[Dist]] = field(default_factory=dict)
    nccl: list[tuple[int, str, str]] = field(default_factory=list)  # (rank, version, where)
    cuda12: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cuda_runtime: dict[str, tuple[str, ...]] = field(default_factory=dict)
    flavours: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    os: str | None = None
    sass: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ptx: dict[str, tuple[str, ...]] = field(default_factory=dict)
    device_objects: dict[str, list[str]] = field(default_factory=dict)
    cuda_facts: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, str] = field(default_factory=dict)
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    shared_names: set[str] = field(default_factory=set)  # the file name of every shared object under /usr, /opt
    toolchain: set[str] = field(default_factory=set)
    loader: Loader = field(init=False)

    def found(self, component: str, version: str, where: str) -> None:
        """Record a component's version and the image path it was read from (a later find replaces it)."""
        self.components[component] = version
        self.locations[component] = where

    def __post_init__(self) -> None:
        """One loader per root, so ld.so.conf and directory listings are read once for the whole scan."""
        self.loader = Loader(self.root, self.env)
