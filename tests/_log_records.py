"""Log records kept in memory: a handler that keeps every record, one put on a logger for a block, and the records
the library exports through an InMemoryTelemetry."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

from shannon_otel.testing import InMemoryTelemetry

_H = TypeVar("_H", bound=logging.Handler)


class Records(logging.Handler):
    """Keeps every record it is handed, in ``records``."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capturing(logger_name: str, handler: _H) -> Iterator[_H]:
    """``handler`` on the logger ``logger_name``, set to DEBUG, for the block; the logger as it was after."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.contextmanager
def exported_logs() -> Iterator[InMemoryTelemetry]:
    """An InMemoryTelemetry exporting log records (the handler configure() attaches), the ``shannon_otel`` logger
    set to DEBUG, for the block; the logger as it was and the telemetry shut down after."""
    telemetry = InMemoryTelemetry(logs=True)
    logger = logging.getLogger("shannon_otel")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield telemetry
    finally:
        logger.setLevel(level)
        telemetry.shutdown()
