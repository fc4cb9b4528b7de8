"""Benchmark: how fast `factory plan` answers, side by side with a shell recipe tool and a bare interpreter.

Measured in one run, alternating the commands so that the machine's load hits them alike (median of RUNS):

- `factory plan 0.15.0-t5` vs scitrera/cuda-containers' `container-build/build-image.sh -n` on its
  `vllm-0.15.0-t5` recipe (goal: no slower);
- `factory plan --all` vs that script's dry-run of each of the 14 vLLM recipes of the matrix's tags, one after
  the other (goal: at most 0.15x);
- `factory plan` vs a bare `python -c pass` start of the same interpreter (goal: at most 5x);
- `factory plan` on a generated 1,000-tag matrix, to show how planning scales (no goal).

The matrix is planned from the cache of validated matrices (one warm-up run fills it), as it is on every run
after the first. `build-image.sh -n` needs no Docker: it reads the recipe and prints the build configuration.
Pass `--cuda-containers PATH` (a checkout, or the git directory of a clone: its `container-build/` and
`container-recipes/` are exported to a temporary folder); without it the comparisons with the script are
skipped. Run: `.venv/bin/python benchmarks/plan_speed.py --cuda-containers ../cuda-containers`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 21
SCRIPT = "container-build/build-image.sh"


def run(argv: list[str], cwd: Path = ROOT) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=ENV)


#: What the commands run with: Python's bytecode cache on (in a folder of its own, not the work tree), as on a
#: user's machine; with PYTHONDONTWRITEBYTECODE every run would compile the factory's modules again.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def median_times(cases: dict[str, Callable[[], None]], runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Each case's median and fastest wall time in seconds, the cases interleaved run by run."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():  # warm-up: page cache, the matrix cache, .pyc files
        case()
    for _ in range(runs):
        for name, case in cases.items():
            start = time.perf_counter()
            case()
            samples[name].append(time.perf_counter() - start)
    return ({name: statistics.median(values) for name, values in samples.items()},
            {name: min(values) for name, values in samples.items()})


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
    for name in ("pytorch-dev", "vllm", "pytorch-runtime"):
        (folder / "dockerfiles" / f"{name}.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    path = folder / "matrix.toml"
    path.write_text("\n".join(lines))
    return path


def cuda_containers(source: Path, into: Path) -> Path:
    """A folder with the script and its recipes: `source` itself when it is a checkout, else exported from
    the git directory `source`."""
    if (source / SCRIPT).is_file():
        return source
    archive = subprocess.run(["git", f"--git-dir={source}", "archive", "HEAD", "container-build", "container-recipes"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def verdict(ratio: float, goal: float) -> str:
    return f"goal <= {goal:g}x: {'met' if ratio <= goal else 'NOT met'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cuda-containers", type=Path, help="checkout (or git dir) of scitrera/cuda-containers")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    factory = [sys.executable, "-m", "factory", "plan", "--matrix", str(ROOT / "matrix.toml")]
    with (ROOT / "matrix.toml").open("rb") as matrix:
        tags = list(tomllib.load(matrix)["image"])
    cases: dict[str, Callable[[], None]] = {
        "bare": lambda: run([sys.executable, "-c", "pass"]),
        "one": lambda: run([*factory, "0.15.0-t5"]),
        "all": lambda: run([*factory, "--all"]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        ENV["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        recipes: list[str] = []
        if args.cuda_containers:
            repo = cuda_containers(args.cuda_containers.resolve(), Path(tmp))
            script = repo / SCRIPT
            recipes = [f"archive/vllm-{tag}" for tag in tags
                       if (repo / "container-recipes" / "archive" / f"vllm-{tag}.recipe").is_file()]
            bash = shutil.which("bash") or "bash"
            cases["script-one"] = lambda: run([bash, str(script), "-n", "archive/vllm-0.15.0-t5"], cwd=repo)

            def every_recipe() -> None:
                for recipe in recipes:
                    run([bash, str(script), "-n", recipe], cwd=repo)

            cases["script-all"] = every_recipe
        (Path(tmp) / "big").mkdir()
        big = generated_matrix(Path(tmp) / "big", 1000)
        cases["big"] = lambda: run([sys.executable, "-m", "factory", "plan", "--json", "--matrix", str(big)])
        t, fastest = median_times(cases, args.runs)
    ms = {name: value * 1000 for name, value in t.items()}
    print(f"median of {args.runs} runs each, interleaved; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"python -c pass                      {ms['bare']:7.1f} ms")
    print(f"factory plan 0.15.0-t5              {ms['one']:7.1f} ms  {t['one'] / t['bare']:5.2f}x bare   "
          f"{verdict(t['one'] / t['bare'], 5)}")
    if "script-one" in t:
        print(f"build-image.sh -n vllm-0.15.0-t5    {ms['script-one']:7.1f} ms  factory/script "
              f"{t['one'] / t['script-one']:5.2f}x   {verdict(t['one'] / t['script-one'], 1)}")
    print(f"factory plan --all ({len(tags)} tags)       {ms['all']:7.1f} ms  {t['all'] / t['bare']:5.2f}x bare")
    if "script-all" in t:
        print(f"build-image.sh -n, {len(recipes)} recipes       {ms['script-all']:7.1f} ms  factory/script "
              f"{t['all'] / t['script-all']:5.2f}x   {verdict(t['all'] / t['script-all'], 0.15)}")
    print(f"factory plan --json (1,000 tags)    {ms['big']:7.1f} ms  {t['big'] / t['bare']:5.2f}x bare")
    print("fastest runs: " + ", ".join(f"{name} {value * 1000:.1f} ms" for name, value in fastest.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
