"""What each policy promises when composed: last-good per function and key, the hedge's last error,
the pipeline refusing settings it would not use, named breakers, no retried rejections by default,
``call(fn, *args, **kwargs)``, the renamed parameters and the testing switch."""

from __future__ import annotations

import asyncio
import functools
import warnings
from collections.abc import Callable
from typing import Any, cast

import pytest
from test_recovery_support import FakeClock, Telemetry, run

from shannon_otel import Hook, Wave, testing
from shannon_otel.recovery import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    Hedge,
    Pipeline,
    Retry,
    Served,
    Timeout,
)


async def hang() -> None:
    await asyncio.Event().wait()


async def never(seconds: float) -> None:
    await hang()


# ------------------------------------------------------------------------- Degrade(last_good=True)
def test_one_degrade_decorating_two_functions_keeps_a_last_good_value_for_each() -> None:
    down = False
    degrade = Degrade(last_good=True, on=ConnectionError, instrument=False)

    @degrade
    async def prices() -> str:
        if down:
            raise ConnectionError
        return "prices"

    @degrade
    async def stock() -> str:
        if down:
            raise ConnectionError
        return "stock"

    async def main() -> tuple[Served[str], Served[str]]:
        await prices()
        await stock()
        nonlocal down
        down = True
        return await prices(), await stock()

    served_prices, served_stock = run(main())
    assert (served_prices.value, served_prices.mode) == ("prices", "last_good")  # not stock's value
    assert (served_stock.value, served_stock.mode) == ("stock", "last_good")


def test_last_good_with_a_key_is_per_function_and_per_key() -> None:
    down = False
    degrade = Degrade(last_good=True, key=lambda args, kwargs: args[0], on=ConnectionError, instrument=False)

    async def user(uid: int) -> str:
        if down:
            raise ConnectionError
        return f"user {uid}"

    async def orders(uid: int) -> str:
        if down:
            raise ConnectionError
        return f"orders {uid}"

    async def main() -> list[Any]:
        for uid in (1, 2):
            await degrade.call(user, uid)
            await degrade.call(orders, uid)
        nonlocal down
        down = True
        return [(await degrade.call(f, uid)).value for f in (user, orders) for uid in (1, 2)]

    assert run(main()) == ["user 1", "user 2", "orders 1", "orders 2"]


def test_last_good_refuses_calls_it_cannot_key() -> None:
    keyed = Degrade(last_good=True, key=lambda args, kwargs: args[0], instrument=False)
    unkeyed = Degrade(last_good=True, instrument=False)

    async def get(uid: int) -> int:
        return uid

    with pytest.raises(TypeError, match=r"call\(fn, \*args, \*\*kwargs\)"):
        run(keyed.call(lambda: get(1)))  # a bare factory has no arguments to key by
    with pytest.raises(TypeError, match="needs key="):
        run(unkeyed.call(get, 1))
    assert run(unkeyed.call(lambda: get(1))).value == 1  # one value per instance, as documented


def test_a_wave_refuses_last_good_without_a_key() -> None:
    with pytest.raises(TypeError, match="key="):
        Wave("w", policy=Degrade(last_good=True, instrument=False))
    with pytest.raises(TypeError, match="key="):
        Wave("w", policy=Pipeline(Degrade(last_good=True), Retry(), instrument=False))
    Wave("w", policy=Degrade(last_good=True, key=lambda args, kwargs: args, instrument=False))
    Wave("w", policy=Pipeline(Degrade(default=None), Retry(), instrument=False))


def test_a_wave_with_a_keyed_last_good_serves_each_task_its_own_value() -> None:
    down = False

    async def price(item: str) -> str:
        if down:
            raise ConnectionError
        return f"price of {item}"

    wave: Wave[Any] = Wave("prices", policy=Degrade(
        last_good=True, key=lambda args, kwargs: args[0], on=ConnectionError, instrument=False), instrument=False)
    items = ["a", "b", "c"]

    async def main() -> list[Any]:
        await wave.run([functools.partial(price, item) for item in items])  # what Wave.map passes
        nonlocal down
        down = True
        result = await wave.run([functools.partial(price, item) for item in items])
        served = [cast("Served[str]", r.value) for r in result.results]
        return [(s.value, s.mode) for s in served]

    assert run(main()) == [(f"price of {i}", "last_good") for i in items]


