"""The anomaly hook's tick aggregation: per wave name and per operation, O(1) state updated by
the per-run observers, scored through the hook when a tick closes (see ``_feed``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .._events import CallObserver, WaveObserver
from .._telemetry import CallOutcome, Outcome
from ._signals import ERROR_RATE, LATENCY, RETRY_RATE, THROUGHPUT

if TYPE_CHECKING:
    from .._events import AttemptFinished, CallFinished, CallRejected, Hook, TaskResult
    from ..executor._report import WaveReport
    from ._feed import AnomalyHook

_FAILED = frozenset({Outcome.FAILURE, Outcome.TIMEOUT})
CAP = 5.0  # a task counts in a tick's mean latency for at most CAP x the previous tick's mean (see _flush)


class _WaveTick:
    """The open tick of one wave name, shared by all its runs: O(1) state (counts, latency sum, the
    slowest task's span, the last failed task's span). ``active`` runs; while none is, the tick's clock is paused."""

    __slots__ = ("active", "cap", "end", "failed", "failed_span", "finished", "idle_since", "latency_sum", "slowest",
                 "slowest_span", "start")

    def __init__(self, now: float, tick_s: float) -> None:
        self.start, self.end, self.idle_since = now, now + tick_s, now
        self.active = self.finished = self.failed = 0
        self.latency_sum = self.slowest = 0.0
        self.slowest_span: trace.Span | None = None
        self.failed_span: trace.Span | None = None  # the error_rate sample's culprit: a task that failed in it
        self.cap = math.inf  # no tick yet: no cap

    def resume(self, now: float) -> None:
        if not self.active:  # idle time between runs is no part of the tick (throughput stays a rate)
            paused = now - self.idle_since
            self.start += paused
            self.end += paused
        self.active += 1

    def close(self, now: float, tick_s: float) -> None:
        self.start, self.end = now, now + tick_s
        self.finished = self.failed = 0
        self.latency_sum = self.slowest = 0.0
        self.slowest_span = self.failed_span = None


class _WaveFeed(WaveObserver):
    """Per wave run: updates its wave name's shared tick."""

    __slots__ = ("_hook", "_sinks", "_tick", "_wave")

    def __init__(self, hook: AnomalyHook, wave: str, tick: _WaveTick, sinks: tuple[Hook, ...]) -> None:
        self._hook, self._wave, self._tick, self._sinks = hook, wave, tick, sinks

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        if event.outcome is Outcome.CANCELLATION:  # no finished work: its duration is no latency, nor it a
            return  # completion (a run cancelled early read as a critical fall of latency and rise of throughput)
        tick, hook = self._tick, self._hook
        duration = event.duration_s
        span = trace.get_current_span()
        with hook._lock:  # the tick is shared by every run of the wave name, threads included
            now = hook._ticker()
            # The clock went back: the tick's length is unknown, so it is dropped and the next starts now, as if
            # this task closed it (waiting for its old end would score nothing until then). The hook switched off
            # (``enabled``) while this run goes on: its tasks are counted in no tick (a run that never ends, a
            # stream, scored on), and the tick is dropped alike (counted on after, it read the time off as a fall
            # of throughput).
            if now < tick.start or not hook._enabled:
                tick.close(now, hook.tick_s)
                return
            tick.finished += 1
            if event.outcome in _FAILED:
                tick.failed += 1
                tick.failed_span = span
            tick.latency_sum += duration if duration < tick.cap else tick.cap
            if tick.slowest_span is None or duration > tick.slowest:
                tick.slowest, tick.slowest_span = duration, span
            if now < tick.end or tick.finished < hook.min_tick_tasks:
                return
            n, elapsed, slowest, failed_span = tick.finished, now - tick.start, tick.slowest_span, tick.failed_span
            failed, mean = tick.failed, tick.latency_sum / n
            if mean > 0.0:
                tick.cap = CAP * mean
            tick.close(now, hook.tick_s)  # before scoring: a callback may run more tasks of this wave
        # scored outside the lock: the detector has its own, and a callback may run this wave again
        self._flush(now, n, elapsed, failed, mean, slowest, failed_span)

    def wave_finished(self, report: WaveReport) -> None:
        tick = self._tick
        with self._hook._lock:
            tick.active -= 1
            if not tick.active:
                tick.idle_since = self._hook._ticker()

    def _flush(self, now: float, n: int, elapsed: float, failed: int, mean: float,
               slowest: trace.Span | None, failed_span: trace.Span | None) -> None:
        """Score a closed tick (taken under the hook's lock by ``task_finished``)."""
        hook, wave = self._hook, self._wave
        if LATENCY in hook.signals:
            # One sample per tick, the mean task latency: single task durations are too noisy to alert on
            # (a new maximum turns up every few hundred tasks of pure noise); a tick's mean is not, once each
            # task counts for at most CAP x the previous tick's mean (winsorized, O(1)): one slow task (a GC
            # pause, a cold cache) otherwise moves a mean of a hundred like a slowdown of all of them. A real
            # slowdown moves every task, and a larger one raises the cap by CAP a tick (set in
            # task_finished). The slowest task's span stays the event's cause (_exported).
            hook._score(wave, LATENCY, mean, now, _exported(slowest), self._sinks)
        if ERROR_RATE in hook.signals:
            # The tick's last failed task is its culprit: the task that closed the tick may be a success.
            hook._score(wave, ERROR_RATE, failed / n, now, failed_span, self._sinks)
        if THROUGHPUT in hook.signals and elapsed > 0.0:
            hook._score(wave, THROUGHPUT, n / elapsed, now, None, self._sinks)


