"""Saga: reverse-order rollback, failing compensations, cancellation, and its spans and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import random
from collections.abc import Coroutine
from typing import Any

import pytest
from _abandoned import abandoned_with_its_loop
from _open_spans import OpenSpans
from opentelemetry.trace import StatusCode
from test_recovery_support import Telemetry, run

from shannon_otel._telemetry import Outcome
from shannon_otel.recovery import Retry, Saga, SagaError, Step
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class Ledger:
    def __init__(self) -> None:
        self.log: list[str] = []

    def action(self, name: str, fail: bool = False) -> Any:
        async def act() -> str:
            self.log.append(f"do {name}")
            if fail:
                raise RuntimeError(f"{name} failed")
            return f"{name}-id"
        return act

    def undo(self, name: str, fail: bool = False) -> Any:
        async def compensate(value: str) -> None:
            self.log.append(f"undo {name} {value}")
            if fail:
                raise OSError(f"cannot undo {name}")
        return compensate


def test_success_returns_the_result_and_one_span_per_step() -> None:
    tel, ledger = Telemetry(), Ledger()
    saga = Saga("order", **tel.kw)
    result = run(saga.run(
        Step("reserve", ledger.action("reserve"), ledger.undo("reserve")),
        Step("charge", ledger.action("charge"), ledger.undo("charge")),
    ))
    assert result.outcome is Outcome.SUCCESS
    assert result.completed == ("reserve", "charge") and result.values == ("reserve-id", "charge-id")
    assert result.compensated == () and not result.rolled_back
    root = tel.span("saga order")
    assert [s.name for s in tel.children(root)] == ["step reserve", "step charge"]
    assert root.attributes is not None and root.attributes["shannon.saga.outcome"] == "success"


def test_failure_compensates_completed_steps_in_reverse_order() -> None:
    tel, ledger = Telemetry(), Ledger()
    saga = Saga("order", **tel.kw)
    with pytest.raises(SagaError) as info:
        run(saga.run(
            Step("reserve", ledger.action("reserve"), ledger.undo("reserve")),
            Step("notify", ledger.action("notify")),  # nothing to undo
            Step("charge", ledger.action("charge"), ledger.undo("charge")),
            Step("ship", ledger.action("ship", fail=True), ledger.undo("ship")),
        ))
    assert ledger.log == [
        "do reserve", "do notify", "do charge", "do ship", "undo charge charge-id", "undo reserve reserve-id"]
    result = info.value.result
    assert isinstance(info.value.__cause__, RuntimeError)
    assert result.outcome is Outcome.FAILURE
    assert result.completed == ("reserve", "notify", "charge")
    assert result.compensated == ("charge", "reserve") and result.rolled_back

    root = tel.span("saga order")
    assert [s.name for s in tel.children(root)] == [
        "step reserve", "step notify", "step charge", "step ship", "compensate charge", "compensate reserve"]
    ship = tel.span("step ship")
    assert ship.status.status_code is StatusCode.ERROR
    assert ship.attributes is not None and ship.attributes["error.type"] == "RuntimeError"
    assert root.attributes is not None and root.attributes["shannon.saga.outcome"] == "failure"
    assert tel.points("shannon.compensations") == [
        ({"shannon.saga.name": "order", "shannon.compensation.outcome": "success"}, 2)]


def test_a_failing_compensation_is_reported_and_the_rest_still_run() -> None:
    tel, ledger = Telemetry(), Ledger()
    saga = Saga("trip", **tel.kw)

    async def main() -> None:
        async with saga.begin() as tx:
            await tx.step("flight", ledger.action("flight"), compensate=ledger.undo("flight"))
            await tx.step("hotel", ledger.action("hotel"), compensate=ledger.undo("hotel", fail=True))
            await tx.step("car", ledger.action("car", fail=True), compensate=ledger.undo("car"))

    with pytest.raises(SagaError) as info:
        run(main())
    result = info.value.result
    assert ledger.log[-2:] == ["undo hotel hotel-id", "undo flight flight-id"]
    assert result.compensated == ("flight",)
    assert set(result.failed_compensations) == {"hotel"}
    assert isinstance(info.value.compensation_errors["hotel"], OSError)
    assert not result.rolled_back
    assert "hotel" in str(info.value)
    failed = tel.span("compensate hotel")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["shannon.compensation.outcome"] == "failure"
    assert tel.span("saga trip").status.status_code is StatusCode.ERROR
    assert sorted(tel.points("shannon.compensations"), key=lambda p: p[0]["shannon.compensation.outcome"]) == [
        ({"shannon.saga.name": "trip", "shannon.compensation.outcome": "failure"}, 1),
        ({"shannon.saga.name": "trip", "shannon.compensation.outcome": "success"}, 1),
    ]


def test_cancellation_compensates_then_is_reraised() -> None:
    tel, ledger = Telemetry(), Ledger()
    saga = Saga("order", **tel.kw)
    tx_holder: list[Any] = []

    async def main() -> None:
        async def body() -> None:
            async with saga.begin() as tx:
                tx_holder.append(tx)
                await tx.step("a", ledger.action("a"), compensate=ledger.undo("a"))
                await tx.step("b", ledger.action("b"), compensate=ledger.undo("b"))
                await tx.step("wait", lambda: asyncio.Event().wait())

        task = asyncio.create_task(body())
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert ledger.log[-2:] == ["undo b b-id", "undo a a-id"]
    result = tx_holder[0].result
    assert result.outcome is Outcome.CANCELLATION and result.compensated == ("b", "a")
    wait = tel.span("step wait")
    assert wait.attributes is not None and wait.attributes["shannon.saga.outcome"] == "cancellation"
    assert wait.status.status_code is not StatusCode.ERROR
    root = tel.span("saga order")
    assert root.attributes is not None and root.attributes["shannon.saga.outcome"] == "cancellation"


def test_each_run_is_independent() -> None:
    ledger = Ledger()
    saga = Saga("s", instrument=False)

    async def main() -> None:
        async def one(i: int) -> Any:
            async with saga.begin() as tx:
                await tx.step(f"a{i}", ledger.action(f"a{i}"), compensate=ledger.undo(f"a{i}"))
                await asyncio.sleep(0)
                if i % 2:
                    raise ValueError(i)
            return tx.result

        results = await asyncio.gather(*(one(i) for i in range(4)), return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["SagaResult", "SagaError"] * 2
        assert [r.result.compensated for r in results if isinstance(r, SagaError)] == [("a1",), ("a3",)]

    run(main())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty str"):  # a str: the type is right
        Saga("")
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        Saga(7)  # type: ignore[arg-type]


@pytest.mark.parametrize("container", [list, tuple])
def test_steps_given_as_one_list_are_refused_with_the_call_to_write(container: type) -> None:
    # run([a, b]) said "steps must be Step objects, got [Step(...), Step(...)] at position 0": the steps
    # themselves were right, the call was not.
    ran: list[str] = []

    async def act() -> str:
        ran.append("a")
        return "a"

    steps = container([Step("a", act), Step("b", act)])
    with pytest.raises(TypeError, match=r"separate arguments: run\(\*steps\), got one " + container.__name__):
        run(Saga("order").run(steps))
    assert ran == []
    assert run(Saga("order").run(*steps)).values == ("a", "a")


def test_a_wave_task_timeout_inside_a_saga_step_is_recorded_as_a_timeout() -> None:
    """The wave's per-task timeout cancels the step: the step and the saga say timeout, and it rolls back."""
    from shannon_otel import Wave
    from shannon_otel import _telemetry as tel
    from shannon_otel.testing import InMemoryTelemetry

    otel = InMemoryTelemetry()
    saga = Saga("order", **otel.providers)
    undone: list[str] = []

    async def reserve() -> str:
        return "r1"

    async def release(_: str) -> None:
        undone.append("reserve")

    async def slow() -> None:
        await asyncio.sleep(10)

    async def task() -> None:
        await saga.run(Step("reserve", reserve, compensate=release), Step("pay", slow))

    wave: Wave[None] = Wave("orders", task_timeout=0.05, **otel.providers)
    result = asyncio.run(wave.run([task]))
    assert result.results[0].outcome is Outcome.TIMEOUT
    assert undone == ["reserve"]
    pay = otel.span("step pay")
    assert pay.attributes is not None
    assert pay.attributes[tel.SAGA_OUTCOME] == "timeout"
    assert pay.status.status_code is StatusCode.ERROR
    span = otel.span("saga order")
    assert span.attributes is not None
    assert span.attributes[tel.SAGA_OUTCOME] == "timeout"
    assert span.status.description == "timeout"
    assert span.attributes[tel.ERROR_TYPE] == "TimeoutError"  # as on the step span it cut off


