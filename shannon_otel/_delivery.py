"""Delivery guards for ``configure()``'s exporters: drops counted, exits bounded.

The SDK's BatchSpanProcessor drops spans when its queue is full with only a log line, and its
shutdown/flush wait for an exporter that may retry for tens of seconds against a dead or silent
backend. Here, with public SDK interfaces only:

- :class:`CountedSpanProcessor` wraps a BatchSpanProcessor and refuses (and counts) a span itself
  before the SDK's queue could overflow, so the SDK never drops one uncounted;
- :class:`CountedSpanExporter` / :class:`CountedMetricExporter` count what an exporter failed to deliver,
  and (:class:`Rejections`) what the backend rejected in an answer that was still a success;
- :func:`bounded` runs a blocking shutdown or flush in a daemon thread and waits at most a budget:
  the caller gets control back on time whatever the backend does (the thread may finish later or
  be abandoned at process exit, taking what it held with it: counted as dropped by the caller).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import _telemetry as tel
from ._events._error import error_message, error_type
from ._fork import in_forked_child, release_held
from ._telemetry import DropReason

T = TypeVar("T")
_log = logging.getLogger("shannon_otel")
# What a backend's answer said about an export (a partial success, a redirect): the CLI reports these with
# the SDK exporters' own.
_export_log = logging.getLogger("shannon_otel.export")

# Eight times the SDK's 2,048: waves of tens of thousands of tasks fit while a healthy exporter catches
# up. Memory bound: a finished task span costs ~2.8 KB (measured with tracemalloc, docs/reliability.md),
# so a full queue holds ~45 MB.
DEFAULT_MAX_QUEUE_SIZE = 16_384
# The most items a batch processor's queue may hold, whatever asked (argument or variable): ~28 GB of finished spans
# at ~2.8 KB each (docs/reliability.md). A larger one is as good as unbounded: memory runs out before anything drops.
MAX_QUEUE_SIZE = 10_000_000
# A batch processor's schedule delay (ms) at most a day, as the metric interval: beyond threading.TIMEOUT_MAX
# (~292 years) the SDK's worker thread died at its first wait (OverflowError) and exported nothing until a
# flush or the exit, its queue filling and then dropping.
MAX_DELAY_MS = 86_400_000


class DropCounter:
    """Dropped spans/metric points by (signal, reason). Written from exporter threads and the
    event loop, read by the ``shannon.telemetry.dropped`` callback and :attr:`Telemetry.dropped`."""

    def __init__(self) -> None:
        self._start()
        in_forked_child(self._start)

    def _start(self) -> None:
        """No drops yet; also in a forked child, which counts its own (its parent's are its parent's to report)."""
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, DropReason], int] = {}

    def add(self, signal: str, reason: DropReason, n: int = 1) -> None:
        if n > 0:
            with self._lock:
                self._counts[(signal, reason)] = self._counts.get((signal, reason), 0) + n

    def by_reason(self) -> dict[tuple[str, DropReason], int]:
        with self._lock:
            return dict(self._counts)

    def total(self, signal: str) -> int:
        return sum(n for (s, _), n in self.by_reason().items() if s == signal)

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        for (signal, reason), n in self.by_reason().items():
            yield Observation(n, {tel.TELEMETRY_SIGNAL: signal, tel.TELEMETRY_DROP_REASON: reason.value})


class Rejections:
    """What a backend's answers said was not taken, though the SDK's OTLP exporters count them delivered.

    Two answers: items rejected in a success (OTLP ``partial_success``: a quota, a bad attribute),
    which the exporters never read; and, over HTTP, a redirect (3xx), which the exporter does not
    follow but counts as a success: nothing reached the backend. Either way ``Telemetry.dropped``
    said 0. The exporters ``configure()`` builds note each answer here (on the thread running the
    export); the :class:`_Counted` wrapper around that exporter takes it when the export returns and
    counts the items as dropped (``rejected``; a redirect, the whole export as ``export_failed``).
    The first of each is logged as a warning, later ones only counted (a backend answering every
    export so must not flood the log, nor feed the logs signal). The backend's words (its message, the
    redirect's ``Location``) are quoted (``repr``): one printable line, never a forged log line or a terminal escape.
    """

    def __init__(self, items: str) -> None:
        self._items = items  # "spans", "metric points", "log records": for the warnings
        self._warned: set[str] = set()
        self._start()
        in_forked_child(self._start)

    def _start(self) -> None:
        """Nothing noted yet; also in a forked child (a new lock: the parent's may be held there)."""
        self._lock = threading.Lock()
        self._pending = 0
        self._undelivered = False

    def add(self, rejected: int, message: str) -> None:
        """Note ``rejected`` items of the export running on this exporter (an answer's partial success)."""
        if rejected <= 0:
            return
        with self._lock:
            self._pending += rejected
        if self._first("rejected"):
            _export_log.warning(
                "the OTLP backend rejected %d of an export's %s (partial success: %s); counted as dropped "
                "(Telemetry.dropped, shannon.telemetry.dropped reason rejected), later rejections only counted",
                rejected, self._items, repr(message) if message else "no message")

    def not_delivered(self, status: int, location: str) -> None:
        """Note that the export running on this exporter reached nothing: answered with a redirect."""
        with self._lock:
            self._undelivered = True
        if self._first("redirect"):
            _export_log.warning(
                "the OTLP endpoint answered %d (redirect to %s), which the OTLP/HTTP exporter does not follow: "
                "give the final URL as the endpoint; the %s were not delivered (counted as dropped, reason "
                "export_failed)", status, repr(location) if location else "no location", self._items)

    def _first(self, kind: str) -> bool:
        with self._lock:
            first = kind not in self._warned
            self._warned.add(kind)
        return first

    def take(self) -> tuple[int, bool]:
        """(items rejected, whether the export was not delivered at all) since the last call."""
        with self._lock:
            taken = (self._pending, self._undelivered)
            self._pending, self._undelivered = 0, False
        return taken


def rejections_of(exporter: object) -> Rejections | None:
    """The :class:`Rejections` of one of ``configure()``'s OTLP exporters; None for any other exporter."""
    found = getattr(exporter, "rejections", None)
    return found if isinstance(found, Rejections) else None


class _Counted:
    """Counts the items handed to ``inner``, those settled (its export returned) and those it failed
    to deliver (result or exception), as drops of ``signal``; with ``rejections``, also those the
    backend rejected in a successful answer. Once ``abandon()``-ed (the shutdown budget ran out, or the
    SDK's processor stopped waiting, and the caller counted every unsettled item), later failures are
    not counted twice, and nothing more is handed to ``inner``: the SDK's processor, left to finish its
    shutdown in a daemon thread, went on exporting the queue that had just been counted as dropped, and a
    process living on had ``dropped`` count 100 spans its collector got all of (the export already running
    then cannot be stopped: its items may still arrive)."""

    def __init__(
        self, inner: Any, drops: DropCounter, signal: str, success: object, failure: object,
        rejections: Rejections | None = None,
    ) -> None:
        self.inner = inner
        self._drops = drops
        self._signal = signal
        self._success = success
        self._failure = failure
        self._rejections = rejections
        self.start()

    def start(self) -> None:
        """Nothing handed or settled yet; also in a forked child (its processor calls this there)."""
        # one writer each: the processor's export, serialised by the SDK's export lock
        self.handed = 0
        self.settled = 0
        self._abandoned = False  # a forked child's exporter starts afresh: the parent's give-up is the parent's
        self._covered = 0  # the items (in the order handed) the give-up counted: those accepted before it
        self._abandoning = threading.Lock()  # also new in a forked child: the parent's may be held there

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self, accepted: int) -> int:
        """Give up on the items not settled of the ``accepted`` ones: how many, for the caller to count; 0 from
        the second call on (the budget's end and the SDK processor's own give-up may both come, in two threads)."""
        with self._abandoning:
            if self._abandoned:
                return 0
            self._abandoned = True
            self._covered = accepted
            return max(0, accepted - self.settled)

    def _export(self, batch: Sequence[Any]) -> Any:
        self.handed += len(batch)
        if self._abandoned:  # counted as dropped by the give-up: sent now, that count would be false
            # items accepted after it (a shutdown interrupted before its processors closed) it did not count
            self._drops.add(self._signal, DropReason.SHUTDOWN,
                            self.handed - max(self._covered, self.handed - len(batch)))
            self.settled += len(batch)
            return self._failure
        result = None
        try:
            result = self.inner.export(batch)
        finally:
            rejected, undelivered = self._rejections.take() if self._rejections is not None else (0, False)
            # Settled together with the choice of who counts the batch: a give-up between the two counted it a
            # second time (settled not yet including it), as shutdown, after its failure was counted here.
            with self._abandoning:
                counted_here = not self._abandoned
                self.settled += len(batch)
            if counted_here:
                if result is not self._success or undelivered:
                    self._drops.add(self._signal, DropReason.EXPORT_FAILED, len(batch))
                else:
                    self._drops.add(self._signal, DropReason.REJECTED, min(rejected, len(batch)))
        return result


