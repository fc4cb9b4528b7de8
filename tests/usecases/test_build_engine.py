"""`factory build` on a real engine: the production code path on a fixture release (arm64 under QEMU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from factory.cli.main import main
from factory.core.matrix import load
from factory.core.plan import build_plan
from factory.core.resolve import resolve
from tests.engine_support import docker_json, fixture_release, require_engine

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def build(capsys: pytest.CaptureFixture[str], tmp_path: Path, matrix: Path, *args: str) -> tuple[int, str, Any]:
    report = tmp_path / "report.json"
    code = main(["build", *args, "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"),
                 "--report", str(report)])
    out, err = capsys.readouterr()
    data = json.loads(report.read_text()) if report.exists() else None
    return code, out + err, data


def statuses(data: Any) -> dict[str, str]:
    return {i["name"]: i["status"] for i in data["images"]}


def by_name(data: Any) -> dict[str, Any]:
    return {i["name"]: i for i in data["images"]}


def published(ref: str) -> bool:
    """Whether the registry holds `ref`."""
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True).returncode == 0


def test_build_twice_builds_once_and_stamps_every_label(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t5")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "built", "2.10.0-cu131-runtime": "built", "0.17.0-t5": "built"}
    assert "[1/3] base 2.10.0-cu131: building" in out and "log " in out
    assert "[2/3] runtime 2.10.0-cu131-runtime: building" in out and "[3/3] vllm 0.17.0-t5: building" in out
    plan = build_plan(resolve(load(matrix)))
    runtime, image = plan.get("2.10.0-cu131-runtime"), plan.get("0.17.0-t5")
    [inspected] = docker_json("image", "inspect", image.ref)
    labels = inspected["Config"]["Labels"]
    for key, value in image.labels.items():
        assert labels[key] == value, key
    # the vLLM image is FROM the runtime image; the runtime image is FROM the CUDA image, not its dev base
    assert labels["org.opencontainers.image.base.name"] == runtime.ref
    assert labels["org.opencontainers.image.base.digest"] == by_name(data)[runtime.name]["digest"]
    assert labels["dev.scitrera.flavor"] == "runtime"
    runtime_labels = docker_json("image", "inspect", runtime.ref)[0]["Config"]["Labels"]
    for key, value in runtime.labels.items():
        assert runtime_labels[key] == value, key
    assert runtime_labels["dev.scitrera.flavor"] == "runtime"
    assert runtime_labels["org.opencontainers.image.base.name"] == "factory-fixtures/busybox:arm64"
    assert "org.opencontainers.image.base.digest" not in runtime_labels, "its FROM is the CUDA image"
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert len(labels["org.opencontainers.image.revision"]) in (40, 7) or labels[
        "org.opencontainers.image.revision"] == "unknown"
    assert inspected["Architecture"] == "arm64"
    assert all(i["verified"] is True for i in data["images"])

    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t5")
    assert code == 0 and set(statuses(data).values()) == {"up to date"}, out
    assert list(statuses(data)) == ["2.10.0-cu131", "2.10.0-cu131-runtime", "0.17.0-t5"]
    assert "0 built, 3 up to date" in out


def test_pin_change_rebuilds_only_what_it_touches(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    assert build(capsys, tmp_path, matrix, "0.17.*")[0] == 0
    matrix.write_text(matrix.read_text().replace('transformers = "5.3.0"', 'transformers = "5.3.1"'))
    code, out, data = build(capsys, tmp_path, matrix, "0.17.*")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "up to date", "2.10.0-cu131-runtime": "up to date",
                              "0.17.0-t4": "up to date", "0.17.0-t5": "built"}
    labels = docker_json("image", "inspect", by_name(data)["0.17.0-t5"]["refs"][0])[0]["Config"]["Labels"]
    assert labels["dev.scitrera.transformers_version"] == "5.3.1"
    # a pin of the base touches everything on it: the base, the runtime image that copies it, every image
    matrix.write_text(matrix.read_text().replace('nccl = "2.29.2-1"', 'nccl = "2.29.3-1"'))
    code, out, data = build(capsys, tmp_path, matrix, "0.17.*")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "built", "2.10.0-cu131-runtime": "built", "0.17.0-t4": "built",
                              "0.17.0-t5": "built"}
    for name in statuses(data):
        labels = docker_json("image", "inspect", by_name(data)[name]["refs"][0])[0]["Config"]["Labels"]
        assert labels["dev.scitrera.nccl_version"] == "2.29.3-1", name


def test_push_publishes_to_the_registry(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "pushed", "2.10.0-cu131-runtime": "pushed", "0.17.0-t4": "pushed"}
    refs = {name: image["refs"][0] for name, image in by_name(data).items()}
    pushes = [line.split()[1].removesuffix(":") for line in out.splitlines() if line.startswith("push ")]
    assert pushes == [refs["2.10.0-cu131"], refs["2.10.0-cu131-runtime"], refs["0.17.0-t4"]], out

    def remote_labels(ref: str) -> dict[str, str]:
        raw = subprocess.run(["skopeo", "--override-arch", "arm64", "inspect", "--tls-verify=false",
                              f"docker://{ref}"], capture_output=True, text=True, check=True).stdout
        labels: dict[str, str] = json.loads(raw)["Labels"]
        return labels

    ref = refs["0.17.0-t4"]
    assert remote_labels(ref)["dev.scitrera.vllm_version"] == "0.17.0"
    assert remote_labels(ref)["org.opencontainers.image.base.name"] == refs["2.10.0-cu131-runtime"]
    assert remote_labels(refs["2.10.0-cu131-runtime"])["dev.scitrera.flavor"] == "runtime"
    # pushed and nothing changed: the registry copy counts as up to date, nothing is rebuilt or re-pushed
    subprocess.run(["docker", "image", "rm", ref, refs["2.10.0-cu131-runtime"]], capture_output=True, check=True)
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")
    assert code == 0 and set(statuses(data).values()) == {"up to date"}, out
    assert by_name(data)["0.17.0-t4"]["where"] == "registry"
    assert by_name(data)["2.10.0-cu131-runtime"]["where"] == "registry"
    assert not any(line.startswith("push ") for line in out.splitlines()), out


def test_failing_build_exits_1_shows_the_log_and_pushes_nothing(capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    dockerfile = matrix.parent / "dockerfiles" / "vllm.Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "COPY smoke.py", "RUN echo 'the fixture fails here' && exit 3\nCOPY smoke.py"))
    code, out, data = build(capsys, tmp_path, matrix, "0.17.*", "--push")
    assert code == 1
    assert statuses(data) == {"2.10.0-cu131": "built", "2.10.0-cu131-runtime": "built", "0.17.0-t4": "failed",
                              "0.17.0-t5": "failed"}
    assert "the fixture fails here" in out and "full log:" in out
    assert "nothing pushed" in out
    assert all(i["pushed"] == [] for i in data["images"])
    for name in ("2.10.0-cu131", "2.10.0-cu131-runtime"):
        assert not published(by_name(data)[name]["refs"][0]), f"the {name} of a failed run must not be published"


def test_dry_run_prints_commands_and_builds_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    code, out, _ = build(capsys, tmp_path, matrix, "0.17.0-t4", "--dry-run", "--push")
    assert code == 0
    lines = out.splitlines()
    plan = build_plan(resolve(load(matrix)))
    base, runtime, image = (plan.get(n) for n in ("2.10.0-cu131", "2.10.0-cu131-runtime", "0.17.0-t4"))
    assert all(line.startswith("docker buildx build --progress plain --platform linux/arm64") for line in lines[:3])
    assert "pytorch-dev.Dockerfile" in lines[0]
    assert "pytorch-runtime.Dockerfile" in lines[1] and f"--build-arg DEV_IMAGE={base.ref} " in lines[1]
    assert f"--build-arg BASE_IMAGE={runtime.ref} " in lines[2] and f"--build-arg BUILD_IMAGE={base.ref} " in lines[2]
    assert lines[3:] == [f"docker push {spec.ref}" for spec in (base, runtime, image)]
    for spec in (base, runtime, image):
        assert subprocess.run(["docker", "image", "inspect", spec.ref], capture_output=True).returncode != 0


def test_published_tags_are_immutable_unless_the_revision_is_bumped(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    matrix = fixture_release(tmp_path)
    assert build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")[0] == 0
    dockerfile = matrix.parent / "dockerfiles" / "vllm.Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\nRUN echo changed > /opt/changed\n")
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")
    assert code == 1 and "refusing to overwrite published tags" in out and "Bump the tag's `revision`" in out
    assert data["pushed"] is False
    text = matrix.read_text()
    start = text.index('[image."0.17.0-t4"]')
    matrix.write_text(text[:start] + text[start:].replace('transformers = "4.57.6"',
                                                          'transformers = "4.57.6"\nrevision = 1', 1))
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")
    assert code == 0, out
    assert "replacing revision 0 with revision 1" in out
    pushed = by_name(data)["0.17.0-t4"]["pushed"]
    assert [ref.rsplit(":", 1)[1] for ref in pushed] == ["0.17.0-t4-r1", "0.17.0-t4"], \
        "the immutable revision ref is pushed before the tag moves"
    assert statuses(data) == {"2.10.0-cu131": "up to date", "2.10.0-cu131-runtime": "up to date",
                              "0.17.0-t4": "pushed"}, "the image's revision is its own: its bases are not rebuilt"


def test_an_image_on_a_verified_base_is_not_up_to_date_until_it_passed_verify_itself(capsys: pytest.CaptureFixture[str],
                                                                                     tmp_path: Path) -> None:
    """Labels are inherited: a vLLM image built FROM a stamped base (its runtime image) carries the base's stamp,
    which must not count as its own (a real run pushed an unverified image that way)."""
    from factory.adapters import docker
    from factory.usecases.verify import is_stamped

    matrix = fixture_release(tmp_path)
    args = ["--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"), "--report", str(tmp_path / "r.json")]
    assert main(["build", "2.10.0-cu131-runtime", *args]) == 0
    assert main(["build", "0.17.0-t4", "--no-verify", *args]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert statuses(data) == {"2.10.0-cu131": "up to date", "2.10.0-cu131-runtime": "up to date",
                              "0.17.0-t4": "built"}
    dev_ref, base_ref, image_ref = (i["refs"][0] for i in data["images"])
    def labels_of(ref: str) -> dict[str, str]:
        labels = docker.local_labels(ref)
        assert labels is not None, f"no local image {ref}"
        return labels

    dev, base, image = labels_of(dev_ref), labels_of(base_ref), labels_of(image_ref)
    assert is_stamped(dev, "dev.scitrera") and is_stamped(base, "dev.scitrera")
    assert base["dev.scitrera.verified"] == base["dev.scitrera.input_digest"], "the runtime image's own stamp"
    assert not is_stamped(image, "dev.scitrera")
    assert image["dev.scitrera.verified"] == base["dev.scitrera.input_digest"]  # inherited, and told apart
    capsys.readouterr()
    assert main(["build", "0.17.0-t4", *args]) == 0
    out = capsys.readouterr().err  # progress goes to stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert statuses(data) == {"2.10.0-cu131": "up to date", "2.10.0-cu131-runtime": "up to date",
                              "0.17.0-t4": "built"}, out
    assert "verify 0.17.0-t4: every label matches" in out
    assert is_stamped(labels_of(image_ref), "dev.scitrera")
    # what verify found is saved beside the build log
    saved = json.loads(Path(by_name(data)["0.17.0-t4"]["verify_report"]).read_text())
    assert saved["ok"] is True and saved["findings"]["components"]["vllm"] == "0.17.0"
    assert saved["measured_labels"]["dev.scitrera.verified"] == image["dev.scitrera.input_digest"]


def test_a_vllm_tag_ships_on_its_base_s_runtime_image_which_must_have_a_c_compiler(capsys: pytest.CaptureFixture[str],
                                                                                   tmp_path: Path) -> None:
    """A vLLM tag is planned and built base -> runtime image -> vLLM image FROM the runtime image; the runtime image
    verifies clean as flavor `runtime`, and one without a C compiler (Triton's) fails verify and pushes nothing."""
    from factory.core.toolchain import C_COMPILER_REASON

    matrix = fixture_release(tmp_path)
    plan = build_plan(resolve(load(matrix)), ["0.17.0-t4"])
    assert [(s.kind, s.name) for s in plan.images] == [
        ("base", "2.10.0-cu131"), ("runtime", "2.10.0-cu131-runtime"), ("vllm", "0.17.0-t4")]
    base, runtime, image = plan.images
    assert runtime.depends_on == base.name and runtime.build_args["DEV_IMAGE"] == base.ref
    assert runtime.dockerfile == "dockerfiles/pytorch-runtime.Dockerfile"
    assert runtime.lock is None and runtime.env_lock == base.lock, "its environment is its dev base's"
    assert image.depends_on == runtime.name and image.from_ref == runtime.ref
    assert image.build_args["BASE_IMAGE"] == runtime.ref and image.build_args["BUILD_IMAGE"] == base.ref
    assert (base.labels["dev.scitrera.flavor"], runtime.labels["dev.scitrera.flavor"],
            image.labels["dev.scitrera.flavor"]) == ("dev", "runtime", "runtime")

    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4")
    assert code == 0, out
    assert [(i["kind"], i["name"], i["status"], i["verified"]) for i in data["images"]] == [
        ("base", base.name, "built", True), ("runtime", runtime.name, "built", True),
        ("vllm", image.name, "built", True)]
    # one after the other: the runtime image copies the built dev base, the vLLM image is FROM the runtime image
    steps = [f"[1/3] base {base.name}: built", f"[2/3] runtime {runtime.name}: building",
             f"verify {runtime.name}: every label matches", f"[3/3] vllm {image.name}: building"]
    assert all(step in out for step in steps), out
    assert [out.index(step) for step in steps] == sorted(out.index(step) for step in steps), out
    labels = docker_json("image", "inspect", image.ref)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.base.name"] == runtime.ref
    assert labels["org.opencontainers.image.base.digest"] == data["images"][1]["digest"]

    capsys.readouterr()
    assert main(["verify", runtime.ref, "--json", "--matrix", str(matrix)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["mismatches"] == []
    assert report["kind"] == "runtime", "told from its flavor label"
    assert docker_json("image", "inspect", runtime.ref)[0]["Config"]["Labels"]["dev.scitrera.flavor"] == "runtime"
    findings = report["findings"]
    assert findings["c_compiler"] == "/usr/bin/gcc" and findings["toolchain"] == []
    assert findings["unresolved"] == [] and findings["preloaded"] == []
    assert findings["components"]["torch"] == "2.10.0" and "vllm" not in findings["components"]

    # the same release whose runtime image has no C compiler
    broken = fixture_release(tmp_path / "no-cc")
    dockerfile = broken.parent / "dockerfiles" / "pytorch-runtime.Dockerfile"
    text = dockerfile.read_text()
    gcc = "RUN mkdir -p /usr/bin && printf '#!/bin/sh\\n' > /usr/bin/gcc && chmod 755 /usr/bin/gcc\n"
    assert gcc in text
    dockerfile.write_text(text.replace(gcc, ""))
    code, out, data = build(capsys, tmp_path / "no-cc", broken, "0.17.0-t4", "--push")
    assert code == 1, out
    assert f"verify {runtime.name}: FAILED" in out
    assert "runtime-toolchain: a runtime image needs a C compiler, and it has none" in out
    assert C_COMPILER_REASON in out and "Failed to find C compiler" in out
    assert "nothing pushed" in out
    images = by_name(data)
    assert images[base.name]["verified"] is True and images[runtime.name]["verified"] is False
    assert images[image.name]["verified"] is False, "the vLLM image on it has no C compiler either"
    for name in (runtime.name, image.name):
        saved = json.loads(Path(images[name]["verify_report"]).read_text())
        assert [m["component"] for m in saved["mismatches"]] == ["runtime-toolchain"], name
        assert C_COMPILER_REASON in saved["mismatches"][0]["message"] and saved["findings"]["c_compiler"] is None
    assert all(i["pushed"] == [] for i in data["images"])
    assert not any(published(ref) for i in data["images"] for ref in i["refs"])
