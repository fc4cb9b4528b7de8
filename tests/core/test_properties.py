"""Property: whatever a maintainer does to the matrix, the CLI answers 0, 1 or 2 and never a traceback."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.cli.main import main
from tests.conftest import NIXL, SMALL

KEYS = ["cuda", "nccl", "torch", "triton", "flashinfer", "vllm", "transformers", "base", "mode", "allow",
        "default", "revision", "schema", "when", "require", "id", "platform", "[image.x]", "[[rule]]"]
VALUES = ['"13.1.0"', '"5.0.0"', '"x"', "1", "true", '""', '">=2"', '[]', '{}', '"wheels"', '"==0.17.0"',
          '"2.10.0-cu131"', '[{ rule = "r", reason = "long enough reason" }]', "2026-01-01", '"\\u00e9"']


@st.composite
def mutated(draw):
    lines = SMALL.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "replace", "insert", "garble"]))
        at = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[at]
        elif op == "replace" and "=" in lines[at]:
            key = lines[at].split("=")[0]
            lines[at] = f"{key}= {draw(st.sampled_from(VALUES))}"
        elif op == "insert":
            lines.insert(at, f"{draw(st.sampled_from(KEYS))} = {draw(st.sampled_from(VALUES))}")
        else:
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))] + draw(st.text(max_size=3))
        if not lines:
            lines = ["schema = 1"]
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated(), command=st.sampled_from(["check", "plan", "list"]))
def test_mutated_matrices_never_raise(write_matrix, text, command):
    path = write_matrix("schema = 1\n")
    path.write_bytes(text.encode("utf-8", "replace"))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([command, "--matrix", str(path)])
    assert code in (0, 1, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()


# -- issue 16: every command that needs no engine, on generated bad matrices, Dockerfiles and flags ------------

SECRET = "pr0perty-s3cret"
GOOD = SMALL.replace("\n[[rule]]", NIXL + "\n[[rule]]", 1)
README = "# x\n<!-- BEGIN factory docs: generated from matrix.toml by `factory docs`; do not edit -->\n" \
         "<!-- END factory docs -->\n"
HOSTILE = [
    '"$(touch /tmp/factory-pwned)"', '"a\\nb"', f'"https://user:{SECRET}@example.org/simple"', '"../../x"',
    '"/etc/passwd"', '"/dev/zero"', '"dockerfiles"', '"{foo}"', '"{"', '"{0}"', "true", "8.0", '""', '"-x"',
    '"Scitrera/X"', '"dev.x=y"', '" 1.0"', '"\\u0000"', '"x" ', "[" * 40 + "]" * 40, "-1", "99999999999999999999",
    f'{{ repo = "https://{SECRET}@github.com/a/b.git", ref = "-x" }}', '"nvidia/cuda:{cuda}@sha256:x"',
]
NAMES = ["$(id)", "../../x", "a b", "-x", ".x", "x\\ny", "x" * 129, "", "0.17.0-t5;id", "é"]
FIELDS = {
    "[defaults]": ["vendor", "label_namespace", "index_url", "torch_index_url", "flashinfer_index_url", "source_url",
                   "cuda_image", "platform", "python", "ubuntu", "ray", "repositories.vllm", "repositories.base",
                   "build.max_jobs", "build.nvcc_threads", "build.cuda_arch", "dockerfiles.vllm",
                   "dockerfiles.base"],
    '[base."2.10.0-cu131"]': ["cuda", "nccl", "torch", "revision", "mode", "sources.torch", "cudnn",
                              "cuda_image_digest"],
    '[image."0.17.0-t5"]': ["vllm", "base", "revision", "default", "sources.vllm", "allow", "transformers"],
    "[extra.nixl]": ["dockerfile", "suffix", "on", "cuda_linked", "versions", "revision", "description"],
}
DOCKERFILES = [
    None, "FOLDER", b"FROM x\nCOPY \xff /x\n", 'FROM x\nCOPY "a /x\n', "FROM x\nCOPY /smoke.py /x\n",
    "FROM x\nCOPY smoke.py \\\n  /x/\n", "FROM x\nCOPY <<EOF /x\nCOPY nope /y\nEOF\n",
    'FROM x\nCOPY ["smoke.py", "/x"]\n',
    "FROM x\nADD https://github.com/a/b.git#v1 /src\n", "FROM x\nCOPY ../../../../etc/passwd /x\n", "FROM x\nCOPY\n",
    "FROM x\nCOPY missing /x\n", "SYMLINK",
]
COMMANDS = [
    ["plan"], ["plan", "--format", "github"], ["plan", "--json", "{sel}"], ["check"], ["check", "--json"],
    ["check", "--list-rules"], ["check", "--upstream", "--offline", "--index-url", "{url}"], ["list"], ["schema"],
    ["labels", "--check"], ["labels", "--check", "--dir", "{dir}"], ["labels", "--write", "--dir", "{dir}"],
    ["docs", "--check"], ["bake"], ["bake", "-o", "{out}", "{sel}"], ["build", "--dry-run", "{sel}"],
    ["build", "--dry-run", "--jobs", "{jobs}", "{sel}"], ["release", "--dry-run", "--jobs", "{jobs}", "{sel}"],
    ["diff", "--planned", "{sel}", "0.17.0-t4"], ["upstream", "check", "--offline", "--index-url", "{url}"],
    ["outdated", "--offline", "--index-url", "{url}"], ["propose", "{version}", "--offline", "--json"],
]
FLAGS = {
    "sel": ["--all", "0.17.0-t5", "nope", "*", "$(id)", "0.17.0-t5-nixl", "2.10.0-cu131", "-x"],
    "url": ["", "http://[::1", f"https://u:{SECRET}@x/simple", "ftp://x", "https://pypi.org/simple"],
    "dir": ["/dev/null", "{tmp}/labels", "/nonexistent/x/y", "{tmp}/dockerfiles/smoke.py", "{tmp}"],
    "out": ["{tmp}", "{tmp}/missing/x.json", "{tmp}/bake.json", "/dev/null/x"],
    "jobs": ["0", "-1", "x", "1"],
    "version": ["0.99.0", "x y", "-1", "$(id)", "0.17.0"],
}


@st.composite
def bad_inputs(draw):
    text = GOOD
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["field", "name", "lines"]))
        if op == "field":
            table = draw(st.sampled_from(sorted(FIELDS)))
            line = f"{draw(st.sampled_from(FIELDS[table]))} = {draw(st.sampled_from(HOSTILE))}"
            text = (text.replace(table, f"{table}\n{line}", 1) if table in text
                    else text.replace("schema = 1\n", f"schema = 1\n{table}\n{line}\n", 1))
        elif op == "name":
            header = draw(st.sampled_from(['[base."2.10.0-cu131"]', '[image."0.17.0-t4"]', "[extra.nixl]"]))
            text = text.replace(header, f'{header.split(".")[0]}."{draw(st.sampled_from(NAMES))}"]', 1)
        else:
            lines = text.splitlines()
            at = draw(st.integers(0, len(lines) - 1))
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))] + draw(st.text(max_size=3))
            text = "\n".join(lines) + "\n"
    command = [part for part in draw(st.sampled_from(COMMANDS))]
    for key, values in FLAGS.items():
        choice = draw(st.sampled_from(values))
        command = [part.replace("{" + key + "}", choice) for part in command]
    return text, draw(st.sampled_from(DOCKERFILES)), draw(st.booleans()), command


def _folder(root: Path, dockerfile, readme: bool) -> Path:
    (root / "dockerfiles").mkdir()
    (root / "dockerfiles" / "smoke.py").write_text("print()\n")
    for name in ("pytorch-dev", "vllm", "pytorch-dev-wheels", "vllm-wheels", "nixl", "pytorch-runtime"):
        (root / "dockerfiles" / f"{name}.Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    target = root / "dockerfiles" / "vllm.Dockerfile"
    if dockerfile == "FOLDER":
        target.unlink()
        target.mkdir()
    elif dockerfile == "SYMLINK":
        target.unlink()
        target.symlink_to("/etc/hostname")
    elif isinstance(dockerfile, bytes):
        target.write_bytes(dockerfile)
    elif dockerfile is not None:
        target.write_text(dockerfile)
    if readme:
        (root / "README.md").write_text(README)
    return root / "matrix.toml"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_inputs())
def test_every_command_on_bad_input_gives_one_clear_message(monkeypatch, case):
    """Exit 0, 1 or 2 (0 only where the generated input happens to be harmless to that command, e.g. `schema`);
    exit 2 is one message on stderr; no traceback, and no credential anywhere in the output."""
    text, dockerfile, readme, command = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))  # upstream --offline: an empty cache
        matrix = _folder(root, dockerfile, readme)
        matrix.write_bytes(text.encode("utf-8", "replace"))
        argv = [part.replace("{tmp}", tmp) for part in command]
        argv += ["--matrix", str(matrix)]
        if argv[0] in ("build", "release"):
            argv += ["--log-dir", f"{tmp}/logs", "--report", f"{tmp}/report.json"]
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(argv)
    out, err = out.getvalue(), err.getvalue()
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err and SECRET not in out + err, (argv, err)
    if code == 2:
        assert err.startswith("factory: ") and "\nfactory: " not in err, (argv, err)
    if code == 1:
        assert err.startswith("factory: ") or out, (argv, err)
    assert not Path("/tmp/factory-pwned").exists()
