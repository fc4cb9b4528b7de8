"""The user's cache folder: `$XDG_CACHE_HOME/spark-image-factory`, else `~/.cache/spark-image-factory`.

In core so that both the core's cache of validated matrices and the adapters' caches (index pages, uv) agree
on one place without the core importing an adapter.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "spark-image-factory"


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/spark-image-factory`, else `~/.cache/spark-image-factory`.

    As the XDG base directory specification asks, a relative `XDG_CACHE_HOME` is ignored.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / APP_NAME
