"""What an image carries outside Python's site-packages that labels name: its OS, its Python, its UCX.

The OS and Ubuntu release come from os-release; Python from the venv's pyvenv.cfg, else the interpreters in
usr/local/bin and usr/bin; UCX from the `Version:` line of its pkg-config file (its libraries carry none).
"""

from __future__ import annotations

import os
import re

from factory.adapters.rootfs.paths import glob_parts, image_path, read_text, resolve_parts
from factory.adapters.rootfs.state import ScanState
from factory.core.release_versions import version_sort_key

#: pkg-config files that say which UCX is installed (UCX installs lib/pkgconfig/ucx.pc under its prefix).
UCX_PC_PATTERNS = ("opt/*/lib/pkgconfig/ucx.pc", "opt/*/lib64/pkgconfig/ucx.pc", "usr/local/*/lib/pkgconfig/ucx.pc",
                   "usr/local/lib/pkgconfig/ucx.pc", "usr/lib/pkgconfig/ucx.pc", "usr/lib/*-linux-gnu/pkgconfig/ucx.pc")

_PYTHON_BINARY = re.compile(r"^python(3\.\d+)$")


def scan_os(s: ScanState) -> None:
    """The OS (`ID VERSION_ID`) and, on Ubuntu, its release, from os-release."""
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        rel = resolve_parts(s.root, candidate)
        if rel is None:
            continue
        text = read_text(s.root, rel)
        if text is None:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        where = "/" + candidate
        if fields.get("ID"):
            s.os = f"{fields['ID']} {fields.get('VERSION_ID', '')}".strip()
        if fields.get("ID") == "ubuntu" and fields.get("VERSION_ID"):
            s.found("ubuntu", fields["VERSION_ID"], where)
        else:
            s.notes.append(f"{where} says ID={fields.get('ID', '?')} VERSION_ID={fields.get('VERSION_ID', '?')}, "
                           "not an Ubuntu release")
        return
    s.notes.append("no /etc/os-release or /usr/lib/os-release")


def scan_python(s: ScanState, sites: list[tuple[str, ...]]) -> None:
    """Python's major.minor: the venv's, else the interpreter's, else a site-packages path's."""
    # The venv's pyvenv.cfg first (the venv holding torch if there are several), then the interpreters.
    venvs = glob_parts(s.root, "opt/*/pyvenv.cfg")
    torch = s.dists.get("torch")
    if torch:
        venvs.sort(key=lambda cfg: torch[0].site[: len(cfg) - 1] != cfg[:-1])
    for cfg in venvs:
        text = read_text(s.root, cfg) or ""
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("version", "version_info"):
                match = re.match(r"(\d+)\.(\d+)", value.strip())
                if match:
                    s.found("python", f"{match[1]}.{match[2]}", image_path(cfg))
                    return
    for directory in ("usr/local/bin", "usr/bin"):
        rel = resolve_parts(s.root, directory)
        if rel is None:
            continue
        # The version `python3` points to, else the newest python3.X binary.
        link = resolve_parts(s.root, image_path((*rel, "python3")))
        if link is not None and (m := _PYTHON_BINARY.match(link[-1])):
            s.found("python", m[1], image_path(link))
            return
        try:
            names = os.listdir(s.root.joinpath(*rel))
        except OSError:
            continue
        versions = sorted((m[1] for n in names if (m := _PYTHON_BINARY.match(n))), key=version_sort_key)
        if versions:
            if len(versions) > 1:
                s.notes.append(f"several Pythons in {image_path(rel)}: {', '.join(versions)}; taking the newest")
            s.found("python", versions[-1], image_path((*rel, f"python{versions[-1]}")))
            return
    # Last resort: the python3.X in a site-packages path.
    for site in sites:
        for part in site:
            if m := re.fullmatch(r"python(3\.\d+)", part):
                s.found("python", m[1], image_path(site))
                return


def scan_ucx(s: ScanState) -> None:
    """UCX's version from the `Version:` line of its pkg-config file (its libraries carry no version)."""
    for pattern in UCX_PC_PATTERNS:
        for parts in glob_parts(s.root, pattern):
            text = read_text(s.root, parts, 64 * 1024) or ""
            found = re.search(r"^Version:\s*(\S+)", text, re.MULTILINE)
            if found:
                s.found("ucx", found[1], image_path(parts))
                return

