"""Timeout, fallback, hedging, degradation and pipeline composition, with their telemetry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import pytest
from _caught import caught_in_except
from opentelemetry.trace import StatusCode
from test_recovery_support import FakeClock, Telemetry, run

from shannon_otel import BreakerState, Outcome, Wave
from shannon_otel.recovery import (
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    FallbackError,
    Hedge,
    Pipeline,
    Retry,
    Served,
    Timeout,
    resilient,
)


async def hang() -> None:
    await asyncio.Event().wait()


async def fail() -> None:
    raise ConnectionError("down")


# ------------------------------------------------------------------------- timeout
def test_timeout_raises_timeout_error_and_counts_it() -> None:
    tel = Telemetry()
    with pytest.raises(TimeoutError):
        run(Timeout(0.001, name="slow", **tel.kw).call(hang))
    attempt = tel.span("attempt 1")
    assert attempt.attributes is not None and attempt.attributes["shannon.attempt.outcome"] == "timeout"
    op = tel.span("slow")
    assert op.attributes is not None and op.attributes["error.type"] == "TimeoutError"
    assert tel.points("shannon.timeouts") == [({"shannon.operation": "slow"}, 1)]


def test_outside_cancellation_is_not_a_timeout() -> None:
    tel = Telemetry()

    async def main() -> None:
        task = asyncio.create_task(Timeout(60.0, name="t", **tel.kw).call(hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert tel.points("shannon.timeouts") == []
    attempt = tel.span("attempt 1")
    assert attempt.attributes is not None and attempt.attributes["shannon.attempt.outcome"] == "cancellation"


def test_per_attempt_timeout_inside_a_retry() -> None:
    clock = FakeClock()
    calls = 0

    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await hang()
        return "fast"

    pipeline = Pipeline(Retry(attempts=2, sleep=clock.sleep), Timeout(0.001), instrument=False)
    assert run(pipeline.call(slow_then_fast)) == "fast"


def test_an_attempt_cut_off_by_a_timeout_is_an_error_span() -> None:
    tel = Telemetry()
    pipeline = Pipeline(Retry(attempts=2, initial=0.0, maximum=0.0), Timeout(0.001), name="op", **tel.kw)
    with pytest.raises(TimeoutError):
        run(pipeline.call(hang))
    attempts = [s for s in tel.spans() if s.name.startswith("attempt ")]
    assert len(attempts) == 2
    for attempt in attempts:
        assert (attempt.status.status_code, attempt.status.description) == (StatusCode.ERROR, "timeout")
        assert attempt.attributes is not None and attempt.attributes["shannon.attempt.outcome"] == "timeout"
        assert attempt.attributes["error.type"] == "TimeoutError"


def test_a_wave_task_timeout_is_recorded_as_a_timeout_and_stays_a_cancellation() -> None:
    tel = Telemetry()
    breaker = CircuitBreaker("dep", failure_threshold=1, instrument=False)
    policy = Pipeline(Retry(attempts=3, initial=0.0, on=BaseException), breaker, name="op", **tel.kw)
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await hang()

    wave: Wave[None] = Wave("w", task_timeout=0.01, policy=policy, instrument=False)
    result = run(wave.run([slow]))
    assert result.results[0].outcome is Outcome.TIMEOUT
    assert calls == 1, "the wave's timeout cancels the call: never retried"
    assert breaker.state is BreakerState.CLOSED, "nor counted as a failure"
    attempt = tel.span("attempt 1")
    assert attempt.attributes is not None and attempt.attributes["shannon.attempt.outcome"] == "timeout"
    assert (attempt.status.status_code, attempt.status.description) == (StatusCode.ERROR, "timeout")
    op = tel.span("op")
    # recorded like the expiry of a Timeout policy: a failed call whose error is a TimeoutError
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "failure"
    assert op.attributes["error.type"] == "TimeoutError" and op.status.status_code is StatusCode.ERROR
    assert tel.points("shannon.calls") == [(
        {"shannon.operation": "op", "shannon.call.outcome": "failure", "error.type": "TimeoutError"}, 1)]
    assert tel.points("shannon.timeouts") == []  # no timeout policy expired


def test_a_cancelled_wave_task_with_a_timeout_is_still_a_cancellation() -> None:
    tel = Telemetry()
    policy = Retry(attempts=3, name="op", **tel.kw)

    async def main() -> None:
        wave: Wave[None] = Wave("w", task_timeout=60.0, policy=policy, instrument=False)
        task = asyncio.create_task(wave.run([hang]))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    attempt = tel.span("attempt 1")
    assert attempt.attributes is not None and attempt.attributes["shannon.attempt.outcome"] == "cancellation"
    assert attempt.status.status_code is StatusCode.UNSET
    op = tel.span("op")
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "cancellation"


# ------------------------------------------------------------------------- fallback
def test_fallback_serves_and_counts_the_primary_error() -> None:
    tel = Telemetry()
    seen: list[BaseException] = []

    async def cached(error: Exception) -> str:
        seen.append(error)
        return "cached"

    assert run(Fallback(cached, name="get", **tel.kw).call(fail)) == "cached"
    assert isinstance(seen[0], ConnectionError)
    span = tel.span("fallback get")
    assert span.attributes is not None
    assert span.attributes["shannon.fallback.reason"] == "failure"
    # a fallback that served ended in no error: no error.type (tests/test_fallback_error_type.py); the primary's
    # error is on its attempt span and in the count
    assert "error.type" not in span.attributes
    assert tel.span("attempt 1").attributes["error.type"] == "ConnectionError"  # type: ignore[index]
    assert span.parent is not None and span.parent.span_id == tel.span("get").context.span_id
    assert tel.points("shannon.fallbacks") == [
        ({"shannon.operation": "get", "error.type": "ConnectionError"}, 1)]


def test_fallback_failure_preserves_both_errors() -> None:
    async def also_fails(error: Exception) -> None:
        raise LookupError("no cache")

    with pytest.raises(FallbackError) as info:
        run(Fallback(also_fails, instrument=False).call(fail))
    assert isinstance(info.value.primary, ConnectionError)
    assert isinstance(info.value.fallback, LookupError)


def test_fallback_never_handles_cancellation_or_unlisted_errors() -> None:
    async def never(error: Exception) -> str:
        raise AssertionError("not called")

    with pytest.raises(ConnectionError):
        run(Fallback(never, on=KeyError, instrument=False).call(fail))

    async def main() -> None:
        task = asyncio.create_task(Fallback(never, instrument=False).call(hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


# ------------------------------------------------------------------------- hedging
def test_hedge_starts_a_second_attempt_after_the_delay_and_cancels_the_loser() -> None:
    tel = Telemetry()
    cancelled: list[int] = []
    release_second = asyncio.Event
    order: list[int] = []

    async def main() -> Any:
        gate = release_second()
        started = 0

        async def attempt() -> str:
            nonlocal started
            started += 1
            me = started
            order.append(me)
            try:
                if me == 1:
                    await hang()
                await gate.wait()
                return f"attempt {me}"
            except asyncio.CancelledError:
                cancelled.append(me)
                raise

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(0)

        hedge = Hedge(0.5, attempts=2, sleep=sleep, name="search", **tel.kw)
        task = asyncio.create_task(hedge.call(attempt))
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        return await task

    assert run(main()) == "attempt 2"
    assert order == [1, 2] and cancelled == [1]
    op = tel.span("search")
    assert sorted(s.name for s in tel.children(op)) == ["attempt 1", "hedge 2"]
    first = tel.span("attempt 1")
    assert first.attributes is not None and first.attributes["shannon.attempt.outcome"] == "cancellation"
    assert tel.points("shannon.hedges") == [({"shannon.operation": "search"}, 1)]


def test_hedge_starts_the_next_attempt_at_once_after_a_failure_and_raises_the_last_error() -> None:
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(calls)

    async def never(seconds: float) -> None:
        await hang()

    with pytest.raises(ConnectionError) as info:
        run(Hedge(10.0, attempts=3, sleep=never, instrument=False).call(always_fails))
    assert calls == 3
    assert info.value.args == (3,)  # the last attempt's error, as Polly returns the last outcome
    earlier = info.value.__context__
    assert isinstance(earlier, ExceptionGroup)  # the others stay reachable
    assert [e.args[0] for e in earlier.exceptions] == [1, 2]


def test_a_hedge_awaited_while_handling_an_error_keeps_the_earlier_attempts_errors_reachable() -> None:
    """Awaited inside an ``except`` block (a fallback path, a cleanup), the raise of the last error set its
    ``__context__`` to the caller's handled exception, replacing the group of the earlier attempts' errors:
    they were lost. Now the group stays its context, and the caller's exception becomes the group's."""
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(calls)

    async def main() -> BaseException:
        try:
            raise KeyError("handled by the caller")
        except KeyError:
            try:
                await Hedge(0.0, attempts=3, instrument=False).call(always_fails)
            except ConnectionError as exc:
                return exc
        raise AssertionError("the hedge did not fail")

    error = run(main())
    assert error.args == (3,)
    earlier = error.__context__
    assert isinstance(earlier, ExceptionGroup)
    assert [e.args[0] for e in earlier.exceptions] == [1, 2]
    assert isinstance(earlier.__context__, KeyError)  # the caller's own exception is still in the chain


def test_a_hedges_error_keeps_the_context_it_was_raised_with_as_without_the_hedge() -> None:
    """The hedge re-raises in the caller's task an error its attempt's task ended with. A bare ``raise`` set that
    error's ``__context__`` to whatever was being handled there: the caller's exception (the hedge awaited in an
    ``except`` block) or the hedge's own ``CancelledError`` (an attempt raising as an expiring ``Timeout`` cut it
    off), replacing the ``KeyError`` the operation raised it while handling, which the same call without the hedge
    keeps. Checked for a single attempt's error, a ``KeyboardInterrupt`` handed back, the group of several attempts'
    errors, and the late error of an attempt cut off by a ``Timeout`` around the hedge."""
    async def wrapping(error: type[BaseException]) -> None:
        await asyncio.sleep(0)
        try:
            raise KeyError("root cause")
        except KeyError:
            raise error("wrapped")  # noqa: B904 (implicit chaining is what is checked)

    async def late() -> None:
        try:
            await hang()
        except asyncio.CancelledError:
            await wrapping(ValueError)

    hedge = Hedge(10.0, attempts=1, instrument=False)
    for kind in (ValueError, KeyboardInterrupt):
        error = run(caught_in_except(lambda kind=kind: hedge.call(wrapping, kind)))  # type: ignore[misc]
        assert type(error) is kind and isinstance(error.__context__, KeyError), error.__context__
    several = run(caught_in_except(lambda: Hedge(0.0, attempts=2, instrument=False).call(wrapping, ValueError)))
    assert isinstance(several.__context__, ExceptionGroup)  # the earlier attempt's error
    assert isinstance(several.__context__.__context__, KeyError)  # the last one's own context, not the caller's
    with pytest.raises(ValueError, match="wrapped") as cut_off:
        run(Timeout(0.01, instrument=False).call(Hedge(10.0, attempts=1, instrument=False).call, late))
    cut = cut_off.value
    assert type(cut) is ValueError and isinstance(cut.__context__, KeyError), cut.__context__


def test_a_hedge_raises_its_sleeps_error_instead_of_starting_the_next_attempt_at_once() -> None:
    """An injected ``sleep`` that raised was taken for the delay having passed: its error was dropped and the next
    attempt started at once (a second request to the service, the error seen nowhere). Now the hedge raises it, as a
    ``Retry`` raises its sleep's, and ends the attempt in flight with its span."""
    tel = Telemetry()
    started: list[int] = []

    async def broken_sleep(seconds: float) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("sleep broke")

    async def slow() -> str:
        started.append(len(started) + 1)
        if len(started) == 1:
            await hang()
        return "hedged"

    async def main() -> set[asyncio.Task[Any]]:
        with pytest.raises(RuntimeError, match="sleep broke"):
            await Hedge(10.0, attempts=2, sleep=broken_sleep, name="search", **tel.kw).call(slow)
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert run(main()) == set()
    assert started == [1]  # no hedged attempt started
    assert tel.points("shannon.hedges") == []
    first = tel.span("attempt 1")
    assert first.attributes is not None and first.attributes["shannon.attempt.outcome"] == "cancellation"
    op = tel.span("search")
    assert op.attributes is not None and op.attributes["error.type"] == "RuntimeError"


