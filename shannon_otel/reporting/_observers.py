"""The recorder's per-scope observers: each wave, call and saga updates the live counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .._events import CallObserver, SagaObserver, WaveObserver
from .._telemetry import CallOutcome, Outcome
from ..recovery import CircuitOpenError
from ._run import OUTSIDE_WAVES

if TYPE_CHECKING:
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


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


class _WaveObs(WaveObserver):
    __slots__ = ("_live", "_recorder")

    def __init__(self, recorder: RunRecorder, live: WaveLive) -> None:
        self._recorder = recorder
        self._live = live

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        self._live.active += 1
        return None

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        live = self._live
        live.active -= 1
        live.done += 1
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

    def wave_finished(self, report: WaveReport) -> None:
        self._live.report = report
        self._recorder._finished(self._live)


class _CallObs(CallObserver):
    __slots__ = ("_op", "_wave")

    def __init__(self, op: _Op, wave: WaveLive | None) -> None:
        self._op = op
        self._wave = wave

    def retry_scheduled(self, event: RetryScheduled) -> None:
        self._op.retries += 1
        if isinstance(event.error, CircuitOpenError):
            self._op.rejected_retries += 1
        if self._wave is not None:
            self._wave.retries += 1

    def rejected(self, event: CallRejected) -> None:
        self._op.rejected += 1
        if self._wave is not None:
            self._wave.rejected += 1

    def degraded(self, event: Degraded) -> None:
        self._op.degraded += 1
        if self._wave is not None:
            self._wave.degraded += 1

    def fallback_started(self, event: FallbackStarted) -> Any:
        self._op.fallbacks += 1
        return None

    def call_finished(self, event: CallFinished) -> None:
        op = self._op
        op.calls += 1
        op.attempts += event.attempts
        if event.outcome is CallOutcome.FAILURE:
            op.failed += 1
        label = self._wave.label if self._wave is not None else OUTSIDE_WAVES
        stats = op.latency.get(label)
        if stats is None:
            stats = op.latency[label] = [0, 0.0, -1.0]
        stats[0] += 1
        stats[1] += event.duration_s
        if event.duration_s > stats[2]:
            stats[2] = event.duration_s
            trace_id = current_trace_id()
            if trace_id is not None:
                op.slowest[label] = trace_id


class _SagaObs(SagaObserver):
    __slots__ = ("_recorder",)

    def __init__(self, recorder: RunRecorder) -> None:
        self._recorder = recorder

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        self._recorder.compensations += 1

    def saga_finished(self, event: SagaFinished) -> None:
        if event.outcome is not Outcome.SUCCESS:
            self._recorder.rolled_back += 1
            self._recorder.rollbacks.append((event.saga, event.compensated_steps, current_trace_id()))
