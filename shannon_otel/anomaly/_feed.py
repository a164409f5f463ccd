"""The feed: an event hook that turns executor / policy events into detector samples.

Signals, each its own series per wave name (or operation name for retries), one sample per tick:

* ``latency``: mean task duration over the tick;
* ``error_rate``: fraction of tasks that failed or timed out;
* ``throughput``: tasks finished per second while a run of the wave was active;
* ``retry_rate``: mean retries (attempts - 1) per protected call.

Tick state lives on the hook, one per wave name (and per operation): consecutive and concurrent
runs of the same wave share it, so waves shorter than a tick are scored too. A tick closes when
``tick_s`` has passed (time with no run of that wave active does not count) and at least
``min_tick_tasks`` tasks (or calls) finished in it; the task that closes it scores it in its own
context. A tick still open when a wave ends is continued by the next run of that wave name.

Per task the observer updates a few numbers and reads the clock. A latency anomaly becomes a
span event on the tick's slowest task span if that span is still open (always true when that
task closed the tick), otherwise on the span current at detection; the ``Anomaly`` handed to
``on_anomaly`` carries the ids of the slowest task's span. Rate anomalies (``error_rate``,
``throughput``, ``retry_rate``) have no single culprit: their span event and ids are those of
the span current at detection (the task or call that closed the tick).

The detector scores likelihood against the series' own history: an anomaly that keeps recurring
becomes part of that history and stops being flagged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from .. import _clock
from .. import _telemetry as tm
from .._events import CallFinished, CallObserver, CallStarted, Hook, TaskResult, WaveObserver, WaveStarted
from .._telemetry import Outcome, Severity
from .._validate import check_number
from ._config import DetectorConfig
from ._detector import AnomalyDetector
from ._export import register

if TYPE_CHECKING:
    from ..executor._report import WaveReport

_log = logging.getLogger(__name__)
LATENCY, ERROR_RATE, THROUGHPUT, RETRY_RATE = "latency", "error_rate", "throughput", "retry_rate"
_WAVE_SIGNALS = (LATENCY, ERROR_RATE, THROUGHPUT)
_FAILED = frozenset({Outcome.FAILURE, Outcome.TIMEOUT})

# The hook watches per-tick aggregates of one process, not NAB's curated series: no daily profile
# (buckets=1: a 30-tick sliding window adapts to slow changes), a short warm-up, and the range rule
# only for values far beyond what was seen (with NAB's 2% it flags i.i.d. noise whenever a new maximum
# appears; measured on 40 x 2,000 clean ticks: 0.18 false events per series per 2,000 ticks at 0.5).
HOOK_DEFAULTS = DetectorConfig(buckets=1, min_history=30, spatial_tolerance=0.5)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One detected anomaly, as handed to ``on_anomaly`` callbacks."""

    series: str  # wave or operation name
    signal: str  # "latency", "error_rate", "throughput" or "retry_rate"
    score: float  # detector score in [0, 1] (see DetectorConfig)
    severity: Severity
    value: float  # the sample that scored
    # Hex ids of the tick's slowest task span for latency; of the span current at detection (the
    # task or call that closed the tick) for the rate signals. None when there was no span.
    trace_id: str | None  # 32 hex digits
    span_id: str | None  # 16 hex digits
    time: float  # the hook's clock


