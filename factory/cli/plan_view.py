"""`factory plan` as text: a concise tree (base -> runtime -> vLLM images -> extra layers, one line each with its
mode and key versions), and with `--verbose` every image's refs, build args, labels and input digest."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from factory.core.plan import ImageSpec, Plan
    from factory.core.resolve import Resolution

#: Which components an image kind adds (a runtime image adds none: it carries its dev base's environment).
_CARRIER = {"base": "base", "vllm": "vllm", "extra": "extra"}


def header(plan: Plan, resolution: Resolution) -> list[str]:
    bases, images, extras = len(plan.bases), len(plan.vllm_images), len(plan.extras)
    runtimes = f" and {len(plan.runtimes)} runtime image(s)" if plan.runtimes else ""
    layers = f", then {extras} extra layer(s)" if extras else ""
    out = [f"Build plan: {bases} base(s){runtimes}, then {images} vLLM image(s){layers}, "
           f"for {resolution.matrix.defaults.platform}"]
    if resolution.blocking:
        out.append(f"  note: {len(resolution.blocking)} unwaived rule violation(s); run `factory check`")
    return out


def key_versions(spec: ImageSpec, namespace: str) -> str:
    """`cuda 13.1.0  torch 2.10.0 ...`: the key components this image adds, from its labels."""
    from factory.core.components import EXTRA_COMPONENTS, KEY_COMPONENTS, REGISTRY
    from factory.core.labels import component_key

    carrier = {c.name: c.carried_by for c in REGISTRY}
    shown = [c for c in (*KEY_COMPONENTS, *EXTRA_COMPONENTS) if carrier[c] == _CARRIER.get(spec.kind)]
    return "  ".join(f"{c} {spec.labels[component_key(namespace, c)]}" for c in shown
                     if component_key(namespace, c) in spec.labels)


def _missing_lock(spec: ImageSpec, resolution: Resolution) -> bool:
    return spec.env_lock is not None and not (resolution.loaded.root / spec.env_lock).exists()


def tree(plan: Plan, resolution: Resolution) -> str:
    """Every image under what it is built FROM, in plan order; `*` marks the default tag."""
    children: dict[str | None, list[ImageSpec]] = {}
    names = {spec.name for spec in plan.images}
    for spec in plan.images:
        parent = spec.depends_on if spec.depends_on in names else None
        children.setdefault(parent, []).append(spec)
    default = {tag for tag, image in resolution.matrix.image.items() if image.default}
    lines = header(plan, resolution)
    lines.append("")

    def walk(parent: str | None, indent: str) -> None:
        kids = children.get(parent, [])
        for number, spec in enumerate(kids, 1):
            last = number == len(kids)
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            name = spec.name + (" *" if spec.name in default else "")
            on = f" on {spec.depends_on}" if parent is None and spec.depends_on else ""
            versions = key_versions(spec, plan.namespace)
            note = "  (lock missing: run factory lock)" if _missing_lock(spec, resolution) else ""
            lines.append(f"{indent}{branch}{spec.kind} {name}{on}  [{spec.mode}]"
                         + (f"  {versions}" if versions else "") + note)
            walk(spec.name, indent + ("" if parent is None else ("   " if last else "│  ")))

    walk(None, "")
    if default & names:
        lines.append("")
        lines.append("* default tag (latest); --verbose: refs, build args, labels, input digests")
    else:
        lines.append("")
        lines.append("--verbose: refs, build args, labels, input digests")
    return "\n".join(lines)


def details(plan: Plan, resolution: Resolution) -> str:
    """Every image in build order with its refs, FROM, Dockerfile, lock, input digest, build args and labels."""
    out = header(plan, resolution)
    for step, spec in enumerate(plan.images, 1):
        on = f" on {spec.depends_on}" if spec.depends_on else ""
        out.append("")
        out.append(f"[{step}] {spec.kind} {spec.name}{on}  ({spec.mode})")
        out.append(f"    refs        {', '.join(spec.refs)}")
        out.append(f"    from        {spec.from_ref}")
        out.append(f"    dockerfile  {spec.dockerfile}")
        if spec.env_lock:
            missing = "  (missing: run factory lock)" if _missing_lock(spec, resolution) else ""
            copied = "" if spec.lock else "  (its dev base's environment, copied)"
            out.append(f"    lock        {spec.env_lock}{missing}{copied}")
        out.append(f"    input       {spec.input_digest}")
        out.append("    build args")
        out.extend(f"      {k}={v}" for k, v in spec.build_args.items())
        out.append("    labels")
        out.extend(f"      {k}={v}" for k, v in spec.labels.items())
    out.append("")
    out.append("Stamped at build time: org.opencontainers.image.{created,revision,base.digest}")
    return "\n".join(out)
