"""Re-entrancy: hooks whose methods call the library back (the policy that called them, a wave), and
policies used from inside themselves."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from test_recovery_support import FakeClock

from shannon_otel import (
    BreakerState,
    BreakerTransition,
    CallFinished,
    CallObserver,
    CallStarted,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Hook,
    LoggingHook,
    ResourcePool,
    Retry,
    Timeout,
    Wave,
    WaveResult,
    task,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Seen(Hook):
    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def breaker_transition(self, event: BreakerTransition) -> None:
        self.pairs.append((event.from_state.value, event.to_state.value))


class Switch(Hook):
    """Changes the breaker's state from inside breaker_transition, as an operator's hook might."""

    def __init__(self, when: BreakerState, action: str) -> None:
        self.when, self.action = when, action
        self.breaker: CircuitBreaker | None = None

    def breaker_transition(self, event: BreakerTransition) -> None:
        if event.to_state is self.when:
            assert self.breaker is not None
            getattr(self.breaker, self.action)()


async def fail() -> None:
    raise ConnectionError("down")


def test_a_breaker_forced_open_by_a_hook_of_its_half_open_transition_admits_no_probe() -> None:
    # The call that moved the breaker to HALF_OPEN was admitted as its probe after a hook of that
    # transition had forced it open: the operation ran while the breaker said open.
    clock = FakeClock()
    switch = Switch(HALF_OPEN, "force_open")
    breaker = CircuitBreaker("kill-switch", failure_threshold=1, reset_timeout=10, clock=clock,
                             hooks=[switch], instrument=False)
    switch.breaker = breaker
    ran: list[int] = []

    async def operation() -> str:
        ran.append(1)
        return "ran"

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
        clock.now += 20
        with pytest.raises(CircuitOpenError):
            await breaker.call(operation)

    asyncio.run(asyncio.wait_for(main(), 10))
    assert ran == []
    assert breaker.state is OPEN


def test_a_breaker_reset_by_a_hook_of_its_half_open_transition_admits_the_call_closed() -> None:
    clock = FakeClock()
    switch = Switch(HALF_OPEN, "reset")
    breaker = CircuitBreaker("reset-on-probe", failure_threshold=1, reset_timeout=10, clock=clock,
                             hooks=[switch], instrument=False)
    switch.breaker = breaker

    async def operation() -> str:
        return "ran"

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
        clock.now += 20
        assert await breaker.call(operation) == "ran"

    asyncio.run(asyncio.wait_for(main(), 10))
    assert breaker.state is CLOSED


def test_a_transition_a_hook_makes_reaches_every_hook_after_the_one_that_caused_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A hook resetting the breaker from inside its breaker_transition: the hooks after it were handed
    # open -> closed before closed -> open, so the log's last line said open while the breaker was closed.
    switch, seen = Switch(OPEN, "reset"), Seen()
    breaker = CircuitBreaker("self-healing", failure_threshold=1, hooks=[switch, seen, LoggingHook()],
                             instrument=False)
    switch.breaker = breaker
    with caplog.at_level(logging.INFO, logger="shannon_otel"), pytest.raises(ConnectionError):
        asyncio.run(asyncio.wait_for(breaker.call(fail), 10))
    assert breaker.state is CLOSED
    assert seen.pairs == [("closed", "open"), ("open", "closed")]
    lines = [r.getMessage() for r in caplog.records if "'self-healing' is" in r.getMessage()]
    assert len(lines) == 2 and "is open" in lines[0] and "is closed" in lines[1]


def test_hooks_undoing_each_others_transitions_are_stopped_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Handed in order, transitions a hook makes are queued: two hooks undoing each other must not loop forever.
    opener, closer, seen = Switch(CLOSED, "force_open"), Switch(OPEN, "reset"), Seen()
    breaker = CircuitBreaker("ping-pong", failure_threshold=1, hooks=[opener, closer, seen], instrument=False)
    opener.breaker = closer.breaker = breaker

    async def main() -> Any:
        try:
            await breaker.call(fail)
        except (ConnectionError, CircuitOpenError) as exc:
            return exc
        return None

    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        assert isinstance(asyncio.run(asyncio.wait_for(main(), 10)), ConnectionError)
    assert 0 < len(seen.pairs) <= 64
    assert sum(opener.hook_errors.values()) + sum(closer.hook_errors.values()) == 1
    assert "changed its state 64 times from inside breaker_transition" in caplog.text
    assert breaker.state in (OPEN, CLOSED)


def test_a_breaker_called_recursively_through_itself_returns_the_users_result() -> None:
    breaker = CircuitBreaker("recursive", failure_threshold=3, instrument=False)

    async def factorial(n: int) -> int:
        if n <= 1:
            return 1
        return n * await breaker.call(factorial, n - 1)

    assert asyncio.run(asyncio.wait_for(breaker.call(factorial, 8), 10)) == 40320
    assert breaker.state is CLOSED



def test_a_nested_wave_task_naming_the_pool_its_enclosing_task_holds_fails_at_once_not_forever() -> None:
    # The outer task holds the pool's one permit while it runs the inner wave; the inner task waited for
    # that permit, and the outer task for the inner wave: a hang.
    pool = ResourcePool("db", 1)

    async def inner(i: int) -> int:
        return i

    async def outer(i: int) -> WaveResult[int]:
        return await Wave("inner", instrument=False).run([task(lambda: inner(i), pool=pool)])

    async def main() -> WaveResult[WaveResult[int]]:
        return await Wave("outer", instrument=False).run([task(lambda: outer(1), pool=pool)])

    result = asyncio.run(asyncio.wait_for(main(), 10))
    nested = result.results[0].value
    assert nested is not None
    error = nested.results[0].error
    assert isinstance(error, RuntimeError)
    assert "ResourcePool 'db' (limit 1) is held entirely by the wave tasks this task runs inside" in str(error)
    assert pool.in_use == 0


def test_a_pool_with_a_permit_to_spare_or_released_by_its_task_still_serves_nested_waves() -> None:
    pool, spare = ResourcePool("db", 1), ResourcePool("spare", 2)
    outer_done = asyncio.Event()
    background: list[asyncio.Task[list[int | None]]] = []

    async def inner(i: int) -> int:
        return i

    async def later() -> list[int | None]:  # work the task left running: it holds the pool no more
        await outer_done.wait()
        return (await Wave("later", instrument=False).run([task(lambda: inner(2), pool=pool)])).values()

    async def outer(i: int) -> list[int | None]:
        background.append(asyncio.create_task(later()))
        return (await Wave("inner", instrument=False).run([task(lambda: inner(i), pool=spare)])).values()

    async def main() -> tuple[list[Any], list[int | None]]:
        first = await Wave("outer", instrument=False).run([task(lambda: outer(1), pool=pool)])
        nested = await Wave("outer2", instrument=False).run([task(lambda: outer(3), pool=spare)])
        outer_done.set()
        return [first.values(), nested.values()], await background[0]

    values, late = asyncio.run(asyncio.wait_for(main(), 10))
    assert values == [[[1]], [[3]]]
    assert late == [2]



class Switching(dict[Any, Any]):
    """Last good values whose next pop (a call's store, or a served value's move to the most recently used end)
    first lets another thread's call of the same Degrade run to its end: the thread switch that can come between
    two steps of a call's update, made deterministic."""

    other: Any = None

    def pop(self, key: Any, *default: Any) -> Any:
        other, self.other = self.other, None
        if other is not None:
            thread = threading.Thread(target=lambda: asyncio.run(other()))
            thread.start()
            thread.join(10)
        return super().pop(key, *default)


