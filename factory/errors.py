"""Errors the CLI maps to exit codes: 2 for bad input or usage, 1 for work that failed."""


class FactoryError(Exception):
    """Base of every error the factory reports as one clear message, without a traceback."""

    exit_code = 1


class InputError(FactoryError):
    """The matrix, a tag, an argument or a file given to the factory is wrong (exit 2)."""

    exit_code = 2


class WorkFailed(FactoryError):
    """A build, verification, push or upstream lookup failed (exit 1)."""

    exit_code = 1