def _rollback_under_cancel(seed: int) -> tuple[list[str], Any]:
    """A saga fails; while its compensations run (each awaiting virtual time) the task is cancelled."""
    rng = random.Random(seed)
    undone: list[str] = []
    holder: list[Any] = []

    def undo(name: str, duration: float) -> Any:
        async def compensate(value: str) -> None:
            await asyncio.sleep(duration)
            undone.append(name)
        return compensate

    async def main() -> None:
        saga = Saga("order", instrument=False)

        async def body() -> None:
            async with saga.begin() as tx:
                holder.append(tx)
                for k in range(4):
                    await tx.step(f"s{k}", ledger_value(k), compensate=undo(f"s{k}", rng.uniform(0.1, 1.0)))
                raise ValueError("step failed")

        task = asyncio.create_task(body())
        await asyncio.sleep(rng.uniform(0.0, 2.5))  # lands during the rollback most of the time
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SagaError):
            await task

    run_virtual(main())
    return undone, holder[0].result


def ledger_value(k: int) -> Any:
    async def act() -> int:
        return k
    return act


@pytest.mark.parametrize("seed", range(40))
def test_a_cancellation_during_rollback_never_cuts_a_compensation_short(seed: int) -> None:
    """Issue 11 observed 7: a cancellation cut a running compensation off, which was never retried."""
    undone, result = _rollback_under_cancel(seed)
    assert undone == ["s3", "s2", "s1", "s0"]
    assert result.compensated == ("s3", "s2", "s1", "s0") and result.uncompensated == ()


def test_a_cancellation_during_rollback_is_reraised_after_it() -> None:
    undone: list[str] = []

    async def slow_undo(value: int) -> None:
        await asyncio.sleep(1.0)
        undone.append("a")

    async def main() -> None:
        saga = Saga("order", instrument=False)

        async def body() -> None:
            async with saga.begin() as tx:
                await tx.step("a", ledger_value(1), compensate=slow_undo)
                raise ValueError("x")

        task = asyncio.create_task(body())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    assert undone == ["a"]


def test_a_compensation_past_its_timeout_is_reported_uncompensated_loudly(caplog: pytest.LogCaptureFixture) -> None:
    tel = Telemetry()
    saga = Saga("order", compensation_timeout_s=2.0, **tel.kw)

    async def hang(value: int) -> None:
        await asyncio.sleep(3600)

    async def main() -> Any:
        async with saga.begin() as tx:
            await tx.step("a", ledger_value(1), compensate=hang)
            await tx.step("b", ledger_value(2), compensate=lambda v: asyncio.sleep(0))
            raise ValueError("x")

    with pytest.raises(SagaError) as info:
        run_virtual(main())
    result = info.value.result
    assert result.compensated == ("b",) and result.uncompensated == ("a",)
    assert isinstance(result.failed_compensations["a"], TimeoutError)
    # what timed out and the limit, as a Timeout policy's says (it was a bare TimeoutError())
    assert str(result.failed_compensations["a"]) == "compensation timed out after 2.0 s (Saga compensation_timeout_s)"
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "compensation of step 'a' of saga 'order': timeout: TimeoutError"]
    root = tel.span("saga order")
    assert root.status.status_code is StatusCode.ERROR
    comp = tel.span("compensate a")
    assert comp.attributes is not None and comp.attributes["shannon.compensation.outcome"] == "timeout"


