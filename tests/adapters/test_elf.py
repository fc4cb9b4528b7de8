"""The ELF reader: DT_NEEDED from hand-assembled and gcc-built objects, and no crash on garbage."""

from __future__ import annotations

import contextlib
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from factory.adapters.rootfs import elf

# --- a minimal ELF writer (also used by tests/rootfs_fixtures.py and the tests/adapters/test_rootfs_*.py) -------

EM_AARCH64 = 183
EM_PPC = 20


def make_elf(
    needed: tuple[str, ...] | list[str] = (),
    *,
    soname: str | None = None,
    runpath: str | None = None,
    rpath: str | None = None,
    bits: int = 64,
    byteorder: str = "little",
    machine: int = EM_AARCH64,
    base: int = 0x400000,
    dynamic: bool = True,
    sections_only: bool = False,
) -> bytes:
    """A tiny ELF shared object: header, PT_LOAD + PT_DYNAMIC, a dynamic array and its string table.

    DT_STRTAB holds a virtual address (`base` + offset), so the reader must map it through PT_LOAD.
    `sections_only` leaves out the program headers and describes .dynstr/.dynamic with section headers;
    `dynamic=False` makes an object without a dynamic segment (like a static executable).
    """
    e = "<" if byteorder == "little" else ">"
    ehsize, phentsize, shentsize = (52, 32, 40) if bits == 32 else (64, 56, 64)
    dynfmt = e + ("iI" if bits == 32 else "qQ")

    strtab = b"\0"
    offsets: dict[str, int] = {}
    for text in [*needed, soname, runpath, rpath]:
        if text is not None and text not in offsets:
            offsets[text] = len(strtab)
            strtab += text.encode() + b"\0"

    entries = [(1, offsets[n]) for n in needed]
    if soname is not None:
        entries.append((14, offsets[soname]))
    if runpath is not None:
        entries.append((29, offsets[runpath]))
    if rpath is not None:
        entries.append((15, offsets[rpath]))
    entries += [(5, 0), (10, len(strtab)), (0, 0)]  # DT_STRTAB is patched below

    phnum = 0 if sections_only else (2 if dynamic else 1)
    phoff = ehsize
    dynoff = phoff + phnum * phentsize
    dynsize = len(entries) * struct.calcsize(dynfmt)
    stroff = dynoff + dynsize
    shoff = stroff + len(strtab)
    shnum = 3 if sections_only else 0
    total = shoff + shnum * shentsize
    entries[-3] = (5, base + stroff)

    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if byteorder == "little" else 2, 1, 0]) + bytes(8)
    header_fmt = e + ("HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH")
    header = ident + struct.pack(header_fmt, 3, machine, 1, 0, phoff if phnum else 0, shoff if shnum else 0, 0,
                                 ehsize, phentsize, phnum, shentsize, shnum, 0)

    def phdr(p_type: int, offset: int, filesz: int) -> bytes:
        vaddr = base + offset
        if bits == 32:
            return struct.pack(e + "IIIIIIII", p_type, offset, vaddr, vaddr, filesz, filesz, 4, 4)
        return struct.pack(e + "IIQQQQQQ", p_type, 4, offset, vaddr, vaddr, filesz, filesz, 8)

    def shdr(sh_type: int, offset: int, size: int, link: int = 0) -> bytes:
        if bits == 32:
            return struct.pack(e + "IIIIIIIIII", 0, sh_type, 2, base + offset, offset, size, link, 0, 4, 0)
        return struct.pack(e + "IIQQQQIIQQ", 0, sh_type, 2, base + offset, offset, size, link, 0, 8, 0)

    out = header
    if phnum:
        out += phdr(1, 0, total)
    if phnum == 2:
        out += phdr(2, dynoff, dynsize)
    out += b"".join(struct.pack(dynfmt, tag, value) for tag, value in entries)
    out += strtab
    if shnum:
        out += bytes(shentsize) + shdr(3, stroff, len(strtab)) + shdr(6, dynoff, dynsize, link=1)
    assert len(out) == total
    return out


