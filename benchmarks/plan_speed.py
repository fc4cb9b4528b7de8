"""Benchmark: `factory plan` start-to-finish, as a ratio to a bare `python3 -c pass`.

Goal: the shipped matrix plans within 6x the bare interpreter start. Also times a generated 1,000-tag matrix
to show how planning scales. Run: `make bench` or `.venv/bin/python benchmarks/plan_speed.py`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7


def timed(argv: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def generated_matrix(folder: Path, tags: int) -> Path:
    """A synthetic matrix: 10 bases, `tags` vLLM tags spread over them (t4 and t5 pairs)."""
    lines = ["schema = 1", ""]
    for b in range(10):
        lines += [f'[base."2.10.{b}-cu131"]', 'cuda = "13.1.0"', 'nccl = "2.29.2-1"', f'torch = "2.10.{b}"',
                  'torchvision = "0.25.0"', 'torchaudio = "2.10.0"', ""]
    for t in range(tags // 2):
        for variant, transformers in (("t4", "4.57.6"), ("t5", "5.3.0")):
            lines += [f'[image."1.{t}.0-{variant}"]', f'base = "2.10.{t % 10}-cu131"', f'vllm = "1.{t}.0"',
                      'triton = "3.6.0"', 'flashinfer = "0.6.5"', f'transformers = "{transformers}"', ""]
    (folder / "dockerfiles").mkdir()
    for name in ("pytorch-dev", "vllm"):
        (folder / "dockerfiles" / f"{name}.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    path = folder / "matrix.toml"
    path.write_text("\n".join(lines))
    return path


def main() -> int:
    factory = [sys.executable, "-m", "factory"]
    bare = timed([sys.executable, "-c", "pass"])
    shipped = timed([*factory, "plan", "--matrix", str(ROOT / "matrix.toml")])
    with tempfile.TemporaryDirectory() as tmp:
        big = generated_matrix(Path(tmp), 1000)
        large = timed([*factory, "plan", "--json", "--matrix", str(big)])
    ratio = shipped / bare
    print(f"python3 -c pass            {bare * 1000:8.1f} ms")
    print(f"factory plan (shipped)     {shipped * 1000:8.1f} ms   {ratio:5.1f}x bare   goal <= 6x: "
          f"{'met' if ratio <= 6 else 'NOT met'}")
    print(f"factory plan (1,000 tags)  {large * 1000:8.1f} ms   {large / bare:5.1f}x bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
