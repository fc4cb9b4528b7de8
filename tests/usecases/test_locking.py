"""`factory lock`: parsing uv's output (factory.adapters.uv), the layer split, the rules over a resolved set and the
sibling split (factory.core.lockrules), verify's comparison with a lock, and the use case (factory.usecases.locking)
with the real uv resolver against the test index on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from factory.adapters import uv
from factory.core import lockfile
from factory.core.errors import WorkFailed
from factory.core.lockfile import Lock, Pin
from factory.core.lockrules import LockFailed, Resolved, assign_layers, check_rules, split_siblings
from factory.core.lockspec import CUDA12_OFF, Group, LockSpec
from factory.core.matrix import parse as parse_matrix
from factory.usecases import locking
from factory.usecases.verify import compare_lock
from tests.conftest import ROOT, SMALL
from tests.lock_fixtures import h, layered_lock, pin, planned

# -- parse_compiled -------------------------------------------------------------------------------------------

# captured from `uv pip compile --no-header --annotation-style line` (uv 0.13.9) against a small index
LINE_STYLE = """\
app==1.0                  # via -r requirements.in
lib-a==2.0                # via app
lib-b==1.0                # via app
lib-c==1.5                # via lib-a, lib-b, -c c.txt, -r more.txt
lib-d==0.1                # via lib-b
"""

# the same with --generate-hashes (what factory lock runs): `# via` goes below the hashes
LINE_STYLE_HASHES = """\
app==1.0 \\
    --hash=sha256:3bc1223e41e6929acb62f6f2bfd60295205829527640f3467c3473672e2a6b88
    # via -r requirements.in
lib-a==2.0 \\
    --hash=sha256:0b79a95871608b75e676ccb9668a6354873069a78720d0aeb7ad43945ddc3ab7
    # via app
lib-b==1.0 \\
    --hash=sha256:b25fbe0798df50db9851198fedc51a574f2a50c3e2b37fc8c87947d29b947115 \\
    --hash=sha256:6a3073a58ce83e651b3835c17dd8d778b32fd102d02a5eb1e04c14423c9c2ddb
    # via app
lib-c==1.5 \\
    --hash=sha256:9b131bcf50a47a588f1df5bc2dd847ee8e53564354f8395dd5467a52c64d3202
    # via lib-a, lib-b, -c c.txt, -r more.txt
lib-d==0.1 \\
    --hash=sha256:6a3073a58ce83e651b3835c17dd8d778b32fd102d02a5eb1e04c14423c9c2ddb
    # via lib-b
"""

# --annotation-style split --generate-hashes
SPLIT_STYLE_HASHES = """\
app==1.0 \\
    --hash=sha256:3bc1223e41e6929acb62f6f2bfd60295205829527640f3467c3473672e2a6b88
    # via -r requirements.in
lib-c==1.5 \\
    --hash=sha256:9b131bcf50a47a588f1df5bc2dd847ee8e53564354f8395dd5467a52c64d3202
    # via
    #   -c c.txt
    #   -r more.txt
    #   lib-a
    #   lib-b
lib-d==0.1 \\
    --hash=sha256:6a3073a58ce83e651b3835c17dd8d778b32fd102d02a5eb1e04c14423c9c2ddb
    # via lib-b
