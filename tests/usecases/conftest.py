"""Fixtures shared by the use-case tests."""

import pytest

from tests.usecases.test_upstream import upstream_server


@pytest.fixture
def server():
    """The recorded upstream index (tests/usecases/test_upstream.py) on 127.0.0.1, stopped after the test."""
    srv = upstream_server()
    try:
        yield srv
    finally:
        srv.stop()
