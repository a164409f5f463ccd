"""The executor under faults: broken hooks, tasks that never start, loops, clocks, stream misuse.

Each test here pins a bug found in review; see the test names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, TypeVar, cast

import pytest

from shannon_otel import (
    Hook,
    Outcome,
    Progress,
    ResourcePool,
    TaskResult,
    Wave,
    WaveError,
    WaveObserver,
    WaveStarted,
    task,
)
from shannon_otel import _telemetry as tel
from shannon_otel.testing import FakeClock, InMemoryTelemetry

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def value(v: Any, delay: float = 0.0) -> Callable[[], Awaitable[Any]]:
    async def work() -> Any:
        await asyncio.sleep(delay)
        return v

    return work


class Broken(Hook):
    def __init__(self, where: str) -> None:
        self.where = where

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        where = self.where

        class Observer(WaveObserver):
            def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
                if where == "start" and index % 2:
                    raise RuntimeError("hook bug")
                return None

            def task_finished(self, token: Any, event: TaskResult[Any]) -> None:
                if where == "finish" and event.index % 2:
                    raise RuntimeError("hook bug")

        return Observer()


@pytest.mark.parametrize("where", ["start", "finish"])
def test_a_raising_hook_costs_neither_results_nor_spans(where: str, caplog: pytest.LogCaptureFixture) -> None:
    otel = InMemoryTelemetry()
    broken = Broken(where)
    wave: Wave[int] = Wave("hooked", hooks=(broken,), **otel.providers)
    result = run(wave.run([value(i) for i in range(4)]))
    assert result.values() == [0, 1, 2, 3]
    spans = otel.spans("task hooked")
    assert len(spans) == 4, "every task span is ended"
    assert {(s.attributes or {})[tel.TASK_OUTCOME] for s in spans} == {"success"}
    method = "task_started" if where == "start" else "task_finished"
    assert caplog.text.count(f"failed in {method}") == 1  # tasks 1 and 3: logged once per hook and method
    assert broken.hook_errors == {method: 2}  # and both counted


def test_tasks_that_never_start_are_counted_by_outcome() -> None:
    otel = InMemoryTelemetry()

    async def boom() -> None:
        raise ValueError("x")

    wave: Wave[int | None] = Wave("ff", max_concurrency=1, fail_fast=True, **otel.providers)
    with pytest.warns(DeprecationWarning, match="ResourcePool itself"):  # only a (deprecated) name can be unknown
        unknown = task(value(3), pool="missing")
    result = run(wave.run([boom, value(1), value(2), unknown]))
    assert result.report.counts[Outcome.CANCELLATION] == 3
    assert otel.point(tel.TASK_OUTCOMES.name, shannon_task_outcome="failure").value == 1
    assert otel.point(tel.TASK_OUTCOMES.name, shannon_task_outcome="cancellation").value == 3
    assert otel.point(tel.TASKS_PENDING.name).value == 0
    assert otel.point(tel.TASKS_ACTIVE.name).value == 0
    assert len(otel.spans("task ff")) == 1, "only the task that ran has a span"

    pools: Wave[int] = Wave("pools", **otel.providers)
    with pytest.warns(DeprecationWarning, match="ResourcePool itself"):
        unknown = task(value(1), pool="missing")
    missing = run(pools.run([unknown]))
    assert missing.results[0].outcome is Outcome.FAILURE
    assert otel.point(tel.TASK_OUTCOMES.name, shannon_wave_name="pools").attributes[tel.ERROR_TYPE] == "KeyError"


def test_coroutines_that_never_run_are_closed() -> None:
    async def noop() -> None:
        return None

    coros = [cast("CoroutineType[Any, Any, None]", noop()) for _ in range(4)]
    pool = ResourcePool("one", 1)

    async def main() -> None:
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        wave: Wave[None] = Wave("closing", max_concurrency=4, pools=(pool,), instrument=False)
        runner = asyncio.create_task(wave.run([task(hold, pool=pool)] + [task(c, pool=pool) for c in coros]))
        await asyncio.sleep(0.01)
        runner.cancel()  # three coroutines are waiting for the pool, one never got a worker
        with pytest.raises(asyncio.CancelledError):
            await runner

    run(main())
    assert all(c.cr_frame is None for c in coros), "closed, so Python never warns they were not awaited"
    policy_wave: Wave[None] = Wave("policy", policy=_Passthrough(), instrument=False)
    coro = cast("CoroutineType[Any, Any, None]", noop())
    result = run(policy_wave.run([coro]))
    assert isinstance(result.results[0].error, TypeError)
    assert coro.cr_frame is None


class _Passthrough:
    async def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return await fn()


def test_streaming_an_unbounded_wave_runs_everything_at_once() -> None:
    peak = 0
    running = 0

    async def body() -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def main() -> None:
        wave: Wave[None] = Wave("all", max_concurrency=None, instrument=False)
        async with wave.stream([body] * 20) as results:
            async for _ in results:
                pass

    run(main())
    assert peak == 20


def test_iterating_a_stream_outside_async_with_is_a_clear_error() -> None:
    async def main() -> None:
        wave: Wave[int] = Wave("s", instrument=False)
        stream = wave.stream([value(1)])
        with pytest.raises(RuntimeError, match="async with"):
            await stream.__anext__()

    run(main())


def test_a_clock_starting_at_zero_is_an_ordinary_time() -> None:
    clock = FakeClock(start=0.0)
    seen: list[Progress] = []
    wave: Wave[int] = Wave("zero", max_concurrency=2, clock=clock, on_progress=seen.append, instrument=False)
    run(wave.run([value(1), value(2), value(3)]))
    assert (seen[-1].pending, seen[-1].active, seen[-1].done) == (0, 0, 3)


def test_progress_of_a_lazy_stream_has_no_pending_count() -> None:
    seen: list[Progress] = []

    async def main() -> None:
        wave: Wave[int] = Wave(
            "lazy", max_concurrency=2, on_progress=seen.append, progress_interval=1e-9, instrument=False,
        )
        async with wave.stream(value(i) for i in range(5)) as results:
            async for _ in results:
                pass

    run(main())
    assert {p.pending for p in seen} == {None}
    assert seen[-1].done == 5


def test_raise_for_errors_notes_each_error_once() -> None:
    async def bad() -> None:
        raise ValueError("bad")

    wave: Wave[None] = Wave("notes", instrument=False)
    result = run(wave.run([bad]))
    for _ in range(3):
        with pytest.raises(ExceptionGroup):
            result.values()
    assert result.results[0].error is not None
    assert result.results[0].error.__notes__ == ["in task 0 (notes) of wave 'notes'"]


@dataclasses.dataclass(frozen=True)
class _FrozenError(Exception):
    code: int


class _TupleNotesError(Exception):
    pass


def test_errors_that_take_no_note_are_raised_in_the_wave_error_as_they_are() -> None:
    # A frozen dataclass exception refuses the note raise_for_errors adds (its __setattr__ raises
    # FrozenInstanceError), and add_note refuses __notes__ that are not a list: values() and raise_errors=True
    # raised that error in place of the WaveError, and every result of the wave was lost with it.
    frozen = _FrozenError(3)
    tupled = _TupleNotesError("x")
    tupled.__notes__ = ("mine",)  # type: ignore[assignment]

    async def fails(error: Exception) -> None:
        raise error

    wave: Wave[None] = Wave("frozen", instrument=False)
    result = run(wave.map(fails, [frozen, tupled]))
    with pytest.raises(WaveError) as caught:
        result.values()
    assert caught.value.result is result
    assert caught.value.exceptions[0] is frozen and caught.value.exceptions[1] is tupled
    assert not hasattr(frozen, "__notes__") and getattr(tupled, "__notes__", None) == ("mine",)
    with pytest.raises(WaveError) as raised:
        run(wave.map(fails, [frozen], raise_errors=True))
    assert raised.value.exceptions[0] is frozen


def test_a_resource_pool_serves_one_event_loop_after_another() -> None:
    pool = ResourcePool("db", 1)
    wave: Wave[int] = Wave("loops", pools=(pool,), instrument=False)
    for _ in range(2):
        result = run(wave.run([task(value(1), pool=pool), task(value(2), pool=pool)]))
        assert result.values() == [1, 2]


def test_two_event_loops_in_threads_never_hold_one_pool_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Event loops in two threads took one idle pool at the same time: each found it idle, then each made the
    # pool its own; both tasks ran in a pool of limit 1 (and one loop's release could wake the other loop's
    # waiter from the wrong thread). Here the second thread takes the pool while the first is between finding
    # it idle and making it its own: one of them must get the documented RuntimeError.
    from shannon_otel.executor import _limits
    from shannon_otel.executor._semaphore import Credits

    switching, other_done = threading.Event(), threading.Event()

    def credits(limit: int) -> Any:
        if threading.current_thread() is not threading.main_thread() and not switching.is_set():
            switching.set()  # the first loop has found the pool idle and is making it its own
            other_done.wait(2.0)  # with the fix the other loop waits for this one: nothing to wait for here
        return Credits(limit)

    monkeypatch.setattr(_limits, "Credits", credits)
    pool = ResourcePool("db", 1)
    outcomes: dict[str, str] = {}

    def take(who: str) -> None:
        try:
            run(pool.acquire())
            outcomes[who] = "held"
        except RuntimeError as exc:
            outcomes[who] = str(exc)
        finally:
            if who == "second":
                other_done.set()

    first = threading.Thread(target=take, args=("first",))
    first.start()
    assert switching.wait(10.0)
    second = threading.Thread(target=take, args=("second",))
    second.start()
    first.join(10.0)
    second.join(10.0)
    refused, held = sorted(outcomes.values())
    assert held == "held"
    assert refused.startswith("ResourcePool 'db'")  # in use by another loop, or held in a closed one (it has ended)
    assert pool.in_use == 1


def test_a_pool_held_in_a_closed_loop_says_so() -> None:
    # A loop closed while its tasks held a pool (a test framework's loop teardown that cancels nothing) keeps
    # their permits until the tasks are collected. The next loop was told the pool "is in use by another event
    # loop", with no loop of the user's running.
    pool = ResourcePool("db", 1)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(pool.acquire())  # held, as by a task left running when the loop closed
    loop.close()
    with pytest.raises(RuntimeError, match=r"'db': 1 permit\(s\) held in an event loop closed while its tasks"):
        run(pool.acquire())
    pool.release()
    run(pool.acquire())  # given back: the next loop takes the pool
    assert pool.in_use == 1


def test_a_resource_pool_released_more_often_than_acquired_refuses_instead_of_exceeding_its_limit() -> None:
    # A release without an acquire (or a second release of one) added a permit: in_use went to -1, two tasks then
    # held a pool of limit 1 at once, and a pool never acquired in this loop said it was "in use by another loop".
    async def main() -> list[int]:
        pool = ResourcePool("db", 1)
        with pytest.raises(ValueError, match=r"ResourcePool 'db' released more times than it was acquired"):
            pool.release()
        await pool.acquire()
        pool.release()
        with pytest.raises(ValueError, match=r"'db' released more times"):
            pool.release()
        held = []
        await pool.acquire()
        held.append(pool.in_use)
        second = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        held.append(int(second.done()))  # still waiting: the pool's one permit is held
        pool.release()
        await second
        held.append(pool.in_use)
        pool.release()
        held.append(pool.in_use)
        return held

    assert run(main()) == [1, 0, 1, 0]


def test_a_task_that_releases_its_own_pool_permit_still_ends_its_span_and_delivers_its_result() -> None:
    # The permit the wave took for the task was given back by the task; the wave's own release then found none
    # held. It must not raise out of the task's end (the wave failed with an ExceptionGroup, its span left open).
    otel = InMemoryTelemetry()
    pool = ResourcePool("db", 1)

    async def gives_back() -> int:
        pool.release()
        return 1

    result = run(Wave("own", **otel.providers).run([task(gives_back, pool=pool), task(gives_back, pool=pool)]))
    assert result.values() == [1, 1]
    assert pool.in_use == 0
    assert sorted(s.name for s in otel.spans()) == ["task own", "task own", "wave own"]


def test_cached_hooks_do_not_keep_providers_alive() -> None:
    otel = InMemoryTelemetry()
    Wave("w", **otel.providers)
    refs: list[weakref.ref[object]] = [weakref.ref(otel.tracer_provider), weakref.ref(otel.meter_provider)]
    otel.shutdown()
    del otel
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_hooks_given_as_a_list_are_frozen_so_the_policy_is_hashable() -> None:
    wave: Wave[None] = Wave("h", hooks=[], instrument=False)  # a list fits the type too
    assert wave.hooks == ()
    hash(wave)


def test_a_task_swallowing_the_cancellation_does_not_keep_its_worker_going() -> None:
    started: list[int] = []

    def stubborn(i: int) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            started.append(i)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return  # swallowed

        return body

    async def main() -> None:
        wave: Wave[None] = Wave("s", max_concurrency=1, instrument=False)
        runner = asyncio.create_task(wave.run([stubborn(i) for i in range(5)]))
        await asyncio.sleep(0.01)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    run(main())
    assert started == [0]


def test_a_failing_progress_callback_is_logged_once_counted_each_time_and_costs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``on_progress`` failures follow the hook contract: each one reported to the wave's hooks (the OTel hook counts
    it in ``shannon.hook.errors``), the first of a run logged with its traceback. Each was logged, with its
    traceback, and counted nowhere: a display broken for a 100,000-task wave wrote 100,000 tracebacks."""
    def broken(progress: Any) -> None:
        raise RuntimeError("display bug")

    otel = InMemoryTelemetry()
    wave: Wave[int] = Wave("p", on_progress=broken, progress_interval=1e-9, **otel.providers)
    for _ in range(2):
        caplog.clear()
        assert run(wave.run([value(1), value(2)])).values() == [1, 2]
        assert caplog.text.count("on_progress failed") == 1  # of three failures: after each task, once at the end
        assert caplog.text.count("RuntimeError: display bug") == 1
    [point] = otel.points(tel.HOOK_ERRORS.name)
    assert point.value == 6  # every failure of both runs
    assert dict(point.attributes) == {
        tel.HOOK_NAME: f"{__name__}.{broken.__qualname__}", tel.HOOK_METHOD: "on_progress",
        tel.ERROR_TYPE: "RuntimeError",
    }
    otel.shutdown()


