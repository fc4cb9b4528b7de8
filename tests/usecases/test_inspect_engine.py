"""`factory inspect` reads pushed labels from the registry exactly as skopeo does, without pulling."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from factory.cli.main import main
from tests.engine_support import fixture_release, require_engine

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def _engine():
    require_engine()


def test_inspect_from_the_registry_agrees_with_skopeo(capsys, tmp_path):
    matrix = fixture_release(tmp_path)
    assert main(["build", "0.17.*", "--push", "--matrix", str(matrix), "--log-dir", str(tmp_path / "l"),
                 "--report", str(tmp_path / "r.json")]) == 0, capsys.readouterr()
    images = {i["name"]: i for i in json.loads((tmp_path / "r.json").read_text())["images"]}
    assert list(images) == ["2.10.0-cu131", "2.10.0-cu131-runtime", "0.17.0-t4", "0.17.0-t5"]
    assert {i["status"] for i in images.values()} == {"pushed"}
    ref = images["0.17.0-t5"]["refs"][0]
    raw = subprocess.run(["skopeo", "--override-arch", "arm64", "--override-os", "linux", "inspect",
                          "--tls-verify=false", f"docker://{ref}"], capture_output=True, text=True, check=True)
    skopeo_labels = json.loads(raw.stdout)["Labels"]
    capsys.readouterr()
    assert main(["inspect", ref, "--remote", "--json", "--matrix", str(matrix)]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert ours["source"] == "registry (linux/arm64)"
    assert ours["labels"] == skopeo_labels
    assert ours["components"]["transformers"] == "5.3.0" and ours["components"]["cuda"] == "13.1.0"
    assert ours["labels"]["org.opencontainers.image.base.name"] == images["2.10.0-cu131-runtime"]["refs"][0]

    assert main(["inspect", "0.17.0-t5", "--remote", "--matrix", str(matrix)]) == 0, "a matrix tag works too"
    assert re.search(r"^torchvision +0\.25\.0$", capsys.readouterr().out, re.M)
    runtime_ref = images["2.10.0-cu131-runtime"]["refs"][0]
    assert main(["inspect", runtime_ref, "--remote", "--json", "--matrix", str(matrix)]) == 0, "the runtime image"
    runtime = json.loads(capsys.readouterr().out)
    assert runtime["labels"]["dev.scitrera.flavor"] == "runtime"
    assert runtime["components"]["torch"] == "2.10.0" and "vllm" not in runtime["components"]
    assert main(["diff", "0.17.0-t4", "0.17.0-t5", "--remote", "--json", "--matrix", str(matrix)]) == 1, \
        "they differ: exit 1, like git diff --exit-code"
    doc = json.loads(capsys.readouterr().out)
    diff = doc["differences"]
    assert doc["same"] is False
    assert {d["component"] for d in diff} >= {"transformers"} and "vllm" not in {d["component"] for d in diff}


def test_inspect_of_a_missing_tag_is_one_clear_line(capsys, tmp_path):
    code = main(["inspect", "127.0.0.1:5000/factory-test-none/vllm:0.0.0-t4", "--remote"])
    err = capsys.readouterr().err
    assert code == 1 and "not found" in err and "Traceback" not in err
