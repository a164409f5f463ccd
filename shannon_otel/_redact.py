"""Exception messages on exported spans, through the user's redaction callable (``configure(redact=...)``).

Where a span carries an exception message: the ``exception`` event (``exception.message`` and the
last line of each exception in ``exception.stacktrace``) that ``record_exception`` adds, and a task
span's status description (``"ValueError: <message>"``). Metrics and the logging hook never carry
messages (the hook only with ``LoggingHook(exception_messages=True)``).

The redaction runs in the export path, wrapping each span exporter: the spans' hot path is
untouched and a span is redacted once, however many hooks touched it. ``redact(type_name,
message)`` returns the message to keep (possibly rewritten) or ``None`` to keep only the type. A
``redact`` that raises drops the message (fails closed) and is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

Redact = Callable[[str, str], "str | None"]
_log = logging.getLogger("shannon_otel")
_PROSE = ("Traceback ", "During handling", "The above exception")


def drop_messages(type_name: str, message: str) -> None:
    """A ``redact`` keeping only exception types: ``configure(redact=shannon_otel...drop_messages)``."""
    return


class RedactingSpanExporter(SpanExporter):
    """Hands ``exporter`` copies of the spans with their exception messages passed through ``redact``."""

    def __init__(self, exporter: SpanExporter, redact: Redact) -> None:
        self._exporter = exporter
        self._redact = redact
        self._failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([self._span(s) for s in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def _message(self, type_name: str, message: str) -> str | None:
        try:
            kept = self._redact(type_name, message)
        except Exception:  # a broken redaction must not leak what it was meant to hide
            if not self._failed:
                self._failed = True
                _log.exception("the redact callable failed; exception messages are dropped instead")
            return None
        return kept if isinstance(kept, str) else None

    def _line(self, line: str) -> str:
        """One ``Type: message`` line of a formatted traceback, redacted (other lines as they are)."""
        if not line or line[0].isspace() or line.startswith(_PROSE):
            return line
        type_name, sep, message = line.partition(": ")
        if not sep:
            return line
        kept = self._message(type_name, message)
        return type_name if kept is None else f"{type_name}: {kept}"

    def _span(self, span: ReadableSpan) -> ReadableSpan:
        events = span.events
        description = span.status.description
        if not description and not any(e.name == "exception" for e in events):
            return span
        new_events = [self._event(e) if e.name == "exception" else e for e in events]
        status = span.status
        if description and ": " in description:
            status = Status(status.status_code, self._line(description))
        return ReadableSpan(
            name=span.name, context=span.context, parent=span.parent, resource=span.resource,
            attributes=span.attributes, events=new_events, links=span.links, kind=span.kind, status=status,
            start_time=span.start_time, end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
        )

    def _event(self, event: Event) -> Event:
        attributes = dict(event.attributes or {})
        type_name = str(attributes.get("exception.type", ""))
        message = attributes.get("exception.message")
        if isinstance(message, str):
            kept = self._message(type_name, message)
            if kept is None:
                attributes.pop("exception.message")
            else:
                attributes["exception.message"] = kept
        trace = attributes.get("exception.stacktrace")
        if isinstance(trace, str):
            attributes["exception.stacktrace"] = "\n".join(self._line(line) for line in trace.split("\n"))
        return Event(event.name, attributes, event.timestamp)