def test_a_retry_awaited_while_handling_an_error_raises_its_last_error_with_its_own_context() -> None:
    """A Retry giving up inside the caller's ``except`` block re-raised the last error with ``raise error``, which
    set its ``__context__`` to the caller's exception: the chain the operation raised (the root cause it wrapped,
    the earlier errors of a hedge inside) was cut off, unlike the same call without the retry."""
    async def wrapping() -> None:
        try:
            raise OSError("root cause")
        except OSError:
            raise ValueError("wrapped")  # noqa: B904 (implicit chaining is what is checked)

    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(calls)

    async def main() -> tuple[BaseException, BaseException]:
        caught: list[BaseException] = []
        try:
            raise KeyError("handled by the caller")
        except KeyError:
            for policy, fn in ((Retry(attempts=2, initial=0.0, jitter="none", instrument=False), wrapping),
                               (Pipeline(Retry(attempts=2, initial=0.0, jitter="none"), Hedge(0.0, attempts=2),
                                         instrument=False), always_fails)):
                try:
                    await policy.call(fn)
                except (ValueError, ConnectionError) as exc:
                    caught.append(exc)
        return caught[0], caught[1]

    wrapped, hedged = run(main())
    assert isinstance(wrapped.__context__, OSError)
    assert hedged.args == (4,)
    assert isinstance(hedged.__context__, ExceptionGroup)  # the last hedge's earlier attempt
    assert [e.args[0] for e in hedged.__context__.exceptions] == [3]