"""


def test_parse_compiled_line_style_without_hashes():
    pins = uv.parse_compiled(LINE_STYLE)
    assert [(p.name, p.version) for p in pins] == [("app", "1.0"), ("lib-a", "2.0"), ("lib-b", "1.0"),
                                                    ("lib-c", "1.5"), ("lib-d", "0.1")]
    assert pins[3].via == ("lib-a", "lib-b", "-c c.txt", "-r more.txt")
    assert pins[0].via == ("-r requirements.in",)
    assert all(p.hashes == () for p in pins)


def test_parse_compiled_line_style_with_hashes():
    pins = {p.name: p for p in uv.parse_compiled(LINE_STYLE_HASHES)}
    assert list(pins) == ["app", "lib-a", "lib-b", "lib-c", "lib-d"]
    assert pins["lib-b"].hashes == ("sha256:b25fbe0798df50db9851198fedc51a574f2a50c3e2b37fc8c87947d29b947115",
                                    "sha256:6a3073a58ce83e651b3835c17dd8d778b32fd102d02a5eb1e04c14423c9c2ddb")
    assert pins["lib-c"].via == ("lib-a", "lib-b", "-c c.txt", "-r more.txt")
    assert pins["lib-d"] == Resolved("lib-d", "0.1", (
        "sha256:6a3073a58ce83e651b3835c17dd8d778b32fd102d02a5eb1e04c14423c9c2ddb",), ("lib-b",))


def test_parse_compiled_split_style_with_hashes():
    pins = {p.name: p for p in uv.parse_compiled(SPLIT_STYLE_HASHES)}
    assert pins["lib-c"].via == ("-c c.txt", "-r more.txt", "lib-a", "lib-b")
    assert pins["lib-c"].hashes == ("sha256:9b131bcf50a47a588f1df5bc2dd847ee8e53564354f8395dd5467a52c64d3202",)
    assert pins["lib-d"].via == ("lib-b",)  # the split list ended with the next pin
    assert pins["app"].via == ("-r requirements.in",)


def test_parse_compiled_refuses_a_direct_reference_and_a_line_that_is_no_pin():
    with pytest.raises(LockFailed, match="flashinfer-python @ git\\+https://example.org/fi.git@v1 is a direct "
                                         "reference"):
        uv.parse_compiled("numpy==2.0 \\\n    --hash=" + h("n") + "\n"
                       "flashinfer-python @ git+https://example.org/fi.git@v1\n    # via -r requirements.in\n")
    with pytest.raises(WorkFailed, match="not a pin"):
        uv.parse_compiled("numpy>=2.0\n")


def test_parse_compiled_of_nothing_is_nothing():
    assert uv.parse_compiled("") == [] and uv.parse_compiled("\n\n") == []


# -- specs and locks for the pure tests ----------------------------------------------------------------------


def vllm_spec(**changes) -> LockSpec:
    """A wheel-mode vLLM image on a CUDA 13 base, as lockspec builds it."""
    spec = LockSpec(
        image="0.17.0-t5", kind="vllm", mode="wheels", platform="linux/arm64", python="3.12", glibc="2.39",
        cuda="13.0.3", index="https://pypi.org/simple", extra_index="", parent="2.10.0-cu131",
        groups=(Group(layer="vllm", requirements=("triton==3.6.0", "flashinfer-python==0.6.5", "vllm==0.17.0",
                                                  "ray[default]==2.53.0")),
                Group(layer="transformers", requirements=("transformers==5.3.0",)),
                Group(layer="flashinfer", requirements=("flashinfer-cubin==0.6.5",), no_deps=True, optional=True,
                      extra_indexes=("https://flashinfer.ai/whl/cu130",))),
        overrides=(*CUDA12_OFF, "transformers==5.3.0"), last_layer="transformers", siblings=("0.17.0-t4",))
    return replace(spec, **changes)


def R(name: str, version: str, *via: str) -> Resolved:
    return Resolved(name, version, (h(f"{name}-{version}"),), tuple(via))


def parent_lock(**versions: str) -> Lock:
    pins = tuple(pin(n.replace("_", "-"), v, "torch", seed=f"{n}-{v}") for n, v in versions.items())
    return Lock(header={"image": ("2.10.0-cu131 (base, source mode)",)}, pins=pins)


# -- assign_layers --------------------------------------------------------------------------------------------

VLLM_RESOLVED = [
    R("vllm", "0.17.0", "-r requirements.in"),
    R("triton", "3.6.0", "-r requirements.in", "torch"),
    R("flashinfer-python", "0.6.5", "-r requirements.in", "vllm"),
    R("ray", "2.53.0", "-r requirements.in", "vllm"),
    R("aiohttp", "3.13.2", "ray"),
    R("aiosignal", "1.4.0", "aiohttp"),  # two hops below a vllm requirement
    R("transformers", "5.3.0", "-r requirements.in", "vllm"),
    R("tokenizers", "0.22.1", "transformers"),  # only Transformers needs it
    R("safetensors", "0.7.0", "transformers"),
    R("huggingface-hub", "1.1.0", "tokenizers", "transformers", "vllm"),  # vLLM needs it too
    R("tiktoken", "0.12.0", "vllm"),
    R("regex", "2025.11.3", "tiktoken", "transformers"),  # reached from vllm through tiktoken
    R("torch", "2.10.0", "flashinfer-python", "vllm", "-c constraints.txt"),  # the parent's, same version
    R("numpy", "2.2.6", "transformers", "vllm"),  # the parent's, same version
    R("setuptools", "80.9.0", "vllm"),  # the parent holds 81.0.0: moved by this image
    R("mystery", "1.0", "-c constraints.txt"),  # reached by no requirement
    R("flashinfer-cubin", "0.6.5", "-r requirements.in"),  # the no-deps group's
]


def test_assign_layers_follows_via_edges_and_puts_transformers_and_its_own_needs_last():
    parent = parent_lock(torch="2.10.0", numpy="2.2.6", setuptools="81.0.0", filelock="3.20.0")
    layers = assign_layers(vllm_spec(), VLLM_RESOLVED, parent)
    assert layers == {
        "vllm": "vllm", "triton": "vllm", "flashinfer-python": "vllm", "ray": "vllm", "aiohttp": "vllm",
        "aiosignal": "vllm", "huggingface-hub": "vllm", "tiktoken": "vllm", "regex": "vllm", "setuptools": "vllm",
        "transformers": "transformers", "tokenizers": "transformers", "safetensors": "transformers",
        "mystery": "transformers",
        "torch": "base", "numpy": "base",
        "flashinfer-cubin": "flashinfer",
    }
    assert "filelock" not in layers  # only what was resolved; the parent's other pins are added by the caller


def test_assign_layers_without_parent_has_no_base_and_uses_canonical_names():
    resolved = [R("Vllm", "0.17.0", "-r requirements.in"), R("Zope.Interface", "8.0", "vllm"),
                R("transformers", "5.3.0", "-r requirements.in"), R("torch", "2.10.0", "vllm")]
    layers = assign_layers(vllm_spec(parent=None), resolved, None)
    assert {n: layers[n] for n in ("vllm", "zope-interface", "transformers", "torch")} == {
        "vllm": "vllm", "zope-interface": "vllm", "transformers": "transformers", "torch": "vllm"}
    assert "base" not in layers.values()


def test_assign_layers_in_source_mode_takes_what_vllms_requirement_files_ask():
    spec = vllm_spec(mode="source", groups=(
        Group(layer="vllm", requirements=("-r requirements/cuda.txt", "-r requirements/common.txt",
                                          "triton==3.6.0", "ray[default]==2.53.0")),
        Group(layer="build", requirements=("-r requirements/build.txt",)),
        Group(layer="transformers", requirements=("transformers==5.3.0",))))
    resolved = [
        R("cmake", "4.4.5", "-r requirements/build.txt"),  # only the build asks: the discarded stages' layer
        R("protobuf", "6.33.6", "grpcio-tools", "-r requirements/common.txt"),  # both ask: the run-time layer
        R("grpcio-tools", "1.78.0", "-r requirements/build.txt"),
        R("xgrammar", "0.1.25", "-r requirements/common.txt"),
        R("outlines-core", "0.2.11", "xgrammar"),
        R("tokenizers", "0.22.1", "-r requirements/common.txt", "transformers"),  # vLLM asks for it itself
        R("transformers", "5.3.0", "-r requirements/common.txt", "-r requirements.in"),  # stays last anyway
        R("safetensors", "0.7.0", "transformers"),
        R("triton", "3.6.0", "-r requirements.in"),
        R("ray", "2.53.0", "-r requirements.in"),
    ]
    assert assign_layers(spec, resolved, None) == {
        "xgrammar": "vllm", "outlines-core": "vllm", "tokenizers": "vllm", "triton": "vllm", "ray": "vllm",
        "protobuf": "vllm", "cmake": "build", "grpcio-tools": "build",
        "transformers": "transformers", "safetensors": "transformers"}


def test_assign_layers_of_a_base_without_last_layer_falls_back_to_its_last_group():
    spec = vllm_spec(image="b", kind="base", parent=None, last_layer=None, siblings=(), overrides=(), groups=(
        Group(layer="tools", requirements=("uv==0.9.9",), no_deps=True),
        Group(layer="torch", requirements=("torch==2.14.0",))))
    resolved = [R("uv", "0.9.9", "-r requirements.in"), R("torch", "2.14.0", "-r requirements.in"),
                R("filelock", "3.20.0", "torch"), R("stray", "1.0", "-c constraints.txt")]
    assert assign_layers(spec, resolved, None) == {"uv": "tools", "torch": "torch", "filelock": "torch",
                                                   "stray": "torch"}


# -- check_rules ----------------------------------------------------------------------------------------------

RULES = SMALL + textwrap.dedent("""
    [[rule]]
    id = "no-cupy"
    when = { vllm = ">=0.17" }
    forbid_dists = ["cupy-*", "Xformers"]
    reason = "CuPy is not used by these images"
    source = "https://example.org/cupy"

    [[rule]]
    id = "numpy-2"
    when = { vllm = "==0.17.0" }
    require_dists = { numpy = ">=2,<2.4", "nvidia-nccl-cu13" = ">=2.29" }
    reason = "vLLM 0.17 is built against NumPy 2"
    source = "https://example.org/numpy"

    [[rule]]
    id = "old-vllm"
    when = { vllm = "<0.17" }
    forbid_dists = ["numpy"]
    reason = "does not apply to 0.17"
    source = "https://example.org/old"

    [[rule]]
    id = "source-bases"
    when = { base_mode = "source" }
    forbid_dists = ["triton"]
    reason = "a source base ships no Triton"
    source = "https://example.org/triton"
    """)


@pytest.fixture(scope="module")
def rules_matrix():
    return parse_matrix(RULES, Path("matrix.toml"))


CUDA_RESOLVED = [
    R("vllm", "0.17.0", "-r requirements.in"),
    R("flashinfer-python", "0.6.5", "vllm", "-r requirements.in"),
    R("nvidia-cutlass-dsl", "4.3.0", "flashinfer-python", "vllm"),
    R("nvidia-cutlass-dsl-libs-cu12", "4.3.0", "nvidia-cutlass-dsl"),
    R("ray", "2.53.0", "vllm", "-r requirements.in"),
    R("cupy-cuda12x", "13.6.0", "ray"),
    R("cupy-cuda13x", "13.6.0", "ray"),
    R("nvidia-nccl-cu13", "2.29.3", "torch"),
    R("nixl-cu13", "1.5.1", "nixl"),
    R("numpy", "2.2.6", "vllm"),
]


def test_check_rules_flags_cuda_12_builds_in_a_cuda_13_image_naming_who_pulled_them(rules_matrix):
    spec = vllm_spec(image="not-in-matrix")
    problems = check_rules(spec, CUDA_RESOLVED, rules_matrix)
    assert problems == [
        "nvidia-cutlass-dsl-libs-cu12==4.3.0 is built for CUDA 12, the image is CUDA 13.0.3: pulled in by "
        "nvidia-cutlass-dsl-libs-cu12 <- nvidia-cutlass-dsl <- flashinfer-python <- vllm <- -r requirements.in",
        "cupy-cuda12x==13.6.0 is built for CUDA 12, the image is CUDA 13.0.3: pulled in by "
        "cupy-cuda12x <- ray <- vllm <- -r requirements.in",
    ]


def test_check_rules_in_a_cuda_12_image_flags_the_cuda_13_builds(rules_matrix):
    problems = check_rules(vllm_spec(image="not-in-matrix", cuda="12.9.1"), CUDA_RESOLVED, rules_matrix)
    assert [p.split(" is built")[0] for p in problems] == ["cupy-cuda13x==13.6.0", "nvidia-nccl-cu13==2.29.3",
                                                          "nixl-cu13==1.5.1"]


def test_check_rules_applies_the_matrix_forbid_and_require_dists(rules_matrix):
    resolved = [R("vllm", "0.17.0", "-r requirements.in"), R("xformers", "0.0.32", "vllm"),
                R("cupy-cuda13x", "13.6.0", "ray"), R("ray", "2.53.0", "vllm"), R("numpy", "2.4.0", "vllm")]
    problems = check_rules(vllm_spec(image="0.17.0-t5", cuda="13.1.0"), resolved, rules_matrix)
    assert problems == [
        "xformers==0.0.32 is forbidden by rule no-cupy (CuPy is not used by these images): pulled in by "
        "xformers <- vllm <- -r requirements.in",
        "cupy-cuda13x==13.6.0 is forbidden by rule no-cupy (CuPy is not used by these images): pulled in by "
        "cupy-cuda13x <- ray <- vllm <- -r requirements.in",
        "rule numpy-2 requires numpy>=2,<2.4, the lock has numpy==2.4.0 (vLLM 0.17 is built against NumPy 2)",
        "rule numpy-2 requires nvidia-nccl-cu13>=2.29, the lock has no nvidia-nccl-cu13 "
        "(vLLM 0.17 is built against NumPy 2)",
    ]
    good = [R("vllm", "0.17.0", "-r requirements.in"), R("numpy", "2.3.5", "vllm"),
            R("nvidia-nccl-cu13", "2.29.3", "torch")]
    assert check_rules(vllm_spec(image="0.17.0-t5", cuda="13.1.0"), good, rules_matrix) == []


def test_check_rules_on_an_extra_layer_follows_its_tag_and_on_a_base_its_own_facts(rules_matrix):
    extra = vllm_spec(image="0.17.0-t5-nixl", kind="extra", parent="0.17.0-t5", cuda="13.1.0")
    assert any("rule numpy-2 requires numpy" in p for p in check_rules(extra, [R("numpy", "1.26.4", "x")],
                                                                         rules_matrix))
    base = vllm_spec(image="2.10.0-cu131", kind="base", parent=None, cuda="13.1.0")
    problems = check_rules(base, [R("triton", "3.6.0", "torch"), R("numpy", "1.26.4", "torch")], rules_matrix)
    assert problems == ["triton==3.6.0 is forbidden by rule source-bases (a source base ships no Triton): pulled "
                        "in by triton <- torch"]
    assert check_rules(vllm_spec(image="unknown", cuda="13.1.0"), [R("xformers", "1", "x")], rules_matrix) == []


def test_check_rules_chain_stops_on_a_cycle(rules_matrix):
    resolved = [R("cupy-cuda12x", "13.6.0", "a"), R("a", "1", "b"), R("b", "1", "a")]
    (problem,) = check_rules(vllm_spec(image="x"), resolved, rules_matrix)
    assert problem.endswith("pulled in by cupy-cuda12x <- a <- b <- a")


WAIVED = SMALL.replace(
    'allow = [{ rule = "vllm-0.17.0/transformers", reason = "the -t5 variant runs Transformers 5 on purpose" }]',
    'allow = [{ rule = "vllm-0.17.0/transformers", reason = "the -t5 variant runs Transformers 5 on purpose" },\n'
    '         { rule = "no-xformers", reason = "the -t5 variant needs xformers for one model" }]') + textwrap.dedent("""
    [[rule]]
    id = "no-xformers"
    when = { vllm = "==0.17.0" }
    forbid_dists = ["xformers"]
    reason = "xformers is replaced by FlashInfer"
    source = "https://example.org/xformers"
    """)


def test_check_rules_honours_a_tags_waiver():
    matrix = parse_matrix(WAIVED, Path("matrix.toml"))
    resolved = [R("vllm", "0.17.0", "-r requirements.in"), R("xformers", "0.0.32", "vllm")]
    assert check_rules(vllm_spec(image="0.17.0-t4", cuda="13.1.0"), resolved, matrix) != []  # t4: not waived
    assert check_rules(vllm_spec(image="0.17.0-t5", cuda="13.1.0"), resolved, matrix) == []


def test_check_rules_does_not_fail_a_lock_on_a_warning_rule():
    text = SMALL + textwrap.dedent("""
        [[rule]]
        id = "prefer-no-xformers"
        severity = "warning"
        when = { vllm = "==0.17.0" }
        forbid_dists = ["xformers"]
        reason = "xformers is replaced by FlashInfer"
        source = "https://example.org/xformers"
        """)
    matrix = parse_matrix(text, Path("matrix.toml"))
    resolved = [R("vllm", "0.17.0", "-r requirements.in"), R("xformers", "0.0.32", "vllm")]
    assert check_rules(vllm_spec(image="0.17.0-t4", cuda="13.1.0"), resolved, matrix) == []


# -- split_siblings -------------------------------------------------------------------------------------------


def lock_of(image: str, **layers: list[tuple[str, str]]) -> Lock:
    return layered_lock(f"{image} (vllm, wheels mode)", **layers)


T5 = lock_of("0.17.0-t5",
             base=[("numpy", "2.2.6"), ("torch", "2.10.0")],
             vllm=[("vllm", "0.17.0"), ("aiohttp", "3.13.2"), ("huggingface-hub", "1.1.0"), ("tokenizers", "0.22.1"),
                   ("regex", "2025.11.3"), ("setuptools", "80.9.0")],
             flashinfer=[("flashinfer-cubin", "0.6.5")],
             transformers=[("transformers", "5.3.0")])
T4 = lock_of("0.17.0-t4",
             base=[("numpy", "2.2.6"), ("torch", "2.10.0"), ("setuptools", "80.9.0")],
             vllm=[("vllm", "0.17.0"), ("aiohttp", "3.13.2"), ("huggingface-hub", "0.36.0")],
             flashinfer=[("flashinfer-cubin", "0.6.5")],
             transformers=[("transformers", "4.57.6"), ("tokenizers", "0.22.1")])


def test_split_siblings_moves_what_a_sibling_holds_otherwise_to_the_last_layer():
    split = split_siblings(vllm_spec(), T5, [T4])
    layer = {p.key: p.layer for p in split.pins}
    assert layer == {
        "numpy": "base", "torch": "base",
        "vllm": "vllm", "aiohttp": "vllm",  # shared at one version in one layer: kept
        "huggingface-hub": "transformers",  # another version in the sibling
        "tokenizers": "transformers",  # the sibling holds it in its last layer
        "regex": "transformers",  # the sibling does not hold it
        "setuptools": "transformers",  # the sibling has it from its base
        "flashinfer-cubin": "flashinfer",
        "transformers": "transformers",
    }
    assert split.layers == ("base", "vllm", "flashinfer", "transformers")
    assert split.installed() == T5.installed()


def test_split_siblings_makes_the_shared_layers_byte_identical():
    t5 = split_siblings(vllm_spec(), T5, [T4])
    t4 = split_siblings(vllm_spec(image="0.17.0-t4", siblings=("0.17.0-t5",)), T4, [T5])
    for layer in ("vllm", "flashinfer"):
        assert lockfile.install_text(t5.layer(layer)) == lockfile.install_text(t4.layer(layer)) != ""
    assert lockfile.install_text(t5.layer("transformers")) != lockfile.install_text(t4.layer("transformers"))


def test_split_siblings_drops_a_layer_it_empties_and_is_a_no_op_without_siblings():
    lone = lock_of("x", base=[("numpy", "2.2.6")], vllm=[("regex", "2025.11.3")],
                   transformers=[("transformers", "5.3.0")])
    split = split_siblings(vllm_spec(), lone, [T4])
    assert split.layers == ("base", "transformers") and split.by_name()["regex"].layer == "transformers"
    assert split_siblings(vllm_spec(), T5, []) is T5
    assert split_siblings(vllm_spec(last_layer=None), T5, [T4]) is T5


# -- verify.compare_lock --------------------------------------------------------------------------------------


def verify_lock() -> Lock:
    header = {"image": ("2.14.0-cu130 (base, wheels mode)",), "built": ("torch==2.10.0", "vllm==0.17.0"),
              "unlocked": ("flashinfer-jit-cache==0.6.5 (not locked: https://flashinfer.ai/whl/cu130 could not be "
                           "reached when locked)",)}
    pins = (pin("numpy", "2.2.6", "base"), pin("torchaudio", "2.14.0", "torch"), pin("Zope.Interface", "8.0", "torch"),
            pin("triton", "3.6.0+git1", "torch"), pin("filelock", "3.20.0", "torch"))
    return Lock(header=header, pins=pins)


def test_compare_lock_of_a_matching_environment_is_clean():
    installed = {"numpy": "2.2.6", "torchaudio": "2.14.0+cu130",  # a local version suffix is the same release
                 "zope_interface": "8.0", "triton": "3.6.0", "filelock": "3.20.0",
                 "pip": "25.3",  # seeded by python -m venv
                 "torch": "2.10.0a0+git", "vllm": "0.17.0+cu131",  # built in the image
                 "flashinfer-jit-cache": "0.6.5+cu130"}  # the lock says it could not be locked
    assert compare_lock(installed, verify_lock()) == []


def test_compare_lock_reports_missing_extra_and_wrong_versions():
    installed = {"numpy": "2.3.0", "torchaudio": "2.14.0+cu130", "zope-interface": "8.0", "triton": "3.6.0+git2",
                 "requests": "2.32.5"}
    mismatches = compare_lock(installed, verify_lock())
    assert [m.message for m in mismatches] == [
        "lock: numpy is 2.3.0, the lock says 2.2.6",
        "lock: triton is 3.6.0+git2, the lock says 3.6.0+git1",  # two different local versions differ
        "lock: filelock==3.20.0 is locked but not installed",
        "lock: requests==2.32.5 is installed but not in the lock",
    ]
    assert {m.label for m in mismatches} == {"lock 2.14.0-cu130"}
    assert (mismatches[0].expected, mismatches[0].found) == ("2.2.6", "2.3.0")
    assert (mismatches[2].expected, mismatches[2].found) == ("3.20.0", "")
    assert (mismatches[3].expected, mismatches[3].found) == ("", "2.32.5")
    assert all(m.component == "lock" and m.where == "site-packages" for m in mismatches)


def test_compare_lock_with_a_committed_lock():
    lock = lockfile.read(ROOT / "locks" / "2.14.0-cu130.txt")
    installed = {**lock.installed(), "pip": "25.3"}
    installed["torch"] = "2.14.0+cu130"
    assert compare_lock(installed, lock) == []
    del installed["uv"]
    assert [m.message for m in compare_lock(installed, lock)] == ["lock: uv==0.9.9 is locked but not installed"]


# -- uv against the test index on 127.0.0.1 -------------------------------------------------------------------


def _uv() -> str:
    try:
        return uv.uv_binary()
    except WorkFailed as exc:
        pytest.skip(f"no uv binary: {exc}")


PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def wheel(name: str, version: str, requires: tuple[str, ...] = ()) -> dict:
    """A minimal valid py3-none-any wheel of `name` and its PEP 691 file entry (with PEP 658 metadata)."""
    from tests.pypi_server import wheel_zip

    dist = name.replace("-", "_")
    meta = "".join(f"{line}\n" for line in ("Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                                            *(f"Requires-Dist: {r}" for r in requires))).encode()
    info = f"{dist}-{version}.dist-info"
    body = wheel_zip({f"{dist}/__init__.py": b"", f"{info}/METADATA": meta,
                      f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                       b"Tag: py3-none-any\n",
                      f"{info}/RECORD": f"{dist}/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n"
                                        f"{info}/RECORD,,\n".encode()})
    return {"filename": f"{dist}-{version}-py3-none-any.whl", "body": body, "metadata": meta,
            "core-metadata": {"sha256": hashlib.sha256(meta).hexdigest()},
            "hashes": {"sha256": hashlib.sha256(body).hexdigest()}, "upload-time": "2026-01-01T00:00:00Z"}


@pytest.fixture
def uv_env(tmp_path, monkeypatch):
    """uv with its cache in tmp_path and the running interpreter found first (so it never looks for, or
    downloads, another Python)."""
    _uv()
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class Index:
    """The test index serving `projects`: name -> [(version, requires)]."""

    def __init__(self, projects: dict[str, list[tuple[str, tuple[str, ...]]]]):
        from tests.pypi_server import PyPIServer

        self.server = PyPIServer(fixtures=None).start()
        self.sha256 = {}
        for name, releases in projects.items():
            files = [wheel(name, version, requires) for version, requires in releases]
            for f, (version, _) in zip(files, releases, strict=True):
                self.sha256[(name, version)] = "sha256:" + hashlib.sha256(f["body"]).hexdigest()
            self.server.add_project(name, files)

    @property
    def url(self) -> str:
        return self.server.index_url

    def paths(self) -> set[str]:
        return {r.path.split("/")[1] for r in self.server.requests}


SMALL_INDEX = {
    "app": [("1.0", ("lib-a>=1", "lib-b"))],
    "lib-a": [("1.0", ()), ("2.0", ("lib-c",))],
    "lib-b": [("1.0", ("lib-c<2",))],
    "lib-c": [("1.5", ()), ("2.0", ())],
}


@pytest.fixture
def small_index(uv_env):
    index = Index(SMALL_INDEX)
    yield index
    index.server.stop()


def compile_(index: Index, workdir: Path, requirements: list[str], **kw) -> dict[str, Resolved]:
    spec = vllm_spec(image="tiny", python=PYTHON, index=index.url)
    workdir.mkdir(exist_ok=True)
    args = {"constraints": [], "overrides": [], "no_deps": False, "extra_indexes": (),
            "preferred": [], **kw}
    return {r.name: r for r in uv.compile_requirements(spec, workdir, requirements, **args)}


def test_uv_compile_resolves_pins_hashes_and_via_from_the_index(small_index, tmp_path):
    pins = compile_(small_index, tmp_path / "w", ["app"])
    assert {n: r.version for n, r in pins.items()} == {"app": "1.0", "lib-a": "2.0", "lib-b": "1.0", "lib-c": "1.5"}
    for name, r in pins.items():
        assert r.hashes == (small_index.sha256[(name, r.version)],)
    assert pins["app"].via == ("-r requirements.in",)
    assert pins["lib-a"].via == ("app",)
    assert set(pins["lib-c"].via) == {"lib-a", "lib-b"}
    assert small_index.paths() <= {"simple", "files"}  # all from the test index


def test_uv_compile_honours_constraints_overrides_preferences_and_no_deps(small_index, tmp_path):
    pins = compile_(small_index, tmp_path / "c", ["app"], constraints=["lib-a==1.0"])
    assert pins["lib-a"].version == "1.0" and pins["lib-c"].via == ("lib-b",)
    assert "-c constraints.txt" in pins["lib-a"].via
    pins = compile_(small_index, tmp_path / "o", ["app"], overrides=["lib-c==2.0"])
    assert pins["lib-c"].version == "2.0"  # lib-b's lib-c<2 is overridden
    pins = compile_(small_index, tmp_path / "p", ["lib-a"], preferred=["lib-a==1.0"])
    assert pins["lib-a"].version == "1.0" and "lib-c" not in pins  # the preferred (current) version is kept
    pins = compile_(small_index, tmp_path / "n", ["app"], no_deps=True)
    assert list(pins) == ["app"]
    pins = compile_(small_index, tmp_path / "m", ["app"], overrides=["lib-c; sys_platform == 'never'"])
    assert set(pins) == {"app", "lib-a", "lib-b"}  # how CUDA 12 builds and what an image compiles are dropped


def test_uv_compile_conflict_carries_uvs_explanation(small_index, tmp_path):
    with pytest.raises(LockFailed) as info:
        compile_(small_index, tmp_path / "x", ["lib-b", "lib-c>=2"])
    message = str(info.value)
    assert "lib-b" in message and "lib-c" in message and "unsatisfiable" in message
    assert not any(c in message for c in "×╰─▶│")
    with pytest.raises(LockFailed, match="no-such-project"):
        compile_(small_index, tmp_path / "y", ["no-such-project"])


def test_uv_compile_never_downloads_a_python(monkeypatch, tmp_path):
    """Without an interpreter of the image's Python on the host uv would fetch a CPython from github.com."""
    seen = {}

    def fake_run(argv, cwd, env, **kw):
        import subprocess

        seen.update(argv=argv, env=env)
        (Path(cwd) / "preferred.txt").write_text("x==1.0 \\\n    --hash=" + h("x") + "\n")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(uv, "uv_binary", lambda: "uv")
    monkeypatch.setattr(uv.subprocess, "run", fake_run)
    monkeypatch.setenv("UV_INDEX_URL", "https://elsewhere.example/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "https://elsewhere.example/simple")
    pins = uv.compile_requirements(vllm_spec(), tmp_path, ["x"], constraints=[], overrides=[], no_deps=False,
                                   extra_indexes=(), preferred=[])
    assert pins == [Resolved("x", "1.0", (h("x"),), ())]
    argv, env = seen["argv"], seen["env"]
    assert "--no-python-downloads" in argv and "--no-config" in argv
    assert argv[argv.index("--index-url") + 1] == "https://pypi.org/simple"
    assert argv[argv.index("--python-platform") + 1] == "aarch64-manylinux_2_39"
    assert not any(k.startswith(("UV_", "PIP_")) for k in env if k != "UV_CACHE_DIR")  # the user's settings do
    # not change what is resolved


# -- factory lock end to end on a tiny matrix ------------------------------------------------------------------

TINY_INDEX = {
    "uv": [("0.9.9", ())],
    "torch": [("2.14.0", ("filelock", "nvidia-nccl-cu13==2.30.7", "nvidia-nvjitlink>=13"))],
    "torchvision": [("0.29.0", ("torch==2.14.0",))],
    "torchaudio": [("2.11.0", ("torch==2.14.0",))],
    "nvidia-nccl-cu13": [("2.30.7", ())],
    "nvidia-nvjitlink": [("13.0.88", ()), ("13.1.80", ())],
    "cuda-toolkit": [("13.0.3", ("nvidia-nvjitlink>=13.0.88,<14; extra == 'all'",
                                 "nvidia-cuda-runtime==13.0.96; extra == 'all'",
                                 "nvidia-cuda-nvcc==13.0.88; extra == 'all'"))],
    "nvidia-cuda-nvcc": [("13.0.88", ()), ("13.1.115", ())],
    "filelock": [("3.20.0", ())],
    "triton": [("3.8.0", ())],
    "flashinfer-python": [("0.7.2", ("torch", "numpy")), ("0.7.3", ("torch", "nvidia-cublas-cu12"))],
    "nvidia-cublas-cu12": [("12.9.1.4", ())],
    "numpy": [("2.3.5", ())],
    "vllm": [("0.33.0", ("torch==2.14.0", "transformers>=4.56", "tokenizers", "ray[cgraph]>=2.48", "numpy"))],
    "ray": [("2.59.0", ("cupy-cuda12x; extra == 'cgraph'", "aiohttp; extra == 'default'"))],
    "cupy-cuda12x": [("13.6.0", ())],
    "aiohttp": [("3.13.2", ())],
    "transformers": [("4.57.6", ("huggingface-hub>=0.34,<1.0", "tokenizers", "safetensors")),
                     ("5.20.2", ("huggingface-hub>=1.0", "tokenizers", "safetensors"))],
    "huggingface-hub": [("0.36.0", ()), ("1.1.0", ())],
    "tokenizers": [("0.22.1", ("huggingface-hub",))],
    "safetensors": [("0.7.0", ())],
}


def tiny_matrix(root: Path, index_url: str, flashinfer: str = "0.7.2") -> Path:
    (root / "dockerfiles").mkdir(parents=True, exist_ok=True)
    for name in ("pytorch-dev", "vllm", "pytorch-dev-wheels", "vllm-wheels", "pytorch-runtime"):
        # an image needs a lock when its Dockerfile installs from the build context `lock`
        (root / "dockerfiles" / f"{name}.Dockerfile").write_text(
            f"# {name}\nARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\n"
            "RUN --mount=type=bind,from=lock,source=all.txt,target=/tmp/all.txt pip install -r /tmp/all.txt\n")
    (root / "dockerfiles" / "vllm_requirements.py").write_bytes(
        (ROOT / "dockerfiles" / "vllm_requirements.py").read_bytes())
    image = textwrap.dedent(f"""\
        base = "2.14.0-cu130"
        mode = "wheels"
        vllm = "0.33.0"
        triton = "3.8.0"
        flashinfer = "{flashinfer}"
        ray = "2.59.0"
        """)
    (root / "matrix.toml").write_text(textwrap.dedent(f"""\
        schema = 1

        [defaults]
        python = "{PYTHON}"
        index_url = "{index_url}"
        flashinfer_index_url = ""

        [base."2.14.0-cu130"]
        mode = "wheels"
        cuda = "13.0.3"
        nccl = "2.30.7"
        torch = "2.14.0"
        torchvision = "0.29.0"
        torchaudio = "2.11.0"

        """) + f'[image."0.33.0-t4"]\n{image}transformers = "4.57.6"\n\n'
               f'[image."0.33.0-t5"]\n{image}transformers = "5.20.2"\n')
    return root / "matrix.toml"


@pytest.fixture
def tiny_index(uv_env):
    index = Index(TINY_INDEX)
    yield index
    index.server.stop()


def run_lock(path: Path, index: Index, **kw):
    from factory.adapters.index import PackageIndex

    loaded, plan = planned(path)
    result = locking.lock(loaded, plan, index_factory=lambda: PackageIndex(index.url, cache=None), jobs=2, **kw)
    return loaded, plan, result


def test_factory_lock_end_to_end_against_the_test_index(tiny_index, tmp_path):
    path = tiny_matrix(tmp_path, tiny_index.url)
    loaded, plan, result = run_lock(path, tiny_index)
    assert result.failed == {}
    assert sorted(result.written) == ["0.33.0-t4", "0.33.0-t5", "2.14.0-cu130"]
    base = lockfile.read(tmp_path / "locks" / "2.14.0-cu130.txt")
    assert {p.key: p.layer for p in base.pins} == {
        "uv": "tools", "torch": "torch", "torchvision": "torch", "torchaudio": "torch", "nvidia-nccl-cu13": "torch",
        "filelock": "torch", "nvidia-nvjitlink": "torch"}
    assert base.installed()["nvidia-nvjitlink"] == "13.0.88"  # held to the image's CUDA 13.0, not 13.1.80
    assert "CUDA components held to cuda-toolkit==13.0.3 (capped at 13.0.*)" in base.header["source"]
    for locked in base.pins:
        assert locked.hashes == (tiny_index.sha256[(locked.key, locked.version)],)
    t4 = lockfile.read(tmp_path / "locks" / "0.33.0-t4.txt")
    t5 = lockfile.read(tmp_path / "locks" / "0.33.0-t5.txt")
    for lock in (t4, t5):
        assert lock.layers == ("base", "vllm", "transformers")
        assert {p.key for p in lock.layer("base")} == set(base.installed())  # the whole environment
        assert "cupy-cuda12x" not in lock.installed()  # ray's cgraph CuPy for CUDA 12 is dropped
        assert lock.value("parent") == f"2.14.0-cu130 {lockfile.content_digest(base)}"
    # vLLM's own needs (tokenizers, ray[default]'s aiohttp) stay in its layer
    # (and, shipped on a runtime image, CUDA's nvcc wheel for Triton's ptxas, held to the image's CUDA 13.0)
    assert {p.key for p in t5.layer("vllm")} == {"vllm", "triton", "flashinfer-python", "ray", "numpy", "aiohttp",
                                                 "tokenizers", "nvidia-cuda-nvcc"}
    assert t5.installed()["nvidia-cuda-nvcc"] == "13.0.88"
    assert lockfile.install_text(t4.layer("vllm")) == lockfile.install_text(t5.layer("vllm"))  # shared layer
    assert t4.installed()["huggingface-hub"] == "0.36.0" and t5.installed()["huggingface-hub"] == "1.1.0"
    assert t4.by_name()["huggingface-hub"].layer == t5.by_name()["huggingface-hub"].layer == "transformers"
    assert {p.key for p in t5.layer("transformers")} == {"transformers", "safetensors", "huggingface-hub"}
    assert locking.stale(loaded, plan) == {}
    assert tiny_index.paths() <= {"simple", "files"}
    # nothing changed: nothing is resolved again
    tiny_index.server.reset_log()
    _, _, again = run_lock(path, tiny_index)
    assert again.written == [] and sorted(again.current) == ["0.33.0-t4", "0.33.0-t5", "2.14.0-cu130"]
    assert tiny_index.server.requests == []


def test_factory_lock_refuses_a_cuda_12_build_and_writes_nothing_for_that_image(tiny_index, tmp_path):
    path = tiny_matrix(tmp_path, tiny_index.url, flashinfer="0.7.3")
    _, _, result = run_lock(path, tiny_index)
    assert result.written == ["2.14.0-cu130"]
    assert set(result.failed) == {"0.33.0-t4", "0.33.0-t5"}
    message = result.failed["0.33.0-t5"]
    assert message.startswith("0.33.0-t5: nvidia-cublas-cu12==12.9.1.4 is built for CUDA 12, the image is CUDA "
                              "13.0.3: pulled in by nvidia-cublas-cu12 <- flashinfer-python")
    assert not (tmp_path / "locks" / "0.33.0-t5.txt").exists()


def test_factory_lock_of_an_unresolvable_image_names_it_and_uvs_reason(tiny_index, tmp_path):
    path = tiny_matrix(tmp_path, tiny_index.url)
    path.write_text(path.read_text().replace('transformers = "5.20.2"', 'transformers = "5.99.0"'))
    _, _, result = run_lock(path, tiny_index)
    assert "0.33.0-t4" in result.written and "0.33.0-t5" in result.failed
    message = result.failed["0.33.0-t5"]
    assert message.startswith("0.33.0-t5: cannot resolve its environment for linux/arm64")
    assert "transformers==5.99.0" in message and "transformers" in message.split("[the image asks for")[0]
    # each requirement names the matrix field that asked for it
    assert 'transformers==5.99.0 (matrix: image."0.33.0-t5".transformers)' in message
    assert 'vllm==0.33.0 (matrix: image."0.33.0-t5".vllm)' in message


def test_relocking_a_base_relocks_the_images_built_on_it(tiny_index, tmp_path):
    path = tiny_matrix(tmp_path, tiny_index.url)
    run_lock(path, tiny_index)
    tiny_index.server.add_project("filelock", [wheel("filelock", "3.20.0"), wheel("filelock", "3.21.0")])
    loaded, plan, result = run_lock(path, tiny_index, names=["2.14.0-cu130"], upgrade=True)
    # the base moved to filelock 3.21.0, so its images were locked against the new content in the same run
    assert result.written == ["2.14.0-cu130", "0.33.0-t4", "0.33.0-t5"]
    base = lockfile.read(tmp_path / "locks" / "2.14.0-cu130.txt")
    t5 = lockfile.read(tmp_path / "locks" / "0.33.0-t5.txt")
    assert base.installed()["filelock"] == t5.installed()["filelock"] == "3.21.0"
    assert t5.value("parent") == f"2.14.0-cu130 {lockfile.content_digest(base)}"
    assert locking.stale(loaded, plan) == {}
    # a base lock changed behind the images' back (by hand, by a partial checkout) makes them stale
    base_file = tmp_path / "locks" / "2.14.0-cu130.txt"
    base_file.write_text(base_file.read_text().replace("filelock==3.21.0", "filelock==3.20.0"), encoding="utf-8")
    assert set(locking.stale(loaded, plan)) == {"0.33.0-t4", "0.33.0-t5"}


def test_installing_a_layer_refuses_a_file_whose_hash_is_not_the_locks(small_index, tmp_path):
    """What every Dockerfile runs on a layer file (`uv pip install --no-deps --require-hashes -r`), against an
    index that later serves other bytes under the locked name: nothing is installed, uv names the file."""
    pins = compile_(small_index, tmp_path / "w", ["lib-c==1.5"])
    lock = Lock(header={}, pins=(Pin(name="lib-c", version="1.5", hashes=pins["lib-c"].hashes, layer="vllm"),))
    layer = tmp_path / "vllm.txt"
    layer.write_text(lockfile.install_text(lock.pins), encoding="utf-8")
    target = tmp_path / "site"

    def install() -> subprocess.CompletedProcess:
        return subprocess.run([uv.uv_binary(), "pip", "install", "--no-deps", "--require-hashes", "--no-config",
                               "--index-url", small_index.url, "--target", str(target), "--python", sys.executable,
                               "-r", str(layer)], capture_output=True, text=True, check=False)

    assert install().returncode == 0 and (target / "lib_c").is_dir()  # the locked bytes install
    shutil.rmtree(target)
    tampered = wheel("lib-c", "1.5")
    tampered["body"] += b"\0"  # the same name and version, other bytes (the index's own hash follows them)
    tampered["hashes"] = {"sha256": hashlib.sha256(tampered["body"]).hexdigest()}
    small_index.server.add_project("lib-c", [tampered])
    for cache in (tmp_path / "uv-cache",):
        shutil.rmtree(cache, ignore_errors=True)
    failed = install()
    assert failed.returncode != 0 and not (target / "lib_c").exists()
    assert "hash" in failed.stderr.lower() and "lib-c" in failed.stderr.replace("lib_c", "lib-c")
