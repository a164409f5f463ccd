"""The span a record is written under, when it is not the current one (docs/logging.md, "Trace correlation").

An OTel ``LoggingHandler`` reads the trace and span ids off the context current when it handles a record, and
the OTel logging instrumentation (``otelTraceID``, ``otelSpanID``) off the span current when the record is
created: both inside ``logger.log``. So a record about other calls than the current one is written with only
the current-span key of the OTel context replaced (baggage and every other key as they are), for that one call,
and the context restored after: a summary of many calls under no span (``INVALID_SPAN``: no ids), an anomaly
under its culprit's span. Only the writing of such a record pays for it; nothing else of the user's context is
touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags

if TYPE_CHECKING:
    from .._events import Anomaly

NO_SPAN: trace.Span = INVALID_SPAN  # a summary of many calls: none of their ids (a trace id names one call's trace)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def attach_span(span: trace.Span) -> object:
    """Make ``span`` current (the OTel context with its span key replaced); the token for :func:`detach`."""
    return otel_context.attach(trace.set_span_in_context(span))


def detach(token: Any) -> None:
    otel_context.detach(token)


def culprit(event: Anomaly) -> trace.Span:
    """The span an anomaly's record is written under: its culprit's (``trace_id``, ``span_id``: set only for a
    sampled span, one exported somewhere to link to), else none. Not the span current where it was scored: that is
    the task that closed the tick, one the anomaly does not name for latency, error and retry rates."""
    trace_id, span_id = event.trace_id, event.span_id
    if trace_id is None or span_id is None:
        return NO_SPAN
    try:
        context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_SAMPLED)
    except (TypeError, ValueError):  # an Anomaly built by hand with ids that are not hex: no link to follow
        return NO_SPAN
    return NonRecordingSpan(context) if context.is_valid else NO_SPAN
