"""Fixtures shared by the test modules that run a real redis-server (see ``_redis_server.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _redis_server import RedisServer, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own on 127.0.0.1, which the test may kill and restart.

    Modules whose tests only read and write keys override it with one module-scoped server.
    """
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing a server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"
