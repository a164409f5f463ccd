"""The OTel SDK's warnings that repeat one message, said once while a command runs.

``OTEL_RESOURCE_ATTRIBUTES=junk`` was warned twice: the SDK builds a default resource as its logs module is
imported, and ``configure()`` builds the demo's (each parse warns). ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=0`` (a value
the specification allows: every string attribute is cut to nothing) filled stderr with one "String attribute value
exceeds max length of 0, truncating." per attribute set, 36 for a one-wave demo of two tasks. The setting is
honoured; its warning is said once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

_LOGGERS = ("opentelemetry.sdk.resources", "opentelemetry.attributes")


class _Once(logging.Filter):
    """Passes a record whose logger and message it has not passed before. Thread-safe: the SDK's resource
    detectors log from a thread pool."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            key = (record.name, record.getMessage())
        except Exception:  # arguments its format cannot take: let the handler report that as logging does
            return True
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        return True


@contextlib.contextmanager
def warned_once() -> Iterator[None]:
    """While the block runs, each message of the SDK's resource and attribute loggers is logged once."""
    once = _Once()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addFilter(once)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(once)
