"""A small ELF reader: which shared libraries an object needs, and where its sections are, read from its headers
without running it.

Images are inspected as exported root filesystems, often arm64 ones on an x86 host, so nothing in them can be
executed (no `ldd`, no `readelf` for a foreign machine). This reads the ELF header, the program headers, the
dynamic segment and the few strings it points to (`dynamic`: DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH), or
the section header table and its names (`sections`, `section`): a handful of small reads, whatever the size
of the file.

32- and 64-bit objects of either byte order are understood. A file that is not ELF, or is truncated or
malformed, raises `ElfError` with one clear sentence; `struct.error` and `IndexError` never escape.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x7fELF"

_CLASSES = {1: 32, 2: 64}
_ORDERS = {1: "<", 2: ">"}

# Program header and section types, dynamic tags (from the System V ABI).
PT_LOAD = 1
PT_DYNAMIC = 2
SHT_DYNAMIC = 6
DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
DT_STRSZ = 10
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29

#: Caps that keep a hostile or corrupt file from making the reader allocate or loop without bound.
MAX_HEADERS = 4096
MAX_DYNAMIC_BYTES = 1 << 20
MAX_NAME_BYTES = 4096


class ElfError(ValueError):
    """The file is not an ELF object, or its headers are truncated or inconsistent."""


@dataclass(frozen=True)
class Dynamic:
    """What an object's dynamic section says about linking."""

    needed: tuple[str, ...] = ()
    soname: str | None = None
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    bits: int = 64
    byteorder: str = "little"
    machine: int = 0


@dataclass(frozen=True)
class Section:
    """One section header: its name, type, flags, address, and where its bytes lie in the file."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class Header:
    """The ELF header fields a caller may need besides the dynamic section."""

    bits: int
    byteorder: str
    machine: int
    type: int
    flags: int
    osabi: int
    abiversion: int


@dataclass(frozen=True)
class _Layout:
    """Struct formats of one ELF class and byte order."""

    bits: int
    order: str

    @property
    def header(self) -> str:
        # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
        # e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx (after the 16-byte e_ident)
        return self.order + ("HHIIIIIHHHHHH" if self.bits == 32 else "HHIQQQIHHHHHH")

    @property
    def phdr(self) -> str:
        return self.order + ("IIIIIIII" if self.bits == 32 else "IIQQQQQQ")

    @property
    def shdr(self) -> str:
        return self.order + ("IIIIIIIIII" if self.bits == 32 else "IIQQQQIIQQ")

    @property
    def dyn(self) -> str:
        return self.order + ("iI" if self.bits == 32 else "qQ")

    def phdr_fields(self, raw: bytes, offset: int) -> tuple[int, int, int, int]:
        """(p_type, p_offset, p_vaddr, p_filesz) of the program header at `offset`."""
        if self.bits == 32:
            p_type, p_offset, p_vaddr, _paddr, p_filesz, *_ = struct.unpack_from(self.phdr, raw, offset)
        else:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, *_ = struct.unpack_from(self.phdr, raw, offset)
        return p_type, p_offset, p_vaddr, p_filesz

    def shdr_all(self, raw: bytes, offset: int) -> tuple[int, int, int, int, int, int]:
        """(sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size) of the section header at `offset`."""
        sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, *_ = struct.unpack_from(self.shdr, raw, offset)
        return sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size

    def shdr_fields(self, raw: bytes, offset: int) -> tuple[int, int, int, int, int, int]:
        """(sh_type, sh_addr, sh_offset, sh_size, sh_link, sh_info) of the section header at `offset`."""
        _name, sh_type, _flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, *_ = struct.unpack_from(
            self.shdr, raw, offset
        )
        return sh_type, sh_addr, sh_offset, sh_size, sh_link, sh_info


def is_elf(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the ELF magic (reads 4 bytes; False for anything unreadable)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def needed(path: str | os.PathLike[str]) -> list[str]:
    """The DT_NEEDED entries of an ELF object, in order; [] for an object without a dynamic section.

    Raises `ElfError` for a file that is not ELF or whose headers are truncated or malformed, and `OSError`
    when the file cannot be opened.
    """
    return list(dynamic(path).needed)


def soname(path: str | os.PathLike[str]) -> str | None:
    """The DT_SONAME of an ELF shared object, or None when it has none."""
    return dynamic(path).soname


def dynamic(path: str | os.PathLike[str]) -> Dynamic:
    """Read the dynamic section of an ELF object: needed libraries, soname, rpath and runpath."""
    with open(path, "rb") as f:
        try:
            return _read(f, Path(path).name)
        except (struct.error, IndexError, OverflowError) as exc:  # defensive: every read is checked first
            raise ElfError(f"{Path(path).name}: malformed ELF headers ({exc})") from None


def header(path: str | os.PathLike[str]) -> Header:
    """The ELF header of an object: class, byte order, machine, type, e_flags and the OS ABI bytes."""
    with open(path, "rb") as f:
        name = Path(path).name
        try:
            _size, layout, ident, fields = _header(f, name)
        except (struct.error, IndexError, OverflowError) as exc:
            raise ElfError(f"{name}: malformed ELF headers ({exc})") from None
    return Header(bits=layout.bits, byteorder="little" if layout.order == "<" else "big", machine=fields[1],
                  type=fields[0], flags=fields[6], osabi=ident[7], abiversion=ident[8])


def sections(path: str | os.PathLike[str]) -> tuple[Section, ...]:
    """Every section header of an ELF object with its name (from the section name table), in table order.

    An object without a section header table has none: (). Raises `ElfError` like `dynamic`.
    """
    with open(path, "rb") as f:
        name = Path(path).name
        try:
            return _sections(f, name)
        except (struct.error, IndexError, OverflowError) as exc:
            raise ElfError(f"{name}: malformed ELF section headers ({exc})") from None


def section(path: str | os.PathLike[str], section_name: str) -> Section | None:
    """The first section called `section_name` (e.g. `.nv_fatbin`), or None when the object has none."""
    return next((s for s in sections(path) if s.name == section_name), None)


def _header(f: BinaryIO, name: str) -> tuple[int, _Layout, bytes, tuple[int, ...]]:
    """(file size, layout, e_ident, the 13 header fields after e_ident) of the ELF object open in `f`."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    ident = f.read(16)
    if len(ident) < 4 or ident[:4] != MAGIC:
        raise ElfError(f"{name}: not an ELF file")
    if len(ident) < 16:
        raise ElfError(f"{name}: truncated ELF identification ({len(ident)} of 16 bytes)")
    bits = _CLASSES.get(ident[4])
    order = _ORDERS.get(ident[5])
    if bits is None:
        raise ElfError(f"{name}: unknown ELF class {ident[4]}")
    if order is None:
        raise ElfError(f"{name}: unknown ELF byte order {ident[5]}")
    layout = _Layout(bits, order)
    raw = _pread(f, size, 16, struct.calcsize(layout.header), name, "ELF header")
    return size, layout, ident, struct.unpack(layout.header, raw)


