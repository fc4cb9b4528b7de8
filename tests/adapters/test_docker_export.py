"""unpack_rootfs, verify's export of an image: placeholders for what it does not read, large objects sparse."""

from __future__ import annotations

from pathlib import Path

from factory.adapters.rootfs.scan import scan
from tests.adapters.test_elf import write_elf
from tests.rootfs_fixtures import SITE


def test_the_export_filter_keeps_what_the_runtime_checks_read(tmp_path):
    import io
    import tarfile

    from factory.adapters.docker import unpack_rootfs

    big = 3 * 1024 * 1024
    so = write_elf(tmp_path / "lib.so", ["libc.so.6"])
    files = {
        "usr/bin/g++": b"\x7fELF" + bytes(big),
        "usr/local/cuda-13.0/include/cuda_runtime.h": b"/* CUDA runtime API */\n",
        "usr/lib/aarch64-linux-gnu/libbig.so.1": so.read_bytes() + bytes(big),
        "usr/share/model/weights.bin": bytes(big),
    }
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, data in files.items():
            tar.addfile(_member(name, len(data)), io.BytesIO(data))
        info = tarfile.TarInfo("usr/local/cuda")
        info.type, info.linkname = tarfile.SYMTYPE, "/usr/local/cuda-13.0"
        tar.addfile(info)
    stream.seek(0)
    root = tmp_path / "rootfs"
    unpack_rootfs(stream, root)
    assert (root / "usr/bin/g++").stat().st_size == 0  # only its path is needed: a placeholder
    assert (root / "usr/local/cuda/include/cuda_runtime.h").read_bytes() == files[
        "usr/local/cuda-13.0/include/cuda_runtime.h"]
    assert (root / "usr/lib/aarch64-linux-gnu/libbig.so.1").stat().st_size == len(files[
        "usr/lib/aarch64-linux-gnu/libbig.so.1"])
    assert (root / "usr/share/model/weights.bin").stat().st_size == 0  # dropped
    findings = scan(root)
    assert findings.toolchain == ("/usr/bin/g++", "/usr/local/cuda-13.0/include/cuda_runtime.h")
    assert findings.unresolved == (("/usr/lib/aarch64-linux-gnu/libbig.so.1", "libc.so.6"),)


def _member(name: str, size: int):
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o755
    return info


def test_a_large_shared_object_is_unpacked_sparse_with_everything_verify_reads_from_it(tmp_path):
    """verify's export keeps only the headers of a big library whose GPU code it does not read: the dynamic
    section, ELF header and section table read back exactly as from the whole file; torch's, vLLM's and
    FlashInfer's objects and anything that is not ELF are written whole."""
    import io
    import tarfile

    import pydantic_core._pydantic_core as real

    from factory.adapters.docker import unpack_rootfs
    from factory.adapters.rootfs import elf

    data = Path(real.__file__).read_bytes()  # a real ELF shared object of a few MB
    junk = bytes(range(256)) * 8192
    members = {f"{SITE}/pkg/libbig.so": data, f"{SITE}/vllm/_C.abi3.so": data, f"{SITE}/pkg/libjunk.so": junk}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    root = tmp_path / "r"
    unpack_rootfs(buffer, root, sparse_min=0)
    original = tmp_path / "original.so"
    original.write_bytes(data)
    sparse = root / SITE / "pkg/libbig.so"
    assert sparse.stat().st_size == len(data)
    assert elf.dynamic(sparse) == elf.dynamic(original) and elf.dynamic(sparse).needed
    assert elf.header(sparse) == elf.header(original) and elf.sections(sparse) == elf.sections(original)
    assert sparse.stat().st_blocks * 512 < len(data) // 2, "the code in between takes no disk"
    assert (root / SITE / "vllm/_C.abi3.so").read_bytes() == data  # its GPU code is read: whole
    assert (root / SITE / "pkg/libjunk.so").read_bytes() == junk  # not ELF: whole
