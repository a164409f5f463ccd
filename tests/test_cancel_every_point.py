"""Cancellation at every suspension point (round 8 of the adversarial probes).

The randomized trials (test_cancellation_trials.py) cancel at random virtual times; here each workload
is first run to its end on a loop that counts its iterations (N), then run again N + 1 times, its caller
cancelled (``task.cancel(msg)``) before iteration k = 1 .. N + 1: every point where anything in it is
suspended, including the instants where two things happen at once (a timeout firing, a hedge's winner,
a compensation starting). For each k the promises hold:

- a cancellation that was delivered reaches the caller as ``CancelledError`` (never a result, never
  another error) with the message of its ``cancel(msg)``, and the caller's ``cancelling()`` counts exactly
  the requests made (a policy that takes its own timeout's cancellation back never takes the caller's;
  nothing is left counted);
- a cancellation that arrived after the end changes nothing: the same outcome as the uncancelled run;
- no span started and never ended, no task left running (not even for a moment after the caller's end);
- a protected call is counted once (``shannon.calls``) as a cancellation; a wave counts each task once
  and its live gauges return to 0, its pool slots are given back; a breaker is never stuck half-open; a
  saga rolls back every completed step, newest first, or reports it as not compensated.

Deterministic: virtual time and a counted loop, no wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from _open_spans import OpenSpans

import shannon_otel as so
from shannon_otel.testing import InMemoryTelemetry, VirtualTimeLoop, run_virtual

Work = Callable[[], Awaitable[Any]]
Check = Callable[["Probe"], list[str]]


class CountedLoop(VirtualTimeLoop):
    """The virtual-time loop, counting its iterations; ``at`` runs a callback before iteration k."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.at: tuple[int, Callable[[], None]] | None = None

    def _run_once(self) -> None:
        self.steps += 1
        if self.at is not None and self.steps == self.at[0]:
            callback, self.at = self.at[1], None
            callback()
        super()._run_once()  # type: ignore[misc]


@dataclass
class Probe:
    """One run of a workload, cancelled before loop iteration ``k`` (never, for ``None``)."""

    tel: InMemoryTelemetry
    state: dict[str, Any] = field(default_factory=dict)  # what the workload keeps for its own check
    requests: int = 0  # cancellation requests that found the caller running
    # Another request (a timeout's) was being delivered already: what the caller awaited was cancelled, its
    # wake-up queued. asyncio raises that CancelledError, and the caller's cancel(msg) joins it, counted
    # but without its message: nothing the library could keep.
    joined: bool = False
    outcome: tuple[str, Any] = ("none", None)  # ("result", value) | ("error", exc) | ("cancelled", args)
    cancelling: int | None = None  # the caller's cancelling() as its work ended
    steps: int = 0
    open: dict[int, str] = field(default_factory=dict)
    orphans: list[asyncio.Task[Any]] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # tasks still running as the caller's work ended


def _probe(make: Callable[[Probe], Work], k: int | None, *, twice: bool) -> Probe:
    tel, spans = InMemoryTelemetry(), OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    probe = Probe(tel)
    work = make(probe)
    loop = CountedLoop()

    async def main() -> None:
        async def caller() -> Any:
            try:
                return await work()
            finally:
                task = asyncio.current_task()
                assert task is not None
                probe.cancelling = task.cancelling()

        task = asyncio.ensure_future(caller())
        begin = loop.steps

        def cancel() -> None:
            waiter = getattr(task, "_fut_waiter", None)  # asyncio's own: no public way to ask
            probe.joined = waiter is not None and waiter.cancelled()
            probe.requests += task.cancel("probe")
            if twice:  # a second request before the first is delivered
                probe.requests += task.cancel("probe")

        if k is not None:
            loop.at = (begin + k, cancel)
        try:
            probe.outcome = ("result", await task)
        except asyncio.CancelledError as exc:
            probe.outcome = ("cancelled", exc.args)
        except BaseException as exc:  # recorded, compared by the checks
            probe.outcome = ("error", exc)
        probe.steps = loop.steps - begin
        probe.running = sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks()  # type: ignore[union-attr]
                               if t is not asyncio.current_task() and not t.done())
        loop.at = None
        for _ in range(3):
            await asyncio.sleep(0)
        probe.orphans = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for orphan in probe.orphans:
            orphan.cancel()
        await asyncio.gather(*probe.orphans, return_exceptions=True)

    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        runner.run(main())
    probe.open = dict(spans.open)
    tel.shutdown()
    return probe


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "error" or type(a[1]) is not type(b[1]):
        return type(a[1]) is type(b[1])
    return bool(_shape(a[1]) == _shape(b[1]))


