from __future__ import annotations

import re

import pytest

from factory.core.matrix import load
from factory.core.resolve import resolve, tag_sort_key
from tests.conftest import SHIPPED, SMALL


def _resolve_text(write_matrix, text):
    return resolve(load(write_matrix(text)))


def test_shipped_matrix_is_clean_and_every_deviation_is_visible():
    r = resolve(load(SHIPPED))
    assert r.ok, [v.as_dict() for v in r.blocking]
    assert not r.warnings
    waived = {(v.tag, v.rule) for v in r.waived}
    assert ("0.15.0-t5", "vllm-0.15.0/torch") in waived
    assert ("0.15.0-t5", "vllm-0.15.0/transformers") in waived
    assert ("0.15.0-t4", "vllm-0.15.0/transformers") not in waived
    assert ("0.15.0-t4", "torch-2.10.0/triton") in waived
    assert not any(v.tag == "0.33.0-t5" for v in r.violations), "0.33.0-t5 follows upstream exactly"


def test_each_shipped_waiver_is_needed(tmp_path):
    """Removing a waiver from the shipped matrix makes check fail naming that rule (every 7th, for speed)."""
    text = SHIPPED.read_text()
    waivers = list(re.finditer(r'^  \{ rule = "([^"]+)", reason = "[^"]*" \},\n', text, re.M))
    assert len(waivers) > 30
    for match in waivers[::7]:
        changed = text[: match.start()] + text[match.end():]
        (tmp_path / "matrix.toml").write_text(changed)
        r = resolve(load(tmp_path / "matrix.toml"))
        assert match[1] in {v.rule for v in r.blocking}


def test_t4_tag_with_transformers_5_fails_twice(write_matrix):
    r = _resolve_text(write_matrix, SMALL.replace('transformers = "4.57.6"', 'transformers = "5.0.0"'))
    rules = {v.rule for v in r.blocking if v.tag == "0.17.0-t4"}
    assert rules == {"builtin/tag-name", "vllm-0.17.0/transformers"}
    name = next(v for v in r.blocking if v.rule == "builtin/tag-name")
    assert name.found == "0.17.0-t4" and name.required == "0.17.0-t5"
    declared = next(v for v in r.blocking if v.rule == "vllm-0.17.0/transformers")
    assert declared.found == "transformers 5.0.0" and declared.required == "transformers>=4.56.0,<5"
    assert declared.source.startswith("https://pypi.org/project/vllm/")


def test_prerelease_of_next_major_is_outside_the_range(write_matrix):
    r = _resolve_text(write_matrix, SMALL.replace('transformers = "4.57.6"', 'transformers = "5.0.0rc3"'))
    assert "vllm-0.17.0/transformers" in {v.rule for v in r.blocking}


def test_waiver_turns_violation_into_visible_deviation(write_matrix):
    r = _resolve_text(write_matrix, SMALL)
    assert r.ok
    [v] = r.waived
    assert v.tag == "0.17.0-t5" and v.waiver.reason.startswith("the -t5 variant")


def test_unused_and_unknown_waivers_are_flagged(write_matrix):
    text = SMALL.replace('transformers = "4.57.6"',
                         'transformers = "4.57.6"\nallow = [{ rule = "vllm-0.17.0/transformers", '
                         'reason = "not actually needed here" }, { rule = "vllm-0.17.0/transfomers", '
                         'reason = "a typo in the rule id" }]')
    r = _resolve_text(write_matrix, text)
    assert [v.rule for v in r.warnings] == ["builtin/waiver-unused"]
    [unknown] = r.blocking
    assert unknown.rule == "builtin/waiver-unknown" and "did you mean vllm-0.17.0/transformers" in unknown.required


def test_missing_base_suggests_close_names(write_matrix):
    r = _resolve_text(write_matrix, SMALL.replace('base = "2.10.0-cu131"\nvllm = "0.17.0"\ntriton = "3.6.0"\n'
                                                  'flashinfer = "0.6.4"\ntransformers = "4.57.6"',
                                                  'base = "2.10.0-cu13"\nvllm = "0.17.0"\ntriton = "3.6.0"\n'
                                                  'flashinfer = "0.6.4"\ntransformers = "4.57.6"'))
    [v] = r.blocking
    assert v.rule == "builtin/base-exists" and "did you mean 2.10.0-cu131" in v.required


def test_base_name_must_match_torch_and_cuda(write_matrix):
    r = _resolve_text(write_matrix, SMALL.replace('cuda = "13.1.0"', 'cuda = "13.0.2"'))
    assert {v.rule for v in r.blocking} == {"builtin/base-name"}


def test_sm121_needs_cuda_13(write_matrix):
    text = SMALL.replace('[base."2.10.0-cu131"]\ncuda = "13.1.0"', '[base."2.10.0-cu131"]\ncuda = "12.9.1"')
    text = text.replace("2.10.0-cu131", "2.10.0-cu129")
    r = _resolve_text(write_matrix, text)
    assert {v.rule for v in r.blocking} == {"builtin/sm121-cuda13"}


def test_rule_conditions_on_platform_and_mode(write_matrix):
    rule = ('\n[[rule]]\nid = "arm64/torch-wheel-cuda"\nwhen = { platform = "linux/arm64", base_mode = "wheels" }\n'
            'require = { torch = ">=2.11" }\nreason = "CPU-only below 2.11"\nsource = "https://pypi.org/project/torch/"\n')
    assert _resolve_text(write_matrix, SMALL + rule).ok
    wheels = SMALL.replace('torchaudio = "2.10.0"', 'torchaudio = "2.10.0"\nmode = "wheels"')
    r = _resolve_text(write_matrix, wheels + rule)
    assert {(v.tag, v.rule) for v in r.blocking} == {("0.17.0-t4", "arm64/torch-wheel-cuda"),
                                                    ("0.17.0-t5", "arm64/torch-wheel-cuda")}
    amd64 = wheels.replace("schema = 1\n", 'schema = 1\n[defaults]\nplatform = "linux/amd64"\n')
    assert _resolve_text(write_matrix, amd64 + rule).ok


def test_warning_severity_does_not_block(write_matrix):
    text = SMALL.replace('reason = "vLLM 0.17.0 declares', 'severity = "warning"\nreason = "vLLM 0.17.0 declares')
    text = text.replace('allow = [{ rule = "vllm-0.17.0/transformers", reason = "the -t5 variant runs '
                        'Transformers 5 on purpose" }]\n', "")
    r = _resolve_text(write_matrix, text)
    assert r.ok and [v.rule for v in r.warnings] == ["vllm-0.17.0/transformers"]


def test_two_defaults_are_refused(write_matrix):
    text = SMALL.replace('transformers = "4.57.6"', 'transformers = "4.57.6"\ndefault = true')
    text = text.replace('transformers = "5.3.0"', 'transformers = "5.3.0"\ndefault = true')
    assert "builtin/one-default" in {v.rule for v in _resolve_text(write_matrix, text).blocking}


@pytest.mark.parametrize("tags", [["0.9.0-t4", "0.15.0-t4", "0.15.0-t5", "0.13.0-t5", "weird"]])
def test_tag_order_is_by_version(tags):
    assert sorted(tags, key=tag_sort_key) == ["0.9.0-t4", "0.13.0-t5", "0.15.0-t4", "0.15.0-t5", "weird"]