def _extended_counts(f: BinaryIO, size: int, layout: _Layout, name: str, shoff: int, shentsize: int,
                     phnum: int, shnum: int, shstrndx: int) -> tuple[int, int, int]:
    """(phnum, shnum, shstrndx) with ELF extended numbering applied: counts that do not fit their header
    field (0xffff program headers, 0 sections, section-name index 0xffff) are held by section header 0."""
    if not shoff or (phnum != 0xFFFF and shnum != 0 and shstrndx != 0xFFFF):
        return phnum, shnum, shstrndx
    _check_entsize(shentsize, layout.shdr, name, "section")
    first = _pread(f, size, shoff, struct.calcsize(layout.shdr), name, "section header 0")
    _t, _a, _o, sh_size, sh_link, sh_info = layout.shdr_fields(first, 0)
    return (sh_info if phnum == 0xFFFF else phnum, sh_size if shnum == 0 else shnum,
            sh_link if shstrndx == 0xFFFF else shstrndx)


def _sections(f: BinaryIO, name: str) -> tuple[Section, ...]:
    size, layout, _ident, fields = _header(f, name)
    shoff, shentsize, shnum, shstrndx = fields[5], fields[10], fields[11], fields[12]
    if not shoff:
        return ()
    _phnum, shnum, shstrndx = _extended_counts(f, size, layout, name, shoff, shentsize, 0, shnum, shstrndx)
    if not shnum:
        return ()
    _check_entsize(shentsize, layout.shdr, name, "section")
    _check_count(shnum, name, "section")
    raw = _pread(f, size, shoff, shnum * shentsize, name, "section headers")
    table = [layout.shdr_all(raw, i * shentsize) for i in range(shnum)]
    names: bytes = b""
    if 0 < shstrndx < shnum:
        _n, _t, _fl, _a, str_offset, str_size = table[shstrndx]
        names = _pread(f, size, str_offset, min(str_size, MAX_DYNAMIC_BYTES), name, "section name table")
    out = []
    for sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size in table:
        end = names.find(b"\0", sh_name) if sh_name < len(names) else -1
        text = names[sh_name:end].decode("utf-8", "surrogateescape") if end >= 0 else ""
        out.append(Section(text, sh_type, sh_flags, sh_addr, sh_offset, sh_size))
    return tuple(out)


