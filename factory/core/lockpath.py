"""Where an image's lock lives and the part of it that is an input of the image.

Apart from factory/core/lockfile.py (which parses and writes locks) because `factory plan` needs only these
two: it names every image's lock and fingerprints it, and should not pay for the parser.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def relative_path(lock_dir: str, image: str) -> str:
    """Where an image's lock lives, relative to the matrix's folder: `<lock_dir>/<image>.txt`."""
    return f"{lock_dir}/{image}.txt"


def body_digest(path: Path) -> str:
    """sha256 over a lock file's layers (everything below its header), without parsing it: what an image's input
    digest takes from its lock, cheaply (`factory plan` reads every lock). A new `resolved:` time changes
    nothing; a changed pin, hash, layer or `# via` does."""
    data = path.read_bytes()
    start = data.find(b"\n# [layer: ")
    return "sha256:" + hashlib.sha256(data[start + 1:] if start >= 0 else b"").hexdigest()
