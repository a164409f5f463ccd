"""The default logging hook, riding on the OTel hook's observers.

A second default hook would cost every policy call ~0.5 us even when it returns no observer (the
policies' prologue then takes the multi-hook path), and an observer of its own on a call nobody
else watches ~5 us (the observed call path): both past the breaker's 0.3 us budget. So the default
logging hook is joined to the OTel hook at position 0: ``call_started`` is the OTel hook's, plus a
shared logging observer when the OTel hook watches the call. A call the OTel hook does not watch
(no SDK installed) is not logged by default; ``hooks=[LoggingHook()]`` logs every call of an
entry point, at the observed path's price. Breaker transitions, sagas and the anomalies of an
``AnomalyHook`` among the entry point's hooks are always logged.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .._events import CallObserver, Hook, SagaObserver
from .._fork import release_held
from .._isolation import is_scope
from ._hook import LoggingHook

if TYPE_CHECKING:
    from .._events import (
        Anomaly,
        AttemptFinished,
        BreakerRegistered,
        BreakerTransition,
        CallFinished,
        CallRejected,
        CallStarted,
        CompensationFinished,
        Degraded,
        FallbackStarted,
        HookFailed,
        RetryScheduled,
        SagaFinished,
        SagaStarted,
        TimedOut,
        WaveObserver,
        WaveStarted,
    )
    from .._telemetry import BreakerState, Outcome

class _CallSource(Protocol):
    def call_started(self, event: CallStarted) -> CallObserver | None: ...


ENV = "SHANNON_OTEL_LOGS"
_OFF = frozenset({"off", "false", "0", "no", "none"})
_ON = frozenset({"", "on", "true", "1", "yes"})


class _Default:
    """The process's default :class:`LoggingHook`, built on first use; ``reset()`` forgets it."""

    hook: LoggingHook | None = None
    _at_exit = False
    _lock = threading.Lock()
    _warned: str | None = None  # the unknown SHANNON_OTEL_LOGS value warned about last

    @classmethod
    def get(cls) -> LoggingHook | None:
        """The default hook, or ``None`` when ``SHANNON_OTEL_LOGS`` turns logging off."""
        raw = os.environ.get(ENV, "on")
        value = raw.strip().lower()
        if value in _OFF:
            return None
        if value not in _ON and raw != cls._warned:  # a typo ("of") left logging on without a word
            cls._warned = raw
            logging.getLogger("shannon_otel").warning(
                "%s=%r is not on or off (off: %s); read as on", ENV, raw, ", ".join(sorted(_OFF)))
        hook = cls.hook
        if hook is None:
            # Entry points are built on any thread: two building the first one at once must share one
            # hook (one flood limiter; the one whose pending summaries the exit flush writes).
            with cls._lock:
                hook = cls.hook
                if hook is None:
                    hook = cls.hook = LoggingHook()
                    # Repeats held back by its flood limiter are summarised before the process leaves (the
                    # user has no handle on this hook to call flush(); configure()'s shutdown flushes it too).
                    if not cls._at_exit:
                        cls._at_exit = True
                        _flush_at_exit()
        return hook

    @classmethod
    def flush(cls) -> None:
        """Write the default hook's pending summaries, if it was built; never raises."""
        hook = cls.hook
        if hook is not None:
            try:
                hook.flush()
            except Exception:  # a broken handler of the user's must not fail a shutdown
                logging.getLogger("shannon_otel").debug("flushing the default logging hook failed", exc_info=True)

    @classmethod
    def reset(cls) -> None:
        cls.hook = None
        cls._warned = None

    @classmethod
    def _forked(cls) -> None:
        release_held(cls._lock)  # a fork while another thread built the first default hook: the child's hung


if hasattr(os, "register_at_fork"):  # Windows: no fork
    os.register_at_fork(after_in_child=_Default._forked)


def _flush_at_exit() -> None:
    """Flush the default hook when the process leaves: at interpreter exit, and when a multiprocessing child
    ends. A child started by fork or forkserver (a ``Process``, a ``Pool`` worker) leaves by ``os._exit`` after
    its multiprocessing finalizers, never running ``atexit``: the repeats its default hook held back were lost."""
    import multiprocessing
    import multiprocessing.util

    atexit.register(_Default.flush)
    # And before every atexit callback: an SDK LoggerProvider the application builds after this hook (the
    # OTel handler on its root logger) shuts itself down in an atexit callback registered later, so run first
    # (last registered, first run): the summaries reached a provider already shut down and were lost without a
    # word. Python runs threading's exit callbacks before any atexit one (concurrent.futures relies on it); the
    # atexit flush above still writes what threads left running write after this one.
    register_early = getattr(threading, "_register_atexit", None)
    if register_early is not None:
        try:
            register_early(_Default.flush)
        except RuntimeError:  # the interpreter is shutting down already: the atexit flush is still there
            pass
    if multiprocessing.parent_process() is not None:
        _finalize_in_child(_Default)
    # a child forked by multiprocessing clears the finalizers it inherited, then runs these
    multiprocessing.util.register_after_fork(_Default, _finalize_in_child)


def _finalize_in_child(default: type[_Default]) -> None:
    import multiprocessing.util

    # before a configure() handle's own finalizer (priority 0), whose shutdown removes the logs signal's handler
    multiprocessing.util.Finalize(None, default.flush, exitpriority=1)


