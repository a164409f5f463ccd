"""What a wave returns: per-task results and the wave report, built in O(1) per task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from .._events import error_type
from .._stats import LogHistogram
from .._telemetry import Outcome
from ..reporting._advice import Recommendation, advise_wave

K = TypeVar("K")
V = TypeVar("V")


class ReadOnlyDict(dict[K, V]):
    """A dict that refuses changes (TypeError): the mappings of a report and of a task's result.

    The same object goes to every hook (``wave_finished``, ``task_finished``) and then to the user: a hook
    that cleared ``report.counts`` emptied the user's report. Still a dict (``==``, JSON, ``asdict``);
    it pickles and copies as a plain dict.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a wave's report and task results are read-only (a copy: dict(mapping))")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __reduce__(self) -> tuple[type[dict[K, V]], tuple[dict[K, V]]]:
        return dict, (dict(self),)


@dataclass(frozen=True, slots=True)
class Summary:
    """Distribution of one per-task quantity (seconds, tokens, ...).

    ``count``, ``total``, ``mean`` and ``max`` are exact (as float sums are: ``total`` and ``mean`` read
    inf once the values' sum passes the float range, ~1.8e308, which one task's record() refuses).
    ``p50``/``p95``/``p99`` are nearest-rank quantiles (the value of rank ``ceil(q * count)`` in sorted
    order), read from bounded-memory log bins: within 1% of that value for magnitudes from 1e-9 to 1e15
    (smaller ones read as 0), never below the smallest value seen nor above ``max`` (so
    ``p50 <= p95 <= p99 <= max``), and exact for the first and last ranks (``p99`` of up to 99 values
    is ``max``: of 100, rank 99 is not the last; ``p50`` of two is the smaller one) and when all values are equal.
    Every field but ``count`` and ``total`` is NaN when ``count`` is 0.
    """

    count: int
    total: float
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, hist: LogHistogram) -> Summary:
        """The summary of a histogram the executor kept (NaN statistics when it is empty)."""
        if hist.count == 0:
            nan = float("nan")
            return cls(0, 0.0, nan, nan, nan, nan, nan)
        return cls(
            hist.count, hist.total, hist.mean, hist.quantile(0.5), hist.quantile(0.95), hist.quantile(0.99),
            hist.max,
        )


@dataclass(frozen=True, slots=True)
class WaveReport:
    """The final report of one wave.

    ``outcome``: ``cancellation`` when the wave was cancelled; ``failure`` when a task failed or timed
    out, or the wave itself raised (e.g. its lazy input did); ``success`` otherwise.

    Its mappings are read-only dicts (the same report goes to every hook, then to the user).
    ``counts`` holds every task exactly once, by outcome; a task that ended without starting (left over
    by fail-fast or a cancelled wave, or failed waiting for a pool or the rate limit) is counted there
    (its error, if any, in ``errors_by_type``) but has no duration: ``latency`` and ``queue_wait``
    summarise the tasks that started, whatever their outcome (failures, timeouts, cancellations).
    A lazy input is never drained: a wave cut short (fail-fast, cancelled, a stream left early)
    counts the tasks it took from it.

    ``parallel_efficiency`` is busy task time (the sum of ``latency``) / (wall time x concurrency
    actually available): 1.0 means every slot was busy for the whole wave; 0.0 when the wave took
    no measurable wall time (nothing to measure; no advice is given on it). ``concurrency`` is that
    number of slots: ``max_concurrency``, at most the number of the wave's tasks (a lazy input's,
    once it is known), ``batch_size`` (the wave's, ``None`` unless batched: a batch runs no more
    at once, and its tasks' queue waits count from the batch's start) and ``buffer`` (a stream's,
    ``None`` for ``run``/``map``: no more tasks run than results it may hold, and a streamed task's
    queue wait counts from when a worker with room pulled it, so it holds pool and rate-limit waits only).

    ``telemetry_dropped`` is the number of spans (any reason: queue full, export failed, shutdown)
    that the ``configure()`` which built the wave's tracer provider counted as dropped while the
    wave ran: the spans this wave's telemetry lost (plus any other work's, on the same provider at
    the same time). Drops that happen after the report is built show in ``shannon.telemetry.dropped``
    and ``Telemetry.dropped``, not here: the wave span's own (it ends after its report, which it
    carries) and those of a later export of this wave's spans that fails. 0 when the
    wave's tracer provider was not built by ``configure()`` (nothing counts its drops).

    ``error`` is the exception the wave itself raised (not a task's: those are in ``errors_by_type`` and the
    results), the very object its caller gets, as it was when the report was built: a lazy input's error (inside
    the ``ExceptionGroup`` of a stream's workers, which pull every item, as the caller gets it), a task's or a
    hook's ``KeyboardInterrupt`` & co; ``None`` when the wave raised nothing, or only its cancellation. Not a
    ``wave_finished`` hook's: raised after the report was built, as the wave ends. The OTel hook records it on the
    wave span. A report kept holds it, and through its traceback the frames it left.
    """

    wave: str
    outcome: Outcome
    duration_s: float
    concurrency: int
    counts: Mapping[Outcome, int]
    errors_by_type: Mapping[str, int]
    latency: Summary
    queue_wait: Summary
    parallel_efficiency: float
    measurements: Mapping[str, Summary] = field(default_factory=dict)
    telemetry_dropped: int = 0
    batch_size: int | None = None
    buffer: int | None = None
    error: BaseException | None = None

    @property
    def total(self) -> int:
        """How many tasks the wave counted, every outcome."""
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        """How many tasks failed or timed out."""
        return self.counts.get(Outcome.FAILURE, 0) + self.counts.get(Outcome.TIMEOUT, 0)

    @property
    def recommendations(self) -> list[Recommendation]:
        """Queue-wait and parallel-efficiency advice for this wave, each citing its numbers (computed on access;
        ``shannon_otel.advise_wave`` takes custom thresholds)."""
        return advise_wave(self)


