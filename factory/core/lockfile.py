"""Lock files: the whole Python environment of one image, every distribution pinned with its hashes.

A lock is pip's requirements format, so `pip install --require-hashes -r locks/<image>.txt` works on it as
is. The factory adds a header of `# key: value` lines (what was locked, for which platform, from which
index, when) and splits the pins into layers with `# [layer: NAME]` lines, in install order:

* `base`: what the image inherits from the image it is built FROM (listed so the lock is the whole
  environment; never installed again);
* one layer per install step of the Dockerfile (`tools`, `torch`, `vllm`, `flashinfer`, `nixl`, ...);
* `transformers` last on vLLM images: Transformers and what differs between a tag and its `-t4`/`-t5`
  siblings, so that siblings share every other layer.

Parsing is strict (a lock is written by `factory lock`, never by hand): anything else is refused with the
file and line. Pure: no network, no subprocess.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from factory.core.errors import InputError, read_input
from factory.core.lockpath import body_digest as body_digest  # re-exported: where locks are read
from factory.core.lockpath import relative_path as relative_path

#: Header keys, in the order they are written.
HEADER_KEYS = ("image", "input-digest", "platform", "python", "index", "resolved", "tool", "parent", "built",
               "source", "unlocked")
#: Header keys that may appear more than once (one value per line).
MULTI_KEYS = frozenset({"index", "built", "source", "unlocked"})

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)(?P<cont>\s*\\)?$")
_HASH = re.compile(r"^\s+--hash=(?P<algo>sha256):(?P<hex>[0-9a-f]{64})(?P<cont>\s*\\)?$")
_VIA = re.compile(r"^\s+# via (?P<who>.+)$")
_LAYER = re.compile(r"^# \[layer: (?P<layer>[a-z][a-z0-9-]*)\]$")
_HEADER = re.compile(r"^# (?P<key>[a-z][a-z-]*): (?P<value>.*)$")

TITLE = "# spark-image-factory lock, written by `factory lock`: do not edit by hand (`factory lock --help`)."


def canonical(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, kw_only=True)
class Pin:
    """One distribution at one version, the hashes of its files, the layer that installs it and who asked."""

    name: str
    version: str
    hashes: tuple[str, ...]
    layer: str
    via: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return canonical(self.name)

    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True, kw_only=True)
class Lock:
    """A parsed or freshly resolved lock."""

    header: Mapping[str, tuple[str, ...]]
    pins: tuple[Pin, ...]
    layers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.layers:
            object.__setattr__(self, "layers", tuple(dict.fromkeys(p.layer for p in self.pins)))

    def value(self, key: str, default: str = "") -> str:
        values = self.header.get(key, ())
        return values[0] if values else default

    @property
    def input_digest(self) -> str:
        return self.value("input-digest")

    def by_name(self) -> dict[str, Pin]:
        return {p.key: p for p in self.pins}

    def layer(self, name: str) -> tuple[Pin, ...]:
        return tuple(p for p in self.pins if p.layer == name)

    def installed(self) -> dict[str, str]:
        """Canonical name -> version of every distribution the image holds according to the lock."""
        return {p.key: p.version for p in self.pins}


def render(lock: Lock) -> str:
    """The lock's file text; `parse(render(lock)) == lock` for every valid lock."""
    out = [TITLE]
    for key in HEADER_KEYS:
        for value in lock.header.get(key, ()):
            out.append(f"# {key}: {value}")
    for layer in lock.layers:
        out.append("")
        out.append(f"# [layer: {layer}]")
        for pin in sorted(lock.layer(layer), key=lambda p: p.key):
            out.extend(_pin_lines(pin, via=True))
    return "\n".join(out) + "\n"


def _pin_lines(pin: Pin, *, via: bool) -> list[str]:
    lines = [pin.requirement() + (" \\" if pin.hashes else "")]
    for i, digest in enumerate(pin.hashes):
        lines.append(f"    --hash={digest}" + (" \\" if i < len(pin.hashes) - 1 else ""))
    if via and pin.via:
        lines.append(f"    # via {', '.join(pin.via)}")
    return lines


def install_text(pins: Iterable[Pin]) -> str:
    """What a Dockerfile installs for one layer (`--require-hashes --no-deps -r`): pins and hashes only, sorted,
    with no header, so the same pins give the same bytes in every image (and the same BuildKit cache key)."""
    lines: list[str] = []
    for pin in sorted(pins, key=lambda p: p.key):
        lines.extend(_pin_lines(pin, via=False))
    return "\n".join(lines) + ("\n" if lines else "")


