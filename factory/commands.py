"""Commands that reach an engine, a registry or an index; each imports its adapter only when it runs."""

from __future__ import annotations


def register(sub, add, command, index_options) -> None:
    """Add the adapter-backed subcommands to the CLI parser."""