class ReportBuilder:
    """Accumulates task outcomes for one wave run. Not thread-safe; event-loop only."""

    __slots__ = ("_errors", "_latency", "_measurements", "_queue", "busy_s", "counts")

    def __init__(self) -> None:
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self._errors: dict[str, int] = {}
        self._latency = LogHistogram()
        self._queue = LogHistogram()
        self._measurements: dict[str, LogHistogram] = {}
        self.busy_s = 0.0

    def add(
        self, outcome: Outcome, duration_s: float, queue_wait_s: float, error: BaseException | None,
        measurements: Mapping[str, float] | None, ran: bool = True,
    ) -> None:
        """Count one task; ``ran``: it started (a task that ended before it started has no duration)."""
        self.counts[outcome] += 1
        self.busy_s += duration_s
        if ran:
            self._latency.add(duration_s)
            self._queue.add(queue_wait_s)
        if error is not None:
            key = error_type(error) or ""
            self._errors[key] = self._errors.get(key, 0) + 1
        if measurements:
            for name, value in measurements.items():
                hist = self._measurements.get(name)
                if hist is None:
                    hist = self._measurements[name] = LogHistogram()
                hist.add(value)

    def add_unstarted(self, outcome: Outcome, count: int) -> None:
        """Count ``count`` tasks that ended without starting and without an error (as ``add(..., ran=False)``)."""
        self.counts[outcome] += count

    def build(
        self, wave: str, duration_s: float, concurrency: int, cancelled: bool, telemetry_dropped: int = 0,
        errored: bool = False, batch_size: int | None = None, buffer: int | None = None,
        error: BaseException | None = None,
    ) -> WaveReport:
        """The report of the run; ``errored``: the wave itself raised (not a task), a failure; ``error``: what it
        raised (see :class:`WaveReport`)."""
        if cancelled:
            outcome = Outcome.CANCELLATION
        elif errored or self.counts[Outcome.FAILURE] or self.counts[Outcome.TIMEOUT]:
            outcome = Outcome.FAILURE
        else:
            outcome = Outcome.SUCCESS
        # A lazy input's size is known only now: no more of its slots could be busy than it had tasks,
        # as a sized input's are capped at its size before it starts (3 tasks of one iterator under
        # max_concurrency=100 read 3% efficient where the same 3 in a list read 100%).
        concurrency = max(1, min(concurrency, sum(self.counts.values())))
        capacity = duration_s * concurrency
        return WaveReport(
            wave=wave, outcome=outcome, duration_s=duration_s, concurrency=concurrency,
            counts=ReadOnlyDict(self.counts), errors_by_type=ReadOnlyDict(self._errors),
            latency=Summary.of(self._latency), queue_wait=Summary.of(self._queue),
            parallel_efficiency=min(1.0, self.busy_s / capacity) if capacity > 0 else 0.0,
            measurements=ReadOnlyDict({k: Summary.of(v) for k, v in self._measurements.items()}),
            telemetry_dropped=telemetry_dropped, batch_size=batch_size, buffer=buffer, error=error,
        )
