"""Tests of the pure core (factory/core)."""
