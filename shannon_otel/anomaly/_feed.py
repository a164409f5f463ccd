"""The feed: an event hook that turns executor / policy events into detector samples.

The tick state and the per-run observers that update it live in ``_ticks``; the per-entry-point
view that hands the hook's events to the other hooks in ``_scoped``; the signal names in ``_signals``.

Signals, each its own series per wave name (or operation name for retries), one sample per tick:

* ``latency``: mean task duration over the tick;
* ``error_rate``: fraction of tasks that failed or timed out;
* ``throughput``: tasks finished per second while a run of the wave was active;
* ``retry_rate``: mean retries (attempts - 1) per protected call.

A cancelled task or call counts in none of them, nor towards ``min_tick_tasks``: it finished no work.

Tick state lives on the hook, one per wave name (and per operation): consecutive and concurrent
runs of the same wave share it, so waves shorter than a tick are scored too. A tick closes when
``tick_s`` has passed (time with no run of that wave active does not count) and at least
``min_tick_tasks`` tasks (or calls) finished in it; the task that closes it scores it in its own
context. A tick still open when a wave ends is continued by the next run of that wave name.

Per task the observer updates a few numbers and reads the clock. The hook writes no telemetry:
every scored sample becomes an :class:`~shannon_otel._events.Anomaly` event handed to the other
hooks of the same entry point (``Hook.anomaly``; the hook learns them from ``Hook.for_scope`` when
the entry point resolves its hooks), so the OTel hook turns it into the score gauge, the events
counter and the ``shannon.anomaly`` span event, and the run recorder records it; ``on_anomaly``
gets the anomalies (severity set). A latency event is delivered with the tick's slowest task span
current if that span is still open (always true when that task closed the tick), otherwise the
span current at detection; its ids are the slowest task's, unless that task ended in another run of the wave than the
current span's (healthy: a tail sampler may have dropped its trace, or the ``TailSampler`` its part of a trace id the
runs share), when they are the current span's (``_ticks._exported``). An ``error_rate`` event names the tick's
last failed or timed-out task and a ``retry_rate`` one its last call retried after a failed or refused try (not one
whose extra attempts were a ``Hedge``'s alone: no error in its trace) in the same way (the
work that closed the tick may have been healthy: a link to it showed no failure or retry); a
``throughput`` anomaly has no culprit: the span current at detection (the task that closed the
tick) is current and gives the ids. A span whose trace was sampled out gives none
(it is exported nowhere: ``Anomaly.trace_id`` and ``span_id`` are then None).

The detector scores likelihood against the series' own history: an anomaly that keeps recurring
becomes part of that history and stops being flagged.
"""

from __future__ import annotations

import inspect
import math
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NoReturn, SupportsIndex

from opentelemetry import trace

from .. import _clock
from .._events import Anomaly, CallObserver, CallStarted, Hook, WaveObserver, WaveStarted
from .._fork import in_forked_child, release_held
from .._isolation import HOOK_ERRORS, held_failure
from .._reraise import raise_as_is
from .._validate import (
    brief,
    check_bool,
    check_number,
    check_provider,
    check_sync_callable,
    other_number,
    shown,
)
from ._config import HOOK_DEFAULTS, DetectorConfig, _float_sized
from ._detector import AnomalyDetector
from ._scoped import _publish, _Scoped
from ._signals import ERROR_RATE, LATENCY, RETRY_RATE, THROUGHPUT
from ._ticks import _CallFeed, _OpTick, _WaveFeed, _WaveTick

if TYPE_CHECKING:
    from opentelemetry import metrics

_WAVE_SIGNALS = (LATENCY, ERROR_RATE, THROUGHPUT)


def _not_a_coroutine(returned: object) -> None:
    """TypeError naming ``on_anomaly`` if it returned a coroutine, closed. A lambda calling an async function
    (``lambda a: notify(a)``) passes the constructor's check; its coroutine, never awaited, was dropped with only
    Python's "never awaited" warning: the callback never ran, and nothing said so. A Task or future it returns
    (``lambda a: loop.create_task(notify(a))``) is scheduled already: it runs, and is no error."""
    if inspect.iscoroutine(returned):
        returned.close()
        raise TypeError(f"on_anomaly must be a plain (sync) callable; it returned a coroutine, {returned!r}, which "
                        "nothing awaits (schedule it instead, as a task you keep a reference to)")


