"""`factory build` on a real engine: the production code path on a fixture release (arm64 under QEMU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from factory.cli import main
from factory.matrix import load
from factory.plan import build_plan
from factory.resolve import resolve
from tests.engine_support import docker_json, fixture_release, require_engine

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def _engine():
    require_engine()


def build(capsys, tmp_path, matrix, *args):
    report = tmp_path / "report.json"
    code = main(["build", *args, "--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"),
                 "--report", str(report)])
    out, err = capsys.readouterr()
    data = json.loads(report.read_text()) if report.exists() else None
    return code, out + err, data


def statuses(data):
    return {i["name"]: i["status"] for i in data["images"]}


def test_build_twice_builds_once_and_stamps_every_label(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t5")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "built", "0.17.0-t5": "built"}
    assert "[1/2] base 2.10.0-cu131: building" in out and "log " in out
    plan = build_plan(resolve(load(matrix)))
    image = plan.get("0.17.0-t5")
    [inspected] = docker_json("image", "inspect", image.ref)
    labels = inspected["Config"]["Labels"]
    for key, value in image.labels.items():
        assert labels[key] == value, key
    assert labels["org.opencontainers.image.base.digest"] == data["images"][0]["digest"]
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert len(labels["org.opencontainers.image.revision"]) in (40, 7) or labels[
        "org.opencontainers.image.revision"] == "unknown"
    assert inspected["Architecture"] == "arm64"
    assert all(i["verified"] is True for i in data["images"])

    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t5")
    assert code == 0 and set(statuses(data).values()) == {"up to date"}, out
    assert "0 built, 2 up to date" in out


def test_pin_change_rebuilds_only_what_it_touches(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    assert build(capsys, tmp_path, matrix, "0.17.*")[0] == 0
    matrix.write_text(matrix.read_text().replace('transformers = "5.3.0"', 'transformers = "5.3.1"'))
    code, out, data = build(capsys, tmp_path, matrix, "0.17.*")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "up to date", "0.17.0-t4": "up to date", "0.17.0-t5": "built"}
    labels = docker_json("image", "inspect", data["images"][2]["refs"][0])[0]["Config"]["Labels"]
    assert labels["dev.scitrera.transformers_version"] == "5.3.1"


def test_push_publishes_to_the_registry(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")
    assert code == 0, out
    assert statuses(data) == {"2.10.0-cu131": "pushed", "0.17.0-t4": "pushed"}
    ref = data["images"][1]["refs"][0]
    raw = subprocess.run(["skopeo", "--override-arch", "arm64", "inspect", "--tls-verify=false",
                          f"docker://{ref}"], capture_output=True, text=True, check=True).stdout
    assert json.loads(raw)["Labels"]["dev.scitrera.vllm_version"] == "0.17.0"
    # pushed and nothing changed: the registry copy counts as up to date, nothing is rebuilt or re-pushed
    subprocess.run(["docker", "image", "rm", ref], capture_output=True, check=True)
    code, out, data = build(capsys, tmp_path, matrix, "0.17.0-t4", "--push")
    assert code == 0 and statuses(data)["0.17.0-t4"] == "up to date", out
    assert data["images"][1]["where"] == "registry"


def test_failing_build_exits_1_shows_the_log_and_pushes_nothing(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    dockerfile = matrix.parent / "dockerfiles" / "vllm.Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "COPY smoke.py", "RUN echo 'the fixture fails here' && exit 3\nCOPY smoke.py"))
    code, out, data = build(capsys, tmp_path, matrix, "0.17.*", "--push")
    assert code == 1
    assert statuses(data) == {"2.10.0-cu131": "built", "0.17.0-t4": "failed", "0.17.0-t5": "failed"}
    assert "the fixture fails here" in out and "full log:" in out
    assert "nothing pushed" in out
    base_ref = data["images"][0]["refs"][0]
    inspect = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{base_ref}"],
                             capture_output=True, text=True)
    assert inspect.returncode != 0, "the base of a failed run must not be published"


def test_dry_run_prints_commands_and_builds_nothing(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    code, out, _ = build(capsys, tmp_path, matrix, "0.17.0-t4", "--dry-run", "--push")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("docker buildx build --progress plain --platform linux/arm64")
    assert "--build-arg BASE_IMAGE=" in lines[1] and "docker push" in out
    ref = build_plan(resolve(load(matrix))).get("0.17.0-t4").ref
    assert subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0


def test_published_tags_are_immutable_unless_the_revision_is_bumped(capsys, tmp_path):
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
    pushed = data["images"][1]["pushed"]
    assert [ref.rsplit(":", 1)[1] for ref in pushed] == ["0.17.0-t4-r1", "0.17.0-t4"], \
        "the immutable revision ref is pushed before the tag moves"


def test_an_image_on_a_verified_base_is_not_up_to_date_until_it_passed_verify_itself(capsys, tmp_path):
    """Labels are inherited: a vLLM image built FROM a stamped base carries the base's stamp, which must not
    count as its own (a real run pushed an unverified image that way)."""
    from factory import docker
    from factory.verify import is_stamped

    matrix = fixture_release(tmp_path)
    args = ["--matrix", str(matrix), "--log-dir", str(tmp_path / "logs"), "--report", str(tmp_path / "r.json")]
    assert main(["build", "2.10.0-cu131", *args]) == 0
    assert main(["build", "0.17.0-t4", "--no-verify", *args]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    base_ref, image_ref = (i["refs"][0] for i in data["images"])
    base, image = docker.local_labels(base_ref), docker.local_labels(image_ref)
    assert is_stamped(base, "dev.scitrera") and not is_stamped(image, "dev.scitrera")
    assert image["dev.scitrera.verified"] == base["dev.scitrera.input_digest"]  # inherited, and told apart
    capsys.readouterr()
    assert main(["build", "0.17.0-t4", *args]) == 0
    out = capsys.readouterr().out
    statuses = {i["name"]: i["status"] for i in json.loads((tmp_path / "r.json").read_text())["images"]}
    assert statuses == {"2.10.0-cu131": "up to date", "0.17.0-t4": "built"}, out
    assert "verify 0.17.0-t4: every label matches" in out
    assert is_stamped(docker.local_labels(image_ref), "dev.scitrera")
    # what verify found is saved beside the build log
    saved = json.loads(Path(json.loads((tmp_path / "r.json").read_text())["images"][1]["verify_report"]).read_text())
    assert saved["ok"] is True and saved["findings"]["components"]["vllm"] == "0.17.0"
    assert saved["measured_labels"]["dev.scitrera.verified"] == image["dev.scitrera.input_digest"]