def test_on_progress_interrupting_at_the_wave_end_still_releases_the_run() -> None:
    """The last ``on_progress`` call (after ``wave_finished``) raising KeyboardInterrupt skipped ``run.release()``: the
    run kept reaching every result and observer of the wave for as long as the interrupt's traceback (or, from
    Python 3.12, a task error's: ``f_back``) was kept."""
    from shannon_otel.executor._run import WaveRun

    finished: list[bool] = []

    class Ended(WaveObserver):
        def wave_finished(self, report: Any) -> None:
            finished.append(True)

    class EndHook(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver:
            return Ended()

    def progress(p: Progress) -> None:
        if finished:  # the call at the wave's end
            raise KeyboardInterrupt

    wave: Wave[int] = Wave("rel", hooks=[EndHook()], on_progress=progress, instrument=False)
    with pytest.raises(KeyboardInterrupt) as caught:
        run(wave.run([value(1), value(2)]))
    runs: list[WaveRun] = []
    tb = caught.value.__traceback__
    while tb is not None:
        runs.extend(v for v in tb.tb_frame.f_locals.values() if isinstance(v, WaveRun))
        tb = tb.tb_next
    [wave_run] = {id(r): r for r in runs}.values()  # the wave's own, held by the interrupt's frames
    assert wave_run.observers == () and wave_run.workers == []  # released: it reaches no observer, no worker


def test_a_streamed_task_waits_in_the_queue_only_after_it_is_pulled() -> None:
    clock = FakeClock()

    def step() -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            clock.advance(1.0)

        return body

    async def main() -> list[float]:
        wave: Wave[None] = Wave("q", max_concurrency=1, clock=clock, instrument=False)
        async with wave.stream(step() for _ in range(5)) as results:
            return [r.queue_wait_s async for r in results]

    # One worker, each task takes 1 s: in run() task k would have waited k s; a lazy input is not yet
    # submitted while the consumer has no room, so no task waits here.
    assert run(main()) == [0.0] * 5