class AnomalyHook(Hook):
    """Feeds one :class:`AnomalyDetector` from waves and protected calls; emits its scores as events.

    Pass it in ``hooks=`` of waves and policies: each entry point hands its scores, as
    :class:`Anomaly` events, to its other hooks (the OTel hook exports them: gauge, counter, span
    event). A wave's ``hooks=`` do not reach the calls of its ``policy=`` (they keep the policy's own hooks):
    for their ``retry_rate``, give the hook to that policy too (``Retry(hooks=[hook])``). ``meter_provider`` is
    deprecated and ignored: the telemetry goes to the providers of the entry point that scored.
    ``enabled=False`` makes every ``*_started`` return ``None`` (zero cost;
    ``hook.enabled`` may be switched at run time, the other settings are read-only: switched off, the runs and
    calls under way count in no tick either, and the ticks they had open are dropped). ``signals``
    restricts what is watched. A tick closes once ``tick_s`` seconds have passed and at least
    ``min_tick_tasks`` tasks (calls, for ``retry_rate``) finished in it: a mean over a handful
    of tasks is as noisy as a single task duration. ``clock`` (seconds; only differences matter
    unless ``config`` has a seasonal profile, which :data:`HOOK_DEFAULTS` has not; with the wall clock, the
    default, ticks are timed on the monotonic clock, so a step of the system clock changes no tick; its readings are
    taken as float seconds, and one that is no finite real number fails the hook, logged) and the
    detector config make the hook deterministic under test. Raises ``ValueError`` / ``TypeError``
    naming the argument (a bad type, a number out of range, an unknown signal or none);
    never raises into the executor: a
    failing ``on_anomaly`` callback or hook is logged and ignored. ``on_anomaly`` is called without await, in the
    task or call that closed the tick, on its event loop (a slow callback stalls that loop: hand slow work on, to
    a thread, a queue or a task you keep a reference to); one that returns a coroutine (a lambda calling an async
    function) fails, logged, its coroutine closed. Thread-safe: waves in several threads (each
    its own event loop) may share it; their runs of one wave name share its ticks.
    """

    __slots__ = ("__weakref__", "_clock", "_detector", "_enabled", "_evicted", "_gone", "_keys", "_lock",
                 "_min_tick_tasks", "_on_anomaly", "_ops", "_signals", "_tick_s", "_ticker", "_waves")

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
        if isinstance(tick_s, bool) or not isinstance(tick_s, (int, float)):  # True would be a 1 s tick
            raise TypeError(
                f"tick_s must be a number of seconds in (0, inf){other_number(tick_s)}, got {brief(tick_s)}")
        if not 0.0 < tick_s < math.inf or not _float_sized(tick_s):  # 10**400: no float holds it
            raise ValueError(f"tick_s must be a number in (0, inf), got {shown(tick_s)}")
        check_number("min_tick_tasks", min_tick_tasks, low=1, integer=True)
        if config is not None and not isinstance(config, DetectorConfig):
            raise TypeError(f"config must be a DetectorConfig or None, got {brief(config)}")
        check_provider("meter_provider", meter_provider, "MeterProvider", "get_meter")
        # Both are called without await: an async def would hand back a coroutine nobody awaits (the
        # callback never ran; the clock's coroutine broke every tick, each failure only logged).
        check_sync_callable("on_anomaly", on_anomaly, "a callable taking an Anomaly", allow_none=True, takes=1)
        check_sync_callable("clock", clock, "a callable returning seconds", takes=0)
        check_bool("enabled", enabled)
        allowed = f"{LATENCY}, {ERROR_RATE}, {THROUGHPUT}, {RETRY_RATE}"
        try:
            if isinstance(signals, str):
                raise TypeError
            self._signals = frozenset(signals)
        except TypeError:
            raise TypeError(f"signals must be an iterable of signal names ({allowed}), got {brief(signals)}") from None
        unknown = self._signals - {LATENCY, ERROR_RATE, THROUGHPUT, RETRY_RATE}
        if unknown:
            raise ValueError(f"unknown signals {brief(sorted(unknown, key=repr))}; allowed: {allowed}")
        if not self._signals:  # a hook watching nothing, silently: it never scored, never alerted
            raise ValueError(f"signals must name at least one signal ({allowed}), got {brief(signals)}; "
                             "to switch the hook off, pass enabled=False")
        self._detector = AnomalyDetector(config if config is not None else HOOK_DEFAULTS)
        self._on_anomaly = on_anomaly
        # stamps the samples (the detector's time, Anomaly.time); a user's clock as checked float seconds
        # (_clock.seconds, as waves and policies read theirs: the hook's own reader let an int reading beyond any
        # float, 10**400, fail on float() with "int too large to convert to float", naming no clock)
        self._clock = _clock.seconds(clock)
        # times the ticks: with the default wall clock, the monotonic one, so a step of the system clock
        # (NTP, a resumed VM) neither stretches a tick over the step (a false throughput fall) nor, stepped
        # back, keeps every tick open until the wall clock catches up (no sample at all meanwhile)
        self._ticker = _clock.monotonic if clock is _clock.wall else self._clock
        self._tick_s = float(tick_s)
        self._min_tick_tasks = min_tick_tasks
        self._enabled = enabled
        self._keys: dict[str, tuple[str, str]] = {}  # detector key -> (series, signal)
        self._evicted = 0  # the detector's eviction count when the hook last looked for evicted keys
        # evicted (series, signal) pairs no event has carried yet; the newest max_series while no hook listens
        self._gone: deque[tuple[str, str]] = deque(maxlen=self._detector.config.max_series)
        self._waves: dict[str, _WaveTick] = {}
        self._ops: dict[str, _OpTick] = {}
        # The tick state is shared by every run of a wave name (and call of an operation), and the hook
        # may be shared by waves running in several threads, each its own loop: updates take turns (a
        # tick closed by one thread while another counted into it divided by zero). Held while a
        # sample is fed to the detector (with its key's registration and the eviction scan), never while its event
        # is handed on (a hook or callback may run more work of the wave).
        self._lock = threading.Lock()
        in_forked_child(self._forked)  # a child forked while another thread held it would wait on it for good
        if meter_provider is not None:
            warnings.warn("AnomalyHook(meter_provider=...) is deprecated and ignored: the anomaly telemetry goes "
                          "to the providers of the wave or policy whose hooks= hold the hook", DeprecationWarning,
                          stacklevel=2)

    def _forked(self) -> None:
        """In a forked child: free the locks a thread of the parent held at the fork (see ``_fork``)."""
        release_held(self._lock)  # (the detector frees its own)

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # Refused, by name: a pickle or deepcopy raised "cannot pickle '_thread.lock' object", naming nothing, and a
        # copy.copy was half a copy (its detector and ticks shared, its own eviction count and enabled switch).
        raise TypeError(
            "AnomalyHook cannot be pickled or copied: it holds the live ticks and the detector fed by every wave and "
            "policy whose hooks= hold it, and a copy would score apart from them. Build one per process; its "
            "detector pickles and copies on its own (hook.detector)"
        )

    @property
    def detector(self) -> AnomalyDetector:
        """The detector the hook feeds (one per hook)."""
        return self._detector

    # Read-only once built, as the constructor checked them: ``hook.tick_s = "10"`` was taken and failed every
    # tick afterwards, each failure only logged. ``enabled`` may be switched at run time, checked the same way.
    @property
    def tick_s(self) -> float:
        """The least time a tick spans (read-only)."""
        return self._tick_s

    @property
    def min_tick_tasks(self) -> int:
        """The fewest finished tasks (calls, for retry_rate) a tick closes on (read-only)."""
        return self._min_tick_tasks

    @property
    def signals(self) -> frozenset[str]:
        """The signals watched (read-only)."""
        return self._signals

    @property
    def enabled(self) -> bool:
        """Whether the hook watches anything; may be switched at run time (a bool)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        check_bool("enabled", value)
        self._enabled = value

    # ------------------------------------------------------------------ hook protocol
    def for_scope(self, hooks: tuple[Hook, ...]) -> Hook:
        """This hook for one entry point: it hands its events to the other ``hooks`` of that scope."""
        return _Scoped(self, tuple(h for h in hooks if h is not self))

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        return self._wave_started(event, ())

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return self._call_started(event, ())

    def _wave_started(self, event: WaveStarted, sinks: tuple[Hook, ...]) -> WaveObserver | None:
        if not self.enabled:
            return None
        with self._lock:
            now = self._ticker()
            tick = self._waves.get(event.wave)
            if tick is None:
                if len(self._waves) >= 2 * self._detector.config.max_series:
                    self._forget()
                tick = self._waves[event.wave] = _WaveTick(now, self.tick_s)
            tick.resume(now)
        return _WaveFeed(self, event.wave, tick, sinks)

    def _call_started(self, event: CallStarted, sinks: tuple[Hook, ...]) -> CallObserver | None:
        if not self.enabled or RETRY_RATE not in self.signals:
            return None
        with self._lock:
            op = self._ops.get(event.operation)
            if op is None:
                if len(self._ops) >= 2 * self._detector.config.max_series:
                    self._forget()
                op = self._ops[event.operation] = _OpTick(self._ticker() + self.tick_s)
        return _CallFeed(self, event.operation, op, sinks)

    # ------------------------------------------------------------------ scoring
    def _key(self, series: str, signal: str) -> str:
        """The detector's series of ``(series, signal)``, registered for the eviction scan; called holding ``_lock``."""
        key = f"{signal}\x00{series}"
        if key not in self._keys:
            if len(self._keys) >= 2 * self._detector.config.max_series:  # forget evicted series
                tracked = set(self._detector.series())
                self._keys = {k: v for k, v in self._keys.items() if k in tracked}
            self._keys[key] = (series, signal)
        return key

    def _forget(self) -> None:
        """Drop the tick state of names the detector no longer tracks (cardinality bound); called
        holding ``_lock``."""
        tracked = set(self._detector.series())
        self._ops = {k: v for k, v in self._ops.items() if f"{RETRY_RATE}\x00{k}" in tracked}
        self._waves = {k: v for k, v in self._waves.items()
                       if v.active or any(f"{s}\x00{k}" in tracked for s in _WAVE_SIGNALS)}

    def _evictions(self, victim: str | None, publish: bool) -> tuple[tuple[str, str], ...]:
        """The (series, signal) pairs the detector evicted and no event carried yet, if ``publish``
        (else they wait for the next published event). ``victim``: the series the sample just fed was to evict
        (``AnomalyDetector._victim``). O(1) when the detector's eviction count moved by that one eviction (the
        usual case: the hook's own sample evicted it); it scans every key only when something else (the user
        feeding ``hook.detector``) evicted series too. Scanning at every eviction made each sample of a hook whose
        series churn (new wave names past ``max_series``) cost O(max_series): 1.4 ms a sample at 10^4, 40x a
        sample without eviction. Called holding ``_lock``."""
        detector = self._detector
        evicted = detector.stats.evicted
        if evicted != self._evicted:
            moved, self._evicted = evicted - self._evicted, evicted
            gone: list[str]
            if moved == 1 and victim is not None and not detector._tracks(victim):
                gone = [victim]
            else:
                tracked = set(detector.series())
                gone = [k for k in self._keys if k not in tracked]
            for key in gone:
                pair = self._keys.pop(key, None)
                if pair is not None:  # (a series of the user's own, fed to hook.detector, is none of the hook's)
                    self._gone.append(pair)  # (a deque: a list cut to its last max_series moved them all)
        if not publish or not self._gone:
            return ()
        pairs = tuple(self._gone)
        self._gone.clear()
        return pairs

    def _score(self, series: str, signal: str, value: float, now: float, cause: trace.Span | None,
               sinks: tuple[Hook, ...]) -> None:
        # The detector watches every signal in its harmful direction, rising: latency, error and retry
        # rates as they are, throughput negated (a fall is harmful, a burst of work is not). Its other
        # channels are symmetric, so this changes nothing unless the config counts one side only.
        value = float(value)  # a tick's mean of Fraction durations (a wave's clock) is an Anomaly's float value
        fed = -value if signal == THROUGHPUT else value
        if self._ticker is not self._clock:  # ``now`` is the ticker's: stamp the sample with the clock
            now = self._clock()
        # One turn for the key, its sample and the eviction scan: a key registered but not yet fed, scanned by
        # another thread's eviction, was reported evicted (and forgotten, so its real eviction never was).
        with self._lock:
            key = self._key(series, signal)
            victim = self._detector._victim(key)
            score = self._detector.update(key, fed, now)
            evicted = self._evictions(victim, score is not None and bool(sinks))
        if score is None:
            return
        config = self._detector.config
        severity = config.severity(score) if score >= config.warning else None
        current = trace.get_current_span()
        ctx = (cause if cause is not None else current).get_span_context()
        trace_id = span_id = None
        if ctx.is_valid and ctx.trace_flags.sampled:  # a sampled-out span is exported nowhere: no link to it
            trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        event = Anomaly(series, signal, score, severity, value, trace_id, span_id, now, evicted)
        escaped: BaseException | None = None  # a hook's KeyboardInterrupt: raised once on_anomaly got the event too
        if sinks:
            try:
                _publish(event, sinks, cause if cause is not None and cause is not current and cause.is_recording()
                         else None)
            except BaseException as exc:
                escaped = exc
        if severity is not None and self._on_anomaly is not None:
            try:
                _not_a_coroutine(self._on_anomaly(event))
            except HOOK_ERRORS as exc:  # isolated like any hook: counted on this hook, logged once
                escaped = escaped or held_failure(self, "on_anomaly", exc, sinks)
            except BaseException as exc:
                escaped = escaped or exc
        if escaped is not None:
            raise_as_is(escaped)
