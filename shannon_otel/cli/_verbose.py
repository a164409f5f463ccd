"""``--verbose``: the logging hook's records, printed among the demo's progress lines.

Without it the demo passes a disabled :class:`LoggingHook` to its policies (replacing the default),
so nothing is written to stderr; with it, a handler on the ``shannon_otel`` logger prints each
record (INFO and up, floods summarised by the hook) through the demo's output while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from .._logs import LoggingHook
from .._telemetry import SCOPE_NAME
from ._summary import Out


class _Lines(logging.Handler):
    def __init__(self, out: Out) -> None:
        super().__init__(logging.INFO)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.line(f"  log {record.levelname:<7} {record.name}: {record.getMessage()}", style="dim")
        except Exception:
            self.handleError(record)


@contextmanager
def log_lines(out: Out, verbose: bool) -> Iterator[LoggingHook]:
    """The logging hook for the demo's policies; with ``verbose`` its records go to ``out`` meanwhile."""
    if not verbose:
        yield LoggingHook(enabled=False)
        return
    logger = logging.getLogger(SCOPE_NAME)
    handler, level, propagate = _Lines(out), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    hook = LoggingHook()
    try:
        yield hook
    finally:
        hook.flush()
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
