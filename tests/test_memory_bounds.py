"""Resources over long runs (a service up for days). Memory must plateau, the user's
objects must be collectable once the user drops them, and what the library keeps per name must be
bounded as the SDK bounds it. Each test failed before its fix; all are counted (weakrefs, points,
dict sizes), none timed."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest

from shannon_otel import LoggingHook, Retry
from shannon_otel.testing import FakeClock


class _BoomError(Exception):
    pass


class _Payload:
    """Stands for a large local (a response body, a frame of data) of the user's failing call."""


async def _no_sleep(seconds: float) -> None:
    return None


def test_the_logging_hook_keeps_no_users_exception_or_its_frames_alive(caplog: pytest.LogCaptureFixture) -> None:
    """The flood limiter kept, per (logger, operation, event), the last event it saw -- the one it let
    through as well as the one it held back -- and the event's error holds its traceback: every frame of
    the failed call and their locals stayed alive for as long as the hook lived (up to ``max_keys`` of
    them; the default logging hook lives as long as the OTel hook of its providers)."""
    hook = LoggingHook(clock=FakeClock())
    alive: list[weakref.ref[Any]] = []

    async def failing() -> None:
        payload = _Payload()
        error = _BoomError("x")
        alive.extend((weakref.ref(payload), weakref.ref(error)))
        raise error

    async def main() -> None:
        once = Retry(name="once", attempts=2, initial=0, maximum=0, sleep=_no_sleep, hooks=[hook], instrument=False)
        held = Retry(name="held", attempts=4, initial=0, maximum=0, sleep=_no_sleep, hooks=[hook], instrument=False)
        for policy in (once, held):  # one retry let through; three of one key, two held back
            with pytest.raises(_BoomError):
                await policy.call(failing)

    with caplog.at_level(logging.INFO, logger="shannon_otel"):
        asyncio.run(main())
    gc.collect()
    assert len(alive) == (2 + 4) * 2  # two and four attempts, a payload and an error each
    assert [r() for r in alive] == [None] * len(alive)
    # and the held-back repeats are still summarised, with what the record said
    hook.flush()
    summaries = [r for r in caplog.records if getattr(r, "shannon.log.repeats", None)]
    assert [(getattr(r, "shannon.operation"), getattr(r, "shannon.log.repeats"), getattr(r, "error.type"))
            for r in summaries] == [("held", 2, f"{__name__}._BoomError")]


def _wave_names_past_the_limit(bridged: bool, waves: int) -> list[Any]:
    from shannon_otel import Wave
    from shannon_otel.testing import InMemoryTelemetry

    tel = InMemoryTelemetry(bridged=bridged)

    async def work() -> int:
        return 1

    async def main() -> None:
        for i in range(waves):  # a wave name per request: the mistake docs/architecture.md warns about
            await Wave[int](f"fetch /item/{i}", max_concurrency=None, **tel.providers).run([work])

    asyncio.run(main())
    points = sorted(tel.points("shannon.task.duration"), key=lambda p: sorted(p.attributes.items(), key=str))
    tel.shutdown()
    return points


def test_the_bridge_folds_wave_names_past_the_sdks_default_limit_into_the_overflow_point() -> None:
    """The SDK limits a stream no View or reader limits to 2000 attribute sets and folds the rest into
    the ``otel.metric.overflow`` point; the bridge behind configure() (and testing.InMemoryTelemetry)
    applied no limit at all: 2,200 wave names gave 2,200 task-duration points (the SDK: 2,001), each
    kept for the life of the process -- ~5.5 KB per name with the SDK's own growth, unbounded."""
    from shannon_otel._metrics_bridge import OVERFLOW_ATTRIBUTES, SDK_DEFAULT_LIMIT

    assert SDK_DEFAULT_LIMIT is not None  # every SDK pyproject allows (>=1.45.2) has one
    waves = SDK_DEFAULT_LIMIT + 50
    sdk, ours = _wave_names_past_the_limit(False, waves), _wave_names_past_the_limit(True, waves)
    assert len(ours) == len(sdk) == SDK_DEFAULT_LIMIT + 1
    overflow = [p for p in ours if dict(p.attributes) == OVERFLOW_ATTRIBUTES]
    assert [p.count for p in overflow] == [p.count for p in sdk if dict(p.attributes) == OVERFLOW_ATTRIBUTES] == [50]
    assert sum(p.count for p in ours) == waves  # nothing lost: every task is in some point


