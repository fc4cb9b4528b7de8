"""The lock file format (factory.core.lockfile): render/parse round trips, strict parse errors naming `file:line`,
the install text of a layer, the content digest, diff and with_layers. Pure and fast."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.core import lockfile
from factory.core.errors import InputError
from factory.core.lockfile import TITLE, Change, Lock, Pin

SOURCE = "locks/test.txt"


def h(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


HEADER = {
    "image": ("0.17.0-t5 (vllm, source mode)",),
    "input-digest": (h("input"),),
    "platform": ("linux/arm64 (aarch64-manylinux_2_39)",),
    "python": ("3.12",),
    "index": ("https://pypi.org/simple", "https://flashinfer.ai/whl/cu130"),
    "resolved": ("2026-12-01T18:04:41Z by uv 0.13.9",),
    "parent": ("2.10.0-v2-cu131",),
    "built": ("torch==2.10.0", "vllm==0.17.0"),
    "source": ("override cupy-cuda12x; sys_platform == 'never'", "override transformers==5.3.0"),
    "unlocked": ("flashinfer-cubin==0.6.5 (not locked: https://flashinfer.ai/whl/cu130 could not be reached)",),
}

PINS = (
    Pin(name="filelock", version="3.20.0", hashes=(h("filelock-a"), h("filelock-b")), layer="base",
        via=("torch", "(parent)")),
    Pin(name="numpy", version="2.2.6", hashes=(h("numpy"),), layer="base", via=("(parent)",)),
    Pin(name="aiohttp", version="3.13.2", hashes=(h("aiohttp"),), layer="vllm", via=("ray", "vllm")),
    Pin(name="ray", version="2.53.0", hashes=(h("ray-1"), h("ray-2"), h("ray-3")), layer="vllm",
        via=("-r requirements/cuda.txt", "-r requirements.in")),
    Pin(name="tokenizers", version="0.22.1", hashes=(h("tokenizers"),), layer="transformers",
        via=("transformers",)),
    Pin(name="transformers", version="5.3.0", hashes=(h("transformers"),), layer="transformers",
        via=("-r requirements.in",)),
)


def make_lock(pins=PINS, header=None, layers=("base", "vllm", "transformers")) -> Lock:
    return Lock(header=dict(HEADER if header is None else header), pins=tuple(pins), layers=tuple(layers))


MINIMAL_HEADER = "\n".join([TITLE, "# image: x", "# input-digest: sha256:00", "# platform: linux/arm64",
                            "# python: 3.12"])
HASH = "a" * 64


def parse_error(text: str) -> str:
    with pytest.raises(InputError) as info:
        lockfile.parse(text, SOURCE)
    assert info.value.exit_code == 2
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


# -- round trip -----------------------------------------------------------------------------------------------


def test_render_parse_round_trip_keeps_header_layers_hashes_and_via():
    lock = make_lock()
    text = lockfile.render(lock)
    again = lockfile.parse(text, SOURCE)
    assert again == lock
    assert again.header["index"] == ("https://pypi.org/simple", "https://flashinfer.ai/whl/cu130")
    assert again.header["built"] == ("torch==2.10.0", "vllm==0.17.0")
    assert again.layers == ("base", "vllm", "transformers")
    assert again.by_name()["ray"].hashes == (h("ray-1"), h("ray-2"), h("ray-3"))
    assert again.by_name()["aiohttp"].via == ("ray", "vllm")
    assert again.input_digest == h("input")
    assert lockfile.render(again) == text


def test_render_writes_the_title_multi_valued_keys_one_per_line_and_sorted_layers():
    text = lockfile.render(make_lock())
    lines = text.split("\n")
    assert lines[0] == TITLE and text.endswith("\n")
    assert lines.count("# index: https://pypi.org/simple") == 1
    assert lines.count("# index: https://flashinfer.ai/whl/cu130") == 1
    # header keys in HEADER_KEYS order, layers after the header in the lock's order
    assert line_of(text, "# image:") < line_of(text, "# index:") < line_of(text, "# unlocked:")
    assert line_of(text, "# unlocked:") < line_of(text, "# [layer: base]") < line_of(text, "# [layer: vllm]")
    assert line_of(text, "# [layer: vllm]") < line_of(text, "# [layer: transformers]")
    # pins sorted by name inside a layer, each hash line but the last continued, via last
    assert line_of(text, "aiohttp==3.13.2") < line_of(text, "ray==2.53.0")
    ray = line_of(text, "ray==2.53.0")
    assert lines[ray - 1] == "ray==2.53.0 \\"
    assert lines[ray] == f"    --hash={h('ray-1')} \\"
    assert lines[ray + 2] == f"    --hash={h('ray-3')}"
    assert lines[ray + 3] == "    # via -r requirements/cuda.txt, -r requirements.in"


def test_parse_of_a_committed_lock_holds_every_pin_with_hashes():
    from tests.conftest import ROOT

    path = ROOT / "locks" / "2.14.0-cu130.txt"
    lock = lockfile.read(path)
    assert lock.layers == ("tools", "torch")
    assert lock.by_name()["uv"].layer == "tools" and lock.by_name()["uv"].version == "0.9.9"
    assert lock.by_name()["torch"].version == "2.14.0"
    assert all(p.hashes for p in lock.pins)
    assert lockfile.render(lock) == path.read_text(encoding="utf-8")


def test_read_of_a_missing_lock_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no lock"):
        lockfile.read(tmp_path / "nope.txt")


LAYER_NAMES = st.sampled_from(["base", "tools", "torch", "vllm", "flashinfer", "nixl", "transformers"])
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
NAMES = st.builds(lambda a, b, sep, c: a + b + (sep + c if c else ""), st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
                  st.text(ALNUM, max_size=6), st.sampled_from("-_."), st.text(ALNUM, max_size=4))
VERSIONS = st.builds(lambda parts, suffix, local: ".".join(map(str, parts)) + suffix + local,
                     st.lists(st.integers(0, 300), min_size=1, max_size=4), st.sampled_from(["", "rc1", ".post2"]),
                     st.sampled_from(["", "+cu130", "+cpu"]))
HEX = st.binary(min_size=4, max_size=8).map(lambda b: "sha256:" + hashlib.sha256(b).hexdigest())
WORDS = st.text("abcXYZ019()[]=<>.;'- ", min_size=1, max_size=20).map(str.strip).filter(bool)
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@st.composite
def locks(draw) -> Lock:
    layers = draw(st.lists(LAYER_NAMES, min_size=1, max_size=5, unique=True))
    names = draw(st.lists(NAMES, max_size=12, unique_by=lockfile.canonical))
    pins = []
    for name in names:
        pins.append(Pin(name=name, version=draw(VERSIONS),
                        hashes=tuple(draw(st.lists(HEX, min_size=1, max_size=3, unique=True))),
                        layer=draw(st.sampled_from(layers)), via=tuple(draw(st.lists(WORDS, max_size=3)))))
    header = {key: (draw(HEADER_VALUE),) for key in ("image", "input-digest", "platform", "python")}
    for key in lockfile.HEADER_KEYS[4:]:
        values = draw(st.lists(HEADER_VALUE, max_size=3 if key in lockfile.MULTI_KEYS else 1))
        if values:
            header[key] = tuple(values)
    # the order render writes and parse reads: by layer, then by name
    pins.sort(key=lambda p: (layers.index(p.layer), p.key))
    return Lock(header=header, pins=tuple(pins), layers=tuple(layers))


@settings(max_examples=80, deadline=None)
@given(locks())
def test_property_render_parse_round_trip(lock):
    text = lockfile.render(lock)
    again = lockfile.parse(text, SOURCE)
    assert again == lock
    assert lockfile.content_digest(again) == lockfile.content_digest(lock)
    assert lockfile.render(again) == text


# -- parse errors ---------------------------------------------------------------------------------------------


def good_text() -> str:
    return lockfile.render(make_lock())


def test_wrong_title_is_refused_at_line_1():
    text = good_text().replace(TITLE, "# some other requirements file", 1)
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:1: ") and "title" in message
    assert parse_error("").startswith(f"{SOURCE}:1: ")


def test_a_pin_without_hash_names_its_line():
    text = MINIMAL_HEADER + "\n\n# [layer: a]\nfoo==1.0\nbar==2.0 \\\n    --hash=sha256:" + HASH + "\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, 'foo==1.0')}: ")
    assert "foo==1.0 has no --hash" in message


def test_a_pin_without_hash_but_with_a_via_line_names_the_pin_line():
    text = MINIMAL_HEADER + "\n\n# [layer: a]\nfoo==1.0\n    # via bar\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, 'foo==1.0')}: ") and "no --hash" in message


@pytest.mark.parametrize("bad", ["sha256:" + "a" * 63, "sha256:" + "A" * 64, "sha256:" + "g" * 64,
                                 "sha512:" + "a" * 64, "sha256:" + "a" * 65, "md5:" + "a" * 32])
def test_a_bad_hash_names_its_line(bad):
    text = MINIMAL_HEADER + f"\n\n# [layer: a]\nfoo==1.0 \\\n    --hash={bad}\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, '--hash=')}: ")
    assert "expected '    --hash=sha256:<64 hex digits>' for foo" in message


def test_a_hash_listed_twice_for_one_pin_names_the_second():
    text = MINIMAL_HEADER + f"\n\n# [layer: a]\nfoo==1.0 \\\n    --hash=sha256:{HASH} \\\n    --hash=sha256:{HASH}\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{len(text.splitlines())}: ") and "listed twice" in message


@pytest.mark.parametrize("second", ["foo==1.0", "Foo==2.0", "FOO==3.0"])
def test_a_pin_listed_twice_names_both_lines(second):
    text = (MINIMAL_HEADER + f"\n\n# [layer: a]\nfoo==1.0 \\\n    --hash=sha256:{HASH}\n\n# [layer: b]\n"
            f"{second} \\\n    --hash=sha256:{'b' * 64}\n")
    lines = text.split("\n")
    first = lines.index("foo==1.0 \\") + 1
    again = len(lines) - 2
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{again}: ")
    assert f"pinned twice (first on line {first})" in message


def test_names_differing_only_by_normalization_are_one_pin():
    text = (MINIMAL_HEADER + f"\n\n# [layer: a]\nzope.interface==1.0 \\\n    --hash=sha256:{HASH}\n"
            f"Zope_Interface==1.0 \\\n    --hash=sha256:{'b' * 64}\n")
    assert "pinned twice" in parse_error(text)


def test_a_header_key_after_the_first_layer_names_its_line():
    text = good_text().replace("# [layer: vllm]", "# [layer: vllm]\n# parent: other", 1)
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, '# parent: other')}: ")
    assert "header line 'parent' after the first layer" in message


def test_an_unknown_header_key_names_its_line():
    text = good_text().replace("# python: 3.12", "# python: 3.12\n# pyhton: 3.13", 1)
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, '# pyhton:')}: ")
    assert "unknown header key 'pyhton'" in message


def test_a_single_valued_header_key_twice_is_refused():
    text = good_text().replace("# python: 3.12", "# python: 3.12\n# python: 3.13", 1)
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, '# python: 3.13')}: ") and "appears twice" in message


def test_a_missing_required_header_key_is_refused():
    text = good_text().replace("# platform: linux/arm64 (aarch64-manylinux_2_39)\n", "", 1)
    assert "no 'platform' line" in parse_error(text)


def test_a_continuation_followed_by_a_non_hash_line_names_that_line():
    text = MINIMAL_HEADER + f"\n\n# [layer: a]\nfoo==1.0 \\\n    --hash=sha256:{HASH} \\\nbar==2.0 \\\n" \
                            f"    --hash=sha256:{HASH}\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, 'bar==2.0')}: ")
    assert "for foo, got 'bar==2.0 \\\\'" in message


def test_a_pin_continuation_followed_by_a_via_line_is_refused():
    text = MINIMAL_HEADER + "\n\n# [layer: a]\nfoo==1.0 \\\n    # via bar\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, '# via bar')}: ") and "--hash" in message


def test_a_continuation_at_the_end_of_the_file_names_a_line_of_the_file():
    text = MINIMAL_HEADER + f"\n\n# [layer: a]\nfoo==1.0 \\\n    --hash=sha256:{HASH} \\\n"
    message = parse_error(text)
    assert "must be followed by a --hash line" in message
    assert message.startswith(f"{SOURCE}:{len(text.splitlines())}: ")
    text = MINIMAL_HEADER + "\n\n# [layer: a]\nfoo==1.0 \\\n"
    assert parse_error(text).startswith(f"{SOURCE}:{len(text.splitlines())}: foo==1.0: a line ending in")


@pytest.mark.parametrize("stray", ["hello", "# a comment", "-r other.txt", "foo>=1.0", "    # via nothing",
                                   "--index-url https://example.org/simple", "foo @ https://example.org/foo.whl"])
def test_a_stray_line_names_its_line(stray):
    text = good_text().replace("# [layer: transformers]", f"{stray}\n# [layer: transformers]", 1)
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{line_of(text, stray)}: ")


def test_a_pin_before_the_first_layer_and_a_layer_twice_are_refused():
    text = MINIMAL_HEADER + f"\nfoo==1.0 \\\n    --hash=sha256:{HASH}\n"
    assert parse_error(text).startswith(f"{SOURCE}:{line_of(text, 'foo==')}: a pin before the first")
    text = MINIMAL_HEADER + f"\n# [layer: a]\nfoo==1.0 \\\n    --hash=sha256:{HASH}\n# [layer: a]\n"
    message = parse_error(text)
    assert message.startswith(f"{SOURCE}:{len(text.splitlines())}: ") and "layer 'a' appears twice" in message


def test_every_parse_error_tells_how_to_fix_it():
    message = parse_error("garbage\n")
    assert "run it again" in message and "factory lock" in message


# -- install text, digest, diff, with_layers ------------------------------------------------------------------


def test_install_text_is_pins_and_hashes_only_sorted_and_independent_of_header_and_order():
    vllm = make_lock().layer("vllm")
    text = lockfile.install_text(vllm)
    assert text == (f"aiohttp==3.13.2 \\\n    --hash={h('aiohttp')}\n"
                    f"ray==2.53.0 \\\n    --hash={h('ray-1')} \\\n    --hash={h('ray-2')} \\\n"
                    f"    --hash={h('ray-3')}\n")
    other = make_lock(pins=tuple(reversed(PINS)), header={**HEADER, "image": ("0.17.0-t4 (vllm, source mode)",),
                                                          "resolved": ("another day",)})
    assert lockfile.install_text(other.layer("vllm")).encode() == text.encode()
    assert lockfile.install_text(reversed(vllm)) == text
    assert "# via" not in text and "#" not in text.replace("--hash", "")
    assert lockfile.install_text([]) == ""


def test_content_digest_ignores_the_header_and_via_but_not_versions_hashes_or_layers():
    lock = make_lock()
    digest = lockfile.content_digest(lock)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    later = make_lock(header={**HEADER, "resolved": ("2027-01-01T00:00:00Z by uv 1.0",),
                              "input-digest": (h("other"),)})
    assert lockfile.content_digest(later) == digest
    no_via = make_lock(pins=[Pin(name=p.name, version=p.version, hashes=p.hashes, layer=p.layer) for p in PINS])
    assert lockfile.content_digest(no_via) == digest

    def changed(name: str, **what) -> str:
        pins = [Pin(**{**vars(p), **what}) if p.name == name else p for p in PINS]
        return lockfile.content_digest(make_lock(pins=pins))

    assert changed("ray", version="2.53.1") != digest
    assert changed("ray", hashes=(h("ray-1"), h("ray-2"), h("ray-4"))) != digest
    assert changed("numpy", layer="vllm") != digest


def test_diff_reports_added_removed_and_changed_by_canonical_name():
    old = make_lock()
    new_pins = [p for p in PINS if p.name != "tokenizers"]
    new_pins = [Pin(**{**vars(p), "version": "5.3.1"}) if p.name == "transformers" else p for p in new_pins]
    new_pins.append(Pin(name="Safe_Tensors", version="0.7.0", hashes=(h("st"),), layer="transformers"))
    new = make_lock(pins=new_pins, header={**HEADER, "resolved": ("later",)})
    assert lockfile.diff(old, new) == [Change("safe-tensors", None, "0.7.0"), Change("tokenizers", "0.22.1", None),
                                       Change("transformers", "5.3.0", "5.3.1")]
    assert lockfile.diff(old, old) == []
    moved = lockfile.with_layers(old, {"numpy": "vllm"}, old.layers)
    assert lockfile.diff(old, moved) == []  # a layer move is no version change


def test_with_layers_moves_pins_keeps_the_rest_and_drops_empty_layers():
    lock = make_lock()
    moved = lockfile.with_layers(lock, {"aiohttp": "transformers", "ray": "transformers", "numpy": "vllm"},
                                 ("base", "vllm", "transformers"))
    assert moved.layers == ("base", "vllm", "transformers")
    assert [p.name for p in moved.layer("transformers")] == ["aiohttp", "ray", "tokenizers", "transformers"]
    assert [p.name for p in moved.layer("vllm")] == ["numpy"]
    assert moved.header == lock.header
    assert {p.key: (p.version, p.hashes, p.via) for p in moved.pins} == \
        {p.key: (p.version, p.hashes, p.via) for p in lock.pins}
    emptied = lockfile.with_layers(lock, {"aiohttp": "transformers", "ray": "transformers"},
                                   ("base", "vllm", "transformers"))
    assert emptied.layers == ("base", "transformers")
    assert "# [layer: vllm]" not in lockfile.render(emptied)
    assert lockfile.parse(lockfile.render(emptied), SOURCE).installed() == lock.installed()
    reordered = lockfile.with_layers(lock, {}, ("transformers", "vllm", "base"))
    assert reordered.layers == ("transformers", "vllm", "base")


def test_lock_helpers():
    lock = make_lock()
    assert lock.value("parent") == "2.10.0-v2-cu131" and lock.value("nothing", "dflt") == "dflt"
    assert lock.installed()["ray"] == "2.53.0"
    assert Lock(header={}, pins=PINS).layers == ("base", "vllm", "transformers")
    assert lockfile.canonical("Zope.Interface__x") == "zope-interface-x"
    assert PINS[2].requirement() == "aiohttp==3.13.2"
