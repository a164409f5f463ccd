"""The logging hook: resilience events -> records of the standard ``logging`` module.

Records are emitted in the context of the call they are about (the observer methods run in the
caller's task), so with the OTel hook in front the operation's span is current: an OTel
``LoggingHandler`` or the logging instrumentation stamps the trace and span ids on them. A record
written for other calls than the current one (a summary drained by a breaker transition, by an
eviction or by ``flush()``) is written with no span current, and an anomaly's with its culprit's
span (``Anomaly.trace_id`` / ``span_id``) or none: only the current-span key of the OTel context
is replaced, for the ``logger.log`` call alone (see :mod:`._context`).
Observers are stateless (every event names its operation), so one observer per hook serves every
call: watching a call allocates nothing; but a pipeline's, which holds its timeouts until what follows says
whether the call recovered (see :class:`_PipelineLog`). Emission never raises into the user's call: a failing
handler costs the record, not the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span

from .. import _clock
from .. import _telemetry as t
from .._events import CallObserver, Hook, SagaObserver
from .._telemetry import Outcome, Severity
from .._validate import check_bool, check_number, check_sync_callable
from . import _records
from ._context import NO_SPAN, attach_span, culprit, detach
from ._limit import Limiter
from ._records import DEFAULT_LEVELS, Record

_Item = tuple[Callable[[Any, bool], Record], Any, int, logging.Logger]  # (build, event, level, logger)

if TYPE_CHECKING:
    from .._events import (
        Anomaly,
        BreakerTransition,
        CallFinished,
        CallRejected,
        CallStarted,
        CompensationFinished,
        Degraded,
        FallbackStarted,
        RetryScheduled,
        SagaStarted,
        TimedOut,
    )

__all__ = ["LoggingHook"]


class LoggingHook(Hook):
    """Log records for retries, breaker changes and rejections, timeouts, fallbacks, degradations,
    saga compensations and anomalies (the table in docs/logging.md lists every one).

    On by default: every policy and saga gets one unless ``SHANNON_OTEL_LOGS=off`` or
    ``instrument=False``. Passing a ``LoggingHook`` in ``hooks=`` replaces the default for that
    entry point. ``levels`` overrides the level per event name (a level >= 1; ``None`` silences an event);
    ``enabled=False`` makes a hook that logs nothing. ``exception_messages=True`` adds the
    exception's message (``exception.message``) to records; off by default: messages can carry
    user data. Repeats of one (logger, subject, event) are summarised: at most one record per
    ``interval_s`` (the first at once), for at most ``max_keys`` keys at a time. ``clock`` is
    injectable for tests. Thread-safe. Anomalies arrive as hook events from an ``AnomalyHook`` among
    the same entry point's hooks.
    """

    __slots__ = ("_call", "_enabled", "_levels", "_limiter", "_loggers", "_messages", "_saga", "errors")

    def __init__(
        self,
        *,
        levels: Mapping[str, int | None] | None = None,
        exception_messages: bool = False,
        interval_s: float = 10.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = _clock.monotonic,
        enabled: bool = True,
    ) -> None:
        check_number("interval_s", interval_s, low=0)
        check_number("max_keys", max_keys, low=1, integer=True)
        check_bool("exception_messages", exception_messages)
        check_bool("enabled", enabled)
        if levels is not None and not isinstance(levels, Mapping):
            raise TypeError(f"levels must be a mapping of event name to logging level or None, got {levels!r}")
        check_sync_callable("clock", clock, "a callable returning seconds", takes=0)
        clock = _clock.seconds(clock)
        merged: dict[str, int | None] = dict(DEFAULT_LEVELS)
        for name, level in (levels or {}).items():
            if name not in DEFAULT_LEVELS:
                raise ValueError(f"levels: unknown event {name!r}; known: {', '.join(sorted(DEFAULT_LEVELS))}")
            # bool is an int: True was logged at level 1, "Level True"
            if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
                raise TypeError(f"levels[{name!r}] must be a logging level (int) or None, got {level!r}")
            # 0 (NOTSET) or below is never enabled on a logger with a level: the event went silent unannounced,
            # read as "off" where None is the documented way to silence it
            if level is not None and level < 1:
                raise ValueError(f"levels[{name!r}] must be a logging level in [1, inf) (e.g. logging.INFO), "
                                 f"or None to silence the event, got {level!r}")
            merged[name] = level
        self._levels = merged
        self._messages = exception_messages
        self._enabled = enabled
        # A held-back occurrence is kept as its record (strings), not its event: the event's error holds
        # the failed call's traceback, every frame and local of it, alive until the summary.
        self._limiter: Limiter[_Item] = Limiter(interval_s, max_keys, clock, keep=self._detached)
        self._loggers: dict[str, logging.Logger] = {}
        self._call: CallObserver = _CallLog(self)
        self._saga: SagaObserver = _SagaLog(self)
        self.errors: int = 0  # records lost to a failing handler or formatter

    @property
    def enabled(self) -> bool:
        """Whether the hook writes records (read-only: build another hook to change it)."""
        return self._enabled

    # ----------------------------------------------------------------- the hook protocol
    def call_started(self, event: CallStarted) -> CallObserver | None:
        if not self._enabled:
            return None
        return _PipelineLog(self) if event.policy == "pipeline" else self._call

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        return self._saga if self._enabled else None

    def breaker_transition(self, event: BreakerTransition) -> None:
        if not self._enabled or event.from_state is event.to_state:
            return
        breaker = event.breaker
        # Rejections held back for this breaker are told before its new state.
        # Summaries of other calls than the one transitioning it: no span of theirs is current, so none.
        for item, n, seconds in self._limiter.drain(lambda item: getattr(item[1], "breaker", None) == breaker):
            self._write(item, n, seconds, NO_SPAN)
        name = _records.TRANSITION_EVENTS[event.to_state]
        # Never summarised: every state change is told, in order.
        self.emit(t.LOGGER_BREAKER, name, None, _records.transition, event)

    def anomaly(self, event: Anomaly) -> None:
        """An anomaly hook of the same entry point scored a sample: logged from severity warning up."""
        if self._enabled and event.severity is not None:
            from ._anomaly import record

            # Keyed by severity too: a critical anomaly inside the window a warning of its series opened
            # was held back (written as a summary only after the window, or at exit).
            # Written under the culprit's span (none when the anomaly names none): the span current where the
            # detector scored is the task that closed the tick, not the slowest or failed one the anomaly names.
            self.emit(t.LOGGER_ANOMALY, t.EVENT_ANOMALY, (event.series, event.signal, event.severity), record,
                      event, up=event.severity is Severity.CRITICAL, own=culprit)

    def flush(self) -> None:
        """Emit the summaries of every repeat held back so far (e.g. before the process exits)."""
        # Summaries of calls past: no span current (the caller's, if any, is none of theirs).
        for item, n, seconds in self._limiter.drain():
            self._write(item, n, seconds, NO_SPAN)

    # ----------------------------------------------------------------- emission
    def emit(
        self, logger_name: str, event_name: str, subject: Hashable, build: Callable[[Any, bool], Record],
        event: Any, *, up: bool = False, down: bool = False, own: Callable[[Any], Span] | None = None,
        at: float | None = None,
    ) -> None:
        """Log ``build(event)`` at ``event_name``'s level (one step ``up`` if asked) unless the level
        is off or the flood limiter holds the occurrence back. ``subject`` (with the logger and event
        name) keys the limiter; ``None``: never held back. The record is built only when written, or when
        an occurrence with an error is held back (kept as its record, see :meth:`_detached`).

        ``own(event)``: the span the event's record (or the summary it closes, whose "last" it is) is written
        under; ``None``: the current one (the call's). Summaries of keys evicted meanwhile: no span. ``at``: when
        the event happened (``time.time()`` seconds), for one told later (a pipeline's timeout); ``None``: now."""
        level = self._levels[event_name]
        if level is None:
            return
        if up:  # never down: a custom level above CRITICAL stays where it is
            level = max(level, min(level + 10, logging.CRITICAL))
        if down:  # never up, never to 0 (NOTSET: no logger with a level writes it)
            level = min(level, max(level - 10, 1))
        logger = self._loggers.get(logger_name)
        if logger is None:
            logger = self._loggers[logger_name] = logging.getLogger(logger_name)
        if not logger.isEnabledFor(level):
            return
        item = (build, event, level, logger)
        if subject is None:
            self._write(item, 1, 0.0, None if own is None else own(event), at)
            return
        n, seconds, evicted = self._limiter.admit((logger_name, subject, event_name), item)
        for old, count, span in evicted:  # another key's occurrences: none of them is the current call
            self._write(old, count, span, NO_SPAN)
        if n:
            self._write(item, n, seconds, None if own is None else own(event), at)

    def _detached(self, item: _Item) -> _Item:
        """``item`` with its event replaced by the record it makes (what the limiter keeps), when the
        event carries an error; one without (a rejection: the flood the limiter is for) costs nothing."""
        build, event, level, logger = item
        if getattr(event, "error", None) is None:
            return item
        try:
            record = build(event, self._messages)
        except Exception:
            return item  # _write counts the failure when it builds the record again
        return (_built, _Kept(record, getattr(event, "breaker", None)), level, logger)

    def _write(self, item: _Item, n: int, seconds: float, span: Span | None = None, at: float | None = None) -> None:
        """Write ``item``'s record (a summary of ``n`` over ``seconds`` if ``n > 1``) with ``span`` current for the
        ``logger.log`` call (``None``: the current span as it is, attaching nothing: the common path)."""
        build, event, level, logger = item
        token = None
        try:
            record = build(event, self._messages)
            fields: dict[str, Any] = {t.LOG_EVENT_NAME: record.event, **record.fields}
            if span is not None:
                token = attach_span(span)
            if n > 1:
                fields[t.LOG_REPEATS] = n
                fields[t.LOG_INTERVAL] = seconds
                logger.log(level, _records.summary_text(record.summary, n, seconds), extra=fields)
            elif at is None:
                logger.log(level, record.message, *record.args, extra=fields)
            else:  # stamped when it happened: logger.log() stamps now, and no `extra` may set the time
                made = logger.makeRecord(logger.name, level, __file__, 0, record.message, record.args, None,
                                         extra=fields)
                made.relativeCreated += (at - made.created) * 1000
                made.created, made.msecs = at, int((at - int(at)) * 1000) + 0.0
                logger.handle(made)
        except Exception:
            # A handler that raises (logging's own handlers report their errors themselves) must not
            # reach the user's call; logging about it could fail the same way, so it is only counted.
            self.errors += 1
        finally:
            if token is not None:
                detach(token)


class _Kept:
    """A held-back occurrence: its record, and the breaker it names (which a transition drains)."""

    __slots__ = ("breaker", "record")

    def __init__(self, record: Record, breaker: str | None) -> None:
        self.record = record
        self.breaker = breaker


def _built(kept: _Kept, messages: bool) -> Record:
    return kept.record


class _CallLog(CallObserver):
    """The observer of every call a hook watches: no per-call state, so shared."""

    __slots__ = ("_hook",)

    def __init__(self, hook: LoggingHook) -> None:
        self._hook = hook

    def retry_scheduled(self, event: RetryScheduled) -> None:
        self._hook.emit(t.LOGGER_RETRY, t.EVENT_RETRY_SCHEDULED, event.operation, _records.retry_scheduled, event)

    def rejected(self, event: CallRejected) -> None:
        self._hook.emit(t.LOGGER_BREAKER, t.LOG_EVENT_REJECTED, event.operation, _records.rejected, event)

    def timed_out(self, event: TimedOut) -> None:
        self._hook.emit(t.LOGGER_TIMEOUT, t.LOG_EVENT_TIMED_OUT, event.operation, _records.timed_out, event)

    def fallback_started(self, event: FallbackStarted) -> Any:
        self._hook.emit(t.LOGGER_FALLBACK, t.LOG_EVENT_FALLBACK, event.operation, _records.fallback, event)

    def degraded(self, event: Degraded) -> None:
        self._hook.emit(t.LOGGER_DEGRADE, t.EVENT_DEGRADED, event.operation, _records.degraded, event)


class _PipelineLog(_CallLog):
    """The observer of one pipeline call: a ``Timeout`` inside it cuts off an attempt (or the whole call) before
    anything knows whether a policy outside it (a ``Retry``, a ``Fallback``, a ``Degrade``) recovers the call. Its
    record waits for the call's next event: a retry, a fallback or a degraded result (recovered: written one level
    below the event's, WARNING by default) or the call's end (the event's level, ERROR, if the call failed; one
    below if it returned a value, as when a ``Hedge``'s other attempt won). So an ERROR record under an operation
    span means that operation failed, as its span's status says. A fallback or the call's end follows the
    ``TimeoutError`` at once; a retry is told once its backoff wait is over, so the record is stamped with the time
    the timeout fired, not the time it is written."""

    __slots__ = ("_timeouts",)

    def __init__(self, hook: LoggingHook) -> None:
        self._hook = hook
        # (event, when it happened): made by the first timeout, most calls have none
        self._timeouts: list[tuple[TimedOut, float]] | None = None

    def _said(self, recovered: bool) -> None:
        timeouts, self._timeouts = self._timeouts, None
        for event, at in timeouts or ():
            self._hook.emit(t.LOGGER_TIMEOUT, t.LOG_EVENT_TIMED_OUT, event.operation, _records.timed_out, event,
                            down=recovered, at=at)

    def timed_out(self, event: TimedOut) -> None:
        if self._timeouts is None:
            self._timeouts = []
        self._timeouts.append((event, time.time()))

    def retry_scheduled(self, event: RetryScheduled) -> None:
        self._said(recovered=True)
        super().retry_scheduled(event)

    def fallback_started(self, event: FallbackStarted) -> Any:
        self._said(recovered=True)
        return super().fallback_started(event)

    def degraded(self, event: Degraded) -> None:
        self._said(recovered=True)
        super().degraded(event)

    def call_finished(self, event: CallFinished) -> None:
        self._said(recovered=event.error is None)


class _SagaLog(SagaObserver):
    __slots__ = ("_hook",)

    def __init__(self, hook: LoggingHook) -> None:
        self._hook = hook

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        name = t.LOG_EVENT_COMPENSATED if event.outcome is Outcome.SUCCESS else t.LOG_EVENT_COMPENSATION_FAILED
        self._hook.emit(t.LOGGER_SAGA, name, (event.saga, event.step), _records.compensation, event)
