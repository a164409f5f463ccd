"""Recovery and saga events -> spans, span events and metrics.

Spans: one per protected operation (named after it), a child per attempt (``attempt N``) or hedged
attempt (``hedge N``), a short error span per rejected call (``rejected OP``), a span per fallback;
a saga span with a child per step and per compensation. Spans are started by the ``*_started``
methods and made current structurally: the call observer, the saga observer and the tokens of
attempts, fallbacks, steps and compensations are :class:`_Current` scopes that the policies enter
around the work (attach in ``__enter__``, detach in ``__exit__``), so the user's own spans nest under
the attempt, the operation nests under the caller's span, and no span stays current after the work
whatever another hook raises. The ``*_finished`` methods end the span (in ``finally``).

Breaker transitions are span events on the current span, not log records: an event on the span of
the call that caused the transition lands exactly where the reader of the trace looks (Jaeger shows
span events inline), needs no Logs SDK/exporter to be configured, and the metrics already give the
fleet-wide view. A transition caused outside any span is only counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import _telemetry as t
from .._events import CallObserver, SagaObserver
from .._telemetry import BreakerState, CallOutcome, Outcome
from ._instruments import histogram, instrument
from ._providers import METRICS_API, TRACE_API, Recording

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .._events import (
        AttemptFinished,
        BreakerRegistered,
        BreakerTransition,
        CallFinished,
        CallRejected,
        CallStarted,
        CompensationFinished,
        Degraded,
        FallbackStarted,
        RetryScheduled,
        SagaFinished,
        SagaStarted,
        TimedOut,
    )

__all__ = ["RecoveryTelemetry"]

_ERROR = Status(StatusCode.ERROR)
_TIMEOUT = Status(StatusCode.ERROR, "timeout")
_INTERNAL = trace.SpanKind.INTERNAL


class RecoveryTelemetry(Recording):
    """Instruments for protected calls, breakers and sagas; one per OTel hook."""

    def __init__(
        self, tracer: Tracer, meter: Meter, breaker_states: dict[str, BreakerState],
        tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> None:
        super().__init__(tracer_provider, meter_provider)
        self.tracer = tracer
        self.attempts = histogram(meter, t.RETRY_ATTEMPTS)
        self.delay = histogram(meter, t.RETRY_DELAY_DURATION)
        self.calls = instrument(meter, t.CALLS)
        self.breaker_state = instrument(meter, t.BREAKER_STATE_METRIC)
        self.transitions = instrument(meter, t.BREAKER_TRANSITIONS)
        self.timeouts = instrument(meter, t.TIMEOUTS)
        self.fallbacks = instrument(meter, t.FALLBACKS)
        self.degradations = instrument(meter, t.DEGRADATIONS)
        self.compensations = instrument(meter, t.COMPENSATIONS)
        self.hedges = instrument(meter, t.HEDGES)
        # breaker name -> the state last reported as 1 on the state UpDownCounter; shared by the OTel
        # hooks of one meter provider (its ProviderState), as the counter's series are
        self._reported: dict[str, BreakerState] = breaker_states

    def call_started(self, event: CallStarted) -> CallObserver | None:
        # Inlined enabled(): this runs on every protected call.
        if self.tracing_on or self.metrics_on or ((
            (self._watch_tracing and (self._trace_env or TRACE_API._TRACER_PROVIDER is not None))
            or (self._watch_metrics and (self._metrics_env or METRICS_API._METER_PROVIDER is not None))
        ) and self._resolve_globals()):
            return _CallTelemetry(self, event.operation, self.tracing_on)
        return None

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        if not self.enabled():
            return None
        return _SagaTelemetry(self, event.saga, self.tracing_on)

    def _first_sight(self, name: str, state: BreakerState) -> None:
        """One state series per state of a breaker not reported yet: 1 for ``state``, 0 for the others."""
        for each in BreakerState:
            self.breaker_state.add(1 if each is state else 0, {t.BREAKER_NAME: name, t.BREAKER_STATE: each.value})
        self._reported[name] = state

    def breaker_registered(self, event: BreakerRegistered) -> None:
        if self.enabled() and self.metrics_on and event.breaker not in self._reported:
            self._first_sight(event.breaker, event.state)

    def breaker_transition(self, event: BreakerTransition) -> None:
        if not self.enabled():
            return
        if self.tracing_on:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(t.EVENT_BREAKER_TRANSITION, {
                    t.BREAKER_NAME: event.breaker, t.BREAKER_FROM: event.from_state.value,
                    t.BREAKER_TO: event.to_state.value, t.BREAKER_REASON: event.reason,
                })
        if not self.metrics_on:
            return
        name = event.breaker
        if name not in self._reported:
            # Registered while no SDK recorded (the global was set later): the state it is leaving.
            self._first_sight(name, event.from_state)
        self.transitions.add(1, {
            t.BREAKER_NAME: name, t.BREAKER_FROM: event.from_state.value, t.BREAKER_TO: event.to_state.value,
        })
        previous = self._reported[name]
        self.breaker_state.add(-1, {t.BREAKER_NAME: name, t.BREAKER_STATE: previous.value})
        self.breaker_state.add(1, {t.BREAKER_NAME: name, t.BREAKER_STATE: event.to_state.value})
        self._reported[name] = event.to_state


class _Current:
    """A started span as a scope: ``__enter__`` makes it current, ``__exit__`` detaches it.

    The policies enter it around the work and exit it after the matching ``*_finished``; a
    subclass (the call and saga observers) is entered around the whole call or saga.
    """

    __slots__ = ("_token", "span")

    def __init__(self, span: Span | None) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> None:
        if self.span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self.span))

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]


def _start(tel: RecoveryTelemetry, name: str, attributes: dict[str, Any]) -> _Current:
    return _Current(tel.tracer.start_span(name, kind=_INTERNAL, attributes=attributes))


def _end(span: Span, outcome: str, error: BaseException | None, outcome_key: str) -> None:
    try:
        span.set_attribute(outcome_key, outcome)
        if outcome == Outcome.TIMEOUT:
            # An attempt cut off by a timeout carries no exception of its own (the TimeoutError is
            # raised by the scope around it), yet it failed: ERROR, described like a timed-out task span.
            span.set_attribute(t.ERROR_TYPE, _error_type(error) if error is not None else TimeoutError.__name__)
            if error is not None:
                span.record_exception(error)
            span.set_status(_TIMEOUT)
        elif error is not None and outcome != Outcome.CANCELLATION:
            span.set_attribute(t.ERROR_TYPE, _error_type(error))
            span.record_exception(error)
            span.set_status(_ERROR)
    finally:
        span.end()


def _error_type(error: BaseException) -> str:
    from .._events import error_type

    return error_type(error) or type(error).__name__


class _CallTelemetry(_Current, CallObserver):
    """Per-call state: the operation span (current while the policy has this observer entered) and
    pending breaker attributes."""

    __slots__ = ("_breaker", "_op", "_tel")

    def __init__(self, tel: RecoveryTelemetry, operation: str, tracing: bool) -> None:
        super().__init__(
            tel.tracer.start_span(t.SPAN_OPERATION.format(operation=operation), kind=_INTERNAL,
                                  attributes={t.OPERATION: operation})
            if tracing else None
        )
        self._tel = tel
        self._op = operation
        self._breaker: dict[str, str] | None = None

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
        return _start(self._tel, t.SPAN_HEDGE.format(attempt=attempt), attributes)

    def attempt_finished(self, token: Any, event: AttemptFinished) -> None:
        if token is not None:
            _end(token.span, event.outcome.value, event.error, t.ATTEMPT_OUTCOME)

    def breaker_admitted(self, breaker: str, state: BreakerState) -> None:
        self._breaker = {t.BREAKER_NAME: breaker, t.BREAKER_STATE: state.value}
        if self.span is not None:
            self.span.set_attributes(self._breaker)

    def rejected(self, event: CallRejected) -> None:
        if self.span is None:
            return
        attributes = {t.OPERATION: event.operation, t.BREAKER_NAME: event.breaker,
                      t.BREAKER_STATE: event.state.value, t.CALL_OUTCOME: CallOutcome.REJECTED.value}
        self.span.set_attributes({t.BREAKER_NAME: event.breaker, t.BREAKER_STATE: event.state.value})
        span = self._tel.tracer.start_span(t.SPAN_REJECTED.format(operation=event.operation), kind=_INTERNAL,
                                           attributes=attributes)
        span.set_status(Status(StatusCode.ERROR, f"circuit breaker {event.breaker} is {event.state.value}"))
        span.end()

    def retry_scheduled(self, event: RetryScheduled) -> None:
        if self.span is not None:
            attributes: dict[str, Any] = {t.ATTEMPT: event.attempt, t.RETRY_DELAY: event.delay_s}
            if event.error is not None:
                attributes[t.ERROR_TYPE] = _error_type(event.error)
            self.span.add_event(t.EVENT_RETRY_SCHEDULED, attributes)
        if self._tel.metrics_on:
            self._tel.delay.record(event.delay_s, {t.OPERATION: self._op})

    def timed_out(self, event: TimedOut) -> None:
        if self._tel.metrics_on:
            self._tel.timeouts.add(1, {t.OPERATION: self._op})

    def fallback_started(self, event: FallbackStarted) -> Any:
        if self._tel.metrics_on:
            self._tel.fallbacks.add(1, {t.OPERATION: self._op, t.ERROR_TYPE: _error_type(event.error)})
        if self.span is None:
            return None
        return _start(self._tel, t.SPAN_FALLBACK.format(operation=self._op), {
            t.OPERATION: self._op, t.FALLBACK_REASON: event.reason, t.ERROR_TYPE: _error_type(event.error),
        })

    def fallback_finished(self, token: Any, outcome: Outcome, error: BaseException | None) -> None:
        if token is None:
            return
        span = token.span
        if error is not None:
            _end(span, outcome.value, error, t.ATTEMPT_OUTCOME)
            return
        try:  # the error.type of the primary stays on the span
            span.set_attribute(t.ATTEMPT_OUTCOME, outcome.value)
        finally:
            span.end()

    def degraded(self, event: Degraded) -> None:
        if self.span is not None:
            attributes = {t.DEGRADE_MODE: event.mode, t.DEGRADE_REASON: event.reason}
            if event.error is not None:
                attributes[t.ERROR_TYPE] = _error_type(event.error)
            self.span.add_event(t.EVENT_DEGRADED, attributes)
            self.span.set_attributes({t.DEGRADE_MODE: event.mode, t.DEGRADE_REASON: event.reason})
        if self._tel.metrics_on:
            self._tel.degradations.add(1, {
                t.OPERATION: self._op, t.DEGRADE_MODE: event.mode, t.DEGRADE_REASON: event.reason,
            })

    def call_finished(self, event: CallFinished) -> None:
        outcome = event.outcome.value
        if self.span is not None:
            self.span.set_attribute(t.ATTEMPT, event.attempts)
            error = event.error if event.outcome in (CallOutcome.FAILURE, CallOutcome.REJECTED) else None
            _end(self.span, outcome, error, t.CALL_OUTCOME)
        if self._tel.metrics_on:
            attributes = {t.OPERATION: self._op, t.CALL_OUTCOME: outcome}
            self._tel.attempts.record(event.attempts, attributes)
            if event.error is not None and event.outcome is not CallOutcome.CANCELLATION:
                attributes[t.ERROR_TYPE] = _error_type(event.error)
            self._tel.calls.add(1, attributes)


class _SagaTelemetry(_Current, SagaObserver):
    """The saga span, current while the transaction has this observer entered."""

    __slots__ = ("_saga", "_tel")

    def __init__(self, tel: RecoveryTelemetry, saga: str, tracing: bool) -> None:
        super().__init__(
            tel.tracer.start_span(t.SPAN_SAGA.format(saga=saga), kind=_INTERNAL, attributes={t.SAGA_NAME: saga})
            if tracing else None
        )
        self._tel = tel
        self._saga = saga

    def step_started(self, step: str) -> Any:
        if self.span is None:
            return None
        return _start(self._tel, t.SPAN_SAGA_STEP.format(step=step), {t.SAGA_NAME: self._saga, t.SAGA_STEP: step})

    def step_finished(self, token: Any, step: str, outcome: Outcome, error: BaseException | None) -> None:
        if token is not None:
            _end(token.span, outcome.value, error, t.SAGA_OUTCOME)

    def compensation_started(self, step: str) -> Any:
        if self.span is None:
            return None
        return _start(self._tel, t.SPAN_COMPENSATION.format(step=step),
                      {t.SAGA_NAME: self._saga, t.SAGA_STEP: step})

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        if token is not None:
            _end(token.span, event.outcome.value, event.error, t.COMPENSATION_OUTCOME)
        if self._tel.metrics_on:
            self._tel.compensations.add(1, {t.SAGA_NAME: self._saga, t.COMPENSATION_OUTCOME: event.outcome.value})

    def saga_finished(self, event: SagaFinished) -> None:
        span = self.span
        if span is None:
            return
        try:
            span.set_attribute(t.SAGA_OUTCOME, event.outcome.value)
            if event.failed_compensations:
                span.set_status(Status(StatusCode.ERROR, "compensations failed: "
                                       + ", ".join(event.failed_compensations)))
            elif event.outcome is Outcome.TIMEOUT:
                span.set_status(_TIMEOUT)
            elif event.outcome is Outcome.FAILURE:
                span.set_status(_ERROR)
        finally:
            span.end()