def test_the_run_recorder_forgets_the_names_of_waves_it_no_longer_keeps() -> None:
    """RunRecorder promises bounded memory however long the run (the newest ``max_waves`` waves, totals
    for the rest), but kept a run count per wave name for good: a wave name made per request (~105 bytes
    each) piled up forever. A name is now forgotten once none of the kept waves has it."""
    import sys

    from shannon_otel import RunRecorder, Wave

    recorder = RunRecorder(max_waves=3)
    names = [f"fetch /item/{i}" for i in range(40)]
    before = [sys.getrefcount(n) for n in names]

    async def work() -> int:
        return 1

    async def main() -> None:
        for name in names:
            await Wave[int](name, hooks=[recorder], instrument=False).run([work])
        for _ in range(2):  # a name that repeats keeps its numbering while a wave of it is kept
            await Wave[int]("steady", hooks=[recorder], instrument=False).run([work])

    asyncio.run(main())
    gc.collect()
    after = [sys.getrefcount(n) for n in names]
    assert after[:-1] == before[:-1]  # nothing holds the names of the waves dropped
    report = recorder.report()
    assert tuple(report.labels) == (names[-1], "steady", "steady#2")
    assert recorder.totals["waves"] == 42


def test_the_wave_counters_keep_no_state_for_wave_names_past_the_sdks_limit() -> None:
    """The observable instruments' live state (task outcomes, cost, the active/pending gauges) kept an
    entry per wave name and outcome for good, ~350 B per name: bounded nowhere, although the SDK exports
    only the first 2,000 attribute sets of each and folds the rest into the overflow point. Past the
    SDK's limit new names now go straight to that point: the exported data is what it was, and the names
    of later waves are not held by anything once they ran."""
    import sys

    from shannon_otel import Wave, record_cost
    from shannon_otel._metrics_bridge import OVERFLOW_ATTRIBUTES, SDK_DEFAULT_LIMIT
    from shannon_otel.testing import InMemoryTelemetry

    assert SDK_DEFAULT_LIMIT is not None  # every SDK pyproject allows (>=1.45.2) has one
    tel = InMemoryTelemetry(sampled=False)  # no spans, no exemplars: nothing else keeps a name
    extra = 20
    names = [f"fetch /item/{i}" for i in range(SDK_DEFAULT_LIMIT + extra)]

    async def work() -> int:
        record_cost(0.5)
        return 1

    async def failing() -> int:
        raise _BoomError

    async def main() -> None:
        for name in names:
            await Wave[int](name, max_concurrency=None, **tel.providers).run([work, failing])

    before = [sys.getrefcount(n) for n in names[-extra:]]
    asyncio.run(main())
    gc.collect()
    assert [sys.getrefcount(n) for n in names[-extra:]] == before
    outcomes = tel.points("shannon.task.outcomes")
    assert len(outcomes) == SDK_DEFAULT_LIMIT + 1
    overflow = [p.value for p in outcomes if dict(p.attributes) == OVERFLOW_ATTRIBUTES]
    assert overflow == [2 * len(names) - SDK_DEFAULT_LIMIT]  # the first 2,000 sets are 1,000 names' two
    assert sum(p.value for p in outcomes) == 2 * len(names)
    assert sum(p.value for p in tel.points("shannon.task.cost")) == 0.5 * len(names)
    tel.shutdown()