def test_misuse_is_refused_before_any_work() -> None:
    saga = Saga("s", instrument=False)
    ran: list[int] = []

    async def act() -> int:
        ran.append(1)
        return 1

    async def main() -> None:
        tx = saga.begin()
        with pytest.raises(RuntimeError, match="only inside `async with"):
            await tx.step("a", act)
        async with tx:
            await tx.step("a", act)
        with pytest.raises(RuntimeError, match="only inside `async with"):
            await tx.step("b", act)
        with pytest.raises(TypeError, match="steps must be Step objects"):
            await saga.run("not a step")  # type: ignore[arg-type]
        # a sync action: a clear TypeError naming it, not "can't be awaited" (raised as it is: see below)
        with pytest.raises(TypeError, match="action must be an async callable"):
            await saga.run(Step("x", lambda: 5))  # type: ignore[arg-type,return-value]

    run_virtual(main())
    assert ran == [1]
    with pytest.raises(ValueError, match="compensation_timeout_s"):
        Saga("s", compensation_timeout_s=0)


# ------------------------------------------------------------------ saga steps running concurrently
@pytest.mark.parametrize("stubborn", [False, True])
def test_a_gathered_step_still_running_when_its_sibling_fails_never_stays_in_effect(stubborn: bool) -> None:
    """``gather(tx.step(a), tx.step(b))`` with b failing first: the rollback ran at once while a went on,
    a completed after the saga had ended and stayed in effect, never compensated, and the result said
    it was rolled back. Now the step still running is cancelled and waited for: if it completes all the
    same (it swallows the cancellation), it is compensated like any completed step."""
    tel = InMemoryTelemetry()
    written: list[str] = []
    undone: list[str] = []

    async def write() -> str:
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            if not stubborn:
                raise
            await asyncio.sleep(0.2)  # finishes its write anyway
        written.append("a")
        return "a"

    async def undo(value: str) -> None:
        undone.append(value)

    async def fail() -> None:
        await asyncio.sleep(0.5)
        raise ValueError("b failed")

    async def main() -> Any:
        saga = Saga("gathered", **tel.providers)
        with pytest.raises(SagaError) as caught:
            async with saga.begin() as tx:
                await asyncio.gather(tx.step("a", write, compensate=undo), tx.step("b", fail))
        await asyncio.sleep(2.0)  # long after: nothing completes late
        return caught.value.result

    result = run_virtual(main())
    assert undone == written  # whatever was written was undone
    assert result.completed == result.compensated == (("a",) if stubborn else ())
    assert undone == (["a"] if stubborn else [])
    assert result.rolled_back
    saga_span = tel.span("saga gathered")
    assert {s.name for s in tel.children(saga_span)} == {"step a", "step b"} | (
        {"compensate a"} if stubborn else set())


def test_a_step_never_awaited_inside_the_block_ends_before_the_saga_does() -> None:
    """A step still running in a task never awaited when the block ends is cancelled, never completing after the
    saga; and the block fails naming it (a MisuseError), as for a step never started."""
    written: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(1.0)
        written.append("late")
        return "late"

    tx = Saga("unawaited", instrument=False).begin()
    tasks: list[asyncio.Task[Any]] = []

    async def block() -> None:
        async with tx:
            tasks.append(asyncio.create_task(tx.step("late", slow)))
            await asyncio.sleep(0)

    async def main() -> tuple[Any, asyncio.Task[Any]]:
        with pytest.raises(TypeError, match=r"step 'late' was still running when the saga's block ended"):
            await block()
        await asyncio.sleep(2.0)
        return tx.result, tasks[0]

    result, pending = run_virtual(main())
    assert pending.cancelled()  # cancelled when the block ended, not left to complete after the saga
    assert result.completed == () and written == []
    assert result.outcome is Outcome.FAILURE


@pytest.mark.parametrize("stubborn", [False, True])
def test_a_step_still_running_when_the_block_ends_normally_fails_the_saga_and_rolls_it_back(stubborn: bool) -> None:
    """Bug: ``asyncio.create_task(tx.step("ship", ...))`` still running when the block ended normally was cancelled
    and the saga reported a success with ``completed=("reserve",)``: nothing rolled back, only the step's span said
    it was cut off, though its side effects may have been half made (a step never started in the same place was
    already a MisuseError and a rollback). Now it is the same misuse: the block fails with a MisuseError naming the
    step, after the rollback of every completed step (one that completes all the same, swallowing its cancellation,
    is compensated too, newest first); the saga's result, span and compensation counter say so."""
    tel = InMemoryTelemetry()
    ledger = Ledger()
    started = asyncio.Event()

    async def ship() -> str:
        ledger.log.append("do ship")
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only the saga's cancellation ends it
        except asyncio.CancelledError:
            if not stubborn:
                raise
        ledger.log.append("shipped anyway")
        return "ship-id"

    tx = Saga("order", **tel.providers).begin()

    async def main() -> asyncio.Task[Any]:
        async with tx:
            await tx.step("reserve", ledger.action("reserve"), compensate=ledger.undo("reserve"))
            task = asyncio.create_task(tx.step("ship", ship, compensate=ledger.undo("ship")))
            await started.wait()
        return task

    with pytest.raises(TypeError, match=r"step 'ship' was still running when the saga's block ended: await every "
                                        r"step inside the block") as raised:
        run(main())
    assert not isinstance(raised.value, SagaError)
    result = tx.result
    assert result is not None and result.outcome is Outcome.FAILURE and result.error is raised.value
    if stubborn:
        assert ledger.log == ["do reserve", "do ship", "shipped anyway", "undo ship ship-id", "undo reserve reserve-id"]
        assert result.completed == ("reserve", "ship") and result.compensated == ("ship", "reserve")
    else:
        assert ledger.log == ["do reserve", "do ship", "undo reserve reserve-id"]
        assert result.completed == result.compensated == ("reserve",)
    assert result.rolled_back
    root = tel.span("saga order")
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None and root.attributes["shannon.saga.outcome"] == "failure"
    assert str(root.attributes["error.type"]).endswith("MisuseError")
    ship_span = tel.span("step ship")
    assert ship_span.attributes is not None
    assert ship_span.attributes["shannon.saga.outcome"] == ("success" if stubborn else "cancellation")
    assert {s.name for s in tel.children(root)} == {"step reserve", "step ship", "compensate reserve"} | (
        {"compensate ship"} if stubborn else set())
    point = tel.point("shannon.compensations", shannon_compensation_outcome="success")
    assert point.value == (2 if stubborn else 1)


