"""Recovery and saga events -> spans, span events and metrics: the instruments, and breaker telemetry.

The per-call observer lives in ``_call``, the per-saga one in ``_saga``, the span scope both use in
``_scope``.

Spans: one per protected operation (named after it), a child per attempt (``attempt N``) or hedged
attempt (``hedge N``; a retry inside it is an ``attempt`` naming it in ``shannon.hedge.attempt``), a short
error span per rejected call (``rejected OP``), a span per fallback; a saga span with a child per step
and per compensation. Spans are started by the ``*_started`` methods and made current structurally: the
call observer, the saga observer and the tokens of
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

from opentelemetry import metrics, trace

from .. import _telemetry as t
from .._telemetry import BreakerState
from ._call import _CallTelemetry
from ._instruments import histogram, instrument
from ._providers import METRICS_API, TRACE_API, Recording, bridge_for, weak_provider
from ._saga import _SagaTelemetry
from ._series import SeriesWatch

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider

    from .._events import BreakerRegistered, BreakerTransition, CallObserver, CallStarted, SagaObserver, SagaStarted

__all__ = ["RecoveryTelemetry"]


class RecoveryTelemetry(Recording):
    """Instruments for protected calls, breakers and sagas; one per OTel hook."""

    def __init__(
        self, tracer: Tracer, meter: Meter, breaker_states: dict[str, BreakerState], series: SeriesWatch,
        tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> None:
        super().__init__(tracer_provider, meter_provider)
        self.tracer = tracer
        self.attempts = histogram(meter, t.RETRY_ATTEMPTS)
        self.delay = histogram(meter, t.RETRY_DELAY_DURATION)
        # The provider's bridge is asked for at each retry: the global provider may be set later, and any
        # provider's readers may change (add_metric_reader). Held weakly, as the state that holds this.
        self._provider = weak_provider(meter_provider) if meter_provider is not None else None
        self.calls = instrument(meter, t.CALLS)
        self.breaker_state = instrument(meter, t.BREAKER_STATE_METRIC)
        self.transitions = instrument(meter, t.BREAKER_TRANSITIONS)
        self.timeouts = instrument(meter, t.TIMEOUTS)
        self.fallbacks = instrument(meter, t.FALLBACKS)
        self.degradations = instrument(meter, t.DEGRADATIONS)
        self.compensations = instrument(meter, t.COMPENSATIONS)
        self.hedges = instrument(meter, t.HEDGES)
        # The attribute sets given to the instruments above, for the one warning when the SDK folds some (shared
        # by the hooks of one meter provider). Only the sets of calls, fallbacks, degradations, compensations and
        # breakers are noted: those of attempts, retry delays, timeouts and hedges are fewer than the calls'.
        self.series = series
        # breaker name -> the state last reported as 1 on the state UpDownCounter; shared by the OTel
        # hooks of one meter provider (its ProviderState), as the counter's series are
        self._reported: dict[str, BreakerState] = breaker_states
        # breaker name -> its state, for breakers built while the global meter provider was not set yet (a
        # decorator at import time, before configure()): reported once it is, or they had no state series
        # until their first transition
        self._unseen: dict[str, BreakerState] = {}

    def _resolve_globals(self) -> bool:
        on = super()._resolve_globals()
        if self.metrics_on and self._unseen:
            unseen, self._unseen = self._unseen, {}
            for name, state in unseen.items():
                if name not in self._reported:
                    self._first_sight(name, state)
        return on

    def delay_sink(self) -> Any:
        """Where retry delays go when the provider has ``configure()`` / ``testing``'s metrics bridge, None
        for plain SDK records. The bridge keeps each bucket's latest exemplar in every export, as for the
        task histograms: the SDK exports an exemplar once, and the collector's Prometheus endpoint shows
        it only until the next export, which a slower scrape missed (no exemplar dot for a retry)."""
        provider = metrics.get_meter_provider() if self._provider is None else self._provider()
        bridge = bridge_for(provider) if provider is not None else None
        return bridge.exemplar_sink(t.RETRY_DELAY_DURATION, self.delay) if bridge is not None else None

    def call_started(self, event: CallStarted) -> CallObserver | None:
        # Inlined enabled(): this runs on every protected call. A global still unset is watched even while the
        # other records (the MeterProvider set first, the TracerProvider after the first call: no span for good).
        if self._watching and (
            (self._watch_tracing and (self._trace_env or TRACE_API._TRACER_PROVIDER is not None))
            or (self._watch_metrics and (self._metrics_env or METRICS_API._METER_PROVIDER is not None))
        ):
            self._resolve_globals()
        if self.tracing_on or self.metrics_on:
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
            self.series.see(t.BREAKER_STATE_METRIC, (name, each.value))
        self._reported[name] = state

    def breaker_registered(self, event: BreakerRegistered) -> None:
        if self.enabled() and self.metrics_on:
            if event.breaker not in self._reported:
                self._first_sight(event.breaker, event.state)
        elif self._watch_metrics:
            self._unseen[event.breaker] = event.state

    def breaker_transition(self, event: BreakerTransition) -> None:
        if not self.enabled():
            if event.breaker in self._unseen:
                self._unseen[event.breaker] = event.to_state
            return
        if self.tracing_on:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(t.EVENT_BREAKER_TRANSITION, {
                    t.BREAKER_NAME: event.breaker, t.BREAKER_FROM: event.from_state.value,
                    t.BREAKER_TO: event.to_state.value, t.BREAKER_REASON: event.reason,
                })
        if not self.metrics_on:
            if event.breaker in self._unseen:
                self._unseen[event.breaker] = event.to_state
            return
        name = event.breaker
        if name not in self._reported:
            # Registered while no SDK recorded (the global was set later): the state it is leaving.
            self._first_sight(name, event.from_state)
        self.transitions.add(1, {
            t.BREAKER_NAME: name, t.BREAKER_FROM: event.from_state.value, t.BREAKER_TO: event.to_state.value,
        })
        self.series.see(t.BREAKER_TRANSITIONS, (name, event.from_state.value, event.to_state.value))
        previous = self._reported[name]
        self.breaker_state.add(-1, {t.BREAKER_NAME: name, t.BREAKER_STATE: previous.value})
        self.breaker_state.add(1, {t.BREAKER_NAME: name, t.BREAKER_STATE: event.to_state.value})
        self._reported[name] = event.to_state
