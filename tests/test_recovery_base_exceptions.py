"""BaseExceptions and broken errors crossing the policies: raised by hooks, compensations and fallbacks, or
with a str() that raises. They propagate (or are served as declared) after every span is ended."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _open_spans import HookInterruptError, OpenSpans, RaisingOn
from opentelemetry.trace import StatusCode

from shannon_otel import (
    CallObserver,
    CallStarted,
    CircuitBreaker,
    Degrade,
    Fallback,
    Hedge,
    Hook,
    LoggingHook,
    Pipeline,
    Retry,
    Saga,
    SagaError,
    SagaObserver,
    SagaStarted,
    Step,
    Timeout,
    Wave,
    WaveObserver,
    WaveStarted,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class UnprintableError(Exception):
    """An error whose message cannot be rendered: ``str()`` and ``repr()`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


async def _value(name: str) -> str:
    await asyncio.sleep(0)
    return name


async def _unprintable() -> None:
    await asyncio.sleep(0)
    raise UnprintableError


def test_an_error_with_a_broken_str_still_marks_every_span_it_crossed_as_failed() -> None:
    """record_exception() calls str(error): it raised, so the attempt, operation, task, step and saga
    spans of such a failure ended with status UNSET and no exception event, as if nothing had failed."""
    otel = InMemoryTelemetry()
    logs = LoggingHook(exception_messages=True)  # its records carry the message: it raised too

    async def main() -> None:
        with pytest.raises(UnprintableError):
            await Retry(attempts=2, initial=0, name="op", hooks=[logs], **otel.providers).call(_unprintable)
        wave: Wave[None] = Wave("w", **otel.providers)
        result = await wave.run([_unprintable])
        assert result.results[0].error_type == f"{__name__}.UnprintableError"
        with pytest.raises(Exception, match="saga 's' failed"):
            await Saga("s", **otel.providers).run(Step("one", _unprintable))

    run_virtual(main())
    assert logs.hook_errors == {}
    failed = ["attempt 1", "attempt 2", "op", "task w", "step one", "saga s"]
    for name in failed:
        span = otel.span(name)
        assert span.status.status_code is StatusCode.ERROR, name
    # Where it was raised: the op span ends with attempt 2's error, which that span recorded already
    for name in ["attempt 1", "attempt 2", "task w", "step one"]:
        events = [e for e in otel.span(name).events if e.name == "exception"]
        assert len(events) == 1, name
        attributes = events[0].attributes or {}
        assert attributes["exception.type"] == f"{__name__}.UnprintableError", name
        assert "UnprintableError" in str(attributes["exception.stacktrace"]), name


class _Raising(RaisingOn, CallObserver, SagaObserver):
    pass


class RaisingHook(Hook):
    """A user hook (after the OTel hook) whose observers raise a BaseException in ``method``."""

    def __init__(self, method: str) -> None:
        self.method = method

    def call_started(self, event: CallStarted) -> CallObserver:
        return _Raising(self.method)

    def saga_started(self, event: SagaStarted) -> SagaObserver:
        return _Raising(self.method)


@pytest.mark.parametrize("method", [
    "attempt_finished", "fallback_finished", "call_finished", "step_finished", "compensation_started",
    "compensation_finished", "saga_finished",
])
def test_a_hook_raising_a_base_exception_propagates_it_after_every_span_is_ended_and_the_rollback_is_done(
    method: str,
) -> None:
    """The first BaseException in a loop finishing the observers left the other observers unfinished
    (the OTel hook's operation, attempt, fallback, step, compensation and saga spans never ended) and,
    from a compensation's observers, cut the rollback short: earlier steps were never compensated."""
    otel, spans = InMemoryTelemetry(), OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    hooks = [RaisingHook(method)]
    undone: list[str] = []

    async def undo(name: str) -> None:
        undone.append(name)

    async def fail() -> None:
        raise ValueError("primary")

    async def fallback(error: Exception) -> str:
        return "served"

    async def main() -> None:
        with contextlib.suppress(HookInterruptError):
            await Pipeline(Fallback(fallback), Retry(attempts=2, initial=0), hooks=hooks, **otel.providers).call(fail)
        with contextlib.suppress(HookInterruptError, SagaError):
            await Saga("s", hooks=hooks, **otel.providers).run(
                Step("a", functools.partial(asyncio.sleep, 0, "a"), undo),
                Step("b", functools.partial(asyncio.sleep, 0, "b"), undo),
                Step("c", fail),
            )

    run_virtual(main())
    assert spans.open == {}
    # step "a" ended with the hook's interrupt (after its action had run): the rollback undoes it alone
    assert undone == (["a"] if method == "step_finished" else ["b", "a"])


class RaisingStartHook(Hook):
    """A user hook (after the OTel hook) whose ``*_started`` raises a BaseException."""

    def __init__(self, method: str) -> None:
        self.method = method

    def _maybe_raise(self, method: str) -> None:
        if method == self.method:
            raise HookInterruptError(method)

    def wave_started(self, event: WaveStarted) -> Any:
        self._maybe_raise("wave_started")
        return _EnterRaising() if self.method == "__enter__" else None

    def call_started(self, event: CallStarted) -> Any:
        self._maybe_raise("call_started")
        return _EnterRaising() if self.method == "__enter__" else None

    def saga_started(self, event: SagaStarted) -> Any:
        self._maybe_raise("saga_started")
        return _EnterRaising() if self.method == "__enter__" else None


class _EnterRaising(WaveObserver, CallObserver, SagaObserver):
    """An observer that is a scope whose ``__enter__`` raises a BaseException."""

    def __enter__(self) -> None:
        raise HookInterruptError("__enter__")

    def __exit__(self, *exc_info: object) -> None:
        return None


@pytest.mark.parametrize("method", ["wave_started", "call_started", "saga_started", "__enter__"])
def test_a_later_hook_raising_a_base_exception_when_asked_for_an_observer_leaves_no_span_open(method: str) -> None:
    """The OTel hook, asked first, had started its wave / operation / saga span; the loop asking the
    other hooks (or entering the observer one returned) stopped at the BaseException and nothing ever
    ended that span."""
    otel, spans = InMemoryTelemetry(), OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    hooks = (RaisingStartHook(method),)

    async def ok() -> int:
        return 1

    async def main() -> None:
        wave: Wave[int] = Wave("w", hooks=hooks, **otel.providers)
        for call in (
            lambda: wave.run([ok]),
            lambda: Retry(hooks=hooks, **otel.providers).call(ok),
            lambda: Pipeline(Retry(), hooks=hooks, **otel.providers).call(ok),
            lambda: CircuitBreaker(f"b-{method}", hooks=hooks, **otel.providers).call(ok),
            lambda: Degrade(default=0, hooks=hooks, **otel.providers).call(ok),
            lambda: Saga("s", hooks=hooks, **otel.providers).run(Step("a", ok)),
        ):
            with contextlib.suppress(HookInterruptError):
                await call()

    run_virtual(main())
    assert spans.open == {}


class _RollbackOfThree:
    """Saga "s" begun as ``tx`` (in-memory telemetry, its open spans tracked), whose :meth:`run` takes steps a
    (compensated into ``undone``), b (compensated by ``undo_badly``) and c, which fails: a rollback in which
    b's compensation is the one to raise."""

    def __init__(self, undo_badly: Callable[[str], Awaitable[None]]) -> None:
        self.otel, self.spans = InMemoryTelemetry(), OpenSpans()
        self.otel.tracer_provider.add_span_processor(self.spans)
        self.undone: list[str] = []
        self.undo_badly = undo_badly
        self.tx = Saga("s", **self.otel.providers).begin()

    async def run(self) -> None:
        async def undo(name: str) -> None:
            self.undone.append(name)

        async def fail() -> None:
            raise ValueError("step c")

        async with self.tx:
            await self.tx.step("a", functools.partial(_value, "a"), compensate=undo)
            await self.tx.step("b", functools.partial(_value, "b"), compensate=self.undo_badly)
            await self.tx.step("c", fail)


@pytest.mark.parametrize("interrupt", [HookInterruptError, GeneratorExit])
def test_a_compensation_raising_a_base_exception_does_not_cut_the_rollback_short(
    interrupt: type[BaseException],
) -> None:
    """It escaped the rollback: earlier steps were never compensated and the compensation and saga
    spans never ended. Now it is that compensation's failure, and it propagates after the rollback."""

    async def undo_badly(name: str) -> None:
        raise interrupt

    saga = _RollbackOfThree(undo_badly)

    async def main() -> None:
        with pytest.raises(interrupt):
            await saga.run()
        assert saga.tx.result is not None
        assert saga.tx.result.compensated == ("a",)
        assert isinstance(saga.tx.result.failed_compensations["b"], interrupt)

    run_virtual(main())
    assert saga.undone == ["a"]
    assert saga.spans.open == {}
    assert (saga.otel.span("compensate b").attributes or {})["shannon.compensation.outcome"] == "failure"


def test_a_fallback_that_raises_a_base_exception_is_not_reported_as_a_success() -> None:
    """Only cancellation and Exception were handled: the fallback span of a fallback that raised
    GeneratorExit (or KeyboardInterrupt & co) ended with shannon.attempt.outcome=success, status UNSET."""
    otel = InMemoryTelemetry()

    async def fail() -> None:
        raise ValueError("primary")

    async def interrupted(error: Exception) -> str:
        raise HookInterruptError("in the fallback")

    async def main() -> None:
        with pytest.raises(HookInterruptError):
            await Fallback(interrupted, name="op", **otel.providers).call(fail)

    run_virtual(main())
    span = otel.span("fallback op")
    assert (span.attributes or {})["shannon.attempt.outcome"] == "failure"
    assert span.status.status_code is StatusCode.ERROR


def test_a_degrade_whose_cheaper_result_fails_serves_its_declared_default() -> None:
    """The degraded result is "the first available of: last good, cheaper, default": a cheaper call that
    failed made the call fail with the cheaper's error although a default was declared."""

    async def timed_out() -> str:
        raise TimeoutError

    async def cheaper_fails() -> str:
        raise ConnectionError("the cheaper backend is down too")

    degrade = Degrade(cheaper=cheaper_fails, default="static", instrument=False)
    served = run_virtual(degrade.call(timed_out))
    assert (served.value, served.degraded, served.mode, served.reason) == ("static", True, "static", "timeout")
    assert isinstance(served.error, TimeoutError)


def _caught(call: Callable[[], Awaitable[object]], who: str) -> object:
    """What the caller's own ``except BaseException`` handler got from ``call`` (its result if none), with the
    handler still on a running loop; a KeyboardInterrupt / SystemExit out of the event loop fails the test."""

    async def main() -> object:
        try:
            return await call()
        except BaseException as exc:  # the caller's own handler runs, with the loop still going
            await asyncio.sleep(0)
            return exc

    try:
        return run_virtual(main())
    except (KeyboardInterrupt, SystemExit) as exc:  # failing this test, not stopping the session
        pytest.fail(f"{who} {exc!r} stopped the event loop instead of reaching the caller")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("which", ["first", "second"])
def test_a_hedged_attempts_keyboard_interrupt_reaches_the_caller_as_itself(
    interrupt: type[BaseException], which: str,
) -> None:
    """Each hedged attempt runs in its own asyncio task, and asyncio re-raises a task's KeyboardInterrupt /
    SystemExit out of the event loop itself: the loop stopped, and the hedge's caller, cancelled at shutdown,
    saw a CancelledError where ``await fn()`` without the hedge raised the user's exception into it (its
    ``except KeyboardInterrupt`` never ran). Now the hedge cancels the other attempt and raises it, the very
    object, in the caller; every span ended. (Found by a seeded chaos probe: seed 1, a lone Hedge in a wave.)"""
    otel = InMemoryTelemetry()
    opened = OpenSpans()
    otel.tracer_provider.add_span_processor(opened)
    raised: list[BaseException] = []
    other_ended: list[str] = []
    calls: list[int] = []

    async def fn() -> str:
        calls.append(len(calls))
        interrupts = (len(calls) == 1) == (which == "first")
        try:
            await asyncio.sleep(1.0 if interrupts else 5.0)  # the first attempt outlives the hedge's 0.5 s delay
        except asyncio.CancelledError:
            other_ended.append("cancelled")
            raise
        if interrupts:
            raised.append(interrupt("user"))
            raise raised[-1]
        other_ended.append("ok")
        return "value"

    seen = _caught(lambda: Hedge(0.5, attempts=2, name="op", **otel.providers).call(fn), "the attempt's")
    assert len(raised) == 1
    assert seen is raised[0]
    assert other_ended == ["cancelled"]
    assert not opened.open, opened.open
    outcomes = sorted(str((s.attributes or {})["shannon.attempt.outcome"]) for s in otel.spans()
                      if s.name.startswith(("attempt ", "hedge ")))
    assert outcomes == ["cancellation", "failure"]
    assert (otel.span("op").attributes or {})["shannon.call.outcome"] == "failure"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_a_hedges_sleep_raising_a_keyboard_interrupt_reaches_the_caller_not_the_event_loop(
    interrupt: type[BaseException],
) -> None:
    """The hedge's ``sleep`` runs in a timer task of its own: its KeyboardInterrupt / SystemExit, raised by that task,
    asyncio raised out of the event loop too, so ``asyncio.run`` raised it after the caller had handled it (what the
    hedge re-raised from the timer's result). Now the timer hands it back as an attempt does: raised once, the very
    object, in the caller; the attempt in flight cancelled and every span ended."""
    otel = InMemoryTelemetry()
    opened = OpenSpans()
    otel.tracer_provider.add_span_processor(opened)
    raised: list[BaseException] = []

    async def slow() -> str:
        await asyncio.sleep(5.0)
        return "value"

    async def broken_sleep(seconds: float) -> None:
        raised.append(interrupt("sleep"))
        raise raised[-1]

    seen = _caught(lambda: Hedge(0.5, attempts=2, sleep=broken_sleep, name="op", **otel.providers).call(slow),
                   "the hedge's sleep's")
    assert len(raised) == 1
    assert seen is raised[0]
    assert not opened.open, opened.open
    assert (otel.span("attempt 1").attributes or {})["shannon.attempt.outcome"] == "cancellation"
    assert (otel.span("op").attributes or {})["shannon.call.outcome"] == "failure"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_a_compensations_keyboard_interrupt_is_raised_after_the_rollback_not_out_of_the_event_loop(
    interrupt: type[BaseException],
) -> None:
    """A compensation runs in its own task (so the caller's cancellation cannot cut it short), and asyncio
    re-raises a task's KeyboardInterrupt / SystemExit out of the event loop itself: the loop stopped in the
    middle of the rollback, before the caller's handler ran. Now it is that compensation's failure, the rest
    of the rollback runs, and the very object is raised in the caller's task, the loop still going."""
    raised: list[BaseException] = []

    async def undo_badly(name: str) -> None:
        raised.append(interrupt("in the compensation"))
        raise raised[-1]

    saga = _RollbackOfThree(undo_badly)
    seen = _caught(saga.run, "the compensation's")
    assert seen is raised[0]
    assert saga.tx.result is not None
    assert saga.tx.result.compensated == ("a",)
    assert saga.tx.result.failed_compensations["b"] is seen
    assert saga.undone == ["a"]
    assert saga.spans.open == {}
    assert (saga.otel.span("compensate b").attributes or {})["shannon.compensation.outcome"] == "failure"


class _Stop(BaseException):
    """A user's BaseException that is neither KeyboardInterrupt, SystemExit nor CancelledError."""


@pytest.mark.parametrize("loser_raises", [_Stop, KeyboardInterrupt])
def test_a_hedge_losers_base_exception_raised_while_cancelled_is_not_swallowed(
    loser_raises: type[BaseException],
) -> None:
    """A loser (the first attempt, cancelled because the hedged one won) raising a BaseException from its
    CancelledError handler: the hedge collected it in its wait for the losers and discarded it, returned the
    winner's value and recorded the call a success, while the loser's span said it failed with that error.
    BaseExceptions are never swallowed (docs/reliability.md): the caller gets it, the very object, and the
    operation span agrees."""
    otel = InMemoryTelemetry()
    opened = OpenSpans()
    otel.tracer_provider.add_span_processor(opened)
    raised: list[BaseException] = []

    async def fn() -> str:
        if not raised:
            raised.append(loser_raises("loser"))
            try:
                await asyncio.sleep(5.0)  # outlives the hedge's 0.5 s delay: the hedged attempt wins
            except asyncio.CancelledError:
                raise raised[0] from None
        return "won"

    seen = _caught(lambda: Hedge(0.5, attempts=2, name="op", **otel.providers).call(fn), "the loser's")
    assert seen is raised[0]
    assert not opened.open, opened.open
    op = otel.span("op").attributes or {}
    assert op["shannon.call.outcome"] == "failure"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, _Stop])
def test_a_hedge_cancelled_while_it_raises_an_attempts_base_exception_still_raises_it(
    interrupt: type[BaseException],
) -> None:
    """A hedge raising an attempt's BaseException waits for its other attempts to end; a cancellation arriving in
    that wait replaced the BaseException. A hedge inside another ``Hedge`` is cancelled just then when the outer
    hedge's other attempt wins: the inner one ended cancelled, and the outer hedge returned the winner's value, the
    user's KeyboardInterrupt swallowed. Now it goes on (as a ``TaskGroup`` raises it over a cancellation): the caller
    gets the very object. (Found by the round-21 composition fuzzer: two Hedges in a pipeline, in a nested wave.)"""
    otel = InMemoryTelemetry()
    opened = OpenSpans()
    otel.tracer_provider.add_span_processor(opened)
    raised: list[BaseException] = []
    calls: list[int] = []

    async def fn() -> str:
        call = len(calls)
        calls.append(call)
        if call == 0:  # the inner hedge's first attempt, still running when the inner hedge raises
            await asyncio.sleep(10.0)
        if call == 1:  # the outer hedge's second attempt: its inner hedge's first attempt fails, the next wins
            raise ConnectionError("down")
        if call == 2:
            return "value"
        raised.append(interrupt("user"))  # the first inner hedge's second attempt, in the same step
        raise raised[-1]

    outer, inner = Hedge(0.05, attempts=3), Hedge(0.05, attempts=3)
    seen = _caught(lambda: Pipeline(outer, inner, name="op", **otel.providers).call(fn), "the attempt's")
    assert calls == [0, 1, 2, 3]
    assert len(raised) == 1
    assert seen is raised[0], seen
    assert not opened.open, opened.open
    assert (otel.span("op").attributes or {})["shannon.call.outcome"] == "failure"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, _Stop])
@pytest.mark.parametrize("cut", ["caller cancelled", "Timeout expired"])
def test_a_sagas_step_base_exception_is_not_replaced_by_a_cancellation_during_the_rollback(
    interrupt: type[BaseException], cut: str,
) -> None:
    """A step raising a BaseException that is not an Exception rolls the saga back; a cancellation arriving while a
    compensation ran was raised after the rollback in its place: the user's KeyboardInterrupt became the caller's
    CancelledError, or, under a ``Timeout`` expiring meanwhile, a ``TimeoutError`` (which a ``Retry`` around it would
    retry). Now the step's BaseException goes on (as a ``TaskGroup`` raises one over a cancellation), the very object;
    the rollback has run and every span has ended; a cancel of the caller stays counted in ``cancelling()``."""
    otel = InMemoryTelemetry()
    opened = OpenSpans()
    otel.tracer_provider.add_span_processor(opened)
    raised: list[BaseException] = []
    undone: list[str] = []
    saga = Saga("s", **otel.providers)

    async def main() -> tuple[BaseException, int]:
        caller = asyncio.current_task()
        assert caller is not None

        async def reserve() -> str:
            return "a"

        async def release(value: str) -> None:
            if cut == "caller cancelled":
                caller.cancel("caller")
            await asyncio.sleep(0.1)  # the Timeout's 0.05 s expire meanwhile
            undone.append(value)

        async def charge() -> None:
            raised.append(interrupt("user"))
            raise raised[-1]

        def run() -> Awaitable[Any]:
            return saga.run(Step("reserve", reserve, release), Step("charge", charge))

        try:
            await (run() if cut == "caller cancelled" else Timeout(0.05, **otel.providers).call(run))
        except BaseException as exc:  # the KeyboardInterrupt too: the loop goes on
            return exc, caller.cancelling()
        raise AssertionError("the saga did not fail")

    seen, cancelling = run_virtual(main())
    assert seen is raised[0], seen
    assert cancelling == (1 if cut == "caller cancelled" else 0)
    assert undone == ["a"]
    assert not opened.open, opened.open


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("lesser_from", ["compensation", "compensation_finished", "saga_finished"])
def test_a_sagas_step_keyboard_interrupt_is_not_replaced_by_a_lesser_base_exception_from_the_rollback(
    interrupt: type[BaseException], lesser_from: str,
) -> None:
    """A step raised a KeyboardInterrupt / SystemExit; then a compensation (or an observer of the rollback) raised a
    BaseException of the user's own: that one was raised in its place, the user's Ctrl-C lost (a ``Hedge`` raises a
    KeyboardInterrupt / SystemExit first, as a TaskGroup does). Now the step's goes on, the very object; the
    compensation's error is still that compensation's failure in ``tx.result``; every span ended."""
    otel, spans = InMemoryTelemetry(), OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    hooks = [RaisingHook(lesser_from)] if lesser_from != "compensation" else []
    saga = Saga("s", hooks=hooks, **otel.providers)
    raised: list[BaseException] = []

    async def undo(value: str) -> None:
        if lesser_from == "compensation":
            raise _Stop("in the compensation")

    async def charge() -> None:
        raised.append(interrupt("user"))
        raise raised[-1]

    tx = saga.begin()

    async def run() -> None:
        async with tx:
            await tx.step("reserve", functools.partial(_value, "a"), compensate=undo)
            await tx.step("charge", charge)

    seen = _caught(run, "the step's")
    assert seen is raised[0], seen
    assert tx.result is not None and tx.result.error is raised[0]
    if lesser_from == "compensation":
        assert isinstance(tx.result.failed_compensations["reserve"], _Stop)
    assert spans.open == {}


def test_a_compensations_keyboard_interrupt_is_not_replaced_by_a_later_compensations_lesser_base_exception() -> None:
    """Of the BaseExceptions several compensations raised, the first was raised after the rollback: the newer step's
    compensation (run first) raising a custom BaseException hid the older one's KeyboardInterrupt. Now a
    KeyboardInterrupt / SystemExit is raised over a lesser one wherever it came in the rollback; each stays its
    compensation's failure."""
    saga = Saga("s", instrument=False)
    raised: list[BaseException] = []

    errors: dict[str, type[BaseException]] = {"older": KeyboardInterrupt, "newer": _Stop}

    async def undo(name: str) -> None:
        raised.append(errors[name]("in the compensation"))
        raise raised[-1]

    async def fail() -> None:
        raise ValueError("step")

    tx = saga.begin()

    async def run() -> None:
        async with tx:
            await tx.step("older", functools.partial(_value, "older"), compensate=undo)
            await tx.step("newer", functools.partial(_value, "newer"), compensate=undo)
            await tx.step("charge", fail)

    seen = _caught(run, "the compensation's")
    assert [type(e) for e in raised] == [_Stop, KeyboardInterrupt]
    assert seen is raised[1], seen
    assert isinstance(seen.__context__, ValueError)  # the step's error, being handled when it was raised
    assert tx.result is not None
    assert tx.result.failed_compensations == {"newer": raised[0], "older": raised[1]}


class _RaisingAttemptStart(CallObserver):
    def attempt_started(self, attempt: int) -> Any:
        raise _Stop("in attempt_started")


class _AttemptStartHook(Hook):
    def call_started(self, event: CallStarted) -> CallObserver:
        return _RaisingAttemptStart()


def test_a_hook_raising_a_base_exception_as_an_attempt_starts_is_recorded_as_that_attempts_failure() -> None:
    """Documented (docs/reliability.md, Hooks that raise BaseException): a hook's BaseException in ``attempt_started``
    ends the attempt before the function is called, recorded as that attempt's failure with the hook's error (its span,
    opened by the OTel hook before it, and the call's attempt count), as a wave records a task whose ``task_started``
    raised one, and as a Ctrl-C arriving just then would be."""
    otel, spans = InMemoryTelemetry(), OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    ran: list[int] = []

    async def fn() -> int:
        ran.append(1)
        return 1

    async def main() -> None:
        with pytest.raises(_Stop):
            await Pipeline(Retry(), Hedge(0), name="op", hooks=[_AttemptStartHook()], **otel.providers).call(fn)

    run_virtual(main())
    assert ran == []
    assert spans.open == {}
    attempt = otel.span("attempt 1").attributes or {}
    assert attempt["shannon.attempt.outcome"] == "failure"
    assert attempt["error.type"] == f"{__name__}._Stop"
    assert (otel.span("op").attributes or {})["shannon.attempt"] == 1
    (point,) = otel.points("shannon.retry.attempts")
    assert (point.count, point.sum) == (1, 1)
