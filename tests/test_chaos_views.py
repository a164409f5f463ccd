"""Seeded chaos: do the three views of a wave agree — what the user's code got back, the spans, the metrics?

Each seed draws a wave (0-50 tasks, ``max_concurrency`` 1-8 or none, a task timeout or none, fail-fast or
not; ``run``, ``map``, ``run(raise_errors=True)`` or ``stream``), a stack of up to three policies in any
order (``Retry``, ``CircuitBreaker``, ``Timeout``, ``Fallback``, ``Hedge``, ``Degrade``; lone or in a
``Pipeline``), user functions that return fresh objects, ``None``, large lists or an exception as a value,
raise ``Exception`` s, ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, a custom ``BaseException``,
``StopAsyncIteration``, ``CancelledError`` of their own, sleep, or hang until cancelled; and a cancellation
of the whole wave at a drawn instant. On the virtual-time loop with the real SDK in memory it asserts:

* every call of a user function ended, and no span is left open;
* each result is the very object the function returned or raised (``is``), or a fallback's / degrade's
  own; with no policy, exactly the function's; a ``WaveError`` carries the results' errors themselves;
* a BaseException that left the wave is one the user raised;
* per outcome: task spans == ``shannon.task.outcomes`` == the wave span's counts == the report's counts ==
  the results; each task span's outcome, ``error.type`` and status match its result;
* attempt spans == ``shannon.retry.attempts`` == the times the functions were really called;
* ``shannon.breaker.transitions`` == the ``BreakerTransition`` events a hook heard.

Hunting locally: ``SHANNON_CHAOS_SEEDS=5000 python -m pytest tests/test_chaos_views.py``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import warnings
from collections import Counter
from typing import Any

import pytest
from _metric_total import metric_total
from _open_spans import OpenSpans
from _quiet import quiet_logs  # noqa: F401  (autouse: the shannon_otel logger silenced here)
from _span_attrs import attrs
from _virtual_time import vclock

from shannon_otel import (
    BreakerTransition,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    FallbackError,
    Hedge,
    Hook,
    Outcome,
    Pipeline,
    Policy,
    Retry,
    Served,
    TaskResult,
    Timeout,
    Wave,
    WaveError,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual

SEEDS = int(os.environ.get("SHANNON_CHAOS_SEEDS", "60"))
OUTCOMES = ("success", "failure", "timeout", "cancellation")


class Transitions(Hook):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def breaker_transition(self, event: BreakerTransition) -> None:
        self.seen.append((event.breaker, event.from_state.value, event.to_state.value))


class Custom(BaseException):
    """A BaseException of the user's own."""


KINDS = ["ok", "ok", "ok", "none", "big", "excval", "raise", "raise", "oserr", "timeouterr", "openerr",
         "stopasync", "cancelerr", "hang", "sleep_ok", "sleep_raise", "kbd", "sysexit", "genexit", "custom"]
BASE = {"kbd": KeyboardInterrupt, "sysexit": SystemExit, "genexit": GeneratorExit, "custom": Custom}
RAISES: dict[str, Any] = {
    "raise": ValueError, "sleep_raise": ValueError, "oserr": OSError, "timeouterr": TimeoutError,
    "stopasync": StopAsyncIteration, "cancelerr": asyncio.CancelledError,
    "openerr": lambda message: CircuitOpenError("b1", "open", 1.0), **BASE,
}


