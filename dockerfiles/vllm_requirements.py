#!/usr/bin/env python3
"""The edits a vLLM source tree needs before it is built on a spark-image-factory base.

vLLM's requirement files pin its own torch, torchvision and torchaudio and its own FlashInfer, and name a few
packages whose default builds are CUDA 12 ones. On a base whose torch was built from source for sm_121 and
CUDA 13, installed beside the matrix's FlashInfer, each of those lines either swaps the base's torch for
PyPI's CPU-only aarch64 wheel or stops the resolver. The vLLM wheel also copies `requirements/cuda.txt` into
its own Requires-Dist, so an unedited pin follows the wheel into every later install.

Edits, on every `requirements/**/*.txt`, `requirements/**/*.in` and `pyproject.toml` (the files vLLM's own
`use_existing_torch.py` edits):

* drop: the lines requiring torch, torchvision or torchaudio (by default) become comments. This is the
  effect of `use_existing_torch.py` on the files a CUDA build reads; unlike its default mode, a line that
  only mentions torch (an index URL, torchcodec) is kept.
* pin: a requirement is replaced by the matrix's (`flashinfer-python==0.6.5`, or a direct reference
  `flashinfer-python @ git+https://...` when the matrix builds FlashInfer from a fork). Its environment
  marker is kept.
* CUDA major: `ray[cgraph]` (and ray's other extras that pull `cupy-cuda12x`) loses those extras and is
  followed by `cupy-cuda13x`, the CuPy that Ray's compiled graphs (vLLM's pipeline parallelism) import;
  `nvidia-cutlass-dsl` gets its `cu13` extra, without which it brings CUDA 12 runtime libraries.

Pure: `transform(files, pins)` maps file texts to file texts and `describe(files, pins)` says what changed,
so the same edits can be computed without a source tree (e.g. to lock requirements). Standard library only:
it runs in the build stage with whatever Python the base has.

    python vllm_requirements.py SRC_DIR --drop torch --drop torchvision --drop torchaudio \\
        --pin flashinfer-python==0.6.5 --pin ray==2.53.0 --cuda-major 13
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

#: What use_existing_torch.py removes: the base brings its own build of these.
TORCH_PACKAGES = ("torch", "torchvision", "torchaudio")

#: Extras that pull a CUDA 12 package, per distribution (ray 2.53.0's METADATA: `cupy-cuda12x; extra == X`).
CUDA12_EXTRAS = {"ray": frozenset({"cgraph", "adag", "all", "all-cpp"})}
#: What replaces such an extra on CUDA major N: the same capability built for that CUDA.
CUDA_REPLACEMENTS = {"ray": "cupy-cuda{major}x"}
#: Distributions whose CUDA 13 build is an extra; their default pulls CUDA 12 libraries.
CUDA_EXTRA = {"nvidia-cutlass-dsl": "cu{major}"}

MARK = "spark-image-factory"

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION = re.compile(r"\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?(?:\+[A-Za-z0-9.]+)?")
# One requirement: name, optional [extras], then the rest (specifier, URL, marker, comment).
_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?(?P<rest>.*)$")
# A quoted item of a TOML array on a line of its own: `    "torch == 2.10.0",`
_TOML_ITEM = re.compile(r'^(?P<indent>\s*)"(?P<req>[^"]+)"(?P<comma>,?)(?P<tail>\s*(?:#.*)?)$')


def canonical(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_for(name: str, value: str) -> str:
    """The requirement text a pin stands for: a bare version means `name==version`, anything else is a
    requirement that must name the same project."""
    value = value.strip()
    if _VERSION.fullmatch(value):
        return f"{name}=={value}"
    match = _REQUIREMENT.match(value)
    if not match or canonical(match["name"]) != canonical(name):
        raise ValueError(f"pin for {name!r} must be a version or a requirement on {name}: {value!r}")
    return value


def parse_pin(text: str) -> tuple[str, str]:
    """A CLI pin: `NAME=VERSION` or a requirement (`NAME==VERSION`, `NAME @ URL`)."""
    text = text.strip()
    match = _REQUIREMENT.match(text)
    if not match:
        raise ValueError(f"not a pin: {text!r}")
    rest = match["rest"].lstrip()
    if rest.startswith("=") and not rest.startswith("=="):
        return match["name"], rest[1:].strip()
    if not rest:
        raise ValueError(f"pin {text!r} names no version or URL")
    return match["name"], text


def _split(requirement: str) -> tuple[str, str]:
    """(requirement, trailing comment) of a requirements-file line without its indentation."""
    # A comment starts at a '#' after whitespace; '#' inside a URL fragment has none before it.
    found = re.search(r"\s+#", requirement)
    if found:
        return requirement[: found.start()], requirement[found.start():].strip()
    return requirement, ""


def _marker(rest: str) -> str:
    return rest[rest.index(";"):].strip() if ";" in rest else ""


def _edit(requirement: str, drop: frozenset[str], pins: Mapping[str, str], major: int) -> tuple[list[str], str]:
    """The replacement requirement lines for one requirement (empty: dropped) and a note (empty: unchanged)."""
    match = _REQUIREMENT.match(requirement.strip())
    if not match:
        return [requirement], ""
    name, extras_text, rest = match["name"], match["extras"], match["rest"]
    key = canonical(name)
    if key in drop:
        return [], f"dropped {requirement.strip()}"
    extras = [e.strip() for e in (extras_text or "").split(",") if e.strip()]
    added: list[str] = []
    notes = []
    cuda12 = CUDA12_EXTRAS.get(key, frozenset())
    if major != 12 and any(canonical(e) in cuda12 for e in extras):
        removed = [e for e in extras if canonical(e) in cuda12]
        extras = [e for e in extras if canonical(e) not in cuda12]
        replacement = CUDA_REPLACEMENTS[key].format(major=major)
        added.append(f"{replacement}{(' ' + _marker(rest)) if _marker(rest) else ''}")
        notes.append(f"removed extra [{','.join(removed)}] (pulls cupy-cuda12x), added {replacement}")
    if key in CUDA_EXTRA and major != 12:
        wanted = CUDA_EXTRA[key].format(major=major)
        if wanted not in (canonical(e) for e in extras):
            extras.append(wanted)
            notes.append(f"added extra [{wanted}] (its default is a CUDA 12 build)")
    if key in pins:
        pinned = requirement_for(name, pins[key])
        marker = _marker(rest)
        line = pinned if ";" in pinned or not marker else f"{pinned} ; {marker[1:].strip()}"
        pinned_match = _REQUIREMENT.match(line)
        assert pinned_match is not None
        merged = list(dict.fromkeys([*extras, *[e.strip() for e in (pinned_match["extras"] or "").split(",")
                                                if e.strip()]]))
        new = f"{pinned_match['name']}{'[' + ','.join(merged) + ']' if merged else ''}{pinned_match['rest']}"
        notes.insert(0, f"pinned to {pinned}")
    else:
        new = f"{name}{'[' + ','.join(extras) + ']' if extras else ''}{rest}"
    if not notes or [new.strip(), *added] == [requirement.strip()]:
        return [requirement], ""  # nothing to do, or already done: transform is idempotent
    return [new.strip(), *added], f"{requirement.strip()} -> {', '.join(notes)}"


def _is_requirements_file(path: str) -> bool:
    parts = Path(path).parts
    return (len(parts) >= 2 and parts[0] == "requirements" and path.endswith((".txt", ".in"))) or \
        path == "pyproject.toml"


def _transform_text(path: str, text: str, drop: frozenset[str], pins: Mapping[str, str],
                    major: int) -> tuple[str, list[str]]:
    out: list[str] = []
    notes: list[str] = []
    toml = path == "pyproject.toml"
    table = ""
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        if toml:
            table = _table(body, table)
            item = _TOML_ITEM.match(body) if table == "build-system" else None
            if not item:
                out.append(line)
                continue
            lines, note = _edit(item["req"], drop, pins, major)
            if not note:
                out.append(line)
                continue
            notes.append(f"{path}: {note}")
            out.append(f"{item['indent']}# {MARK}: {item['req'].strip()}{ending}")
            out.extend(f'{item["indent"]}"{new}",{ending}' for new in lines)
            continue
        stripped = body.strip()
        if not stripped or stripped.startswith(("#", "-")):
            out.append(line)
            continue
        indent = body[: len(body) - len(body.lstrip())]
        requirement, comment = _split(body.strip())
        lines, note = _edit(requirement, drop, pins, major)
        if not note:
            out.append(line)
            continue
        notes.append(f"{path}: {note}")
        # The old line stays as a comment: setup.py skips '#' lines, so the wheel metadata sees only the new.
        out.append(f"{indent}# {MARK}: {requirement.strip()}{('  ' + comment) if comment else ''}{ending}")
        out.extend(f"{indent}{new}\n" for new in lines)
    return "".join(out), notes


def _table(line: str, current: str) -> str:
    """The TOML table a line belongs to, given the table of the line before."""
    header = re.match(r"^\s*\[\s*([A-Za-z0-9_.\"-]+)\s*\]\s*(#.*)?$", line)
    return header[1].strip('"') if header else current


def _requirements(path: str, text: str) -> Iterable[str]:
    """The requirement strings of one file: requirement lines, or [build-system] items of pyproject.toml."""
    table = ""
    for line in text.splitlines():
        if path == "pyproject.toml":
            table = _table(line, table)
            item = _TOML_ITEM.match(line) if table == "build-system" else None
            if item:
                yield item["req"]
            continue
        body = line.strip()
        if body and not body.startswith(("#", "-")):
            yield _split(body)[0]


def _rules(pins: Mapping[str, str], drop: Iterable[str]) -> tuple[frozenset[str], dict[str, str]]:
    dropped = frozenset(canonical(name) for name in drop)
    pinned = {canonical(name): value for name, value in pins.items()}
    both = dropped & set(pinned)
    if both:
        raise ValueError(f"both dropped and pinned: {', '.join(sorted(both))}")
    for name, value in pins.items():
        requirement_for(name, value)  # fail early on a malformed pin
    return dropped, pinned


def transform(files: dict[str, str], pins: dict[str, str], *, drop: Iterable[str] = TORCH_PACKAGES,
              cuda_major: int = 13) -> dict[str, str]:
    """New texts for vLLM's requirement files (paths relative to the source root). Files that are not
    requirement files, or need no edit, come back unchanged. `pins` maps a project to a version or to a
    requirement on it; `drop` names the projects the base provides."""
    dropped, pinned = _rules(pins, drop)
    return {path: (_transform_text(path, text, dropped, pinned, cuda_major)[0]
                   if _is_requirements_file(path) else text)
            for path, text in files.items()}


def describe(files: dict[str, str], pins: dict[str, str], *, drop: Iterable[str] = TORCH_PACKAGES,
             cuda_major: int = 13) -> list[str]:
    """One line per edit `transform` makes, `path: old -> what changed`."""
    dropped, pinned = _rules(pins, drop)
    notes: list[str] = []
    for path, text in sorted(files.items()):
        if _is_requirements_file(path):
            notes.extend(_transform_text(path, text, dropped, pinned, cuda_major)[1])
    return notes


def unmatched(files: dict[str, str], pins: dict[str, str], *, drop: Iterable[str] = TORCH_PACKAGES) -> list[str]:
    """The pinned or dropped projects that no requirement file names (an edit that silently did nothing)."""
    wanted = {canonical(name) for name in [*pins, *drop]}
    seen: set[str] = set()
    for path, text in files.items():
        if _is_requirements_file(path):
            seen.update(canonical(m["name"]) for m in map(_REQUIREMENT.match, _requirements(path, text)) if m)
    return sorted(wanted - seen)


def read_tree(root: Path) -> dict[str, str]:
    """vLLM's requirement files under a source root, keyed by their relative path."""
    found = {}
    for path in sorted([*root.glob("requirements/**/*.txt"), *root.glob("requirements/**/*.in"),
                        root / "pyproject.toml"]):
        if path.is_file():
            found[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="vLLM source root (holds requirements/ and pyproject.toml)")
    parser.add_argument("--pin", action="append", default=[], metavar="NAME=VERSION|REQUIREMENT",
                        help="replace NAME's requirement (repeatable)")
    parser.add_argument("--drop", action="append", default=None, metavar="NAME",
                        help=f"remove NAME's requirement (repeatable; default: {' '.join(TORCH_PACKAGES)})")
    parser.add_argument("--cuda-major", type=int, default=13, help="CUDA major of the image (default 13)")
    parser.add_argument("--require-all", action="store_true",
                        help="fail when a pinned or dropped project is named by no requirement file")
    args = parser.parse_args(argv)
    drop = tuple(args.drop) if args.drop is not None else TORCH_PACKAGES
    try:
        pins = dict(parse_pin(p) for p in args.pin)
        files = read_tree(args.src)
        if not files:
            print(f"vllm_requirements: {args.src}: no requirements/ or pyproject.toml", file=sys.stderr)
            return 2
        new = transform(files, pins, drop=drop, cuda_major=args.cuda_major)
        notes = describe(files, pins, drop=drop, cuda_major=args.cuda_major)
    except ValueError as exc:
        print(f"vllm_requirements: {exc}", file=sys.stderr)
        return 2
    for path, text in new.items():
        if text != files[path]:
            (args.src / path).write_text(text, encoding="utf-8")
    for note in notes:
        print(f"vllm_requirements: {note}")
    missing = unmatched(files, pins, drop=drop)
    for name in missing:
        print(f"vllm_requirements: no requirement file names {name}", file=sys.stderr)
    return 1 if missing and args.require_all else 0


if __name__ == "__main__":
    sys.exit(main())
