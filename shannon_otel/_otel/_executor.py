"""Executor telemetry: the wave span, task spans made current inside tasks, and wave/task metrics.

Per wave it decides once whether task spans record (tracing on and the wave span sampled) and
whether histograms go through the in-process bridge or plain SDK calls. Counters and live gauges
are observable instruments reading plain dicts, so a task costs a few dict operations, not SDK calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from .. import _telemetry as tel
from .._events import TaskResult, WaveObserver, WaveStarted, error_message, error_type
from .._telemetry import Outcome
from ._instruments import histogram, instrument
from ._providers import Recording, bridge_for
from ._scope import record_error

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, Meter, MeterProvider
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from ..executor._report import WaveReport

_Sink = Any  # HistogramAggregate, a bridge fan-out, or _SdkHistogram: anything with record(key, value, span)
_TOKEN_TYPES = ((tel.TASK_INPUT_TOKENS, "input"), (tel.TASK_OUTPUT_TOKENS, "output"))


class _SdkHistogram:
    """The fallback sink: plain SDK records (used when no bridge is registered for the provider)."""

    __slots__ = ("_histogram", "_keys")

    def __init__(self, histogram: Histogram, spec: tel.MetricSpec) -> None:
        self._histogram = histogram
        self._keys = spec.attributes

    def record(self, key: tuple[Any, ...], value: float, span: SpanContext | None = None) -> None:
        # The SDK takes exemplars from the current span itself (the task span is still current).
        if not -math.inf < value < math.inf:  # a NaN/inf would poison the SDK point's sum for good
            return
        attrs = {k: v for k, v in zip(self._keys, key, strict=True) if v is not None}
        self._histogram.record(value, attrs)


class ExecutorMeters:
    """The executor's instruments on one meter and the live counters its observable instruments read.

    One per MeterProvider (kept by its ``ProviderState``), shared by the OTel hooks of every tracer
    provider used with it: the SDK keeps only the first observable instrument of a name on a meter,
    so a second set would never be read and its waves would be missing from the metrics.
    """

    def __init__(self, meter: Meter) -> None:
        self.durations = histogram(meter, tel.TASK_DURATION)
        self.queue_waits = histogram(meter, tel.TASK_QUEUE_WAIT_DURATION)
        self.tokens = histogram(meter, tel.TASK_TOKENS)
        self.wave_durations = histogram(meter, tel.WAVE_DURATION)
        self.efficiency = instrument(meter, tel.WAVE_EFFICIENCY)
        # Live state read by the observable instruments at collection time.
        self.outcomes: dict[tuple[str, str, str | None], int] = {}
        self.cost: dict[str, float] = {}
        self.active: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        instrument(meter, tel.TASK_OUTCOMES, [self._observe_outcomes])
        instrument(meter, tel.TASK_COST, [self._observe_cost])
        instrument(meter, tel.TASKS_ACTIVE, [self._live(self.active)])
        instrument(meter, tel.TASKS_PENDING, [self._live(self.pending)])

    def _observe_outcomes(self, options: CallbackOptions) -> Iterable[Observation]:
        keys = tel.TASK_OUTCOMES.attributes
        for key, n in list(self.outcomes.items()):
            yield Observation(n, {k: v for k, v in zip(keys, key, strict=True) if v is not None})

    def _observe_cost(self, options: CallbackOptions) -> Iterable[Observation]:
        for wave, total in list(self.cost.items()):
            yield Observation(total, {tel.WAVE_NAME: wave})

    @staticmethod
    def _live(values: dict[str, int]) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for wave, n in list(values.items()):
                yield Observation(n, {tel.WAVE_NAME: wave})

        return observe


class ExecutorTelemetry(Recording):
    """Long-lived, one per OTel hook: its tracer, whether its providers record, and (shared with the
    other OTel hooks of its meter provider) the instruments and live counters of ``meters``."""

    def __init__(
        self, tracer: Tracer, meters: ExecutorMeters, tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        super().__init__(tracer_provider, meter_provider)  # whether they record: resolved once or watched
        self.tracer = tracer
        # An explicit provider's bridge is found now; the global's at each wave (it may be set later).
        self._bridge = bridge_for(meter_provider) if meter_provider is not None else None
        self._global_meter = meter_provider is None
        self.durations, self.queue_waits, self.tokens = meters.durations, meters.queue_waits, meters.tokens
        self.wave_durations, self.efficiency = meters.wave_durations, meters.efficiency
        self.outcomes, self.cost = meters.outcomes, meters.cost
        self.active, self.pending = meters.active, meters.pending

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        if not self.enabled():
            return None
        tracing = self.tracing_on
        bridge = bridge_for(metrics.get_meter_provider()) if self._global_meter else self._bridge
        specs = (
            (tel.TASK_DURATION, self.durations), (tel.TASK_QUEUE_WAIT_DURATION, self.queue_waits),
            (tel.TASK_TOKENS, self.tokens),
        )
        sinks = tuple(
            (bridge.sink(spec, instrument) if bridge is not None else None) or _SdkHistogram(instrument, spec)
            for spec, instrument in specs
        )
        return _WaveTelemetry(self, event, tracing, *sinks)


class _WaveTelemetry(WaveObserver):
    """Per-wave observer, a scope: the executor enters it in the context the wave's tasks inherit
    (making the wave span current there) and exits it in that context when the wave is over."""

    __slots__ = (
        "_attached", "_durations", "_queue_waits", "_span", "_task_span_name", "_tokens", "_unstarted",
        "_wave_context", "_wave_key", "owner", "record_tasks", "wave",
    )

    def __init__(
        self, owner: ExecutorTelemetry, event: WaveStarted, tracing: bool,
        durations: _Sink, queue_waits: _Sink, tokens: _Sink,
    ) -> None:
        self.owner = owner
        self.wave = event.wave
        self._wave_key = (event.wave,)
        self._task_span_name = tel.SPAN_TASK.format(task=event.wave)
        self._durations, self._queue_waits, self._tokens = durations, queue_waits, tokens
        self._span: Span | None = None
        self._attached: object = None
        self._wave_context: otel_context.Context | None = None
        self.record_tasks = False
        if tracing:
            attributes: dict[str, Any] = {tel.WAVE_NAME: event.wave}
            if event.size is not None:
                attributes[tel.WAVE_SIZE] = event.size
            if event.concurrency is not None:
                attributes[tel.WAVE_CONCURRENCY] = event.concurrency
            span = owner.tracer.start_span(tel.SPAN_WAVE.format(wave=event.wave), attributes=attributes)
            self._span = span
            self.record_tasks = span.is_recording()
        self._unstarted = event.size or 0
        owner.pending[event.wave] = owner.pending.get(event.wave, 0) + self._unstarted
        owner.active.setdefault(event.wave, 0)

    def __enter__(self) -> None:
        if self._span is not None:
            self._wave_context = trace.set_span_in_context(self._span)
            self._attached = otel_context.attach(self._wave_context)

    def __exit__(self, *exc_info: object) -> None:
        token, self._attached = self._attached, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        owner, wave = self.owner, self.wave
        owner.active[wave] += 1
        if self._unstarted:
            self._unstarted -= 1
            owner.pending[wave] -= 1
        if not self.record_tasks or self._wave_context is None:
            return None
        # No attributes at start: the SDK validates attributes per call (~1-2 us a call), so the task's
        # attributes are all set in one call when it finishes (the TaskResult carries index and wait).
        span = owner.tracer.start_span(
            self._task_span_name if name == wave else tel.SPAN_TASK.format(task=name), context=self._wave_context,
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        owner, wave = self.owner, self.wave
        outcome = event.outcome
        outcome_value = outcome._value_  # the plain str; `.value` goes through the enum descriptor
        owner.active[wave] -= 1
        error = event.error
        etype = error_type(error) if error is not None else None
        key = (wave, outcome_value, etype)
        owner.outcomes[key] = owner.outcomes.get(key, 0) + 1
        span_context = token[0].get_span_context() if token is not None else None
        self._durations.record(key, event.duration_s, span_context)
        self._queue_waits.record(self._wave_key, event.queue_wait_s, span_context)
        measurements = event.measurements
        if measurements:
            self._measure(measurements, span_context)
        if token is None:
            return
        span, context_token = token
        attributes: dict[str, Any] = {
            tel.TASK_INDEX: event.index, tel.TASK_QUEUE_WAIT: event.queue_wait_s, tel.TASK_OUTCOME: outcome_value,
        }
        if measurements:
            attributes.update(measurements)
        if event.batch is not None:
            attributes[tel.WAVE_BATCH] = event.batch
        if error is not None:
            attributes[tel.ERROR_TYPE] = etype or ""
        try:
            span.set_attributes(attributes)
            if error is not None:
                description = "timeout" if outcome is Outcome.TIMEOUT else f"{etype}: {error_message(error)}"
                span.set_status(Status(StatusCode.ERROR, description))
                record_error(span, error)
        finally:
            otel_context.detach(context_token)
            span.end()

    def task_skipped(self, event: TaskResult[Any]) -> None:
        # Counted by outcome only: it never ran, so it has no span and no duration.
        owner = self.owner
        if self._unstarted:
            self._unstarted -= 1
            owner.pending[self.wave] -= 1
        key = (self.wave, event.outcome.value, error_type(event.error) if event.error is not None else None)
        owner.outcomes[key] = owner.outcomes.get(key, 0) + 1

    def _measure(self, measurements: Any, span_context: SpanContext | None) -> None:
        for name, token_type in _TOKEN_TYPES:
            value = measurements.get(name)
            if value is not None:
                self._tokens.record((self.wave, token_type), value, span_context)
        cost = measurements.get(tel.TASK_COST_ATTR)
        # A NaN cost would make the observable counter's total NaN (and the series vanish) until restart.
        if cost is not None and -math.inf < cost < math.inf:
            self.owner.cost[self.wave] = self.owner.cost.get(self.wave, 0.0) + cost

    def wave_finished(self, report: WaveReport) -> None:
        owner, wave = self.owner, self.wave
        owner.pending[wave] -= self._unstarted  # tasks never started (fail-fast, cancellation)
        self._unstarted = 0
        attrs = {tel.WAVE_NAME: wave, tel.TASK_OUTCOME: report.outcome.value}
        owner.wave_durations.record(report.duration_s, attrs)
        owner.efficiency.set(report.parallel_efficiency, {tel.WAVE_NAME: wave})
        span = self._span
        if span is None:
            return
        try:
            span.set_attributes({
                tel.TASK_OUTCOME: report.outcome.value,
                **{tel.WAVE_TASKS_PREFIX + o.value: n for o, n in report.counts.items()},
                tel.WAVE_EFFICIENCY_ATTR: report.parallel_efficiency,
            })
            if report.outcome is Outcome.FAILURE:
                # No task failed, yet the wave did: it raised (its lazy input did, or a task a BaseException).
                reason = f"{report.failed} of {report.total} tasks failed" if report.failed else "the wave raised"
                span.set_status(Status(StatusCode.ERROR, reason))
        finally:
            span.end()
