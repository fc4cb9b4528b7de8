"""The Python distributions of an image: every site-packages, its dist-infos, and the components they are.

Site-packages are read in the order Python in the image would import from them (a venv first), so when a
distribution is installed more than once the first copy is the one that shadows the rest (`duplicates`).
Distributions named in the component registry are components (`torch`, `vllm`, ...); `nixl-cuNN` also says
which CUDA its libraries are built for.
"""

from __future__ import annotations

import os
import re

from factory.adapters.rootfs.paths import glob_parts, image_path, read_text
from factory.adapters.rootfs.state import Dist, ScanState
from factory.core.components import DIST_COMPONENTS

#: Site-packages directories, in the order Python in the image would import from them (a venv first).
SITE_PATTERNS = (
    "opt/*/lib/python3*/site-packages",
    "usr/local/lib/python3*/site-packages",
    "usr/local/lib/python3*/dist-packages",
    "usr/lib/python3*/site-packages",
    "usr/lib/python3*/dist-packages",
)

_NIXL_DIST = re.compile(r"^nixl(?:-cu(\d+))?$")
_NAME = re.compile(r"[-_.]+")


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return _NAME.sub("-", name).lower()


def scan_dists(s: ScanState) -> list[tuple[str, ...]]:
    """Read every distribution's metadata; returns the site-packages directories in import order."""
    sites: list[tuple[str, ...]] = []
    for pattern in SITE_PATTERNS:
        for site in glob_parts(s.root, pattern):
            if site not in sites and s.root.joinpath(*site).is_dir():
                sites.append(site)
    for site in sites:
        try:
            names = sorted(os.listdir(s.root.joinpath(*site)))
        except OSError as exc:
            s.notes.append(f"cannot list {image_path(site)}: {exc.strerror or exc}")
            continue
        for entry in names:
            if not entry.endswith((".dist-info", ".egg-info")):
                continue
            dist = read_dist(s, site, entry)
            if dist is None:
                continue
            copies = s.dists.setdefault(dist.name, [])
            # Debian ships some packages with both .dist-info and .egg-info: one install, not two.
            if not any(c.site == site and c.version == dist.version for c in copies):
                copies.append(dist)

    for name, copies in s.dists.items():
        first = copies[0]
        if name in DIST_COMPONENTS:
            s.found(DIST_COMPONENTS[name], first.version, first.where)
        nixl = _NIXL_DIST.match(name)
        if nixl and (nixl[1] or "nixl" not in s.components):  # nixl-cuNN (the libraries) over the `nixl` meta
            s.found("nixl", first.version, first.where)
            if nixl[1]:
                s.flavours["nixl"] = int(nixl[1])
        if len(copies) > 1:
            listed = ", ".join(f"{d.version} at {d.where}" for d in copies)
            s.notes.append(f"{name} is installed {len(copies)} times ({listed}); {first.where} shadows the rest")
    return sites


def read_dist(s: ScanState, site: tuple[str, ...], entry: str) -> Dist | None:
    """One distribution from its metadata (METADATA, PKG-INFO), else its directory's name; None if neither."""
    where = image_path((*site, entry))
    if entry.endswith(".dist-info"):
        text = read_text(s.root, (*site, entry, "METADATA"), 256 * 1024)
    else:  # an .egg-info directory with PKG-INFO, or an .egg-info file
        text = read_text(s.root, (*site, entry, "PKG-INFO"), 256 * 1024) or read_text(s.root, where, 256 * 1024)
    name = version = None
    if text is not None:
        for line in text.splitlines():
            if not line.strip():
                break  # the headers end at the first blank line; the description follows
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "name" and name is None:
                name = value.strip()
            elif key == "version" and version is None:
                version = value.strip()
    if not name or not version:
        # Fall back to the directory name, `name-version.dist-info`.
        stem = entry.rsplit(".", 1)[0]
        dir_name, _, dir_version = stem.partition("-")
        if dir_name and dir_version:
            s.notes.append(f"{where}: no readable Name/Version in its metadata; using the directory name")
            name, version = name or dir_name, version or dir_version.split("-")[0]
        else:
            s.notes.append(f"{where}: no readable Name/Version in its metadata; ignored")
            return None
    return Dist(normalize_name(name), version, where, site)


def environment_of(s: ScanState) -> dict[str, str]:
    """The distributions of one site-packages: torch's, else the first under opt/venv."""
    torch = s.dists.get("torch")
    site = torch[0].site if torch else None
    if site is None:
        venv = [d.site for copies in s.dists.values() for d in copies if d.site[:2] == ("opt", "venv")]
        site = venv[0] if venv else None
    if site is None:
        return {}
    return {name: d.version for name, copies in sorted(s.dists.items()) for d in copies if d.site == site}


def owners_of(s: ScanState, paths: list[str]) -> dict[str, str]:
    """The distribution (`name version`) whose RECORD lists each image path; read only when there are paths."""
    wanted = set(paths)
    out: dict[str, str] = {}
    if not wanted:
        return out
    for name, copies in s.dists.items():
        for dist in copies:
            if not dist.where.endswith(".dist-info"):
                continue
            record = read_text(s.root, f"{dist.where}/RECORD", 16 << 20) or ""
            site = image_path(dist.site)
            for line in record.splitlines():
                listed = line.split(",", 1)[0]
                if not listed:
                    continue
                path = os.path.normpath(f"{site}/{listed}")
                if path in wanted:
                    out.setdefault(path, f"{name} {dist.version}")
    return out