def parse(text: str, source: str) -> Lock:
    """Parse a lock file; anything `render` would not write is an InputError naming `source:line`."""
    header: dict[str, list[str]] = {}
    pins: list[Pin] = []
    layers: list[str] = []
    layer: str | None = None
    current: dict[str, Any] | None = None  # the pin being read: name, version, hashes, via, line, open (expects a hash)
    seen: dict[str, int] = {}

    def fail(lineno: int, why: str) -> InputError:
        return InputError(f"{source}:{lineno}: {why} (locks are written by `factory lock`; run it again)")

    def finish(lineno: int) -> None:
        nonlocal current
        if current is None:
            return
        if current["open"]:
            raise fail(current["last"], f"{current['name']}=={current['version']}: a line ending in '\\' must "
                                        "be followed by a --hash line")
        if not current["hashes"]:
            raise fail(current["line"], f"{current['name']}=={current['version']} has no --hash")
        pins.append(Pin(name=current["name"], version=current["version"], hashes=tuple(current["hashes"]),
                        layer=current["layer"], via=current["via"]))
        current = None

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != TITLE:
        raise fail(1, "not a spark-image-factory lock (its first line is not the lock's title)")
    for lineno, line in enumerate(lines[1:], start=2):
        if current is not None and current["open"]:
            match = _HASH.match(line)
            if not match:
                raise fail(lineno, f"expected '    --hash=sha256:<64 hex digits>' for {current['name']}, got "
                                   f"{line.strip()[:60]!r}")
            digest = f"{match['algo']}:{match['hex']}"
            if digest in current["hashes"]:
                raise fail(lineno, f"{current['name']}: hash {digest[:19]}... listed twice")
            current["hashes"].append(digest)
            current["open"] = bool(match["cont"])
            current["last"] = lineno
            continue
        if current is not None and (via := _VIA.match(line)):
            current["via"] = tuple(w.strip() for w in via["who"].split(","))
            finish(lineno)
            continue
        finish(lineno)
        if not line.strip():
            continue
        if match := _LAYER.match(line):
            layer = match["layer"]
            if layer in layers:
                raise fail(lineno, f"layer {layer!r} appears twice")
            layers.append(layer)
            continue
        if match := _PIN.match(line):
            if layer is None:
                raise fail(lineno, "a pin before the first '# [layer: NAME]' line")
            key = canonical(match["name"])
            if key in seen:
                raise fail(lineno, f"{match['name']} is pinned twice (first on line {seen[key]})")
            seen[key] = lineno
            current = {"name": match["name"], "version": match["version"], "hashes": [], "via": (),
                       "line": lineno, "last": lineno, "layer": layer, "open": bool(match["cont"])}
            continue
        if match := _HEADER.match(line):
            if layers:
                raise fail(lineno, f"header line {match['key']!r} after the first layer")
            key = match["key"]
            if key not in HEADER_KEYS:
                raise fail(lineno, f"unknown header key {key!r} (known: {', '.join(HEADER_KEYS)})")
            if key in header and key not in MULTI_KEYS:
                raise fail(lineno, f"header key {key!r} appears twice")
            header.setdefault(key, []).append(match["value"])
            continue
        raise fail(lineno, f"not a pin, a --hash, a '# via', a layer or a header line: {line.strip()[:60]!r}")
    finish(len(lines) + 1)
    for key in ("image", "input-digest", "platform", "python"):
        if key not in header:
            raise fail(1, f"the header has no {key!r} line")
    return Lock(header={k: tuple(v) for k, v in header.items()}, pins=tuple(pins), layers=tuple(layers))


def read(path: Path) -> Lock:
    return parse(read_input(path, "the lock", "no lock (run `factory lock`)"), str(path))


def content_digest(lock: Lock) -> str:
    """sha256 over what the image installs (pins, hashes, layers): not the header, so re-resolving to the same
    set (a new `resolved:` time) does not count as a change of the image."""
    payload = "\n".join(f"[{layer}]\n{install_text(lock.layer(layer))}" for layer in lock.layers)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    name: str
    old: str | None  # None: added
    new: str | None  # None: removed


def diff(old: Lock, new: Lock) -> list[Change]:
    """Versions added, removed or changed from `old` to `new`, by name."""
    a, b = old.installed(), new.installed()
    names = sorted(set(a) | set(b))
    return [Change(n, a.get(n), b.get(n)) for n in names if a.get(n) != b.get(n)]


def with_layers(lock: Lock, assignment: Mapping[str, str], order: Iterable[str]) -> Lock:
    """The lock with each pin moved to `assignment[name]` (unchanged where absent), layers in `order`."""
    pins = tuple(replace(p, layer=assignment.get(p.key, p.layer)) for p in lock.pins)
    present = {p.layer for p in pins}
    return Lock(header=lock.header, pins=pins, layers=tuple(layer for layer in order if layer in present))