def test_steps_never_started_and_still_running_are_named_in_one_misuse() -> None:
    """A forgotten ``await`` and a step still running in a task, in one block: the MisuseError names both."""
    ledger = Ledger()
    started = asyncio.Event()

    async def held() -> str:
        started.set()
        await asyncio.Event().wait()
        return "held"

    tasks: list[asyncio.Task[Any]] = []

    async def main() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            tx.step("pay", ledger.action("pay"))  # type: ignore[unused-coroutine]
            tasks.append(asyncio.create_task(tx.step("ship", held)))
            await started.wait()

    with pytest.raises(TypeError, match=r"never awaited \('pay'\).*; step 'ship' was still running"):
        run(main())
    assert ledger.log == [] and tasks[0].cancelled()


def test_every_step_of_a_repeated_name_left_in_effect_is_reported() -> None:
    """Three ``tx.step("reserve", ...)`` in a loop whose compensations all failed: ``failed_compensations``
    was keyed by name, so ``uncompensated`` said one step was left in effect, not three."""
    async def reserve() -> str:
        return "seat"

    async def release(value: str) -> None:
        raise ConnectionError("release failed")

    async def pay() -> None:
        raise ValueError("card declined")

    async def main() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            for _ in range(3):
                await tx.step("reserve", reserve, compensate=release)
            await tx.step("pay", pay)

    with pytest.raises(SagaError) as caught:
        run_virtual(main())
    result = caught.value.result
    assert result.completed == ("reserve", "reserve", "reserve")
    assert sorted(result.uncompensated) == ["reserve", "reserve#2", "reserve#3"]
    assert all(isinstance(e, ConnectionError) for e in result.failed_compensations.values())


def test_a_failed_saga_span_says_why_as_every_failed_span_does() -> None:
    """The saga span of a failed transaction was ERROR with neither a description nor `error.type` (the
    semantic conventions' "Recording errors": a failed operation's span SHOULD carry both): a red span in
    Jaeger with no reason on it. It now carries the error that failed the block (a step's, or the block's own),
    as the step span does; a failed compensation still heads its description."""
    tel, ledger = Telemetry(), Ledger()
    with pytest.raises(SagaError):
        run(Saga("order", **tel.kw).run(
            Step("reserve", ledger.action("reserve"), ledger.undo("reserve")),
            Step("ship", ledger.action("ship", fail=True)),
        ))
    span = tel.span("saga order")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: ship failed"
    assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"

    tel = Telemetry()

    async def main() -> None:
        async with Saga("trip", **tel.kw).begin() as tx:
            await tx.step("hotel", ledger.action("hotel"), compensate=ledger.undo("hotel", fail=True))
            raise KeyError("no car")

    with pytest.raises(SagaError):
        run(main())
    span = tel.span("saga trip")
    assert span.status.description == "compensations failed: hotel"
    assert span.attributes is not None and span.attributes["error.type"] == "KeyError"