def _name_table(sections: dict[str, bytes]) -> tuple[bytes, dict[str, int]]:
    """A .shstrtab for the sections plus itself, and each name's offset in it."""
    names, name_at = b"\0", {}
    for name in [*sections, ".shstrtab"]:
        name_at[name] = len(names)
        names += name.encode() + b"\0"
    return names, name_at


def make_sectioned_elf(
    sections: dict[str, bytes],
    *,
    machine: int = EM_AARCH64,
    flags: int = 0,
    abiversion: int = 0,
    bits: int = 64,
    byteorder: str = "little",
    section_type: int = 1,
) -> bytes:
    """An ELF object with named sections (SHT_PROGBITS unless `section_type` says otherwise) and a .shstrtab.

    Layout: header, the sections' bytes one after another, the name table, then the section header table.
    """
    e = "<" if byteorder == "little" else ">"
    ehsize, shentsize = (52, 40) if bits == 32 else (64, 64)
    names, name_at = _name_table(sections)
    body = b""
    placed = []
    for name, data in sections.items():
        placed.append((name, ehsize + len(body), len(data)))
        body += data
    str_offset = ehsize + len(body)
    shoff = str_offset + len(names)
    shnum = len(sections) + 2
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if byteorder == "little" else 2, 1, 0, abiversion]) + bytes(7)
    header_fmt = e + ("HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH")
    header = ident + struct.pack(header_fmt, 3, machine, 1, 0, 0, shoff, flags, ehsize, 0, 0, shentsize, shnum,
                                 shnum - 1)

    def shdr(name: int, sh_type: int, offset: int, size: int) -> bytes:
        if bits == 32:
            return struct.pack(e + "IIIIIIIIII", name, sh_type, 2, 0, offset, size, 0, 0, 1, 0)
        return struct.pack(e + "IIQQQQIIQQ", name, sh_type, 2, 0, offset, size, 0, 0, 1, 0)

    table = bytes(shentsize)
    table += b"".join(shdr(name_at[name], section_type, offset, size) for name, offset, size in placed)
    table += shdr(name_at[".shstrtab"], 3, str_offset, len(names))
    return header + body + names + table


def add_sections(data: bytes, sections: dict[str, bytes]) -> bytes:
    """A 64-bit little-endian ELF from `make_elf` (no section table) with named sections appended after it."""
    assert data[4:6] == b"\x02\x01" and struct.unpack_from("<Q", data, 0x28)[0] == 0
    names, name_at = _name_table(sections)
    body = b""
    headers = bytes(64)
    for name, content in sections.items():
        headers += struct.pack("<IIQQQQIIQQ", name_at[name], 1, 2, 0, len(data) + len(body), len(content), 0, 0, 1, 0)
        body += content
    headers += struct.pack("<IIQQQQIIQQ", name_at[".shstrtab"], 3, 0, 0, len(data) + len(body), len(names), 0, 0, 1,
                           0)
    shoff = len(data) + len(body) + len(names)
    out = bytearray(data + body + names + headers)
    struct.pack_into("<Q", out, 0x28, shoff)
    struct.pack_into("<HHH", out, 0x3A, 64, len(sections) + 2, len(sections) + 1)
    return bytes(out)


def write_elf(path: Path, needed=(), *, sections: dict[str, bytes] | None = None, **kwargs) -> Path:
    """`make_elf` written to `path`; `sections` (name -> bytes) are appended with a section header table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = make_elf(needed, **kwargs)
    path.write_bytes(add_sections(data, sections) if sections else data)
    return path


def gcc_library(directory: Path, name: str, needs: tuple[str, ...] = ()) -> Path:
    """A real shared object built with gcc, linked against fake libraries with the sonames in `needs`."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "empty.c"
    source.write_text("int factory_probe(void) { return 0; }\n")
    for soname in needs:
        subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(directory / soname),
                        str(source)], check=True, capture_output=True)
    link = [f"-l:{soname}" for soname in needs]
    out = directory / name
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{name}", "-Wl,--no-as-needed", "-o", str(out),
                    str(source), f"-L{directory}", *link], check=True, capture_output=True)
    return out


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