class AnomalyHook(Hook):
    """Feeds one :class:`AnomalyDetector` from waves and protected calls; exports its scores.

    ``enabled=False`` makes every ``*_started`` return ``None`` (zero cost). ``signals``
    restricts what is watched. A tick closes once ``tick_s`` seconds have passed and at least
    ``min_tick_tasks`` tasks (calls, for ``retry_rate``) finished in it: a mean over a handful
    of tasks is as noisy as a single task duration. ``clock`` (seconds; only differences matter
    unless ``config`` has a seasonal profile, which :data:`HOOK_DEFAULTS` has not) and the
    detector config make the hook deterministic under test. Raises ``ValueError`` (``TypeError``
    for a non-int ``min_tick_tasks``) on a bad argument; never raises into the executor: a
    failing ``on_anomaly`` callback is logged and ignored. Call it from one event loop (the
    gauge may be read from any thread); the hook is held weakly by its provider's gauge.
    """

    __slots__ = ("__weakref__", "_clock", "_counter", "_detector", "_keys", "_lock", "_on_anomaly", "_ops",
                 "_waves", "enabled", "min_tick_tasks", "signals", "tick_s")

    def __init__(
        self,
        config: DetectorConfig | None = None,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        on_anomaly: Callable[[Anomaly], object] | None = None,
        tick_s: float = 10.0,
        min_tick_tasks: int = 8,
        signals: Iterable[str] = (LATENCY, ERROR_RATE, THROUGHPUT, RETRY_RATE),
        clock: Callable[[], float] = _clock.wall,
        enabled: bool = True,
    ) -> None:
        if not (isinstance(tick_s, (int, float)) and 0.0 < tick_s < math.inf):
            raise ValueError(f"tick_s must be a number in (0, inf), got {tick_s!r}")
        check_number("min_tick_tasks", min_tick_tasks, low=1, integer=True)
        self.signals = frozenset(signals)
        unknown = self.signals - {LATENCY, ERROR_RATE, THROUGHPUT, RETRY_RATE}
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; allowed: {LATENCY}, {ERROR_RATE}, "
                             f"{THROUGHPUT}, {RETRY_RATE}")
        self._detector = AnomalyDetector(config if config is not None else HOOK_DEFAULTS)
        self._on_anomaly = on_anomaly
        self._clock = clock
        self.tick_s = float(tick_s)
        self.min_tick_tasks = min_tick_tasks
        self.enabled = enabled
        self._keys: dict[str, tuple[str, str]] = {}  # detector key -> (series, signal)
        self._waves: dict[str, _WaveTick] = {}
        self._ops: dict[str, _OpTick] = {}
        # The gauge callback runs on the metric reader's thread; scoring runs on the event loop.
        self._lock = threading.Lock()
        self._counter = register(self, meter_provider)

    @property
    def detector(self) -> AnomalyDetector:
        return self._detector

    # ------------------------------------------------------------------ hook protocol
    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        if not self.enabled:
            return None
        now = self._clock()
        tick = self._waves.get(event.wave)
        if tick is None:
            if len(self._waves) >= 2 * self._detector.config.max_series:
                self._forget()
            tick = self._waves[event.wave] = _WaveTick(now, self.tick_s)
        tick.resume(now)
        return _WaveFeed(self, event.wave, tick)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        if not self.enabled or RETRY_RATE not in self.signals:
            return None
        op = self._ops.get(event.operation)
        if op is None:
            if len(self._ops) >= 2 * self._detector.config.max_series:
                self._forget()
            op = self._ops[event.operation] = _OpTick(self._clock() + self.tick_s)
        return _CallFeed(self, event.operation, op)

    # ------------------------------------------------------------------ scoring
    def _key(self, series: str, signal: str) -> str:
        key = f"{signal}\x00{series}"
        if key not in self._keys:
            if len(self._keys) >= 2 * self._detector.config.max_series:  # forget evicted series
                tracked = set(self._detector.series())
                self._keys = {k: v for k, v in self._keys.items() if k in tracked}
            self._keys[key] = (series, signal)
        return key

    def _forget(self) -> None:
        """Drop the tick state of names the detector no longer tracks (cardinality bound)."""
        tracked = set(self._detector.series())
        self._ops = {k: v for k, v in self._ops.items() if f"{RETRY_RATE}\x00{k}" in tracked}
        self._waves = {k: v for k, v in self._waves.items()
                       if v.active or any(f"{s}\x00{k}" in tracked for s in _WAVE_SIGNALS)}

    def _score(self, series: str, signal: str, value: float, now: float, cause: trace.Span | None) -> None:
        with self._lock:
            score = self._detector.update(self._key(series, signal), value, now)
        if score is not None and score >= self._detector.config.warning:
            self._report(series, signal, score, value, now, cause)

    def _report(self, series: str, signal: str, score: float, value: float, now: float,
                cause: trace.Span | None) -> None:
        severity = self._detector.config.severity(score)
        assert severity is not None
        self._counter.add(1, {tm.ANOMALY_SERIES: series, tm.ANOMALY_SIGNAL: signal,
                              tm.ANOMALY_SEVERITY: severity.value})
        current = trace.get_current_span()
        span = cause if cause is not None and cause.is_recording() else current
        if span.is_recording():
            span.add_event(tm.EVENT_ANOMALY, {
                tm.ANOMALY_SERIES: series, tm.ANOMALY_SIGNAL: signal, tm.ANOMALY_SCORE_ATTR: score,
                tm.ANOMALY_SEVERITY: severity.value, tm.ANOMALY_VALUE: value,
            })
        if self._on_anomaly is None:
            return
        ctx = (cause if cause is not None else current).get_span_context()
        trace_id = span_id = None
        if ctx.is_valid:
            trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        try:
            self._on_anomaly(Anomaly(series, signal, score, severity, value, trace_id, span_id, now))
        except Exception:
            _log.exception("on_anomaly callback failed")

    def _observe(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        """The gauge points of this hook; called by the provider's shared gauge (see ``_export``)."""
        with self._lock:
            scores = [(self._keys[k], self._detector.last_score(k)) for k in self._detector.series()]
        return [
            metrics.Observation(score, {tm.ANOMALY_SERIES: series, tm.ANOMALY_SIGNAL: signal})
            for (series, signal), score in scores if score is not None
        ]


class _WaveTick:
    """The open tick of one wave name, shared by all its runs: O(1) state (counts, latency sum, the
    slowest task's span). ``active`` runs; while none is, the tick's clock is paused."""

    __slots__ = ("active", "end", "failed", "finished", "idle_since", "latency_sum", "slowest", "slowest_span",
                 "start")

    def __init__(self, now: float, tick_s: float) -> None:
        self.start, self.end, self.idle_since = now, now + tick_s, now
        self.active = self.finished = self.failed = 0
        self.latency_sum = self.slowest = 0.0
        self.slowest_span: trace.Span | None = None

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
        self.slowest_span = None


class _WaveFeed(WaveObserver):
    """Per wave run: updates its wave name's shared tick."""

    __slots__ = ("_hook", "_tick", "_wave")

    def __init__(self, hook: AnomalyHook, wave: str, tick: _WaveTick) -> None:
        self._hook, self._wave, self._tick = hook, wave, tick

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        tick, hook = self._tick, self._hook
        tick.finished += 1
        if event.outcome in _FAILED:
            tick.failed += 1
        duration = event.duration_s
        tick.latency_sum += duration
        if tick.slowest_span is None or duration > tick.slowest:
            tick.slowest, tick.slowest_span = duration, trace.get_current_span()
        now = hook._clock()
        if now >= tick.end and tick.finished >= hook.min_tick_tasks:
            self._flush(now)

    def wave_finished(self, report: WaveReport) -> None:
        tick = self._tick
        tick.active -= 1
        if not tick.active:
            tick.idle_since = self._hook._clock()

    def _flush(self, now: float) -> None:
        hook, wave, tick = self._hook, self._wave, self._tick
        n, elapsed, slowest = tick.finished, now - tick.start, tick.slowest_span
        failed, latency_sum = tick.failed, tick.latency_sum
        tick.close(now, hook.tick_s)  # before scoring: a callback may run more tasks of this wave
        if LATENCY in hook.signals:
            # One sample per tick, the mean task latency: single task durations are too noisy to alert on
            # (a new maximum turns up every few hundred tasks of pure noise); a tick's mean is not.
            hook._score(wave, LATENCY, latency_sum / n, now, slowest)
        if ERROR_RATE in hook.signals:
            hook._score(wave, ERROR_RATE, failed / n, now, None)
        if THROUGHPUT in hook.signals and elapsed > 0.0:
            hook._score(wave, THROUGHPUT, n / elapsed, now, None)


class _OpTick:
    __slots__ = ("calls", "end", "retries")

    def __init__(self, end: float) -> None:
        self.calls = self.retries = 0
        self.end = end


class _CallFeed(CallObserver):
    __slots__ = ("_hook", "_op", "_operation")

    def __init__(self, hook: AnomalyHook, operation: str, op: _OpTick) -> None:
        self._hook, self._operation, self._op = hook, operation, op

    def call_finished(self, event: CallFinished) -> None:
        op, hook = self._op, self._hook
        op.calls += 1
        op.retries += max(event.attempts - 1, 0)
        now = hook._clock()
        if now >= op.end and op.calls >= hook.min_tick_tasks:
            rate = op.retries / op.calls
            op.calls = op.retries = 0
            op.end = now + hook.tick_s
            hook._score(self._operation, RETRY_RATE, rate, now, None)
