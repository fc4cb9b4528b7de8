"""Tests of the command line (factory/cli)."""
