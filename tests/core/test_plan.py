from __future__ import annotations

import shutil

import pytest

from factory.core.errors import InputError
from factory.core.matrix import load
from factory.core.plan import build_plan, dockerfile_inputs, select
from factory.core.resolve import resolve
from tests.conftest import SHIPPED


def _plan(path, names=None):
    r = resolve(load(path))
    return build_plan(r, select(r.matrix, names or []))


def test_plan_for_one_tag_is_its_base_its_runtime_image_then_the_image():
    plan = _plan(SHIPPED, ["0.15.0-t5"])
    assert [(s.kind, s.name) for s in plan.images] == [("base", "2.10.0-cu131"), ("runtime", "2.10.0-cu131-runtime"),
                                                       ("vllm", "0.15.0-t5")]
    base, runtime, image = plan.images
    assert runtime.depends_on == "2.10.0-cu131" and runtime.build_args["DEV_IMAGE"] == base.ref
    assert image.depends_on == "2.10.0-cu131-runtime" and image.from_ref == runtime.ref
    assert base.ref == "scitrera/dgx-spark-pytorch-dev:2.10.0-cu131"
    assert runtime.ref == "scitrera/dgx-spark-pytorch-dev:2.10.0-cu131-runtime"
    assert image.ref == "scitrera/dgx-spark-vllm:0.15.0-t5"
    # shipped on the runtime image, compiled on the dev base
    assert image.build_args["BASE_IMAGE"] == runtime.ref and image.build_args["BUILD_IMAGE"] == base.ref
    assert base.build_args["TORCH_CUDA_ARCH_LIST"] == "12.1a"
    assert base.build_args["NCCL_REF"] == "v2.29.2-1" and base.build_args["MAX_JOBS"] == "8"
    assert image.build_args["FLASHINFER_REQUIREMENT"] == "flashinfer-python==0.6.2"
    assert image.platform == "linux/arm64"


def test_every_component_is_labelled_base_components_included():
    plan = _plan(SHIPPED, ["0.15.0-t5"])
    base, runtime, image = plan.images
    ns = "dev.scitrera"
    expected = {"python": "3.12", "cuda": "13.1.0", "nccl": "2.29.2-1", "torch": "2.10.0",
                "torchvision": "0.25.0", "torchaudio": "2.10.0", "triton": "3.5.1", "flashinfer": "0.6.2",
                "vllm": "0.15.0", "transformers": "5.0.0", "ray": "2.53.0"}
    for component, version in expected.items():
        assert image.labels[f"{ns}.{component}_version"] == version
    assert f"{ns}.vllm_version" not in base.labels and base.labels[f"{ns}.cuda_version"] == "13.1.0"
    assert image.labels["org.opencontainers.image.version"] == "0.15.0-t5"
    assert image.labels["org.opencontainers.image.base.name"] == runtime.ref
    assert image.labels[f"{ns}.input_digest"] == image.input_digest
    # the runtime image promises exactly the dev base's components
    assert {k: v for k, v in runtime.labels.items() if k.endswith("_version")} == \
        {k: v for k, v in base.labels.items() if k.endswith("_version")}
    assert (base.labels[f"{ns}.flavor"], runtime.labels[f"{ns}.flavor"], image.labels[f"{ns}.flavor"]) == \
        ("dev", "runtime", "runtime")
    # the OS is measured after the build, not planned: the plan only says what the CUDA image promises
    assert f"{ns}.ubuntu_version" not in image.labels and f"{ns}.os" not in image.labels
    assert base.os == runtime.os == image.os == "ubuntu 24.04"


def test_no_os_promise_when_the_cuda_image_names_no_ubuntu(tmp_path):
    text = SHIPPED.read_text().replace('cuda_image = "nvidia/cuda:{cuda}-devel-ubuntu{ubuntu}"',
                                       'cuda_image = "factory-twin/cuda:{cuda}-devel-amd64"')
    (tmp_path / "matrix.toml").write_text(text)
    shutil.copytree(SHIPPED.parent / "dockerfiles", tmp_path / "dockerfiles")
    base, _, image = _plan(tmp_path / "matrix.toml", ["0.15.0-t5"]).images
    assert base.os is None and image.os is None
    assert base.build_args["CUDA_IMAGE"] == "factory-twin/cuda:13.1.0-devel-amd64"