# ------------------------------------------------------------------------- degradation
def test_degrade_serves_a_static_default_when_the_breaker_is_open() -> None:
    tel = Telemetry()
    breaker = CircuitBreaker("dep", failure_threshold=1, instrument=False)
    pipeline = Pipeline(Degrade(default=[]), breaker, name="recs", **tel.kw)

    async def main() -> list[Any]:
        with pytest.raises(ConnectionError):
            await pipeline.call(fail)  # a failure is not degraded by default (only open/timeout)
        return [await pipeline.call(fail)]

    served = run(main())[0]
    assert served.degraded and served.value == [] and served.mode == "static"
    assert served.reason == "breaker_open" and isinstance(served.error, CircuitOpenError)
    op = [s for s in tel.spans() if s.name == "recs"][1]
    events = [e for e in op.events if e.name == "shannon.degraded"]
    assert [(e.attributes or {}).get("shannon.degrade.mode") for e in events] == ["static"]
    assert tel.points("shannon.degradations") == [({
        "shannon.operation": "recs", "shannon.degrade.mode": "static", "shannon.degrade.reason": "breaker_open"}, 1)]


def test_degrade_last_good_value_respects_max_age() -> None:
    clock = FakeClock()
    degrade = Degrade(last_good=True, max_age=60.0, on=ConnectionError, clock=clock, instrument=False)

    async def good() -> int:
        return 7

    async def main() -> None:
        fresh = await degrade.call(good)
        assert not fresh.degraded and fresh.value == 7
        clock.now += 30
        stale = await degrade.call(fail)
        assert stale.degraded and stale.value == 7 and stale.mode == "last_good" and stale.age_s == 30
        clock.now += 31
        with pytest.raises(ConnectionError):
            await degrade.call(fail)

    run(main())


