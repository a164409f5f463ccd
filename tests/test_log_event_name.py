"""The library's log records are OTel *events*: their name travels in the log record's EventName field.

The logs data model gives an event record a top-level ``EventName`` ("This field SHOULD be set for events"), and
the semantic conventions deprecate the ``event.name`` attribute in its favour. The SDK's ``LoggingHandler``
turns a ``logging`` record's extras into attributes only, so every record arrived with EventName empty: a
backend filtering events by name (the collector's ``log_record.event_name`` in OTTL, Loki's ``event_name``)
found none of them. The attribute stays as well, for queries written against it.
"""

from __future__ import annotations

import contextlib
import logging

from shannon_otel import CircuitBreaker, Retry
from shannon_otel._telemetry import EVENT_RETRY_SCHEDULED, LOG_EVENT_NAME, LOG_EVENT_OPENED
from shannon_otel.testing import InMemoryTelemetry, run_virtual


def test_every_resilience_record_names_its_event_in_the_event_name_field() -> None:
    memory = InMemoryTelemetry(logs=True)
    try:
        async def fails() -> None:
            raise KeyError("down")

        async def main() -> None:
            breaker = CircuitBreaker("event-name-db", failure_threshold=2, reset_timeout=100, **memory.providers)
            with contextlib.suppress(KeyError):
                await Retry(attempts=2, initial=0.01, name="event-name-op", **memory.providers).call(
                    breaker.call, fails)

        run_virtual(main())
        logging.getLogger("shannon_otel").warning("a record of the user's own, no event")
        records = [r.log_record for r in memory.log_records()]
        named = {r.event_name: dict(r.attributes or {}) for r in records if r.event_name}
        assert EVENT_RETRY_SCHEDULED in named and LOG_EVENT_OPENED in named, [(r.event_name, r.body) for r in records]
        for event_name, attributes in named.items():
            assert attributes[LOG_EVENT_NAME] == event_name  # the deprecated attribute kept, the same value
        # every record the library wrote as an event has it; a plain record is no event (EventName unset)
        assert all(r.event_name for r in records if LOG_EVENT_NAME in (r.attributes or {}))
        plain = [r for r in records if r.body == "a record of the user's own, no event"]
        assert len(plain) == 1 and not plain[0].event_name
    finally:
        memory.shutdown()


class HookBrokeError(Exception):
    """An error class of a module (not a builtin): ``exception.type`` must say which."""


def test_a_failing_hooks_record_names_its_error_by_the_qualified_class_as_spans_and_metrics_do() -> None:
    """The exception semantic conventions: ``exception.type`` is "the type of the exception (its fully-qualified class
    name, if applicable)". The SDK's handler wrote the bare ``__name__`` (``HookBrokeError``), while the same error is
    ``<module>.HookBrokeError`` in ``shannon.hook.errors``' ``error.type``, and the semantic conventions ask one value
    for one error across signals."""
    from shannon_otel import Hook, Wave

    class Broken(Hook):
        def wave_started(self, event: object) -> None:
            raise HookBrokeError("the hook broke")

    memory = InMemoryTelemetry(logs=True)
    try:
        async def work(i: int) -> int:
            return i

        run_virtual(Wave("w", hooks=[Broken()], **memory.providers).map(work, range(1)))
        [record] = [r.log_record for r in memory.log_records() if "exception.type" in (r.log_record.attributes or {})]
        [point] = memory.points("shannon.hook.errors")
        expected = f"{HookBrokeError.__module__}.HookBrokeError"
        assert point.attributes["error.type"] == expected
        assert (record.attributes or {})["exception.type"] == expected
    finally:
        memory.shutdown()
