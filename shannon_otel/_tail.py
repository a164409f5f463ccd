"""Wave-level tail sampling in-process: keep every trace with trouble in it, a ratio of the healthy ones.

:class:`TailSampler` is a span processor placed in front of the user's exporting processor
(``TracerProvider().add_span_processor(TailSampler(BatchSpanProcessor(exporter), healthy_ratio=0.01))``).
It holds each trace's ended spans until the trace's local root ends (the wave span, or the user's
span around the wave), then forwards the whole trace or none of it: a trace is kept when any span
has an error status, a task outcome ``failure`` / ``timeout`` or a ``shannon.anomaly`` event, and
otherwise when its trace id falls under ``healthy_ratio`` (the same rule as the SDK's
``TraceIdRatioBased`` and the collector's ``probabilistic`` policy, so processes agree).

Memory is bounded by ``max_buffered_spans``: past it, the oldest undecided trace is decided at once
on what it has so far (counted in ``overflow_traces``). Spans ending after their trace's decision
(late children, an outer span) follow that decision while it is remembered (``max_decisions``).
For several processes, sample in the collector instead: ``collector-config/otelcol-tail-sampling.yaml``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from . import _telemetry as tel

__all__ = ["TailSampler"]

_TROUBLE = frozenset({tel.Outcome.FAILURE.value, tel.Outcome.TIMEOUT.value})
_TRACE_ID_LIMIT = (1 << 64) - 1  # the low 64 bits of the trace id, as TraceIdRatioBased reads them


def troubled(span: ReadableSpan) -> bool:
    """Whether ``span`` makes its trace worth keeping: an error, a failed / timed-out task, an anomaly."""
    if span.status.status_code is StatusCode.ERROR:
        return True
    attributes = span.attributes
    if attributes and attributes.get(tel.TASK_OUTCOME) in _TROUBLE:
        return True
    return any(event.name == tel.EVENT_ANOMALY for event in span.events)


class _Trace:
    __slots__ = ("keep", "spans")

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.keep = False


class TailSampler(SpanProcessor):
    """Forwards whole traces to ``processor``: all troubled ones, ``healthy_ratio`` of the others.

    Thread-safe; ``on_end`` costs O(1) per span plus, at a trace's decision, one call into
    ``processor`` per kept span. Raises ValueError for a ratio outside [0, 1] or a cap below 1.
    ``kept_traces``, ``dropped_traces`` and ``overflow_traces`` count decisions so far.
    """

    def __init__(self, processor: SpanProcessor, *, healthy_ratio: float = 0.1,
                 max_buffered_spans: int = 100_000, max_decisions: int = 100_000) -> None:
        if not 0.0 <= healthy_ratio <= 1.0:
            raise ValueError(f"healthy_ratio must be within [0, 1], got {healthy_ratio!r}")
        if max_buffered_spans < 1:
            raise ValueError(f"max_buffered_spans must be >= 1, got {max_buffered_spans!r}")
        if max_decisions < 1:
            raise ValueError(f"max_decisions must be >= 1, got {max_decisions!r}")
        self._next = processor
        self.healthy_ratio = healthy_ratio
        self._bound = round(healthy_ratio * (_TRACE_ID_LIMIT + 1))
        self._max_spans = max_buffered_spans
        self._max_decisions = max_decisions
        self._traces: OrderedDict[int, _Trace] = OrderedDict()  # oldest first
        self._decided: OrderedDict[int, bool] = OrderedDict()
        self._buffered = 0
        self._lock = threading.Lock()
        self.kept_traces = 0
        self.dropped_traces = 0
        self.overflow_traces = 0

    @property
    def buffered_spans(self) -> int:
        return self._buffered

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._next.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        trace_id = context.trace_id
        local_root = span.parent is None or span.parent.is_remote
        forward: list[ReadableSpan] = []
        with self._lock:
            decided = self._decided.get(trace_id)
            if decided is not None and trace_id not in self._traces:
                if decided:
                    forward.append(span)
            else:
                entry = self._traces.get(trace_id)
                if entry is None:
                    entry = self._traces[trace_id] = _Trace()
                entry.spans.append(span)
                entry.keep = entry.keep or troubled(span)
                self._buffered += 1
                if local_root:
                    forward.extend(self._decide(trace_id))
                while self._buffered > self._max_spans and self._traces:
                    self.overflow_traces += 1
                    forward.extend(self._decide(next(iter(self._traces))))
        for each in forward:
            self._next.on_end(each)

    def _decide(self, trace_id: int) -> list[ReadableSpan]:
        """Under the lock: settle ``trace_id``; the spans to forward (empty when it is dropped)."""
        entry = self._traces.pop(trace_id)
        self._buffered -= len(entry.spans)
        keep = entry.keep or (trace_id & _TRACE_ID_LIMIT) < self._bound
        self._decided[trace_id] = keep
        if len(self._decided) > self._max_decisions:
            self._decided.popitem(last=False)
        if keep:
            self.kept_traces += 1
            return entry.spans
        self.dropped_traces += 1
        return []

    def _decide_all(self) -> list[ReadableSpan]:
        with self._lock:
            forward: list[ReadableSpan] = []
            while self._traces:
                forward.extend(self._decide(next(iter(self._traces))))
            return forward

    def shutdown(self) -> None:
        """Decides every buffered trace on what it has, forwards, and shuts ``processor`` down."""
        for span in self._decide_all():
            self._next.on_end(span)
        self._next.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flushes ``processor``; traces still open stay buffered until their root ends."""
        return self._next.force_flush(timeout_millis)

    def __repr__(self) -> str:
        return f"TailSampler(healthy_ratio={self.healthy_ratio}, buffered_spans={self._buffered})"

    def stats(self) -> dict[str, Any]:
        return {"kept_traces": self.kept_traces, "dropped_traces": self.dropped_traces,
                "overflow_traces": self.overflow_traces, "buffered_spans": self._buffered}