# --- reading -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_needed_from_the_writer_in_every_class_and_byte_order(tmp_path, bits, byteorder):
    lib = write_elf(tmp_path / "libx.so", ["libcudart.so.12", "libc.so.6"], soname="libx.so.1",
                    runpath="$ORIGIN/../lib:/opt/nccl/lib", bits=bits, byteorder=byteorder)
    assert elf.is_elf(lib)
    assert elf.needed(lib) == ["libcudart.so.12", "libc.so.6"]
    info = elf.dynamic(lib)
    assert (info.bits, info.byteorder, info.soname) == (bits, byteorder, "libx.so.1")
    assert info.runpath == ("$ORIGIN/../lib", "/opt/nccl/lib")
    assert elf.soname(lib) == "libx.so.1"


@pytest.mark.parametrize("bits", [32, 64])
def test_needed_from_section_headers_when_there_are_no_program_headers(tmp_path, bits):
    lib = write_elf(tmp_path / "libs.so", ["libnccl.so.2"], bits=bits, byteorder="big", machine=EM_PPC,
                    sections_only=True)
    assert elf.needed(lib) == ["libnccl.so.2"]


def test_object_without_dynamic_segment_needs_nothing(tmp_path):
    assert elf.needed(write_elf(tmp_path / "static", ["ignored.so"], dynamic=False)) == []
    assert elf.needed(write_elf(tmp_path / "lonely.so", [])) == []


@needs_gcc
def test_needed_from_a_gcc_built_library(tmp_path):
    lib = gcc_library(tmp_path, "libuses12.so", needs=("libcudart.so.12", "libcublas.so.12"))
    needed = elf.needed(lib)
    assert "libcudart.so.12" in needed and "libcublas.so.12" in needed
    assert elf.soname(lib) == "libuses12.so"
    assert elf.soname(tmp_path / "libcudart.so.12") == "libcudart.so.12"


def test_needed_of_the_running_interpreter_does_not_fail():
    executable = Path(sys.executable).resolve()
    if not elf.is_elf(executable):
        pytest.skip("the interpreter is not an ELF file")
    assert isinstance(elf.needed(executable), list)


# --- garbage -----------------------------------------------------------------------------------------------


def test_is_elf_is_false_for_other_files(tmp_path):
    (tmp_path / "script.so").write_text("/* GNU ld script */\nGROUP ( libc.so.6 )\n")
    (tmp_path / "empty.so").write_bytes(b"")
    assert not elf.is_elf(tmp_path / "script.so")
    assert not elf.is_elf(tmp_path / "empty.so")
    assert not elf.is_elf(tmp_path / "missing.so")
    assert not elf.is_elf(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\x7fEL", b"not an elf at all", b"\x7fELF", b"\x7fELF\x03\x01" + bytes(60),
                                     b"\x7fELF\x02\x03" + bytes(60)])
def test_not_elf_or_bad_identification_raises_elf_error(tmp_path, content):
    path = tmp_path / "bad.so"
    path.write_bytes(content)
    with pytest.raises(elf.ElfError):
        elf.needed(path)


@pytest.mark.parametrize("bits", [32, 64])
def test_every_truncation_raises_elf_error_or_reads(tmp_path, bits):
    full = make_elf(["libcudart.so.12"], soname="libt.so", bits=bits)
    path = tmp_path / "libt.so"
    for length in range(len(full)):
        path.write_bytes(full[:length])
        try:
            result = elf.needed(path)
        except elf.ElfError as exc:
            assert str(exc).startswith("libt.so: ")
        else:
            assert result in ([], ["libcudart.so.12"])