class Fn:
    """A user function: its n-th call does ``plan[min(n, len - 1)]``; what it returned and raised is kept."""

    def __init__(self, rng: random.Random, tag: str) -> None:
        self.tag = tag
        self.plan: list[tuple[str, float]] = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(KINDS)
            if kind in BASE and rng.random() > 0.15:  # a wave a BaseException ends early: rarer
                kind = "ok"
            self.plan.append((kind, rng.choice([0.0, 0.3, 1.0, 2.5])))
        self.calls = 0
        self.returned: list[Any] = []
        self.raised: list[BaseException] = []
        self.ended: list[str] = []

    def __call__(self) -> Any:
        n = self.calls
        self.calls += 1
        kind, sleep = self.plan[min(n, len(self.plan) - 1)]
        return self._run(kind, sleep, n)

    async def _run(self, kind: str, sleep: float, n: int) -> Any:
        try:
            await asyncio.sleep(sleep if kind.startswith("sleep") else sleep / 10)
            if kind == "hang":
                await asyncio.get_running_loop().create_future()
            if kind in RAISES:
                self.raised.append(RAISES[kind](f"{self.tag}.{n}"))
                raise self.raised[-1]
        except asyncio.CancelledError as exc:
            self.ended.append("raised" if self.raised and self.raised[-1] is exc else "cancelled")
            raise
        except BaseException:
            self.ended.append("raised")
            raise
        self.ended.append("ok")
        value: Any = {"none": None, "big": list(range(10_000)), "excval": ValueError("a value")}.get(kind, object())
        self.returned.append(value)
        return value


FALLBACK, DEGRADED = object(), object()


async def _fallback(error: Exception) -> object:
    return FALLBACK


def policy(rng: random.Random, tel: InMemoryTelemetry, hook: Hook, breakers: dict[str, CircuitBreaker]) -> Policy:
    kind = rng.choice(["retry", "breaker", "timeout", "fallback", "hedge", "degrade"])
    if kind == "retry":
        on: Any = rng.choice([Exception, (ValueError,), (ValueError, CircuitOpenError)])
        return Retry(attempts=rng.randint(1, 4), initial=rng.choice([0.0, 0.1]), jitter="none", on=on, clock=vclock)
    if kind == "breaker":
        name = rng.choice(["b1", "b2"])
        if name not in breakers:
            breakers[name] = CircuitBreaker(name, failure_threshold=rng.randint(1, 3),
                                            reset_timeout=rng.choice([0.5, 5.0]), clock=vclock, hooks=[hook],
                                            **tel.providers)
        return breakers[name]
    if kind == "timeout":  # the tiny offsets: two timers of one stack never fire at the same instant
        return Timeout(rng.choice([0.5, 1.2, 3.0]) + rng.random() / 100, clock=vclock)
    if kind == "fallback":
        return Fallback(_fallback, clock=vclock)
    if kind == "hedge":
        return Hedge(rng.choice([0.2, 0.7]) + rng.random() / 100, attempts=rng.randint(1, 3), clock=vclock)
    return Degrade(default=DEGRADED, clock=vclock)


