"""The anomaly hook: events in, real OTel telemetry out (metric points, span events, callbacks)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import _telemetry as tm
from shannon_otel._events import CallFinished, CallStarted, Hook, TaskFinished, WaveObserver, WaveStarted
from shannon_otel._hooks import resolve_hooks
from shannon_otel._telemetry import CallOutcome, Outcome, Severity
from shannon_otel.anomaly import ERROR_RATE, LATENCY, RETRY_RATE, THROUGHPUT, Anomaly, AnomalyHook, DetectorConfig

CONFIG = DetectorConfig(min_history=30)


@dataclass
class FakeClock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Telemetry:
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)

    def __post_init__(self) -> None:
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = self.tracer_provider.get_tracer("test")

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:  # nothing recorded at all
            return []
        return [
            p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points
        ]

    def span(self, name: str) -> ReadableSpan:
        (found,) = [s for s in self.spans.get_finished_spans() if s.name == name]
        return found


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.meter_provider.shutdown()
    t.tracer_provider.shutdown()


def scoped(hook: AnomalyHook, tel: Telemetry) -> Hook:
    """The hook as a wave or policy with ``hooks=[hook]`` on the test's providers uses it: its events go to
    that entry point's OTel hook (and any other hook)."""
    _otel, view = resolve_hooks([hook], tel.tracer_provider, tel.meter_provider)
    return view


def run_tasks(tel: Telemetry, obs: WaveObserver, clock: FakeClock, durations: list[float],
              outcomes: list[Outcome] | None = None, step: float = 1 / 16, first: int = 0) -> None:
    for i, d in enumerate(durations):
        with tel.tracer.start_as_current_span(f"task {first + i}"):
            clock.now += step
            outcome = outcomes[i] if outcomes else Outcome.SUCCESS
            obs.task_finished(None, TaskFinished(wave="w", index=first + i, name="t", outcome=outcome, duration_s=d))


def steady(n: int) -> list[float]:
    return [0.1 + 0.01 * ((i * 7) % 5) for i in range(n)]


def test_latency_spike_becomes_span_event_counter_gauge_and_callback(tel: Telemetry) -> None:
    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(CONFIG, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock, signals=[LATENCY])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    run_tasks(tel, obs, clock, steady(640))  # 40 ticks of 16 tasks: warmed up (min_history=30)
    # Task 655 closes a tick (16 tasks per tick) and is its slowest: its own span is open when scored.
    tick = [*steady(15), 5.0]
    run_tasks(tel, obs, clock, tick, first=640)

    (anomaly,) = seen
    assert anomaly.series == "w"
    assert anomaly.signal == LATENCY
    # the tick's mean latency, a task counting for at most 5x the previous tick's mean (one slow task
    # must not weigh like a slowdown of all: the 5 s task counts as 5 x ~0.12 s)
    cap = 5.0 * sum(steady(640)[-16:]) / 16
    assert anomaly.value == pytest.approx((sum(tick[:-1]) + cap) / 16)
    assert anomaly.value < sum(tick) / 16
    assert anomaly.severity is Severity.CRITICAL
    assert anomaly.score >= CONFIG.critical
    span = tel.span("task 655")
    assert anomaly.trace_id == format(span.context.trace_id, "032x")
    assert anomaly.span_id == format(span.context.span_id, "016x")
    (event,) = [e for e in span.events if e.name == tm.EVENT_ANOMALY]
    assert event.attributes == {
        tm.ANOMALY_SERIES: "w", tm.ANOMALY_SIGNAL: LATENCY, tm.ANOMALY_SCORE_ATTR: anomaly.score,
        tm.ANOMALY_SEVERITY: "critical", tm.ANOMALY_VALUE: anomaly.value,
    }
    (count,) = tel.points(tm.ANOMALY_EVENTS.name)
    assert count.value == 1
    assert dict(count.attributes) == {tm.ANOMALY_SERIES: "w", tm.ANOMALY_SIGNAL: LATENCY,
                                      tm.ANOMALY_SEVERITY: "critical"}
    (gauge,) = tel.points(tm.ANOMALY_SCORE.name)
    assert dict(gauge.attributes) == {tm.ANOMALY_SERIES: "w", tm.ANOMALY_SIGNAL: LATENCY}
    assert gauge.value == anomaly.score
    with pytest.raises(FrozenInstanceError):
        setattr(anomaly, "score", 0.0)  # noqa: B010