def test_a_flag_serves_the_cheaper_function_without_calling_the_operation() -> None:
    calls = 0

    async def expensive() -> str:
        nonlocal calls
        calls += 1
        return "full"

    async def cheaper() -> str:
        return "summary"

    degrade = Degrade(cheaper=cheaper, instrument=False)
    degrade.flag("anomaly")
    served = run(degrade.call(expensive))
    assert (served.value, served.degraded, served.mode, served.reason) == ("summary", True, "cheaper", "anomaly")
    assert calls == 0 and degrade.flagged == "anomaly"
    degrade.clear()
    assert run(degrade.call(expensive)).value == "full"


def test_a_flag_cleared_by_another_thread_mid_call_is_read_once() -> None:
    """Event loops in several threads may share one Degrade; an ``on_anomaly`` in one may flag it while another
    clears it. The call read the flag twice (is it set? then its reason): cleared between the two, it served a
    degraded result with reason None (the degradation span and log said reason ""). Cleared in between here by a
    flag that reads as set once, then as cleared (another thread's ``clear()`` at that moment)."""
    from shannon_otel.recovery._degrade import _State

    class ClearedAfterOneRead(_State):
        __slots__ = ("reads",)

        def __init__(self) -> None:
            super().__init__()
            self.reads = 0

        @property
        def flag(self) -> str | None:
            self.reads += 1
            return "anomaly" if self.reads == 1 else None

        @flag.setter
        def flag(self, value: str | None) -> None:
            pass

    async def operation() -> str:
        return "full"

    degrade = Degrade(default="static", instrument=False)
    object.__setattr__(degrade, "_state", ClearedAfterOneRead())
    served = run(degrade.call(operation))
    assert (served.value, served.degraded, served.mode, served.reason) == ("static", True, "static", "anomaly")