def _read(f: BinaryIO, name: str) -> Dynamic:
    size, layout, _ident, fields = _header(f, name)
    bits, order = layout.bits, layout.order
    byteorder = "little" if order == "<" else "big"
    (_type, machine, _version, _entry, phoff, shoff, _flags, _ehsize,
     phentsize, phnum, shentsize, shnum, _shstrndx) = fields

    phnum, shnum, _ = _extended_counts(f, size, layout, name, shoff, shentsize, phnum, shnum, 0)

    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dyn_range: tuple[int, int] | None = None
    if phoff and phnum:
        _check_entsize(phentsize, layout.phdr, name, "program")
        _check_count(phnum, name, "program")
        table = _pread(f, size, phoff, phnum * phentsize, name, "program headers")
        for i in range(phnum):
            p_type, p_offset, p_vaddr, p_filesz = layout.phdr_fields(table, i * phentsize)
            if p_type == PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == PT_DYNAMIC and dyn_range is None:
                dyn_range = (p_offset, p_filesz)

    sections: list[tuple[int, int, int, int, int, int]] | None = None

    def section_table() -> list[tuple[int, int, int, int, int, int]]:
        nonlocal sections
        if sections is None:
            sections = []
            if shoff and shnum:
                _check_entsize(shentsize, layout.shdr, name, "section")
                _check_count(shnum, name, "section")
                raw = _pread(f, size, shoff, shnum * shentsize, name, "section headers")
                sections = [layout.shdr_fields(raw, i * shentsize) for i in range(shnum)]
        return sections

    dyn_section = None
    if dyn_range is None:
        # No PT_DYNAMIC (an object without program headers): fall back to the .dynamic section.
        dyn_section = next((s for s in section_table() if s[0] == SHT_DYNAMIC), None)
        if dyn_section is None:
            return Dynamic(bits=bits, byteorder=byteorder, machine=machine)
        dyn_range = (dyn_section[2], dyn_section[3])

    dyn_offset, dyn_size = dyn_range
    entry = struct.calcsize(layout.dyn)
    dyn_size = min(dyn_size, MAX_DYNAMIC_BYTES)
    raw = _pread(f, size, dyn_offset, dyn_size - dyn_size % entry, name, "dynamic section")
    tags: list[tuple[int, int]] = []
    strtab = strsz = None
    for i in range(len(raw) // entry):
        tag, value = struct.unpack_from(layout.dyn, raw, i * entry)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab = value
        elif tag == DT_STRSZ:
            strsz = value
        elif tag in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH):
            tags.append((tag, value))
    if not tags:
        return Dynamic(bits=bits, byteorder=byteorder, machine=machine)
    if strtab is None:
        raise ElfError(f"{name}: dynamic section has DT_NEEDED/DT_SONAME entries but no DT_STRTAB")

    str_offset = _map_address(strtab, loads)
    if str_offset is None:
        # Not inside any PT_LOAD: look for the section at that address, or the one .dynamic links to.
        for sh_type, sh_addr, sh_offset, _size, _link, _info in section_table():
            if sh_addr == strtab and sh_type != 0:
                str_offset = sh_offset
                break
        else:
            if dyn_section is not None and dyn_section[4] < len(section_table()):
                str_offset = section_table()[dyn_section[4]][2]
    if str_offset is None:
        raise ElfError(f"{name}: DT_STRTAB address {strtab:#x} is outside every loaded segment")
    limit = size if strsz is None else min(size, str_offset + strsz)

    found: dict[int, list[str]] = {DT_NEEDED: [], DT_SONAME: [], DT_RPATH: [], DT_RUNPATH: []}
    for tag, value in tags:
        found[tag].append(_string(f, str_offset + value, limit, name))
    return Dynamic(
        needed=tuple(found[DT_NEEDED]),
        soname=found[DT_SONAME][0] if found[DT_SONAME] else None,
        rpath=tuple(p for s in found[DT_RPATH] for p in s.split(":") if p),
        runpath=tuple(p for s in found[DT_RUNPATH] for p in s.split(":") if p),
        bits=bits,
        byteorder=byteorder,
        machine=machine,
    )