def _shape(result: Any) -> Any:
    """What a run returned, without its timings: a wave's outcomes and values, a Served's value."""
    if isinstance(result, so.WaveResult):
        return [(r.outcome, r.value) for r in result.results]
    return getattr(result, "value", result)


def every_point(
    make: Callable[[Probe], Work], check: Check | None = None, *, twice: bool = False,
    also: Callable[[tuple[str, Any]], bool] = lambda outcome: False,
) -> list[str]:
    """Cancel ``make``'s work at every loop iteration it takes; the promises broken, one line each.

    ``also``: an outcome other than the cancellation that a cancelled caller may see."""
    base = _probe(make, None, twice=twice)
    problems = [f"uncancelled: open spans {base.open}, orphans {base.orphans}"] if base.open or base.orphans else []
    for k in range(1, base.steps + 2):
        probe = _probe(make, k, twice=twice)
        found: list[str] = []
        if probe.requests:
            if probe.outcome[0] != "cancelled" and not also(probe.outcome):
                found.append(f"cancellation not raised: {probe.outcome}")
            elif probe.outcome[0] == "cancelled" and not probe.joined and probe.outcome[1] != ("probe",):
                found.append(f"the caller's cancel message lost: {probe.outcome[1]}")
        elif not _same(probe.outcome, base.outcome):
            found.append(f"a cancellation after the end changed the outcome: {probe.outcome} vs {base.outcome}")
        if probe.cancelling is not None and probe.cancelling != probe.requests:
            found.append(f"cancelling() {probe.cancelling} after {probe.requests} requests")
        if probe.open:
            found.append(f"spans never ended: {sorted(probe.open.values())}")
        if probe.running:
            found.append(f"tasks still running as the caller's work ended: {probe.running}")
        if probe.orphans:
            found.append(f"tasks left running: {probe.orphans}")
        if check is not None:
            found += check(probe)
        if found:
            problems.append(f"k={k}/{base.steps}: " + "; ".join(found))
    return problems


# ---------------------------------------------------------------------------------------------- workloads
def _flaky(failures: int, duration: float) -> Work:
    calls = [0]

    async def fn() -> str:
        calls[0] += 1
        await asyncio.sleep(duration)
        if calls[0] <= failures:
            raise ConnectionError("flaky")
        return "ok"
    return fn


async def _slow_fallback(exc: Exception) -> str:
    await asyncio.sleep(0.5)
    return "fallback"


async def _cheaper() -> str:
    await asyncio.sleep(0.4)
    return "cheaper"


