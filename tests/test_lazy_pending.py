"""Tasks of a lazy input waiting for a pool or rate limit: counted pending (``WaveObserver.task_queued``) from the
moment the wave takes them, and taken off again exactly once, by their start or skip, however the wave ends.
Without it the OTel hook heard of them only as they started: a stall on a leaked pool slot showed no task at
all, active or pending. Virtual-time loop, real SDK in memory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import Hook, Outcome, ResourcePool, Wave, WaveObserver, WaveStarted, task
from shannon_otel.testing import InMemoryTelemetry, run_virtual

GAUGES = ("shannon.task.active", "shannon.task.pending")


class Ledger(Hook):
    """Checks, per task, that a start or skip follows exactly one ``task_queued`` (for a lazy input, and for a task a
    sized input gives beyond its announced size when the wave takes it: one never taken, drained as the wave ends,
    is skipped without one)."""

    def __init__(self) -> None:
        self.waves: list[_LedgerWave] = []

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        wave = _LedgerWave(event.size)
        self.waves.append(wave)
        return wave


class _LedgerWave(WaveObserver):
    def __init__(self, size: int | None) -> None:
        self.size = size
        self.queued: set[int] = set()
        self.balanced: list[int] = []
        self.ended = False

    def _beyond(self, index: int) -> bool:
        return self.size is None or index >= self.size

    def task_queued(self, index: int, name: str) -> None:
        assert self._beyond(index), "only a lazy input's tasks (or those past a sized one's size) are queued"
        assert index not in self.queued and index not in self.balanced
        self.queued.add(index)

    def _balance(self, index: int, started: bool) -> None:
        assert index not in self.balanced
        if self.size is None or (started and index >= self.size):
            self.queued.remove(index)  # KeyError: started or skipped without being queued
        elif index >= self.size:  # skipped: queued if it was taken, not if drained at the wave's end
            self.queued.discard(index)
        self.balanced.append(index)

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        self._balance(index, True)

    def task_skipped(self, event: Any) -> None:
        self._balance(event.index, False)

    def tasks_skipped(self, first: Any, count: int) -> None:
        for k in range(count):
            self._balance(first.index + k, False)

    def wave_finished(self, report: Any) -> None:
        assert not self.queued, f"queued tasks never started nor skipped: {sorted(self.queued)}"
        self.ended = True


def _gauges(tel: InMemoryTelemetry, wave: str) -> dict[str, float]:
    return {name: tel.point(name, shannon_wave_name=wave).value for name in GAUGES}


def _lazy(pool: ResourcePool, n: int, fn: Any) -> Iterator[Any]:
    for i in range(n):
        yield task(functools.partial(fn, i), pool=pool)


@pytest.mark.parametrize("end", ["completes", "fail_fast", "left_early", "cancelled", "input_raises", "batched"])
def test_lazy_tasks_waiting_for_a_pool_are_pending_until_they_start_or_are_dropped(end: str) -> None:
    tel = InMemoryTelemetry()
    ledger = Ledger()
    pool = ResourcePool("one", 1)
    seen: dict[str, float] = {}

    async def work(i: int) -> None:
        await asyncio.sleep(1.0)
        if end == "fail_fast" and i == 0:
            raise ValueError("boom")

    def tasks() -> Iterator[Any]:
        yield from _lazy(pool, 4, work)
        if end == "input_raises":
            raise RuntimeError("input broke")

    wave = Wave[Any]("lz", max_concurrency=4, fail_fast=end == "fail_fast", hooks=[ledger],
                     batch_size=2 if end == "batched" else None, **tel.providers)

    async def consume() -> None:
        async with wave.stream(tasks()) as stream:
            await asyncio.sleep(0.5)  # task 0 runs, the others taken so far wait for the pool
            seen.update(_gauges(tel, "lz"))
            if end == "left_early":
                return
            async for _ in stream:
                pass

    async def main() -> None:
        consumer = asyncio.ensure_future(consume())
        if end == "cancelled":
            await asyncio.sleep(0.7)
            consumer.cancel()
        raised: BaseException | None = None
        try:
            await consumer
        except (asyncio.CancelledError, ExceptionGroup) as exc:  # cancelled; or failed with its input's error
            raised = exc
        if end == "cancelled":
            assert isinstance(raised, asyncio.CancelledError)
        elif end == "input_raises":
            assert isinstance(raised, ExceptionGroup) and raised.subgroup(RuntimeError) is not None
        else:
            assert raised is None

    run_virtual(main())
    waiting = 1 if end == "batched" else 3  # a batch of 2: one runs, one waits
    assert seen == {"shannon.task.active": 1, "shannon.task.pending": waiting}
    (ledger_wave,) = ledger.waves
    assert ledger_wave.ended
    assert ledger.hook_errors == {}  # the ledger's checks raise inside the hook, which isolates them
    assert _gauges(tel, "lz") == {"shannon.task.active": 0, "shannon.task.pending": 0}


def test_a_lazy_task_that_fails_before_it_starts_leaves_pending_at_once() -> None:
    # A task dropped mid-wave (its rate limiter raised as it waited): taken off pending then, not at the wave's end.
    tel = InMemoryTelemetry()
    ledger = Ledger()
    opened = asyncio.Event()
    calls = 0
    seen: list[dict[str, float]] = []

    class Limiter:
        async def acquire(self) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise ValueError("limiter broke")
            await opened.wait()

    async def work() -> None:
        await asyncio.sleep(1.0)

    def tasks() -> Iterator[Any]:
        for _ in range(3):
            yield work

    async def main() -> None:
        wave = Wave[Any]("rl", max_concurrency=3, rate_limit=Limiter(), hooks=[ledger], **tel.providers)
        async with wave.stream(tasks()) as stream:
            await asyncio.sleep(0.5)
            seen.append(_gauges(tel, "rl"))  # one failed before its start: two wait
            opened.set()
            outcomes = sorted([r.outcome.value async for r in stream])
        assert outcomes == sorted([Outcome.FAILURE.value, Outcome.SUCCESS.value, Outcome.SUCCESS.value])

    run_virtual(main())
    assert seen == [{"shannon.task.active": 0, "shannon.task.pending": 2}]
    assert _gauges(tel, "rl") == {"shannon.task.active": 0, "shannon.task.pending": 0}
    assert ledger.waves[0].ended
    assert ledger.hook_errors == {}


def test_a_sized_input_is_not_queued_task_by_task_and_counts_pending_as_before() -> None:
    tel = InMemoryTelemetry()
    ledger = Ledger()
    pool = ResourcePool("one", 1)
    seen: dict[str, float] = {}

    async def work(i: int) -> None:
        await asyncio.sleep(1.0)

    async def main() -> None:
        wave = Wave[Any]("eager", max_concurrency=2, hooks=[ledger], **tel.providers)
        async with wave.stream(list(_lazy(pool, 5, work))) as stream:
            await asyncio.sleep(0.5)  # one runs, one waits for the pool, three not taken yet
            seen.update(_gauges(tel, "eager"))
            async for _ in stream:
                pass
        await wave.run(list(_lazy(pool, 3, work)))

    run_virtual(main())
    assert seen == {"shannon.task.active": 1, "shannon.task.pending": 4}
    assert [w.size for w in ledger.waves] == [5, 3]
    assert all(w.ended for w in ledger.waves)
    assert ledger.hook_errors == {}
    assert _gauges(tel, "eager") == {"shannon.task.active": 0, "shannon.task.pending": 0}


def test_a_hook_whose_task_queued_raises_misses_nothing_else() -> None:
    tel = InMemoryTelemetry()
    pool = ResourcePool("one", 1)
    seen: dict[str, float] = {}

    class Broken(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver:
            class Obs(WaveObserver):
                def task_queued(self, index: int, name: str) -> None:
                    raise ValueError("hook bug")
            return Obs()

    broken = Broken()

    async def work(i: int) -> int:
        await asyncio.sleep(1.0)
        return i

    async def main() -> None:
        async with Wave[Any]("hb", max_concurrency=3, hooks=[broken], **tel.providers).stream(
                _lazy(pool, 3, work)) as stream:
            await asyncio.sleep(0.5)
            seen.update(_gauges(tel, "hb"))
            assert sorted([r.index async for r in stream]) == [0, 1, 2]

    run_virtual(main())
    assert seen == {"shannon.task.active": 1, "shannon.task.pending": 2}
    assert broken.hook_errors == {"task_queued": 3}


@pytest.mark.parametrize("end", ["completes", "fail_fast", "left_early", "cancelled"])
def test_tasks_a_list_gives_past_its_size_as_the_consumer_extends_it_are_pending_while_they_wait(end: str) -> None:
    """A list the consumer extends while the wave streams it: the wave announced its length at the start, and the
    tasks past it that a worker took were counted nowhere while they waited for a pool (pending read 0 while 3
    waited). Each is now queued as it is taken, as a lazy input's task is; every task is started or skipped once,
    and the gauges are back to 0 however the wave ends."""
    tel = InMemoryTelemetry()
    ledger = Ledger()
    pool = ResourcePool("one", 1)
    seen: dict[str, float] = {}
    quick = asyncio.Event()

    async def hold(i: int) -> None:
        await asyncio.sleep(1.0)
        if end == "fail_fast" and i == 0:
            raise ValueError("boom")

    async def free(i: int) -> None:  # no pool: ends at once, freeing its worker for a task past the size
        await quick.wait()

    tasks: list[Any] = [task(functools.partial(hold, 0), pool=pool)]
    tasks += [functools.partial(free, i) for i in (1, 2, 3)]
    wave = Wave[Any]("grown", max_concurrency=4, fail_fast=end == "fail_fast", hooks=[ledger], **tel.providers)

    async def consume() -> None:
        async with wave.stream(tasks) as stream:
            tasks.extend(task(functools.partial(hold, i), pool=pool) for i in (4, 5, 6))
            quick.set()
            await asyncio.sleep(0.5)  # task 0 holds the pool; 1-3 ended; 4-6 taken by their workers, waiting
            seen.update(_gauges(tel, "grown"))
            if end == "left_early":
                return
            async for _ in stream:
                pass

    async def main() -> None:
        consumer = asyncio.ensure_future(consume())
        if end == "cancelled":
            await asyncio.sleep(0.7)
            consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    run_virtual(main())
    assert seen == {"shannon.task.active": 1, "shannon.task.pending": 3}
    (ledger_wave,) = ledger.waves
    assert ledger_wave.size == 4
    assert ledger_wave.ended
    assert ledger.hook_errors == {}
    assert sorted(ledger_wave.balanced) == list(range(7))
    assert _gauges(tel, "grown") == {"shannon.task.active": 0, "shannon.task.pending": 0}


@pytest.mark.parametrize("batch_size", [None, 1, 2])
@pytest.mark.parametrize("end", ["left", "cancelled"])
def test_the_item_pulled_ahead_to_find_the_inputs_end_is_queued_then_skipped_if_the_wave_ends_first(
    end: str, batch_size: int | None,
) -> None:
    """A consumer leaving (or cancelled) with no task in flight and the input's end not yet found pulls the input's
    next item (so leaving right after the last result cuts nothing short), even with the buffer full or the batch
    run out. The wave ends before a worker takes it: it is closed and counted, queued then skipped as a cancelled
    task: the pending gauge back at 0, every span ended, no coroutine left unawaited."""
    tel = InMemoryTelemetry()
    ledger = Ledger()
    pulled: list[int] = []
    ran: list[int] = []

    async def work(i: int) -> int:
        ran.append(i)
        await asyncio.sleep(0.1)
        return i

    def tasks() -> Iterator[Any]:
        for i in range(4):
            pulled.append(i)
            yield work(i)  # coroutine objects: one never awaited would warn (the suite makes that an error)

    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    wave = Wave[Any]("held", max_concurrency=1, batch_size=batch_size, hooks=[ledger], **tel.providers)

    async def consume(stream: Any) -> None:
        async with stream:
            await asyncio.sleep(0.5)  # task 0 ran; its result fills the buffer of 1; leaving pulls item 1

    async def main() -> Any:
        stream = wave.stream(tasks(), buffer=1)
        consumer = asyncio.ensure_future(consume(stream))
        if end == "cancelled":
            await asyncio.sleep(0.3)
            consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        return stream.report

    report = run_virtual(main())
    assert pulled == [0, 1] and ran == [0]
    assert report.total == 2 and report.counts[Outcome.SUCCESS] == 1 and report.counts[Outcome.CANCELLATION] == 1
    assert report.outcome is Outcome.CANCELLATION
    assert ledger.waves[0].ended and ledger.hook_errors == {}
    assert sorted(ledger.waves[0].balanced) == [0, 1]
    assert _gauges(tel, "held") == {"shannon.task.active": 0, "shannon.task.pending": 0}
    assert spans.open == {}