@pytest.mark.parametrize("instrumented", [False, True], ids=["no-sdk", "sdk"])
def test_a_kept_task_error_keeps_none_of_its_waves_results_alive(instrumented: bool) -> None:
    """A failed task's error holds its traceback, whose first frame is the executor's, where it was caught;
    a frame keeps its locals once it has returned, and that one's held the wave's run, so every result of
    the wave (through the run's ``deliver``) and the task's span lived as long as the user kept the error:
    a service keeping the last errors it saw for a status page held every one of their waves' results.
    Under ``asyncio.gather`` the error holds its own task's frames only; so it does here now. From Python
    3.12 a finished frame also keeps its callers' frames (``f_back``): the worker's, whose locals hold the
    run until the end: so the run lets go of its results when the wave ends (failed on 3.12 and 3.13 with
    the executor frame's locals dropped alone)."""
    from shannon_otel import Wave
    from shannon_otel.testing import InMemoryTelemetry

    tel = InMemoryTelemetry() if instrumented else None
    providers: dict[str, Any] = tel.providers if tel is not None else {"instrument": False}
    results: list[weakref.ref[Any]] = []

    async def work() -> _Payload:
        payload = _Payload()
        results.append(weakref.ref(payload))
        return payload

    async def failing() -> _Payload:
        raise _BoomError("x")

    async def main() -> list[BaseException]:
        kept: list[BaseException] = []
        wave = Wave[_Payload]("w", max_concurrency=4, task_timeout=60.0, **providers)
        for _ in range(3):
            result = await wave.run([work, work, failing, work, work])
            kept.extend(r.error for r in result.results if r.error is not None)
            async with wave.stream([work, failing, work]) as stream:
                kept.extend([r.error async for r in stream if r.error is not None])
        return kept

    kept = asyncio.run(main())
    gc.collect()
    assert [type(e) for e in kept] == [_BoomError] * 6
    assert len(results) == 3 * (4 + 2)
    assert [r() for r in results] == [None] * len(results)
    if tel is not None:
        assert len(tel.spans("task w")) == 3 * (5 + 3)  # the spans were made: the test ran instrumented
        tel.shutdown()