def test_an_anomaly_found_after_its_task_ended_keeps_that_task_ids(tel: Telemetry) -> None:
    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(CONFIG, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock, signals=[LATENCY])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    with tel.tracer.start_as_current_span("wave"):  # one run: its tasks' spans are of one trace
        run_tasks(tel, obs, clock, [*steady(645), 5.0, *steady(10)])
    (anomaly,) = seen
    culprit, flusher = tel.span("task 645"), tel.span("task 655")  # the tick's slowest, and its last
    assert anomaly.span_id == format(culprit.context.span_id, "016x")
    assert not [e for e in culprit.events if e.name == tm.EVENT_ANOMALY]  # ended before scoring
    assert [e for e in flusher.events if e.name == tm.EVENT_ANOMALY]


def test_error_rate_jump_is_reported_per_tick(tel: Telemetry) -> None:
    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(CONFIG, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock, signals=[ERROR_RATE])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    n = 16 * 60  # 60 ticks of 16 tasks with a steady 1/16 failure rate
    run_tasks(tel, obs, clock, steady(n), [Outcome.FAILURE if i % 16 == 0 else Outcome.SUCCESS for i in range(n)])
    assert seen == []
    run_tasks(tel, obs, clock, steady(16), [Outcome.TIMEOUT] * 8 + [Outcome.SUCCESS] * 8, first=n)
    (anomaly,) = seen
    assert anomaly.signal == ERROR_RATE
    assert anomaly.value == 0.5
    # Its ids are the tick's last failed task's (before: the task that closed the tick, task n + 15, a success:
    # a link to a healthy task, which a tail sampler keeps only at its healthy ratio).
    assert anomaly.span_id == format(tel.span(f"task {n + 7}").context.span_id, "016x")


def test_retry_rate_per_operation(tel: Telemetry) -> None:
    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(CONFIG, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock)
    for tick in range(80):
        for _ in range(8):
            obs = scoped(hook, tel).call_started(CallStarted("fetch", "retry"))
            assert obs is not None
            clock.now += 0.125
            attempts = 4 if tick == 79 else 1 + (tick % 2)
            obs.call_finished(CallFinished("fetch", CallOutcome.SUCCESS, attempts, 0.01))
    assert [(a.series, a.signal, a.value) for a in seen] == [("fetch", RETRY_RATE, 3.0)]
    assert seen[0].trace_id is None  # no span was current


def test_clean_noisy_latencies_raise_no_alarm_with_the_hook_defaults(tel: Telemetry) -> None:
    """Per-task latencies are noisy (lognormal here); tick means with the hook's defaults stay quiet."""
    import random

    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(on_anomaly=seen.append, tick_s=1.0, clock=clock,
                       signals=[LATENCY])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    rng = random.Random(3)
    run_tasks(tel, obs, clock, [rng.lognormvariate(-4.6, 0.3) for _ in range(16 * 500)])
    assert seen == []
    run_tasks(tel, obs, clock, [0.05 * rng.lognormvariate(0, 0.3) for _ in range(16 * 3)], first=16 * 500)
    assert [a.signal for a in seen][:1] == [LATENCY], "a 5x slowdown for 3 ticks is found"


def test_disabled_hook_observes_nothing(tel: Telemetry) -> None:
    hook = AnomalyHook(enabled=False)
    assert scoped(hook, tel).wave_started(WaveStarted("w", None, None, 0.0)) is None
    assert scoped(hook, tel).call_started(CallStarted("op", "retry")) is None
    assert tel.points(tm.ANOMALY_SCORE.name) == []


def test_failing_callback_is_logged_not_raised(tel: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()

    def boom(anomaly: Anomaly) -> None:
        raise RuntimeError("user bug")

    hook = AnomalyHook(CONFIG, on_anomaly=boom, tick_s=1.0, clock=clock,
                       signals=[LATENCY])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    with caplog.at_level(logging.ERROR):
        run_tasks(tel, obs, clock, [*steady(655), 5.0])
    assert "failed in on_anomaly" in caplog.text
    assert hook.hook_errors["on_anomaly"] >= 1
    assert tel.points(tm.ANOMALY_EVENTS.name)[0].value == 1


def test_bad_hook_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"tick_s must be a number in \(0, inf\), got 0"):
        AnomalyHook(tick_s=0)
    with pytest.raises(ValueError, match=r"unknown signals \['latncy'\]"):
        AnomalyHook(signals=["latncy"])
    with pytest.raises(TypeError, match=r"tick_s must be a number of seconds in \(0, inf\) \(not a bool\), got True"):
        AnomalyHook(tick_s=True)  # was taken as a 1 s tick


