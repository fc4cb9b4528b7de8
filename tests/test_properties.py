"""Property: whatever a maintainer does to the matrix, the CLI answers 0, 1 or 2 and never a traceback."""

from __future__ import annotations

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.cli import main
from tests.conftest import SMALL

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
