"""What a wave reports, checked as a user would: the report, the advice, the progress
callback and the telemetry against reference computations over what the tasks really did, on the
virtual-time loop (exact durations) with the real SDK in memory. The named tests failed before their fix;
the property test pins the rest of the contract (docs/architecture.md, ``WaveReport``, ``Summary``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shannon_otel import (
    AdviceThresholds,
    Outcome,
    Progress,
    Retry,
    RunRecorder,
    Summary,
    Wave,
    WaveReport,
    advise_wave,
    record_cost,
    record_tokens,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual


def _efficiency(tel: InMemoryTelemetry, wave: str) -> tuple[float, Any]:
    attributes = tel.span(f"wave {wave}").attributes
    assert attributes is not None
    gauge = tel.point("shannon.wave.parallel_efficiency", shannon_wave_name=wave).value
    return gauge, attributes["shannon.wave.parallel_efficiency"]


def test_a_lazy_inputs_efficiency_counts_the_slots_its_tasks_could_use() -> None:
    # A sized input's slots are capped at its size; a lazy one's were not: the same three 1 s tasks
    # under max_concurrency=100 read 100% efficient from a list and 3% from an iterator (report,
    # gauge and wave span), enough for a dashboard to flag a wave that kept every usable slot busy.
    tel = InMemoryTelemetry()

    async def work(i: int) -> int:
        await asyncio.sleep(1.0)
        return i

    async def main() -> list[WaveReport]:
        clock = asyncio.get_running_loop().time
        reports = []
        for name, items in (("listed", lambda: range(3)), ("lazy", lambda: iter(range(3)))):
            wave = Wave[int](name, max_concurrency=100, clock=clock, **tel.providers)
            async with wave.stream_map(work, items()) as results:
                assert sorted([r.index async for r in results]) == [0, 1, 2]
            assert results.report is not None
            reports.append(results.report)
        return reports

    for report in run_virtual(main()):
        assert report.concurrency == 3
        assert report.duration_s == 1.0
        assert report.parallel_efficiency == 1.0
        assert _efficiency(tel, report.wave) == (1.0, 1.0)


def test_a_streams_efficiency_counts_the_slots_its_buffer_leaves() -> None:
    # stream(buffer=2) runs at most two tasks at once whatever max_concurrency says: twenty 1 s tasks
    # kept both slots busy for 10 s, yet the report divided by max_concurrency=10 slots (20%) and the
    # advice blamed "a rate limit, a resource pool smaller than max_concurrency".
    tel = InMemoryTelemetry()

    async def work(i: int) -> int:
        await asyncio.sleep(1.0)
        return i

    async def main() -> WaveReport:
        wave = Wave[int]("buffered", max_concurrency=10, clock=asyncio.get_running_loop().time, **tel.providers)
        async with wave.stream_map(work, range(20), buffer=2) as results:
            assert sorted([r.index async for r in results]) == list(range(20))
        assert results.report is not None
        return results.report

    report = run_virtual(main())
    assert (report.concurrency, report.duration_s, report.parallel_efficiency) == (2, 10.0, 1.0)
    assert report.recommendations == []
    assert _efficiency(tel, "buffered") == (1.0, 1.0)


def test_queue_wait_advice_on_a_stream_does_not_blame_max_concurrency() -> None:
    # A streamed task's queue wait starts when a worker with room pulls it: it holds pool and rate-limit
    # waits only, never a wait for a slot. Rate-limited streams were told "Raise max_concurrency (now 4)"
    # (more workers only queue longer on the limiter), and with buffer=2 "(now 2)", the buffer's number.
    async def work(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    async def main() -> list[WaveReport]:
        wave = Wave[int]("s", max_concurrency=4, rate_limit=20, clock=asyncio.get_running_loop().time,
                         instrument=False)
        reports = []
        for buffer in (None, 2):
            async with wave.stream_map(work, range(40), buffer=buffer) as results:
                assert len([r async for r in results]) == 40
            assert results.report is not None
            reports.append(results.report)
        reports.append((await wave.map(work, range(40))).report)  # run(): its waits include the slot's...
        return reports

    streamed, buffered, ran = run_virtual(main())
    assert (streamed.buffer, buffered.buffer, ran.buffer) == (8, 2, None)
    for report in (streamed, buffered):
        [advice] = [r for r in report.recommendations if r.kind == "queue_wait"]
        assert "max_concurrency" not in advice.message
        assert "rate limit held the tasks back" in advice.message
    # ...but its 4 slots were never all busy running tasks for more than 100 ms (0.4 s busy / 4 slots), and
    # tasks waited 975 ms on average: the workers waited on the limiter (test_queue_wait_advice_does_not_...)
    [advice] = [r for r in ran.recommendations if r.kind == "queue_wait"]
    assert "max_concurrency" not in advice.message
    assert "At most 100.0 ms of that can be a wait for a slot" in advice.message


def test_efficiency_advice_counts_one_slot_and_one_result_in_the_singular() -> None:
    # A stream of max_concurrency=1 and buffer=1 behind a slow consumer read "(4 tasks, 1 slots, ...)" and
    # "its buffer (1 results) has room".
    async def work() -> None:
        await asyncio.sleep(1.0)

    async def main() -> WaveReport:
        wave = Wave[None]("s", max_concurrency=1, clock=asyncio.get_running_loop().time, instrument=False)
        async with wave.stream([work] * 4, buffer=1) as results:
            async for _ in results:
                await asyncio.sleep(3.0)
        assert results.report is not None
        return results.report

    [advice] = run_virtual(main()).recommendations
    # 13 s: a stream over a list stays open until its consumer has read the last result and asked for the next
    # (it may have appended tasks meanwhile), so the consumer's 3 s on the last result are the wave's too
    assert advice.message.startswith("wave 's': parallel efficiency 30% (4 tasks, 1 slot, 13.0 s wall time)")
    assert "its buffer (1 result) has room" in advice.message


def test_efficiency_advice_on_a_stream_points_at_its_consumer_not_at_stream() -> None:
    # A stream's workers wait for room in its buffer while its consumer is slow: the advice said "look
    # for a rate limit, a resource pool ..." with neither in the wave, and told a stream with stragglers
    # to "start the next work without waiting for the whole wave (stream())".
    async def work(i: int) -> int:
        await asyncio.sleep(10.0 if i == 99 else 0.1)  # the last of 40 is a straggler
        return i

    async def main() -> list[WaveReport]:
        wave = Wave[int]("s", max_concurrency=4, clock=asyncio.get_running_loop().time, instrument=False)
        reports = []
        for items, pause in ((range(40), 1.0), ([*range(39), 99], 0.0)):  # a slow consumer; a straggler
            async with wave.stream_map(work, items) as results:
                async for _ in results:
                    await asyncio.sleep(pause)
            assert results.report is not None
            reports.append(results.report)
        return reports

    slow_consumer, stragglers = run_virtual(main())
    [even] = slow_consumer.recommendations
    assert even.kind == "low_efficiency" and slow_consumer.queue_wait.max == 0.0  # no pool, no rate limit
    assert "its buffer (8 results) has room, so look first at a consumer slower than the tasks" in even.message
    [tail] = stragglers.recommendations
    assert tail.kind == "low_efficiency" and "stragglers hold the wave open" in tail.message
    assert "stream()" not in tail.message
    assert tail.message.endswith("Set a per-task timeout or hedge the slow call.")


def test_tasks_that_took_no_time_are_not_blamed_on_stragglers() -> None:
    # A rate limit spaced instant tasks out: p50 = p99 = 0, an even latency. The advice divided p99 by
    # p50, called 0/0 an infinite tail ("p99 latency 0.0 ms is infx the p50 0.0 ms: stragglers hold
    # the wave open") and told to set a timeout or hedge, instead of pointing at the rate limit.
    async def instant() -> None:
        return None

    async def main() -> WaveReport:
        clock = asyncio.get_running_loop().time
        wave = Wave[None]("limited", max_concurrency=2, rate_limit=10, clock=clock, instrument=False)
        return (await wave.run([instant] * 20)).report

    report = run_virtual(main())
    assert report.latency.p50 == report.latency.p99 == 0.0
    assert math.isclose(report.duration_s, 1.9)
    assert report.parallel_efficiency == 0.0
    [advice] = [r for r in report.recommendations if r.kind == "low_efficiency"]
    assert "latency is even" in advice.message
    assert "rate limit" in advice.message
    assert "straggler" not in advice.message
    assert advice.evidence["parallel_efficiency"] == report.parallel_efficiency
    # no advice quotes an infinite ratio ("ran only 0.0 ms (infx)"): it says nothing a user can act on
    assert [r.kind for r in report.recommendations] == ["queue_wait", "low_efficiency"]
    assert all("inf" not in r.message for r in report.recommendations)
    assert report.recommendations[0].evidence["ratio"] == math.inf  # the evidence keeps the number
    # a p50 of 0 under a p99 that is not: stragglers, "far above" it rather than "infx" it
    instant_and_slow = Summary(24, 2.0, 2.0 / 24, 0.0, 1.0, 1.0, 1.0)
    no_wait = Summary(24, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    [tail] = advise_wave(dataclasses.replace(report, latency=instant_and_slow, queue_wait=no_wait))
    assert "p99 latency 1000.0 ms is far above the p50 0.0 ms: stragglers" in tail.message


def test_a_wave_that_took_no_wall_time_is_not_judged_inefficient() -> None:
    # On a fake clock a wave of instant tasks takes 0 s: its efficiency (0/0) is reported as 0.0, and
    # the advice took that for a measurement: "parallel efficiency 0% (40 tasks, 4 slots, 0.0 ms wall
    # time); ... stragglers hold the wave open".
    tel = InMemoryTelemetry()

    async def instant() -> int:
        return 1

    async def main() -> list[WaveReport]:
        clock = asyncio.get_running_loop().time
        reports = []
        for name, work in (("instant", instant), ("failing", _fail_at_once)):
            wave = Wave[Any](name, max_concurrency=4, clock=clock, **tel.providers)
            reports.append((await wave.run([work] * 40)).report)
        return reports

    for report in run_virtual(main()):
        assert report.duration_s == 0.0
        assert report.latency.count == 40
        assert report.parallel_efficiency == 0.0
        assert _efficiency(tel, report.wave) == (0.0, 0.0)  # finite everywhere, never NaN
        assert report.recommendations == []
        assert advise_wave(report) == []


def test_queue_wait_advice_on_a_batched_wave_cites_no_max_concurrency_it_does_not_have() -> None:
    # A batched wave's report counts batch_size slots (a batch runs no more at once) and its queue waits
    # from each batch's start. Rate-limited, with max_concurrency=100 (or None) and batches of 10, the
    # advice said "Raise max_concurrency (now 10)": neither the setting nor a limit that held any task
    # back (each had a slot in its batch); the rate limit did.
    async def work() -> None:
        await asyncio.sleep(0.01)

    async def main() -> list[WaveReport]:
        clock = asyncio.get_running_loop().time
        return [
            (await Wave[None]("b", max_concurrency=limit, batch_size=batch, rate_limit=20, clock=clock,
                              instrument=False).run([work] * 100)).report
            for limit, batch in ((100, 10), (None, 10), (3, 10), (5, None))
        ]

    for report in run_virtual(main()):
        [advice] = [r for r in report.recommendations if r.kind == "queue_wait"]
        if report.batch_size is not None and report.concurrency == 10:
            assert "max_concurrency" not in advice.message
            assert "Every task had a concurrency slot (10 per batch)" in advice.message
            assert "rate limit" in advice.message
        else:  # 3 slots for batches of 10, 5 slots for 100 tasks: never all busy running 10 ms tasks 50 ms apart
            assert "max_concurrency" not in advice.message
            assert f"of that can be a wait for a slot (busy task time / {report.concurrency} slots)" in advice.message
        assert advice.evidence["concurrency"] == report.concurrency


def test_queue_wait_advice_does_not_blame_max_concurrency_when_the_slots_sat_idle() -> None:
    # A task waits for a slot only while every slot runs a task, which lasted at most busy time / slots. Five
    # slots under rate_limit=2 ran ten 100 ms tasks 4% efficient (each slot idle 96% of the wave) while tasks
    # waited 2.25 s on average, and the advice said "Raise max_concurrency (now 5)": more slots would only have
    # waited on the limiter too. The same wave without the limit, on one slot, still names max_concurrency.
    async def work() -> None:
        await asyncio.sleep(0.1)

    async def main() -> tuple[WaveReport, WaveReport]:
        clock = asyncio.get_running_loop().time
        limited = Wave[None]("rl", max_concurrency=5, rate_limit=2, clock=clock, instrument=False)
        serial = Wave[None]("one", max_concurrency=1, clock=clock, instrument=False)
        return (await limited.run([work] * 10)).report, (await serial.run([work] * 10)).report

    limited, serial = run_virtual(main())
    assert limited.queue_wait.mean == pytest.approx(2.25)
    busy_per_slot = limited.latency.mean * limited.latency.count / limited.concurrency
    assert busy_per_slot == pytest.approx(0.2) and limited.queue_wait.mean > busy_per_slot
    [advice] = [r for r in limited.recommendations if r.kind == "queue_wait"]
    assert "max_concurrency" not in advice.message
    assert "At most 200.0 ms of that can be a wait for a slot (busy task time / 5 slots)" in advice.message
    assert "waited for a resource pool, the rate limit or the event loop itself" in advice.message
    # one slot, 100 ms tasks: each waited while the slot ran the others (450 ms on average, 1 s busy)
    [advice] = [r for r in serial.recommendations if r.kind == "queue_wait"]
    assert "Raise max_concurrency (now 1)" in advice.message


def test_slots_idle_for_less_than_a_millisecond_are_not_judged_inefficient() -> None:
    # The queue-wait advice ignores waits under min_queue_wait_s (1 ms); the efficiency advice had no
    # such floor: on a real clock four instant tasks on two slots read 2% efficient over 0.2 ms (the
    # executor's own scheduling) and were told to "look for a rate limit, a resource pool ...". The same
    # wave scaled up x100, with slots idle for milliseconds, is still advised.
    async def main() -> list[WaveReport]:
        clock = asyncio.get_running_loop().time
        reports = []
        for scale in (1e-5, 1e-3):
            async def work(seconds: float = scale) -> None:
                await asyncio.sleep(seconds)

            wave = Wave[None]("tiny", max_concurrency=2, rate_limit=0.1 / scale, clock=clock, instrument=False)
            reports.append((await wave.run([work] * 4)).report)
        return reports

    tiny, scaled = run_virtual(main())
    assert math.isclose(tiny.parallel_efficiency, scaled.parallel_efficiency)  # the same shape
    assert scaled.parallel_efficiency < 0.5
    assert tiny.duration_s < 0.001 <= scaled.duration_s
    assert tiny.recommendations == []
    # the floor, nothing else, silences it
    assert "low_efficiency" in [r.kind for r in advise_wave(tiny, AdviceThresholds(min_idle_s=0))]
    [advice] = [r for r in scaled.recommendations if r.kind == "low_efficiency"]
    idle = (1 - scaled.parallel_efficiency) * scaled.duration_s
    assert advice.evidence["idle_s"] == idle >= 0.001


def test_slow_calls_outside_any_wave_are_not_named_as_a_wave() -> None:
    # The recorder filed an operation's calls made outside any wave under the wave label "-", and the
    # latency advice read it as a wave: "mean latency 200.0 ms in wave '-' ... Only this wave is
    # affected" (and a wave named "-" would have shared its numbers).
    recorder = RunRecorder()

    async def fast() -> None:
        await asyncio.sleep(0.005)

    async def slow() -> None:
        await asyncio.sleep(0.2)

    async def main() -> None:
        clock = asyncio.get_running_loop().time
        db = Retry(attempts=1, name="db", hooks=[recorder], clock=clock)
        for name in ("a", "b", "c", "-"):
            await Wave[None](name, policy=db, hooks=[recorder], clock=clock, instrument=False).run([fast] * 5)
        for _ in range(3):
            await db.call(slow)

    run_virtual(main())
    stats = recorder.report().operations["db"]
    assert {w: n for w, (n, _) in stats.latency_by_wave.items()} == {"a": 5, "b": 5, "c": 5, "-": 5, "": 3}
    [advice] = recorder.report().recommendations()
    assert advice.kind == "latency_anomaly"
    assert "200.0 ms outside any wave vs 5.0 ms typical" in advice.message
    assert "wave '-'" not in advice.message and "this wave" not in advice.message
    assert advice.evidence["latency_s"] == stats.latency_by_wave[""][1]


async def _fail_at_once() -> None:
    raise ValueError("no")


@pytest.mark.parametrize("seconds", [
    [0.5],
    [1.0, 2.0],  # nearest rank: p50 is the smaller, p95 and p99 the larger
    [3.0, 1.0, 2.0],
    [0.25] * 7 + [4.0],  # ties: p50 and p95 the tie, p99 the straggler
    [0.01 * (k % 37 + 1) for k in range(100)],
])
def test_percentiles_are_nearest_rank_over_every_task_that_ran(seconds: list[float]) -> None:
    async def work(s: float) -> None:
        await asyncio.sleep(s)
        if s == max(seconds) and len(seconds) > 1:
            raise ValueError("a failure counts in latency too")

    async def main() -> WaveReport:
        wave = Wave[None]("pct", max_concurrency=3, clock=asyncio.get_running_loop().time, instrument=False)
        return (await wave.map(work, seconds)).report

    latency = run_virtual(main()).latency
    assert latency.count == len(seconds) and math.isclose(latency.max, max(seconds))
    assert math.isclose(latency.total, sum(seconds)) and math.isclose(latency.mean, sum(seconds) / len(seconds))
    for q, got in ((0.5, latency.p50), (0.95, latency.p95), (0.99, latency.p99)):
        expected = _nearest_rank(seconds, q)
        assert abs(got - expected) <= 0.01 * expected, (q, got, expected)
    assert latency.p50 <= latency.p95 <= latency.p99 <= latency.max
    # The first and last ranks are exact, not within 1%: p99 of up to 99 values is the max itself (a
    # 10-task wave showed p99 0.995 s beside max 1.0 s), p50 of one or two values the smallest (1.0002).
    if len(seconds) < 100:  # of 100, p99 is rank 99 (here equal to the max: the largest value repeats)
        assert latency.p99 == latency.max
    if len(seconds) <= 2 or len(set(seconds)) == 1:
        assert latency.p50 == min(r for r in seconds)


# ---------------------------------------------------------------- the contract, on random waves
_KINDS = ("ok", "fail", "slow", "self_cancel")
_TASK = st.tuples(st.sampled_from(_KINDS), st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0, 2.0]), st.integers(0, 3))


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _outcome_points(tel: InMemoryTelemetry) -> dict[str, int]:
    counts: dict[str, int] = {}
    for point in tel.points("shannon.task.outcomes"):
        outcome = point.attributes["shannon.task.outcome"]
        counts[outcome] = counts.get(outcome, 0) + point.value
    return {k: v for k, v in counts.items() if v}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tasks=st.lists(_TASK, max_size=30),
    concurrency=st.sampled_from([None, 1, 2, 3, 7, 100]),
    batch_size=st.sampled_from([None, 1, 3, 5]),
    fail_fast=st.booleans(),
    task_timeout=st.sampled_from([None, 1.5]),
    lazy=st.booleans(),
    buffer=st.sampled_from([None, 1, 2]),
)
def test_random_waves_report_what_their_tasks_did(
    tasks: list[tuple[str, float, int]], concurrency: int | None, batch_size: int | None, fail_fast: bool,
    task_timeout: float | None, lazy: bool, buffer: int | None,
) -> None:
    if lazy and concurrency is None:
        concurrency = 5  # a lazy input needs max_concurrency
    tel = InMemoryTelemetry()
    progress: list[Progress] = []
    started: dict[int, float] = {}

    def make(index: int, kind: str, seconds: float, tokens: int) -> Any:
        async def work() -> int:
            started[index] = asyncio.get_running_loop().time()
            if tokens:  # recorded before the task's outcome is known: a failure keeps what it spent
                record_tokens(input=tokens, output=2 * tokens)
                record_cost(tokens / 4)
            await asyncio.sleep(seconds * (3 if kind == "slow" else 1))
            if kind == "fail":
                raise ValueError("boom")
            if kind == "self_cancel":
                raise asyncio.CancelledError
            return index
        return work

    async def main() -> tuple[list[Any], WaveReport]:
        wave = Wave[int](
            "w", max_concurrency=concurrency, batch_size=batch_size, fail_fast=fail_fast, task_timeout=task_timeout,
            on_progress=progress.append, progress_interval=0.1, clock=asyncio.get_running_loop().time,
            **tel.providers,
        )
        works = [make(i, *t) for i, t in enumerate(tasks)]
        if not lazy:
            result = await wave.run(works)
            return list(result.results), result.report

        def feed() -> Iterator[Any]:
            yield from works

        async with wave.stream(feed(), buffer=buffer) as stream:
            results = [r async for r in stream]
        assert stream.report is not None
        return results, stream.report

    results, report = run_virtual(main())
    size = len(tasks)
    if lazy and fail_fast:  # a lazy input is never drained (it may be endless): what was pulled is the wave
        size = len(results)
        assert {r.index for r in results} == set(range(size))
    # every task exactly once, by outcome, in the report, the wave span and the outcome counter
    by_outcome: dict[Outcome, int] = {}
    for r in results:
        by_outcome[r.outcome] = by_outcome.get(r.outcome, 0) + 1
    assert report.total == size == len(results) == len({r.index for r in results})
    assert {o: n for o, n in report.counts.items() if n} == by_outcome
    attributes = tel.span("wave w").attributes
    assert attributes is not None
    assert {o.value: attributes[f"shannon.wave.tasks.{o.value}"] for o in Outcome} == {
        o.value: report.counts.get(o, 0) for o in Outcome
    }
    assert _outcome_points(tel) == {o.value: n for o, n in by_outcome.items()}
    assert report.failed == by_outcome.get(Outcome.FAILURE, 0) + by_outcome.get(Outcome.TIMEOUT, 0)
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            errors[type(r.error).__name__] = errors.get(type(r.error).__name__, 0) + 1
    assert report.errors_by_type == errors
    by_error: dict[str, int] = {}
    for point in tel.points("shannon.task.outcomes"):
        error = point.attributes.get("error.type")
        if error is not None and point.value:
            by_error[error] = by_error.get(error, 0) + point.value
    assert by_error == errors
    for live in ("shannon.task.active", "shannon.task.pending"):  # nothing left running or waiting
        assert sum(p.value for p in tel.points(live)) == 0
    # latency and queue wait: every task that started, whatever its outcome; nearest-rank within 1%
    ran = [r for r in results if r.index in started]
    durations, waits = [r.duration_s for r in ran], [r.queue_wait_s for r in ran]
    assert report.latency.count == report.queue_wait.count == len(ran)
    for metric, values in (("shannon.task.duration", durations), ("shannon.task.queue_wait.duration", waits)):
        points = tel.points(metric)
        assert sum(p.count for p in points) == len(values)
        assert math.isclose(sum(p.sum for p in points), sum(values), abs_tol=1e-9)
    [wave_duration] = tel.points("shannon.wave.duration")
    assert (wave_duration.count, wave_duration.sum) == (1, report.duration_s)
    assert wave_duration.attributes["shannon.task.outcome"] == report.outcome.value
    assert len([s for s in tel.spans() if s.name.startswith("task ")]) == len(ran)
    for summary, values in ((report.latency, durations), (report.queue_wait, waits)):
        if not values:
            assert math.isnan(summary.p50) and math.isnan(summary.max)
            continue
        assert summary.max == max(values)
        assert math.isclose(summary.total, sum(values), abs_tol=1e-9)
        assert summary.p50 <= summary.p95 <= summary.p99 == summary.max  # p99 of <= 100 values: the max
        for q, got in ((0.5, summary.p50), (0.95, summary.p95), (0.99, summary.p99)):
            assert abs(got - _nearest_rank(values, q)) <= 0.01 * _nearest_rank(values, q)
    # efficiency: busy time / (wall x the slots the wave could use), the same in the gauge and the span
    slots = max(1, min(concurrency or size, size, batch_size or size, (buffer if lazy else None) or size))
    assert report.concurrency == slots
    assert report.batch_size == batch_size
    assert report.buffer == ((buffer or 2 * (concurrency or 1)) if lazy else None)
    capacity = report.duration_s * slots
    assert sum(durations) <= capacity + 1e-9
    expected = sum(durations) / capacity if capacity > 0 else 0.0
    assert math.isclose(report.parallel_efficiency, expected, abs_tol=1e-12)
    assert 0.0 <= report.parallel_efficiency <= 1.0
    assert _efficiency(tel, "w") == (report.parallel_efficiency, report.parallel_efficiency)
    # tokens and cost: what the tasks that ran recorded, failures, timeouts and cancellations included
    spent = sum(tasks[i][2] for i in started)
    if spent:
        tokens_in = report.measurements["shannon.task.tokens.input"]
        assert tokens_in.total == spent == sum(r.measurements["shannon.task.tokens.input"] for r in ran
                                                if r.measurements)
        assert report.measurements["shannon.task.tokens.output"].total == 2 * spent
        assert report.measurements["shannon.task.cost"].total == spent / 4
        assert [p.value for p in tel.points("shannon.task.cost")] == [spent / 4]
        assert {p.attributes["shannon.token.type"]: p.sum for p in tel.points("shannon.task.tokens")} == {
            "input": spent, "output": 2 * spent,
        }
    else:
        assert report.measurements == {}
    # progress: non-decreasing, consistent at every call, the last one the report's
    for before, after in itertools.pairwise(progress):
        assert after.done >= before.done and after.failed >= before.failed
    for p in progress:
        if lazy:
            assert p.pending is None
        else:
            assert p.pending is not None and p.pending + p.active + p.done == size
    assert progress[-1].done == size and progress[-1].active == 0 and progress[-1].failed == report.failed
    # advice cites the report's own numbers
    for advice in report.recommendations:
        if advice.kind == "low_efficiency":
            assert advice.evidence["parallel_efficiency"] == report.parallel_efficiency
            assert (advice.evidence["p50_s"], advice.evidence["p99_s"]) == (report.latency.p50, report.latency.p99)
        else:
            assert advice.kind == "queue_wait"
            assert advice.evidence["queue_wait_mean_s"] == report.queue_wait.mean
            assert advice.evidence["task_mean_s"] == report.latency.mean


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seconds=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]), max_size=20),
    concurrency=st.sampled_from([1, 2, 3, 100]),
    batch_size=st.sampled_from([None, 2, 4]),
    cancel_at=st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.1, 2.6, 10.0]),
    mode=st.sampled_from(["run", "stream", "lazy", "abandon"]),
    keep=st.integers(0, 5),
    fail_first=st.booleans(),
)
def test_cancelled_and_abandoned_waves_report_every_task_once(
    seconds: list[float], concurrency: int, batch_size: int | None, cancel_at: float, mode: str, keep: int,
    fail_first: bool,
) -> None:
    # The caller cancels the wave at cancel_at (or the consumer leaves a stream after `keep` results):
    # run() returns no report then, so the RunRecorder's copy is checked against the telemetry.
    tel = InMemoryTelemetry()
    recorder = RunRecorder()
    progress: list[Progress] = []
    started: set[int] = set()

    def make(index: int, pause: float) -> Any:
        async def work() -> int:
            started.add(index)
            record_tokens(input=1)
            await asyncio.sleep(pause)
            if fail_first and index == 0:
                raise ValueError("boom")
            return index
        return work

    async def consume(wave: Wave[int]) -> None:
        works = [make(i, s) for i, s in enumerate(seconds)]
        if mode == "run":
            await wave.run(works)
            return
        taken = 0
        async with wave.stream(works if mode == "stream" else iter(works)) as results:
            async for _ in results:
                taken += 1
                if mode == "abandon" and taken >= keep:
                    break

    async def main() -> None:
        wave = Wave[int](
            "w", max_concurrency=concurrency, batch_size=batch_size, fail_fast=fail_first, hooks=[recorder],
            on_progress=progress.append, progress_interval=0.2, clock=asyncio.get_running_loop().time,
            **tel.providers,
        )
        consumer = asyncio.ensure_future(consume(wave))
        await asyncio.sleep(cancel_at)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    run_virtual(main())
    [report] = recorder.report().waves
    if mode in ("run", "stream"):  # a sized input is drained: every task is reported
        assert report.total == len(seconds)
    attributes = tel.span("wave w").attributes
    assert attributes is not None
    assert {o.value: attributes[f"shannon.wave.tasks.{o.value}"] for o in Outcome} == {
        o.value: report.counts.get(o, 0) for o in Outcome
    }
    assert _outcome_points(tel) == {o.value: n for o, n in report.counts.items() if n}
    assert report.latency.count == len(started) == sum(p.count for p in tel.points("shannon.task.duration"))
    assert len([s for s in tel.spans() if s.name.startswith("task ")]) == len(started)
    if started:
        assert report.measurements["shannon.task.tokens.input"].total == len(started)
    assert 0.0 <= report.parallel_efficiency <= 1.0
    assert _efficiency(tel, "w") == (report.parallel_efficiency, report.parallel_efficiency)
    assert report.concurrency <= max(1, report.total)
    for before, after in itertools.pairwise(progress):
        assert after.done >= before.done
    last = progress[-1]
    assert (last.done, last.active, last.failed) == (report.total, 0, report.failed)
    live = recorder.waves[0]
    assert (live.done, live.active, live.failed) == (report.total, 0, report.failed)
    assert {o: recorder.totals[o.value] for o in Outcome} == {o: report.counts.get(o, 0) for o in Outcome}