POLICIES: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[], Work]]] = {
    "retry in its backoff sleep": (
        lambda p: so.Retry(attempts=3, initial=0.5, jitter="none", name="op", **p), lambda: _flaky(2, 0.3)),
    "timeout": (lambda p: so.Timeout(0.5, name="op", **p), lambda: _flaky(0, 1.0)),
    "fallback while the fallback runs": (
        lambda p: so.Fallback(_slow_fallback, name="op", **p), lambda: _flaky(9, 0.3)),
    "hedge while three attempts run": (
        lambda p: so.Hedge(0.2, attempts=3, name="op", **p), lambda: _flaky(0, 1.0)),
    "degrade": (lambda p: so.Degrade(default="d", name="op", **p), lambda: _flaky(0, 0.3)),
    "degrade serving cheaper after a timeout": (
        lambda p: so.Pipeline(so.Degrade(cheaper=_cheaper), so.Timeout(0.2), name="op", **p), lambda: _flaky(0, 1.0)),
    "retry of timeouts": (
        lambda p: so.Pipeline(so.Retry(attempts=3, initial=0.1, jitter="none"), so.Timeout(0.5), name="op", **p),
        lambda: _flaky(0, 1.0)),
    "timeout around retries": (
        lambda p: so.Pipeline(so.Timeout(1.0), so.Retry(attempts=5, initial=0.1, jitter="none"), name="op", **p),
        lambda: _flaky(9, 0.3)),
    "fallback, retry, hedge, timeout": (
        lambda p: so.Pipeline(so.Fallback(_slow_fallback), so.Retry(attempts=2, initial=0.1, jitter="none"),
                              so.Hedge(0.1), so.Timeout(0.4), name="op", **p),
        lambda: _flaky(0, 1.0)),
}


def _counted_once(probe: Probe) -> list[str]:
    if not probe.tel.spans() and not probe.open:
        return []  # cancelled before its first step: the call never began
    points = [(dict(p.attributes), p.value) for p in probe.tel.points("shannon.calls") if p.value]
    if sum(value for _, value in points) != 1:
        return [f"shannon.calls counted {points}"]
    if probe.outcome[0] == "cancelled" and points[0][0].get("shannon.call.outcome") != "cancellation":
        return [f"a cancelled call counted as {points}"]
    return []


@pytest.mark.parametrize("twice", [False, True], ids=["once", "twice"])
@pytest.mark.parametrize("kind", list(POLICIES))
def test_a_policy_cancelled_at_every_point(kind: str, twice: bool) -> None:
    policy_for, fn_for = POLICIES[kind]

    def make(probe: Probe) -> Work:
        policy, fn = policy_for(probe.tel.providers), fn_for()
        return lambda: policy.call(fn)

    assert every_point(make, _counted_once, twice=twice) == []


def _served_layers(value: Any) -> int:
    return int(value.degraded) + _served_layers(value.value) if isinstance(value, so.Served) else 0


def _degraded_only_if_served(probe: Probe) -> list[str]:
    """A Degrade inside a Hedge counts a degradation only for a degraded value the caller got: none when the
    caller's cancellation replaced the winner's value, none for a loser's."""
    served = _served_layers(probe.outcome[1]) if probe.outcome[0] == "result" else 0
    counted = sum(p.value for p in probe.tel.points("shannon.degradations"))
    events = sum(1 for s in probe.tel.spans("op") for e in s.events if e.name == "shannon.degraded")
    return [] if counted == events == served else [f"{counted} degradations, {events} events, {served} served"]


HEDGED_DEGRADES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "hedge of a degrade": lambda p: so.Pipeline(
        so.Hedge(0.2, attempts=2), so.Degrade(default="d", on=ConnectionError), name="op", **p),
    "hedge in a hedge of a degrade serving cheaper": lambda p: so.Pipeline(
        so.Hedge(0.0, attempts=1), so.Hedge(0.1, attempts=2), so.Degrade(cheaper=_cheaper, on=ConnectionError),
        name="op", **p),
    "hedge of a degrade of retries": lambda p: so.Pipeline(
        so.Hedge(0.1, attempts=2), so.Degrade(default="d", on=ConnectionError),
        so.Retry(attempts=2, initial=0.1, jitter="none"), name="op", **p),
}


@pytest.mark.parametrize("kind", list(HEDGED_DEGRADES))
def test_a_degrade_in_a_hedge_cancelled_at_every_point_counts_only_what_the_caller_got(kind: str) -> None:
    """Cancelled in the loop step an attempt's Degrade served (its task done, the hedge not yet woken), the caller
    gets the cancellation: before s27-truth the degradation had been counted as the attempt served it."""

    def make(probe: Probe) -> Work:
        policy = HEDGED_DEGRADES[kind](probe.tel.providers)
        fn = _flaky(9, 0.3)
        return lambda: policy.call(fn)

    assert every_point(make, _degraded_only_if_served) == []


