"""Tests of the adapters (factory/adapters): against real servers on 127.0.0.1 and real files."""
