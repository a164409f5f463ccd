"""Log records kept in memory: a handler that keeps every record, and one put on a logger for a block."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

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
