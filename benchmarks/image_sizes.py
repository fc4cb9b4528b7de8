"""Image sizes against their floor, from the real builds on the CUDA twin (the reports `scripts/e2e.py` writes).

    .venv/bin/python benchmarks/image_sizes.py [--report docs/e2e/amd64.json] [--dev docs/e2e/amd64-dev.json]

Per image: bytes uncompressed (the engine) and compressed (the registry), its floor (bytes of the installed
site-packages plus the CUDA/NCCL libraries outside it that torch loads, measured in the image by the e2e run)
and the ratio; its largest layer against the layer size the factory designs for; for a vLLM image the bytes a
user pulls when the image it is built FROM is already on the machine; for a tag and its `<tag>alt` sibling
(`e2e.py --with-sibling`: the same image but for Transformers) the bytes the sibling adds, against its
Transformers layer. With `--dev`, a report of the same release built with `--ship-on dev`, the dev-based
images' figures are printed beside.

Goals (issue "Slim runtime images"): a shipped image (runtime base, vLLM image, extra layer) within 1.15x its
floor and no layer of it over 2 GiB compressed; a sibling adds at most its Transformers layer + 1 %. The script says
`met` or `NOT met` for each and always exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOOR_RATIO = 1.15
SIBLING_SLACK = 0.01
#: The largest compressed layer the factory designs for (README "Image sizes"): well under the 10 GB per-layer
#: limits of several registries, and small enough that a failed upload over a home link is retried in minutes.
LAYER_LIMIT = 2 * 1024**3
SHIPPED_KINDS = ("runtime", "vllm", "extra")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "e2e" / "amd64.json")
    p.add_argument("--dev", type=Path, default=None, help="the same release built with --ship-on dev")
    args = p.parse_args(argv)
    runtime = _load(args.report)
    dev = _load(args.dev) if args.dev else None
    print(f"Image sizes: {args.report.name} ({runtime.get('platform')}, vLLM images on {runtime.get('ship_on')})"
          + (f" vs {args.dev.name} (on {dev.get('ship_on')})" if dev else ""))
    print()
    print(_table(runtime, dev))
    print()
    for line in _goals(runtime):
        print(line)
    return 0


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        sys.exit(f"image_sizes: {path}: {error} (run scripts/e2e.py first)")


def _gb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _layers(image: dict) -> list[dict]:
    return [layer for layer in image.get("layers", []) if layer.get("digest")]


def parent_of(image: dict, images: list[dict]) -> dict | None:
    """The image it is built FROM: the other image whose layers are the longest prefix of its own."""
    own = [layer["digest"] for layer in _layers(image)]
    best = None
    for other in images:
        theirs = [layer["digest"] for layer in _layers(other)]
        prefix = other is not image and theirs and len(theirs) < len(own) and own[:len(theirs)] == theirs
        if prefix and (best is None or len(theirs) > len(_layers(best))):
            best = other
    return best


def pulled_over(image: dict, parent: dict | None) -> int | None:
    """Compressed bytes of the layers a machine holding `parent` still pulls for `image`."""
    if parent is None:
        return None
    have = {layer["digest"] for layer in _layers(parent)}
    return sum(layer["compressed_bytes"] or 0 for layer in _layers(image) if layer["digest"] not in have)


def figures(image: dict, images: list[dict]) -> dict:
    size, floor = image.get("bytes") or {}, image.get("floor") or {}
    layers = _layers(image)
    parent = parent_of(image, images)
    return {
        "name": image["name"], "kind": image["kind"],
        "uncompressed": size.get("uncompressed"), "compressed": size.get("compressed"),
        "floor": floor.get("bytes"),
        "ratio": size["uncompressed"] / floor["bytes"] if size.get("uncompressed") and floor.get("bytes") else None,
        "largest_layer": max((layer["compressed_bytes"] or 0 for layer in layers), default=None),
        "parent": parent["name"] if parent else None, "pulled_over_parent": pulled_over(image, parent),
    }


def _table(report: dict, dev: dict | None) -> str:
    images = report.get("images", [])
    dev_images = {i["name"]: figures(i, dev["images"]) for i in dev.get("images", [])} if dev else {}
    head = ["image", "kind", "uncompressed", "compressed", "floor", "x floor", "largest layer",
            "pulled when its FROM is there"]
    if dev:
        head += ["dev-based: compressed", "x floor", "pulled when its FROM is there"]
    rows = []
    for image in images:
        f = figures(image, images)
        row = [f["name"], f["kind"], _gb(f["uncompressed"]), _gb(f["compressed"]), _gb(f["floor"]),
               f"{f['ratio']:.2f}" if f["ratio"] else "-", _gb(f["largest_layer"]),
               f"{_gb(f['pulled_over_parent'])} (over {f['parent']})" if f["parent"] else "-"]
        if dev:
            d = dev_images.get(f["name"])
            row += ([_gb(d["compressed"]), f"{d['ratio']:.2f}" if d["ratio"] else "-",
                     f"{_gb(d['pulled_over_parent'])} (over {d['parent']})" if d["parent"] else "-"]
                    if d else ["-", "-", "-"])
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True))]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _goals(report: dict) -> list[str]:
    images = report.get("images", [])
    by_name = {i["name"]: i for i in images}
    out = []
    for image in images:
        f = figures(image, images)
        if f["kind"] in SHIPPED_KINDS and f["ratio"]:
            met = "met" if f["ratio"] <= FLOOR_RATIO else "NOT met"
            out.append(f"{f['name']}: {f['ratio']:.2f}x its floor (goal <= {FLOOR_RATIO}x): {met}")
        if f["largest_layer"] is not None and f["kind"] in SHIPPED_KINDS:
            met = "met" if f["largest_layer"] <= LAYER_LIMIT else "NOT met"
            out.append(f"{f['name']}: largest layer {_gb(f['largest_layer'])} (goal <= {_gb(LAYER_LIMIT)}): {met}")
        elif f["largest_layer"] is not None:
            out.append(f"{f['name']}: largest layer {_gb(f['largest_layer'])} (a dev base: pulled by builders, "
                       "not users; no goal)")
    for name, image in by_name.items():
        tag = by_name.get(name.removesuffix("alt")) if name.endswith("alt") else None
        if tag is None:
            continue
        added = pulled_over(image, tag)
        last = _layers(image)[-1]["compressed_bytes"] or 0 if _layers(image) else 0
        met = "met" if added is not None and added <= last * (1 + SIBLING_SLACK) else "NOT met"
        out.append(f"{name} over {tag['name']}: adds {_gb(added)} ({added} bytes); its Transformers layer "
                   f"{_gb(last)} ({last} bytes); goal <= Transformers layer + 1 %: {met}")
    return out


if __name__ == "__main__":
    sys.exit(main())
