"""Pins, locks and plans for the lock tests (test_locking, test_lockspec), built one way.

A pin's hash is derived from a seed (by default `name-version`), so equal pins render equal lock files and a
lock's content digest changes only when its pins do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from factory.core.lockfile import Lock, Pin
from factory.core.matrix import LoadedMatrix, load
from factory.core.plan import Plan, build_plan
from factory.core.resolve import resolve


def h(seed: str) -> str:
    """A sha256 hash entry made from `seed`."""
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def pin(name: str, version: str, layer: str, *, seed: str | None = None, via: tuple[str, ...] = ()) -> Pin:
    """A pin with one hash, made from `seed` (default `name-version`)."""
    return Pin(name=name, version=version, hashes=(h(seed or f"{name}-{version}"),), layer=layer, via=via)


def layered_lock(image: str, **layers: list[tuple[str, str]]) -> Lock:
    """A lock whose header names `image` and whose layers (in order) hold these (name, version) pins."""
    pins = tuple(pin(n, v, layer) for layer, items in layers.items() for n, v in items)
    return Lock(header={"image": (image,)}, pins=pins, layers=tuple(layers))


def planned(path: Path) -> tuple[LoadedMatrix, Plan]:
    """The matrix at `path`, loaded, and its plan."""
    loaded = load(path)
    return loaded, build_plan(resolve(loaded))
