"""Tests of the use cases (factory/usecases): on a fake engine, on the real one (marked engine), on local servers."""
