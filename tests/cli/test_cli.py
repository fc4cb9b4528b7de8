"""The command line as a user meets it: exit codes, messages, JSON, and no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from factory.cli.main import main
from tests.conftest import ROOT, SHIPPED, SMALL


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_passes_on_the_shipped_matrix(capsys):
    code, out, _ = run(capsys, "check", "--matrix", str(SHIPPED))
    assert code == 0
    assert "OK: no unwaived errors" in out and "WAIVED deviations" in out


def test_check_fails_naming_the_rule_for_t4_with_transformers_5(capsys, shipped_matrix):
    text = shipped_matrix.read_text()
    start = text.index('[image."0.15.0-t4"]')
    end = text.index("[image.", start + 5)
    section = text[start:end].replace('transformers = "4.57.6"', 'transformers = "5.0.0"')
    shipped_matrix.write_text(text[:start] + section + text[end:])
    code, out, _ = run(capsys, "check", "--matrix", str(shipped_matrix))
    assert code == 1
    assert '[vllm-0.15.0/transformers] found transformers 5.0.0' in out
    assert 'image "0.15.0-t4": [builtin/tag-name]' in out
    assert "FAILED" in out


def test_check_json_is_stable(capsys, write_matrix):
    code, out, _ = run(capsys, "check", "--json", "--matrix", str(write_matrix(SMALL)))
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    assert set(data["violations"][0]) == {"subject", "tag", "rule", "severity", "component", "found", "required",
                                          "reason", "source", "waived", "waiver_reason"}


def test_list_rules(capsys):
    code, out, _ = run(capsys, "check", "--list-rules", "--matrix", str(SHIPPED))
    assert code == 0 and "builtin/tag-name" in out and "vllm-0.33.0/torch" in out


def test_plan_json_and_text(capsys):
    code, out, _ = run(capsys, "plan", "0.15.0-t5", "--json", "--matrix", str(SHIPPED))
    data = json.loads(out)
    assert code == 0 and [i["name"] for i in data["images"]] == ["2.10.0-cu131", "2.10.0-cu131-runtime", "0.15.0-t5"]
    code, out, _ = run(capsys, "plan", "0.15.*", "--verbose", "--matrix", str(SHIPPED))
    assert code == 0 and "[1] base 2.10.0-cu131" in out and "[6] vllm 0.15.1-t5 on 2.10.0-cu131-runtime" in out
    assert "[2] runtime 2.10.0-cu131-runtime on 2.10.0-cu131" in out and "1 base(s) and 1 runtime image(s)" in out
    assert "lock        locks/2.10.0-cu131.txt  (its dev base's environment, copied)" in out


def test_plan_github_matrix(capsys):
    code, out, _ = run(capsys, "plan", "0.16.*", "--format", "github", "--matrix", str(SHIPPED))
    data = json.loads(out)
    assert [j["name"] for j in data["bases"]["include"]] == ["2.10.0-v2-cu131"]
    assert [(j["name"], j["depends_on"]) for j in data["runtimes"]["include"]] == \
        [("2.10.0-v2-cu131-runtime", "2.10.0-v2-cu131")]
    assert {j["depends_on"] for j in data["images"]["include"]} == {"2.10.0-v2-cu131-runtime"}
    assert data["extras"] == {"include": []}
    code, out, _ = run(capsys, "plan", "0.17.0-t5-nixl", "--format", "github", "--matrix", str(SHIPPED))
    data = json.loads(out)
    assert [(j["name"], j["depends_on"]) for j in data["extras"]["include"]] == [("0.17.0-t5-nixl", "0.17.0-t5")]
    assert [j["name"] for j in data["images"]["include"]] == ["0.17.0-t5"]


def test_list(capsys):
    code, out, _ = run(capsys, "list", "--matrix", str(SHIPPED))
    assert code == 0 and "0.33.0-t5 *" in out and "2.10.0-v2-cu131" in out


def test_schema_is_json_schema(capsys):
    code, out, _ = run(capsys, "schema")
    schema = json.loads(out)
    assert code == 0 and schema["additionalProperties"] is False and "image" in schema["properties"]


@pytest.mark.parametrize("argv, needle", [
    (["plan", "0.15.0-t6"], "did you mean"),
    (["plan", "--nope"], "unrecognized arguments"),
    (["check", "--matrix", "/nonexistent/matrix.toml"], "no such matrix file"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_clear_message(capsys, argv, needle):
    if "--matrix" not in argv:
        argv = [*argv, "--matrix", str(SHIPPED)] if argv[0] in ("plan", "check") else argv
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_light_commands_do_not_import_heavy_libraries():
    probe = (
        "import sys\nfrom factory.cli.main import main\n"
        "for argv in (['plan', '--matrix', sys.argv[1]], ['check', '--matrix', sys.argv[1]],"
        " ['list', '--matrix', sys.argv[1]]):\n"
        "    assert main(argv) == 0\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('python_on_whales', 'httpx'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(SHIPPED)], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY []"


def test_python_dash_m_factory_works():
    done = subprocess.run([sys.executable, "-m", "factory", "list", "--matrix", str(SHIPPED)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "0.15.0-t5" in done.stdout


def test_release_dry_run_with_smoke_shows_the_smoke_run_of_each_vllm_image_before_any_push(capsys):
    code, out, _ = run(capsys, "release", "0.15.0-t5", "--dry-run", "--smoke", "--smoke-gpus", "device=0",
                       "--matrix", str(SHIPPED))
    assert code == 0
    lines = out.splitlines()
    smoke = [i for i, line in enumerate(lines) if line.startswith("docker run ")]
    assert len(smoke) == 1, "one vLLM image, one smoke run; the base has none"
    command = lines[smoke[0]]
    assert "--gpus=device=0" in command and "scitrera/dgx-spark-vllm:0.15.0-t5 /opt/factory/smoke.py" in command
    assert "--arch sm_121" in command and "--expect vllm=0.15.0" in command and "--expect torch=2.10.0" in command
    assert smoke[0] < min(i for i, line in enumerate(lines) if line.startswith("docker push "))


def test_build_ca_is_a_buildkit_secret_never_an_arg_or_label(capsys, tmp_path):
    ca = tmp_path / "proxy-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    code, out, _ = run(capsys, "build", "0.33.0-t5", "--dry-run", "--build-ca", str(ca), "--matrix", str(SHIPPED))
    builds = [line for line in out.splitlines() if line.startswith("docker buildx build")]
    assert code == 0 and len(builds) == 3  # the dev base, its runtime image, the vLLM image
    for line in builds:
        assert f"--secret id=build-ca,src={ca}" in line
        args = [w for w in line.split() if w.startswith(("--build-arg", "--label"))]
        assert not any("proxy-ca" in w or "BEGIN" in w for w in args)
    # the CA is not an input of the image: the plan's digests do not change with it
    plain = run(capsys, "build", "0.33.0-t5", "--dry-run", "--matrix", str(SHIPPED))[1]
    digests = {w for w in out.split() if "input_digest=" in w}
    assert digests and digests == {w for w in plain.split() if "input_digest=" in w}


@pytest.mark.parametrize("content, needle", [(None, "cannot read it"), ("not a cert\n", "not a PEM certificate")])
def test_bad_build_ca_exits_2_naming_the_flag(capsys, tmp_path, content, needle):
    ca = tmp_path / "ca.crt"
    if content is not None:
        ca.write_text(content)
    code, _, err = run(capsys, "build", "0.33.0-t5", "--dry-run", "--build-ca", str(ca), "--matrix", str(SHIPPED))
    assert code == 2 and "--build-ca" in err and needle in err and "Traceback" not in err


def test_with_build_ca_adds_the_secret_to_the_bundle_only_while_the_command_runs(tmp_path):
    script = ROOT / "dockerfiles" / "with-build-ca.sh"
    probe = ["sh", "-c", 'echo "$SSL_CERT_FILE"; cat "$SSL_CERT_FILE" | tail -n 1']
    plain = subprocess.run(["sh", str(script), *probe], capture_output=True, text=True, check=True,
                           env={"PATH": "/usr/bin:/bin", "FACTORY_BUILD_CA_SECRET": str(tmp_path / "absent")})
    assert plain.stdout.splitlines()[0] == ""  # no secret: the command runs unchanged
    secret = tmp_path / "build-ca"
    secret.write_text("-----BEGIN CERTIFICATE-----\nPROXY\n-----END CERTIFICATE-----\n")
    done = subprocess.run(["sh", str(script), *probe], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "FACTORY_BUILD_CA_SECRET": str(secret)})
    bundle, last = done.stdout.splitlines()
    assert last == "-----END CERTIFICATE-----" and bundle.startswith("/tmp")
    assert not Path(bundle).exists(), "the temporary bundle is removed when the command ends"


def test_platform_override_is_part_of_the_input_digest(capsys):
    def digests(*extra):
        out = run(capsys, "build", "0.33.0-t5", "--dry-run", *extra, "--matrix", str(SHIPPED))[1]
        return {w for w in out.split() if "input_digest=" in w}

    arm, amd = digests(), digests("--platform", "linux/amd64")
    assert arm and amd and not arm & amd
    assert digests("--platform", "linux/arm64") == arm


def test_release_dry_run_smoke_runs_the_matrix_platform_with_the_baseline(capsys, tmp_path):
    baseline = tmp_path / "gb10-report.json"
    baseline.write_text('{"ok": true, "checks": []}')
    code, out, _ = run(capsys, "release", "0.15.0-t5", "--dry-run", "--smoke", "--smoke-baseline", str(baseline),
                       "--smoke-no-builtin-baseline", "--matrix", str(SHIPPED))
    command = next(line for line in out.splitlines() if line.startswith("docker run "))
    assert code == 0 and "--platform=linux/arm64" in command
    assert f"source={baseline},target=/opt/factory/smoke-baseline.json,readonly" in command
    assert "--baseline /opt/factory/smoke-baseline.json" in command and "--no-builtin-baseline" in command


def test_build_takes_names_after_double_dash_as_the_example_workflow_passes_them(capsys):
    """examples/github-workflow.yml runs `factory build --push -- "$NAME"`: a name is never read as an option."""
    code, out, _ = run(capsys, "build", "--dry-run", "--matrix", str(SHIPPED), "--", "0.33.0-t5")
    assert code == 0 and "docker buildx build" in out
    code, _, err = run(capsys, "build", "--dry-run", "--matrix", str(SHIPPED), "--", "--all")
    assert code == 2 and "no tag or base matches '--all'" in err


def test_error_messages_never_show_a_credential(capsys, monkeypatch):
    from factory.cli import main as cli
    from factory.core.errors import WorkFailed

    def failing(args):
        raise WorkFailed("push to https://robot:hunter2-token@registry.example/v2/ failed")

    monkeypatch.setitem(cli.COMMANDS, "list", failing)
    code, _, err = run(capsys, "list")
    assert code == 1 and "hunter2" not in err and "https://***@registry.example/v2/" in err
