"""What the library shows: the counts, outcomes, durations and links of waves and
policies compared with what really ran (executions counted by the test itself), on the virtual-time loop
with the real SDK in memory. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from shannon_otel import Fallback, FallbackError, Outcome, ResourcePool, Retry, Wave, task
from shannon_otel.testing import InMemoryTelemetry, run_virtual


def test_tasks_fail_fast_cancels_while_they_wait_for_a_pool_are_cancelled_not_failed() -> None:
    # Fail-fast cancels the tasks queued on the pool; the failed task's release then drops their
    # cancelled waiters, and each waiter's own clean-up raised ValueError ("not in deque"): tasks that
    # never ran were reported as failures with an error the user's code never raised.
    tel = InMemoryTelemetry()
    pool = ResourcePool("db", 1)
    ran: list[int] = []

    async def bad() -> int:
        ran.append(0)
        await asyncio.sleep(0.1)
        raise ValueError("boom")

    def ok(i: int) -> Any:
        async def work() -> int:
            ran.append(i)
            return i
        return task(work, pool=pool)

    async def main() -> None:
        wave = Wave[Any]("ff", fail_fast=True, **tel.providers)
        res = await wave.run([task(bad, pool=pool), *(ok(i) for i in range(1, 5))])
        assert ran == [0]
        assert [r.outcome for r in res.results] == [Outcome.FAILURE] + [Outcome.CANCELLATION] * 4
        assert [type(r.error).__name__ for r in res.errors] == ["ValueError"]
        assert res.report.counts[Outcome.FAILURE] == 1
        assert res.report.errors_by_type == {"ValueError": 1}
        # the pool's credit came back: a later wave runs through it
        again = await Wave[Any]("again", **tel.providers).run([ok(9)])
        assert again.results[0].outcome is Outcome.SUCCESS

    run_virtual(main())
    wave = tel.span("wave ff")
    assert wave.attributes is not None
    assert wave.attributes["shannon.wave.tasks.failure"] == 1
    assert wave.attributes["shannon.wave.tasks.cancellation"] == 4
    assert {
        p.attributes["shannon.task.outcome"]: p.value for p in tel.points("shannon.task.outcomes")
        if p.attributes["shannon.wave.name"] == "ff"
    } == {"failure": 1, "cancellation": 4}


def test_a_batched_waves_efficiency_counts_the_slots_a_batch_can_use_not_max_concurrency() -> None:
    # A batch never runs more than batch_size tasks at once, but the report divided the busy time by
    # max_concurrency (or the wave's size) slots: 100 even tasks in batches of 10, every slot busy all
    # the time, showed 10% efficiency and the advice blamed "a rate limit or a resource pool".
    tel = InMemoryTelemetry()

    async def work() -> None:
        await asyncio.sleep(0.1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for name, concurrency in (("capped", 100), ("unbounded", None)):
            wave = Wave[None](name, max_concurrency=concurrency, batch_size=10, clock=loop.time, **tel.providers)
            report = (await wave.run([work for _ in range(100)])).report
            assert report.concurrency == 10
            assert abs(report.duration_s - 1.0) < 1e-9
            assert abs(report.parallel_efficiency - 1.0) < 1e-9
            assert report.recommendations == []

    run_virtual(main())
    for name in ("capped", "unbounded"):
        assert abs(tel.point("shannon.wave.parallel_efficiency", shannon_wave_name=name).value - 1.0) < 1e-9
        attributes = tel.span(f"wave {name}").attributes
        assert attributes is not None
        efficiency: Any = attributes["shannon.wave.parallel_efficiency"]
        assert abs(efficiency - 1.0) < 1e-9


def test_the_reports_latency_counts_every_task_that_ran_and_none_that_did_not() -> None:
    # The report guessed "started" from the duration: a task that ran and was cancelled within one
    # clock reading (fail-fast at the same instant, a task that cancelled itself at once) had a span and
    # a duration point but was left out of the report's latency and queue wait; one that failed before
    # it started (its limiter raised) was put in, with a duration it never had.
    tel = InMemoryTelemetry()
    ran: list[int] = []

    class BrokenLimit:
        async def acquire(self) -> None:
            raise ConnectionError("limiter down")

    def work(i: int, *, fail: bool = False, cancel_self: bool = False) -> Any:
        async def run() -> int:
            ran.append(i)
            if cancel_self:
                raise asyncio.CancelledError
            await asyncio.sleep(0 if fail else 1.0)
            if fail:
                raise ValueError("boom")
            return i
        return run

    async def main() -> None:
        loop = asyncio.get_running_loop()
        providers = {"clock": loop.time, **tel.providers}
        # task 0 fails at t=0; fail-fast cancels tasks 1 and 2, which started at t=0 too
        ff = await Wave[Any]("ff", max_concurrency=3, fail_fast=True, **providers).run(
            [work(0, fail=True), work(1), work(2)],
        )
        assert ff.report.counts[Outcome.CANCELLATION] == 2
        assert ff.report.latency.count == ff.report.queue_wait.count == 3
        selfish = await Wave[Any]("self", **providers).run([work(3, cancel_self=True), work(4)])
        assert selfish.report.latency.count == 2
        down = await Wave[Any]("down", rate_limit=BrokenLimit(), **providers).run([work(5), work(6)])
        assert [r.outcome for r in down.results] == [Outcome.FAILURE, Outcome.FAILURE]
        assert down.report.latency.count == down.report.queue_wait.count == 0

    run_virtual(main())
    assert ran == [0, 1, 2, 3, 4]
    for wave, executed in (("ff", 3), ("self", 2), ("down", 0)):
        spans = [s for s in tel.spans() if s.parent is not None and s.name.startswith("task ")
                 and tel.span(f"wave {wave}").context.span_id == s.parent.span_id]
        assert len(spans) == executed
        points = [p for p in tel.points("shannon.task.duration") if p.attributes["shannon.wave.name"] == wave]
        assert sum(p.count for p in points) == executed


def test_the_call_and_fallback_counters_mean_what_their_descriptions_say() -> None:
    # shannon.fallbacks counts every fallback run (the fallback span's, the log's and the run report's
    # count), also one that failed, but its description (docs table, dashboard) said "served";
    # shannon.calls counts cancelled calls as "cancellation", which its description did not list.
    tel = InMemoryTelemetry()

    async def primary() -> int:
        raise ValueError("down")

    async def served(error: Exception) -> int:
        return 0

    async def broken(error: Exception) -> int:
        raise KeyError("also down")

    async def hang() -> int:
        await asyncio.sleep(10)
        return 1

    async def main() -> None:
        assert await Fallback(served, name="fb", **tel.providers).call(primary) == 0
        with contextlib.suppress(FallbackError):
            await Fallback(broken, name="fb", **tel.providers).call(primary)
        call = asyncio.ensure_future(Retry(name="op", **tel.providers).call(hang))
        await asyncio.sleep(1)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call

    run_virtual(main())
    metrics: dict[str, Any] = dict(tel.metrics())
    fallbacks = metrics["shannon.fallbacks"]
    assert sum(p.value for p in fallbacks.data.data_points) == 2 == len(tel.spans("fallback fb"))
    assert "served" not in fallbacks.description
    calls = metrics["shannon.calls"]
    outcomes = {p.attributes["shannon.call.outcome"] for p in calls.data.data_points}
    assert outcomes == {"success", "failure", "cancellation"}
    listed = calls.description.partition("(")[2]
    assert all(outcome in listed for outcome in outcomes), calls.description



def test_a_cancelled_wave_whose_tasks_failed_has_an_error_status() -> None:
    # The contract: the wave span is ERROR "if any task failed or timed out". A wave cancelled after
    # two of its tasks failed kept an UNSET status (its outcome, cancellation, took precedence), so a
    # search for failed waves missed it while its failed task spans were ERROR.
    from opentelemetry.trace import StatusCode

    tel = InMemoryTelemetry()

    async def fails() -> None:
        raise ValueError("boom")

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        run = asyncio.ensure_future(Wave[Any]("cw", **tel.providers).run([fails, fails, hangs]))
        await asyncio.sleep(1)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run

    run_virtual(main())
    wave = tel.span("wave cw")
    assert wave.attributes is not None
    assert wave.attributes["shannon.task.outcome"] == "cancellation"
    assert wave.attributes["shannon.wave.tasks.failure"] == 2
    assert wave.status.status_code is StatusCode.ERROR
    assert wave.status.description == "2 of 3 tasks failed"
    # a cancelled wave without failures stays UNSET: cancellation is an outcome, never an error
    quiet = InMemoryTelemetry()

    async def cancelled_clean() -> None:
        run = asyncio.ensure_future(Wave[Any]("cc", **quiet.providers).run([hangs]))
        await asyncio.sleep(1)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run

    run_virtual(cancelled_clean())
    assert quiet.span("wave cc").status.status_code is StatusCode.UNSET



def test_the_flapping_advice_measures_each_probe_from_the_opening_before_it() -> None:
    # The advice paired the n-th opening with the n-th probe: an opening ended by reset() (no probe)
    # shifted every pair, and a breaker probing 30 s after each opening was reported "re-opened by a
    # failed probe after ~95 s open".
    from shannon_otel import CircuitBreaker, CircuitOpenError, RunRecorder
    from shannon_otel.testing import FakeClock

    clock = FakeClock(0.0)
    recorder = RunRecorder()
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout=30, clock=clock, hooks=[recorder],
                             instrument=False)

    async def fails() -> None:
        raise KeyError("down")

    async def call() -> None:
        with contextlib.suppress(KeyError, CircuitOpenError):
            await breaker.call(fails)

    async def main() -> None:
        await call()  # t=0: opens
        clock.advance(1)
        breaker.reset()  # an operator closes it: no probe
        clock.advance(99)
        await call()  # t=100: opens
        for _ in range(2):  # t=130, t=160: the probe fails, it re-opens
            clock.advance(30)
            await call()

    run_virtual(main())
    (advice,) = [r for r in recorder.report().recommendations() if r.kind == "breaker_flapping"]
    assert advice.evidence["reopens"] == 2
    assert advice.evidence["reset_timeout_s"] == 30.0
    assert "after ~30.0 s open" in advice.message



def test_a_call_whose_task_timed_out_and_was_cancelled_by_fail_fast_at_once_agrees_with_its_task() -> None:
    # Task 0 times out at t=1, and fail-fast cancels task 1 in the same loop turn in which task 1's own
    # timeout fired: the task is a cancellation (asyncio.timeout sees a second cancel request), but its
    # call and attempt said "timeout" / failure TimeoutError, since the deadline had expired.
    tel = InMemoryTelemetry()

    async def fails_late() -> None:
        await asyncio.sleep(1.0)
        raise ValueError("boom")

    async def hangs() -> None:
        await asyncio.sleep(5.0)

    async def main() -> None:
        policy = Retry(attempts=1, name="op", **tel.providers)
        wave = Wave[None]("tie", max_concurrency=2, task_timeout=1.0, fail_fast=True, policy=policy,
                          **tel.providers)
        result = await wave.run([fails_late, hangs])
        assert [r.outcome for r in result.results] == [Outcome.TIMEOUT, Outcome.CANCELLATION]

    run_virtual(main())
    by_task = {}
    for task_span in tel.spans("task tie"):
        (op,) = [s for s in tel.children(task_span) if s.name == "op"]
        (attempt,) = tel.children(op)
        assert task_span.attributes is not None and op.attributes is not None and attempt.attributes is not None
        by_task[task_span.attributes["shannon.task.outcome"]] = (
            op.attributes["shannon.call.outcome"], attempt.attributes["shannon.attempt.outcome"],
        )
    assert by_task == {"timeout": ("failure", "timeout"), "cancellation": ("cancellation", "cancellation")}



def test_queue_wait_advice_blames_max_concurrency_only_when_it_held_tasks_back() -> None:
    # 20 tasks, a slot each, held back by a rate limit of 2/s: the advice said they "waited for a slot"
    # and to "raise max_concurrency (now 20)", which cannot shorten any wait.
    async def work() -> None:
        await asyncio.sleep(0.01)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limited = await Wave[None]("rl", rate_limit=2.0, max_concurrency=None, clock=loop.time,
                                   instrument=False).run([work] * 20)
        (advice,) = limited.report.recommendations
        assert advice.kind == "queue_wait"
        assert "max_concurrency" not in advice.message
        assert "rate limit" in advice.message
        slotted = await Wave[None]("one", max_concurrency=1, clock=loop.time, instrument=False).run([work] * 20)
        (advice,) = [r for r in slotted.report.recommendations if r.kind == "queue_wait"]
        assert "Raise max_concurrency (now 1)" in advice.message

    run_virtual(main())


def test_a_lazy_streams_tasks_waiting_for_a_pool_are_pending() -> None:
    # The OTel hook heard of a task only when it started, and a lazy input has no size to subtract from, so
    # tasks pulled and waiting for a pool showed as neither active nor pending (0 and 0): a stall on a leaked
    # pool slot was invisible to ShannonWaveStalled. Now the executor tells observers of each task it takes
    # (WaveObserver.task_queued), balanced by its start or skip (tests/test_lazy_pending.py).
    tel = InMemoryTelemetry()
    pool = ResourcePool("leaky", 1)
    seen: dict[str, float] = {}

    async def work() -> None:
        await asyncio.sleep(1.0)

    def lazy() -> Iterator[Any]:
        for _ in range(4):
            yield task(work, pool=pool)

    async def main() -> None:
        async with Wave[Any]("lz", max_concurrency=4, **tel.providers).stream(lazy()) as stream:
            await asyncio.sleep(0.5)  # one task runs, three wait for the pool
            for name in ("shannon.task.active", "shannon.task.pending"):
                seen[name] = tel.point(name, shannon_wave_name="lz").value
            async for _ in stream:
                pass

    run_virtual(main())
    assert seen == {"shannon.task.active": 1, "shannon.task.pending": 3}