def test_the_tail_sampler_forgets_spans_collected_without_ever_ending() -> None:
    """TailSampler noted each sampled span's local root at its start and forgot it only at its end or its
    part's decision: a span its user abandoned (started, never ended, collected) stayed noted for good,
    ~88 B each (100,000 held 8.6 MB), where the SDK's own processors keep nothing of a span not ended. The
    abandoned ones are now forgotten by a sweep once the open spans have doubled (at least 4,096)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shannon_otel import TailSampler

    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=1.0)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer(__name__)
    job = tracer.start_span("job")  # a long-running span, open throughout: kept in mind
    abandoned = 5 * 4096
    for _ in range(abandoned):
        tracer.start_span("abandoned", context=trace.set_span_in_context(job))  # never ended, dropped at once
    gc.collect()
    for _ in range(4100):  # spans that do end, after the abandoned ones were collected: they trigger the sweeps
        tracer.start_span("done", context=trace.set_span_in_context(job)).end()
    assert len(sampler._root_of) <= 2 * 4096  # was 1 + 20,480: every abandoned span
    assert sampler.abandoned_spans >= abandoned - 4096
    assert sampler.stats()["abandoned_spans"] == sampler.abandoned_spans  # what stats() reports too
    job.end()  # the open span was not forgotten: its part is decided at its end, whole
    assert sorted({s.name for s in exporter.get_finished_spans()}) == ["done", "job"]
    assert len(exporter.get_finished_spans()) == 4101
    provider.shutdown()


def test_folding_wave_names_past_the_limit_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """Past the limit every new wave name vanished from the dashboards (its counts went to the overflow
    point) and nothing said so: neither the SDK nor the library logged a word. The first fold now logs
    one warning naming the wave and the rule; later ones log nothing more."""
    from shannon_otel import Wave
    from shannon_otel._metrics_bridge import SDK_DEFAULT_LIMIT
    from shannon_otel.testing import InMemoryTelemetry

    assert SDK_DEFAULT_LIMIT is not None  # every SDK pyproject allows (>=1.45.2) has one
    tel = InMemoryTelemetry(sampled=False)

    async def work() -> int:
        return 1

    async def main() -> None:
        for i in range(SDK_DEFAULT_LIMIT + 5):
            await Wave[int](f"fetch /item/{i}", max_concurrency=None, **tel.providers).run([work])

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(main())
    tel.shutdown()
    warnings = [r.getMessage() for r in caplog.records if "otel.metric.overflow" in r.getMessage()]
    assert len(warnings) == 1
    assert f"limit of {SDK_DEFAULT_LIMIT} attribute sets" in warnings[0]
    assert f"from wave 'fetch /item/{SDK_DEFAULT_LIMIT}' on" in warnings[0]


def test_folding_error_types_past_the_limit_names_the_error_type_not_the_wave(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One wave of a fixed name whose tasks raise exceptions of classes made at run time (one per input) fills
    the task metrics' attribute sets with error types. The warning said "wave 'fetch' and later new ones are
    counted in the otel.metric.overflow point; name waves after code paths": untrue (that wave's other
    series were still counted) and no help (the wave was well named). It names the whole set folded now."""
    from shannon_otel import Wave
    from shannon_otel._metrics_bridge import SDK_DEFAULT_LIMIT
    from shannon_otel.testing import InMemoryTelemetry

    assert SDK_DEFAULT_LIMIT is not None  # every SDK pyproject allows (>=1.45.2) has one
    tel = InMemoryTelemetry(sampled=False)
    kinds = [type(f"Refused{i}", (Exception,), {}) for i in range(SDK_DEFAULT_LIMIT + 5)]

    async def refuse(kind: type[Exception]) -> int:
        raise kind

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(Wave[int]("fetch", max_concurrency=None, **tel.providers).map(refuse, kinds))
    tel.shutdown()
    warnings = [r.getMessage() for r in caplog.records if "otel.metric.overflow" in r.getMessage()]
    assert len(warnings) == 1
    folded = f"{__name__}.Refused{SDK_DEFAULT_LIMIT}"
    assert f"from wave 'fetch', outcome 'failure', error type '{folded}' on" in warnings[0]
    assert "a fixed set of classes" in warnings[0]
    assert "wave 'fetch' and later new ones" not in warnings[0]


def test_an_error_a_span_of_ours_survived_is_not_kept_by_the_ended_span() -> None:
    """A span recording an exception notes it on its parent span, so the parent does not record it again;
    the note was dropped only when the parent ended *with* an error. A parent that survived it (a retry
    that then succeeded, a Degrade serving its default, a task catching a policy's error) kept the error,
    and through its traceback every frame and local of the failed call, for as long as the ended span
    lived: in a span exporter's queue, a TailSampler's buffer, or here an in-memory exporter. Each span
    now drops its notes as it ends."""
    from shannon_otel import Degrade, Wave
    from shannon_otel.testing import InMemoryTelemetry

    tel = InMemoryTelemetry()
    alive: list[weakref.ref[Any]] = []

    async def failing_once(calls: list[int]) -> int:
        payload = _Payload()
        alive.append(weakref.ref(payload))
        calls.append(1)
        if len(calls) == 1:
            raise _BoomError("x")
        return 1

    async def failing() -> int:
        return await failing_once([])

    async def main() -> None:
        retry = Retry(name="r", attempts=2, initial=0, maximum=0, sleep=_no_sleep, **tel.providers)
        degrade = Degrade(name="d", on=(_BoomError,), default=0, **tel.providers)
        once = Retry(name="once", attempts=1, sleep=_no_sleep, **tel.providers)

        async def recovered() -> int:
            calls: list[int] = []
            return await retry.call(lambda: failing_once(calls))

        async def served() -> int:
            return (await degrade.call(failing)).value

        async def caught() -> int:
            try:
                return await once.call(failing)
            except _BoomError:
                return 0

        result = await Wave[int]("w", **tel.providers).run([recovered, served, caught])
        assert result.values() == [1, 0, 0]

    asyncio.run(main())
    gc.collect()
    assert len(tel.spans("task w")) == 3  # the ended spans are still held (by the in-memory exporter)
    assert len(alive) == 4  # two attempts of the retry, one call each for the others
    assert [r() for r in alive] == [None] * len(alive)
    # and each error still has its one exception event, where it was raised
    events = [e for s in tel.span_exporter.get_finished_spans() for e in s.events if e.name == "exception"]
    assert len(events) == 3
    tel.shutdown()


