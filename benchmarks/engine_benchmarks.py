"""Benchmarks on the real engine (start it with `make engine`), on copies of the fixture release.

1. no-op build: `factory build` of an up-to-date fixture release against ONE fully cached
   `docker buildx build` of its vLLM image. Goal: zero builds, and faster than that one call.
2. layer sharing: bytes the -t5 image adds over its -t4 sibling, from the registry manifests, against the
   size of the Transformers layer. Goal: within 1 % of that layer.
3. parallel release: `factory release --jobs N` of a fixture with several sibling images on one base, wall
   time against the critical path (base + slowest sibling) measured in the same run. Goal: within 1.2x.

Run: `.venv/bin/python benchmarks/engine_benchmarks.py` (about a minute).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "engine"
FACTORY = [sys.executable, "-m", "factory"]


def copy_fixture(tmp: Path, siblings: int = 0) -> Path:
    dest = tmp / "release"
    shutil.copytree(FIXTURE, dest)
    matrix = dest / "matrix.toml"
    text = matrix.read_text().replace("factory-test", f"factory-bench-{uuid.uuid4().hex[:8]}")
    for n in range(siblings):  # more tags on the same base: 0.17.<n+1>-t5
        text += (f'\n[image."0.17.{n + 1}-t5"]\nbase = "2.10.0-cu131"\nvllm = "0.17.{n + 1}"\ntriton = "3.6.0"\n'
                 'flashinfer = "0.6.4"\ntransformers = "5.3.0"\n')
    matrix.write_text(text)
    return matrix


def run(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start, done.stdout


def noop_build(tmp: Path) -> None:
    matrix = copy_fixture(tmp)
    args = ["--matrix", str(matrix), "--log-dir", str(tmp / "logs"), "--report", str(tmp / "report.json")]
    run([*FACTORY, "build", "0.17.*", *args])
    plan = json.loads(run([*FACTORY, "plan", "0.17.0-t5", "--json", "--matrix", str(matrix)])[1])
    image = plan["images"][1]
    cmd = ["docker", "buildx", "build", "--platform", image["platform"], "--file",
           str(matrix.parent / image["dockerfile"]), "--tag", image["refs"][0] + "-bench", "--load"]
    for key, value in image["build_args"].items():
        cmd += ["--build-arg", f"{key}={value}"]
    cached, _ = run([*cmd, str(matrix.parent / image["context"])])
    noop, _ = run([*FACTORY, "build", "0.17.*", *args])
    report = json.loads((tmp / "report.json").read_text())
    built = sum(i["status"] == "built" for i in report["images"])
    print(f"no-op factory build (3 images): {noop:6.2f}s, {built} built | one cached buildx build: {cached:6.2f}s"
          f" | goal: 0 builds and faster: {'met' if built == 0 and noop < cached else 'NOT met'}")


def manifest(ref: str) -> dict:
    registry, rest = ref.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    def get(reference: str) -> dict:
        request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{reference}",
                                         headers={"Accept": accept})
        with urllib.request.urlopen(request) as answer:
            return json.load(answer)
    document = get(tag)
    if "manifests" in document:
        entry = next(m for m in document["manifests"] if m.get("platform", {}).get("architecture") == "arm64")
        document = get(entry["digest"])
    return document


def layer_sharing(tmp: Path) -> None:
    matrix = copy_fixture(tmp)
    _, out = run([*FACTORY, "build", "0.17.*", "--push", "--matrix", str(matrix), "--log-dir", str(tmp / "l"),
                  "--report", str(tmp / "r.json")])
    refs = {i["name"]: i["refs"][0] for i in json.loads((tmp / "r.json").read_text())["images"]}
    t4, t5 = manifest(refs["0.17.0-t4"]), manifest(refs["0.17.0-t5"])
    t4_layers = {layer["digest"] for layer in t4["layers"]}
    added = [layer for layer in t5["layers"] if layer["digest"] not in t4_layers]
    added_bytes = sum(layer["size"] for layer in added)
    transformers_layer = t5["layers"][-1]["size"]
    excess = (added_bytes - transformers_layer) / transformers_layer
    print(f"-t5 adds {added_bytes} bytes over -t4 in {len(added)} layer(s); the Transformers layer is "
          f"{transformers_layer} bytes; excess {excess:.2%} | goal within 1%: {'met' if excess <= 0.01 else 'NOT met'}")


def parallel_release(tmp: Path, siblings: int = 4, jobs: int = 4) -> None:
    matrix = copy_fixture(tmp, siblings)
    report = tmp / "release.json"
    wall, _ = run([*FACTORY, "release", "0.17.*", "--jobs", str(jobs), "--no-aliases", "--matrix", str(matrix),
                   "--log-dir", str(tmp / "rl"), "--report", str(report)])
    images = json.loads(report.read_text())["images"]
    base = images[0]["duration_s"]
    slowest = max(i["duration_s"] for i in images[1:])
    critical = base + slowest
    print(f"release of 1 base + {len(images) - 1} images with --jobs {jobs}: wall {wall:.2f}s, critical path "
          f"{critical:.2f}s (base {base:.2f}s + slowest {slowest:.2f}s), ratio {wall / critical:.2f}x | goal <= 1.2x:"
          f" {'met' if wall <= 1.2 * critical else 'NOT met'} (wall includes verify, push and process start)")


def main() -> int:
    for bench in (noop_build, layer_sharing, parallel_release):
        with tempfile.TemporaryDirectory() as tmp:
            bench(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