def _switching(degrade: Degrade) -> Switching:
    goods = Switching()
    degrade._state.goods = goods
    return goods


def test_a_degrade_shared_by_event_loops_in_several_threads_never_raises_its_own_key_error() -> None:
    # Another thread's call stored its value and dropped this call's (max_keys=1) between this call's store
    # and its move_to_end: KeyError raised into the user's call in place of its result; and the same
    # between reading a last good value and serving it.
    outcome = {"fail": False}

    async def fetch(key: str) -> str:
        if outcome["fail"]:
            raise TimeoutError
        return f"fresh {key}"

    degrade = Degrade(last_good=True, key=lambda args, kwargs: args[0], max_keys=1, instrument=False)
    goods = _switching(degrade)

    async def other_thread() -> None:
        fails, outcome["fail"] = outcome["fail"], False
        await degrade.call(fetch, "other")
        outcome["fail"] = fails

    async def main() -> tuple[Any, Any]:
        goods.other = other_thread
        stored = await degrade.call(fetch, "mine")
        await degrade.call(fetch, "mine")  # stored again, not switched: the last good value to serve
        goods.other, outcome["fail"] = other_thread, True
        return stored, await degrade.call(fetch, "mine")

    stored, served = asyncio.run(asyncio.wait_for(main(), 10))
    assert stored.value == "fresh mine" and not stored.degraded
    assert served.value == "fresh mine" and served.degraded and served.mode == "last_good"


