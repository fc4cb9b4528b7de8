"""Which GPUs a library's CUDA code runs on, read from its fat binary without running anything.

nvcc embeds a library's device code in the ELF section `.nv_fatbin` (`__nv_relfatbin` for relocatable device
code that was never device-linked): a run of fatbin containers, each a 16-byte header (magic 0xBA55ED50, u16
version, u16 header size, u64 size of the entries) followed by entries. Every entry starts with its own header,
little-endian like everything NVIDIA's tools write:

    offset  0  u16  kind: 1 = PTX, 2 = ELF cubin (SASS)
            2  u16  entry version (0x0101)
            4  u32  header size (64; 80, 112 or 120 in CUDA 13, with extra attributes after byte 64)
            8  u64  payload size (the payload follows the header)
           16  u32  compressed size (0 when the payload is not compressed)
           20  u32  offset of the extra attributes (64), or 0
           24  u16  minor, u16 major: the PTX ISA or ELF ABI version of the payload
           28  u32  arch: 120 for sm_120 / compute_120
           32  u32  object name offset, u32 object name length
           40  u64  flags
           48  u64  reserved
           56  u64  uncompressed size

Flags measured on `fatbinary` 13.5's output (docs/sass.md): 0x1 64-bit, 0x2 debug, 0x10 Linux host,
0x2000 and 0x8000 compressed payload, 0x100000 architecture-specific (`sm_120a`), 0x200000 family-specific
(`sm_120f`), 0x1000000 extended header. The cubin inside cannot tell a family-specific `f` cubin from a plain
one (nvcc writes the same ELF), and CUDA 13's e_flags cannot tell an `a` one either (see `cubin_code` for what
does, in a stand-alone `.cubin` file).

Only headers are read, a few hundred bytes at a time with `os.pread`: payloads are skipped, so a 1 GB
`libtorch_cuda.so` takes a few thousand small reads. `factory.core.cuda_arch.runs_on` applies CUDA's binary
compatibility rules to what was found (`runs_on` and the name helpers are re-exported here).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from factory.adapters.rootfs import elf
from factory.core.cuda_arch import arch_key, compatible, format_archs, parse_arch, runs_on, sort_archs

__all__ = ["arch_key", "compatible", "format_archs", "parse_arch", "runs_on", "sort_archs"]

#: Magic number of a fatbin container header (little-endian u32).
FATBIN_MAGIC = 0xBA55ED50
_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)

KIND_PTX = 1
KIND_ELF = 2

FLAG_64BIT = 0x1
FLAG_DEBUG = 0x2
FLAG_LINUX = 0x10
FLAG_COMPRESSED = 0x2000
FLAG_COMPRESSED_ZSTD = 0x8000
FLAG_ARCH_SPECIFIC = 0x100000
FLAG_FAMILY_SPECIFIC = 0x200000
FLAG_EXTENDED_HEADER = 0x1000000

#: Sections that hold fat binaries, in the order cuobjdump prefers them (the executable one when present).
FATBIN_SECTIONS = (".nv_fatbin", "__nv_relfatbin")

#: NVIDIA's ELF machine number for cubins.
EM_CUDA = 190

_CONTAINER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")
#: Caps against a corrupt or hostile file: entries per file, bytes skipped looking for the next container.
MAX_ENTRIES = 1_000_000
_SCAN_CHUNK = 1 << 16


class FatbinError(ValueError):
    """A fat binary that cannot be read at all (not a fatbin, or not even its first header)."""


@dataclass(frozen=True)
class Entry:
    """One entry of a fat binary: a cubin (SASS) or a PTX text, for one architecture."""

    kind: int  # KIND_PTX or KIND_ELF
    arch: int  # 120 for sm_120 / compute_120
    variant: str  # "", "a" (architecture-specific) or "f" (family-specific)
    flags: int
    container: int  # index of the container, from 0
    offset: int  # where the entry header starts (file offset)
    size: int  # payload size in the file

    @property
    def name(self) -> str:
        """`sm_120a` for a cubin, `compute_120` for PTX."""
        return f"{'compute' if self.kind == KIND_PTX else 'sm'}_{self.arch}{self.variant}"

    @property
    def compressed(self) -> bool:
        return bool(self.flags & (FLAG_COMPRESSED | FLAG_COMPRESSED_ZSTD))


@dataclass(frozen=True)
class DeviceCode:
    """The CUDA device code of one file: every fatbin entry, and where it was found.

    `source` is the section read (`.nv_fatbin`, `__nv_relfatbin`), `fatbin` for a bare fat binary file,
    `cubin` for a stand-alone cubin, or None when the file carries no device code. `notes` say what was
    odd (a truncated container, bytes skipped between containers).
    """

    entries: tuple[Entry, ...] = ()
    containers: int = 0
    source: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def sass(self) -> frozenset[str]:
        """Architectures of the cubins: {"sm_80", "sm_90a", "sm_120", ...}."""
        return frozenset(e.name for e in self.entries if e.kind == KIND_ELF)

    @property
    def ptx(self) -> frozenset[str]:
        """Architectures of the PTX: {"compute_120", ...}."""
        return frozenset(e.name for e in self.entries if e.kind == KIND_PTX)

    def uncovered(self, target: str) -> int:
        """How many containers (compilation units) carry nothing that runs on `target`. Such kernels may be
        fine (guarded by the library's own dispatch, like Hopper-only `sm_90a` kernels) or missing."""
        units: dict[int, list[Entry]] = {}
        for entry in self.entries:
            units.setdefault(entry.container, []).append(entry)
        return sum(not any(compatible(e.name, target) for e in unit) for unit in units.values())


# --- reading ------------------------------------------------------------------------------------------------


def device_code(path: str | os.PathLike[str]) -> DeviceCode:
    """The CUDA device code in a file: an ELF host object (its `.nv_fatbin`, else `__nv_relfatbin`), a bare
    fat binary, or a stand-alone cubin. A file with none gives an empty DeviceCode (source None).

    Raises `elf.ElfError` for a file that is neither ELF nor a fat binary, or whose ELF headers are broken,
    and `OSError` when it cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        head = os.pread(fd, 4, 0)
        if head == _MAGIC_BYTES:
            return _walk(_reader(fd, size, path.name), 0, size, "fatbin", path.name)
    if head != elf.MAGIC:
        raise elf.ElfError(f"{path.name}: neither an ELF file nor a fat binary")
    header = elf.header(path)
    if header.machine == EM_CUDA:
        return cubin_code(path)
    found = {s.name: s for s in elf.sections(path) if s.name in FATBIN_SECTIONS}
    for name in FATBIN_SECTIONS:
        section = found.get(name)
        if section is None or section.type == 8:  # SHT_NOBITS: no bytes in the file
            continue
        with open(path, "rb") as f:
            fd = f.fileno()
            size = os.fstat(fd).st_size
            end = section.offset + section.size
            if end > size:
                raise elf.ElfError(f"{path.name}: section {name} ends at {end:#x}, past the file's {size} bytes")
            return _walk(_reader(fd, size, path.name), section.offset, end, name, path.name)
    return DeviceCode()


def parse(data: bytes, source: str = "fatbin") -> DeviceCode:
    """The entries of fat binary containers held in memory (the bytes of a `.nv_fatbin` section)."""

    def read(offset: int, length: int) -> bytes:
        return data[offset:offset + length]

    return _walk(read, 0, len(data), source, source)


def cubin_code(path: str | os.PathLike[str]) -> DeviceCode:
    """A stand-alone cubin (an EM_CUDA ELF) as one SASS entry.

    The SM is in e_flags: its low byte up to ELF ABI version 7, bits 8-15 from version 8 on (LLVM's
    EF_CUDA_SM / EF_CUDA_SM_MASK). Architecture-specific (`a`): e_flags' accelerator bit (0x8 from ABI 8 on,
    0x800 before; set by CUDA 12.x tools), or attribute 9 of `.nv.compat` set to 1 (CUDA 13 ptxas), or
    `-arch sm_XYa` in the `.note.nv.tkinfo` command line. Family-specific (`f`): only that command line
    tells, where the producing tool wrote it (ptxas does); otherwise an `f` cubin reads as plain.
    """
    path = Path(path)
    header = elf.header(path)
    if header.machine != EM_CUDA:
        raise elf.ElfError(f"{path.name}: not a cubin (e_machine {header.machine}, not {EM_CUDA})")
    new_abi = header.abiversion >= 8
    number = (header.flags >> 8) & 0xFF if new_abi else header.flags & 0xFF
    variant = "a" if header.flags & (0x8 if new_abi else 0x800) else ""
    notes = {s.name: s for s in elf.sections(path) if s.name in (".nv.compat", ".note.nv.tkinfo")}
    with open(path, "rb") as f:
        compat = notes.get(".nv.compat")
        if compat is not None and 0 < compat.size <= 4096 and _compat_attributes(
                os.pread(f.fileno(), compat.size, compat.offset)).get(9) == 1:
            variant = "a"
        tkinfo = notes.get(".note.nv.tkinfo")
        if not variant and tkinfo is not None and 0 < tkinfo.size <= 4096:
            text = os.pread(f.fileno(), tkinfo.size, tkinfo.offset).decode("latin-1")
            if (m := re.search(r"-arch[= ]+sm_(\d+)([af]?)\b", text)) and int(m[1]) == number:
                variant = m[2]
    entry = Entry(KIND_ELF, number, variant, 0, 0, 0, os.path.getsize(path))
    return DeviceCode(entries=(entry,), containers=0, source="cubin")


def _compat_attributes(raw: bytes) -> dict[int, int]:
    """The one-byte and two-byte attributes of a `.nv.compat` section: (format u8, attribute u8, value)."""
    out: dict[int, int] = {}
    pos = 0
    while pos + 4 <= len(raw):
        fmt, attr = raw[pos], raw[pos + 1]
        if fmt == 2:  # one-byte value, padded to 4
            out[attr] = raw[pos + 2]
            pos += 4
        elif fmt == 3:  # two-byte value
            out[attr] = int.from_bytes(raw[pos + 2:pos + 4], "little")
            pos += 4
        elif fmt == 4:  # u16 size, then that many bytes
            pos += 4 + int.from_bytes(raw[pos + 2:pos + 4], "little")
        elif fmt == 1:  # no value
            pos += 4
        else:
            break
    return out


def _reader(fd: int, size: int, name: str) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        return os.pread(fd, max(0, min(length, size - offset)), offset) if offset < size else b""

    return read


def _walk(read: Callable[[int, int], bytes], start: int, end: int, source: str, name: str) -> DeviceCode:
    """Every entry of the containers between `start` and `end`; payloads are skipped, never read."""
    entries: list[Entry] = []
    notes: list[str] = []
    containers = 0
    pos = start
    while pos + _CONTAINER.size <= end:
        raw = read(pos, _CONTAINER.size)
        if len(raw) < _CONTAINER.size:
            notes.append(f"{name}: {source} is cut off at {pos:#x}")
            break
        magic, _version, header_size, fat_size = _CONTAINER.unpack(raw)
        if magic != FATBIN_MAGIC:
            nxt = _next_container(read, pos, end)
            if nxt is None:
                if containers == 0 and source == "fatbin":
                    raise FatbinError(f"{name}: no fatbin container (magic {FATBIN_MAGIC:#x})")
                break
            if nxt - pos > 4096 or read(pos, nxt - pos).strip(b"\0"):
                notes.append(f"{name}: skipped {nxt - pos} bytes that are not a fatbin container at {pos:#x}")
            pos = nxt
            continue
        body = pos + header_size
        stop = body + fat_size
        if header_size < _CONTAINER.size or stop > end:
            notes.append(f"{name}: fatbin container {containers} at {pos:#x} runs past its section; stopped")
            stop = end
        entry_pos = body
        while entry_pos + 16 <= stop:
            head = read(entry_pos, _ENTRY.size)
            if len(head) < 16:
                break
            kind, _ever, entry_header, payload = struct.unpack_from("<HHIQ", head, 0)
            if kind not in (KIND_PTX, KIND_ELF) or entry_header < 16 or entry_pos + entry_header + payload > stop:
                notes.append(f"{name}: entry at {entry_pos:#x} of container {containers} is not a PTX or "
                             f"cubin entry (kind {kind}, header {entry_header}, size {payload}); rest skipped")
                break
            if len(head) < _ENTRY.size or entry_header < _ENTRY.size:
                notes.append(f"{name}: entry at {entry_pos:#x} has a short header ({entry_header} bytes); skipped")
            else:
                fields = _ENTRY.unpack(head)
                arch, flags = fields[8], fields[11]
                variant = "a" if flags & FLAG_ARCH_SPECIFIC else "f" if flags & FLAG_FAMILY_SPECIFIC else ""
                entries.append(Entry(kind, arch, variant, flags, containers, entry_pos, payload))
                if len(entries) >= MAX_ENTRIES:
                    notes.append(f"{name}: more than {MAX_ENTRIES} entries; the rest were not read")
                    return DeviceCode(tuple(entries), containers + 1, source, tuple(notes))
            entry_pos += entry_header + payload
        containers += 1
        pos = stop
    return DeviceCode(tuple(entries), containers, source, tuple(notes))


def _next_container(read: Callable[[int, int], bytes], pos: int, end: int) -> int | None:
    """The offset of the next container magic at or after `pos` (zero padding lies between containers)."""
    while pos < end:
        chunk = read(pos, min(_SCAN_CHUNK, end - pos) + 3)
        if not chunk:
            return None
        found = chunk.find(_MAGIC_BYTES)
        if found >= 0:
            return pos + found if pos + found + _CONTAINER.size <= end else None
        pos += max(1, len(chunk) - 3)
    return None