def test_fork_source_is_carried_into_the_plan():
    image = _plan(SHIPPED, ["0.14.0-t5"]).get("0.14.0-t5")
    assert image.build_args["VLLM_REPO"] != "https://github.com/vllm-project/vllm.git"
    assert image.build_args["VLLM_REF"] == "6a3c7ede85da489ddb43792ea46fc4ffde126c04"
    # 0.14.0-t4 was published from vLLM main, not the v0.14.0 tag: the matrix pins that commit
    t4 = _plan(SHIPPED, ["0.14.0-t4"]).get("0.14.0-t4").build_args
    assert t4["VLLM_REF"] == "9b693d023cf595e60b5346fdeeb41cf2a6eda838"
    # a tag without a source table clones upstream's release tag
    assert _plan(SHIPPED, ["0.15.0-t4"]).get("0.15.0-t4").build_args["VLLM_REF"] == "v0.15.0"


def test_globs_all_and_order():
    plan = _plan(SHIPPED, ["0.15.*"])
    assert [s.name for s in plan.images] == ["2.10.0-cu131", "2.10.0-cu131-runtime", "0.15.0-t4", "0.15.0-t5",
                                             "0.15.1-t4", "0.15.1-t5"]
    everything = _plan(SHIPPED)
    kinds = [s.kind for s in everything.images]
    order = ("base", "runtime", "vllm", "extra")
    assert kinds == sorted(kinds, key=order.index)  # bases, their runtime images, vLLM images, extra layers last
    assert len(everything.bases) == 4 and len(everything.runtimes) == 4 and len(everything.vllm_images) == 15
    for spec in everything.vllm_images:
        assert [s.name for s in everything.images].index(spec.depends_on) < everything.images.index(spec)


def test_plan_is_deterministic():
    assert _plan(SHIPPED).as_dict() == _plan(SHIPPED).as_dict()


def test_unknown_tag_gets_close_matches():
    with pytest.raises(InputError, match=r"did you mean .*0\.15\.0-t5"):
        _plan(SHIPPED, ["0.15.0-t6"])


def test_t4_and_t5_differ_only_where_they_should():
    plan = _plan(SHIPPED, ["0.15.0-*"])
    t4, t5 = plan.get("0.15.0-t4"), plan.get("0.15.0-t5")
    diff = {k for k in t4.build_args if t4.build_args[k] != t5.build_args[k]}
    assert diff == {"TRANSFORMERS_VERSION"}


def test_input_digest_follows_every_input(shipped_matrix):
    before = _plan(shipped_matrix, ["0.15.0-t5"])
    text = shipped_matrix.read_text()
    dockerfile = shipped_matrix.parent / "dockerfiles" / "vllm.Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\n# touched\n")
    after_recipe = _plan(shipped_matrix, ["0.15.0-t5"])
    assert after_recipe.images[0].input_digest == before.images[0].input_digest
    assert after_recipe.images[1].input_digest == before.images[1].input_digest
    assert after_recipe.images[2].input_digest != before.images[2].input_digest
    shipped_matrix.write_text(text.replace('nccl = "2.29.2-1"', 'nccl = "2.29.3-1"', 1))
    after_pin = _plan(shipped_matrix, ["0.15.0-t5"])
    assert after_pin.images[0].input_digest != before.images[0].input_digest
    assert after_pin.images[1].input_digest != after_recipe.images[1].input_digest, "a dev base change rebuilds"
    assert after_pin.images[2].input_digest != after_recipe.images[2].input_digest, "a base change rebuilds"


def test_copied_files_are_inputs(tmp_path):
    (tmp_path / "smoke.py").write_text("print()")
    (tmp_path / "x.Dockerfile").write_text("FROM scratch\nCOPY --chmod=755 smoke.py /opt/\nCOPY --from=b /a /b\n")
    assert dockerfile_inputs(tmp_path / "x.Dockerfile") == [tmp_path / "smoke.py"]


def test_revision_adds_a_ref(shipped_matrix):
    text = shipped_matrix.read_text().replace('vllm = "0.15.0"', 'vllm = "0.15.0"\nrevision = 2', 1)
    shipped_matrix.write_text(text)
    spec = _plan(shipped_matrix, ["0.15.0-t4"]).get("0.15.0-t4")
    assert spec.refs == ("scitrera/dgx-spark-vllm:0.15.0-t4", "scitrera/dgx-spark-vllm:0.15.0-t4-r2")
    assert spec.labels["dev.scitrera.revision"] == "2"


