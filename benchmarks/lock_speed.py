"""Benchmark: `factory lock` on the shipped matrix.

Three figures, each start to finish as a user runs it:

* `factory lock --check` (offline: only digests, no resolving), the CI step; goal: under 2 s;
* `factory lock` with every lock current (nothing to resolve): the same work plus reading every lock;
* `factory lock --refresh` of every shipped image with a warm uv cache (run once first to warm it): the
  real resolution of every image, parents first, siblings together, uv still asking the index whether its
  cached pages are current; goal: under 60 s on the 2-CPU machine CI runs on;
* the same with `--offline` (uv answers from its cache alone: where the time goes when the index is not
  asked); goal: under 30 s.

The refresh run rewrites locks/ with new `resolved:` times (the versions stay: uv prefers the current
locks); the script restores the files afterwards. Run: `.venv/bin/python benchmarks/lock_speed.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACTORY = [sys.executable, "-m", "factory"]


def timed(args: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run([*FACTORY, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    saved = Path(tempfile.mkdtemp(prefix="lock-bench-"))
    shutil.copytree(ROOT / "locks", saved / "locks")
    try:
        check, rc_check = timed(["lock", "--check"])
        current, rc_current = timed(["lock"])
        timed(["lock", "--refresh"])  # warms uv's cache (and the index's answers) when it is cold
        refresh, rc_refresh = timed(["lock", "--refresh"])
        offline, rc_offline = timed(["lock", "--refresh", "--offline"])
    finally:
        shutil.rmtree(ROOT / "locks")
        shutil.copytree(saved / "locks", ROOT / "locks")
        shutil.rmtree(saved)
    rows = [
        ("lock --check (offline)", check, 2.0, rc_check),
        ("lock, all current", current, 2.0, rc_current),
        ("lock --refresh, warm cache", refresh, 60.0, rc_refresh),
        ("lock --refresh --offline", offline, 30.0, rc_offline),
    ]
    images = len(list((ROOT / "locks").glob("*.txt")))
    print(f"factory lock on the shipped matrix ({images} images)")
    for name, seconds, goal, rc in rows:
        verdict = "met" if seconds <= goal and rc == 0 else "NOT met"
        print(f"  {name:28s} {seconds:7.2f} s   goal <= {goal:.0f} s: {verdict}" + (f" (exit {rc})" if rc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
