"""The conventions every command keeps: help with an example, one `--json` that parses, data on stdout and
progress on stderr, exit codes 0/1/2, and `plan`'s concise tree. No engine, no index."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from factory.cli.main import _parser, main
from tests.conftest import SHIPPED


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(path, parser) of every command and nested command, e.g. (("upstream", "check"), parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subcommands(sub, (*prefix, name))


COMMANDS = [path for path, _ in subcommands(_parser())]


def test_every_command_is_found():
    assert {"plan", "check", "list", "schema", "labels", "docs", "bake", "build", "release", "verify", "smoke",
            "inspect", "diff", "lock", "upstream", ("upstream", "check"), "outdated", "propose"} \
        <= {p[0] if len(p) == 1 else p for p in COMMANDS}


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_an_example_of_the_command(capsys, path):
    code, out, err = run(capsys, *path, "--help")
    assert code == 0 and err == ""
    examples = out[out.index("example"):]
    assert re.search(rf"^  factory {' '.join(path)}\b", examples, re.M), examples


def test_top_level_help_names_the_conventions_and_no_command_is_usage(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "Exit codes: 0 ok, 1 the work failed or rules are violated, 2 bad input" in out
    code, out, err = run(capsys)
    assert code == 2 and out == "" and "usage: factory" in err


@pytest.mark.parametrize("path", [p for p in COMMANDS if p != ("upstream",)], ids=" ".join)
def test_every_command_takes_json_with_one_spelling(path):
    parser = dict(subcommands(_parser()))[path]
    options = {s for action in parser._actions for s in action.option_strings}
    assert "--json" in options
    assert not {"--format"} & options or path == ("plan",), "--format exists only for plan's CI matrix"


@pytest.mark.parametrize("argv", [
    ["plan", "0.17.0-t5"], ["check"], ["check", "--list-rules"], ["list"], ["schema"], ["labels", "--check"],
    ["docs", "--check"], ["lock", "--check"], ["diff", "0.17.0-t4", "0.17.0-t5", "--planned", "--exit-zero"],
    ["build", "0.33.0-t5", "--dry-run"], ["release", "0.33.0-t5", "--dry-run", "--smoke"],
], ids=lambda argv: argv[0] + ("-" + argv[1] if argv[1:] and argv[1].startswith("--") else ""))
def test_json_output_is_exactly_one_json_document_on_stdout(capsys, tmp_path, argv):
    extra = ["--log-dir", tmp_path / "logs", "--report", tmp_path / "r.json"] if argv[0] in ("build", "release") else []
    code, out, _ = run(capsys, *argv, *extra, "--json", "--matrix", SHIPPED)
    assert code == 0
    json.loads(out)


def test_a_dry_run_with_json_puts_the_report_on_stdout_and_the_commands_on_stderr(capsys, tmp_path):
    code, out, err = run(capsys, "release", "0.33.0-t5", "--dry-run", "--json", "--log-dir", tmp_path,
                         "--matrix", SHIPPED)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert [i["name"] for i in report["images"]] == ["2.14.0-cu130", "2.14.0-cu130-runtime", "0.33.0-t5"]
    assert "docker buildx build" in err and "docker push" in err and "registry: tag" in err
    code, out, err = run(capsys, "release", "0.33.0-t5", "--dry-run", "--matrix", SHIPPED)
    assert "docker buildx build" in out and err == "", "without --json the commands are the dry run's result"


@pytest.fixture
def broken(shipped_matrix):
    """The shipped matrix with a rule violation: a -t4 tag with Transformers 5."""
    text = shipped_matrix.read_text()
    start = text.index('[image."0.15.0-t4"]')
    end = text.index("[image.", start + 5)
    section = text[start:end].replace('transformers = "4.57.6"', 'transformers = "5.0.0"')
    shipped_matrix.write_text(text[:start] + section + text[end:])
    return shipped_matrix


@pytest.mark.parametrize("command", ["build", "release", "bake"])
def test_rule_violations_exit_1_like_check(capsys, broken, command):
    code, out, err = run(capsys, command, "0.33.0-t5", "--dry-run" if command != "bake" else "--all",
                         "--matrix", broken)
    assert code == 1 and out == ""
    assert err.startswith("factory: ") and "unwaived rule violation(s)" in err and "factory check" in err
    assert run(capsys, "check", "--matrix", broken)[0] == 1


def test_bad_input_is_2_and_usage_is_2(capsys):
    assert run(capsys, "build", "--dry-run", "--matrix", SHIPPED)[0] == 2, "no tags named"
    assert run(capsys, "diff", "0.17.0-t4", "--matrix", SHIPPED)[0] == 2, "one image to compare"
    assert run(capsys, "plan", "--format", "yaml", "--matrix", SHIPPED)[0] == 2


def test_diff_exits_1_when_the_images_differ_unless_exit_zero(capsys):
    code, out, _ = run(capsys, "diff", "0.17.0-t4", "0.17.0-t5", "--planned", "--matrix", SHIPPED)
    assert code == 1 and re.search(r"^transformers +4\.57\.6 +5\.3\.0$", out, re.M)
    code, out, _ = run(capsys, "diff", "0.17.0-t4", "0.17.0-t5", "--planned", "--exit-zero", "--json",
                       "--matrix", SHIPPED)
    assert code == 0 and json.loads(out)["same"] is False
    code, out, _ = run(capsys, "diff", "0.17.0-t5", "0.17.0-t5", "--planned", "--json", "--matrix", SHIPPED)
    doc = json.loads(out)
    assert code == 0 and doc["same"] is True and doc["differences"] == [] and doc["packages"] == []


def test_plan_is_a_tree_one_line_per_image_with_mode_and_key_versions(capsys):
    code, out, _ = run(capsys, "plan", "0.17.0-t5-nixl", "0.33.0-t5", "--matrix", SHIPPED)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("Build plan: 2 base(s) and 2 runtime image(s)")
    assert "base 2.10.0-v2-cu131  [source]  cuda 13.1.1  nccl 2.29.3-1  torch 2.10.0" in lines
    assert "└─ runtime 2.10.0-v2-cu131-runtime  [source]" in lines
    assert ("   └─ vllm 0.17.0-t5  [source]  triton 3.6.0  flashinfer 0.6.5  vllm 0.17.0  transformers 5.3.0"
            in lines)
    assert "      └─ extra 0.17.0-t5-nixl  [wheels]  ucx 1.23.0  nixl 1.5.1" in lines
    assert any(line.startswith("   └─ vllm 0.33.0-t5 *  [wheels]") for line in lines), "the default tag"
    assert "    build args" not in out and "TORCH_VERSION" not in out


def test_plan_verbose_has_every_arg_and_label(capsys):
    code, out, _ = run(capsys, "plan", "0.33.0-t5", "--verbose", "--matrix", SHIPPED)
    assert code == 0 and "[3] vllm 0.33.0-t5 on 2.14.0-cu130-runtime  (wheels)" in out
    assert "      VLLM_VERSION=0.33.0" in out and "      dev.scitrera.vllm_version=0.33.0" in out
    assert "    input       sha256:" in out


def test_plan_format_json_stays_an_alias_of_json(capsys):
    one = run(capsys, "plan", "0.33.0-t5", "--json", "--matrix", SHIPPED)[1]
    other = run(capsys, "plan", "0.33.0-t5", "--format", "json", "--matrix", SHIPPED)[1]
    assert json.loads(one) == json.loads(other)


def test_labels_and_docs_json(capsys, shipped_matrix):
    from factory.core.exports.golden import README_BEGIN, README_END

    (shipped_matrix.parent / "README.md").write_text(f"{README_BEGIN}\n{README_END}\n")
    code, out, _ = run(capsys, "docs", "--check", "--json", "--matrix", shipped_matrix)
    assert code == 1 and json.loads(out) == {"readme": str(shipped_matrix.parent / "README.md"), "stale": True,
                                             "rewritten": False}
    code, out, _ = run(capsys, "docs", "--json", "--matrix", shipped_matrix)
    assert code == 0 and json.loads(out)["rewritten"] is True
    assert run(capsys, "docs", "--check", "--matrix", shipped_matrix)[0] == 0
    code, out, _ = run(capsys, "labels", "--check", "--json", "--matrix", shipped_matrix)
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["problems"], "no labels/ folder beside the copy yet"


def test_every_command_is_registered_by_the_family_main_names():
    from factory.cli import main as cli

    everything = cli._parser()
    names = set(everything._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert names == set(cli.FAMILIES)
    for command in cli.FAMILIES:
        one = cli._parser(command)
        assert command in one._subparsers._group_actions[0].choices  # type: ignore[union-attr]