N = 4


def _wave_task(i: int, fail: bool) -> Work:
    async def run() -> int:
        await asyncio.sleep(0.1 * (i + 1))
        if fail and i == 1:
            raise ConnectionError("task 1")
        return i
    return run


WAVES: dict[str, dict[str, Any]] = {
    "concurrency 2": {"max_concurrency": 2},
    "fail-fast": {"max_concurrency": 2, "fail_fast": True},
    "rate limit": {"max_concurrency": 3, "rate_limit": 10.0},
    "task timeout, fail-fast": {"max_concurrency": 2, "task_timeout": 0.25, "fail_fast": True},
    "batches": {"max_concurrency": 2, "batch_size": 2},
    "retry of timeouts per task": {
        "max_concurrency": 2, "task_timeout": 0.35,
        "policy": so.Pipeline(so.Retry(attempts=2, initial=0.05, jitter="none"), so.Timeout(0.15)),
    },
}


def _wave_checks(probe: Probe) -> list[str]:
    tel, found = probe.tel, []
    if not tel.spans() and not probe.open:
        return []  # cancelled before its first step
    outcomes = tel.points("shannon.task.outcomes")
    if sum(p.value for p in outcomes) != N:
        found.append(f"tasks counted {[(dict(p.attributes), p.value) for p in outcomes]}")
    left = {live: sum(p.value for p in tel.points(live)) for live in ("shannon.task.active", "shannon.task.pending")}
    found += [f"{live} left at {value}" for live, value in left.items() if value]
    if sum(p.count for p in tel.points("shannon.wave.duration")) != 1:
        found.append("the wave not recorded once")
    if probe.state["pool"].in_use:
        found.append(f"pool slots kept: {probe.state['pool'].in_use}")
    return found


@pytest.mark.parametrize("form", ["run", "map", "stream", "stream left early", "stream left at once"])
@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failing"])
@pytest.mark.parametrize("config", list(WAVES))
def test_a_wave_cancelled_at_every_point(config: str, fail: bool, form: str) -> None:
    def make(probe: Probe) -> Work:
        wave = so.Wave[int]("w", **WAVES[config], **probe.tel.providers)
        pool = probe.state["pool"] = so.ResourcePool("p", 1)
        tasks = [so.task(_wave_task(i, fail), pool=pool) for i in range(N)]
        if form == "run":
            return lambda: wave.run(tasks)
        if form == "map":
            async def mapped(i: int) -> int:
                await pool.acquire()  # the map form takes no TaskSpec: the pool held by hand
                try:
                    value: int = await _wave_task(i, fail)()
                    return value
                finally:
                    pool.release()
            return lambda: wave.map(mapped, range(N))

        async def streamed() -> list[int | None]:
            values: list[int | None] = []
            async with wave.stream(tasks) as results:
                if form == "stream left at once":
                    return values
                async for result in results:
                    values.append(result.value)
                    if form == "stream left early":
                        break
            return values
        return streamed

    assert every_point(make, _wave_checks) == []


