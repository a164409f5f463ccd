"""Per-call telemetry: the operation span, its attempt, hedge, fallback and rejected spans, and the
call metrics (attempts, retry delays, timeouts, fallbacks, degradations, hedges, calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import _telemetry as t
from .._events import CallObserver
from .._telemetry import BreakerState, CallOutcome, Outcome
from ._end import end
from ._scope import _INTERNAL, _Current, _end, _error_type, _start

if TYPE_CHECKING:
    from .._events import (
        AttemptFinished,
        CallFinished,
        CallRejected,
        Degraded,
        FallbackStarted,
        RetryScheduled,
        TimedOut,
    )
    from ._recovery import RecoveryTelemetry


class _CallTelemetry(_Current, CallObserver):
    """Per-call state: the operation span (current while the policy has this observer entered) and
    pending breaker attributes."""

    __slots__ = ("_breaker", "_op", "_parent", "_tel")

    def __init__(self, tel: RecoveryTelemetry, operation: str, tracing: bool) -> None:
        super().__init__(
            tel.tracer.start_span(t.SPAN_OPERATION.format(operation=operation), kind=_INTERNAL,
                                  attributes={t.OPERATION: operation})
            if tracing else None
        )
        self._tel = tel
        self._op = operation
        self._breaker: dict[str, str] | None = None
        # The span the operation span starts under (a task or step span...), told of an error recorded here
        self._parent = trace.get_current_span() if tracing else None

    def attempt_started(self, attempt: int) -> Any:
        if self.span is None:
            return None
        attributes: dict[str, Any] = {t.OPERATION: self._op, t.ATTEMPT: attempt}
        if self._breaker is not None:
            attributes.update(self._breaker)
        return _start(self._tel, t.SPAN_ATTEMPT.format(attempt=attempt), attributes)

    def hedge_started(self, attempt: int) -> Any:
        if self._tel.metrics_on:
            self._tel.hedges.add(1, {t.OPERATION: self._op})
        if self.span is None:
            return None
        attributes: dict[str, Any] = {t.OPERATION: self._op, t.ATTEMPT: attempt, t.HEDGE_ATTEMPT: attempt}
        if self._breaker is not None:  # a hedge is an attempt: the breaker that admitted it, as on one
            attributes.update(self._breaker)
        return _start(self._tel, t.SPAN_HEDGE.format(attempt=attempt), attributes)

    def hedge_retry_started(self, attempt: int, hedge: int) -> Any:
        if self.span is None:
            return None
        # an attempt span (not counted as a hedge) that names the hedge it retries
        attributes: dict[str, Any] = {t.OPERATION: self._op, t.ATTEMPT: attempt, t.HEDGE_ATTEMPT: hedge}
        if self._breaker is not None:
            attributes.update(self._breaker)
        return _start(self._tel, t.SPAN_ATTEMPT.format(attempt=attempt), attributes)

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None:
        if token is not None:
            _end(token.span, event.outcome.value, event.error, t.ATTEMPT_OUTCOME, self.span)

    def breaker_admitted(self, breaker: str, state: BreakerState) -> None:
        self._breaker = {t.BREAKER_NAME: breaker, t.BREAKER_STATE: state.value}
        if self.span is not None:
            self.span.set_attributes(self._breaker)

    def rejected(self, event: CallRejected) -> None:
        if self.span is None:
            return
        attributes = {t.OPERATION: event.operation, t.BREAKER_NAME: event.breaker,
                      t.BREAKER_STATE: event.state.value, t.CALL_OUTCOME: CallOutcome.REJECTED.value}
        if event.error is not None:  # an ERROR span carries error.type (semantic conventions, Recording errors)
            attributes[t.ERROR_TYPE] = _error_type(event.error)
        self.span.set_attributes({t.BREAKER_NAME: event.breaker, t.BREAKER_STATE: event.state.value})
        span = self._tel.tracer.start_span(t.SPAN_REJECTED.format(operation=event.operation), kind=_INTERNAL,
                                           attributes=attributes)
        span.set_status(Status(StatusCode.ERROR, f"circuit breaker {event.breaker} is {event.state.value}"))
        end(span)

    def retry_scheduled(self, event: RetryScheduled) -> None:
        if self.span is not None:
            attributes: dict[str, Any] = {t.ATTEMPT: event.attempt, t.RETRY_DELAY: event.delay_s}
            if event.error is not None:
                attributes[t.ERROR_TYPE] = _error_type(event.error)
            self.span.add_event(t.EVENT_RETRY_SCHEDULED, attributes, event.time_ns)  # when scheduled: told as it runs
        if self._tel.metrics_on:
            sink = self._tel.delay_sink()
            if sink is None:
                self._tel.delay.record(event.delay_s, {t.OPERATION: self._op})
            else:  # its exemplar: the operation span (current here), as the SDK would take it
                span = self.span if self.span is not None else trace.get_current_span()
                context = span.get_span_context()
                sink.record((self._op,), event.delay_s, context if context.is_valid else None)

    def timed_out(self, event: TimedOut) -> None:
        if self._tel.metrics_on:
            self._tel.timeouts.add(1, {t.OPERATION: self._op})

    def fallback_started(self, event: FallbackStarted) -> Any:
        if self._tel.metrics_on:
            error_type = _error_type(event.error)
            self._tel.fallbacks.add(1, {t.OPERATION: self._op, t.ERROR_TYPE: error_type})
            self._tel.series.see(t.FALLBACKS, (self._op, error_type))
        if self.span is None:
            return None
        # No error.type yet: like every span of ours it gets one only if it ends in error, and then the error it
        # ended with (the primary's is on the span that failed: its attempt, or the rejected one; and on the count)
        return _start(self._tel, t.SPAN_FALLBACK.format(operation=self._op), {
            t.OPERATION: self._op, t.FALLBACK_REASON: event.reason,
        })

    def fallback_finished(self, token: Any, outcome: Outcome, error: BaseException | None) -> None:
        if token is not None:  # ended as an attempt: a timeout that cut it off is ERROR with TimeoutError
            _end(token.span, outcome.value, error, t.ATTEMPT_OUTCOME, self.span)

    def degraded(self, event: Degraded) -> None:
        if self.span is not None:
            attributes = {t.DEGRADE_MODE: event.mode, t.DEGRADE_REASON: event.reason}
            if event.error is not None:
                attributes[t.ERROR_TYPE] = _error_type(event.error)
            self.span.add_event(t.EVENT_DEGRADED, attributes, event.time_ns)  # when served: a hedge tells it later
            self.span.set_attributes({t.DEGRADE_MODE: event.mode, t.DEGRADE_REASON: event.reason})
        if self._tel.metrics_on:
            self._tel.degradations.add(1, {
                t.OPERATION: self._op, t.DEGRADE_MODE: event.mode, t.DEGRADE_REASON: event.reason,
            })
            self._tel.series.see(t.DEGRADATIONS, (self._op, event.mode, event.reason))

    def call_finished(self, event: CallFinished) -> None:
        outcome = event.outcome.value
        if self.span is not None:
            self.span.set_attribute(t.ATTEMPT, event.attempts)
            # An error the breaker ignores (outcome `ignored`) still ends the call: ERROR and its error.type,
            # as on the attempt span and the `shannon.calls` point. Only a cancellation is no error.
            error = event.error if event.outcome is not CallOutcome.CANCELLATION else None
            _end(self.span, outcome, error, t.CALL_OUTCOME, self._parent)
        if self._tel.metrics_on:
            attributes = {t.OPERATION: self._op, t.CALL_OUTCOME: outcome}
            self._tel.attempts.record(event.attempts, attributes)
            error_type = None
            if event.error is not None and event.outcome is not CallOutcome.CANCELLATION:
                error_type = attributes[t.ERROR_TYPE] = _error_type(event.error)
            self._tel.calls.add(1, attributes)
            self._tel.series.see(t.CALLS, (self._op, outcome, error_type))
