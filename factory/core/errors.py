"""Errors the CLI maps to exit codes: 2 for bad input or usage, 1 for work that failed."""

from __future__ import annotations

from pathlib import Path


class FactoryError(Exception):
    """Base of every error the factory reports as one clear message, without a traceback."""

    exit_code = 1


class InputError(FactoryError):
    """The matrix, a tag, an argument or a file given to the factory is wrong (exit 2)."""

    exit_code = 2


class WorkFailed(FactoryError):
    """A build, verification, push or upstream lookup failed (exit 1)."""

    exit_code = 1


def read_input(path: Path, what: str, missing: str) -> str:
    """A UTF-8 input file's text (the matrix, a lock), or one InputError naming the file: `missing` when it does
    not exist, else why it cannot be read as `what`."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None
