"""What a CLI command printed, for tests that read its progress lines as well as its data."""

from __future__ import annotations

import pytest


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """Everything printed since the last read: the data (stdout), then the progress and logs (stderr)."""
    out, err = capsys.readouterr()
    return out + err