def _exported(slowest: trace.Span | None) -> trace.Span | None:
    """The tick's slowest task span as the latency anomaly's cause: while it is open (the event goes on it), or
    ended in the run current at detection (a sibling of the current span, under the same open wave span: the
    event goes into its part of the trace); ``None`` (the current span's ids) when it ended in another run. A tick
    spans runs of its wave: the slowest task of an earlier run, healthy, ended in a trace (or, for the in-process
    ``TailSampler``, a part of one: each run under another TracerProvider's span or a remote parent is decided
    alone, the trace id shared) decided without the event, which a tail sampler keeps only at its healthy ratio, so
    the ``Anomaly`` named a span exported nowhere. A failed task's trace, and that of a call retried after a failed
    or refused try, is kept whatever the ratio (an error in it): those culprits stay named."""
    if slowest is None or slowest.is_recording():
        return slowest
    parent = getattr(slowest, "parent", None)
    current = getattr(trace.get_current_span(), "parent", None)
    if parent is not None and current is not None and (parent.trace_id, parent.span_id) == (
            current.trace_id, current.span_id):
        return slowest
    return None


class _OpTick:
    __slots__ = ("calls", "end", "retried_span", "retries")

    def __init__(self, end: float) -> None:
        self.calls = self.retries = 0
        self.end = end
        # the retry_rate sample's culprit: a call retried in it after a failed or refused try (an error in its trace, so
        # a tail sampler keeps it; a call whose extra attempts were hedges alone has none)
        self.retried_span: trace.Span | None = None


class _CallFeed(CallObserver):
    __slots__ = ("_failed", "_hook", "_op", "_operation", "_sinks")

    def __init__(self, hook: AnomalyHook, operation: str, op: _OpTick, sinks: tuple[Hook, ...]) -> None:
        self._hook, self._operation, self._op, self._sinks = hook, operation, op, sinks
        self._failed = False  # a try of this call failed, timed out or was refused

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None:
        if event.outcome in _FAILED:
            self._failed = True

    def rejected(self, event: CallRejected) -> None:
        self._failed = True

    def call_finished(self, event: CallFinished) -> None:
        if event.outcome is CallOutcome.CANCELLATION:  # not a finished call (as a cancelled task, above)
            return
        op, hook = self._op, self._hook
        with hook._lock:  # shared by every call of the operation, threads included (see _WaveFeed)
            now = hook._ticker()
            if now < op.end - hook.tick_s or not hook._enabled:  # the clock went back, the hook is off: the tick
                # is dropped (see _WaveFeed)
                op.calls = op.retries = 0
                op.retried_span = None
                op.end = now + hook.tick_s
                return
            op.calls += 1
            if event.attempts > 1:
                op.retries += event.attempts - 1
                if self._failed:  # a Hedge's extra attempts alone: a healthy trace, dropped by a tail sampler
                    op.retried_span = trace.get_current_span()  # the call's span
            if now < op.end or op.calls < hook.min_tick_tasks:
                return
            rate, retried = op.retries / op.calls, op.retried_span
            op.calls = op.retries = 0
            op.retried_span = None
            op.end = now + hook.tick_s
        hook._score(self._operation, RETRY_RATE, rate, now, retried, self._sinks)
