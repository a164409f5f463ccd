"""Adversarial probes of the recovery policies' public API that found bugs: each test failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Callable
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
    Hook,
    LoggingHook,
    Pipeline,
    Retry,
    Saga,
    SagaError,
    SagaObserver,
    SagaStarted,
    Step,
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
    for name in failed[:-1]:  # the saga span carries no exception event of its own
        events = [e for e in otel.span(name).events if e.name == "exception"]
        assert len(events) == 1, name
        attributes = events[0].attributes or {}
        assert attributes["exception.type"] == f"{__name__}.UnprintableError", name
        assert "UnprintableError" in str(attributes["exception.stacktrace"]), name


@pytest.mark.parametrize(("param", "settings"), [
    ("initial", {"initial": math.inf, "maximum": math.inf}),
    ("maximum", {"maximum": math.inf}),
    ("multiplier", {"multiplier": math.inf}),
])
def test_a_retry_refuses_non_finite_backoff_settings_naming_the_parameter(
    param: str, settings: dict[str, float],
) -> None:
    """They were accepted: maximum=inf let a backoff (or an inf Retry-After, which maximum is documented to
    cap) sleep forever, and initial=0 with multiplier=inf waited ``maximum`` (0 x inf is NaN) instead of 0."""
    with pytest.raises(ValueError, match=f"^{param} must be finite"):
        Retry(**settings)  # type: ignore[arg-type]


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


async def _async_predicate(error: BaseException) -> bool:
    return False


async def _async_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0]


async def _async_clock() -> float:
    return 0.0


async def _async_progress(progress: Any) -> None:
    return None


class _AsyncHook(Hook):
    async def call_started(self, event: CallStarted) -> None:  # type: ignore[override]
        return None


@pytest.mark.parametrize(("param", "build"), [
    ("on", lambda: Retry(on=_async_predicate)),  # type: ignore[arg-type]
    ("key", lambda: Degrade(last_good=True, key=_async_key)),  # type: ignore[arg-type]
    ("clock", lambda: Retry(clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: CircuitBreaker("async-clock", clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: Pipeline(Retry(), clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: Saga("s", clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: Wave("w", clock=_async_clock)),  # type: ignore[arg-type]
    ("random", lambda: Retry(random=_async_clock)),  # type: ignore[arg-type]
    ("on_progress", lambda: Wave("w", on_progress=_async_progress)),  # type: ignore[arg-type]
    ("hooks", lambda: Retry(hooks=[_AsyncHook()])),
])
def test_an_async_function_where_a_sync_callable_belongs_is_refused_naming_the_parameter(
    param: str, build: Callable[[], object],
) -> None:
    """They were accepted, and their coroutines never awaited: Retry(on=async predicate) retried every
    error (a coroutine is truthy), Degrade(key=async) never served a last good value (each call a new
    key), on_progress and async hook methods silently did nothing, an async clock or random source
    failed later with Python's "unsupported operand type(s)"."""
    with pytest.raises(TypeError, match=f"^{param} "):
        build()


def test_a_predicate_or_key_returning_an_awaitable_is_refused_at_the_call_naming_it() -> None:
    """A lambda returning a coroutine cannot be told from a sync callable before it is called."""
    attempts: list[int] = []

    async def fail() -> None:
        attempts.append(1)
        raise ValueError("fails")

    async def get(uid: int) -> int:
        return uid

    async def main() -> None:
        with pytest.raises(TypeError, match=r"^on ") as caught:
            await Retry(on=lambda e: _async_predicate(e), initial=0, instrument=False).call(fail)  # type: ignore[arg-type,return-value]
        assert isinstance(caught.value.__context__, ValueError)
        assert attempts == [1]  # refused at the first failure, not retried as "truthy"
        degrade = Degrade(last_good=True, key=lambda a, k: _async_key(a, k), instrument=False)  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match=r"^key "):
            await degrade.call(get, 1)

    run_virtual(main())