@pytest.mark.parametrize("signals", [[], (), frozenset()])
def test_a_hook_watching_no_signal_is_refused(signals: Any) -> None:
    """Before: ``AnomalyHook(signals=[])`` (a filter that matched nothing, an empty config list) was taken, and the
    hook fed every wave and call without ever scoring or alerting, silently."""
    with pytest.raises(ValueError, match=r"signals must name at least one signal \(latency, error_rate, "
                                         r"throughput, retry_rate\).*enabled=False"):
        AnomalyHook(signals=signals)


def test_end_to_end_a_slow_task_of_a_real_wave_carries_the_anomaly(tel: Telemetry) -> None:
    import asyncio

    from shannon_otel.executor import Wave, task

    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(CONFIG, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock, signals=[LATENCY])
    durations = [*steady(646), 5.0]  # the slow task is the 8th (min_tick_tasks) of its tick: it closes it

    def work(i: int) -> Any:
        async def run() -> int:
            clock.now += durations[i]  # the executor times tasks with the same fake clock
            await asyncio.sleep(0)
            return i
        return run

    wave: Wave[int] = Wave("w", max_concurrency=1, hooks=(hook,), tracer_provider=tel.tracer_provider,
                clock=clock)
    result = asyncio.run(wave.run([task(work(i), name=f"t{i}") for i in range(len(durations))]))
    assert result.report.total == len(durations)
    (anomaly,) = seen
    assert anomaly.value > 0.15  # the mean of the tick the 5 s task closed (it counts as 5x the last mean)
    (slow,) = [s for s in tel.spans.get_finished_spans()
               if any(e.name == tm.EVENT_ANOMALY for e in s.events)]
    assert anomaly.span_id == format(slow.context.span_id, "016x")
    assert slow.attributes is not None
    assert slow.attributes[tm.TASK_INDEX] == 646


def test_throughput_surge_is_reported(tel: Telemetry) -> None:
    from shannon_otel.anomaly import THROUGHPUT

    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(CONFIG, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock, signals=[THROUGHPUT])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    run_tasks(tel, obs, clock, steady(16 * 60))  # 16 tasks per second
    assert seen == []
    run_tasks(tel, obs, clock, steady(128), step=1 / 128, first=16 * 60)  # 128 per second
    assert [(a.signal, a.value) for a in seen][:1] == [(THROUGHPUT, 128.0)]


def test_series_names_stay_bounded_by_the_cap(tel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    from shannon_otel._otel import _anomaly

    monkeypatch.setattr(_anomaly, "MAX_SERIES", 4)  # the gauge's own bound (the detector's is max_series)
    clock = FakeClock()
    hook = AnomalyHook(DetectorConfig(max_series=4, min_history=2),
                       tick_s=1.0, clock=clock, signals=[LATENCY])
    for w in range(50):
        obs = scoped(hook, tel).wave_started(WaveStarted(f"wave-{w}", None, None, clock()))
        assert obs is not None
        run_tasks(tel, obs, clock, steady(16))
    assert hook.detector.stats.series == 4
    assert hook.detector.stats.evicted == 46
    assert len(tel.points(tm.ANOMALY_SCORE.name)) <= 4


# Every scored tick is reported (warning threshold ~0, no warm-up), so a test sees each sample's value.
EVERY_TICK = DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9)


def test_two_hooks_on_one_meter_provider_both_export_their_scores(tel: Telemetry) -> None:
    clock = FakeClock()
    hooks = [AnomalyHook(EVERY_TICK, tick_s=1.0, clock=clock, signals=[LATENCY])
             for _ in range(3)]
    for i, hook in enumerate(hooks):
        obs = scoped(hook, tel).wave_started(WaveStarted(f"w{i}", None, None, clock()))
        assert obs is not None
        run_tasks(tel, obs, clock, steady(16))
    gauge = {dict(p.attributes)[tm.ANOMALY_SERIES] for p in tel.points(tm.ANOMALY_SCORE.name)}
    assert gauge == {"w0", "w1", "w2"}
    assert {dict(p.attributes)[tm.ANOMALY_SERIES] for p in tel.points(tm.ANOMALY_EVENTS.name)} == gauge


