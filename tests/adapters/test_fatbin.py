"""CUDA device code read from fat binaries: synthetic ELF + fatbin files built here, CUDA's compatibility rules,
and (only where FACTORY_REAL_WHEELS_DIR points to extracted wheels) real torch and vLLM libraries."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from factory.adapters.rootfs import elf, fatbin
from factory.adapters.rootfs.fatbin import (
    KIND_ELF,
    KIND_PTX,
    compatible,
    device_code,
    format_archs,
    parse,
    runs_on,
    sort_archs,
)
from tests.adapters.test_elf import make_sectioned_elf, write_elf

# --- a fatbin writer ---------------------------------------------------------------------------------------

VARIANT_FLAGS = {"": 0, "a": fatbin.FLAG_ARCH_SPECIFIC, "f": fatbin.FLAG_FAMILY_SPECIFIC}


def fat_entry(kind: int, arch: int, variant: str = "", *, payload: bytes = b"", extended: bool = False,
              compressed: bool = False, declared: int | None = None) -> bytes:
    """One fatbin entry as `fatbinary` 13.5 writes it: a 64-byte header (112 with the extended attributes)."""
    flags = fatbin.FLAG_64BIT | fatbin.FLAG_LINUX | VARIANT_FLAGS[variant]
    if extended:
        flags |= fatbin.FLAG_EXTENDED_HEADER
    if compressed:
        flags |= fatbin.FLAG_COMPRESSED_ZSTD
    header_size = 112 if extended else 64
    major, minor = (9, 0) if kind == KIND_PTX else (1, 8)
    size = len(payload) if declared is None else declared
    header = struct.pack("<HHIQIIHHIIIQQQ", kind, 0x101, header_size, size, len(payload) if compressed else 0,
                         64 if extended else 0, minor, major, arch, 0, 0, flags, 0,
                         4 * len(payload) if compressed else 0)
    return header + bytes(header_size - len(header)) + payload


def container(*entries: bytes, padding: int = 0) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", fatbin.FATBIN_MAGIC, 1, 16, len(body)) + body + bytes(padding)


def cubin_bytes(arch: int, *, arch_specific: bool = False, abiversion: int = 8, accelerator_bit: bool = False,
                command: str | None = None) -> bytes:
    """A stand-alone cubin: EM_CUDA, the SM in e_flags (bits 8-15 from ABI 8 on), a .nv.compat section (with
    attribute 9 for `arch_specific`, as ptxas 13.5 writes), e_flags' accelerator bit (as CUDA 12.9 tools set)
    and a .note.nv.tkinfo holding the producing tool's `command` line."""
    flags = 0x6000002 | (arch << 8) if abiversion >= 8 else 0x460500 | arch
    if accelerator_bit:
        flags |= 0x8 if abiversion >= 8 else 0x800
    compat = bytes([2, 9, 1 if arch_specific else 0, 0, 2, 0x0C, 0, 0, 3, 0x0D, 1, 1, 4, 0x0B, 8, 0]) + bytes(8)
    sections = {".text.k": b"\0" * 16, ".nv.compat": compat}
    if command is not None:
        sections[".note.nv.tkinfo"] = (struct.pack("<III", 12, 64, 2000) + b"NVIDIA Corp\0" + b"\0ptxas\0"
                                       + b"Cuda compilation tools, release 13.5, V13.5.37\0" + command.encode() + b"\0")
    return make_sectioned_elf(sections, machine=fatbin.EM_CUDA, flags=flags, abiversion=abiversion)


TORCH_LIKE = container(*(fat_entry(KIND_ELF, a, payload=b"s" * 24, compressed=True) for a in (80, 90)),
                       *(fat_entry(KIND_ELF, a, payload=b"s" * 24, compressed=True, extended=True)
                         for a in (100, 110, 120)), padding=24) + container(
    fat_entry(KIND_ELF, 90, "a", payload=b"x" * 8), fat_entry(KIND_ELF, 100, "a", extended=True),
    fat_entry(KIND_ELF, 103, "f", extended=True), fat_entry(KIND_ELF, 121, "a", extended=True))


def host_library(path: Path, fat: bytes, section: str = ".nv_fatbin", **sections: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_sectioned_elf({".text": b"\x1f\x20\x03\xd5" * 4, section: fat, **sections}))
    return path


# --- reading -------------------------------------------------------------------------------------------------


