"""Fixtures for `falconchat serve` tests: real server processes on free ports (see serve_process.py)."""

from __future__ import annotations

import contextlib

import pytest
from serve_process import running


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server on the bundled model for the whole test module."""
    with running(tmp_path_factory.mktemp("serve")) as process:
        yield process


@pytest.fixture
def start_server(tmp_path_factory):
    """Start more servers (`start_server("--api-key", KEY)`); each is stopped, and checked, at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda *args, env=None: stack.enter_context(running(tmp_path_factory.mktemp("serve"), *args, env=env))
