"""RunRecorder: a hook that keeps live counters for the display and builds the :class:`RunReport`.

Hooks are called on the thread of the event loop running the work, and one recorder may hear from
several: event loops in several threads sharing a breaker, a policy or the recorder itself. Every
update of what several waves or calls share (the operations, wave names, totals, latency, breakers,
sagas, anomalies) takes the recorder's lock, so no count is lost; a wave's own live counters are
updated only by its loop. Anomalies arrive as :class:`~shannon_otel._events.Anomaly` events from the
anomaly hook of the same entry point. The display reads the counters between refreshes; plain ints
and dicts are enough for that (a torn read shows a count one refresh late, never a wrong total);
:meth:`RunRecorder.report` reads under the lock.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections import Counter, deque
from typing import TYPE_CHECKING

from .._events import (
    Anomaly,
    BreakerRegistered,
    BreakerTransition,
    CallObserver,
    CallStarted,
    Hook,
    SagaObserver,
    SagaStarted,
    WaveObserver,
    WaveStarted,
)
from .._fork import in_forked_child, release_held
from .._stats import LogHistogram
from .._telemetry import (
    TASK_COST_ATTR,
    TASK_INPUT_TOKENS,
    TASK_OUTPUT_TOKENS,
    BreakerState,
)
from .._validate import check_number
from ._breakers import BreakerCount
from ._counters import WaveLive, _Op
from ._observers import _CallObs, _SagaObs, _WaveObs, current_trace_id
from ._run import OperationStats, RunReport

if TYPE_CHECKING:
    from .._tail import TailSampler

_KEEP = 1000  # newest transitions, rollbacks and anomalies kept (bounded memory for --duration runs)
_WAVE: contextvars.ContextVar[WaveLive | None] = contextvars.ContextVar("shannon_otel_cli_wave", default=None)


class RunRecorder(Hook):
    """Pass it in ``hooks=`` of every wave, policy, breaker and saga of a run; then :meth:`report`.

    Per-wave detail is kept for the newest ``max_waves`` waves (a running wave is never dropped: the
    oldest finished ones go first), running totals for all of them, so memory does not grow with the
    number of waves. A wave's label is its name, ``name#n`` for the n-th run of a name; the count of a
    name none of the kept waves has is forgotten (a name made per request would pile up), so its
    next run is labelled ``name`` again. What grows with the *names* used, for the whole run: one
    entry of totals per operation name (``RunReport.operations``, ~0.6 KB each) and one state per
    breaker name (``breakers``) with its transitions' tally (``RunReport.breakers``, up to ~5 KB: the newest 100
    outage durations); keep those names a fixed set (the code path, not a request id).

    ``tail_sampler``: the :class:`~shannon_otel.TailSampler` of the run's tracer provider, if any. The report then
    names (``OperationStats.trace_by_wave``) only traces it exported or is sure to (:meth:`TailSampler.exported`, the
    rule of its exemplar filter), asked as :meth:`report` is called: a healthy slow call's trace it dropped, or has not
    decided yet, is named nowhere. Without it, a trace id in the report may be one the sampler dropped ("trace not
    found" in Jaeger). A sampler elsewhere (the collector's tail sampling) cannot be asked: the report cannot know.
    """

    def __init__(self, *, max_waves: int = 500, tail_sampler: TailSampler | None = None) -> None:
        check_number("max_waves", max_waves, low=1, integer=True)
        if tail_sampler is not None:
            from .._tail import TailSampler  # the SDK's trace module: loaded only for a recorder given a sampler

            if not isinstance(tail_sampler, TailSampler):
                raise TypeError(f"tail_sampler must be a shannon_otel.TailSampler or None, got {tail_sampler!r}")
        self._tail_sampler = tail_sampler
        self.waves: list[WaveLive] = []  # the newest ``max_waves``; older ones live on in ``totals``
        self.max_waves = max_waves
        self.totals: Counter[str] = Counter()  # every finished wave: "waves", "retries", each outcome
        self.sums: dict[str, float] = {}  # every finished wave: total tokens and cost, by measurement
        self.breakers: dict[str, BreakerState] = {}
        self.transitions: deque[BreakerTransition] = deque(maxlen=_KEEP)  # the newest; counted in full in:
        self._counts: dict[str, BreakerCount] = {}
        self.latency: LogHistogram = LogHistogram()  # every started task's duration, all waves
        self.compensations: int = 0
        self.rolled_back: int = 0  # failed sagas whose every compensation succeeded
        self.failed_rollbacks: int = 0  # failed sagas with a compensation that failed (a step left in effect)
        self.rollbacks: deque[tuple[str, tuple[str, ...], str | None]] = deque(maxlen=_KEEP)  # the newest
        self._anomalies: deque[tuple[str | None, Anomaly]] = deque(maxlen=_KEEP)  # (wave label, event)
        self._lock = threading.Lock()
        in_forked_child(self._forked)  # a child forked while another thread held it would wait on it for good
        self._ops: dict[str, _Op] = {}
        # name -> [runs seen, runs among ``waves``]: a name none of the kept waves has is forgotten (its
        # numbering starts again), so wave names made per request do not pile up here for good.
        self._names: dict[str, list[int]] = {}

    def _forked(self) -> None:
        release_held(self._lock)

    # ------------------------------------------------------------------ hook
    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        trace_id = current_trace_id()
        with self._lock:
            runs = self._names.get(event.wave)
            if runs is None:
                runs = self._names[event.wave] = [0, 0]
            runs[0] += 1
            runs[1] += 1
            label = event.wave if runs[0] == 1 else f"{event.wave}#{runs[0]}"
            live = WaveLive(label, event.size, trace_id=trace_id, name=event.wave)
            self.waves.append(live)
        _WAVE.set(live)  # runs in the context the wave's tasks inherit
        return _WaveObs(self, live, self._lock)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        op = self._ops.get(event.operation)
        if op is None:
            with self._lock:
                op = self._ops.get(event.operation)
                if op is None:
                    op = self._ops[event.operation] = _Op()
        return _CallObs(op, _WAVE.get(), self._lock)

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        return _SagaObs(self, self._lock)

    def breaker_registered(self, event: BreakerRegistered) -> None:
        with self._lock:
            self.breakers.setdefault(event.breaker, event.state)

    def breaker_transition(self, event: BreakerTransition) -> None:
        with self._lock:
            self.breakers[event.breaker] = event.to_state
            self.transitions.append(event)
            count = self._counts.get(event.breaker)
            if count is None:
                count = self._counts[event.breaker] = BreakerCount(event.breaker)
            count.add(event)

    def _finished(self, live: WaveLive) -> None:
        """Fold a finished wave into the totals; called with the lock held."""
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
            live = waves.pop(i)
            gone = live.label
            runs = self._names[live.name]
            runs[1] -= 1
            if not runs[1]:
                del self._names[live.name]
            for op in live.ops:
                op.latency.pop(gone, None)
                op.slowest.pop(gone, None)
            live.ops = []

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
        """The anomalies heard so far (severity set; the newest 1,000), oldest first."""
        with self._lock:
            return [event for _, event in self._anomalies]

    # ------------------------------------------------------------------ totals
    @property
    def retries(self) -> int:
        """Every retry heard so far, inside waves or not, finished or not (the report's per-operation sum);
        ``totals["retries"]`` counts only those of finished waves."""
        with self._lock:
            return sum(op.retries for op in self._ops.values())

    def report(self) -> RunReport:
        """The run so far as a :class:`RunReport` (call it when the run is over for final numbers)."""
        with self._lock:
            counted = [
                (OperationStats(
                    name, op.calls, op.attempts, op.retries, op.rejected_retries, op.rejected, op.failed,
                    op.degraded, op.fallbacks,
                    {w: (int(s[0]), s[1] / s[0]) for w, s in op.latency.items() if s[0]},
                ), dict(op.slowest))
                for name, op in self._ops.items()
            ]
            done = [w for w in self.waves if w.report is not None]
            found = list(self._anomalies)
            transitions = tuple(self.transitions)
            tallies = {name: count.tally() for name, count in self._counts.items()}
            compensations, rolled_back, failed_rollbacks = self.compensations, self.rolled_back, self.failed_rollbacks
        sampler = self._tail_sampler  # asked outside the recorder's lock: it takes its own
        operations = {
            stats.operation: dataclasses.replace(stats, trace_by_wave={
                w: f"{span.trace_id:032x}" for w, span in slowest.items() if sampler is None or sampler.exported(span)
            })
            for stats, slowest in counted
        }
        return RunReport(
            tuple(w.report for w in done if w.report is not None), tuple(w.label for w in done), operations,
            transitions, compensations, rolled_back,
            tuple(event for _, event in found), tuple(wave for wave, _ in found), failed_rollbacks, tallies,
        )
