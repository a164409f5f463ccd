"""Events and the hook protocol: how the executor and the policies tell observers what happened.

Data flows one way: user code -> executor / policies -> events -> hooks (OTel, detector, run
recorder, callbacks) -> SDK. A hook that derives events of its own (the anomaly detector's
:class:`Anomaly`) hands them to the other hooks of the same entry point through this same
protocol (:meth:`Hook.for_scope`, :meth:`Hook.anomaly`): there is no second bus.

A :class:`Hook` is long-lived; for each wave, protected call or saga it may return a fresh
*observer* holding that scope's state, or ``None`` when it does not care. Events are built only
when some observer exists, so a wave nobody watches pays nothing for them.

Observer calls happen on the event loop thread, inside the context of the work they describe:
``wave_started`` runs in the context the wave's tasks inherit, ``task_started`` /
``task_finished`` in the task's own context. Observers of one scope are finished in reverse order
of their start, like nested ``with`` blocks.

Scopes: a wave, call or saga observer that is a context manager (has ``__enter__`` / ``__exit__``)
is entered around the whole wave, call or saga, and a token returned by ``attempt_started``,
``hedge_started``, ``fallback_started``, ``step_started`` or ``compensation_started`` that is a
context manager is entered around that attempt, fallback, step or compensation. The caller enters it
right after the start method and exits it right after the matching ``*_finished`` (told no
exception; its return value is ignored). That is how the OTel hook makes its spans current: the
attach is in ``__enter__`` and the detach in ``__exit__`` of one ``with``-like block the caller
always closes, so a span can never stay current after the work, whatever another hook does.
A wave observer is entered right after its hook's ``wave_started`` (the next hooks see its span
current); ``call_started`` / ``saga_started`` all run before the call's or saga's scopes are entered.

Fault isolation: hooks should not raise, and when one does it costs nothing but itself. Every
call into a hook or observer is guarded where it is made (``shannon_otel._isolation``): the error
is counted on the hook (:attr:`Hook.hook_errors`), logged with its traceback the first time per hook
and method, reported to the other hooks as :class:`HookFailed`, and never raised into the user's
call. An observer whose start method raised misses that scope (no ``*_finished``); one whose
finish raised is still exited. The user's result, raised exception and current span are exactly
what they would be without the hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from ._telemetry import BreakerState, CallOutcome, Outcome, Severity

if TYPE_CHECKING:
    from .executor._report import WaveReport

T = TypeVar("T")

__all__ = [
    "Anomaly", "AttemptFinished", "BreakerRegistered", "BreakerTransition", "CallFinished", "CallObserver",
    "CallRejected", "CallStarted", "CompensationFinished", "Degraded", "FallbackStarted", "Hook", "HookFailed",
    "RetryScheduled", "SagaFinished", "SagaObserver", "SagaStarted", "TaskFinished", "TimedOut", "WaveObserver",
    "WaveStarted", "error_type",
]


def error_type(error: BaseException | None) -> str | None:
    """The ``error.type`` value for an exception: its fully qualified class name for non-builtins."""
    if error is None:
        return None
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# --------------------------------------------------------------------------- executor
@dataclass(frozen=True, slots=True)
class WaveStarted:
    wave: str
    size: int | None  # None for an unsized (streamed) input
    concurrency: int | None  # None: unbounded
    start_time: float  # executor clock, seconds


class TaskResult(NamedTuple, Generic[T]):
    """One finished task: what a wave returns per input, and the event hooks receive.

    A NamedTuple rather than a frozen dataclass because one is built per task on the hot path and
    it constructs three times faster; it is just as immutable. ``value`` is set only on success,
    ``error`` only on failure or timeout (cancellation is an outcome, never an error).
    """

    wave: str
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the input position
    name: str
    outcome: Outcome
    value: T | None = None
    error: BaseException | None = None
    duration_s: float = 0.0
    queue_wait_s: float = 0.0
    measurements: Mapping[str, float] | None = None
    batch: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


TaskFinished = TaskResult  # the hook-side name of the same event


class WaveObserver:
    """Per-wave observer. Override what you need; every method is a no-op here."""

    __slots__ = ()

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        """Called in the task's context just before it runs; the return value comes back as ``token``."""
        return None

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        """Called in the task's context after its outcome is known (for every task that started)."""

    def task_skipped(self, event: TaskResult[Any]) -> None:
        """A task that ended without starting: cancelled or failed while waiting (pool, rate limit),
        or never run (fail-fast, cancelled wave). No ``task_started`` came before it."""

    def wave_finished(self, report: WaveReport) -> None:
        """Called once when the wave ends, whatever its outcome."""


