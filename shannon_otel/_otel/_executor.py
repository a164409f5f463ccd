"""Executor telemetry: the wave span, task spans made current inside tasks, and wave/task metrics.

Per wave it decides once whether task spans record (tracing on and the wave span sampled) and
whether histograms go through the in-process bridge or plain SDK calls, and binds the recorder of
its successes (duration and queue wait at the wave's own keys). Counters and live gauges are
observable instruments: a task bumps integers on its wave's observer, which a collection adds up
(``ExecutorMeters``), so a task costs no SDK call and no shared dict update.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from .. import _telemetry as tel
from .._events import TaskResult, WaveObserver, WaveStarted, error_type
from .._fork import in_forked_child, release_held
from .._telemetry import Outcome
from ._end import end
from ._exception import forget, record_error
from ._instruments import histogram, instrument
from ._providers import Recording, bridge_for, weak_provider
from ._scope import failed
from ._series import sdk_limit

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, Meter, MeterProvider
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from ..executor._report import WaveReport

_Sink = Any  # HistogramAggregate, a bridge fan-out, or _SdkHistogram: anything with record(key, value, span)
_TOKEN_TYPES = ((tel.TASK_INPUT_TOKENS, "input"), (tel.TASK_OUTPUT_TOKENS, "output"))
# Read per task: module constants, not attribute lookups on every call.
_log = logging.getLogger("shannon_otel")
_WAVE, _INDEX, _QUEUE_WAIT, _OUTCOME = tel.WAVE_NAME, tel.TASK_INDEX, tel.TASK_QUEUE_WAIT, tel.TASK_OUTCOME
_SUCCESS_OUTCOME = Outcome.SUCCESS
_SUCCESS: str = Outcome.SUCCESS.value
# The wave name of the overflow point (no wave has an empty name) and its attributes (the SDK's).
_OVER = ""
_OVER_KEY: tuple[str, str, str | None] = (_OVER, _OVER, None)
_OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}


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
        self._histogram.record(value, self._attributes(key))

    def _attributes(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return {k: v for k, v in zip(self._keys, key, strict=True) if v is not None}

    def bind(self, key: tuple[Any, ...]) -> _BoundSdkHistogram:
        return _BoundSdkHistogram(self._histogram, self._attributes(key))


class _BoundSdkHistogram:
    """SDK records at one attribute set (the dict built once; the SDK copies what it keeps)."""

    __slots__ = ("_attributes", "_histogram")

    def __init__(self, histogram: Histogram, attributes: dict[str, Any]) -> None:
        self._histogram, self._attributes = histogram, attributes

    def record(self, value: float, span: SpanContext | None = None) -> None:
        if -math.inf < value < math.inf:
            self._histogram.record(value, self._attributes)


class _TwoRecords:
    """Two bound sinks recorded in turn: the general pair (the bridge's BoundPair is the fast one)."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Any, second: Any) -> None:
        self._first, self._second = first, second

    def record(self, first_value: float, second_value: float, span: SpanContext | None = None) -> None:
        self._first.record(first_value, span)
        self._second.record(second_value, span)


def bind_pair(first: _Sink, first_key: tuple[Any, ...], second: _Sink, second_key: tuple[Any, ...]) -> Any:
    """A recorder of two measurements at fixed keys: ``record(first_value, second_value, span)`` gives
    the same data as ``first.record(first_key, ...)`` then ``second.record(second_key, ...)``."""
    one, two = first.bind(first_key), second.bind(second_key)
    pair = getattr(one, "pair", None)
    return (pair(two) if pair is not None else None) or _TwoRecords(one, two)


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
        # State read by the observable instruments at collection time (on a reader's thread). Per task
        # a running wave only bumps its own integers (started, finished, succeeded, ...); a collection
        # adds those of the running waves to the totals of the finished ones, under ``lock``, which a
        # wave also holds to fold its success count into ``outcomes`` when it ends.
        self.lock = threading.Lock()
        in_forked_child(self._forked)  # a child forked during a collection would wait on it for good
        self.outcomes: dict[tuple[str, str, str | None], int] = {}  # folded; other outcomes go here at once
        self.cost: dict[str, float] = {}
        self.waves: dict[str, None] = {}  # every wave name seen: its gauges report 0 once it is idle
        self.running: dict[_WaveTelemetry, None] = {}
        self.warned = False  # the limit's one warning
        instrument(meter, tel.TASK_OUTCOMES, [self._observe_outcomes])
        instrument(meter, tel.TASK_COST, [self._observe_cost])
        instrument(meter, tel.TASKS_ACTIVE, [self._observe_active])
        instrument(meter, tel.TASKS_PENDING, [self._observe_pending])

    def _forked(self) -> None:
        release_held(self.lock)

    # Bounded like the SDK's own streams: the state of the first ``limit`` (the SDK's default, 2000)
    # attribute sets of a table is kept, later ones are folded into the overflow point at once -- what
    # the SDK would export of them anyway, and without it a wave name per request kept its counts here
    # for good (~350 B each). Called on the event loop, for a key not in its table yet.
    def admit(self, table: dict[Any, Any], key: Any, overflow: Any) -> Any:
        """``key``, or ``overflow`` when ``table`` already holds the limit's worth of keys (the first time,
        logging one warning: the folded names vanish from every dashboard, and nothing else says why)."""
        if key in table:
            return key
        limit = sdk_limit()
        if limit is None or len(table) < limit:
            return key
        if not self.warned:
            self.warned = True
            # The set folded, in full: a wave of fixed name whose tasks raise exceptions of classes made at
            # run time fills the table with error types, and a warning blaming the wave's name misled.
            wave, outcome, error = key if isinstance(key, tuple) else (key, None, None)
            folded = ", ".join(f"{what} {value!r}" for what, value in (
                ("wave", wave), ("outcome", outcome), ("error type", error)) if value is not None)
            _log.warning(
                "the task metrics of one meter provider reached their limit of %d attribute sets (wave name, "
                "task outcome, error type): new ones, from %s on, are counted in the otel.metric.overflow "
                "point, as the SDK exports them; name waves after code paths, not per request, and raise "
                "errors of a fixed set of classes (error.type is the class's name)", limit, folded)
        return overflow

    def _observe_outcomes(self, options: CallbackOptions) -> Iterable[Observation]:
        keys = tel.TASK_OUTCOMES.attributes
        with self.lock:
            totals = dict(self.outcomes)
            for wave in self.running:
                succeeded = wave.succeeded
                if succeeded:
                    totals[wave.success_key] = totals.get(wave.success_key, 0) + succeeded
        for key, n in totals.items():
            yield Observation(n, _OVERFLOW_ATTRIBUTES if key[0] == _OVER else
                              {k: v for k, v in zip(keys, key, strict=True) if v is not None})

    def _observe_cost(self, options: CallbackOptions) -> Iterable[Observation]:
        for wave, total in list(self.cost.items()):
            yield Observation(total, _OVERFLOW_ATTRIBUTES if wave == _OVER else {tel.WAVE_NAME: wave})

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            totals = dict.fromkeys(self.waves, 0)
            for wave in self.running:
                totals[wave.name_key] += wave.active()
        for name, n in totals.items():
            yield Observation(n, _OVERFLOW_ATTRIBUTES if name == _OVER else {tel.WAVE_NAME: name})

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            totals = dict.fromkeys(self.waves, 0)
            for wave in self.running:
                totals[wave.name_key] += wave.pending()
        for name, n in totals.items():
            yield Observation(n, _OVERFLOW_ATTRIBUTES if name == _OVER else {tel.WAVE_NAME: name})


class ExecutorTelemetry(Recording):
    """Long-lived, one per OTel hook: its tracer, whether its providers record, and (shared with the
    other OTel hooks of its meter provider) the instruments and live counters of ``meters``."""

    def __init__(
        self, tracer: Tracer, meters: ExecutorMeters, tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        super().__init__(tracer_provider, meter_provider)  # whether they record: resolved once or watched
        self.tracer = tracer
        # The provider's bridge is asked for at each wave: the global provider may be set later, and
        # any provider's readers may change (add_metric_reader). Held weakly, as the state that holds this.
        self._provider = weak_provider(meter_provider) if meter_provider is not None else None
        self.durations, self.queue_waits, self.tokens = meters.durations, meters.queue_waits, meters.tokens
        self.wave_durations, self.efficiency = meters.wave_durations, meters.efficiency
        self.meters = meters
        self.outcomes, self.cost = meters.outcomes, meters.cost

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        if not self.enabled():
            return None
        tracing = self.tracing_on
        provider = metrics.get_meter_provider() if self._provider is None else self._provider()
        bridge = bridge_for(provider) if provider is not None else None
        specs = (
            (tel.TASK_DURATION, self.durations), (tel.TASK_QUEUE_WAIT_DURATION, self.queue_waits),
            (tel.TASK_TOKENS, self.tokens),
        )
        durations, queue_waits, tokens = (
            (bridge.sink(spec, instrument) if bridge is not None else None) or _SdkHistogram(instrument, spec)
            for spec, instrument in specs
        )
        waves = bridge.exemplar_sink(tel.WAVE_DURATION, self.wave_durations) if bridge is not None else None
        return _WaveTelemetry(self, event, tracing, durations, queue_waits, tokens,
                              waves or _SdkHistogram(self.wave_durations, tel.WAVE_DURATION))


class _WaveTelemetry(WaveObserver):
    """Per-wave observer, a scope: the executor enters it in the context the wave's tasks inherit
    (making the wave span current there) and exits it in that context when the wave is over.

    Per task it only bumps its own counters (read by the observable instruments through
    ``ExecutorMeters.running``) and records the two task histograms; a success, the common case,
    goes through one pair recorder bound to the wave's keys when the wave starts.
    """

    __slots__ = (
        "_attached",
        "_durations",
        "_ok",
        "_parent",
        "_queue_waits",
        "_size",
        "_skipped",
        "_span",
        "_task_span_name",
        "_tokens",
        "_tracer",
        "_untraced",
        "_wave_context",
        "_wave_durations",
        "_wave_key",
        "name_key",
        "owner",
        "record_tasks",
        "started",
        "succeeded",
        "success_key",
        "unsuccessful",
        "wave",
    )

    def __init__(
        self, owner: ExecutorTelemetry, event: WaveStarted, tracing: bool,
        durations: _Sink, queue_waits: _Sink, tokens: _Sink, wave_durations: _Sink,
    ) -> None:
        self.owner = owner
        self.wave = wave = event.wave
        self._wave_key = (wave,)
        self.success_key: tuple[str, str, str | None] = (wave, _SUCCESS, None)
        self._task_span_name = tel.SPAN_TASK.format(task=wave)
        self._durations, self._queue_waits, self._tokens = durations, queue_waits, tokens
        self._wave_durations = wave_durations
        self._ok = bind_pair(durations, self.success_key, queue_waits, self._wave_key)
        self._span: Span | None = None
        self._parent: Span | None = None  # the caller's span: the wave's own error ends it next (record_error)
        self._attached: object = None
        self._wave_context: otel_context.Context | None = None  # task spans' parent: set when they record
        self._tracer = owner.tracer
        self.record_tasks = False
        if tracing:
            attributes: dict[str, Any] = {tel.WAVE_NAME: wave}
            if event.size is not None:
                attributes[tel.WAVE_SIZE] = event.size
            if event.concurrency is not None:
                attributes[tel.WAVE_CONCURRENCY] = event.concurrency
            self._parent = trace.get_current_span()
            span = owner.tracer.start_span(tel.SPAN_WAVE.format(wave=wave), attributes=attributes)
            self._span = span
            self.record_tasks = span.is_recording()
        # Without task spans, a task's records see the span its task runs under: the wave span, or the
        # caller's own span when the wave makes none (tracing off). Read once: it is the same for every task.
        under = self._span.get_span_context() if self._span is not None else trace.get_current_span().get_span_context()
        self._untraced: SpanContext | None = under if under.is_valid else None
        # Read by the observable instruments (ExecutorMeters) while the wave is in ``running``.
        self._size = event.size or 0
        self.started = self.succeeded = self.unsuccessful = self._skipped = 0
        meters = owner.meters
        with meters.lock:
            self.name_key = meters.admit(meters.waves, wave, _OVER)  # its name in the gauges' table
            meters.waves.setdefault(self.name_key, None)
            meters.running[self] = None

    def active(self) -> int:
        """Tasks started and not finished yet (a finished task is either succeeded or unsuccessful)."""
        finished = self.succeeded + self.unsuccessful  # read first: never more finished than started
        return self.started - finished

    def pending(self) -> int:
        """Tasks neither started nor skipped yet: of a sized wave, all of them; of a lazy input, those taken from it
        (``task_queued``) that wait for a pool or rate limit. ``_size`` read first: never more than are pending."""
        return max(self._size - self.started - self._skipped, 0)

    def __enter__(self) -> None:
        if self._span is not None:
            wave_context = trace.set_span_in_context(self._span)
            self._attached = otel_context.attach(wave_context)
            if self.record_tasks:
                self._wave_context = wave_context

    def __exit__(self, *exc_info: object) -> None:
        token, self._attached = self._attached, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def task_queued(self, index: int, name: str) -> None:
        # A lazy input's size, as it is taken: its start or skip takes it off pending again (see pending)
        self._size += 1

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        self.started += 1
        parent = self._wave_context  # None unless task spans record (see __enter__)
        if parent is None:
            return None
        # No attributes at start: index and queue wait go on with the outcome when the task ends, in
        # one write (the TaskResult carries them; see task_finished).
        span = self._tracer.start_span(
            self._task_span_name if name == self.wave else tel.SPAN_TASK.format(task=name), context=parent,
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
        _, index, _, outcome, _, error, duration, queue_wait, measurements, batch = event  # one unpack per task
        if token is not None and outcome is _SUCCESS_OUTCOME and measurements is None and batch is None:
            # The common traced case, kept short (it runs per task): a success without measurements
            # or batch. The same records and attributes as the general path below, in one public
            # set_attributes call (the SDK validates each: most of what a traced task costs above a bare
            # span; writing them past the SDK's checks was measured and not taken, docs/benchmarks.md).
            span, context_token = token
            try:
                self.succeeded += 1
                self._ok.record(duration, queue_wait, span.get_span_context())
                span.set_attributes({_INDEX: index, _QUEUE_WAIT: queue_wait, _OUTCOME: _SUCCESS})
            finally:
                otel_context.detach(context_token)
                forget(span)
                end(span)
            return
        span_context = token[0].get_span_context() if token is not None else self._untraced
        etype: str | None = None
        if outcome is _SUCCESS_OUTCOME:  # never an error: counted and recorded at the wave's own keys
            self.succeeded += 1
            self._ok.record(duration, queue_wait, span_context)
        else:
            self.unsuccessful += 1
            etype = error_type(error) if error is not None else None
            key = (self.wave, outcome._value_, etype)  # `_value_`: the plain str, without the enum descriptor
            outcomes = self.owner.outcomes
            counted, n = key, outcomes.get(key)
            if n is None:  # a new attribute set (the histograms below bound theirs themselves)
                counted = self.owner.meters.admit(outcomes, key, _OVER_KEY)
                n = outcomes.get(counted, 0)
            outcomes[counted] = n + 1
            self._durations.record(key, duration, span_context)
            self._queue_waits.record(self._wave_key, queue_wait, span_context)
        if measurements:
            self._measure(measurements, span_context)
        if token is None:
            return
        span, context_token = token
        # The span's own attributes last: past the SDK's attribute count limit the oldest are dropped, and many
        # user measurements must not push out the outcome and error.type that searches and the tail sampler read.
        attributes: dict[str, Any] = dict(measurements) if measurements else {}
        if outcome is not _SUCCESS_OUTCOME:
            # what a search for this wave's failed tasks reads (its alerts' Jaeger links) while the run goes on;
            # not on a success's span: an attribute costs ~1 us of the SDK's validation per traced task
            attributes[_WAVE] = self.wave
        attributes[_INDEX] = index
        attributes[_QUEUE_WAIT] = queue_wait
        if batch is not None:
            attributes[tel.WAVE_BATCH] = batch
        attributes[_OUTCOME] = outcome._value_
        if error is not None:
            attributes[tel.ERROR_TYPE] = etype or ""
        try:
            span.set_attributes(attributes)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, "timeout") if outcome is Outcome.TIMEOUT
                                else failed(etype or "", error))
                # its parent the wave span: a task's KeyboardInterrupt & co leaves the wave as it is, one event
                record_error(span, error, self._span)
        finally:
            otel_context.detach(context_token)
            forget(span)
            end(span)

    def task_skipped(self, event: TaskResult[Any]) -> None:
        # Counted by outcome only: it never ran, so it has no span and no duration.
        self._skipped += 1
        key = (self.wave, event.outcome.value, error_type(event.error) if event.error is not None else None)
        outcomes = self.owner.outcomes
        key = self.owner.meters.admit(outcomes, key, _OVER_KEY)
        outcomes[key] = outcomes.get(key, 0) + 1

    def tasks_skipped(self, first: TaskResult[Any], count: int) -> None:
        # O(1) for the rest of a wave stopped early (one call per task cost ~3 s for a million)
        self._skipped += count
        key = (self.wave, first.outcome.value, None)
        outcomes = self.owner.outcomes
        key = self.owner.meters.admit(outcomes, key, _OVER_KEY)
        outcomes[key] = outcomes.get(key, 0) + count

    def _measure(self, measurements: Any, span_context: SpanContext | None) -> None:
        for name, token_type in _TOKEN_TYPES:
            value = measurements.get(name)
            if value is not None:
                self._tokens.record((self.wave, token_type), value, span_context)
        cost = measurements.get(tel.TASK_COST_ATTR)
        # A NaN cost would make the observable counter's total NaN (and the series vanish) until restart;
        # so would a total overflowing to inf (two costs of 1e308): such a cost is left out of the counter.
        if cost is not None and -math.inf < cost < math.inf:
            costs = self.owner.cost
            name = self.owner.meters.admit(costs, self.wave, _OVER)
            total = costs.get(name, 0.0) + cost
            if -math.inf < total < math.inf:
                costs[name] = total

    def wave_finished(self, report: WaveReport) -> None:
        owner, wave = self.owner, self.wave
        meters = owner.meters
        with meters.lock:  # from now on the finished waves' totals hold this wave's successes
            meters.running.pop(self, None)
            if self.succeeded:
                key = meters.admit(meters.outcomes, self.success_key, _OVER_KEY)
                meters.outcomes[key] = meters.outcomes.get(key, 0) + self.succeeded
        span, error = self._span, report.error
        try:  # whatever raises here, the span ends
            erred = bool(report.failed) or report.outcome is Outcome.FAILURE or error is not None
            etype = ((error_type(error) or "") if error is not None else _wave_error_type(report)) if erred else None
            # Its exemplar: the wave span (or the caller's span when tracing is off), as for the task histograms;
            # its error.type the span's (the semantic conventions' duration metrics carry the operation's)
            self._wave_durations.record((wave, report.outcome.value, etype), report.duration_s, self._untraced)
            owner.efficiency.set(report.parallel_efficiency, {tel.WAVE_NAME: wave})
            if span is None:
                return
            span.set_attributes({  # the outcome last: the one kept longest past a low attribute count limit
                **{tel.WAVE_TASKS_PREFIX + o.value: n for o, n in report.counts.items()},
                tel.WAVE_EFFICIENCY_ATTR: report.parallel_efficiency,
                **({tel.ERROR_TYPE: etype} if etype is not None else {}),
                tel.TASK_OUTCOME: report.outcome.value,
            })
            if error is not None:
                # The wave itself raised (its lazy input, a task's or hook's KeyboardInterrupt): the error that
                # ended the span, as its caller gets it, recorded here once (unless a task span under it has it).
                span.set_status(failed(etype or "", error))
                record_error(span, error, self._parent)
            elif erred:
                # A cancelled wave whose tasks failed before it was cancelled is ERROR too (its outcome
                # stays `cancellation`).
                span.set_status(Status(StatusCode.ERROR, _failed_reason(report)))
        finally:
            if span is not None:
                forget(span)
                end(span)


def _wave_error_type(report: WaveReport) -> str:
    """The ``error.type`` of a wave span its tasks failed (the semantic conventions ask it of every failed span;
    a wave that raised itself has that error's): their error type when they share one, else ``_OTHER``, the
    conventions' fallback."""
    types = report.errors_by_type
    if report.failed and len(types) == 1:
        (only,) = types
        if only:
            return only
    return tel.ERROR_TYPE_OTHER


def _failed_reason(report: WaveReport) -> str:
    """The wave span's ERROR description, as its ``shannon.wave.tasks.*`` counts say it: "2 of 7 tasks failed,
    1 timed out" (a timeout is not called a failure there, nor in the report's counts)."""
    failed, timed_out = report.counts.get(Outcome.FAILURE, 0), report.counts.get(Outcome.TIMEOUT, 0)
    if not failed and not timed_out:
        return "the wave raised"
    tasks = "1 task" if report.total == 1 else f"{report.total} tasks"  # "1 of 1 task failed", not "1 tasks"
    parts = [f"{failed} of {tasks} failed"] if failed else []
    if timed_out:
        parts.append(f"{timed_out} timed out" if failed else f"{timed_out} of {tasks} timed out")
    return ", ".join(parts)
