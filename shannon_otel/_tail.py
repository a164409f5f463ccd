"""Wave-level tail sampling in-process: keep every trace with trouble in it, a ratio of the healthy ones.

:class:`TailSampler` is a span processor placed in front of the user's exporting processor
(``TracerProvider().add_span_processor(TailSampler(BatchSpanProcessor(exporter), healthy_ratio=0.01))``).
It holds each trace's ended spans until their local root ends (the wave span, or the user's span
around the wave: the topmost span started through this processor), then forwards that part of the
trace whole or none of it (two requests of one upstream trace served here are two parts): a trace is kept when any span
has an error status, a task outcome ``failure`` / ``timeout``, a ``shannon.anomaly`` or
``shannon.breaker.transition`` event or is a saga compensation (``shannon.compensation.outcome``), and
otherwise when its trace id falls under ``healthy_ratio`` (the SDK's ``TraceIdRatioBased`` rule on the
low 64 bits, so processes and head samplers of the same ratio agree; the collector's ``probabilistic``
policy hashes the trace id instead, so it keeps other healthy traces: both at 10% keep about 1%).

Memory is bounded by ``max_buffered_spans``: past it, the oldest undecided trace is decided at once
on what it has so far (counted in ``overflow_traces``). Spans ending after their part's decision
(late children) or starting under a span of a decided part follow that decision while it is
remembered (``max_decisions``; an open local root's decision until it ends); one whose local root ended
and was forgotten since follows its trace's
remembered decision, else is decided on its own, never held. A span under a parent never seen here (another
TracerProvider's) roots a part of its own. A span collected without ever ending is forgotten (``abandoned_spans``);
a local root so forgotten has its part decided then, on what it has. After ``shutdown()`` nothing is held either:
each span ending then is decided at once.
For several processes, sample in the collector instead: ``collector-config/otelcol-tail-sampling.yaml``.
Metric exemplars are taken before a trace is decided: ``exemplar_filter()``, given to the MeterProvider, offers only
measurements whose span is sure to be exported (``_tail_exemplars``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import ExemplarFilter
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode

from . import _telemetry as tel
from ._delivery import OneAtATime, bounded
from ._fork import in_forked_child
from ._validate import check_number

__all__ = ["TailSampler"]

_log = logging.getLogger("shannon_otel")

_TROUBLE = frozenset({tel.Outcome.FAILURE.value, tel.Outcome.TIMEOUT.value})
_NOTABLE = frozenset({tel.EVENT_ANOMALY, tel.EVENT_BREAKER_TRANSITION})  # span events that keep their trace
_TRACE_ID_LIMIT = (1 << 64) - 1  # the low 64 bits of the trace id, as TraceIdRatioBased reads them
_SWEEP_FLOOR = 4096  # open spans before the first sweep for abandoned ones (see TailSampler._sweep)


def troubled(span: ReadableSpan) -> bool:
    """Whether ``span`` makes its trace worth keeping: an error, a failed / timed-out task, an anomaly, a
    breaker transition, a compensation (a rollback a cancellation caused has no error, nor does a breaker's
    successful probe closing it)."""
    if span.status.status_code is StatusCode.ERROR:
        return True
    attributes = span.attributes
    if attributes and (attributes.get(tel.TASK_OUTCOME) in _TROUBLE or tel.COMPENSATION_OUTCOME in attributes):
        return True
    return any(event.name in _NOTABLE for event in span.events)


class _Trace:
    """One local part of a trace: the ended spans under one local root, undecided yet."""

    __slots__ = ("keep", "spans", "trace_id")

    def __init__(self, trace_id: int) -> None:
        self.spans: list[ReadableSpan] = []
        self.keep = False
        self.trace_id = trace_id


# The "local root" of a span started under a parent forgotten since its trace was decided: its subtree is
# decided at once, forwarded only if every part of the trace was kept (span ids are never negative).
_FOLLOW_KEEP, _FOLLOW_DROP = -1, -2
# What is remembered of a trace: every part kept; a part dropped; a part dropped and an ended span of the trace
# forgotten since (only then may a parent unknown here be a forgotten span rather than one never seen).
_KEPT, _DROPPED, _DROPPED_FORGOTTEN = 1, 0, -1


class TailSampler(SpanProcessor):
    """Forwards whole traces to ``processor``: all troubled ones, ``healthy_ratio`` of the others.

    Thread-safe; ``on_start`` and ``on_end`` cost O(1) per span plus, at a decision, one call into
    ``processor`` per kept span. ``max_buffered_spans`` caps the spans held undecided (past it the
    oldest undecided part is decided on what it has), ``max_decisions`` the decided parts and ended
    spans remembered. Raises ValueError for a ratio outside [0, 1] or a cap below 1 (TypeError for a
    ``processor`` that is not a SpanProcessor).
    ``kept_traces``, ``dropped_traces`` and ``overflow_traces`` count decisions so far (one per local
    part of a trace: two requests of one upstream trace served here are decided one by one),
    ``abandoned_spans`` the spans collected without ever ending, ``buffered_spans`` the spans held undecided now;
    ``stats()`` returns them all.
    """

    def __init__(self, processor: SpanProcessor, *, healthy_ratio: float = 0.1,
                 max_buffered_spans: int = 100_000, max_decisions: int = 100_000) -> None:
        if not isinstance(processor, SpanProcessor):
            raise TypeError(f"processor must be an OpenTelemetry SpanProcessor, got {processor!r}")
        check_number("healthy_ratio", healthy_ratio, low=0.0, high=1.0)
        check_number("max_buffered_spans", max_buffered_spans, low=1, integer=True)
        check_number("max_decisions", max_decisions, low=1, integer=True)
        self._next = processor
        self._next_on_ending = getattr(processor, "_on_ending", None)
        self.healthy_ratio = healthy_ratio
        self._bound = round(healthy_ratio * (_TRACE_ID_LIMIT + 1))
        self._max_spans = max_buffered_spans
        self._max_decisions = max_decisions
        # Each span's local root (the span id of its topmost ancestor started here), from its start
        # until its part of the trace is decided (or, started late, until it ends): a part is decided
        # when its root ends, so a request's part never waits for another part of the same trace.
        self._root_of: dict[int, int]
        # ... and after that, for the newest ``max_decisions`` decided spans (with their trace id): a span
        # started under one of them (a fire-and-forget task) follows its part's decision.
        self._ended_root: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._traces: OrderedDict[int, _Trace]  # undecided parts by local root, oldest first
        self._decided: OrderedDict[int, bool] = OrderedDict()  # decided parts by local root
        # decisions of open local roots (decided early) past max_decisions, kept until that root ends: outside
        # _decided, so its bound stays O(1) per decision (rotated in it, each decision walked every such root)
        self._held: dict[int, bool] = {}
        self._trace_kept: OrderedDict[int, int] = OrderedDict()  # by trace id: _KEPT, _DROPPED, _DROPPED_FORGOTTEN
        self._closed = False  # shut down: nothing is buffered any more (no later decision would come)
        # spans that ended after shutdown(), newest max_decisions: handed to a processor shut down, so never exported
        # (exported() said True for the kept ones); each is in _ended_root too, evicted from there no later than here
        self._late: OrderedDict[int, None] = OrderedDict()
        self._flushes = OneAtATime()  # a stuck flush of the processor behind holds at most one thread
        self._start()
        in_forked_child(self._start)

    def _start(self) -> None:
        """Nothing open, buffered or counted yet; also in a forked child. The parent's open spans and undecided
        parts are the parent's to decide and export: inherited, the child exported them a second time (at its
        shutdown or an overflow) and held its own spans under the parent's open root; and a lock a parent's thread
        held at the fork stayed held in the child forever. Decisions made are kept: a child's span under a
        decided span follows it."""
        self._root_of = {}
        self._decided.update(self._held)  # the parent's open roots: never seen ending here, bounded as any decision
        self._held = {}
        # ... with a weak reference to each of those spans still open: one collected without end() (abandoned by
        # its user: it never ends) is forgotten at the next sweep, past ``_sweep_at`` open spans (at least 4,096);
        # its entry stayed for good (100,000 abandoned spans held 8.6 MB; the SDK's processors keep nothing of a
        # span not ended)
        self._open: dict[int, weakref.ref[Span]] = {}
        self._sweep_at = _SWEEP_FLOOR
        self._traces = OrderedDict()
        self._buffered = 0
        self._lock = threading.Lock()
        self.kept_traces: int = 0
        self.dropped_traces: int = 0
        self.overflow_traces: int = 0
        self.abandoned_spans: int = 0  # spans collected without end(), forgotten by a sweep

    @property
    def buffered_spans(self) -> int:
        """Spans held now, their trace part undecided (at most ``max_buffered_spans``)."""
        return self._buffered

    def _root(self, context: SpanContext, parent: SpanContext | None) -> int:
        """The local root of a span starting (or ending unseen) now; under the lock."""
        if parent is None or parent.is_remote:
            return context.span_id
        root = self._root_of.get(parent.span_id)
        if root is not None:
            return root
        ended = self._ended_root.get(parent.span_id)
        if ended is not None:
            return ended[0]
        # A parent this processor never saw start (another TracerProvider's span) roots its own part;
        # one forgotten since its trace was decided: see _forgotten.
        return self._forgotten(context)

    def _forgotten(self, context: SpanContext) -> int:
        """Under the lock: the local root of a span whose parent's part is not known (now). Its subtree is
        forwarded whole when every part of its trace was kept; when one was dropped and a span of the trace
        was forgotten since, not at all (the parent may be that span: never a kept span whose parent was
        dropped); otherwise it roots a part of its own (a parent never seen here: another TracerProvider's
        span around a second wave of a request whose first, healthy, was dropped; its failure is kept)."""
        kept = self._trace_kept.get(context.trace_id)
        if kept is None or kept == _DROPPED:
            return context.span_id
        return _FOLLOW_KEEP if kept == _KEPT else _FOLLOW_DROP

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        context = span.context
        forward: list[ReadableSpan] = []
        if context is not None and context.trace_flags.sampled:
            with self._lock:
                self._root_of[context.span_id] = self._root(context, span.parent)
                self._open[context.span_id] = weakref.ref(span)
                if len(self._open) > self._sweep_at:
                    forward = self._sweep()
        self._next.on_start(span, parent_context=parent_context)
        for each in forward:
            self._next.on_end(each)

    def _sweep(self) -> list[ReadableSpan]:
        """Under the lock: forget the spans collected without ever ending (they never will); the part of a trace
        under such a local root is decided now on what it has (the spans to forward): it waited for that root's
        end, held until an overflow or the shutdown. The next sweep comes once the open spans have doubled: O(1)
        amortized per span."""
        gone = [span_id for span_id, ref in self._open.items() if ref() is None]
        forward: list[ReadableSpan] = []
        for span_id in gone:
            del self._open[span_id]
            self._held.pop(span_id, None)
            if self._root_of.pop(span_id, None) == span_id and span_id in self._traces:
                forward.extend(self._decide(span_id))
        self.abandoned_spans += len(gone)
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self._open))
        return forward

    def _on_ending(self, span: Span) -> None:
        # The SDK's OnEnding hook (private in the SDK yet), called on the span still writable just before on_end:
        # passed on, or a processor behind this one never got it.
        if self._next_on_ending is not None:
            self._next_on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            # Recorded, not sampled (a RECORD_ONLY sampler): nothing to decide; the processor behind saw its
            # start and sees its end (the SDK's exporting processors skip it, a user's span-metrics one counts it).
            self._next.on_end(span)
            return
        trace_id, span_id = context.trace_id, context.span_id
        forward: list[ReadableSpan] = []
        first_overflow = False
        with self._lock:
            self._open.pop(span_id, None)
            if self._closed:
                self._late[span_id] = None
                if len(self._late) > self._max_decisions:
                    self._late.popitem(last=False)
            root = self._root_of.get(span_id)
            if root is None:  # started before this processor was added
                root = self._root(context, span.parent)
            if root != span_id and root not in self._traces and root not in self._decided and (
                root not in self._root_of and root not in self._held
            ):
                # Its local root ended, was decided and is forgotten since (max_decisions): it never ends again,
                # so buffered under it this span (a background task outliving many requests) waited forever.
                root = self._forgotten(context)
            if root < 0:  # _FOLLOW_KEEP / _FOLLOW_DROP
                self._root_of.pop(span_id, None)
                self._remember(span_id, (root, trace_id))
                if root == _FOLLOW_KEEP:
                    forward.append(span)
            elif root not in self._traces and (root in self._decided or root in self._held):
                self._root_of.pop(span_id, None)
                self._remember(span_id, (root, trace_id))
                keep = self._held.pop(root) if root == span_id and root in self._held else (
                    self._held[root] if root in self._held else self._decided[root])
                if keep:
                    forward.append(span)
            else:
                entry = self._traces.get(root)
                if entry is None:
                    entry = self._traces[root] = _Trace(trace_id)
                entry.spans.append(span)
                entry.keep = entry.keep or troubled(span)
                self._buffered += 1
                if root == span_id or self._closed:  # shut down: decided at once, never held
                    forward.extend(self._decide(root))
                while self._buffered > self._max_spans and self._traces:
                    first_overflow = first_overflow or not self.overflow_traces
                    self.overflow_traces += 1
                    forward.extend(self._decide(next(iter(self._traces))))
        if first_overflow:
            # Once: later spans of such a part follow its early decision, so a failure after it is exported only
            # if the part was kept; nothing else would tell the user (overflow_traces is read by few).
            _log.warning(
                "TailSampler: more than max_buffered_spans=%d ended spans waited for their local root to end; the "
                "oldest part of a trace was decided on what it had and its later spans follow that decision (a "
                "failure after it is kept only if the part was). A span open around many waves makes one part of "
                "them all. Counted in TailSampler.overflow_traces; this warning is not repeated", self._max_spans)
        for each in forward:
            self._next.on_end(each)

    def _remember(self, span_id: int, part: tuple[int, int]) -> None:
        """Under the lock: ``span_id`` ended in the decided ``part`` (local root, trace id); bounded, oldest
        forgotten (and its trace, if a part of it was dropped, marked: see _forgotten)."""
        ended_root = self._ended_root
        ended_root[span_id] = part
        if len(ended_root) > self._max_decisions:
            _, (_, trace_id) = ended_root.popitem(last=False)
            if self._trace_kept.get(trace_id) == _DROPPED:
                self._trace_kept[trace_id] = _DROPPED_FORGOTTEN

    def _decide(self, root: int) -> list[ReadableSpan]:
        """Under the lock: settle the part of a trace under ``root``; the spans to forward (none when dropped)."""
        entry = self._traces.pop(root)
        self._buffered -= len(entry.spans)
        trace_id = entry.trace_id
        keep = entry.keep or (trace_id & _TRACE_ID_LIMIT) < self._bound
        self._decided[root] = keep
        before = self._trace_kept.get(trace_id, _KEPT)
        self._trace_kept[trace_id] = before if before != _KEPT else _KEPT if keep else _DROPPED
        while len(self._decided) > self._max_decisions:
            oldest, kept = self._decided.popitem(last=False)
            if self._root_of.get(oldest) == oldest:
                # Still open (decided early, at an overflow or the shutdown): its later spans follow this decision
                # until it ends; forgotten, they made a part of their own under it, decided anew (a failed wave kept
                # whose parent was dropped). Held apart until it ends: its open span is held here anyway (rotated
                # back into _decided, each decision walked every such root: quadratic under the lock).
                self._held[oldest] = kept
        if len(self._trace_kept) > self._max_decisions:
            self._trace_kept.popitem(last=False)
        part = (root, trace_id)  # one for all its spans: memory per part, not per span
        for span in entry.spans:  # remembered after the trace's state is set: one may be forgotten here already
            if span.context is not None:
                self._root_of.pop(span.context.span_id, None)
                self._remember(span.context.span_id, part)
        if keep:
            self.kept_traces += 1
            return entry.spans
        self.dropped_traces += 1
        return []

    def exemplar_filter(self) -> ExemplarFilter:
        """An exemplar filter for the MeterProvider (``MeterProvider(..., exemplar_filter=sampler.exemplar_filter())``)
        offering only measurements whose span this sampler is sure to export, so no exemplar names a trace it drops
        (under the SDK's default filter most healthy ones did). See ``TailExemplarFilter``."""
        from ._tail_exemplars import TailExemplarFilter

        return TailExemplarFilter(self)

    def exported(self, context: SpanContext) -> bool:
        """Whether the span of ``context`` (sampled) was forwarded, or is sure to be: its part of the trace was decided
        and kept, or holds a troubled span already, or its trace id is under ``healthy_ratio``. So a trace id it names
        (a :class:`~shannon_otel.RunRecorder` report's) is one this sampler exports. The exemplar filter's rule, asked
        later: False for a span still undecided and healthy so far, one this sampler did not see start or no longer
        remembers (past ``max_decisions``), never a dropped one; asked after ``shutdown()``, what was decided before
        it: False for a span open at the shutdown or ending after it (handed on at once, to a processor shut down,
        which drops it: see :meth:`shutdown`). Never blocks but on the sampler's lock; O(1). TypeError for
        ``context`` not a SpanContext."""
        if not isinstance(context, SpanContext):
            raise TypeError(f"context must be an OpenTelemetry SpanContext (span.get_span_context()), got {context!r}")
        return self._will_export(context, troubled=False, closed=True)

    def _will_export(self, context: SpanContext, *, troubled: bool, closed: bool = False) -> bool:
        """Whether the span of ``context`` (sampled, open or ended: the span current at a measurement) is sure to be
        forwarded, ``troubled`` saying it will end troubled; the exemplar filter's question. False for a span this
        sampler did not see start or no longer remembers, and after ``shutdown()`` unless ``closed`` (a measurement
        then is exported nowhere; a question about spans decided before it, as :meth:`exported` asks, still has its
        answer). O(1), under the lock."""
        with self._lock:
            if self._closed and not closed:
                return False
            span_id = context.span_id
            root = self._root_of.get(span_id)
            if root is None:  # ended and decided (its part's decision), or never seen here
                ended = self._ended_root.get(span_id)
                if ended is None or span_id in self._late:  # ended after shutdown(): into a processor shut down
                    return False
                root, troubled = ended[0], False
            elif self._closed:  # open at shutdown(): it ends after it, into a processor shut down
                return False
            if (context.trace_id & _TRACE_ID_LIMIT) < self._bound:  # every part of such a trace is kept
                return True
            if root != span_id and root not in self._traces and root not in self._decided and (
                root not in self._root_of and root not in self._held
            ):  # as on_end: its local root ended and was forgotten since
                root = self._forgotten(context)
            if root < 0:  # _FOLLOW_KEEP / _FOLLOW_DROP
                return root == _FOLLOW_KEEP
            entry = self._traces.get(root)
            if entry is not None:
                return entry.keep or troubled
            decided = self._held.get(root, self._decided.get(root))
            return troubled if decided is None else decided  # None: undecided, no span of the part ended yet

    def _open_span(self, span_id: int) -> Span | None:
        """The span of ``span_id`` if it started through this sampler and is open (the exemplar filter's question)."""
        with self._lock:
            ref = self._open.get(span_id)
        return None if ref is None else ref()

    def _decide_all(self) -> list[ReadableSpan]:
        with self._lock:
            forward: list[ReadableSpan] = []
            while self._traces:
                forward.extend(self._decide(next(iter(self._traces))))
            return forward

    def shutdown(self) -> None:
        """Decides every buffered trace on what it has, forwards, and shuts ``processor`` down. A span
        ending later is decided at once (its part's decision, else on itself) and, kept, handed to
        ``processor``, whose own rule for spans after its shutdown applies (the SDK's log and drop them;
        ``configure()``'s count them as dropped); none is held back, and :meth:`exported` says False for it."""
        with self._lock:
            self._closed = True
        for span in self._decide_all():
            self._next.on_end(span)
        self._next.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flushes ``processor``, waiting at most ``timeout_millis``: False when it did not finish in time (its
        flush goes on in a daemon thread, one at a time: a later call waits for it within its own budget) or
        failed (logged). Traces still open stay buffered until their root ends.

        The SDK's batch flush ignores its timeout and exports on the calling thread: behind an exporter stuck on
        a silent backend, ``TracerProvider.force_flush(1000)`` through this sampler never returned."""
        seconds = max(0, timeout_millis) / 1000

        def flush() -> bool:
            return self._flushes.run(lambda left: left > 0 and bool(self._next.force_flush(int(left * 1000))), seconds)

        finished, flushed = bounded("tail sampler flush", flush, seconds)
        return finished and bool(flushed)

    def __repr__(self) -> str:
        return f"TailSampler(healthy_ratio={self.healthy_ratio}, buffered_spans={self._buffered})"

    def stats(self) -> dict[str, Any]:
        """The counters so far and the spans held undecided now, in one dict."""
        return {"kept_traces": self.kept_traces, "dropped_traces": self.dropped_traces,
                "overflow_traces": self.overflow_traces, "abandoned_spans": self.abandoned_spans,
                "buffered_spans": self._buffered}
