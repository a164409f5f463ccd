"""The OTel SDK's warnings that repeat one message, said once: by ``configure()``'s handle while it lives, by the
``shannon-otel`` command while it runs.

``OTEL_RESOURCE_ATTRIBUTES=junk`` was warned twice: the SDK builds a default resource as its logs module is
imported, and ``configure()`` builds its own (each parse warns). A value length limit
(``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, or ``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT``) that values exceed logged one
"String attribute value exceeds max length of 3, truncating." per attribute set. The limit is honoured; its warning
is said once. Only a filter is added to (and taken off) the SDK's two loggers: their levels and handlers, and every
other logger, stay as the user set them.
"""

from __future__ import annotations

import logging
import os
import threading

SDK_LOGGERS = ("opentelemetry.sdk.resources", "opentelemetry.attributes")
_RESOURCE_LOGGER = SDK_LOGGERS[0]
# What the SDK's resource detection reads (and warns about).
_RESOURCE_VARIABLES = ("OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")


def resource_variables() -> tuple[str | None, ...]:
    """The variables the SDK's resource detection reads, as they are now."""
    return tuple(os.environ.get(name) for name in _RESOURCE_VARIABLES)


class SaidOnce(logging.Filter):
    """Passes a record whose logger and message it has not passed before. Thread-safe: the SDK's resource
    detectors log from a thread pool.

    While :attr:`told` is set, the resource logger's records are taken as said already (remembered, not passed):
    ``configure()`` sets it around its resource detection when the SDK already ran that detection, on the same
    variables, as its logs module was imported (and warned then)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.told = False

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            key = (record.name, record.getMessage())
        except Exception:  # arguments its format cannot take: let the handler report that as logging does
            return True
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        return not (self.told and record.name == _RESOURCE_LOGGER)

    def install(self) -> None:
        for name in SDK_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def remove(self) -> None:
        """Takes the filter off the SDK's loggers (again: nothing)."""
        for name in SDK_LOGGERS:
            logging.getLogger(name).removeFilter(self)