def test_wave_map_with_a_keyed_last_good() -> None:
    down = False

    async def price(item: str) -> str:
        if down:
            raise ConnectionError
        return f"price of {item}"

    wave: Wave[Any] = Wave("prices", policy=Pipeline(Degrade(
        last_good=True, key=lambda args, kwargs: args[0], on=ConnectionError), Retry(attempts=1), instrument=False))

    async def main() -> list[Any]:
        await wave.map(price, ["a", "b"])
        nonlocal down
        down = True
        result = await wave.map(price, ["b", "a"])
        return [cast("Served[str]", r.value).value for r in result.results]

    assert run(main()) == ["price of b", "price of a"]


# ------------------------------------------------------------------------- Hedge inside other policies
def test_an_outer_retry_retries_when_every_hedged_attempt_failed() -> None:
    calls = 0
    clock = FakeClock()

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:  # both hedged attempts of the first try
            raise ConnectionError(calls)
        return "ok"

    pipeline = Pipeline(Retry(attempts=2, on=ConnectionError, sleep=clock.sleep, jitter="none"),
                        Hedge(10.0, attempts=2, sleep=never), instrument=False)
    assert run(pipeline.call(flaky)) == "ok"
    assert calls == 3


def test_a_breaker_counts_a_hedge_whose_attempts_all_failed() -> None:
    breaker = CircuitBreaker("hedged", failure_threshold=1, on=ConnectionError, instrument=False)

    async def down() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        run(Pipeline(breaker, Hedge(10.0, attempts=2, sleep=never), instrument=False).call(down))
    assert breaker.state.value == "open"


def test_a_fallback_on_the_error_type_catches_a_failed_hedge() -> None:
    async def fallback(error: Exception) -> str:
        return f"fallback after {type(error).__name__}"

    async def down() -> None:
        raise ConnectionError

    pipeline = Pipeline(Fallback(fallback, on=ConnectionError), Hedge(10.0, sleep=never), instrument=False)
    assert run(pipeline.call(down)) == "fallback after ConnectionError"


# ------------------------------------------------------------------------- Pipeline settings
@pytest.mark.parametrize("inner", [
    lambda tel: Retry(name="inner"),
    lambda tel: Retry(hooks=[Hook()]),
    lambda tel: Timeout(1.0, tracer_provider=tel.tracer_provider),
    lambda tel: Fallback(lambda e: asyncio.sleep(0), meter_provider=tel.meter_provider),
    lambda tel: Pipeline(Retry(), name="nested"),
])
def test_a_pipeline_refuses_settings_of_its_policies_it_would_not_use(inner: Callable[[Telemetry], Any]) -> None:
    with pytest.raises(TypeError, match=r"inside a Pipeline.*pass .* to the Pipeline"):
        Pipeline(inner(Telemetry()), instrument=False)


def test_a_pipeline_keeps_the_breakers_name_and_hooks() -> None:
    tel = Telemetry()
    breaker = CircuitBreaker("db", failure_threshold=1, **tel.kw)
    pipeline = Pipeline(Retry(instrument=False), breaker, name="query", **tel.kw)

    async def down() -> None:
        raise ConnectionError

    with pytest.raises(CircuitOpenError):
        run(pipeline.call(down))
    assert {p[0]["shannon.breaker.name"] for p in tel.points("shannon.breaker.transitions")} == {"db"}


# ------------------------------------------------------------------------- breakers
def test_a_breaker_needs_a_name() -> None:
    with pytest.raises(TypeError, match="CircuitBreaker needs name="):
        CircuitBreaker()  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="name must be a non-empty str"):  # a str: the type is right
        CircuitBreaker("")
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        CircuitBreaker(b"db")  # type: ignore[call-overload]


