"""The one defaults cascade: an image's value, else its base's, else [defaults]."""

from __future__ import annotations

import dataclasses

from factory.core import matrix as M
from factory.core.cascade import CASCADED, setting
from factory.core.matrix import load
from factory.core.plan import build_plan
from factory.core.resolve import resolve, tag_facts
from tests.conftest import SMALL

CASCADING = SMALL.replace("schema = 1\n", """schema = 1

[defaults]
python = "3.11"
ubuntu = "22.04"
ray = "2.50.0"
ship_on = "dev"
""").replace('torchaudio = "2.10.0"\n', 'torchaudio = "2.10.0"\npython = "3.13"\n', 1).replace(
    'transformers = "5.3.0"\n', 'transformers = "5.3.0"\nray = "2.54.0"\nship_on = "runtime"\n', 1)


def test_every_cascaded_setting_is_a_default_and_a_field_of_a_base_or_an_image():
    names = {shape: {f.name for f in dataclasses.fields(shape)} for shape in (M.Defaults, M.Base, M.Image)}
    for key in CASCADED:
        assert key in names[M.Defaults] and (key in names[M.Base] or key in names[M.Image]), key


def test_an_image_value_wins_then_its_base_then_the_defaults(write_matrix, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    m = load(write_matrix(CASCADING)).matrix
    t4, t5 = m.image["0.17.0-t4"], m.image["0.17.0-t5"]
    assert setting(m, "python", image=t4) == "3.13"  # the base's
    assert setting(m, "ubuntu", image=t4) == "22.04"  # nobody's but the defaults'
    assert (setting(m, "ray", image=t4), setting(m, "ray", image=t5)) == ("2.50.0", "2.54.0")
    assert (setting(m, "ship_on", image=t4), setting(m, "ship_on", image=t5)) == ("dev", "runtime")
    assert setting(m, "python", base=m.base["2.10.0-cu131"]) == "3.13"
    assert setting(m, "python") == "3.11"


def test_rules_plan_and_locks_see_the_same_cascaded_values(write_matrix, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    resolution = resolve(load(write_matrix(CASCADING)))
    plan = build_plan(resolution)
    facts = tag_facts(resolution.matrix, "0.17.0-t5").components
    assert (facts["python"], facts["ubuntu"], facts["ray"]) == ("3.13", "22.04", "2.54.0")
    assert plan.get("2.10.0-cu131").build_args["PYTHON_VERSION"] == "3.13"
    assert plan.get("0.17.0-t5").build_args["RAY_VERSION"] == "2.54.0"
    assert plan.get("0.17.0-t4").build_args["RAY_VERSION"] == "2.50.0"
    assert plan.get("0.17.0-t4").depends_on == "2.10.0-cu131"  # ship_on = "dev" from [defaults]
    assert plan.get("0.17.0-t5").depends_on == "2.10.0-cu131-runtime"
