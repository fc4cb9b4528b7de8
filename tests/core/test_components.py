"""The component registry agrees with the matrix models, the label contract and the lists derived from it."""

from dataclasses import fields

from factory.core import components as C
from factory.core import labels as L
from factory.core.matrix import Base, Image


def test_every_base_and_image_component_is_a_matrix_field():
    assert set(C.BASE_COMPONENTS) <= {f.name for f in fields(Base)}
    assert set(C.IMAGE_COMPONENTS) <= {f.name for f in fields(Image)}


def test_labels_cover_every_planned_component_of_each_kind():
    assert L.components_for("base") == tuple(c for c in C.BASE_COMPONENTS if c != "ubuntu")
    assert L.components_for("vllm") == tuple(c for c in C.COMPONENTS if c != "ubuntu")
    assert "ucx_version" in L.component_key("ns", "ucx") and "ucx" not in C.COMPONENTS


def test_derived_lists_follow_the_entries():
    assert C.DIST_COMPONENTS["flashinfer-python"] == "flashinfer" and "nixl" not in C.DIST_COMPONENTS
    assert C.PROJECTS["flashinfer"] == "flashinfer-python"
    assert set(C.SMOKE_IMPORTS) <= set(C.SMOKE_EXPECT) <= set(C.COMPONENTS)
    assert C.MEASURED_COMPONENTS == ("ubuntu",)
    assert C.IMAGE_WHEELS == ("triton", "flashinfer", "vllm", "transformers", "ray")
    assert len(C.COMPONENT) == len(C.REGISTRY), "component names are unique"