def test_a_flag_with_a_failing_cheaper_and_no_default_calls_the_operation() -> None:
    """Flagged (an anomaly detector's doing), with the cheaper function down and no default, nothing is left to
    serve: the operation runs, as with none available (its error raised if it fails too, the cheaper not called a
    second time). The cheaper's error was raised instead: calls that the operation, never run, would have served
    failed while the flag was set."""
    tel = Telemetry()
    calls = 0

    async def expensive() -> str:
        nonlocal calls
        calls += 1
        return "full"

    async def cheaper() -> str:
        raise ConnectionError("cache down")

    degrade = Degrade(cheaper=cheaper, name="summary", **tel.kw)
    degrade.flag("anomaly")
    assert run(degrade.call(expensive)) == Served("full")
    assert calls == 1
    op = tel.span("summary")
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "success"
    assert tel.points("shannon.degradations") == []
    with_default = Degrade(cheaper=cheaper, default="static", instrument=False)
    with_default.flag("anomaly")
    served = run(with_default.call(expensive))
    assert (served.value, served.mode, calls) == ("static", "static", 1)  # the default is still served

    cheaper_runs = 0

    async def counted() -> str:
        nonlocal cheaper_runs
        cheaper_runs += 1
        raise ConnectionError("cache down")

    async def down() -> str:
        raise TimeoutError("down too")

    both = Degrade(cheaper=counted, instrument=False)
    both.flag("anomaly")
    with pytest.raises(TimeoutError, match="down too"):  # the operation's error; the cheaper is not called again
        run(both.call(down))
    assert cheaper_runs == 1


def test_the_decorated_function_shares_the_flag() -> None:
    degrade = Degrade(default="static", instrument=False)

    @degrade
    async def fetch() -> str:
        return "live"

    assert run(fetch()).value == "live"  # typed: the decorated function returns a Served[str]
    degrade.flag("anomaly")
    assert run(fetch()).value == "static"


def test_decorated_last_good_needs_a_key_when_the_function_takes_parameters() -> None:
    async def get_user(uid: int) -> dict[str, int]:
        return {"id": uid}

    with pytest.raises(TypeError, match=r"Degrade\(last_good=True\) on .*get_user\(\.\.\.\), which takes "
                                        r"parameters, needs key="):
        Degrade(last_good=True, instrument=False)(get_user)
    with pytest.raises(TypeError, match="needs key="):  # inside a pipeline too, after a keyed one
        resilient(Degrade(last_good=True, key=lambda a, k: a[0]), Degrade(last_good=True), instrument=False)(
            get_user)

    async def current_config() -> str:  # no parameters: one value per Degrade is right
        return "v1"

    assert run(Degrade(last_good=True, instrument=False)(current_config)()).value == "v1"


def test_last_good_values_of_an_unhashable_callable_object_are_kept_and_served() -> None:
    """A callable object whose class defines ``__eq__`` alone (a ``@dataclass`` with an async ``__call__``) cannot be
    hashed. As the function part of a last good value's key it made ``hash`` raise: decorated (no parameters, no
    ``key``), after the operation had run, its result lost for "unhashable type"; called with arguments and ``key=``,
    the call was refused saying ``key`` had returned an unhashable value (it had returned 1). Now such an object is
    keyed by identity: each instance keeps its own last good values."""

    @dataclass
    class Ping:
        url: str
        down: bool = False
        runs: int = 0

        async def __call__(self) -> str:
            self.runs += 1
            if self.down:
                raise ConnectionError("down")
            return f"{self.url}()"

    @dataclass
    class Fetch(Ping):
        async def __call__(self, uid: int) -> str:  # type: ignore[override]
            return f"{await super().__call__()}{uid}"

    ping, fetch, other = Ping("a"), Fetch("b"), Fetch("b")
    decorated = Degrade(last_good=True, on=ConnectionError, instrument=False)(ping)
    keyed = Degrade(last_good=True, key=lambda args, kwargs: args[0], on=ConnectionError, instrument=False)

    async def main() -> None:
        assert await decorated() == Served("a()")
        assert await keyed.call(fetch, 1) == Served("b()1")
        ping.down = fetch.down = other.down = True
        served = await decorated()
        assert (served.value, served.mode) == ("a()", "last_good")
        served = await keyed.call(fetch, 1)
        assert (served.value, served.mode) == ("b()1", "last_good")
        with pytest.raises(ConnectionError):  # an equal object is another function: nothing of fetch's is served
            await keyed.call(other, 1)

    run(main())
    assert (ping.runs, fetch.runs, other.runs) == (2, 2, 1)


