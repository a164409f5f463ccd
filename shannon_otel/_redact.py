"""Exception messages on exported spans, through the user's redaction callable (``configure(redact=...)``).

Where a span carries an exception message: the ``exception`` event (``exception.message`` and, in
``exception.stacktrace``, each exception's ``Type: message`` line with the lines continuing it: a
multi-line message, notes, the sub-exceptions of an exception group) that ``record_exception`` adds, and a task
span's status description (``"ValueError: <message>"``). Metrics and the logging hook never carry
messages (the hook only with ``LoggingHook(exception_messages=True)``).

The redaction runs in the export path, wrapping each span exporter: the spans' hot path is
untouched and a span is redacted once, however many hooks touched it. ``redact(type_name,
message)`` returns the message to keep (possibly rewritten) or ``None`` to keep only the type. A
``redact`` that raises drops the message (fails closed) and is logged once.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from ._events._error import error_message

Redact = Callable[[str, str], "str | None"]
_log = logging.getLogger("shannon_otel")
_MESSAGE = "exception.message"
_PROSE = ("Traceback (most recent call last):", "Exception Group Traceback (most recent call last):",
          "During handling of the above exception", "The above exception was the direct cause")
_MARGIN = re.compile(r" *[|+](?: |$)")  # an exception group's left margin: "  | ", "    | ", "  + "
_MORE = re.compile(r"and \d+ more exceptions?\Z")  # an exception group's elision line
_TYPE = re.compile(r"[A-Za-z_][\w.]*")  # a (qualified) exception type name


def redacting_handler(handler_class: type[logging.Handler], redact: Redact, **kwargs: object) -> logging.Handler:
    """An instance of ``handler_class`` (the OTel ``LoggingHandler``) that hands on every record through
    ``redact`` first: exception messages and tracebacks of logged errors, ``exception.message`` fields."""
    redactor = _Redactor(redact)

    class Redacting(handler_class):  # type: ignore[valid-type,misc]  # a class chosen at run time
        def emit(self, record: logging.LogRecord) -> None:
            super().emit(redactor.record(record))

    return Redacting(**kwargs)


def drop_messages(type_name: str, message: str) -> None:
    """A ``redact`` keeping only exception types: ``configure(redact=shannon_otel...drop_messages)``."""
    return


class _Redactor:
    """``redact`` applied to one message, or to every message of a formatted traceback; fails closed."""

    def __init__(self, redact: Redact) -> None:
        self._redact = redact
        self._failed = False

    def _message(self, type_name: str, message: str) -> str | None:
        try:
            kept = self._redact(type_name, message)
        except Exception:  # a broken redaction must not leak what it was meant to hide
            if not self._failed:
                self._failed = True
                _log.exception("the redact callable failed; exception messages are dropped instead")
            return None
        return kept if isinstance(kept, str) else None

    def _stacktrace(self, text: str) -> str:
        """A formatted traceback with every exception's message redacted: each ``Type: message`` line with
        the lines that continue it (a multi-line message, notes), in exception groups' ``|`` margins too.

        Frames, source lines and the connecting prose are kept; any other line is read as message text."""
        out: list[str] = []
        pending: tuple[str, str, list[str]] | None = None  # margin, type, message lines

        def flush() -> None:
            if pending is None:
                return
            margin, type_name, lines = pending
            trailing = []  # blank lines before the next block belong to the layout, not the message
            while lines and not lines[-1].strip():
                trailing.append(lines.pop())
            kept = self._message(type_name, "\n".join(lines)) if lines else None
            if kept is None:
                if type_name:
                    out.append(margin + type_name)
            else:
                head, *rest = kept.split("\n")
                out.append(f"{margin}{type_name}: {head}" if type_name else margin + head)
                out.extend(margin + each for each in rest)
            out.extend(margin + blank for blank in reversed(trailing))

        for line in text.split("\n"):
            found = _MARGIN.match(line)
            margin = found.group() if found else ""
            body = line[len(margin):]
            stripped = body.lstrip()
            layout = (stripped.startswith(_PROSE) or stripped.startswith("+-") or _MORE.match(stripped) is not None)
            if pending is not None:
                # A message's own line may begin like a margin ("| x") or a group's separator ("+-+---", a table's
                # rule): printed after the message's margin, it is read as message text (taken for layout, it ended
                # the message and the lines after it went out unredacted, a bare word as an exception type). A
                # message ends only at a line outside its margin or at the prose that chains exceptions: in a real
                # traceback a separator or an elision line never follows a message in its own margin.
                if not stripped.startswith(_PROSE) and line.startswith(pending[0]):
                    pending[2].append(line[len(pending[0]):])
                    continue
                flush()
                pending = None
            if layout or not body.strip() or body[0].isspace():
                out.append(line)  # a header, frame, source line, separator or blank line
                continue
            type_name, sep, message = body.partition(": ")
            if _TYPE.fullmatch(type_name) is None:  # not an exception type: all of it is message text
                type_name, message, sep = "", body, ": "
            pending = (margin, type_name, [message] if sep else [])
        flush()
        return "\n".join(out)

    def _line(self, line: str) -> str:
        """One ``Type: message`` line of a formatted traceback, redacted (other lines as they are)."""
        if not line or line[0].isspace() or line.startswith(_PROSE):
            return line
        type_name, sep, message = line.partition(": ")
        if not sep:
            return line
        kept = self._message(type_name, message)
        return type_name if kept is None else f"{type_name}: {kept}"

    def record(self, record: logging.LogRecord) -> logging.LogRecord:
        """``record`` or, when it carries an exception (``exc_info``) or a ``LoggingHook`` message field, a
        copy whose message, traceback and text went through ``redact`` (what an OTel log handler exports)."""
        error = record.exc_info[1] if record.exc_info else None
        given = record.__dict__.get(_MESSAGE)
        if error is None and not isinstance(given, str):
            return record
        copy = logging.makeLogRecord(record.__dict__)
        text = record.getMessage()
        if isinstance(given, str):  # LoggingHook(exception_messages=True): the field and the text's ": message"
            type_name = str(record.__dict__.get("error.type", ""))
            kept = self._message(type_name, given)
            if kept is None:
                del copy.__dict__[_MESSAGE]
            else:
                copy.__dict__[_MESSAGE] = kept
            # Only the cause the hook wrote ("Type: message", the last one): replacing the message
            # everywhere rewrote an operation name holding it ("retrying <hidden>-primary"). A text
            # without that cause (a record of the user's own) has the message replaced everywhere. The hook
            # quotes the message (``%r``: a newline in it forged a log line), so the kept one is quoted the same.
            head, found, tail = text.rpartition(f"{type_name}: {given!r}") if type_name else ("", "", "")
            if found:
                text = head + (type_name if kept is None else f"{type_name}: {kept!r}") + tail
            else:
                text = text.replace(f": {given}", "") if kept is None else text.replace(given, kept)
        if record.exc_info and record.exc_info[0] is not None:
            kind = record.exc_info[0]
            copy.exc_info, copy.exc_text = None, None  # the handler would format it unredacted
            copy.__dict__["exception.type"] = kind.__name__
            kept = self._message(kind.__name__, error_message(error)) if error is not None else None
            if kept is not None:
                copy.__dict__[_MESSAGE] = kept
            copy.__dict__["exception.stacktrace"] = self._stacktrace("".join(traceback.format_exception(
                *record.exc_info)))
        copy.msg, copy.args = text, None
        return copy


class RedactingSpanExporter(_Redactor, SpanExporter):
    """Hands ``exporter`` copies of the spans with their exception messages passed through ``redact``."""

    def __init__(self, exporter: SpanExporter, redact: Redact) -> None:
        super().__init__(redact)
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([self._span(s) for s in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

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
            attributes["exception.stacktrace"] = self._stacktrace(trace)
        return Event(event.name, attributes, event.timestamp)