# ------------------------------------------------------------------------------------------- sagas, breakers
@pytest.mark.parametrize("timeout", [None, 0.35], ids=["alone", "under-a-timeout"])
@pytest.mark.parametrize("concurrent", [False, True], ids=["sequential", "gathered"])
@pytest.mark.parametrize("fail_at", [None, 1, 3], ids=["commits", "fails-at-1", "fails-at-3"])
def test_a_saga_cancelled_at_every_point_rolls_back_truthfully(
    fail_at: int | None, concurrent: bool, timeout: float | None,
) -> None:
    def make(probe: Probe) -> Work:
        saga = so.Saga("s", **probe.tel.providers)
        done: list[str] = probe.state.setdefault("done", [])
        undone: list[str] = probe.state.setdefault("undone", [])

        def step(k: int) -> tuple[Work, Callable[[str], Awaitable[None]]]:
            async def act() -> str:
                await asyncio.sleep(0.1 * (k + 1))
                done.append(f"s{k}")
                return f"s{k}"

            async def undo(value: str) -> None:
                await asyncio.sleep(0.15)
                undone.append(value)
            return act, undo

        steps = [step(k) for k in range(3)]

        async def body() -> str:
            async with saga.begin() as tx:
                probe.state["tx"] = tx
                if concurrent:
                    await asyncio.gather(*(tx.step(f"s{k}", a, compensate=u) for k, (a, u) in enumerate(steps)))
                else:
                    for k, (act, undo) in enumerate(steps):
                        if k == fail_at:
                            raise ValueError("step failed")
                        await tx.step(f"s{k}", act, compensate=undo)
                if concurrent and fail_at is not None:
                    raise ValueError("after the steps")
            return "committed"
        if timeout is None:
            return body
        bounded = so.Timeout(timeout, **probe.tel.providers)
        return lambda: bounded.call(body)

    def check(probe: Probe) -> list[str]:
        tx = probe.state.get("tx")
        if tx is None:
            return []
        if tx.result is None:
            return ["the saga has no result"]
        done, undone = probe.state["done"], probe.state["undone"]
        if tx.result.outcome is so.Outcome.SUCCESS:
            return [f"committed yet compensated {undone}"] if undone else []
        if undone != list(reversed(done)) or tx.result.uncompensated:
            return [f"done {done}, compensated {undone}, reported not compensated {tx.result.uncompensated}"]
        return []

    assert every_point(make, check) == []


@pytest.mark.parametrize("stack", ["alone", "retry-breaker-timeout", "breaker-hedge"])
def test_a_cancelled_half_open_probe_at_every_point_never_leaves_the_breaker_stuck(stack: str) -> None:
    def make(probe: Probe) -> Work:
        def clock() -> float:
            try:
                return asyncio.get_running_loop().time()
            except RuntimeError:  # read once at construction, before the loop runs
                return 0.0

        breaker = probe.state["breaker"] = so.CircuitBreaker(
            "b", failure_threshold=1, reset_timeout=1.0, clock=clock, **probe.tel.providers,
        )
        protected: Any = {
            "alone": breaker,
            "retry-breaker-timeout": so.Pipeline(so.Retry(attempts=2, initial=0.1, jitter="none"), breaker,
                                                 so.Timeout(0.5), name="op", **probe.tel.providers),
            "breaker-hedge": so.Pipeline(breaker, so.Hedge(0.1), name="op", **probe.tel.providers),
        }[stack]

        async def down() -> None:
            raise ConnectionError("down")

        async def work() -> str:
            with contextlib.suppress(ConnectionError):
                await breaker.call(down)
            await asyncio.sleep(1.0)  # the reset timeout: the next call is the half-open probe
            result: str = await protected.call(_flaky(0, 0.3))
            return result
        return work

    def check(probe: Probe) -> list[str]:
        breaker = probe.state["breaker"]
        if breaker.state is not so.BreakerState.HALF_OPEN:
            return []

        async def ok() -> str:
            return "ok"
        try:  # a probe slot is free again: the next call is let through
            run_virtual(breaker.call(ok))
        except so.CircuitOpenError:
            return ["breaker stuck half-open"]
        return []

    assert every_point(make, check) == []


# ----------------------------------------------------------------------- a task's BaseException, every point
class Stop(BaseException):
    """A custom BaseException (a workflow's "stop everything"): it leaves the wave in a BaseExceptionGroup."""