def test_a_wave_the_run_recorder_drops_costs_its_own_operations_not_every_operation_of_the_run() -> None:
    """Dropping a wave beyond ``max_waves`` scanned every operation the run had seen for the wave's
    latency: with operation names made per request (``Retry(name=f"fetch {id}")``), each wave's end cost
    O(names seen so far) -- 2.7 ms per wave after 40,000 names, quadratic over a long run. Only the
    operations that called inside the dropped wave are visited now; what the report keeps is unchanged."""
    from shannon_otel import RunRecorder, Wave

    class _CountedOps(dict[str, Any]):
        scans = 0

        def values(self) -> Any:
            _CountedOps.scans += 1
            return super().values()

    recorder = RunRecorder(max_waves=2)
    recorder._ops = _CountedOps()

    async def one() -> int:
        return 1

    async def main() -> None:
        for i in range(30):
            policy = Retry(name=f"fetch {i}", attempts=1, hooks=[recorder], instrument=False)

            async def work(policy: Retry = policy) -> int:
                return await policy.call(one)

            await Wave[int]("w", hooks=[recorder], instrument=False).run([work, work])
        await Retry(name="outside", attempts=1, hooks=[recorder], instrument=False).call(one)

    asyncio.run(main())
    assert _CountedOps.scans == 0  # 28 waves were dropped
    report = recorder.report()
    assert len(report.operations) == 31
    assert report.operations["fetch 29"].latency_by_wave.keys() == {"w#30"}  # the kept waves' latency is kept
    assert report.operations["fetch 27"].latency_by_wave == {}  # a dropped wave's is gone
    assert report.operations["outside"].calls == 1
    assert [len(live.ops) for live in recorder.waves] == [1, 1]


def test_objects_made_and_dropped_leave_no_fork_registration_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each LoggingHook, RunRecorder, AnomalyDetector and AnomalyHook registered its own
    ``os.register_at_fork`` callback (to free its lock in a forked child), and such registrations
    cannot be removed: one made per request kept ~0.8 KB for good after it was dropped, and every
    fork called every dead one. Now objects made and dropped leave nothing registered, and a live
    one's lock is still freed in a child (tests/test_fork_locks.py)."""
    import os

    from shannon_otel import AnomalyDetector, AnomalyHook, DetectorConfig, RunRecorder

    if not hasattr(os, "register_at_fork"):
        pytest.skip("no fork on this platform")
    registered: list[Any] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **callbacks: registered.append(callbacks))
    config = DetectorConfig(max_series=1, window=8)
    for _ in range(50):
        LoggingHook(), RunRecorder(), AnomalyDetector(config), AnomalyHook(config)
    gc.collect()
    assert registered == []