def test_decorated_last_good_values_are_kept_per_key_in_a_bounded_lru() -> None:
    down: set[int] = set()

    async def fetch(uid: int) -> dict[str, int]:
        if uid in down:
            raise ConnectionError("db down")
        return {"id": uid}

    degrade = Degrade(last_good=True, key=lambda args, kwargs: args[0], max_keys=2, on=ConnectionError,
                      instrument=False)
    get_user = degrade(fetch)
    # a pipeline is typed as returning fetch's own type; with a Degrade inside its calls return a Served
    piped = cast("Callable[..., Awaitable[Served[dict[str, int]]]]", resilient(
        Degrade(last_good=True, key=lambda args, kwargs: kwargs["uid"], on=ConnectionError),
        Retry(attempts=1), instrument=False)(fetch))

    async def main() -> None:
        assert (await get_user(1)).value == {"id": 1}
        assert (await get_user(2)).value == {"id": 2}
        assert (await piped(uid=1)).value == {"id": 1}
        down.update({1, 2, 3})
        served = await get_user(1)
        assert served.degraded and served.mode == "last_good" and served.value == {"id": 1}
        assert (await get_user(2)).value == {"id": 2}
        with pytest.raises(ConnectionError):
            await get_user(3)  # never good: nobody else's value is served
        assert (await piped(uid=1)).value == {"id": 1}
        with pytest.raises(ConnectionError):
            await piped(uid=2)
        assert (await get_user(1)).value == {"id": 1}  # served again: now 2 is the least recently used
        down.clear()
        await get_user(3)  # a third key evicts the least recently used one
        down.update({1, 2, 3})
        assert (await get_user(1)).value == {"id": 1} and (await get_user(3)).value == {"id": 3}
        with pytest.raises(ConnectionError):
            await get_user(2)

    run(main())


def test_degrade_on_timeout_budget() -> None:
    # A pipeline's call is typed as returning the factory's value; with a Degrade inside it is a Served.
    coro = Pipeline(Degrade(default="later"), Timeout(0.001), instrument=False).call(hang)
    served = run(cast("Coroutine[Any, Any, Served[str | None]]", coro))
    assert served.degraded and served.reason == "timeout"


# ------------------------------------------------------------------------- composition
def test_pipeline_order_first_policy_is_outermost() -> None:
    tel, clock = Telemetry(), FakeClock()
    breaker = CircuitBreaker("db", failure_threshold=2, clock=clock, instrument=False)

    async def fallback(error: Exception) -> str:
        return type(error).__name__

    @resilient(Fallback(fallback),
               Retry(attempts=5, jitter="none", sleep=clock.sleep, on=(Exception, CircuitOpenError)),
               breaker, clock=clock, **tel.kw)
    async def query() -> None:
        await fail()

    # retry sees two failures, then two rejections (the breaker opened), gives up; the fallback serves.
    assert run(cast("Coroutine[Any, Any, str]", query())) == "CircuitOpenError"  # the fallback's value
    op = tel.span(query.__qualname__)
    assert [s.name for s in tel.children(op)] == [
        "attempt 1", "attempt 2", "rejected " + query.__qualname__, "rejected " + query.__qualname__,
        "rejected " + query.__qualname__, "fallback " + query.__qualname__]
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "success"
    assert op.status.status_code is not StatusCode.ERROR


def test_nested_pipelines_flatten() -> None:
    a, b = Retry(attempts=2, instrument=False), Timeout(1.0, instrument=False)
    assert Pipeline(Pipeline(a), b, instrument=False).policies == (a, b)


def test_executor_style_use_with_a_zero_argument_factory() -> None:
    pipeline = Pipeline(Timeout(5.0), Retry(attempts=2), instrument=False)

    def factory(i: int) -> Callable[[], Awaitable[int]]:
        return lambda: asyncio.sleep(0, i)

    async def main() -> list[int]:
        return await asyncio.gather(*(pipeline.call(factory(i)) for i in range(5)))

    assert run(main()) == list(range(5))
