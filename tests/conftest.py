"""Fixtures shared by the test modules (defined, and type-checked, in the modules they come from: mypy cannot
check a second module named ``conftest`` next to ``e2e/conftest.py``, so this file only names them)."""

from _redis_server import prefix, server  # noqa: F401  (the Redis tests' fixtures)