def test_a_wave_a_task_stopped_with_a_base_exception_leaves_the_callers_cancellation_count_as_it_was() -> None:
    """The wave's TaskGroup cancels the caller to abort when a worker raises; before Python 3.13 it took that
    request back only when it came before the group's exit began (CPython gh-116720). The caller, waiting
    in that exit, kept cancelling() == 1 after the wave raised: its next Timeout around a saga then found
    one request more than the expired timeouts, and the saga cut off by it was reported as cancelled."""
    tel = InMemoryTelemetry()

    async def main() -> int:
        wave = so.Wave[None]("w", **tel.providers)

        async def ok() -> None:
            await asyncio.sleep(1.0)

        async def stop() -> None:
            await asyncio.sleep(0.1)
            raise Stop

        with pytest.raises(BaseExceptionGroup) as caught:
            await wave.run([ok, stop])
        assert [type(e) for e in caught.value.exceptions] == [Stop]
        task = asyncio.current_task()
        assert task is not None
        left = task.cancelling()

        saga = so.Saga("s", **tel.providers)

        async def body() -> None:
            async with saga.begin() as tx:
                await tx.step("slow", ok)
        with pytest.raises(TimeoutError):
            await so.Timeout(0.1, **tel.providers).call(body)
        return left

    assert run_virtual(main()) == 0
    assert tel.span("saga s").attributes["shannon.saga.outcome"] == "timeout"  # type: ignore[index]


def test_a_wave_a_task_stopped_with_a_base_exception_at_every_cancellation_point() -> None:
    """Cancelled at each point too: the caller's requests stay counted, the group's own is taken back once."""

    def make(probe: Probe) -> Work:
        wave = so.Wave[int]("w", max_concurrency=2, **probe.tel.providers)

        def one(i: int) -> Work:
            async def run() -> int:
                await asyncio.sleep(0.1 * (i + 1))
                if i == 1:
                    raise Stop
                return i
            return run
        return lambda: wave.run([one(i) for i in range(3)])

    def stopped(outcome: tuple[str, Any]) -> bool:
        # A Stop and a cancellation at once: the TaskGroup raises the Stop (errors before a cancellation).
        error = outcome[1]
        return outcome[0] == "error" and isinstance(error, BaseExceptionGroup) and error.subgroup(Stop) is not None

    assert every_point(make, also=stopped) == []


# ------------------------------------------------------------------------------- the caller's own cancellation
def test_a_stream_consumer_cancelled_gets_its_own_cancellation_not_the_runners() -> None:
    """Leaving the block by the consumer's cancellation, the stream's exit cancelled its runner and re-raised
    the runner's CancelledError in place of the consumer's: its cancel(msg) message (and traceback) lost."""

    async def main() -> tuple[Any, ...]:
        wave = so.Wave[int]("w", max_concurrency=2, instrument=False)

        async def consume() -> None:
            async with wave.stream([_wave_task(i, False) for i in range(4)]) as results:
                async for _ in results:
                    pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.15)  # the first result consumed, waiting for the next
        task.cancel("shutting down")
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        return caught.value.args

    assert run_virtual(main()) == ("shutting down",)


def test_a_timeout_firing_during_the_rollback_of_a_cancelled_saga_does_not_replace_the_callers_cancellation() -> None:
    """The caller cancelled during the rollback, then the Timeout around the saga fired before it ended: the
    latest cancellation caught was raised, the timeout's bare one, and the caller's message was lost."""
    undone: list[str] = []

    async def main() -> tuple[Any, ...]:
        saga = so.Saga("s", instrument=False)

        async def act() -> str:
            return "a"

        async def undo(value: str) -> None:
            await asyncio.sleep(0.2)
            undone.append(value)

        async def body() -> None:
            async with saga.begin() as tx:
                await tx.step("a", act, compensate=undo)
                await asyncio.sleep(0.1)
                raise ValueError("failed: roll back")

        task = asyncio.ensure_future(so.Timeout(0.2, instrument=False).call(body))
        await asyncio.sleep(0.15)  # the rollback runs (0.1 to 0.3); the timeout fires at 0.2
        task.cancel("shutting down")
        with pytest.raises(asyncio.CancelledError) as caught:
            await task
        return caught.value.args

    assert run_virtual(main()) == ("shutting down",)
    assert undone == ["a"]