class CountedSpanExporter(_Counted, SpanExporter):
    """:class:`_Counted` for spans."""

    def __init__(self, inner: SpanExporter, drops: DropCounter, rejections: Rejections | None = None) -> None:
        super().__init__(inner, drops, "traces", SpanExportResult.SUCCESS, SpanExportResult.FAILURE, rejections)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result: SpanExportResult = self._export(spans)
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self.inner.shutdown()


class _CountedBatch:
    """What the span and log processors share: the SDK's batch processor ``inner``, exporting through ``exporter``,
    with every item it is handed and loses counted as dropped (of ``signal``).

    An item is forwarded only while fewer than ``max_queue_size`` accepted ones are not yet handed to the exporter
    (a bound at least as strict as the SDK queue's, which also excludes the batch being exported); beyond it, or
    once shut down, it is refused and counted (``queue_full``, ``shutdown``). Shut down once; flushed one call at
    a time."""

    def __init__(self, inner: Any, exporter: _Counted, drops: DropCounter, signal: str, max_queue_size: int) -> None:
        self._inner = inner
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self._drops = drops
        self._signal = signal
        self._accepted = 0
        self._closed = False
        self._shutdown_lock = threading.Lock()
        self._flushes = OneAtATime()
        in_forked_child(self._forked)

    def _forked(self) -> None:
        """In a forked child: the SDK emptied the queue, so the items counted in it (the parent's) go."""
        self._accepted = 0
        self.exporter.start()

    def _accept(self) -> bool:
        """Whether an item handed now goes on to the SDK's processor; if not, it is counted as dropped.
        Runs on the thread that ends the item: two integer reads more than the SDK's own."""
        if self._closed:
            self._drops.add(self._signal, DropReason.SHUTDOWN)
            return False
        if self._accepted - self.exporter.handed >= self.max_queue_size:
            self._drops.add(self._signal, DropReason.QUEUE_FULL)
            return False
        self._accepted += 1
        return True

    def abandon(self) -> int:
        """The items accepted but not settled (queued, or in an export still running), now
        given up on: the caller counts them (0 when given up on before); a late failure of that export
        is not counted again."""
        return self.exporter.abandon(self._accepted)

    @property
    def gave_up(self) -> bool:
        """Whether items it accepted were given up on (counted as dropped, reason ``shutdown``)."""
        return self.exporter.abandoned

    def shutdown(self) -> None:
        """Stop; blocks while the SDK's processor exports what is queued, 30 s at most (its own bound).

        Once only: ``Telemetry`` shuts each processor down in a thread of its own, then the provider (for processors
        a user added), whose call of this one returns at once instead of counting an export still running as lost.
        """
        with self._shutdown_lock:
            if self._closed:
                return
            self._closed = True
        self._inner.shutdown()
        _count_left_behind(self._drops, self._signal, self.exporter, self._accepted)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is queued; blocks while it does. One flush at a time (:class:`OneAtATime`): a call while an
        earlier one is stuck waits for it at most ``timeout_millis``, returning False if it does not end."""
        return self._flushes.run(lambda _: bool(self._inner.force_flush(timeout_millis)), timeout_millis / 1000)


class CountedSpanProcessor(_CountedBatch, SpanProcessor):
    """A BatchSpanProcessor whose every lost span is counted (:class:`_CountedBatch`)."""

    def __init__(
        self, exporter: SpanExporter, drops: DropCounter, *, max_queue_size: int,
        max_export_batch_size: int | None = None, rejections: Rejections | None = None,
    ) -> None:
        counted = CountedSpanExporter(exporter, drops, rejections)
        # OTEL_BSP_EXPORT_TIMEOUT read as its neighbours are: the SDK logged a traceback for "abc" and took 0 or a
        # negative value without a word (its processors keep the value but do not use it: exports are bounded by
        # the exporter's own timeout)
        inner = BatchSpanProcessor(
            counted, max_queue_size=max_queue_size, max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=env_int("OTEL_BSP_SCHEDULE_DELAY", MAX_DELAY_MS) or 5000,
            export_timeout_millis=env_int("OTEL_BSP_EXPORT_TIMEOUT") or 30_000,
        )
        super().__init__(inner, counted, drops, "traces", max_queue_size)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return  # the SDK's processor ignores these too
        if self._accept():
            self._inner.on_end(span)


class CountedMetricExporter(MetricExporter):
    """Counts the data points of every export ``inner`` failed to deliver.

    Cumulative points are re-sent by the next export, so a count here means "not delivered that
    time", not necessarily lost for good. An export still running when the shutdown budget runs out
    is given up on by :meth:`abandon` (the caller counts its points); its late failure is not
    counted again. Exports after it (the reader's last one, run once the stuck one ends) count their
    failures as any export does.
    """

    def __init__(self, inner: MetricExporter, drops: DropCounter) -> None:
        self._rejections = rejections_of(inner)
        # MetricExporter keeps its preferences privately; PeriodicExportingMetricReader reads them so.
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        self._drops = drops
        self._in_flight = 0  # points of the export running now (one at a time: the reader's export lock)
        self._exports = 0  # exports started; the number of the running (or last) one
        # The export abandon() gave up on (its number): its points are the caller's to count. A flag for good, it
        # left every later export uncounted: the reader's last export, run after the give-up once the stuck one
        # ended, failed with its points counted nowhere.
        self._given_up = 0
        self._lock = threading.Lock()  # the export's end and a give-up: one of the two counts its points
        in_forked_child(self._forked)

    def _forked(self) -> None:
        self._in_flight = 0  # the parent's export; the child's reader starts its own
        self._lock = threading.Lock()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        points = _points(metrics_data)
        with self._lock:
            self._exports += 1
            mine = self._exports
            self._in_flight = points
        result = None
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        finally:
            rejected, undelivered = self._rejections.take() if self._rejections is not None else (0, False)
            # A give-up between the export's end and this check found no points in flight and the check found it
            # given up: a failed export's points were counted by neither.
            with self._lock:
                self._in_flight = 0
                counted_here = self._given_up != mine
            if counted_here:
                if result is not MetricExportResult.SUCCESS or undelivered:
                    self._drops.add("metrics", DropReason.EXPORT_FAILED, points)
                else:
                    self._drops.add("metrics", DropReason.REJECTED, min(rejected, points))
        return result

    def abandon(self) -> int:
        """The points of the export still running (0 if none), now given up on: the caller counts them."""
        with self._lock:
            self._given_up = self._exports  # one that already ended counted itself: it never checks again
            return self._in_flight

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class CountedLogRecordExporter(_Counted, LogRecordExporter):
    """:class:`_Counted` for log records."""

    def __init__(self, inner: LogRecordExporter, drops: DropCounter) -> None:
        super().__init__(inner, drops, "logs", LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE,
                         rejections_of(inner))

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result: LogRecordExportResult = self._export(batch)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class CountedLogRecordProcessor(_CountedBatch, LogRecordProcessor):
    """A BatchLogRecordProcessor whose every lost record is counted (:class:`_CountedBatch`)."""

    def __init__(self, exporter: LogRecordExporter, drops: DropCounter, *, export_timeout_s: float | None) -> None:
        counted = CountedLogRecordExporter(exporter, drops)
        # the queue size the SDK would pick itself, known here so the bound matches it; bounded as the span queue is
        # (it was taken at any size: OTEL_BLRP_MAX_QUEUE_SIZE=100000000000 held log records until memory ran out)
        max_queue_size = env_int("OTEL_BLRP_MAX_QUEUE_SIZE", MAX_QUEUE_SIZE) or 2048
        inner = BatchLogRecordProcessor(
            counted, max_queue_size=max_queue_size,
            schedule_delay_millis=env_int("OTEL_BLRP_SCHEDULE_DELAY", MAX_DELAY_MS) or 1000,
            max_export_batch_size=env_batch_setting("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", 512, max_queue_size),
            export_timeout_millis=(env_int("OTEL_BLRP_EXPORT_TIMEOUT") or 30_000) if export_timeout_s is None
            else export_timeout_s * 1000,  # the variable read as its neighbours are (see CountedSpanProcessor)
        )
        super().__init__(inner, counted, drops, "logs", max_queue_size)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self._accept():
            self._inner.on_emit(log_record)


def _count_left_behind(drops: DropCounter, signal: str, exporter: _Counted, accepted: int) -> None:
    """After the SDK batch processor's shutdown returned: what it accepted and never settled is lost, counted.

    Its shutdown waits at most 30 s for its worker whatever the caller's budget, then returns and exports nothing
    more (an export still running finishes alone): with ``shutdown_timeout_s`` above 30 s and a stalled backend,
    ``Telemetry.shutdown()`` returned True, the queue's spans lost and none counted. A shutdown that finished
    leaves nothing unsettled and counts nothing."""
    if accepted > exporter.settled:
        drops.add(signal, DropReason.SHUTDOWN, exporter.abandon(accepted))


def _points(data: MetricsData) -> int:
    return sum(
        len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    )


def bounded(name: str, fn: Callable[[], T], timeout_s: float) -> tuple[bool, T | None]:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s``: (finished in time, its result).

    Never raises: an exception from ``fn`` is logged and reported as (True, None). A thread still
    running when the budget is spent is left behind (daemon: it cannot hold the process open).
    """
    (finished, result), = in_parallel({name: fn}, timeout_s)
    return finished, result


def in_parallel(
    jobs: dict[str, Callable[[], T]], timeout_s: float, spares: Spares | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[tuple[bool, T | None]]:
    """:func:`bounded` for several jobs at once, all against one deadline, results in ``jobs`` order.

    ``spares``: threads started earlier to run the jobs on (see :class:`Spares`); new threads otherwise.
    ``stop``: asked every 0.1 s while waiting; once True the wait ends, the jobs not done yet unfinished.
    """
    deadline = time.monotonic() + max(0.0, timeout_s)
    ready = spares.take() if spares is not None else []
    slots: list[list[T | None]] = []
    events: list[threading.Event] = []
    for name, fn in jobs.items():
        outcome: list[T | None] = []
        done = threading.Event()

        def target(fn: Callable[[], T] = fn, outcome: list[T | None] = outcome, done: threading.Event = done,
                   name: str = name) -> None:
            try:
                outcome.append(fn())
            except Exception as exc:
                # An SDK shutdown that fails (a deadline already spent, a reader that gave up) is an
                # expected end against a dead backend: one line, the traceback only at debug level.
                # The error's text quoted (%r): an exporter's may quote the server's words, newlines and all. An
                # error with none (a bare TimeoutError) is its type alone (it read "TimeoutError: ''").
                message = error_message(exc)
                _log.warning("telemetry %s failed: %s%s", name, error_type(exc), f": {message!r}" if message else "",
                             exc_info=_log.isEnabledFor(logging.DEBUG))
                outcome.append(None)
            finally:
                done.set()

        if ready:
            ready.pop().put(target)
        else:
            try:
                threading.Thread(target=target, name=f"shannon-otel {name}", daemon=True).start()
            except RuntimeError:  # the interpreter is finalizing (Python 3.12 refuses threads then): here, unbounded
                target()
        slots.append(outcome)
        events.append(done)
    for unused in ready:
        unused.put(None)
    results: list[tuple[bool, T | None]] = []
    for outcome, done in zip(slots, events, strict=True):
        finished = _wait(done, deadline, stop)
        results.append((finished, outcome[0] if finished and outcome else None))
    return results


def _wait(done: threading.Event, deadline: float, stop: Callable[[], bool] | None) -> bool:
    """Whether ``done`` is set by ``deadline`` (``time.monotonic()``), giving up early once ``stop()`` is True."""
    while True:
        left = max(0.0, deadline - time.monotonic())
        if stop is None:
            return done.wait(left)
        if done.wait(min(left, 0.1)):
            return True
        if left <= 0.1 or stop():
            return done.is_set()


def cancel_requested_from_now() -> Callable[[], bool] | None:
    """For a blocking wait on an event loop's thread: whether the asyncio task running it has been asked to cancel
    since this call (None outside a task). Under ``asyncio.run`` a Ctrl-C is such a request, and nothing more: it is
    delivered at the task's next ``await``, so a wait that did not ask went on to its whole budget."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return None
    if task is None:
        return None
    base = task.cancelling()
    return lambda: task.cancelling() > base


class OneAtATime:
    """A blocking call (an SDK flush) run by one caller at a time.

    The SDK's batch flush ignores its timeout and exports on the calling thread: against a silent backend each
    bounded flush left its thread blocked behind the previous one's, one more per call. Here a call made while an
    earlier one is still running waits for that one (at most its budget; False if it does not end), then runs its
    own with what is left (spans ended meanwhile are not in the earlier one): one blocked thread at most.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: threading.Event | None = None  # set once the latest call has returned
        in_forked_child(self._forked)

    def _forked(self) -> None:
        """In a forked child: the parent's running call has no thread here; its event would never be set."""
        release_held(self._lock)
        self._running = None

    def run(self, fn: Callable[[float], bool], timeout_s: float) -> bool:
        """``fn(seconds left)`` on this thread once no earlier call is running; False if that takes over
        ``timeout_s`` (``fn`` is not called then). Blocks as long as ``fn`` does: callers bound it."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            with self._lock:
                running = self._running
                if running is None or running.is_set():
                    mine = self._running = threading.Event()
                    break
            if not running.wait(max(0.0, deadline - time.monotonic())):
                return False
        try:
            return fn(max(0.0, deadline - time.monotonic()))
        finally:
            mine.set()


class Spares:
    """Daemon threads started ahead of need, each waiting to run one job of :func:`in_parallel`.

    An exit handler shuts telemetry down while the interpreter finalizes, and Python 3.12 refuses to start
    a thread then ("can't create new thread at interpreter shutdown"; 3.11 and 3.13 allow it): the bounded
    shutdown of a ``configure()`` handle failed at exit and delivered nothing. So ``configure()`` starts
    these at once, and the exit shutdown runs on them. Used once; in a forked child (where they do not
    exist) new threads are started instead.
    """

    def __init__(self, n: int) -> None:
        self._pid = os.getpid()
        self._queues: list[queue.SimpleQueue[Callable[[], None] | None]] = []
        for _ in range(n):
            jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
            threading.Thread(target=_serve_one, args=(jobs,), name="shannon-otel spare", daemon=True).start()
            self._queues.append(jobs)

    def take(self) -> list[queue.SimpleQueue[Callable[[], None] | None]]:
        """The waiting threads' job queues, once, in the process that started them ([] otherwise)."""
        taken, self._queues = self._queues, []
        if os.getpid() != self._pid:
            return []
        return taken


def _serve_one(jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
    job = jobs.get()
    if job is not None:
        job()


def env_batch_setting(name: str, default: int, at_most: int | None = None) -> int:
    """A batch processor's ``OTEL_BSP_*``/``OTEL_BLRP_*`` integer, resolved here rather than by the SDK:
    a value that is not a positive integer (or above ``at_most``, the queue a batch must fit in) is
    ignored with a logged warning and ``default`` (capped at ``at_most``) used, as the
    environment-variable specification asks. The SDK processors raised a bare "schedule_delay_millis
    must be positive." / "max_export_batch_size must be less than or equal to max_queue_size." from
    ``configure()`` instead, naming no variable."""
    value = env_int(name)
    if value is not None and at_most is not None and value > at_most:
        _log.warning("%s=%d is above the queue size (%d); ignored", name, value, at_most)
        value = None
    if value is None:
        return default if at_most is None else min(default, at_most)
    return value


def env_int(name: str, at_most: int | None = None) -> int | None:
    """A positive integer environment variable, or None when unset; an unparsable value (or one above
    ``at_most``) is ignored with a logged warning (what the OTel specification asks of SDKs)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        _log.warning("%s=%r is not a positive integer; ignored", name, raw)
        return None
    if at_most is not None and value > at_most:
        _log.warning("%s=%r is above %d; ignored", name, raw, at_most)
        return None
    return value