def test_wheel_mode_tag_has_no_compile_knobs():
    plan = _plan(SHIPPED, ["0.33.0-t5"])
    base, runtime, image = plan.images
    assert "BUILD_IMAGE" not in image.build_args  # nothing to compile: no stage on the dev base
    assert base.mode == image.mode == "wheels"
    assert "MAX_JOBS" not in base.build_args and "TORCH_REPO" not in base.build_args
    assert "VLLM_REPO" not in image.build_args and image.build_args["VLLM_VERSION"] == "0.33.0"
    assert image.dockerfile.endswith("vllm-wheels.Dockerfile")


def test_runtime_images_are_built_from_the_cuda_flavor_their_base_mode_needs():
    plan = _plan(SHIPPED, ["0.33.0-t5", "0.15.0-t5"])
    wheels, source = plan.get("2.14.0-cu130-runtime"), plan.get("2.10.0-cu131-runtime")
    # torch's wheels carry their CUDA libraries: NVIDIA's base flavor; a compiled torch links the toolkit's
    assert wheels.build_args["CUDA_IMAGE"] == "nvidia/cuda:13.0.3-base-ubuntu24.04" == wheels.from_ref
    assert source.build_args["CUDA_IMAGE"] == "nvidia/cuda:13.1.0-runtime-ubuntu24.04"
    assert wheels.dockerfile == "dockerfiles/pytorch-runtime.Dockerfile" and wheels.mode == "wheels"
    # it installs from no lock, but its environment is its dev base's lock
    assert wheels.lock is None and wheels.env_lock == plan.get("2.14.0-cu130").lock
    assert wheels.labels["org.opencontainers.image.base.name"] == wheels.from_ref


def test_ship_on_dev_builds_the_image_on_the_dev_base_and_plans_no_runtime_image(shipped_matrix):
    text = shipped_matrix.read_text().replace('vllm = "0.33.0"', 'vllm = "0.33.0"\nship_on = "dev"', 1)
    shipped_matrix.write_text(text)
    plan = _plan(shipped_matrix, ["0.33.0-t5"])
    assert [(s.kind, s.name) for s in plan.images] == [("base", "2.14.0-cu130"), ("vllm", "0.33.0-t5")]
    base, image = plan.images
    assert image.build_args["BASE_IMAGE"] == base.ref and image.labels["dev.scitrera.flavor"] == "dev"
    # the runtime image can still be asked for by name
    names = [s.name for s in _plan(shipped_matrix, ["2.14.0-cu130-runtime"]).images]
    assert names == ["2.14.0-cu130", "2.14.0-cu130-runtime"]


def test_a_runtime_image_tag_may_not_collide_with_a_base(shipped_matrix):
    text = shipped_matrix.read_text() + '\n[base."2.14.0-cu130-runtime"]\ncuda = "13.0.3"\nnccl = "2.30.7"\n' \
        'torch = "2.14.0"\ntorchvision = "0.29.0"\ntorchaudio = "2.11.0"\nmode = "wheels"\n'
    shipped_matrix.write_text(text)
    with pytest.raises(InputError, match=r"runtime image's tag '2.14.0-cu130-runtime' is also a base's name"):
        _plan(shipped_matrix, ["0.33.0-t5"])


def test_bake_gives_every_image_the_plan_images_its_args_name_as_targets():
    from factory.core.exports.bake import bake_file, target_name

    plan = _plan(SHIPPED, ["0.17.0-t5-nixl"])
    bake = bake_file(plan, SHIPPED.parent, created="2026-12-01T00:00:00Z", revision="x")
    base, runtime, image, layer = (plan.get(n) for n in ("2.10.0-v2-cu131", "2.10.0-v2-cu131-runtime",
                                                          "0.17.0-t5", "0.17.0-t5-nixl"))
    targets = bake["target"]
    assert targets[target_name(runtime)]["contexts"] == {base.ref: f"target:{target_name(base)}"}
    # a source-mode vLLM image ships on the runtime image and compiles on the dev base: both in the same solve
    assert targets[target_name(image)]["contexts"] == {runtime.ref: f"target:{target_name(runtime)}",
                                                       base.ref: f"target:{target_name(base)}"}
    assert targets[target_name(layer)]["contexts"] == {image.ref: f"target:{target_name(image)}",
                                                       base.ref: f"target:{target_name(base)}"}
    assert bake["group"]["runtimes"] == {"targets": [target_name(runtime)]}
    assert "contexts" not in targets[target_name(base)]
