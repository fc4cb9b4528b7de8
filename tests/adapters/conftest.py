"""Fixtures of the adapter tests: fake root filesystems to scan, built by `tests/rootfs_fixtures.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rootfs_fixtures import make_image, make_runtime_image


@pytest.fixture
def image(tmp_path) -> Path:
    return make_image(tmp_path / "rootfs")


@pytest.fixture
def runtime(tmp_path) -> Path:
    return make_runtime_image(tmp_path / "runtime")