def chaos(seed: int) -> None:
    rng = random.Random(seed)
    tel = InMemoryTelemetry()
    opened = OpenSpans()
    tel.tracer_provider.add_span_processor(opened)
    hook = Transitions()
    breakers: dict[str, CircuitBreaker] = {}
    n = rng.randint(0, 50)
    fns = [Fn(rng, f"t{i}") for i in range(n)]
    stack_rng = random.Random(rng.random())
    size = rng.randint(0, 3)
    concurrency = rng.choice([None, 1, 2, 3, 4, 5, 6, 7, 8])
    task_timeout = rng.choice([None, None, 0.8, 2.0, 4.0])
    fail_fast = rng.random() < 0.4
    cancel_at = rng.choice([None, None, None, 0.0, 0.05, 0.5, 1.3, 3.3])
    entry = rng.choice(["run", "run", "map", "raise", "stream"])
    chain: list[Policy] = []
    out: dict[str, Any] = {}

    async def main() -> None:
        for _ in range(size):  # built on the loop: a breaker reads its clock when made
            p = policy(stack_rng, tel, hook, breakers)
            if p not in chain:  # a pipeline refuses one breaker listed twice
                chain.append(p)
        lone = len(chain) == 1 and stack_rng.random() < 0.5
        wrapped = chain[0] if lone else Pipeline(*chain, name="op", hooks=[hook], clock=vclock) if chain else None
        wave: Wave[Any] = Wave("w", max_concurrency=concurrency, task_timeout=task_timeout, fail_fast=fail_fast,
                               policy=wrapped, clock=vclock, hooks=[hook], **tel.providers)

        async def go() -> list[TaskResult[Any]]:
            try:
                return await wave_results()
            except (KeyboardInterrupt, SystemExit) as exc:  # kept in this task: asyncio would raise it out of the loop
                out["raised"] = exc
                return []

        async def wave_results() -> list[TaskResult[Any]]:
            if entry == "run":
                result = await wave.run(fns)
            elif entry == "map":
                result = await wave.map(lambda f: f(), fns)
            elif entry == "raise":
                try:
                    result = await wave.run(fns, raise_errors=True)
                except WaveError as exc:
                    out["wave_error"] = exc
                    result = exc.result
            else:
                async with wave.stream(fns) as results:
                    return sorted([r async for r in results], key=lambda r: r.index)
            out["counts"] = {o.value: c for o, c in result.report.counts.items() if c}
            return list(result.results)

        running = asyncio.create_task(go())
        loop = asyncio.get_running_loop()

        def stop(why: str) -> None:
            if not running.done():
                out[why] = True
                running.cancel()

        # a hung function with nothing to time it out: the caller gives up at 500 s
        loop.call_later(500 if cancel_at is None else cancel_at, stop, "watchdog" if cancel_at is None else "cut")
        try:
            results = await running
            if "raised" not in out:
                out["results"] = results
        except BaseException as exc:  # whatever left the wave is checked below
            out["raised"] = exc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run_virtual(main())
        except (KeyboardInterrupt, SystemExit) as exc:  # a task's out of the event loop: checked below
            out["loop_raised"] = exc
        gc.collect()
    where = f"seed {seed}: n={n} {entry} concurrency={concurrency} timeout={task_timeout} fail_fast={fail_fast} " \
            f"cancel_at={cancel_at} chain={[type(p).__name__ for p in chain]}"
    assert not [w for w in caught if "never awaited" in str(w.message)], where
    assert not opened.open, (where, sorted(opened.open.values()))
    for f in fns:
        assert len(f.ended) == f.calls, (where, f.tag, f.plan, f.ended)
    spans = tel.spans()
    tasks = [s for s in spans if s.name == "task w"]
    (wave_span,) = tel.spans("wave w")
    by_span = Counter(attrs(s)["shannon.task.outcome"] for s in tasks)
    by_metric = +Counter({o: metric_total(tel, "shannon.task.outcomes", **{"shannon.task.outcome": o})
                          for o in OUTCOMES})
    on_wave = +Counter({o: attrs(wave_span).get(f"shannon.wave.tasks.{o}", 0) for o in OUTCOMES})
    assert on_wave == by_metric, (where, on_wave, by_metric)
    assert sum(by_metric.values()) == n, (where, by_metric)
    for o in ("success", "failure", "timeout"):  # a task cancelled before it started has no span
        assert by_span[o] == by_metric[o], (where, o, by_span, by_metric)
    results: list[TaskResult[Any]] | None = out.get("results")
    if results is not None:
        assert len(results) == n, where
        assert +Counter(r.outcome.value for r in results) == by_metric, (where, by_metric)
        if "counts" in out:
            assert out["counts"] == dict(by_metric), (where, out["counts"], by_metric)
        task_spans = {attrs(s)["shannon.task.index"]: s for s in tasks}
        for f, r in zip(fns, results, strict=True):
            span = task_spans.get(r.index)
            if span is None:
                assert r.outcome is Outcome.CANCELLATION, (where, r)
            else:
                a = attrs(span)
                assert a["shannon.task.outcome"] == r.outcome.value, (where, a, r)
                failed = r.outcome in (Outcome.FAILURE, Outcome.TIMEOUT)
                assert (span.status.status_code.name == "ERROR") == failed, (where, a, r)
                if failed and r.error is not None:
                    assert str(a.get("error.type", "")).endswith(type(r.error).__qualname__), (where, a, r)
            if r.outcome is Outcome.SUCCESS:
                value = r.value
                while isinstance(value, Served):
                    value = value.value
                produced = any(value is v for v in f.returned)
                assert produced or (chain and value in (FALLBACK, DEGRADED)), (where, f.tag, f.plan)
                if not chain:
                    assert len(f.returned) == 1 and r.value is f.returned[0], (where, f.tag)
            elif r.outcome is Outcome.FAILURE and r.error is not None:
                if not chain:
                    assert r.error is f.raised[-1], (where, f.tag, f.plan)
                else:
                    assert any(r.error is e for e in f.raised) or isinstance(
                        r.error, CircuitOpenError | FallbackError | TimeoutError | TypeError), (where, r.error)
        if "wave_error" in out:
            errors = [r.error for r in results if r.outcome in (Outcome.FAILURE, Outcome.TIMEOUT)]
            assert [id(e) for e in out["wave_error"].exceptions] == [id(e) for e in errors], where
    called = sum(f.calls for f in fns)
    if chain:
        attempt_spans = [s for s in spans if s.name.startswith(("attempt ", "hedge "))]
        assert len(attempt_spans) == metric_total(tel, "shannon.retry.attempts") == called, (where, len(attempt_spans))
    else:
        assert sum(by_span.values()) == called, (where, by_span, called)
    assert metric_total(tel, "shannon.breaker.transitions") == len(hook.seen), (where, hook.seen)
    # Every task of ours (a worker, a hedged attempt, a compensation) hands a KeyboardInterrupt / SystemExit to the
    # caller's task: none stops the event loop (the caller here does not raise it on).
    assert "loop_raised" not in out, (where, out.get("loop_raised"))
    raised = out.get("raised")
    if raised is not None and not isinstance(raised, asyncio.CancelledError):
        leaves = list(raised.exceptions) if isinstance(raised, BaseExceptionGroup) else [raised]
        users = [e for f in fns for e in f.raised]
        for leaf in leaves:
            assert any(leaf is e for e in users), (where, leaf)
    if isinstance(raised, asyncio.CancelledError):  # only when the caller (or the watchdog) cancelled it
        assert out.get("cut") or out.get("watchdog"), (where, raised)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_the_users_results_the_spans_and_the_metrics_agree_under_chaos(seed: int) -> None:
    chaos(seed)