def with_default_logs(otel: Hook, extra: tuple[Hook, ...]) -> Hook:
    """``otel`` joined with the default logging hook; ``otel`` alone when the default is off or an
    explicit :class:`LoggingHook` in ``extra`` replaces it."""
    if any(isinstance(hook, LoggingHook) for hook in extra):
        return otel
    logs = _Default.get()
    return otel if logs is None else _Joined(otel, logs)


class _Joined(Hook):
    """The OTel hook with a logging hook riding on its scopes (see the module docstring)."""

    __slots__ = ("_first", "_logs", "_otel")

    def __init__(self, otel: Hook, logs: LoggingHook) -> None:
        self._otel = otel
        # The OTel hook's call_started only forwards to its recovery part: calling that directly keeps
        # an unwatched call's cost what it was without logging (+0.01 us measured, against +0.03 us for
        # a stored bound method and more for the extra frame through the OTel hook).
        self._first: _CallSource = getattr(otel, "_recovery", otel)
        self._logs = logs

    @property
    def __wrapped__(self) -> Hook:
        """The OTel hook this joins: a failure is counted and logged as its (``_isolation``). One is joined per entry
        point, so a failing OTel hook (a broken provider) was logged, with its traceback, once per wave or policy
        built, under this private class's name."""
        return self._otel

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        return self._otel.wave_started(event)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        first = self._first.call_started(event)
        if first is None:
            return None
        logs = self._logs.call_started(event)
        return first if logs is None else _Both(first, logs)

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        first = self._otel.saga_started(event)
        logs = self._logs.saga_started(event)
        if first is None or logs is None:
            return first or logs
        return _BothSaga(first, logs)

    def breaker_registered(self, event: BreakerRegistered) -> None:
        self._otel.breaker_registered(event)

    def breaker_transition(self, event: BreakerTransition) -> None:
        self._otel.breaker_transition(event)
        self._logs.breaker_transition(event)

    def anomaly(self, event: Anomaly) -> None:
        self._otel.anomaly(event)  # its span event first: the record then sits beside it
        self._logs.anomaly(event)

    def hook_failed(self, event: HookFailed) -> None:
        self._otel.hook_failed(event)  # counted as shannon.hook.errors; the failing hook already logged it

    def for_scope(self, hooks: tuple[Hook, ...]) -> Hook:
        # The OTel hook and the logging hook emit no events of their own (both views are themselves).
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._otel!r}, {self._logs!r})"


class _Pair:
    """The OTel observer of one scope and the logging observer beside it. The OTel observer is a scope
    (its span is current while entered): the pair is entered and exited as it."""

    __slots__ = ("_first", "_logs")

    def __init__(self, first: Any, logs: Any) -> None:
        self._first = first
        self._logs = logs

    def __enter__(self) -> None:
        if is_scope(self._first):
            self._first.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if is_scope(self._first):
            self._first.__exit__(*exc_info)


class _Both(_Pair, CallObserver):
    """The OTel observer of one call and the logging observer (shared and stateless, but a pipeline's).

    Scope methods (attempts, fallback spans) are the OTel observer's alone; the call's end is told to the logging
    observer too, first (a pipeline's timeouts held until then are written under its span). A record
    is written while the operation's span is current: before the fallback span starts, after the
    short ``rejected`` span has ended.
    """

    __slots__ = ()
    _first: CallObserver
    _logs: CallObserver

    def attempt_started(self, attempt: int) -> Any:
        return self._first.attempt_started(attempt)

    def hedge_started(self, attempt: int) -> Any:
        return self._first.hedge_started(attempt)

    def hedge_retry_started(self, attempt: int, hedge: int) -> Any:
        return self._first.hedge_retry_started(attempt, hedge)

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None:
        self._first.attempt_finished(token, event)

    def breaker_admitted(self, breaker: str, state: BreakerState) -> None:
        self._first.breaker_admitted(breaker, state)

    def fallback_started(self, event: FallbackStarted) -> Any:
        self._logs.fallback_started(event)
        return self._first.fallback_started(event)

    def fallback_finished(self, token: Any, outcome: Outcome, error: BaseException | None) -> None:
        self._first.fallback_finished(token, outcome, error)

    def call_finished(self, event: CallFinished) -> None:
        self._logs.call_finished(event)  # first: a pipeline's held timeouts, while its span is still recording
        self._first.call_finished(event)

    def retry_scheduled(self, event: RetryScheduled) -> None:
        self._first.retry_scheduled(event)
        self._logs.retry_scheduled(event)

    def rejected(self, event: CallRejected) -> None:
        self._first.rejected(event)
        self._logs.rejected(event)

    def timed_out(self, event: TimedOut) -> None:
        self._first.timed_out(event)
        self._logs.timed_out(event)

    def degraded(self, event: Degraded) -> None:
        self._first.degraded(event)
        self._logs.degraded(event)


class _BothSaga(_Pair, SagaObserver):
    __slots__ = ()
    _first: SagaObserver
    _logs: SagaObserver

    def step_started(self, step: str) -> Any:
        return self._first.step_started(step)

    def step_finished(self, token: Any, step: str, outcome: Outcome, error: BaseException | None) -> None:
        self._first.step_finished(token, step, outcome, error)

    def compensation_started(self, step: str) -> Any:
        return self._first.compensation_started(step)

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        self._logs.compensation_finished(token, event)  # while the compensation's span is current
        self._first.compensation_finished(token, event)

    def saga_finished(self, event: SagaFinished) -> None:
        self._first.saga_finished(event)