# --------------------------------------------------------------------------- recovery
@dataclass(frozen=True, slots=True)
class CallStarted:
    operation: str
    policy: str  # "retry", "pipeline", "breaker", "hedge", "fallback", "timeout", ...


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    operation: str
    attempt: int  # 1-based
    outcome: Outcome
    duration_s: float
    error: BaseException | None = None

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    operation: str
    attempt: int  # the attempt that failed (1-based); the next one is attempt + 1
    delay_s: float
    error: BaseException | None
    max_attempts: int | None = None  # the retry's limit (attempts including the first); None if unbounded


@dataclass(frozen=True, slots=True)
class CallRejected:
    operation: str
    breaker: str
    state: BreakerState


@dataclass(frozen=True, slots=True)
class CallFinished:
    operation: str
    outcome: CallOutcome
    attempts: int
    duration_s: float
    error: BaseException | None = None

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


@dataclass(frozen=True, slots=True)
class Degraded:
    operation: str
    mode: str  # "static", "last_good", "cheaper", "fallback"
    reason: str  # "breaker_open", "timeout", "failure", "anomaly"
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    operation: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class FallbackStarted:
    operation: str
    reason: str  # "failure", "timeout", "breaker_open"
    error: BaseException

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


class CallObserver:
    """Per-call observer of a protected operation. Every method is a no-op here.

    Called by the policies in the caller's task, except ``hedge_started`` and the matching
    ``attempt_finished``, which run in the hedged attempt's own task.
    """

    __slots__ = ()

    def attempt_started(self, attempt: int) -> Any:
        return None

    def hedge_started(self, attempt: int) -> Any:
        """An extra (hedged) attempt starts; finished through ``attempt_finished``."""
        return self.attempt_started(attempt)

    def breaker_admitted(self, breaker: str, state: BreakerState) -> None:
        """A breaker let the next attempt through in ``state`` (closed, or half_open for a probe)."""

    def timed_out(self, event: TimedOut) -> None: ...

    def fallback_started(self, event: FallbackStarted) -> Any:
        return None

    def fallback_finished(self, token: Any, outcome: Outcome, error: BaseException | None) -> None: ...

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None: ...

    def retry_scheduled(self, event: RetryScheduled) -> None: ...

    def rejected(self, event: CallRejected) -> None: ...

    def degraded(self, event: Degraded) -> None: ...

    def call_finished(self, event: CallFinished) -> None: ...


@dataclass(frozen=True, slots=True)
class BreakerRegistered:
    """A breaker was built: its name and initial state (hooks learn breakers before any call)."""

    breaker: str
    state: BreakerState
    time: float


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str  # "failure_threshold", "failure_rate", "slow_calls", "reset_timeout", "probe_success", ...
    time: float


# --------------------------------------------------------------------------- saga
@dataclass(frozen=True, slots=True)
class SagaStarted:
    saga: str


@dataclass(frozen=True, slots=True)
class CompensationFinished:
    saga: str
    step: str
    outcome: Outcome
    duration_s: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SagaFinished:
    saga: str
    outcome: Outcome
    completed_steps: tuple[str, ...]
    compensated_steps: tuple[str, ...]
    failed_compensations: tuple[str, ...] = field(default_factory=tuple)