def test_breaker_count_is_a_deprecated_alias_of_on() -> None:
    with pytest.warns(DeprecationWarning, match="use on="):
        config = BreakerConfig(count=KeyError)
    assert config == BreakerConfig(on=KeyError)
    with pytest.warns(DeprecationWarning, match="use on="), pytest.raises(TypeError, match="pass on only"):
        BreakerConfig(count=KeyError, on=ValueError)
    with pytest.warns(DeprecationWarning, match="use on=") as caught:
        breaker = CircuitBreaker("old", count=KeyError, instrument=False)
    assert breaker.config.on == (KeyError,) and len(caught) == 1
    assert caught[0].filename == __file__  # points at the caller's line


# ------------------------------------------------------------------------- Retry and rejections
def test_retry_waits_the_breakers_retry_after_when_asked() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout=5.0, clock=clock, instrument=False)
    calls = 0

    async def dep() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError
        return "ok"

    default = Pipeline(Retry(attempts=3, initial=0.5, jitter="none", sleep=clock.sleep, clock=clock), breaker,
                       instrument=False)
    with pytest.raises(CircuitOpenError):
        run(default.call(dep))  # fails, backs off 0.5 s, is rejected: not retried
    assert (calls, clock.sleeps) == (1, [0.5])

    breaker.reset()
    calls, clock.sleeps = 0, []
    waiting = Pipeline(Retry(attempts=3, initial=0.5, jitter="none", sleep=clock.sleep, clock=clock,
                             on=ConnectionError, wait_retry_after=True), breaker, instrument=False)
    assert run(waiting.call(dep)) == "ok"  # fails, 0.5 s, rejected (4.5 s left), waits 4.5 s, probe succeeds
    assert calls == 2 and clock.sleeps == [0.5, pytest.approx(4.5)]

    breaker.reset()
    calls, clock.sleeps = 0, []
    listed = Pipeline(Retry(attempts=3, initial=0.5, jitter="none", sleep=clock.sleep, clock=clock,
                            on=(ConnectionError, CircuitOpenError)), breaker, instrument=False)
    with pytest.raises(CircuitOpenError):
        run(listed.call(dep))  # retried at backoff pace, rejected again: what the advice calls a storm
    assert calls == 1 and clock.sleeps == [0.5, 1.0]


# ------------------------------------------------------------------------- call(fn, *args, **kwargs)
@pytest.mark.parametrize("make", [
    lambda: Retry(instrument=False), lambda: CircuitBreaker("args", instrument=False),
    lambda: Timeout(5.0, instrument=False), lambda: Fallback(lambda e: asyncio.sleep(0), instrument=False),
    lambda: Hedge(5.0, instrument=False), lambda: Pipeline(Retry(), Timeout(5.0), instrument=False),
])
@pytest.mark.parametrize("tel", [False, True])
def test_every_policy_calls_fn_with_arguments(make: Callable[[], Any], tel: bool) -> None:
    policy = make()
    if tel:  # the observed path as well as the hot path
        t = Telemetry()
        policy = Pipeline(policy, **t.kw) if not isinstance(policy, Pipeline) else Pipeline(*policy.policies, **t.kw)
    seen: list[tuple[Any, ...]] = []

    async def op(a: int, b: int, *, c: int) -> int:
        seen.append((a, b, c))
        return a + b + c

    assert run(policy.call(op, 1, 2, c=3)) == 6
    assert run(policy.call(lambda: op(4, 5, c=6))) == 15  # call(fn) as before
    assert seen == [(1, 2, 3), (4, 5, 6)]


def test_degrade_calls_fn_with_arguments() -> None:
    async def op(a: int) -> int:
        return a

    assert run(Degrade(default=0, instrument=False).call(op, 7)).value == 7