def test_random_garbage_after_the_magic_never_escapes_as_another_error(tmp_path):
    rng = random.Random(1234)
    good = make_elf(["libcudart.so.12", "libm.so.6"], soname="libg.so")
    path = tmp_path / "libg.so"
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 12)):  # flip bytes past the magic
            data[rng.randrange(4, len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with contextlib.suppress(elf.ElfError):
            assert isinstance(elf.needed(path), list)
    for size in (16, 64, 300):
        path.write_bytes(b"\x7fELF" + bytes(rng.randrange(256) for _ in range(size)))
        with contextlib.suppress(elf.ElfError):
            elf.needed(path)


def test_absurd_counts_and_offsets_are_reported(tmp_path):
    data = bytearray(make_elf(["libcudart.so.12"]))
    struct.pack_into("<H", data, 56, 0xFFF0)  # e_phnum
    (tmp_path / "many.so").write_bytes(bytes(data))
    with pytest.raises(elf.ElfError, match="program headers"):
        elf.needed(tmp_path / "many.so")

    data = bytearray(make_elf(["libcudart.so.12"]))
    struct.pack_into("<Q", data, 32, 1 << 40)  # e_phoff far past the end
    (tmp_path / "far.so").write_bytes(bytes(data))
    with pytest.raises(elf.ElfError, match="truncated"):
        elf.needed(tmp_path / "far.so")


# --- section headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_sections_by_name(tmp_path, bits, byteorder):
    path = tmp_path / "libs.so"
    path.write_bytes(make_sectioned_elf({".text": b"\x90" * 7, ".nv_fatbin": b"fat!"}, bits=bits,
                                        byteorder=byteorder, flags=0x1234))
    names = [s.name for s in elf.sections(path)]
    assert names == ["", ".text", ".nv_fatbin", ".shstrtab"]
    fat = elf.section(path, ".nv_fatbin")
    assert fat is not None and fat.size == 4
    with open(path, "rb") as f:
        f.seek(fat.offset)
        assert f.read(fat.size) == b"fat!"
    assert elf.section(path, ".missing") is None
    header = elf.header(path)
    assert (header.bits, header.byteorder, header.flags, header.machine) == (bits, byteorder, 0x1234, EM_AARCH64)


def test_sections_of_an_object_without_a_section_table(tmp_path):
    lib = write_elf(tmp_path / "libx.so", ["libc.so.6"])
    assert elf.sections(lib) == ()
    assert elf.section(lib, ".nv_fatbin") is None


def test_sections_of_a_gcc_built_library_and_truncations(tmp_path):
    data = make_sectioned_elf({".nv_fatbin": b"x" * 40})
    path = tmp_path / "t.so"
    for length in range(0, len(data), 7):
        path.write_bytes(data[:length])
        with contextlib.suppress(elf.ElfError):
            elf.sections(path)
    if shutil.which("gcc"):
        lib = gcc_library(tmp_path / "gcc", "libg.so")
        assert ".dynamic" in {s.name for s in elf.sections(lib)}


def test_dynamic_object_with_appended_sections(tmp_path):
    lib = write_elf(tmp_path / "libboth.so", ["libnccl.so.2"], rpath="$ORIGIN", sections={".nv_fatbin": b"abc"})
    assert elf.needed(lib) == ["libnccl.so.2"] and elf.dynamic(lib).rpath == ("$ORIGIN",)
    assert [s.name for s in elf.sections(lib)] == ["", ".nv_fatbin", ".shstrtab"]
    assert elf.section(lib, ".nv_fatbin").size == 3


def test_rpath_and_runpath_are_read(tmp_path):
    lib = write_elf(tmp_path / "libr.so", ["libnccl.so.2"], runpath="$ORIGIN/../../nvidia/nccl/lib:$ORIGIN")
    assert elf.dynamic(lib).runpath == ("$ORIGIN/../../nvidia/nccl/lib", "$ORIGIN")
    assert elf.dynamic(lib).rpath == ()
    old = write_elf(tmp_path / "libo.so", ["libnccl.so.2"], rpath="$ORIGIN/../lib::/opt/x")
    assert (elf.dynamic(old).rpath, elf.dynamic(old).runpath) == (("$ORIGIN/../lib", "/opt/x"), ())