def test_containers_with_nothing_for_a_target():
    code = parse(TORCH_LIKE + container(fat_entry(KIND_ELF, 90, "a")) + container(fat_entry(KIND_PTX, 80)))
    assert code.uncovered("sm_121") == 1  # the sm_90a-only one; compute_80 PTX JIT-compiles
    assert code.uncovered("sm_90") == 0
    assert code.uncovered("sm_75") == 4  # nothing at or below 7.5


def test_entries_of_two_containers_with_padding_between():
    code = parse(TORCH_LIKE)
    assert code.containers == 2 and code.notes == ()
    assert [e.name for e in code.entries] == ["sm_80", "sm_90", "sm_100", "sm_110", "sm_120",
                                              "sm_90a", "sm_100a", "sm_103f", "sm_121a"]
    assert [e.container for e in code.entries] == [0] * 5 + [1] * 4
    assert code.entries[0].compressed and not code.entries[5].compressed
    assert format_archs(code.sass) == "sm_80 sm_90 sm_90a sm_100 sm_100a sm_103f sm_110 sm_120 sm_121a"
    assert code.ptx == frozenset()


def test_ptx_and_family_and_arch_specific_variants():
    code = parse(container(fat_entry(KIND_PTX, 120, payload=b".version 9.0\n"), fat_entry(KIND_PTX, 100, "f"),
                           fat_entry(KIND_PTX, 90, "a"), fat_entry(KIND_ELF, 120, "f", extended=True)))
    assert code.ptx == {"compute_120", "compute_100f", "compute_90a"}
    assert code.sass == {"sm_120f"}


def test_device_code_of_an_elf_library(tmp_path):
    lib = host_library(tmp_path / "libtorch_cuda.so", TORCH_LIKE)
    code = device_code(lib)
    assert code.source == ".nv_fatbin"
    assert code.sass == parse(TORCH_LIKE).sass
    assert code.entries[0].offset == elf.section(lib, ".nv_fatbin").offset + 16


def test_relocatable_fatbin_is_read_only_without_an_executable_one(tmp_path):
    rel = container(fat_entry(KIND_ELF, 75), fat_entry(KIND_PTX, 75))
    only = host_library(tmp_path / "librel.so", rel, section="__nv_relfatbin")
    assert (device_code(only).source, device_code(only).sass) == ("__nv_relfatbin", {"sm_75"})
    both = host_library(tmp_path / "libboth.so", container(fat_entry(KIND_ELF, 120)), __nv_relfatbin=rel)
    assert (device_code(both).source, device_code(both).sass) == (".nv_fatbin", {"sm_120"})


def test_library_without_device_code(tmp_path):
    plain = tmp_path / "libc10.so"
    plain.write_bytes(make_sectioned_elf({".text": b"\0" * 8}))
    assert device_code(plain) == fatbin.DeviceCode()
    assert device_code(write_elf(tmp_path / "libnosections.so", ["libc.so.6"])).source is None


def test_bare_fatbin_file_and_garbage(tmp_path):
    (tmp_path / "k.fatbin").write_bytes(TORCH_LIKE)
    assert device_code(tmp_path / "k.fatbin").source == "fatbin"
    (tmp_path / "text.so").write_text("GROUP ( libc.so.6 )\n")
    with pytest.raises(elf.ElfError, match="neither an ELF file nor a fat binary"):
        device_code(tmp_path / "text.so")
    with pytest.raises(fatbin.FatbinError):
        parse(b"\0" * 64)


@pytest.mark.parametrize(("abiversion", "arch", "how", "name"), [
    (8, 120, {}, "sm_120"),
    (8, 121, {"arch_specific": True}, "sm_121a"),  # .nv.compat attribute 9 (ptxas 13.5)
    (8, 100, {"accelerator_bit": True}, "sm_100a"),  # e_flags 0x8 (CUDA 12.9 tools)
    (7, 90, {"accelerator_bit": True}, "sm_90a"),  # e_flags 0x800 before ABI 8
    (7, 80, {}, "sm_80"),
    (8, 100, {"command": "-v  -arch sm_100f -m 64 "}, "sm_100f"),  # only the tool's command line tells
    (8, 103, {"command": "-arch sm_103a"}, "sm_103a"),
    (8, 120, {"command": "-arch sm_100f"}, "sm_120"),  # another SM's flag is not this cubin's
])
def test_stand_alone_cubin(tmp_path, abiversion, arch, how, name):
    path = tmp_path / "k.cubin"
    path.write_bytes(cubin_bytes(arch, abiversion=abiversion, **how))
    code = device_code(path)
    assert (code.source, code.sass, code.ptx) == ("cubin", {name}, frozenset())