def test_folding_operation_names_past_the_limit_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """The recovery policies' metrics are plain SDK instruments: past the SDK's limit it folds new attribute sets
    into the overflow point and logs nothing, so operations named per request vanished from every dashboard
    silently (2,001 points of shannon.calls, no log line), where the executor's metrics warn. The first set the
    SDK folds now logs one warning naming it and the rule; later ones log nothing more."""
    from shannon_otel._metrics_bridge import OVERFLOW_ATTRIBUTES, SDK_DEFAULT_LIMIT
    from shannon_otel.testing import InMemoryTelemetry

    assert SDK_DEFAULT_LIMIT is not None  # every SDK pyproject allows (>=1.45.2) has one
    tel = InMemoryTelemetry(sampled=False)

    async def fail() -> int:
        raise _BoomError

    async def main() -> None:
        for i in range(SDK_DEFAULT_LIMIT + 5):
            with pytest.raises(_BoomError):
                await Retry(attempts=1, name=f"fetch /item/{i}", **tel.providers).call(fail)

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(main())
    points = tel.points("shannon.calls")
    tel.shutdown()
    assert [p.value for p in points if dict(p.attributes) == OVERFLOW_ATTRIBUTES] == [5]  # the SDK folded 5
    warnings = [r.getMessage() for r in caplog.records if "otel.metric.overflow" in r.getMessage()]
    assert len(warnings) == 1
    assert f"shannon.calls metric of one meter provider reached the SDK's default limit of {SDK_DEFAULT_LIMIT}" \
        in warnings[0]
    assert f"from shannon.operation='fetch /item/{SDK_DEFAULT_LIMIT}', shannon.call.outcome='failure', " \
        f"error.type='{__name__}._BoomError' on" in warnings[0]
    assert "after code paths, not per request" in warnings[0]


def test_a_delta_reader_whose_intervals_stay_under_the_limit_gets_no_folding_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader of delta temporality starts the SDK's attribute sets afresh at each collection: the limit is per
    export interval. Two intervals of 1,500 operation names each fold nothing, yet the 2,001st name of the
    process's life logged "new ones ... are counted in its otel.metric.overflow point": untrue."""
    from opentelemetry.sdk.metrics import Counter, MeterProvider, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from shannon_otel._metrics_bridge import OVERFLOW_ATTRIBUTES, SDK_DEFAULT_LIMIT

    if SDK_DEFAULT_LIMIT is None:
        pytest.skip("this SDK has no cardinality limits")
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, UpDownCounter: delta})
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    per_interval = SDK_DEFAULT_LIMIT * 3 // 4
    points: list[Any] = []

    async def ok() -> int:
        return 1

    async def main() -> None:
        for interval in range(2):
            for i in range(per_interval):
                await Retry(attempts=1, name=f"fetch /item/{interval}/{i}", tracer_provider=tracer_provider,
                            meter_provider=meter_provider).call(ok)
            data = reader.get_metrics_data()
            assert data is not None
            points.extend(p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                          if m.name == "shannon.calls" for p in m.data.data_points)

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(main())
    meter_provider.shutdown()
    assert len(points) == 2 * per_interval > SDK_DEFAULT_LIMIT
    assert not [p for p in points if dict(p.attributes) == OVERFLOW_ATTRIBUTES]  # the SDK folded nothing
    assert not [r.getMessage() for r in caplog.records if "otel.metric.overflow" in r.getMessage()]


def test_folding_breaker_names_past_the_limit_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """A breaker has a state series per state (three): the SDK folded the 667th breaker's names silently."""
    from shannon_otel import CircuitBreaker
    from shannon_otel._metrics_bridge import OVERFLOW_ATTRIBUTES, SDK_DEFAULT_LIMIT
    from shannon_otel.testing import InMemoryTelemetry

    assert SDK_DEFAULT_LIMIT is not None  # every SDK pyproject allows (>=1.45.2) has one
    tel = InMemoryTelemetry(sampled=False)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        breakers = [CircuitBreaker(f"host-{i}", **tel.providers) for i in range(SDK_DEFAULT_LIMIT // 3 + 5)]
    points = tel.points("shannon.breaker.state")
    tel.shutdown()
    assert len(breakers) * 3 > SDK_DEFAULT_LIMIT
    assert any(dict(p.attributes) == OVERFLOW_ATTRIBUTES for p in points)
    warnings = [r.getMessage() for r in caplog.records if "otel.metric.overflow" in r.getMessage()]
    assert len(warnings) == 1
    folded = SDK_DEFAULT_LIMIT // 3  # host-666's third state is the 2,001st set
    assert "shannon.breaker.state metric of one meter provider" in warnings[0]
    assert f"from shannon.breaker.name='host-{folded}', shannon.breaker.state=" in warnings[0]
