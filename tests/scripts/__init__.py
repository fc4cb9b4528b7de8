"""Tests of scripts/: the engine, the CUDA twin, the git-ref check."""
