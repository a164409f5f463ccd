"""RunRecorder: a hook that keeps live counters for the display and builds the :class:`RunReport`.

Every method runs on the event loop thread (hooks are called there). Anomalies arrive as
:class:`~shannon_otel._events.Anomaly` events from the anomaly hook of the same entry point. The
display reads the counters between refreshes; plain ints and dicts are enough for that (a torn read
shows a count one refresh late, never a wrong total); the anomaly list is read under a lock.
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .._events import (
    Anomaly,
    BreakerRegistered,
    BreakerTransition,
    CallFinished,
    CallObserver,
    CallRejected,
    CallStarted,
    CompensationFinished,
    Degraded,
    FallbackStarted,
    Hook,
    RetryScheduled,
    SagaFinished,
    SagaObserver,
    SagaStarted,
    TaskResult,
    WaveObserver,
    WaveStarted,
)
from .._stats import LogHistogram
from .._telemetry import (
    TASK_COST_ATTR,
    TASK_INPUT_TOKENS,
    TASK_OUTPUT_TOKENS,
    BreakerState,
    CallOutcome,
    Outcome,
)
from ..recovery import CircuitOpenError
from ._run import OperationStats, RunReport

if TYPE_CHECKING:
    from ..executor._report import WaveReport

_KEEP = 1000  # newest transitions, rollbacks and anomalies kept (bounded memory for --duration runs)
_WAVE: contextvars.ContextVar[WaveLive | None] = contextvars.ContextVar("shannon_otel_cli_wave", default=None)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


@dataclass(slots=True)
class WaveLive:
    """Live counters of one wave run; ``label`` is unique in the run (``name#n`` when a name repeats)."""

    label: str
    size: int
    done: int = 0
    failed: int = 0
    active: int = 0
    retries: int = 0
    rejected: int = 0
    degraded: int = 0
    report: WaveReport | None = None
    trace_id: str | None = None


@dataclass(slots=True)
class _Op:
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    rejected_retries: int = 0
    rejected: int = 0
    failed: int = 0
    degraded: int = 0
    fallbacks: int = 0
    latency: dict[str, list[float]] = field(default_factory=dict)  # wave label -> [calls, sum, max]
    slowest: dict[str, str] = field(default_factory=dict)  # wave label -> trace id


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
        label = self._wave.label if self._wave is not None else "-"
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


class RunRecorder(Hook):
    """Pass it in ``hooks=`` of every wave, policy, breaker and saga of a run; then :meth:`report`.

    Memory stays bounded however long the run: per-wave detail is kept for the newest ``max_waves``
    waves (a running wave is never dropped: the oldest finished ones go first), running totals for
    all of them.
    """

    def __init__(self, *, max_waves: int = 500) -> None:
        self.waves: list[WaveLive] = []  # the newest ``max_waves``; older ones live on in ``totals``
        self.max_waves = max_waves
        self.totals: Counter[str] = Counter()  # every finished wave: "waves", "retries", each outcome
        self.sums: dict[str, float] = {}  # every finished wave: total tokens and cost, by measurement
        self.breakers: dict[str, BreakerState] = {}
        self.transitions: deque[BreakerTransition] = deque(maxlen=_KEEP)
        self.latency = LogHistogram()  # every started task's duration, all waves
        self.compensations = 0
        self.rolled_back = 0
        self.rollbacks: deque[tuple[str, tuple[str, ...], str | None]] = deque(maxlen=_KEEP)  # the newest
        self._anomalies: deque[tuple[str | None, Anomaly]] = deque(maxlen=_KEEP)  # (wave label, event)
        self._lock = threading.Lock()
        self._ops: dict[str, _Op] = {}
        self._names: dict[str, int] = {}

    # ------------------------------------------------------------------ hook
    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        seen = self._names[event.wave] = self._names.get(event.wave, 0) + 1
        label = event.wave if seen == 1 else f"{event.wave}#{seen}"
        live = WaveLive(label, event.size or 0, trace_id=current_trace_id())
        self.waves.append(live)
        _WAVE.set(live)  # runs in the context the wave's tasks inherit
        return _WaveObs(self, live)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        op = self._ops.get(event.operation)
        if op is None:
            op = self._ops[event.operation] = _Op()
        return _CallObs(op, _WAVE.get())

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        return _SagaObs(self)

    def breaker_registered(self, event: BreakerRegistered) -> None:
        self.breakers.setdefault(event.breaker, event.state)

    def breaker_transition(self, event: BreakerTransition) -> None:
        self.breakers[event.breaker] = event.to_state
        self.transitions.append(event)

    def _finished(self, live: WaveLive) -> None:
        report = live.report
        assert report is not None
        totals = self.totals
        totals["waves"] += 1
        totals["retries"] += live.retries
        for outcome, n in report.counts.items():
            totals[outcome.value] += n
        for name in (TASK_INPUT_TOKENS, TASK_OUTPUT_TOKENS, TASK_COST_ATTR):
            summary = report.measurements.get(name)
            if summary is not None:
                self.sums[name] = self.sums.get(name, 0.0) + summary.total
        self._evict()

    def _evict(self) -> None:
        """Drop the oldest finished waves beyond ``max_waves``, wherever they sit: a long wave still
        running (e.g. the outer wave of nested ones) keeps its place but holds nobody back. The scan
        passes only running waves, of which there are few (those running at once)."""
        waves = self.waves
        i = 0
        while len(waves) > self.max_waves:
            while i < len(waves) and waves[i].report is None:
                i += 1
            if i == len(waves):
                return  # every wave left is running: each is needed for its live counters
            gone = waves.pop(i).label
            for op in self._ops.values():
                op.latency.pop(gone, None)
                op.slowest.pop(gone, None)

    # ------------------------------------------------------------------ anomalies
    def anomaly(self, event: Anomaly) -> None:
        """Record an anomaly (an event with a severity) with the wave it was found in: the label of the
        wave whose task or call closed the tick, or ``None`` outside a wave."""
        if event.severity is None:
            return  # an ordinary score
        wave = _WAVE.get()
        with self._lock:
            self._anomalies.append((wave.label if wave is not None else None, event))

    @property
    def anomalies(self) -> list[Anomaly]:
        with self._lock:
            return [event for _, event in self._anomalies]

    # ------------------------------------------------------------------ totals
    @property
    def retries(self) -> int:
        return sum(op.retries for op in self._ops.values())

    def report(self) -> RunReport:
        """The run so far as a :class:`RunReport` (call it when the run is over for final numbers)."""
        operations = {
            name: OperationStats(
                name, op.calls, op.attempts, op.retries, op.rejected_retries, op.rejected, op.failed,
                op.degraded, op.fallbacks,
                {w: (int(s[0]), s[1] / s[0]) for w, s in op.latency.items() if s[0]},
                dict(op.slowest),
            )
            for name, op in self._ops.items()
        }
        done = [w for w in self.waves if w.report is not None]
        with self._lock:
            found = list(self._anomalies)
        return RunReport(
            tuple(w.report for w in done if w.report is not None), tuple(w.label for w in done), operations,
            tuple(self.transitions), self.compensations, self.rolled_back,
            tuple(event for _, event in found), tuple(wave for wave, _ in found),
        )
