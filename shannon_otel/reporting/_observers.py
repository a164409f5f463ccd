"""The recorder's per-scope observers: each wave, call and saga updates the live counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .._events import CallObserver, SagaObserver, WaveObserver
from .._telemetry import CallOutcome, Outcome
from ..recovery import CircuitOpenError
from ._run import OUTSIDE_WAVES

if TYPE_CHECKING:
    from threading import Lock

    from opentelemetry.trace import SpanContext

    from .._events import (
        CallFinished,
        CallRejected,
        CompensationFinished,
        Degraded,
        FallbackStarted,
        RetryScheduled,
        SagaFinished,
        TaskResult,
    )
    from ..executor._report import WaveReport
    from ._counters import WaveLive, _Op
    from ._recorder import RunRecorder


# The call outcomes whose error reached the caller (the operation spans with status ERROR): a call a breaker
# rejected, or whose error the breaker ignores, raised into its task as a counted failure does.
_RAISED = frozenset({CallOutcome.FAILURE, CallOutcome.REJECTED, CallOutcome.IGNORED})


def current_trace_id() -> str | None:
    """The current span's trace id (hex), if that trace is sampled: a sampled-out one is exported nowhere."""
    ctx = current_sampled()
    return None if ctx is None else f"{ctx.trace_id:032x}"


def current_sampled() -> SpanContext | None:
    """The current span's context, if its trace is sampled."""
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid and ctx.trace_flags.sampled else None


class _WaveObs(WaveObserver):
    """One wave's observer: its live counters are its loop's alone; what waves share takes ``lock``."""

    __slots__ = ("_live", "_lock", "_recorder")

    def __init__(self, recorder: RunRecorder, live: WaveLive, lock: Lock) -> None:
        self._recorder = recorder
        self._live = live
        self._lock = lock

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        self._live.active += 1
        return None

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        live = self._live
        live.active -= 1
        live.done += 1
        with self._lock:
            self._recorder.latency.add(event.duration_s)
        if event.outcome is Outcome.FAILURE or event.outcome is Outcome.TIMEOUT:
            live.failed += 1

    def task_skipped(self, event: TaskResult[Any]) -> None:
        # Ended without starting (never active, no duration), yet done -- and failed if it failed
        # while waiting -- exactly as the wave's report counts it.
        live = self._live
        live.done += 1
        if event.outcome is Outcome.FAILURE or event.outcome is Outcome.TIMEOUT:
            live.failed += 1

    def tasks_skipped(self, first: TaskResult[Any], count: int) -> None:
        live = self._live
        live.done += count
        if first.outcome is Outcome.FAILURE or first.outcome is Outcome.TIMEOUT:
            live.failed += count

    def wave_finished(self, report: WaveReport) -> None:
        with self._lock:
            self._live.report = report
            self._recorder._finished(self._live)


class _CallObs(CallObserver):
    """One call's observer; its operation's counters are shared by the calls of every thread: ``lock``."""

    __slots__ = ("_lock", "_op", "_wave")

    def __init__(self, op: _Op, wave: WaveLive | None, lock: Lock) -> None:
        self._op = op
        self._wave = wave
        self._lock = lock

    def retry_scheduled(self, event: RetryScheduled) -> None:
        with self._lock:
            self._op.retries += 1
            if isinstance(event.error, CircuitOpenError):
                self._op.rejected_retries += 1
            if self._wave is not None:
                self._wave.retries += 1

    def rejected(self, event: CallRejected) -> None:
        with self._lock:
            self._op.rejected += 1
            if self._wave is not None:
                self._wave.rejected += 1

    def degraded(self, event: Degraded) -> None:
        with self._lock:
            self._op.degraded += 1
            if self._wave is not None:
                self._wave.degraded += 1

    def fallback_started(self, event: FallbackStarted) -> Any:
        with self._lock:
            self._op.fallbacks += 1
        return None

    def call_finished(self, event: CallFinished) -> None:
        op = self._op
        label = self._wave.label if self._wave is not None else OUTSIDE_WAVES
        with self._lock:
            op.calls += 1
            op.attempts += event.attempts
            if event.outcome in _RAISED:
                op.failed += 1
            stats = op.latency.get(label)
            if stats is None:
                stats = op.latency[label] = [0, 0.0, -1.0]
                if self._wave is not None:
                    self._wave.ops.append(op)
            stats[0] += 1
            stats[1] += event.duration_s
            if event.duration_s > stats[2]:
                stats[2] = event.duration_s
                span = current_sampled()  # a context variable read: nothing that blocks
                if span is not None:
                    op.slowest[label] = span  # its trace named in the report if exported (RunRecorder.report)
                else:  # no exported trace of the slowest call: a faster call's is not its trace
                    op.slowest.pop(label, None)


class _SagaObs(SagaObserver):
    __slots__ = ("_lock", "_recorder")

    def __init__(self, recorder: RunRecorder, lock: Lock) -> None:
        self._recorder = recorder
        self._lock = lock

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        with self._lock:
            self._recorder.compensations += 1

    def saga_finished(self, event: SagaFinished) -> None:
        if event.outcome is not Outcome.SUCCESS:
            trace_id = current_trace_id()
            with self._lock:
                # rolled back: every compensation succeeded (``SagaResult.rolled_back``); one that failed leaves
                # its step in effect, counted apart (it was counted as rolled back, the run looking clean)
                if event.failed_compensations:
                    self._recorder.failed_rollbacks += 1
                else:
                    self._recorder.rolled_back += 1
                self._recorder.rollbacks.append((event.saga, event.compensated_steps, trace_id))