def test_a_breaker_with_a_huge_count_window_is_built_and_counts_calls_without_preallocating_it() -> None:
    """window=10**12 raised MemoryError at construction (and every transition re-allocated the ring)."""

    async def fail() -> None:
        raise ValueError("down")

    async def main() -> None:
        breaker = CircuitBreaker("huge-window", window=10**12, failure_threshold=None, failure_rate=0.5,
                                 min_calls=4, instrument=False)
        for _ in range(4):
            with contextlib.suppress(ValueError):
                await breaker.call(fail)
        assert breaker.state.value == "open"

    run_virtual(main())


@pytest.mark.parametrize("interrupt", [HookInterruptError, GeneratorExit])
def test_a_compensation_raising_a_base_exception_does_not_cut_the_rollback_short(
    interrupt: type[BaseException],
) -> None:
    """It escaped the rollback: earlier steps were never compensated and the compensation and saga
    spans never ended. Now it is that compensation's failure, and it propagates after the rollback."""
    otel, spans = InMemoryTelemetry(), OpenSpans()
    otel.tracer_provider.add_span_processor(spans)
    undone: list[str] = []

    async def undo(name: str) -> None:
        undone.append(name)

    async def undo_badly(name: str) -> None:
        raise interrupt

    async def fail() -> None:
        raise ValueError("step c")

    async def main() -> None:
        tx = Saga("s", **otel.providers).begin()

        async def run() -> None:
            async with tx:
                await tx.step("a", functools.partial(_value, "a"), compensate=undo)
                await tx.step("b", functools.partial(_value, "b"), compensate=undo_badly)
                await tx.step("c", fail)

        with pytest.raises(interrupt):
            await run()
        assert tx.result is not None
        assert tx.result.compensated == ("a",)
        assert isinstance(tx.result.failed_compensations["b"], interrupt)

    run_virtual(main())
    assert undone == ["a"]
    assert spans.open == {}
    assert (otel.span("compensate b").attributes or {})["shannon.compensation.outcome"] == "failure"


@pytest.mark.parametrize("policy", [Retry, Degrade])
def test_a_keyword_only_policy_used_as_a_bare_decorator_says_to_call_it(policy: Callable[..., object]) -> None:
    """``@retry`` without parentheses raised Python's "Retry.__init__() takes 1 positional argument
    but 2 were given", which names neither the mistake nor the fix."""

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=rf"keyword arguments only.*@{policy.__name__}\(\)"):
        policy(fetch)


async def _agen() -> Any:
    yield 1


@pytest.mark.parametrize("func", [5, _agen])
def test_decorating_what_cannot_be_awaited_is_refused_at_decoration_naming_func(func: Any) -> None:
    """A non-callable or an async generator function was decorated silently; every call then failed
    with Python's "object ... can't be used in 'await' expression"."""
    with pytest.raises(TypeError, match=r"^func "):
        Retry()(func)


async def _served(error: Exception) -> str:
    return "served"


@pytest.mark.parametrize("build", [
    lambda on: Retry(on=on),
    lambda on: Fallback(_served, on=on),
    lambda on: Degrade(default=0, on=on),
    lambda on: CircuitBreaker("on-check", on=on),
])
@pytest.mark.parametrize("on", [asyncio.CancelledError, (ValueError, KeyboardInterrupt), GeneratorExit])
def test_on_naming_an_exception_no_policy_ever_handles_is_refused(build: Callable[[Any], object], on: Any) -> None:
    """on=asyncio.CancelledError was accepted and silently did nothing: only Exception subclasses are
    ever retried, counted, or served (cancellation is an outcome, never an error)."""
    with pytest.raises(TypeError, match=r"^on .*Exception"):
        build(on)


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


def test_a_degrade_key_returning_an_unhashable_value_is_refused_before_the_operation_runs() -> None:
    """The operation ran (its side effects happened), then storing its last good value raised
    Python's "unhashable type: 'list'": the caller lost the result it had produced."""
    calls: list[list[int]] = []

    async def total(ids: list[int]) -> int:
        calls.append(ids)
        return sum(ids)

    degrade = Degrade(last_good=True, key=lambda args, kwargs: args[0], instrument=False)
    with pytest.raises(TypeError, match=r"^key must return a hashable value"):
        run_virtual(degrade.call(total, [1, 2]))
    assert calls == []
