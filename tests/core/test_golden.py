"""labels/ and the README table are generated from matrix.toml and must stay in sync with it."""

from __future__ import annotations

import json
import shutil

from factory.cli.main import main
from tests.conftest import ROOT, SHIPPED


def test_checked_in_labels_are_up_to_date(capsys):
    assert main(["labels", "--check", "--matrix", str(SHIPPED)]) == 0, capsys.readouterr().out


def test_checked_in_readme_table_is_up_to_date(capsys):
    assert main(["docs", "--check", "--matrix", str(SHIPPED)]) == 0, capsys.readouterr().out


def test_a_matrix_change_makes_labels_stale_until_rewritten(capsys, shipped_matrix):
    shutil.copytree(ROOT / "labels", shipped_matrix.parent / "labels")
    shipped_matrix.write_text(shipped_matrix.read_text().replace('transformers = "5.20.2"', 'transformers = "5.20.1"'))
    assert main(["labels", "--check", "--matrix", str(shipped_matrix)]) == 1
    out = capsys.readouterr().out
    assert "0.33.0-t5.json: out of date" in out and "factory labels --write" in out
    assert main(["labels", "--write", "--matrix", str(shipped_matrix)]) == 0
    assert main(["labels", "--check", "--matrix", str(shipped_matrix)]) == 0
    golden = json.loads((shipped_matrix.parent / "labels" / "0.33.0-t5.json").read_text())
    assert golden["labels"]["dev.scitrera.transformers_version"] == "5.20.1"


def test_removed_tag_leaves_no_stale_golden(capsys, shipped_matrix):
    shutil.copytree(ROOT / "labels", shipped_matrix.parent / "labels")
    text = shipped_matrix.read_text()
    start = text.index('[image."0.33.0-t5"]')
    shipped_matrix.write_text(text[:start] + text[text.index("# ----", start):])
    assert main(["labels", "--check", "--matrix", str(shipped_matrix)]) == 1
    assert "0.33.0-t5.json: no longer in the matrix" in capsys.readouterr().out


def test_golden_label_sets_follow_the_schema():
    schema = json.loads((ROOT / "labels" / "schema.json").read_text())
    for path in (ROOT / "labels").glob("0.*.json"):
        labels = json.loads(path.read_text())["labels"]
        assert set(schema["required"]) <= set(labels), path
        assert all(isinstance(v, str) and v for v in labels.values()), path


def test_readme_table_is_rewritten(capsys, shipped_matrix):
    readme = shipped_matrix.parent / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    shipped_matrix.write_text(shipped_matrix.read_text().replace('ray = "2.59.0"', 'ray = "2.60.0"'))
    assert main(["docs", "--check", "--matrix", str(shipped_matrix)]) == 1
    assert main(["docs", "--matrix", str(shipped_matrix)]) == 0
    assert "| 2.60.0 |" in readme.read_text()
    assert main(["docs", "--check", "--matrix", str(shipped_matrix)]) == 0
