"""Extra layers ([extra.<name>] in the matrix): models, resolver rules, and their place in the plan."""

from __future__ import annotations

import re

import pytest

from factory.core.errors import InputError
from factory.core.matrix import extra_images, load
from factory.core.plan import build_plan, select
from factory.core.resolve import resolve
from tests.conftest import NIXL as CONFTEST_NIXL
from tests.conftest import ROOT, SHIPPED, SMALL

NS = "dev.scitrera"
NIXL = CONFTEST_NIXL + 'cuda_linked = ["/opt/ucx/lib", "/opt/nixl/lib"]\n'


@pytest.fixture
def with_nixl(write_matrix, tmp_path):
    def write(extra: str = NIXL):
        path = write_matrix(SMALL.replace("\n[[rule]]", extra + "\n[[rule]]", 1))
        (tmp_path / "dockerfiles" / "nixl.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
        return path

    return write


def _plan(path, names):
    resolution = resolve(load(path))
    return build_plan(resolution, select(resolution.matrix, names))


def test_an_extra_layer_is_an_image_on_each_tag_it_names(with_nixl):
    loaded = load(with_nixl())
    assert extra_images(loaded.matrix) == {"0.17.0-t4-nixl": ("nixl", "0.17.0-t4"),
                                          "0.17.0-t5-nixl": ("nixl", "0.17.0-t5")}
    assert resolve(loaded).ok


def test_building_an_extra_layer_plans_its_base_and_tag_first(with_nixl):
    plan = _plan(with_nixl(), ["0.17.0-t5-nixl"])
    assert [(s.kind, s.name) for s in plan.images] == [
        ("base", "2.10.0-cu131"), ("runtime", "2.10.0-cu131-runtime"), ("vllm", "0.17.0-t5"),
        ("extra", "0.17.0-t5-nixl")]
    image, layer = plan.images[2:]
    assert layer.depends_on == "0.17.0-t5" and layer.from_ref == image.ref
    assert layer.ref == "scitrera/dgx-spark-vllm:0.17.0-t5-nixl"
    assert layer.build_args == {
        "BASE_IMAGE": image.ref, "BUILD_IMAGE": plan.images[0].ref,
        "CUDA_VERSION": "13.1.0", "INDEX_URL": "https://pypi.org/simple", "MAX_JOBS": "8",
        "NIXL_REF": "v1.5.1", "NIXL_REPO": "https://github.com/ai-dynamo/nixl.git", "NIXL_VERSION": "1.5.1",
        "UCX_REF": "v1.19.0", "UCX_REPO": "https://github.com/openucx/ucx.git", "UCX_VERSION": "1.19.0"}
    assert layer.mode == "source" and layer.target is None, "source: the Dockerfile's last stage"


def test_a_wheel_mode_layer_clones_nothing_and_builds_the_wheels_stage(with_nixl):
    wheels = NIXL.replace('versions = {', 'mode = "wheels"\nversions = {')
    source = _plan(with_nixl(), ["0.17.0-t5-nixl"]).get("0.17.0-t5-nixl")
    layer = _plan(with_nixl(wheels), ["0.17.0-t5-nixl"]).get("0.17.0-t5-nixl")
    assert layer.mode == "wheels" and layer.target == "wheels"
    assert layer.build_args == {**source.build_args, "NIXL_REF": "", "NIXL_REPO": "", "UCX_REF": "", "UCX_REPO": ""}
    assert layer.input_digest != source.input_digest, "switching the mode rebuilds the layer"
    assert {k: v for k, v in layer.labels.items() if not k.endswith("input_digest")} == {
        k: v for k, v in source.labels.items() if not k.endswith("input_digest")}


def test_the_nixl_tag_template_is_v_prefixed_and_a_source_table_overrides_it(with_nixl):
    fork = NIXL + 'sources.nixl = { repo = "https://github.com/example/nixl.git", ref = "my-branch" }\n'
    args = _plan(with_nixl(fork), ["0.17.0-t5-nixl"]).get("0.17.0-t5-nixl").build_args
    assert (args["NIXL_REPO"], args["NIXL_REF"]) == ("https://github.com/example/nixl.git", "my-branch")
    assert (args["UCX_REPO"], args["UCX_REF"]) == ("https://github.com/openucx/ucx.git", "v1.19.0")


def test_an_extra_layer_carries_the_tag_labels_and_its_own(with_nixl):
    plan = _plan(with_nixl(), ["0.17.0-t5-nixl"])
    image, layer = plan.images[2:]
    inherited = {k: v for k, v in image.labels.items()
                 if k.endswith("_version") and k != "org.opencontainers.image.version"}
    assert inherited.items() <= layer.labels.items()
    assert layer.labels[f"{NS}.ucx_version"] == "1.19.0" and layer.labels[f"{NS}.nixl_version"] == "1.5.1"
    assert layer.labels[f"{NS}.extra"] == "nixl"
    assert layer.labels[f"{NS}.cuda_linked"] == "/opt/ucx/lib:/opt/nixl/lib"
    assert layer.labels["org.opencontainers.image.version"] == "0.17.0-t5-nixl"
    assert layer.labels["org.opencontainers.image.base.name"] == image.ref
    assert layer.labels[f"{NS}.input_digest"] == layer.input_digest != image.input_digest


def test_the_input_digest_follows_the_extra_versions_and_the_tag_below(with_nixl, tmp_path):
    first = _plan(with_nixl(), ["0.17.0-t5-nixl"]).get("0.17.0-t5-nixl").input_digest
    bumped = _plan(with_nixl(NIXL.replace('nixl = "1.5.1"', 'nixl = "1.5.2"')), ["0.17.0-t5-nixl"])
    assert bumped.get("0.17.0-t5-nixl").input_digest != first
    path = with_nixl()
    path.write_text(path.read_text().replace('transformers = "5.3.0"', 'transformers = "5.3.1"'))
    assert _plan(path, ["0.17.0-t5-nixl"]).get("0.17.0-t5-nixl").input_digest != first
    assert _plan(with_nixl(), ["0.17.0-t4-nixl"]).get("0.17.0-t4-nixl").input_digest != first


def test_everything_and_globs_include_the_extra_layers_last(with_nixl):
    path = with_nixl()
    kinds = [s.kind for s in _plan(path, []).images]
    assert kinds == ["base", "runtime", "vllm", "vllm", "extra", "extra"]
    assert [s.name for s in _plan(path, ["*-nixl"]).extras] == ["0.17.0-t4-nixl", "0.17.0-t5-nixl"]
    assert [s.kind for s in _plan(path, ["0.17.0-t4"]).images] == ["base", "runtime", "vllm"], \
        "a tag alone has no layer"


def test_an_on_pattern_matching_no_tag_is_an_error_with_a_hint(with_nixl):
    resolution = resolve(load(with_nixl(NIXL.replace('on = ["0.17.0-*"]', 'on = ["0.17.0-t6", "0.17.0-t5"]'))))
    [violation] = resolution.blocking
    assert violation.rule == "builtin/extra-on" and violation.subject == 'extra "nixl"'
    assert "'0.17.0-t6'" in violation.found and "did you mean" in violation.required


def test_an_extra_image_name_taken_by_a_tag_is_an_error(with_nixl):
    text = NIXL.replace('suffix = "nixl"', 'suffix = "t5"').replace('on = ["0.17.0-*"]', 'on = ["0.17.0"]')
    path = with_nixl(text)
    path.write_text(path.read_text().replace('[image."0.17.0-t4"]', '[image."0.17.0"]'))
    rules = {v.rule for v in resolve(load(path)).blocking}
    assert "builtin/extra-name" in rules


@pytest.mark.parametrize(("change", "needle"), [
    (('suffix = "nixl"', 'suffix = "Nixl-2"'), 'extra "nixl", field "suffix"'),
    (('nixl = "1.5.1"', 'gdrcopy = "2.5"'), 'extra "nixl", field "versions.gdrcopy"'),
    (('"/opt/ucx/lib", ', '"opt/ucx/lib", '), "is not an absolute image path"),
    (("on = [\"0.17.0-*\"]", "on = []"), 'extra "nixl", field "on"'),
    (('versions = {', 'mode = "binary"\nversions = {'), 'extra "nixl", field "mode"'),
])
def test_bad_extra_tables_are_located_errors(with_nixl, change, needle):
    with pytest.raises(InputError) as caught:
        load(with_nixl(NIXL.replace(*change)))
    assert needle in str(caught.value)
    assert "matrix.toml:" in str(caught.value)


def test_the_shipped_nixl_layer_is_on_cuda_13_tags_and_planned():
    resolution = resolve(load(SHIPPED))
    layers = extra_images(resolution.matrix)
    assert set(layers) == {"0.17.0-t4-nixl", "0.17.0-t5-nixl", "0.33.0-t5-nixl"}
    plan = build_plan(resolution, ["0.33.0-t5-nixl"])
    assert plan.get("0.33.0-t5-nixl").build_args["CUDA_VERSION"] == "13.0.3"
    assert resolution.ok


def test_the_shipped_nixl_layer_installs_the_cuda_13_wheels_and_checks_what_it_links():
    resolution = resolve(load(SHIPPED))
    extra = resolution.matrix.extra["nixl"]
    assert extra.mode == "wheels"
    for spec in build_plan(resolution, list(extra_images(resolution.matrix))).extras:
        assert spec.target == "wheels" and spec.build_args["CUDA_VERSION"].startswith("13.")
        assert spec.labels[f"{NS}.cuda_linked"] == "/opt/venv/lib/python3.12/site-packages/nixl_cu13.libs"
        assert spec.labels[f"{NS}.python_version"] == "3.12", "cuda_linked names the image's site-packages"


def test_cuda_linked_paths_are_filled_in_from_the_base(with_nixl):
    text = NIXL.replace('"/opt/nixl/lib"]', '"/opt/venv/lib/python{python}/site-packages/nixl_cu{cuda_major}.libs"]')
    path = with_nixl(text)
    path.write_text(path.read_text().replace('cuda = "13.1.0"', 'cuda = "13.1.0"\npython = "3.13"'))
    layer = _plan(path, ["0.17.0-t5-nixl"]).get("0.17.0-t5-nixl")
    assert layer.labels[f"{NS}.cuda_linked"] == (
        "/opt/ucx/lib:/opt/venv/lib/python3.13/site-packages/nixl_cu13.libs")


def test_the_nixl_dockerfile_has_both_modes_and_their_safeguards():
    text = (ROOT / "dockerfiles" / "nixl.Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    assert stages == ["build", "wheels", "source"], "wheels is a target; source is the default last stage"
    wheels = text[text.index("AS wheels"):text.index("AS source")]
    assert "--no-deps --require-hashes" in wheels and "-r /tmp/lock/nixl.txt" in wheels, "installed from the lock"
    assert '"^nixl-cu${CUDA_VERSION%%.*}==${NIXL_VERSION} "' in wheels and '"^nixl==${NIXL_VERSION} "' in wheels, \
        "the lock must pin the matrix's NIXL wheel and meta package (the meta package without its dependencies)"
    assert "ucp_get_version_string" in wheels and "${UCX_VERSION}" in wheels
    assert "/opt/nixl/lib/pkgconfig/ucx.pc" in wheels, "where verify reads UCX's version (opt/*/lib/pkgconfig)"
    build = text[:text.index("AS wheels")]
    assert "--with-verbs --with-rdmacm" in build and "libibverbs-dev librdmacm-dev" in build
    assert 'contrib/tomlutil.py --wheel-name "nixl-cu${cuda_major}"' in build
    assert "nixl-meta/nixl-${NIXL_VERSION}-py3-none-any.whl" in build
    source = text[text.index("AS source"):]
    assert "ibverbs-providers libibverbs1 librdmacm1" in source, "the RDMA runtime of the UCX built here"
    assert "ibverbs" not in wheels.replace("libibverbs, mlx5", "").replace("system libibverbs", "").replace(
        "ibverbs-providers' libefa", ""), "no second libibverbs next to the wheel's own (SIGSEGV at exit)"
    for stage in (wheels, source):
        assert 'nixl_agent("probe", nixl_agent_config(backends=["UCX"]))' in stage
    assert "version.json" not in text.replace("no /usr/local/cuda/version.json", "")
    # the build stage (on the dev base) asks nvcc; the wheels stage, on a runtime image without nvcc, the CUDA
    # runtime library's versioned file
    assert build.count('nvcc --version | grep -q "release ${CUDA_VERSION%.*},"') == 1
    assert 'compgen -G "/usr/local/cuda/lib64/libcudart.so.${CUDA_VERSION%.*}.*"' in wheels
    assert "FROM ${BUILD_IMAGE} AS build" in text, "compiled on the dev base: a runtime image has no compiler"
    assert "/opt/wheels" not in text and "--mount=type=bind,from=build,source=/wheels" in source, \
        "the wheels are bind-mounted, never copied into the image"
    for line in re.findall(r"^RUN .*?(?<!\\)$", text, re.MULTILINE | re.DOTALL):
        downloads = re.search(r"git fetch|git clone|uv pip install --index-url|uv pip install \"|meson setup", line)
        if downloads:
            assert "--mount=type=secret,id=build-ca" in line and "with-build-ca" in line, line
    assert "COPY --chmod=755 with-build-ca.sh /usr/local/bin/with-build-ca" in text
    assert "--branch" not in text, "refs are fetched by name: a commit sha works as well as a tag"
    assert text.count('git fetch -q --depth 1 origin "${') == 2