@pytest.mark.parametrize("instrument", [False, True])
def test_a_probe_calling_through_its_own_breaker_is_one_probe_and_closes_it(instrument: bool) -> None:
    # The probe (half_open_probes=1) called another function protected by the same breaker: that call was
    # rejected as a second probe, the CircuitOpenError failed the probe and the breaker opened again, at
    # every probe: it never closed while its service was healthy.
    clock = FakeClock()
    seen = Seen()
    breaker = CircuitBreaker("auth-api", failure_threshold=1, reset_timeout=10, clock=clock, hooks=[seen],
                             instrument=instrument)

    @breaker
    async def token() -> str:
        return "t"

    @breaker
    async def user() -> str:
        return "user with " + await token()

    async def main() -> str:
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
        clock.now += 20
        return await user()

    assert asyncio.run(asyncio.wait_for(main(), 10)) == "user with t"
    assert breaker.state is CLOSED
    assert seen.pairs == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_call_inside_its_breakers_probe_takes_and_gives_back_no_probe_slot() -> None:
    # Admitted as part of the probe, a nested call that is cancelled must not hand back a slot it never took
    # (a second probe would then be admitted beside the first).
    clock = FakeClock()
    breaker = CircuitBreaker("slots", failure_threshold=1, reset_timeout=10, clock=clock, instrument=False)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def cancelled_inner() -> None:
        raise asyncio.CancelledError

    async def probe() -> str:
        with pytest.raises(asyncio.CancelledError):
            await breaker.call(cancelled_inner)
        entered.set()
        await release.wait()
        return "probe"

    async def main() -> tuple[str, Any]:
        with pytest.raises(ConnectionError):
            await breaker.call(fail)
        clock.now += 20
        first = asyncio.create_task(breaker.call(probe))
        await entered.wait()
        try:
            second: Any = await breaker.call(fail)
        except (CircuitOpenError, ConnectionError) as exc:
            second = exc
        release.set()
        return await first, second

    first, second = asyncio.run(asyncio.wait_for(main(), 10))
    assert first == "probe"
    assert isinstance(second, CircuitOpenError)
    assert breaker.state is CLOSED


class Outcomes(Hook):
    """The call outcome of every protected call reporting to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def call_started(self, event: CallStarted) -> CallObserver:
        hook = self

        class Observer(CallObserver):
            def call_finished(self, event: CallFinished) -> None:
                hook.calls.append((event.operation, event.outcome.value))

        return Observer()


def _background_call(outcomes: Outcomes, started: list[asyncio.Task[Any]]) -> None:
    """Start, in the running task, a protected call left running in the background."""
    retry = Retry(attempts=1, name="background", hooks=[outcomes], instrument=False)
    started.append(asyncio.create_task(retry.call(asyncio.Event().wait)))


async def _cancel(background: asyncio.Task[Any]) -> None:
    background.cancel()  # long after: the application shuts down
    with pytest.raises(asyncio.CancelledError):
        await background


def test_work_left_running_past_an_expired_timeout_policy_is_cancelled_not_timed_out() -> None:
    # The background call inherited the Timeout's expired scope: its own cancellation, later, was recorded
    # as that timeout (a failure with error.type TimeoutError, attempt outcome timeout).
    outcomes, started = Outcomes(), list[asyncio.Task[Any]]()

    async def operation() -> None:
        _background_call(outcomes, started)
        await asyncio.Event().wait()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await Timeout(0.001, instrument=False).call(operation)
        await _cancel(started[0])

    asyncio.run(asyncio.wait_for(main(), 10))
    assert outcomes.calls == [("background", "cancellation")]


def test_work_left_running_past_a_timed_out_wave_task_is_cancelled_not_timed_out() -> None:
    outcomes, started = Outcomes(), list[asyncio.Task[Any]]()

    async def job() -> None:
        _background_call(outcomes, started)
        await asyncio.Event().wait()

    async def main() -> None:
        result = await Wave("w", task_timeout=0.001, instrument=False).run([job])
        assert isinstance(result.results[0].error, TimeoutError)
        await _cancel(started[0])

    asyncio.run(asyncio.wait_for(main(), 10))
    assert outcomes.calls == [("background", "cancellation")]