class SagaObserver:
    __slots__ = ()

    def step_started(self, step: str) -> Any:
        return None

    def step_finished(self, token: Any, step: str, outcome: Outcome, error: BaseException | None) -> None: ...

    def compensation_started(self, step: str) -> Any:
        return None

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None: ...

    def saga_finished(self, event: SagaFinished) -> None: ...


# --------------------------------------------------------------------------- anomalies
@dataclass(frozen=True, slots=True)
class Anomaly:
    """One scored sample of a watched series (see ``shannon_otel.anomaly.AnomalyHook``).

    Emitted by the anomaly hook to the other hooks of the same entry point (:meth:`Hook.anomaly`)
    for every scored sample, so that the OTel hook can keep the score gauge current; ``severity``
    is ``None`` for an ordinary score and set from the warning threshold up: only those are
    anomalies (counted, span event, ``on_anomaly``, the run report).
    """

    series: str  # wave or operation name
    signal: str  # "latency", "error_rate", "throughput" or "retry_rate"
    score: float  # detector score in [0, 1] (see DetectorConfig)
    severity: Severity | None  # None below the warning threshold
    value: float  # the sample that scored (e.g. the tick's mean latency)
    # Hex ids of the tick's slowest task span for latency; of the span current at detection (the
    # task or call that closed the tick) for the rate signals. None when there was no span.
    trace_id: str | None  # 32 hex digits
    span_id: str | None  # 16 hex digits
    time: float  # the anomaly hook's clock


# --------------------------------------------------------------------------- the hook
@dataclass(frozen=True, slots=True)
class HookFailed:
    """A hook (or one of its observers) raised; handed to the entry point's other hooks."""

    hook: str  # the failing hook's qualified class name
    method: str  # the method that raised, e.g. "attempt_finished"
    error: Exception

    @property
    def error_type(self) -> str | None:
        return error_type(self.error)


class Hook:
    """Base class of every hook: the OTel hook, the anomaly feed, user callback hooks.

    Each ``*_started`` method is called once per scope and returns a fresh observer for that
    scope or ``None``. Long-lived state (instruments, detectors, the anomaly hook's per-wave-name
    ticks) lives on the hook; per-scope state lives on the observer, so two concurrent scopes
    never share an attempt counter or a span.

    A hook that raises is isolated (see the module docstring): :attr:`hook_errors` counts its
    failures by method.
    """

    __slots__ = ("_hook_errors",)

    @property
    def hook_errors(self) -> dict[str, int]:
        """How many times this hook (or an observer it returned) raised, by method name; a copy."""
        return dict(getattr(self, "_hook_errors", None) or {})

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        return None

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return None

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        return None

    def breaker_registered(self, event: BreakerRegistered) -> None:
        """A breaker reporting to this hook was built (once per breaker, from its constructor)."""

    def breaker_transition(self, event: BreakerTransition) -> None:
        """A named breaker changed state. Called from whichever call caused the change."""

    def anomaly(self, event: Anomaly) -> None:
        """A hook of the same entry point scored a sample (the anomaly hook: every tick it closes).

        Called in the context of the work that closed the tick, with the culprit's span current
        when it is still open (the tick's slowest task for ``latency``), so a span event lands there.
        """

    def hook_failed(self, event: HookFailed) -> None:
        """Another hook of the same wave, policy or saga raised (it was isolated; see :class:`HookFailed`)."""

    def for_scope(self, hooks: tuple[Hook, ...]) -> Hook:
        """This hook as one entry point uses it; ``hooks`` are all the hooks of that entry point.

        Called once per entry point (wave, policy, breaker, saga) when its hooks are resolved. A
        hook that emits events of its own (the anomaly hook) returns a view that hands them to the
        other hooks of the scope; everything else returns itself. This is how events reach
        hooks without a second bus: emitted events flow to the same hooks as the executor's.
        """
        return self