def _map_address(address: int, loads: list[tuple[int, int, int]]) -> int | None:
    """The file offset of a virtual address, through the PT_LOAD segment that holds it."""
    for vaddr, offset, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return offset + (address - vaddr)
    return None


def _check_entsize(entsize: int, fmt: str, name: str, what: str) -> None:
    if entsize < struct.calcsize(fmt):
        raise ElfError(f"{name}: {what} header entry size {entsize} is smaller than {struct.calcsize(fmt)}")


def _check_count(count: int, name: str, what: str) -> None:
    if count > MAX_HEADERS:
        raise ElfError(f"{name}: {count} {what} headers is more than this reader accepts ({MAX_HEADERS})")


def _pread(f: BinaryIO, size: int, offset: int, length: int, name: str, what: str) -> bytes:
    """Exactly `length` bytes at `offset`, or ElfError naming the part that is cut off."""
    if offset < 0 or length < 0 or offset + length > size:
        raise ElfError(f"{name}: truncated: {what} at offset {offset:#x} (+{length}) lies beyond the file's "
                       f"{size} bytes")
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise ElfError(f"{name}: truncated: short read of {what}")
    return data


def _string(f: BinaryIO, offset: int, limit: int, name: str) -> str:
    """The NUL-terminated string at `offset`, which must end before `limit`."""
    if offset >= limit:
        raise ElfError(f"{name}: dynamic string at {offset:#x} lies outside the string table")
    f.seek(offset)
    data = f.read(min(MAX_NAME_BYTES, limit - offset))
    end = data.find(b"\0")
    if end < 0:
        raise ElfError(f"{name}: dynamic string at {offset:#x} is not terminated")
    return data[:end].decode("utf-8", "surrogateescape")


#: How much of an object's start `header_ranges` needs to see: the ELF header and its program header table.
HEAD_BYTES = 64 * 1024
#: The tail kept besides the section header table (the section name table sits just before it).
TAIL_BYTES = 1024 * 1024


def header_ranges(head: bytes, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges of an ELF object of `size` bytes that `dynamic`, `header` and `sections` read, from its
    first bytes `head` (at least HEAD_BYTES, or the whole object): the first PT_LOAD segment (ELF and program
    headers, .dynsym, .dynstr, where DT_STRTAB points), the PT_DYNAMIC segment, and the section header table
    with the file's last TAIL_BYTES. None when `head` is not an ELF object whose program headers it holds (then
    the caller keeps the whole file). The code and data in between (a CUDA library's fat binary: most of its
    bytes) are not needed to know what the object links."""
    if len(head) < 64 or head[:4] != MAGIC or head[4] not in _CLASSES or head[5] not in _ORDERS:
        return None
    layout = _Layout(_CLASSES[head[4]], _ORDERS[head[5]])
    try:
        fields = struct.unpack_from(layout.header, head, 16)
    except struct.error:
        return None
    phoff, shoff = fields[4], fields[5]
    phentsize, phnum, shentsize, shnum = fields[8], fields[9], fields[10], fields[11]
    if not phnum or phentsize < struct.calcsize(layout.phdr) or phoff + phnum * phentsize > len(head):
        return None
    ranges = [(0, min(size, HEAD_BYTES)), (max(0, size - TAIL_BYTES), size)]
    first_load = None
    for i in range(phnum):
        p_type, p_offset, _vaddr, p_filesz = layout.phdr_fields(head, phoff + i * phentsize)
        if p_type == PT_LOAD and (first_load is None or p_offset < first_load[0]):
            first_load = (p_offset, p_offset + p_filesz)
        elif p_type == PT_DYNAMIC:
            ranges.append((p_offset, p_offset + p_filesz))
    if first_load is not None:
        ranges.append(first_load)
    if shoff and shnum:
        ranges.append((shoff, shoff + shnum * shentsize))
    return sorted((max(0, a), min(size, b)) for a, b in ranges if b > a)
