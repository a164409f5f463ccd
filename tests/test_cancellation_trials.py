"""Randomized cancellation trials (issue 11 deliver 4), seeded and on the virtual-time loop.

Each trial builds a workload of one kind (a wave, a retry loop, a hedge, a fallback, a breaker
probe, a saga) with random durations and failures, cancels it at a random virtual time, and checks
the promises: no task left running, no span started and never ended, every task that completed
has its result delivered to the hooks, no breaker stuck half-open, every completed saga step kept
or compensated. Deterministic: ``random.Random(seed)`` and virtual time, no wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from _open_spans import OpenSpans

import shannon_otel as so
from shannon_otel._events import Hook, TaskFinished, WaveObserver, WaveStarted
from shannon_otel.testing import InMemoryTelemetry, run_virtual

SEEDS = range(50)  # 4 kinds x 50 = 200 trials, as in the issue


class Finished(Hook):
    """Every task result the hooks are handed."""

    def __init__(self) -> None:
        self.values: dict[int, Any] = {}

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        hook = self

        class Observer(WaveObserver):
            def task_finished(self, token: Any, event: TaskFinished) -> None:
                if event.outcome is so.Outcome.SUCCESS:
                    hook.values[event.index] = event.value

        return Observer()


def _telemetry() -> tuple[InMemoryTelemetry, OpenSpans]:
    tel, spans = InMemoryTelemetry(), OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    return tel, spans


async def _cancel_after(rng: random.Random, horizon: float, work: Any) -> None:
    """Run ``work`` and cancel it at a random virtual time; then no other task may be left."""
    task = asyncio.ensure_future(work)
    await asyncio.sleep(rng.uniform(0.0, horizon))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    for _ in range(3):
        await asyncio.sleep(0)
    orphans = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert orphans == [], orphans


def _work(rng: random.Random, failure_rate: float = 0.3) -> Any:
    duration, fails = rng.uniform(0.01, 1.0), rng.random() < failure_rate

    async def run() -> float:
        await asyncio.sleep(duration)
        if fails:
            raise ConnectionError("flaky")
        return duration
    return run


@pytest.mark.parametrize("seed", SEEDS)
def test_a_cancelled_wave(seed: int) -> None:
    rng = random.Random(seed)
    tel, spans = _telemetry()
    finished = Finished()
    completed: dict[int, float] = {}
    wave: so.Wave[float] = so.Wave("w", max_concurrency=rng.randint(1, 6), hooks=(finished,), **tel.providers)

    def tracked(i: int) -> Any:
        inner = _work(rng)

        async def run() -> float:
            value: float = await inner()
            completed[i] = value
            return value
        return run

    tasks = [tracked(i) for i in range(rng.randint(1, 20))]
    policy = so.Retry(attempts=2, initial=0.05, jitter="none", **tel.providers)
    if rng.random() < 0.5:
        wave = so.Wave("w", max_concurrency=4, policy=policy, hooks=(finished,), **tel.providers)
    run_virtual(_cancel_after(rng, 3.0, wave.run(tasks)))
    assert spans.open == {}
    assert finished.values == completed  # every result a task completed reached the hooks


@pytest.mark.parametrize("seed", SEEDS)
def test_a_cancelled_retry_hedge_or_fallback(seed: int) -> None:
    rng = random.Random(seed)
    tel, spans = _telemetry()
    kind = ("retry", "hedge", "fallback", "pipeline")[seed % 4]
    policy: Any
    if kind == "retry":
        policy = so.Retry(attempts=5, initial=0.1, name="r", **tel.providers)
    elif kind == "hedge":
        policy = so.Hedge(rng.uniform(0.01, 0.3), attempts=3, name="h", **tel.providers)
    elif kind == "fallback":
        async def slow_fallback(exc: Exception) -> float:
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            return 0.0
        policy = so.Fallback(slow_fallback, name="f", **tel.providers)
    else:
        policy = so.Pipeline(so.Retry(attempts=3, initial=0.05), so.Hedge(0.1, attempts=2), so.Timeout(0.5),
                             name="p", **tel.providers)
    work = _work(rng, failure_rate=0.7)
    run_virtual(_cancel_after(rng, 2.0, policy.call(work)))
    assert spans.open == {}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_cancelled_half_open_probe_never_leaves_the_breaker_stuck(seed: int) -> None:
    rng = random.Random(seed)
    tel, spans = _telemetry()

    async def main() -> None:
        breaker = so.CircuitBreaker("b", failure_threshold=1, reset_timeout=1.0, half_open_probes=rng.randint(1, 3),
                                    success_threshold=1, clock=asyncio.get_running_loop().time, **tel.providers)
        with contextlib.suppress(ConnectionError):
            await breaker.call(_failing)
        assert breaker.state is so.BreakerState.OPEN
        await asyncio.sleep(1.0)  # the reset timeout: the next calls are probes
        probes = [asyncio.ensure_future(breaker.call(_work(rng, failure_rate=0.0))) for _ in range(rng.randint(1, 4))]
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        for p in probes:
            p.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        # Whatever was cancelled, a probe slot is free again (or the breaker closed): a call gets through.
        assert await breaker.call(_value) == "ok"
        assert breaker.state is so.BreakerState.CLOSED  # type: ignore[comparison-overlap]

    run_virtual(main())
    assert spans.open == {}


async def _failing() -> None:
    raise ConnectionError("down")


async def _value() -> str:
    return "ok"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_cancelled_saga_keeps_or_compensates_every_completed_step(seed: int) -> None:
    rng = random.Random(seed)
    tel, spans = _telemetry()
    done: list[str] = []
    undone: list[str] = []
    holder: list[Any] = []
    saga = so.Saga("s", **tel.providers)

    def step(name: str) -> tuple[Any, Any]:
        duration, undo_duration = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)

        async def act() -> str:
            await asyncio.sleep(duration)
            done.append(name)
            return name

        async def undo(value: str) -> None:
            await asyncio.sleep(undo_duration)
            undone.append(value)
        return act, undo

    steps = [step(f"s{k}") for k in range(rng.randint(1, 5))]
    fail_at = rng.randint(0, len(steps))

    async def body() -> None:
        async with saga.begin() as tx:
            holder.append(tx)
            for k, (act, undo) in enumerate(steps):
                if k == fail_at:
                    raise ValueError("step failed")
                await tx.step(f"s{k}", act, compensate=undo)

    run_virtual(_cancel_after(rng, 2.0, body()))
    assert spans.open == {}
    result = holder[0].result
    assert result is not None
    if result.outcome is so.Outcome.SUCCESS:
        assert undone == []
    else:  # rolled back: every completed step was compensated, newest first, none cut off
        assert undone == list(reversed(done)) and result.uncompensated == ()
