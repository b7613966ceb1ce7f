"""Fixtures for the REPL tests: see repl_helpers.py."""

from repl_helpers import chats, terminals  # noqa: F401  (the fixtures)