# ------------------------------------------------------------------------- renamed parameters
def test_retry_timeout_is_a_deprecated_alias_of_budget_s() -> None:
    with pytest.warns(DeprecationWarning, match="budget_s") as caught:
        old = Retry(timeout=5.0)
    assert caught[0].filename == __file__  # points at the caller's line
    assert old == Retry(budget_s=5.0) and old.budget_s == 5.0 and old.timeout is None
    with pytest.warns(DeprecationWarning, match="budget_s"), pytest.raises(TypeError, match="budget_s only"):
        Retry(timeout=5.0, budget_s=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = old._named("op")  # the decorator's copy does not warn again
    assert cast("Retry", named).budget_s == 5.0


# ------------------------------------------------------------------------- the testing switch
def test_set_testing_turns_backoff_waits_off_on_the_retry_path_only() -> None:
    clock = FakeClock()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    retry = Retry(attempts=5, initial=1.0, jitter="none", sleep=clock.sleep, instrument=False)
    assert not testing.is_testing()
    with testing.set_testing(True):
        assert testing.is_testing()
        assert run(retry.call(flaky)) == "ok"
    assert clock.sleeps == [0.0, 0.0]  # no waiting, yet still a retry
    assert not testing.is_testing()
    calls, clock.sleeps = 0, []
    assert run(retry.call(flaky)) == "ok"
    assert clock.sleeps == [1.0, 2.0]


def test_set_testing_can_cap_the_attempts() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    testing.set_testing(True, attempts=2)
    try:
        with pytest.raises(ConnectionError):
            run(Retry(attempts=5, instrument=False).call(down))
    finally:
        testing.set_testing(False)
    assert calls == 2 and not testing.is_testing()
    with pytest.raises(ValueError, match=r"attempts must be in \[1"):
        testing.set_testing(True, attempts=0)
    with pytest.raises(TypeError, match="on must be a bool"):
        testing.set_testing("yes")  # type: ignore[arg-type]


def test_testing_switch_reports_the_true_delay() -> None:
    tel = Telemetry()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError
        return "ok"

    with testing.set_testing(True):
        run(Retry(attempts=2, initial=3.0, name="op", **tel.kw).call(flaky))
    assert [v for _, v in tel.points("shannon.retry.delay")] == [(1, 0.0)]



# ------------------------------------------------------------------------- empty names
def _empty_name_entry_points() -> dict[str, Callable[[Any], object]]:
    from shannon_otel import AnomalyDetector, BreakerRegistry, ResourcePool, Saga, resilient, task

    async def work() -> None:
        pass

    return {
        "Saga": Saga,
        "CircuitBreaker": CircuitBreaker,
        "BreakerRegistry.get": lambda name: BreakerRegistry().get(name),
        "Degrade.flag": lambda name: Degrade(cheaper=work).flag(name),
        "Retry(name=)": lambda name: Retry(name=name),
        "resilient(name=)": lambda name: resilient(Retry(), name=name),
        "task(name=)": lambda name: task(work, name=name),
        "AnomalyDetector.last_score": lambda name: AnomalyDetector().last_score(name),
        "Wave": Wave,
        "ResourcePool": lambda name: ResourcePool(name, 1),
    }


@pytest.mark.parametrize("entry", sorted(_empty_name_entry_points()))
def test_an_empty_name_is_a_value_error_and_a_name_not_a_str_a_type_error_everywhere(entry: str) -> None:
    """An empty name was a TypeError at ``Saga("")``, ``CircuitBreaker("")``, ``BreakerRegistry().get("")``,
    ``Degrade.flag("")`` and the other names checked alike, but a ValueError at ``Wave("")`` and ``ResourcePool("",
    1)``: a str is the right type, its value is wrong (a ValueError, as for ``int("")``), whichever is called."""
    make = _empty_name_entry_points()[entry]
    with pytest.raises(ValueError, match="must be a non-empty str") as caught:
        make("")
    assert not isinstance(caught.value, TypeError)
    with pytest.raises(TypeError, match="must be a non-empty str"):
        make(b"fetch")


def test_an_empty_resource_attribute_key_is_a_value_error_as_an_empty_name_is() -> None:
    from shannon_otel import configure

    with pytest.raises(ValueError, match="resource_attributes must map non-empty str keys"):
        configure(resource_attributes={"": "x"}, exporter="none")
    with pytest.raises(TypeError, match="resource_attributes must map non-empty str keys"):
        configure(resource_attributes={1: "x"}, exporter="none")  # type: ignore[dict-item]
