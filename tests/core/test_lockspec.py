"""What each image installs (factory.core.lockspec) on the shipped matrix, the input digests of the locks, and
`locking.stale` on temporary copies and on the committed locks. Pure: no network, no subprocess."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from factory.core import lockfile
from factory.core.lockfile import Lock
from factory.core.lockspec import CUDA12_OFF, UV_VERSION, input_digests, lock_path, lock_specs
from factory.usecases import locking
from tests.conftest import ROOT, SHIPPED
from tests.lock_fixtures import pin, planned

VLLM_SOURCE_TAGS = [f"{v}-t{t}" for v in ("0.13.0", "0.14.0", "0.14.1", "0.15.0", "0.15.1", "0.16.0", "0.17.0")
                    for t in (4, 5)]


def specs_of(path: Path):
    loaded, plan = planned(path)
    return loaded, plan, lock_specs(loaded, plan)


@pytest.fixture(scope="module")
def shipped():
    return specs_of(SHIPPED)


def test_every_plan_image_has_a_spec_parents_first(shipped):
    loaded, plan, specs = shipped
    # every image but the runtime images, which copy their dev base's environment (its lock)
    assert list(specs) == [s.name for s in plan.images if s.kind != "runtime"]
    assert all(s.env_lock == plan.get(s.depends_on).lock for s in plan.runtimes)
    for name, spec in specs.items():
        assert spec.image == name and spec.kind == plan.get(name).kind and spec.mode == plan.get(name).mode
        if spec.parent:
            assert list(specs).index(spec.parent) < list(specs).index(name)
        assert lock_path(loaded, name) == ROOT / "locks" / f"{name}.txt"


def test_wheel_mode_base_installs_uv_alone_then_torch_at_the_matrix_pins(shipped):
    loaded, _, specs = shipped
    spec = specs["2.14.0-cu130"]
    base = loaded.matrix.base["2.14.0-cu130"]
    tools, torch = spec.groups
    assert (tools.layer, tools.requirements, tools.no_deps) == ("tools", (f"uv=={UV_VERSION}",), True)
    assert torch.layer == "torch" and not torch.no_deps
    assert torch.requirements == (f"torch=={base.torch}", f"torchvision=={base.torchvision}",
                                  f"torchaudio=={base.torchaudio}", f"nvidia-nccl-cu13=={base.nccl}")
    assert torch.requirements == ("torch==2.14.0", "torchvision==0.29.0", "torchaudio==2.11.0",
                                  "nvidia-nccl-cu13==2.30.7")
    assert spec.built == () and spec.parent is None and spec.layers == ("tools", "torch")
    assert spec.cuda == "13.0.3" and spec.cuda_major == "13"
    assert spec.files == ("dockerfiles/pytorch-dev-wheels.Dockerfile",)


@pytest.mark.parametrize("name", ["2.9.1-cu130", "2.10.0-cu131", "2.10.0-v2-cu131"])
def test_source_base_marks_torch_vision_audio_built(shipped, name):
    loaded, _, specs = shipped
    spec, base = specs[name], loaded.matrix.base[name]
    torch = (f"torch=={base.torch}", f"torchvision=={base.torchvision}", f"torchaudio=={base.torchaudio}")
    assert spec.mode == "source" and spec.built == torch
    assert spec.groups[-1].requirements == torch and spec.groups[-1].layer == "torch"
    assert spec.groups[0].no_deps and spec.groups[0].requirements[0] == f"uv=={UV_VERSION}"
    assert not any("nccl" in r for g in spec.groups for r in g.requirements)  # NCCL is compiled


def test_vllm_images_install_transformers_last_with_the_matrix_overrides(shipped):
    loaded, plan, specs = shipped
    for image in plan.vllm_images:
        spec = specs[image.name]
        pin = loaded.matrix.image[image.name].transformers
        assert spec.last_layer == "transformers" and spec.layers[-1] == "transformers", image.name
        assert spec.layers[0] == "base" and spec.parent == loaded.matrix.image[image.name].base
        last = next(g for g in spec.groups if g.layer == "transformers")
        assert last.requirements == (f"transformers=={pin}",)
        assert set(CUDA12_OFF) <= set(spec.overrides)
        assert f"transformers=={pin}" in spec.overrides
        assert spec.python_platform == "aarch64-manylinux_2_39"
    assert "cupy-cuda12x; sys_platform == 'never'" in CUDA12_OFF
    assert "nvidia-cutlass-dsl-libs-cu12; sys_platform == 'never'" in CUDA12_OFF
    assert "transformers==5.20.2" in specs["0.33.0-t5"].overrides


def test_source_vllm_images_build_vllm_and_torch_and_lock_vllms_requirement_files(shipped):
    _, _, specs = shipped
    spec = specs["0.17.0-t5"]
    assert spec.mode == "source" and spec.vllm_sdist == "0.17.0" and spec.vllm_ref == "v0.17.0"
    assert {"torch==2.10.0", "torchvision==0.25.0", "torchaudio==2.10.0"} <= set(spec.built)
    vllm = spec.groups[0]
    assert vllm.layer == "vllm" and "-r requirements/cuda.txt" in vllm.requirements
    assert "flashinfer-python==0.6.5" in vllm.requirements and "ray[default]==2.53.0" in vllm.requirements
    assert spec.transform_drop == ("torch", "torchvision", "torchaudio")
    assert "dockerfiles/vllm_requirements.py" in spec.files and "dockerfiles/vllm.Dockerfile" in spec.files
    assert spec.hold is not None and {"torch", "nvidia-nccl-cu13"} <= set(spec.hold)


def test_wheel_vllm_image_and_its_flashinfer_group(shipped):
    _, _, specs = shipped
    spec = specs["0.33.0-t5"]
    vllm = spec.groups[0]
    # shipped on a runtime image: Triton's ptxas from CUDA's nvcc wheel (held to the image's CUDA)
    assert vllm.requirements == ("triton==3.8.0", "flashinfer-python==0.7.2.post1", "vllm==0.33.0",
                                 "ray[default]==2.59.0", "nvidia-cuda-nvcc")
    flashinfer = next(g for g in spec.groups if g.layer == "flashinfer")
    assert flashinfer.no_deps and flashinfer.optional and flashinfer.extra_indexes
    assert spec.layers == ("base", "vllm", "flashinfer", "transformers")
    assert spec.vllm_sdist is None and spec.files == ("dockerfiles/vllm-wheels.Dockerfile",)


def test_siblings_are_the_t4_t5_of_one_vllm_built_alike(shipped):
    _, _, specs = shipped
    assert specs["0.17.0-t4"].siblings == ("0.17.0-t5",)
    assert specs["0.17.0-t5"].siblings == ("0.17.0-t4",)
    assert specs["0.13.0-t4"].siblings == ("0.13.0-t5",)
    # different vLLM sources (main@9b693d0 vs scitrera/vllm@6a3c7ed): not siblings
    assert specs["0.14.0-t4"].siblings == () and specs["0.14.0-t5"].siblings == ()
    # different FlashInfer (0.6.3 vs 0.6.5): not siblings
    assert specs["0.16.0-t4"].siblings == () and specs["0.16.0-t5"].siblings == ()
    assert specs["0.33.0-t5"].siblings == ()
    for name, spec in specs.items():
        for sibling in spec.siblings:
            assert name in specs[sibling].siblings  # symmetric
        if spec.kind != "vllm":
            assert spec.siblings == () and spec.last_layer is None


def test_extra_layers_lock_nixl_on_their_tag(shipped):
    _, _, specs = shipped
    spec = specs["0.17.0-t5-nixl"]
    assert spec.parent == "0.17.0-t5" and spec.kind == "extra"
    assert [(g.layer, g.requirements, g.no_deps) for g in spec.groups] == [
        ("nixl", ("nixl-cu13==1.5.1",), False), ("nixl", ("nixl==1.5.1",), True)]
    assert spec.layers == ("base", "nixl")


def test_python_platform_follows_the_ubuntu_glibc_and_machine(shipped):
    _, _, specs = shipped
    assert {s.python_platform for s in specs.values()} == {"aarch64-manylinux_2_39"}
    from dataclasses import replace

    spec = specs["2.14.0-cu130"]
    assert replace(spec, platform="linux/amd64", glibc="2.35").python_platform == "x86_64-manylinux_2_35"


# -- input digests --------------------------------------------------------------------------------------------


def digests_of(path: Path) -> dict[str, str]:
    loaded, _, specs = specs_of(path)
    return input_digests(specs, loaded.root)


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert set(before) == set(after)
    return {name for name in before if before[name] != after[name]}


def edit_image(matrix: Path, tag: str, key: str, old: str, new: str) -> None:
    text = matrix.read_text()
    start = text.index(f'[image."{tag}"]')
    at = text.index(f'{key} = "{old}"', start)
    matrix.write_text(text[:at] + f'{key} = "{new}"' + text[at + len(f'{key} = "{old}"'):])


def test_input_digests_are_stable_and_distinct(shipped_matrix):
    first = digests_of(shipped_matrix)
    assert first == digests_of(shipped_matrix)
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", d) for d in first.values())
    assert len(set(first.values())) == len(first)
    assert first == digests_of(SHIPPED)  # the same tree elsewhere: the same digests


def test_input_digest_follows_the_dockerfile_bytes(shipped_matrix):
    before = digests_of(shipped_matrix)
    vllm = shipped_matrix.parent / "dockerfiles" / "vllm.Dockerfile"
    vllm.write_bytes(vllm.read_bytes() + b"\n# one more line\n")
    after = digests_of(shipped_matrix)
    assert changed(before, after) == set(VLLM_SOURCE_TAGS) | {"0.17.0-t4-nixl", "0.17.0-t5-nixl"}


def test_input_digest_follows_the_requirement_transform(shipped_matrix):
    before = digests_of(shipped_matrix)
    transform = shipped_matrix.parent / "dockerfiles" / "vllm_requirements.py"
    transform.write_bytes(transform.read_bytes() + b"\n# touched\n")
    assert changed(before, digests_of(shipped_matrix)) == set(VLLM_SOURCE_TAGS) | {"0.17.0-t4-nixl",
                                                                                  "0.17.0-t5-nixl"}


def test_input_digest_follows_the_parent(shipped_matrix):
    before = digests_of(shipped_matrix)
    base = shipped_matrix.parent / "dockerfiles" / "pytorch-dev.Dockerfile"
    base.write_bytes(base.read_bytes().replace(b"\n", b"\n\n", 1))
    after = digests_of(shipped_matrix)
    source_bases = {"2.9.1-cu130", "2.10.0-cu131", "2.10.0-v2-cu131"}
    # the bases, every image FROM them and the layers on those images; not the wheel-mode line
    assert changed(before, after) == source_bases | set(VLLM_SOURCE_TAGS) | {"0.17.0-t4-nixl", "0.17.0-t5-nixl"}
    loaded, _, specs = specs_of(shipped_matrix)
    own_after = specs["0.17.0-t5"].own_digest(loaded.root)
    shutil.copy(SHIPPED.parent / "dockerfiles" / "pytorch-dev.Dockerfile", base)
    assert digests_of(shipped_matrix) == before
    assert specs_of(shipped_matrix)[2]["0.17.0-t5"].own_digest(loaded.root) == own_after  # its own spec is equal


def test_input_digest_follows_a_siblings_transformers(shipped_matrix):
    before = digests_of(shipped_matrix)
    edit_image(shipped_matrix, "0.17.0-t4", "transformers", "4.57.6", "4.57.7")
    after = digests_of(shipped_matrix)
    assert changed(before, after) == {"0.17.0-t4", "0.17.0-t5", "0.17.0-t4-nixl", "0.17.0-t5-nixl"}


def test_input_digest_follows_the_matrix_values(shipped_matrix):
    before = digests_of(shipped_matrix)
    edit_image(shipped_matrix, "0.33.0-t5", "transformers", "5.20.2", "5.20.1")
    assert changed(before, digests_of(shipped_matrix)) == {"0.33.0-t5", "0.33.0-t5-nixl"}


def test_input_digest_ignores_files_no_lock_reads(shipped_matrix):
    before = digests_of(shipped_matrix)
    smoke = shipped_matrix.parent / "dockerfiles" / "smoke.py"
    smoke.write_bytes(smoke.read_bytes() + b"\n# touched\n")
    (shipped_matrix.parent / "README.md").write_text("unrelated\n")
    assert digests_of(shipped_matrix) == before


# -- stale ----------------------------------------------------------------------------------------------------


def fake_lock(name: str, digest: str, parent: str | None = None) -> str:
    """A lock of one pin; `parent`: the `<parent> <content digest>` it records, as `factory lock` writes it."""
    header = {"image": (name,), "input-digest": (digest,), "platform": ("linux/arm64",), "python": ("3.12",)}
    if parent:
        header["parent"] = (parent,)
    return lockfile.render(Lock(header=header, pins=(pin("six", "1.17.0", "x", seed=name),)))


@pytest.fixture
def locked_copy(shipped_matrix):
    """A copy of the shipped matrix whose every lock carries its current input digest (parents first, each
    child recording its parent's content)."""
    loaded, plan, specs = specs_of(shipped_matrix)
    for name, digest in input_digests(specs, loaded.root).items():
        path = lock_path(loaded, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        parent = specs[name].parent
        recorded = None
        if parent:
            recorded = f"{parent} {lockfile.content_digest(lockfile.read(lock_path(loaded, parent)))}"
        path.write_text(fake_lock(name, digest, recorded), encoding="utf-8")
    return shipped_matrix


def stale_of(path: Path) -> dict[str, str]:
    return locking.stale(*planned(path))


def test_stale_is_empty_when_every_lock_is_current(locked_copy):
    assert stale_of(locked_copy) == {}


def test_stale_reports_a_missing_lock(locked_copy):
    missing = locked_copy.parent / "locks" / "0.17.0-t5.txt"
    missing.unlink()
    found = stale_of(locked_copy)
    # its extra layer was locked against it: stale as well
    assert list(found) == ["0.17.0-t5", "0.17.0-t5-nixl"]
    assert found["0.17.0-t5"].endswith("0.17.0-t5.txt is missing")
    assert found["0.17.0-t5-nixl"].endswith("is stale (its parent 0.17.0-t5's lock changed since)")


def test_stale_reports_locks_whose_inputs_changed(locked_copy):
    wheels = locked_copy.parent / "dockerfiles" / "vllm-wheels.Dockerfile"
    wheels.write_bytes(wheels.read_bytes() + b"\n# touched\n")
    found = stale_of(locked_copy)
    assert set(found) == {"0.33.0-t5", "0.33.0-t5-nixl"}
    assert "0.33.0-t5.txt is stale" in found["0.33.0-t5"]


def test_stale_limited_to_names(locked_copy):
    (locked_copy.parent / "locks" / "0.17.0-t5.txt").unlink()
    loaded, plan = planned(locked_copy)
    assert locking.stale(loaded, plan, ["0.33.0-t5"]) == {}
    assert list(locking.stale(loaded, plan, ["0.17.0-t5"])) == ["0.17.0-t5"]


def test_stale_refuses_an_unreadable_lock(locked_copy):
    path = locked_copy.parent / "locks" / "0.33.0-t5.txt"
    path.write_text("not a lock\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"0\.33\.0-t5\.txt:1:"):
        stale_of(locked_copy)


def test_audit_reports_stale_locks_and_rules_a_current_lock_breaks(locked_copy):
    locks = locked_copy.parent / "locks"
    current = lockfile.read(locks / "0.33.0-t5.txt")
    pins = (pin("cupy-cuda12x", "13.6.0", "vllm", seed="cupy", via=("ray",)),
            pin("nvidia-cublas-cu12", "12.9.1.4", "base", seed="cublas"))
    (locks / "0.33.0-t5.txt").write_text(lockfile.render(Lock(header=current.header, pins=pins)), encoding="utf-8")
    (locks / "2.9.1-cu130.txt").unlink()
    found = locking.audit(*planned(locked_copy))
    # the images built on them were locked against their old content: stale too, saying why
    assert set(found) == {"0.33.0-t5", "2.9.1-cu130", "0.33.0-t5-nixl", "0.13.0-t4", "0.13.0-t5"}
    for child, parent in (("0.33.0-t5-nixl", "0.33.0-t5"), ("0.13.0-t4", "2.9.1-cu130")):
        assert found[child] == [f"{locks / child}.txt is stale (its parent {parent}'s lock changed since)"]
    # what the image inherits (its base layer) is its parent's business; its own layers are checked
    assert found["0.33.0-t5"] == ["cupy-cuda12x==13.6.0 is built for CUDA 12, the image is CUDA 13.0.3: pulled in "
                                  "by cupy-cuda12x <- ray"]
    assert found["2.9.1-cu130"][0].endswith("2.9.1-cu130.txt is missing")


def test_committed_locks_are_current():
    """`factory lock --check` on the repository: every committed lock matches the matrix and Dockerfiles."""
    assert stale_of(SHIPPED) == {}


def test_committed_locks_hold_what_their_spec_asks(shipped):
    loaded, _, specs = shipped
    for name, spec in specs.items():
        lock = lockfile.read(lock_path(loaded, name))
        assert lock.layers == tuple(layer for layer in spec.layers if lock.layer(layer)), name
        have = lock.installed()
        built = {lockfile.canonical(b.split("==")[0]) for b in spec.built}
        for group in spec.groups:
            for text in group.requirements:
                match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", text)
                if match is None or lockfile.canonical(match[1]) in built or \
                        any(text == u.split(" ")[0] for u in lock.header.get("unlocked", ())):
                    continue
                assert have.get(lockfile.canonical(match[1])) == match[2], (name, text)
        assert not built & set(have), (name, built & set(have))  # what the image compiles is never locked
        if spec.parent:
            parent = lockfile.read(lock_path(loaded, spec.parent)).installed()
            base = {p.key: p.version for p in lock.layer("base")}
            assert all(parent.get(k) == v for k, v in base.items()), name


def test_every_dockerfile_mounts_exactly_the_layer_files_factory_build_writes(shipped):
    """The build context `lock` holds LAYER_FILES[kind] (+ unlocked.txt); a Dockerfile mounting another name
    would fail at build time, one mounting fewer would skip a layer of its lock."""
    import re

    from factory.core.lockspec import LAYER_FILES

    _, plan, specs = shipped
    seen = {}
    for spec in plan.images:
        text = (ROOT / spec.dockerfile).read_text()
        mounted = set(re.findall(r"--mount=type=bind,from=lock,source=([a-z-]+)\.txt", text))
        if spec.kind == "runtime":  # copies its dev base's environment: installs from no lock
            assert not mounted and spec.lock is None and spec.name not in specs
            continue
        seen.setdefault(spec.kind, set()).update(mounted - {"unlocked"})
        layers = {g.layer for g in specs[spec.name].groups}
        assert layers <= set(LAYER_FILES[spec.kind]), spec.name  # every layer of its lock has a file
    assert {kind: set(files) for kind, files in LAYER_FILES.items()} == seen


def test_a_build_for_another_platform_needs_that_platforms_locks(capsys):
    """`build --platform` plans another platform: its locks are that platform's, in locks/<os>-<arch>/, and
    the message says how to make them; the matrix's own locks are not taken for them."""
    from factory.cli.main import main

    assert main(["build", "0.33.0-t5", "--platform", "linux/amd64", "--matrix", str(SHIPPED)]) == 2
    err = capsys.readouterr().err
    assert "locks/linux-amd64/2.14.0-cu130.txt is missing" in err
    assert "run `factory lock 2.14.0-cu130 0.33.0-t5 --platform linux/amd64`" in err
    assert main(["lock", "--check", "--platform", "linux/amd64", "0.33.0-t5", "--matrix", str(SHIPPED)]) == 1
    assert "factory lock 2.14.0-cu130 0.33.0-t5 --platform linux/amd64" in capsys.readouterr().out
    assert main(["lock", "--check", "0.33.0-t5", "--matrix", str(SHIPPED)]) == 0  # the matrix's own platform


def test_a_bake_file_is_for_one_platform_and_its_locks(capsys):
    from factory.cli.main import main

    assert main(["bake", "0.33.0-t5", "--platform", "linux/amd64", "--platform", "linux/arm64",
                 "--matrix", str(SHIPPED)]) == 2
    assert "a bake file is for one platform" in capsys.readouterr().err
    assert main(["bake", "0.33.0-t5", "--platform", "linux/amd64", "--matrix", str(SHIPPED)]) == 2
    assert "locks/linux-amd64/2.14.0-cu130.txt is missing" in capsys.readouterr().err
    assert main(["bake", "0.33.0-t5", "--platform", "linux/arm64", "--matrix", str(SHIPPED)]) == 0  # its own
    out = capsys.readouterr().out
    assert '"lock": "' in out and '"linux/arm64"' in out


def test_check_lock_reports_stale_locks_and_rules_as_errors(capsys, shipped_matrix):
    """`factory check --lock`: the committed locks of the repository pass; in a copy whose 0.33.0-t5 lock is
    gone and whose matrix forbids a distribution 0.17.0-t4 holds, both are errors (exit 1) under builtin/lock."""
    from factory.cli.main import main

    assert main(["check", "--lock", "--matrix", str(SHIPPED)]) == 0
    capsys.readouterr()
    shutil.copytree(ROOT / "locks", shipped_matrix.parent / "locks")
    (shipped_matrix.parent / "locks" / "0.33.0-t5.txt").unlink()
    shipped_matrix.write_text(shipped_matrix.read_text() + textwrap.dedent("""
        [[rule]]
        id = "no-xgrammar"
        when = { vllm = "==0.17.0" }
        forbid_dists = ["xgrammar"]
        reason = "an example of a distribution rule"
        source = "https://example.org/xgrammar"
        """))
    assert main(["check", "--lock", "--matrix", str(shipped_matrix)]) == 1
    out = capsys.readouterr().out
    assert 'image "0.33.0-t5": [builtin/lock] found' in out and "0.33.0-t5.txt is missing" in out
    assert 'image "0.17.0-t4": [builtin/lock] found xgrammar==' in out and "forbidden by rule no-xgrammar" in out
