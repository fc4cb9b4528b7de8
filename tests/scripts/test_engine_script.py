"""scripts/engine.sh: it parses, and its read-only subcommands work for anyone, engine or not.

Installing and starting the engine is not exercised here (it needs root, apt and minutes);
these checks only run bash, so they are fast and safe on any machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "engine.sh"
NOBODY = 65534


def run_script(*args: str, state: Path | None = None, as_nobody: bool = False, timeout: float = 60):
    """Run the script with bash (feeding it on stdin when dropping to nobody, so file modes don't matter)."""
    env = dict(os.environ)
    if state is not None:
        env["FACTORY_ENGINE_STATE"] = str(state)
    if as_nobody:
        cmd = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "bash",
            "-s",
            "--",
            *args,
        ]
        with SCRIPT.open("rb") as stdin:
            return subprocess.run(
                cmd, stdin=stdin, capture_output=True, text=True, env=env, cwd="/", timeout=timeout
            )
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


can_drop_root = pytest.mark.skipif(
    not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("setpriv")),
    reason="needs root and setpriv to run the script as an unprivileged user",
)


def test_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_status_exits_zero():
    result = run_script("status")
    assert result.returncode == 0, result.stderr
    for key in ("dockerd:", "registry:", "engine:", "binfmt:"):
        assert key in result.stdout


def test_status_with_a_fresh_state_dir_reports_nothing_started_and_creates_nothing(tmp_path):
    state = tmp_path / "absent"
    result = run_script("status", state=state)
    assert result.returncode == 0, result.stderr
    assert "dockerd:    not started by this script" in result.stdout
    assert not state.exists()


@can_drop_root
def test_status_needs_no_root():
    result = run_script("status", as_nobody=True)
    assert result.returncode == 0, result.stderr
    assert "engine:" in result.stdout


@can_drop_root
@pytest.mark.parametrize("command", ["install", "start", "stop", "up"])
def test_privileged_commands_refuse_clearly_without_root(command, tmp_path):
    result = run_script(command, state=tmp_path / "state", as_nobody=True)
    assert result.returncode == 1
    assert "needs root" in result.stderr


def test_unknown_command_is_a_usage_error():
    result = run_script("frobnicate")
    assert result.returncode == 2
    assert "Usage: scripts/engine.sh" in result.stderr
