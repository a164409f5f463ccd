"""Per-saga telemetry: the saga span, a span per step and per compensation, the compensation counter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import _telemetry as t
from .._events import SagaObserver
from .._telemetry import Outcome
from ._end import end
from ._exception import forget, pass_on, record_error
from ._scope import _ERROR, _INTERNAL, _TIMEOUT, _Current, _end, _error_type, _start, failed

if TYPE_CHECKING:
    from .._events import CompensationFinished, SagaFinished
    from ._recovery import RecoveryTelemetry


class _SagaTelemetry(_Current, SagaObserver):
    """The saga span, current while the transaction has this observer entered."""

    __slots__ = ("_parent", "_saga", "_tel")

    def __init__(self, tel: RecoveryTelemetry, saga: str, tracing: bool) -> None:
        super().__init__(
            tel.tracer.start_span(t.SPAN_SAGA.format(saga=saga), kind=_INTERNAL, attributes={t.SAGA_NAME: saga})
            if tracing else None
        )
        self._tel = tel
        self._saga = saga
        # The span the saga span starts under, told of an error recorded here (one that propagates unwrapped)
        self._parent = trace.get_current_span() if tracing else None

    def step_started(self, step: str) -> Any:
        if self.span is None:
            return None
        return _start(self._tel, t.SPAN_SAGA_STEP.format(step=step), {t.SAGA_NAME: self._saga, t.SAGA_STEP: step})

    def step_finished(self, token: Any, step: str, outcome: Outcome, error: BaseException | None) -> None:
        if token is not None:  # the saga span is told of the error recorded here: it writes no second event
            _end(token.span, outcome.value, error, t.SAGA_OUTCOME, self.span)

    def compensation_started(self, step: str) -> Any:
        if self.span is None:
            return None
        return _start(self._tel, t.SPAN_COMPENSATION.format(step=step),
                      {t.SAGA_NAME: self._saga, t.SAGA_STEP: step})

    def compensation_finished(self, token: Any, event: CompensationFinished) -> None:
        if token is not None:  # the saga span is told of the error recorded here, and passes it on as it ends
            _end(token.span, event.outcome.value, event.error, t.COMPENSATION_OUTCOME, self.span)
        if self._tel.metrics_on:
            self._tel.compensations.add(1, {t.SAGA_NAME: self._saga, t.COMPENSATION_OUTCOME: event.outcome.value})
            self._tel.series.see(t.COMPENSATIONS, (self._saga, event.outcome.value))

    def saga_finished(self, event: SagaFinished) -> None:
        span = self.span
        if span is None:
            return
        try:
            # A compensation's error may propagate past the saga unwrapped (a KeyboardInterrupt, a misused
            # compensate's TypeError) though the saga ends with its step's: the spans it then ends write no copy.
            pass_on(span, self._parent)
            span.set_attribute(t.SAGA_OUTCOME, event.outcome.value)
            status: Status | None = None
            # A failed saga says why, as every failed span does (error.type, description): the error that
            # failed the transaction (its step span has the event), TimeoutError for a timeout.
            if event.outcome is Outcome.TIMEOUT:
                span.set_attribute(t.ERROR_TYPE, TimeoutError.__name__)
                status = _TIMEOUT
            elif event.outcome is Outcome.FAILURE and event.error is not None:
                error_type = _error_type(event.error)
                span.set_attribute(t.ERROR_TYPE, error_type)
                status = failed(error_type, event.error)
                # the event of an error the block raised itself (a step's has it on its step span)
                record_error(span, event.error, self._parent)
            elif event.outcome is Outcome.FAILURE:
                status = _ERROR
            if event.failed_compensations:  # what is still in effect comes first
                status = Status(StatusCode.ERROR, "compensations failed: " + ", ".join(event.failed_compensations))
            if status is not None:
                span.set_status(status)
        finally:
            forget(span)
            end(span)
