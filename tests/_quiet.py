"""``quiet_logs``: an autouse, module-wide fixture silencing the ``shannon_otel`` logger for modules whose runs
write thousands of log records (a record per retry, timeout, fallback, hook error...) that they do not test.
A module uses it by importing it (``from _quiet import quiet_logs  # noqa: F401``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def quiet_logs() -> Iterator[None]:
    logger = logging.getLogger("shannon_otel")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    yield
    logger.setLevel(level)