def test_a_lone_hedge_in_a_wave_whose_attempt_raises_system_exit_hands_it_to_the_waves_caller() -> None:
    """Found by this probe (a lone ``Hedge`` in a wave, a task raising SystemExit): the hedged attempt's task
    raised it out of the event loop itself, and the wave's caller, cancelled as the loop shut down, saw a
    CancelledError where without the hedge it sees the user's SystemExit (which reaches the caller through the
    wave, and the caller here raises it on)."""
    tel = InMemoryTelemetry()
    opened = OpenSpans()
    tel.tracer_provider.add_span_processor(opened)
    raised: list[BaseException] = []
    caller_saw: list[BaseException] = []

    async def bad() -> None:
        await asyncio.sleep(0.25)
        raised.append(SystemExit("user"))
        raise raised[-1]

    async def slow() -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        wave: Wave[Any] = Wave("w", max_concurrency=4, policy=Hedge(0.2, attempts=1), clock=vclock,
                               **tel.providers)
        try:
            await wave.run([bad, slow, slow])
        except BaseException as exc:
            caller_saw.append(exc)
            raise

    with pytest.raises(SystemExit) as stopped:  # the caller raises it on
        run_virtual(main())
    assert stopped.value is raised[0]
    assert caller_saw == raised
    assert not opened.open
    assert attrs(tel.span("wave w")).get("shannon.wave.tasks.failure") == 1


def test_a_hedge_torn_down_before_its_timer_ran_leaves_no_coroutine_unawaited() -> None:
    """Found by this probe (a task's SystemExit stopped the loop while a hedge waited): the hedge made its
    timer's ``sleep(delay)`` coroutine before the timer task ran; the loop's shutdown cancelled that task before
    its first step, and the coroutine was never awaited ("coroutine 'sleep' was never awaited"). It is made
    inside the task now, as an attempt's call already was."""

    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    loop = asyncio.new_event_loop()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call = loop.create_task(Hedge(1.0, attempts=2, instrument=False).call(slow))
            loop.call_soon(loop.stop)
            loop.run_forever()  # one step of the hedge: its attempt and its timer made, neither run yet
            tasks = asyncio.all_tasks(loop)
            for t in tasks:  # what asyncio.run does when the loop stops (a KeyboardInterrupt, a SystemExit)
                t.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            gc.collect()
    finally:
        loop.close()
    assert call.cancelled()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]