def sparse_library(path: Path, before: bytes, hole: int, after: bytes) -> Path:
    """An ELF whose .nv_fatbin is `before`, `hole` bytes never written (a sparse hole), then `after`."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    with open(path, "wb") as f:
        f.write(bytes(64))
        f.write(before)
        f.seek(64 + len(before) + hole)
        f.write(after)
        end = f.tell()
        names = b"\0.nv_fatbin\0.shstrtab\0"
        f.write(names)
        shoff = f.tell()
        f.write(bytes(64))
        f.write(struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, 64, end - 64, 0, 0, 1, 0))
        f.write(struct.pack("<IIQQQQIIQQ", 12, 3, 0, 0, end, len(names), 0, 0, 1, 0))
        f.seek(0)
        f.write(ident + struct.pack("<HHIQQQIHHHHHH", 3, 183, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2))
    return path


def test_only_headers_are_read_of_a_huge_payload(tmp_path, monkeypatch):
    """A 256 MiB payload (a sparse hole) is skipped: the reader reads headers, a few hundred bytes."""
    big = 256 << 20
    first = fat_entry(KIND_ELF, 90, declared=big)
    head = struct.pack("<IHHQ", fatbin.FATBIN_MAGIC, 1, 16, len(first) + big) + first
    path = sparse_library(tmp_path / "libhuge.so", head, big, container(fat_entry(KIND_ELF, 120)))
    sizes = []
    real_pread = os.pread

    def counting(fd, n, offset):
        sizes.append(n)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(fatbin.os, "pread", counting)
    code = device_code(path)
    assert code.sass == {"sm_90", "sm_120"} and code.notes == ()
    assert sum(sizes) < 1024, sizes


def test_corrupt_fatbins_never_escape_as_another_error(tmp_path):
    rng = random.Random(7)
    good = TORCH_LIKE + container(fat_entry(KIND_PTX, 120, payload=b"ptx"))
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(fatbin.FatbinError):
            code = parse(bytes(data))
            assert all(e.kind in (KIND_ELF, KIND_PTX) for e in code.entries)
    for cut in range(0, len(good), 5):
        with contextlib.suppress(fatbin.FatbinError):
            parse(good[:cut])
    lib = host_library(tmp_path / "libcut.so", good)
    data = lib.read_bytes()
    for cut in range(0, len(data), 37):
        lib.write_bytes(data[:cut])
        with contextlib.suppress(elf.ElfError):
            device_code(lib)


def test_a_container_that_runs_past_its_section_is_noted():
    fat = container(fat_entry(KIND_ELF, 90), fat_entry(KIND_ELF, 120))
    code = parse(fat[:-10])
    assert [e.name for e in code.entries] == ["sm_90"]
    assert any("runs past" in n for n in code.notes)


def test_garbage_between_containers_is_skipped_with_a_note():
    fat = container(fat_entry(KIND_ELF, 90)) + b"junk" * 4 + container(fat_entry(KIND_ELF, 120))
    code = parse(fat)
    assert code.sass == {"sm_90", "sm_120"}
    assert any("skipped 16 bytes" in n for n in code.notes)


# --- names and CUDA's compatibility rules -----------------------------------------------------------------


def test_sorting_and_formatting():
    assert sort_archs(["sm_120", "sm_90a", "sm_80", "sm_90", "sm_100f", "sm_100", "sm_90"]) == [
        "sm_80", "sm_90", "sm_90a", "sm_100", "sm_100f", "sm_120"]
    assert format_archs([]) == ""
    assert fatbin.parse_arch("compute_121a") == ("compute", 121, "a")
    with pytest.raises(ValueError):
        fatbin.parse_arch("sm121")


@pytest.mark.parametrize(("code", "target", "ok"), [
    ("sm_120", "sm_121", True),     # same major, lower minor
    ("sm_121", "sm_121", True),
    ("sm_121", "sm_120", False),    # never to a lower minor
    ("sm_120a", "sm_121", False),   # arch-specific: exactly 12.0
    ("sm_120a", "sm_120", True),
    ("sm_121a", "sm_121", True),
    ("sm_120f", "sm_121", True),    # family-specific: the 12.x family at minor >= 0
    ("sm_121f", "sm_120", False),
    ("sm_100f", "sm_103", True),
    ("sm_100f", "sm_110", False),   # another family
    ("sm_90", "sm_121", False),     # SASS never crosses a major
    ("sm_100", "sm_121", False),
    ("sm_80", "sm_86", True),
    ("compute_90", "sm_121", True),  # PTX JIT-compiles for any later GPU
    ("compute_120", "sm_121", True),
    ("compute_121", "sm_120", False),
    ("compute_90a", "sm_121", False),  # arch-specific PTX: exactly 9.0
    ("compute_90a", "sm_90", True),
    ("compute_120f", "sm_121", True),
    ("compute_100f", "sm_121", False),
])
def test_compatible(code, target, ok):
    assert compatible(code, target) is ok


def test_runs_on_sm_121():
    ok, why = runs_on({"sm_80", "sm_90", "sm_100", "sm_110", "sm_120"}, set(), "sm_121")
    assert ok and why == "SASS sm_120 runs on sm_121 (major 12, minor <= 1)"
    ok, why = runs_on({"sm_120a", "sm_120", "sm_121a", "sm_100a"}, {"compute_120"}, "sm_121")
    assert ok and why == "SASS sm_120 sm_121a runs on sm_121 (major 12, minor <= 1)"
    ok, why = runs_on({"sm_120a"}, set(), "sm_121")
    assert not ok and "sm_120a is architecture-specific" in why
    ok, why = runs_on({"sm_80", "sm_90"}, {"compute_90"}, "sm_121")
    assert ok and "compute_90 PTX is JIT-compiled" in why
    ok, why = runs_on({"sm_80", "sm_90", "sm_100"}, set(), "sm_121")
    assert not ok and why.startswith("nothing runs on sm_121") and "has sm_80 sm_90 sm_100" in why
    ok, why = runs_on(set(), set(), "12.1")
    assert not ok and "no device code" in why
    assert runs_on({"sm_90a"}, {"compute_90a"}, "sm_90")[0]
    assert not runs_on(set(), {"compute_90a", "compute_100f"}, "sm_121")[0]
    with pytest.raises(ValueError):
        runs_on({"sm_120"}, set(), "gb10")


# --- real libraries (only where FACTORY_REAL_WHEELS_DIR points to extracted wheels) ---------------------------

REAL = os.environ.get("FACTORY_REAL_WHEELS_DIR")
needs_real = pytest.mark.skipif(
    not REAL, reason="set FACTORY_REAL_WHEELS_DIR to a directory holding extracted wheels (torch/lib/"
                     "libtorch_cuda.so, vllm/_C*.so) to check the reader on real libraries; see docs/sass.md")


@needs_real
def test_real_torch_and_vllm_libraries():
    root = Path(REAL or ".")
    torch_libs = sorted(root.rglob("torch/lib/libtorch_cuda.so"))
    vllm_libs = sorted(p for p in root.rglob("vllm/_C*.so") if p.is_file())
    if not torch_libs and not vllm_libs:
        pytest.skip(f"no torch/lib/libtorch_cuda.so or vllm/_C*.so under {root}")
    cuobjdump = os.environ.get("FACTORY_CUOBJDUMP") or shutil.which("cuobjdump")
    for lib in torch_libs:
        code = device_code(lib)
        assert {"sm_80", "sm_90", "sm_100", "sm_120"} <= code.sass, (lib, format_archs(code.sass))
        assert runs_on(code.sass, code.ptx, "sm_121")[0]
    for lib in vllm_libs:
        assert device_code(lib).entries, lib
    for lib in (torch_libs + vllm_libs)[:2] if cuobjdump else ():
        out = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", str(lib)], capture_output=True, text=True)
        listed = re.findall(r"\.(sm_\w+)\.(cubin|ptx)$", out.stdout, re.MULTILINE)
        # cuobjdump names a family-specific cubin without its `f`, and PTX as sm_XY.
        ours = [(f"sm_{e.arch}{'' if e.kind == KIND_ELF and e.variant == 'f' else e.variant}",
                 "cubin" if e.kind == KIND_ELF else "ptx") for e in device_code(lib).entries]
        assert sorted(listed) == sorted(ours), lib