def test_ticks_span_consecutive_runs_of_a_wave_shorter_than_a_tick(tel: Telemetry) -> None:
    import asyncio
    import functools

    from shannon_otel.executor import Wave

    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock)

    async def work(i: int) -> None:
        clock.now += 0.125
        await asyncio.sleep(0)
        if i == 0:
            raise RuntimeError("one failure per run")

    async def runs() -> None:
        for _ in range(4):  # each run: 4 tasks in 0.5 s, then 10 s with no run of "w" active
            wave: Wave[None] = Wave("w", max_concurrency=1, hooks=(hook,), instrument=False, clock=clock)
            await wave.run([functools.partial(work, i) for i in range(4)])
            clock.now += 10.0

    asyncio.run(runs())
    # Two ticks of 8 tasks, each over two runs; the idle time between runs is not part of a tick.
    assert [(a.signal, a.value) for a in seen] == [(LATENCY, 0.125), (ERROR_RATE, 0.25), (THROUGHPUT, 8.0)] * 2


def test_concurrent_runs_of_a_wave_share_one_tick(tel: Telemetry) -> None:
    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0,
                       clock=clock, signals=[THROUGHPUT])
    runs = [scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock())) for _ in range(2)]
    for i in range(8):
        obs = runs[i % 2]
        assert obs is not None
        run_tasks(tel, obs, clock, [0.1], step=0.125, first=i)
    assert [(a.signal, a.value) for a in seen] == [(THROUGHPUT, 8.0)]


def test_a_tick_closes_only_with_min_tick_tasks_tasks_or_calls(tel: Telemetry) -> None:
    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(EVERY_TICK, on_anomaly=seen.append, tick_s=1.0,
                       min_tick_tasks=8, clock=clock, signals=[LATENCY, RETRY_RATE])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    run_tasks(tel, obs, clock, [0.1 * (i % 8 + 1) for i in range(40)], step=0.5)  # 2 tasks per tick_s
    assert [a.value for a in seen] == pytest.approx([0.45] * 5)  # a sample every 8 tasks (4 s), not every 2
    seen.clear()
    for i in range(40):
        call = scoped(hook, tel).call_started(CallStarted("fetch", "retry"))
        assert call is not None
        clock.now += 0.5
        call.call_finished(CallFinished("fetch", CallOutcome.SUCCESS, 2 if i % 8 == 0 else 1, 0.01))
    assert [(a.signal, a.value) for a in seen] == [(RETRY_RATE, 0.125)] * 5


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError),
                                          (2.5, TypeError), ("8", TypeError)])
def test_bad_min_tick_tasks_is_rejected(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^min_tick_tasks must be (an int )?in \[1, inf\)( \(not a bool\))?, got "):
        AnomalyHook(min_tick_tasks=bad)


def test_a_sustained_throughput_fall_is_the_harmful_direction_with_the_hook_defaults(tel: Telemetry) -> None:
    """HOOK_DEFAULTS count only a rise in the level window; the hook feeds throughput negated, so a
    moderate sustained fall (which the per-tick z-scores adapt to) is found and reported as the rate."""
    import random

    rng = random.Random(5)

    def run(obs: WaveObserver, rate: float, ticks: int, first: int) -> int:
        n = 0
        for _ in range(ticks):
            count = max(1, round(rng.gauss(rate, rate * 0.05)))
            run_tasks(tel, obs, clock, steady(count), step=1.0 / count, first=first + n)
            n += count
        return n

    clock, seen = FakeClock(), list[Anomaly]()
    hook = AnomalyHook(on_anomaly=seen.append, tick_s=1.0, clock=clock, signals=[THROUGHPUT])
    obs = scoped(hook, tel).wave_started(WaveStarted("w", None, None, clock()))
    assert obs is not None
    done = run(obs, 100.0, 300, 0)
    assert seen == []
    run(obs, 85.0, 12, done)  # -15%, 3 standard deviations of a tick, for good
    assert [a.signal for a in seen][:1] == [THROUGHPUT]
    assert 70.0 < seen[0].value < 100.0  # the rate itself, not what the detector was fed