def test_an_error_the_saga_block_raises_itself_is_recorded_once_on_the_saga_span() -> None:
    """An error raised in the block (not in a step) ended the saga span, the innermost span of ours it ended,
    yet it was an `exception` event nowhere; a step's error keeps its one event on the step span."""
    tel, ledger = Telemetry(), Ledger()

    async def main() -> None:
        async with Saga("trip", **tel.kw).begin() as tx:
            await tx.step("hotel", ledger.action("hotel"), compensate=ledger.undo("hotel"))
            raise KeyError("no car")

    with pytest.raises(SagaError):
        run(main())
    [event] = [e for e in tel.span("saga trip").events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "KeyError"

    tel = Telemetry()
    with pytest.raises(SagaError):
        run(Saga("order", **tel.kw).run(Step("ship", ledger.action("ship", fail=True))))
    assert [e.name for e in tel.span("saga order").events] == []
    assert [e.name for e in tel.span("step ship").events] == ["exception"]


class _Interrupt(BaseException):
    """Propagates out of the saga unwrapped (as KeyboardInterrupt would), after the rollback."""


def test_a_base_exception_ending_the_saga_and_its_task_is_recorded_once() -> None:
    from shannon_otel import Wave

    otel = InMemoryTelemetry()

    async def task() -> None:
        async with Saga("s", **otel.providers).begin():
            raise _Interrupt("stop")

    with pytest.raises(BaseExceptionGroup) as info:  # the wave's task group passes it on, grouped
        run_virtual(Wave[None]("w", **otel.providers).run([task]))
    assert isinstance(info.value.exceptions[0], _Interrupt)
    events = [(s.name, e.name) for s in otel.spans() for e in s.events if e.name == "exception"]
    assert events == [("saga s", "exception")]
    assert otel.span("task w").status.status_code is StatusCode.ERROR
def test_a_sync_action_runs_once_is_compensated_and_its_type_error_is_raised_as_it_is() -> None:
    """A sync ``def`` given as a step's action has run when its result turns out not to be awaitable. The saga
    left it out of ``completed`` (never compensated, while ``rolled_back`` said all was undone) and raised
    ``SagaError``, which a ``Retry`` around the saga retried: the card was charged three times, never refunded.
    Now the step is completed and compensated, and the TypeError goes through the saga and the retry as it does
    through every policy (``NotAwaitableError``): the action runs once."""
    ledger: list[str] = []

    def charge() -> str:  # sync by mistake
        ledger.append("charge")
        return "receipt"

    async def refund(receipt: str) -> None:
        ledger.append(f"refund {receipt}")

    transactions: list[Any] = []

    async def order() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            transactions.append(tx)
            await tx.step("charge", charge, compensate=refund)  # type: ignore[arg-type]

    retry = Retry(attempts=3, initial=0.0, jitter="none", instrument=False)
    with pytest.raises(TypeError, match="action must be an async callable") as caught:
        run_virtual(retry.call(order))
    assert not isinstance(caught.value, SagaError)
    assert ledger == ["charge", "refund receipt"]
    [tx] = transactions
    assert tx.result.completed == tx.result.compensated == ("charge",) and tx.result.values == ("receipt",)


def test_a_step_run_again_with_the_coroutine_it_already_awaited_is_refused_naming_the_mistake() -> None:
    """``Step("reserve", lambda: coro)`` run again (a ``Retry`` around ``saga.run``): the second run awaited the
    finished coroutine, and the retry ended on "RuntimeError: cannot reuse already awaited coroutine" in a
    SagaError, in place of the step's own error, after retrying it. Now the re-run is refused with a TypeError
    naming the action, raised as it is (no retry acts on it), as the policies refuse one coroutine per attempt."""
    ledger: list[str] = []

    async def reserve() -> str:
        ledger.append("reserve")
        return "seat"

    async def release(seat: str) -> None:
        ledger.append(f"release {seat}")

    async def pay() -> None:
        raise ValueError("card declined")

    async def main() -> None:
        once = reserve()
        steps = (Step("reserve", lambda: once, release), Step("pay", pay))
        retry = Retry(attempts=3, initial=0.0, jitter="none", instrument=False)
        await retry.call(Saga("order", instrument=False).run, *steps)

    with pytest.raises(TypeError, match="action must return a new awaitable each time") as caught:
        run_virtual(main())
    assert not isinstance(caught.value, SagaError)
    assert ledger == ["reserve", "release seat"]  # the first run, rolled back; the second refused, run once


def test_a_step_named_like_the_key_of_a_repeated_name_is_still_reported_left_in_effect() -> None:
    """Steps "a", "a" and "a#2" whose compensations all failed: the second "a" is keyed "a#2", and so was the
    third step, whose failure overwrote it: ``uncompensated`` listed two steps left in effect, not three."""
    async def act() -> int:
        return 1

    async def undo(value: int) -> None:
        raise ConnectionError("undo failed")

    async def pay() -> None:
        raise ValueError("card declined")

    async def main() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            for name in ("a", "a", "a#2"):
                await tx.step(name, act, compensate=undo)
            await tx.step("pay", pay)

    with pytest.raises(SagaError) as caught:
        run_virtual(main())
    result = caught.value.result
    assert len(result.uncompensated) == len(result.completed) == 3
    assert sorted(result.uncompensated) == ["a", "a#2", "a#2#2"]


# ------------------------------------------------------------------ the saga's clock
class _ClockBrokeError(Exception):
    pass


def test_a_clock_breaking_during_the_rollback_still_compensates_every_step_and_ends_every_span() -> None:
    """The clock (it times the compensations) was read unguarded in the rollback: a clock raising there
    stopped it, so the card-declined order kept its reservation and payment hold (neither compensation ran,
    neither reported) and the saga span was never ended. Now the rollback runs to its end, every span is
    ended, ``tx.result`` says what was compensated, and the SagaError is raised: the clock's error, which only timed
    the compensations, is logged (raised in its place, it cost the caller that error; test_clock_later_readings)."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    armed: list[bool] = []

    def clock() -> float:
        if armed:
            raise _ClockBrokeError("the clock broke")
        return 0.0

    undone: list[str] = []

    async def reserve() -> str:
        return "seat"

    async def hold() -> str:
        return "hold"

    async def undo(value: str) -> None:
        undone.append(value)

    async def declined() -> None:
        armed.append(True)
        raise ValueError("card declined")

    saga = Saga("order", clock=clock, **tel.providers)
    tx = saga.begin()

    async def main() -> None:
        async with tx:
            await tx.step("reserve", reserve, compensate=undo)
            await tx.step("hold", hold, compensate=undo)
            await tx.step("pay", declined)

    with pytest.raises(SagaError) as caught:
        run_virtual(main())
    assert isinstance(caught.value.__cause__, ValueError)
    assert undone == ["hold", "seat"]
    assert tx.result is not None and tx.result.compensated == ("hold", "reserve") and tx.result.rolled_back
    assert spans.open == {}
    assert tel.span("saga order").attributes["shannon.saga.outcome"] == "failure"  # type: ignore[index]
    assert [(dict(p.attributes), p.value) for p in tel.points("shannon.compensations")] == [
        ({"shannon.saga.name": "order", "shannon.compensation.outcome": "success"}, 2)]
    tel.shutdown()


def test_a_clock_not_reading_seconds_is_refused_before_any_step_runs() -> None:
    """``Saga(clock=datetime.now)`` (a slip for ``time.time``) was read only in a rollback: every saga that
    succeeded ran as if it were right, and the first that failed raised TypeError from the middle of its
    rollback, its steps left in effect. The clock is read as the saga begins, as a wave reads its own."""
    ran: list[int] = []

    async def act() -> int:
        ran.append(1)
        return 1

    saga = Saga("order", clock=datetime.datetime.now, instrument=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^clock must return seconds \(a real number\), got datetime"):
        run_virtual(saga.run(Step("a", act)))
    with pytest.raises(ValueError, match=r"^clock must return finite seconds, got nan"):
        run_virtual(Saga("order", clock=lambda: math.nan, instrument=False).run(Step("a", act)))
    assert ran == []


def test_a_sync_compensation_is_raised_as_it_is_and_no_retry_runs_the_saga_again() -> None:
    """A sync ``def`` given as a compensation was recorded as that compensation's failure inside a ``SagaError``,
    which a ``Retry`` around the saga retried (the card charged and the refund misrun three times) and a
    ``Fallback`` answered with a result: the TypeError the docs promise never reached the caller. Now it is raised
    as it is once the rollback has ended (``NotAwaitableError``, as a sync action's), so no policy acts on it; its
    step stays listed as left in effect (nothing tells what the sync function undid)."""
    ledger: list[str] = []

    async def charge() -> str:
        ledger.append("charge")
        return "receipt"

    def refund(receipt: str) -> None:  # sync by mistake
        ledger.append(f"refund {receipt}")

    async def ship() -> None:
        raise ConnectionError("carrier down")

    transactions: list[Any] = []

    async def order() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            transactions.append(tx)
            await tx.step("charge", charge, compensate=refund)  # type: ignore[arg-type]
            await tx.step("ship", ship)

    retry = Retry(attempts=3, initial=0.0, jitter="none", instrument=False)
    with pytest.raises(TypeError, match=r"^compensate must be an async callable") as caught:
        run_virtual(retry.call(order))
    assert not isinstance(caught.value, SagaError)
    assert isinstance(caught.value.__context__, ConnectionError)  # the step's error it was raised after
    assert ledger == ["charge", "refund receipt"]
    [tx] = transactions
    assert tx.result.completed == ("charge",) and tx.result.uncompensated == ("charge",)
    assert tx.result.failed_compensations["charge"] is caught.value


def test_a_compensation_returning_the_coroutine_it_already_awaited_is_refused_naming_the_mistake() -> None:
    """``Step("reserve", reserve, lambda seat: release_coro)`` run twice (each run failing): the second rollback
    awaited the finished coroutine, and "RuntimeError: cannot reuse already awaited coroutine" was recorded as the
    compensation's failure inside a SagaError, which a ``Retry`` would retry. Now it is refused naming
    ``compensate`` (as the action's is) and raised as it is after the rollback; its step is listed left in effect
    (it never ran this time)."""
    released: list[str] = []

    async def reserve() -> str:
        return "seat"

    async def release() -> None:
        released.append("seat")

    async def pay() -> None:
        raise ValueError("card declined")

    once = release()
    step = Step("reserve", reserve, lambda seat: once)
    saga = Saga("order", instrument=False)
    with pytest.raises(SagaError):
        run_virtual(saga.run(step, Step("pay", pay)))
    with pytest.raises(TypeError, match=r"^compensate must return a new awaitable each time it is called") as caught:
        run_virtual(saga.run(step, Step("pay", pay)))
    assert not isinstance(caught.value, SagaError)
    assert released == ["seat"]


@pytest.mark.parametrize("bad", ["action arity", "action not callable", "compensate arity", "name"])
def test_a_step_refused_for_its_arguments_inside_the_block_is_raised_as_it_is(bad: str) -> None:
    """``tx.step("ship", lambda order: ...)`` (an argument of the wrong kind) was refused with a plain TypeError
    inside the block, which the saga raised as a SagaError: a ``Retry`` around the saga retried it, charging the
    card (and refunding it) on each try for a call that could never work. It is now a ``MisuseError`` (a
    TypeError naming the argument), raised as it is after the rollback, as through every policy."""
    ledger: list[str] = []

    async def charge() -> str:
        ledger.append("charge")
        return "receipt"

    async def refund(receipt: str) -> None:
        ledger.append(f"refund {receipt}")

    async def ship() -> None:
        pass

    name: Any = None if bad == "name" else "ship"
    action: Any = {"action arity": lambda order: ship(), "action not callable": "ship()"}.get(bad, ship)
    compensate: Any = (lambda: None) if bad == "compensate arity" else None

    async def order() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            await tx.step("charge", charge, compensate=refund)
            await tx.step(name, action, compensate=compensate)

    retry = Retry(attempts=3, initial=0.0, jitter="none", instrument=False)
    with pytest.raises(TypeError, match=r"^(name|action|compensate) must be") as caught:
        run_virtual(retry.call(order))
    assert not isinstance(caught.value, SagaError)
    assert ledger == ["charge", "refund receipt"]


@pytest.mark.parametrize("call", ["compensate positional", "action missing", "unknown keyword"])
def test_a_step_given_the_wrong_number_of_arguments_inside_the_block_is_raised_as_it_is(call: str) -> None:
    """``tx.step("ship", ship, release)`` (``compensate`` is keyword-only in ``tx.step``, positional in ``Step``), a
    missing ``action`` or an unknown keyword was Python's own TypeError, raised in the block before any check of
    ours ran: the saga raised it as a SagaError, so a ``Retry`` around the saga charged the card (and refunded it)
    on each try for a call that could never work (docs/reliability.md says wrong arguments are raised as they are).
    It is now a ``MisuseError`` (a TypeError), raised as it is after the rollback."""
    ledger: list[str] = []

    async def charge() -> str:
        ledger.append("charge")
        return "receipt"

    async def refund(receipt: str) -> None:
        ledger.append(f"refund {receipt}")

    async def ship() -> None:
        ledger.append("ship")

    async def release(value: None) -> None:
        pass

    async def order() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            await tx.step("charge", charge, compensate=refund)
            step: Any = tx.step  # the wrong calls, as a user would write them
            if call == "compensate positional":
                await step("ship", ship, release)
            elif call == "action missing":
                await step("ship")
            else:
                await step("ship", ship, compensation=release)

    retry = Retry(attempts=3, initial=0.0, jitter="none", instrument=False)
    with pytest.raises(TypeError, match=r"^tx\.step\(\) takes \(name, action, \*, compensate=None\): ") as caught:
        run_virtual(retry.call(order))
    assert not isinstance(caught.value, SagaError)
    assert ledger == ["charge", "refund receipt"]  # once: not retried, and the step never ran


def test_a_compensation_raising_its_own_timeout_error_is_a_failure_not_the_sagas_timeout() -> None:
    """A compensation whose own I/O timed out (``socket.timeout`` is ``TimeoutError``; so are a ``wait_for`` inside
    it and aiohttp's timeouts) was reported with outcome ``timeout`` in the compensations metric, the ERROR log and
    the span, whose status read only "timeout" (its message hidden), as if ``compensation_timeout_s`` (30 s here)
    had run out when it failed at once: an operator would raise the limit. Only the saga's own limit running out
    is a ``timeout``; an error of the compensation's own is a ``failure``, as through every policy."""
    tel = InMemoryTelemetry()

    async def reserve() -> str:
        return "seat"

    async def release(value: str) -> None:
        raise TimeoutError("connect to db:5432 timed out")

    async def hang(value: str) -> None:
        await asyncio.sleep(3600)

    async def pay() -> None:
        raise ValueError("card declined")

    saga = Saga("order", compensation_timeout_s=30.0, **tel.providers)
    with pytest.raises(SagaError) as caught:
        run_virtual(saga.run(Step("reserve", reserve, release), Step("hold", reserve, hang), Step("pay", pay)))
    assert caught.value.result.uncompensated == ("hold", "reserve")
    own = tel.span("compensate reserve")
    assert own.attributes is not None and own.attributes["shannon.compensation.outcome"] == "failure"
    assert own.status.description == "TimeoutError: connect to db:5432 timed out"
    limit = tel.span("compensate hold")
    assert limit.attributes is not None and limit.attributes["shannon.compensation.outcome"] == "timeout"
    assert tel.point("shannon.compensations", shannon_compensation_outcome="failure").value == 1
    assert tel.point("shannon.compensations", shannon_compensation_outcome="timeout").value == 1
    tel.shutdown()


@pytest.mark.parametrize("raises", ["base exception", "sync compensate"])
def test_a_compensation_error_propagating_past_the_saga_is_recorded_once(raises: str) -> None:
    """A compensation's error that the saga raises after its rollback (a ``BaseException``, a misused ``compensate``'s
    TypeError) was recorded twice: on the compensation span, then again on the task span it ended (the saga span,
    ending with its step's error, never passed it on), two copies of one stack trace. Each span still says it
    failed; the ``exception`` event is written once, where the error occurred."""
    from shannon_otel import Wave

    otel = InMemoryTelemetry()

    async def reserve() -> str:
        return "seat"

    async def interrupted(value: str) -> None:
        raise _Interrupt("stop")

    def sync(value: str) -> None:
        pass

    async def pay() -> None:
        raise ValueError("card declined")

    undo: Any = interrupted if raises == "base exception" else sync

    async def task() -> None:
        await Saga("s", **otel.providers).run(Step("reserve", reserve, undo), Step("pay", pay))

    wave = Wave[None]("w", **otel.providers)
    if raises == "base exception":
        with pytest.raises(BaseExceptionGroup):  # the wave's task group passes it on, grouped
            run_virtual(wave.run([task]))
    else:
        [result] = run_virtual(wave.run([task])).results
        assert isinstance(result.error, TypeError)
    events = [(s.name, (e.attributes or {})["exception.type"]) for s in otel.spans() for e in s.events]
    kind = f"{_Interrupt.__module__}._Interrupt" if raises == "base exception" else (
        "shannon_otel.recovery._decorated.NotAwaitableError")
    assert sorted(events) == [("compensate reserve", kind), ("step pay", "ValueError")]
    assert otel.span("task w").status.status_code is StatusCode.ERROR
    otel.shutdown()


def _abandoned_saga_run() -> tuple[InMemoryTelemetry, list[int], Coroutine[Any, Any, Any]]:
    """A saga's run, not started, whose "reserve" step is undone by appending to the list returned and whose
    "pay" step hangs for an hour, with the telemetry its spans go to."""
    tel = InMemoryTelemetry()
    undone: list[int] = []

    async def reserve() -> int:
        return 1

    async def release(value: int) -> None:
        undone.append(value)

    async def hang() -> None:
        await asyncio.sleep(3600)

    saga = Saga("abandoned", **tel.providers)
    return tel, undone, saga.run(Step("reserve", reserve, release), Step("pay", hang))


def _assert_rollback_not_run(tel: InMemoryTelemetry, undone: list[int]) -> None:
    """The abandoned saga's compensation did not run, and its ended spans say so."""
    assert undone == []
    compensation = tel.span("compensate reserve")
    assert compensation.status.status_code is StatusCode.ERROR
    assert "compensation not run: the saga was closed off its event loop" in str(compensation.status.description)
    assert (tel.span("saga abandoned").attributes or {})["shannon.saga.outcome"] == "failure"
    tel.shutdown()


def test_a_saga_abandoned_with_its_loop_ends_its_spans_and_says_its_rollback_did_not_run() -> None:
    """A saga left pending when its loop was closed is closed by the garbage collector, where nothing async can
    run: its rollback began all the same, ensure_future() put the compensation on a new event loop that never
    ran, and asyncio.wait() raised "no running event loop" out of the collector: the saga's and the
    compensation's spans never ended, so the trace showed nothing of a rollback that never ran."""
    tel, undone, saga_run = _abandoned_saga_run()
    found = abandoned_with_its_loop(saga_run, close=True)  # closed as the collector closes it
    assert found == []
    # nothing async runs without a loop: the rollback could not run, and the trace says so
    _assert_rollback_not_run(tel, undone)


def test_a_saga_abandoned_with_its_loop_and_closed_under_another_loop_runs_no_compensation_there() -> None:
    """The collector may close an abandoned saga while another loop runs in the thread (the next asyncio.run):
    its compensation then ran on that loop, not its own, the await raised "coroutine ignored GeneratorExit" out
    of the close, and the saga's and the compensation's spans never ended."""
    tel, undone, saga_run = _abandoned_saga_run()
    loop = asyncio.new_event_loop()
    task = loop.create_task(saga_run)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    coro = task.get_coro()

    async def elsewhere() -> None:
        coro.close()  # what the collector does with the abandoned task, here while another loop runs

    asyncio.run(elsewhere())
    _assert_rollback_not_run(tel, undone)  # never on a loop not its own, and the trace says so


def test_the_saga_errors_message_names_the_classes_of_the_error_and_of_each_failed_compensation() -> None:
    # Before: "saga 'order' failed; compensated ['reserve']; failed compensations: charge": logged as `%s` (what a
    # job's `except SagaError as e: log.error("order failed: %s", e)` writes) it said nothing of why. Classes only:
    # the messages stay on the errors themselves (``__cause__``, ``compensation_errors``).
    ledger = Ledger()
    with pytest.raises(SagaError) as info:
        run(Saga("order").run(
            Step("reserve", ledger.action("reserve"), ledger.undo("reserve")),
            Step("charge", ledger.action("charge"), ledger.undo("charge", fail=True)),
            Step("ship", ledger.action("ship", fail=True)),
        ))
    assert str(info.value) == (
        "saga 'order' failed with RuntimeError; compensated ['reserve']; failed compensations: charge (OSError)")


# ------------------------------------------------------------------ a step never awaited
def test_a_step_never_awaited_fails_the_saga_naming_tx_step_and_the_steps_that_ran_are_compensated() -> None:
    """``tx.step("pay", ...)`` with the ``await`` forgotten made a coroutine that never ran: the saga ended as a
    success (its span too) with the step silently skipped, the only sign a "coroutine ... was never awaited"
    RuntimeWarning at garbage collection. Now the block fails with a TypeError (a MisuseError) naming ``tx.step``
    and the step, raised as it is after the rollback of the steps that ran; the saga span ends as a failure; no
    warning."""
    import gc
    import warnings

    tel, ledger = Telemetry(), Ledger()
    saga = Saga("order", **tel.kw)
    tx = saga.begin()

    async def main() -> None:
        async with tx:
            await tx.step("reserve", ledger.action("reserve"), compensate=ledger.undo("reserve"))
            tx.step("pay", ledger.action("pay"), compensate=ledger.undo("pay"))  # type: ignore[unused-coroutine]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match=r"tx\.step\(\).*never awaited \('pay'\).*await") as raised:
            run(main())
        gc.collect()
    assert not isinstance(raised.value, SagaError)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert ledger.log == ["do reserve", "undo reserve reserve-id"]  # pay never ran; reserve was rolled back
    assert tx.result is not None and tx.result.outcome is Outcome.FAILURE
    assert tx.result.completed == tx.result.compensated == ("reserve",) and tx.result.error is raised.value
    root = tel.span("saga order")
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None and root.attributes["shannon.saga.outcome"] == "failure"


def test_a_step_in_a_task_not_yet_started_when_the_block_ends_never_runs_after_the_saga() -> None:
    """``asyncio.create_task(tx.step(...))`` not yet run when the block ends: the saga ended as a success, then the
    task ran the step after it (refused there with a RuntimeError nobody retrieved). Now it is the same misuse as
    a forgotten ``await``: the task is cancelled unstarted, and the block fails naming the step."""
    ledger = Ledger()

    async def main() -> tuple[asyncio.Task[Any], Any]:
        tx = Saga("order", instrument=False).begin()
        with pytest.raises(TypeError, match=r"never awaited \('pay'\)"):
            async with tx:
                task = asyncio.create_task(tx.step("pay", ledger.action("pay")))
        await asyncio.sleep(0.1)
        return task, tx.result

    task, result = run_virtual(main())
    assert task.cancelled() and ledger.log == []
    assert result.outcome is Outcome.FAILURE and result.completed == ()


def test_a_step_never_awaited_is_named_in_place_of_the_sagas_error_when_the_block_fails_too() -> None:
    """The block failing as well (a later step's error): the forgotten ``await`` is raised (the body's error its
    context, the result's error), after the rollback, not a SagaError a Retry around the saga would retry."""
    ledger = Ledger()
    tx = Saga("order", instrument=False).begin()

    async def main() -> None:
        async with tx:
            await tx.step("reserve", ledger.action("reserve"), compensate=ledger.undo("reserve"))
            tx.step("pay", ledger.action("pay"))  # type: ignore[unused-coroutine]
            await tx.step("ship", ledger.action("ship", fail=True))

    with pytest.raises(TypeError, match="never awaited") as raised:
        run(main())
    assert not isinstance(raised.value, SagaError)
    assert ledger.log == ["do reserve", "do ship", "undo reserve reserve-id"]
    assert tx.result is not None and tx.result.outcome is Outcome.FAILURE
    assert isinstance(tx.result.error, RuntimeError) and str(tx.result.error) == "ship failed"
    assert raised.value.__context__ is tx.result.error


def test_steps_made_ahead_that_a_steps_failure_stopped_before_their_turn_keep_the_sagas_error() -> None:
    """Bug: steps made ahead and awaited in turn (the arguments of a gather whose awaits a semaphore spaces out, a
    list awaited one by one), one failing, left the later ones unstarted when the block ended, and the saga raised a
    MisuseError saying they were never awaited in place of the SagaError of the step's error, although the program
    awaits each. Only a step skipped over (one made after it started) is a forgotten ``await`` when the block
    fails; the others are closed, and the block's error goes on."""
    ledger = Ledger()
    tx = Saga("order", instrument=False).begin()

    async def limited(gate: asyncio.Semaphore, step: Coroutine[Any, Any, str]) -> str:
        async with gate:
            return await step

    async def held() -> str:
        await asyncio.Event().wait()  # still running when the block ends: cancelled (no misuse)
        return "held"

    async def gathered() -> None:
        gate = asyncio.Semaphore(1)
        async with tx:
            await asyncio.gather(
                limited(gate, tx.step("pay", ledger.action("pay", fail=True))),
                limited(gate, tx.step("reserve", held)),
                *(limited(gate, tx.step(name, ledger.action(name))) for name in ("ship", "mail")),
            )

    with pytest.raises(SagaError) as raised:
        run(gathered())
    assert isinstance(raised.value.__cause__, RuntimeError) and str(raised.value.__cause__) == "pay failed"
    assert ledger.log == ["do pay"] and tx.result is not None and tx.result.outcome is Outcome.FAILURE

    tx = Saga("order", instrument=False).begin()

    async def in_turn() -> None:
        async with tx:
            for step in [tx.step(name, ledger.action(name, fail=name == "pay")) for name in ("reserve", "pay", "ship")]:
                await step

    with pytest.raises(SagaError) as raised:
        run(in_turn())
    assert str(raised.value.__cause__) == "pay failed"


def test_steps_gathered_or_awaited_later_in_the_block_still_run() -> None:
    """Only a step not started when the block ends is refused: one made first and awaited later, steps gathered, or
    a task awaited inside the block run as ever."""
    ledger = Ledger()

    async def main() -> Any:
        async with Saga("order", instrument=False).begin() as tx:
            later = tx.step("a", ledger.action("a"))
            await asyncio.gather(tx.step("b", ledger.action("b")), tx.step("c", ledger.action("c")))
            await later
            await asyncio.create_task(tx.step("d", ledger.action("d")))
        return tx.result

    result = run_virtual(main())
    assert result.outcome is Outcome.SUCCESS and sorted(result.completed) == ["a", "b", "c", "d"]


def test_a_step_cancelled_before_it_started_is_no_misuse() -> None:
    """A step whose task was cancelled before it ran (a gather cancelled at once, the error caught inside the
    block) never started, but was not forgotten either: the block ends as it would (a success here)."""
    ledger = Ledger()

    async def main() -> Any:
        async with Saga("order", instrument=False).begin() as tx:
            task = asyncio.create_task(tx.step("a", ledger.action("a")))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return tx.result

    result = run_virtual(main())
    assert result.outcome is Outcome.SUCCESS and result.completed == () and ledger.log == []


def test_a_step_after_the_block_is_refused_at_the_call_even_without_await() -> None:
    """``tx.step(...)`` after the block, its ``await`` forgotten: refused when awaited only, so without the await
    nothing said it never ran (a RuntimeWarning at garbage collection). Now the call raises the RuntimeError."""
    ledger = Ledger()

    async def main() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            pass
        with pytest.raises(RuntimeError, match="only inside `async with"):
            tx.step("late", ledger.action("late"))  # type: ignore[unused-coroutine]

    run_virtual(main())
    assert ledger.log == []
