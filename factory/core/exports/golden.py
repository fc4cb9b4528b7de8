"""Generated files checked into the repository: the label contract in labels/ and the README image table.

Both are derived from matrix.toml; `--check` compares instead of writing, so CI fails when a matrix change
was not regenerated and every label change shows up in review.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from factory.core import labels as L
from factory.core.components import COMPONENTS, EXTRA_COMPONENTS, LISTED, MEASURED_COMPONENTS
from factory.core.matrix import extra_images
from factory.core.plan import Plan
from factory.core.resolve import Resolution, tag_sort_key

README_BEGIN = "<!-- BEGIN factory docs: generated from matrix.toml by `factory docs`; do not edit -->"
README_END = "<!-- END factory docs -->"


def label_schema(namespace: str) -> dict[str, Any]:
    """JSON Schema of the label set of a vLLM image (a base carries the base components only)."""
    component_keys = {L.component_key(namespace, c): {"type": "string", "minLength": 1}
                      for c in COMPONENTS + EXTRA_COMPONENTS if c not in MEASURED_COMPONENTS}
    factory_keys = {L.factory_key(namespace, k): {"type": "string"} for k in (*L.FACTORY_KEYS, *L.MEASURED_KEYS)}
    oci_keys = {L.oci_key(k): {"type": "string"} for k in (*L.OCI_PLAN_KEYS, *L.OCI_BUILD_KEYS)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Labels of a spark-image-factory image ({namespace})",
        "type": "object",
        "properties": {**component_keys, **factory_keys, **oci_keys},
        "required": [L.component_key(namespace, c) for c in ("cuda", "nccl", "torch", "python")]
        + [L.factory_key(namespace, "input_digest"), L.oci_key("version")],
        "additionalProperties": {"type": "string"},
    }


def label_files(plan: Plan) -> dict[str, str]:
    """File name (inside labels/) → exact content, for every image of the plan and the contract."""
    files = {
        "contract.json": _dump(L.contract(plan.namespace)),
        "schema.json": _dump(label_schema(plan.namespace)),
    }
    for spec in plan.images:
        files[f"{spec.name}.json"] = _dump({"image": spec.ref, "kind": spec.kind, "labels": spec.labels})
    return files


def sync(folder: Path, files: dict[str, str], *, write: bool, pattern: str = "*.json") -> list[str]:
    """Differences between `folder` and `files` (stale, missing, extra); writes them when asked.

    Writes only plain file names directly inside `folder`, never through a symlink: whatever a name holds,
    nothing is written outside the folder (the matrix's names are checked before this, too).
    """
    from factory.core.errors import InputError

    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: not a folder (labels are written into a folder: --dir)")
    if not folder.exists() and folder.parent.exists() and not folder.parent.is_dir():
        raise InputError(f"{folder}: {folder.parent} is not a folder")
    for name in files:
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise InputError(f"{name!r}: not a plain file name, refused (it would be written outside {folder})")
    problems = []
    existing = {p.name for p in folder.glob(pattern)} if folder.exists() else set()
    for name, text in files.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: out of date")
    for name in sorted(existing - set(files)):
        problems.append(f"{folder / name}: no longer in the matrix")
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = folder / name
            if path.is_symlink():  # replace the link, never write where it points
                path.unlink()
            path.write_text(text, encoding="utf-8")
        for name in existing - set(files):
            (folder / name).unlink()
    return problems


def image_table(resolution: Resolution) -> str:
    """The README table of images: one row per tag with its base and every component version."""
    matrix = resolution.matrix
    columns = list(LISTED)
    from factory.core.cascade import setting
    from factory.core.matrix import RUNTIME_CUDA_FLAVOR, runtime_name, ships_on

    head = ["tag", "ships on", "mode", *columns, "vLLM released"]
    rows = []
    for tag in sorted(matrix.image, key=tag_sort_key, reverse=True):
        image, facts = matrix.image[tag], resolution.tags[tag]
        name = f"`{tag}`" + (" (`latest`)" if image.default else "")
        on = runtime_name(image.base) if ships_on(matrix, image) == "runtime" else image.base
        rows.append([name, f"`{on}`", image.mode, *(facts.components[c] for c in columns),
                     str(image.vllm_released or "")])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    d = matrix.defaults
    lines += ["", "Bases: each PyTorch-dev base (compilers, CUDA toolkit and headers: where things are built) and "
                  "its runtime image `<base>-runtime` (the same Python environment, copied, on a small CUDA "
                  "image without compilers: what vLLM images ship on):", ""]
    for name, base in sorted(matrix.base.items()):
        ubuntu = setting(matrix, "ubuntu", base=base)
        dev = d.cuda_image.format(cuda=base.cuda, ubuntu=ubuntu)
        runtime = d.runtime_cuda_image.format(cuda=base.cuda, ubuntu=ubuntu, flavor=RUNTIME_CUDA_FLAVOR[base.mode])
        lines.append(f"- `{name}` ({base.mode}: torch {base.torch}, NCCL {base.nccl}) FROM `{dev}`; "
                     f"`{runtime_name(name)}` FROM `{runtime}`")
    layers = extra_images(matrix)
    if layers:
        lines += ["", "Extra layers (an image on the tag, built with its own Dockerfile):", ""]
        for name, extra in sorted(matrix.extra.items()):
            names = ", ".join(f"`{n}`" for n, (layer, _) in sorted(layers.items()) if layer == name)
            versions = ", ".join(f"{c} {v}" for c, v in sorted(extra.versions.items(), reverse=True))
            lines.append(f"- `-{extra.suffix}` ({versions}): {names}. {extra.description}")
    repos = matrix.defaults.repositories
    intro = (f"Images: `{repos.vllm}:<tag>`, on the runtime images `{repos.base}:<base>-runtime` (or, with "
             f"`ship_on = \"dev\"`, the dev bases `{repos.base}:<base>`), for `{matrix.defaults.platform}`. "
             "Waived deviations from upstream's pins: `factory check`.")
    return "\n".join([README_BEGIN, intro, "", *lines, README_END])


def render_readme(text: str, table: str, readme: Path) -> str:
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        from factory.core.errors import InputError

        raise InputError(f"{readme}: no generated section; add the two marker lines\n{README_BEGIN}\n{README_END}")
    return pattern.sub(lambda _: table, text, count=1)


def _dump(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
