"""Policies composed every way round, where ``test_policy_stack_model.py`` stops.

That model runs the calls of a case one after another and compares canonical outcomes with a reference.
Here: many calls at once through ONE stack (each must get exactly what it gets alone: no shared attempt
counter, deadline or hedge), the very objects returned and raised (identity, not equality), the same policy
object used twice in one stack, ``Degrade(last_good=True)`` and calls nested inside the operation, user
functions that hang; no task may outlive its call and every attempt span must sit under its own call's
operation span. And stacks built the wrong way with the wrong objects are refused, naming the parameter.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from _open_spans import OpenSpans
from _quiet import quiet_logs  # noqa: F401  (autouse: the shannon_otel logger silenced here)
from _span_attrs import attrs
from _virtual_time import vclock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider

from shannon_otel import Wave
from shannon_otel.recovery import (
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    FallbackError,
    Hedge,
    Pipeline,
    Policy,
    Retry,
    Served,
    Timeout,
    resilient,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual

HUNT = os.environ.get("SHANNON_HYPOTHESIS") == "hunt"
PROBES = settings(
    max_examples=int(os.environ.get("SHANNON_EXAMPLES", "2000")) if HUNT else 20, derandomize=not HUNT,
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- nonsensical stacks, refused
async def fetch() -> int:
    return 1


@pytest.mark.parametrize(("outer", "inner"), [
    (lambda: Retry(), lambda: Timeout(1)),
    (lambda: Timeout(1), lambda: Pipeline(Retry(), Timeout(2))),
    (lambda: resilient(Retry()), lambda: CircuitBreaker("orders-b")),
    (lambda: Degrade(default=0), lambda: Hedge(0.1)),
    (lambda: CircuitBreaker("orders-a"), lambda: Fallback(lambda error: fetch())),
])
def test_a_policy_decorating_a_policy_is_refused_naming_func_and_pointing_at_pipeline(
    outer: Callable[[], Policy], inner: Callable[[], Policy],
) -> None:
    """``Retry()(Timeout(1))`` was taken (a policy is callable: this decorator): each call then ran
    ``Timeout(1)()`` without a function, and the outer Retry retried that TypeError with backoff."""
    wrapped = inner()
    refused = r"^func must be an async function .*got a \w+ policy.*Pipeline\(outer, inner\)"
    with pytest.raises(TypeError, match=refused):
        outer()(wrapped)  # type: ignore[arg-type]


def test_stacked_decorators_on_the_function_itself_still_compose() -> None:
    calls: list[int] = []

    @Retry(attempts=3, initial=0.0, instrument=False)
    @Timeout(1, instrument=False)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("again")
        return "done"

    assert run_virtual(flaky()) == "done"
    assert len(calls) == 3


@pytest.mark.parametrize("cls", [Retry, Pipeline, CircuitBreaker, Timeout, Degrade])
def test_a_policy_class_given_to_a_wave_is_refused_naming_policy(cls: type) -> None:
    """``Wave(policy=Retry)`` passed the ``call(fn)`` check (a class's method is a function) and failed
    with ``_reporting_to() missing 1 required positional argument``, naming neither policy nor the fix."""
    with pytest.raises(TypeError, match=rf"^policy must be a policy object, got the class {cls.__name__}: "
                                        rf"create one, policy={cls.__name__}\(\.\.\.\)$"):
        Wave("w", policy=cls)  # type: ignore[arg-type]


def test_the_policy_base_class_itself_is_refused_when_built_naming_the_policies_to_build() -> None:
    # Policy() was built, and each call of it, as a decorator or a wave's policy=, raised AttributeError '_hooks'
    with pytest.raises(TypeError, match=r"^Policy is the base of every policy, not one itself: create one"):
        Policy()


def test_a_policy_of_the_users_overriding_call_alone_works_outside_a_pipeline_and_is_refused_inside() -> None:
    seen: list[str] = []

    class Logged(Policy):
        __slots__ = ()

        async def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            seen.append("call")
            return await fn(*args, **kwargs)

    async def double(x: int) -> int:
        return 2 * x

    assert asyncio.run(Logged()(double)(2)) == 4
    assert asyncio.run(Wave("w", policy=Logged(), instrument=False).map(double, [3])).values() == [6]
    assert seen == ["call", "call"]
    # inside a Pipeline every call raised a bare NotImplementedError (the pipeline runs each policy's run() step)
    with pytest.raises(TypeError, match=r"^Pipeline takes the library's policies .* apply it outside the pipeline"):
        Pipeline(Retry(), Logged())


@pytest.mark.parametrize("stack", [
    lambda b: Pipeline(b, Retry(attempts=2, initial=0.0), b),
    lambda b: Pipeline(b, Pipeline(Retry(attempts=2, initial=0.0), b)),  # nested pipelines are flattened
    lambda b: resilient(Timeout(5), b, Hedge(0.1), b),
])
def test_one_breaker_listed_twice_in_a_stack_is_refused_naming_policies(stack: Callable[[Any], Policy]) -> None:
    """Listed twice it never closed again once open: half-open, the outer place admitted the one probe, the
    inner place rejected it, and the outer place counted that rejection as the probe's failure (reopened),
    every reset timeout, however healthy the service; in the meantime it counted each call twice."""
    breaker = CircuitBreaker("orders-twice", failure_threshold=1, reset_timeout=1.0, instrument=False)
    with pytest.raises(TypeError, match=r"^policies: CircuitBreaker 'orders-twice' is listed twice \(policies \d and "
                                        r"\d of the pipeline\).*never closes again\. List it once"):
        stack(breaker)


def test_one_breaker_in_a_stack_closes_again_once_the_service_is_healthy() -> None:
    """The order that was meant (listed once): after the reset timeout the probe goes through and closes it."""
    breaker = CircuitBreaker("orders-once", failure_threshold=1, reset_timeout=1.0, clock=vclock, instrument=False)
    pipeline = Pipeline(breaker, Retry(attempts=2, initial=0.0, instrument=False), instrument=False)
    healthy = False

    async def service() -> str:
        if not healthy:
            raise ValueError("down")
        return "up"

    async def main() -> list[str]:
        nonlocal healthy
        with pytest.raises(ValueError, match="down"):
            await pipeline.call(service)
        healthy = True
        await asyncio.sleep(1.5)
        return [await pipeline.call(service), breaker.state.value]

    assert run_virtual(main()) == ["up", "closed"]


# --------------------------------------------------------------------------- the error a Timeout in a stack raises
async def hang() -> None:
    await asyncio.Event().wait()


TELEMETRY: dict[str, Callable[[], dict[str, Any]]] = {
    "off": lambda: {"instrument": False},
    "no SDK": lambda: {"tracer_provider": trace.NoOpTracerProvider(), "meter_provider": NoOpMeterProvider()},
    "SDK": lambda: dict(InMemoryTelemetry().providers),
}
STACKS: dict[str, tuple[Callable[[dict[str, Any]], Callable[[], Any]], str]] = {
    "named pipeline": (lambda kw: functools.partial(
        Pipeline(Timeout(1.5), Retry(attempts=2, initial=0.0), name="fetch", **kw).call, hang),
        "operation 'fetch' timed out after 1.5 s (Timeout policy)"),
    "decorated": (lambda kw: resilient(Retry(attempts=2, initial=0.0), Timeout(1.5), **kw)(hang),
                  "operation 'hang' timed out after 1.5 s (Timeout policy)"),
    "unnamed pipeline": (lambda kw: functools.partial(Pipeline(Timeout(1.5), Retry(), **kw).call, hang),
                         "timed out after 1.5 s (Timeout policy)"),
    "lone timeout": (lambda kw: functools.partial(Timeout(1.5, **kw).call, hang),
                     "timed out after 1.5 s (Timeout policy)"),
}


@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("mode", list(TELEMETRY))
def test_a_timeout_in_a_stack_raises_the_same_message_with_or_without_telemetry(stack: str, mode: str) -> None:
    """The message named the operation only when a hook observed the call: ``Pipeline(Timeout(1.5), Retry(),
    name="fetch")`` raised "operation 'fetch' timed out..." with the SDK and "timed out after..." without
    it (an unnamed one "operation 'pipeline' ..." against "timed out ..."): telemetry changed the user's error."""
    make, expected = STACKS[stack]
    with pytest.raises(TimeoutError) as caught:
        run_virtual(make(TELEMETRY[mode]())())
    assert str(caught.value) == expected


# --------------------------------------------------------------------------- the user's function
class Interrupt(BaseException):
    """A BaseException that is not an Exception (as KeyboardInterrupt)."""


@dataclass(frozen=True)
class Act:
    """One call of the user's function: sleep ``sleep`` virtual seconds, then ``kind``."""

    kind: str  # ok | raise | hang | base
    sleep: float = 0.0
    error: str = "ValueError"


ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "KeyError": KeyError, "TimeoutError": TimeoutError}
acts = st.builds(Act, kind=st.sampled_from(["ok", "ok", "raise", "raise", "hang", "base"]),
                 sleep=st.sampled_from([0.0, 0.0, 0.7, 2.1]), error=st.sampled_from(list(ERRORS)))


class Script:
    """The user's function: its n-th call does ``acts[min(n, len - 1)]``. Records every object it returned or
    raised (``produced``, for identity checks) and the span current at each call (the attempt's)."""

    def __init__(self, script: tuple[Act, ...]) -> None:
        self.script = script
        self.calls = 0
        self.spans: list[int] = []
        self.produced: dict[int, Any] = {}  # by call number: completion order may differ when calls overlap

    def __call__(self) -> Any:
        n = self.calls
        self.calls += 1
        self.spans.append(trace.get_current_span().get_span_context().span_id)
        return self._run(self.script[min(n, len(self.script) - 1)], n)

    async def _run(self, act: Act, n: int) -> Any:
        if act.sleep:  # each call a little longer than the one before: hedged attempts never tie
            await asyncio.sleep(act.sleep + 0.0013 * n)
        if act.kind == "hang":
            await asyncio.get_running_loop().create_future()
        if act.kind in ("raise", "base"):
            error = ERRORS[act.error](n) if act.kind == "raise" else Interrupt(n)
            self.produced[n] = error
            raise error
        value = object()
        self.produced[n] = value
        return value


# --------------------------------------------------------------------------- the drawn stacks
@dataclass(frozen=True)
class Spec:
    kind: str  # retry | timeout | fallback | hedge | degrade | breaker | same (an earlier policy object again)
    opts: tuple[Any, ...]


ON: dict[str, Any] = {"Exception": Exception, "ValueError": ValueError, "TimeoutError": TimeoutError,
                      "ValueError+open": (ValueError, CircuitOpenError)}
FALLBACK, DEFAULT = object(), object()


async def fallback(error: Exception) -> object:
    return FALLBACK


def _specs(breakers: bool) -> st.SearchStrategy[Spec]:
    handled = st.sampled_from(["Exception", "ValueError", "TimeoutError"])
    drawn = [
        st.builds(lambda n, on: Spec("retry", (n, on)), st.integers(1, 4), st.sampled_from(list(ON))),
        st.builds(lambda s: Spec("timeout", (s,)), st.sampled_from([0.5, 1.5, 3.3])),
        st.builds(lambda on: Spec("fallback", (on,)), handled),
        st.builds(lambda d, n: Spec("hedge", (d, n)), st.sampled_from([0.3, 0.9]), st.integers(1, 3)),
        st.builds(lambda on: Spec("degrade", (on, False)), handled),
        st.builds(lambda k: Spec("same", (k,)), st.integers(0, 3)),
    ]
    if breakers:  # state shared by every call, on purpose: the calls are no longer independent
        drawn += [
            st.builds(lambda name, n, reset: Spec("breaker", (name, n, reset)), st.sampled_from(["b1", "b2"]),
                      st.integers(1, 3), st.sampled_from([0.4, 2.0])),
            st.builds(lambda on: Spec("degrade", (on, True)), handled),
        ]
    return st.one_of(drawn)


def untied(chain: list[Spec]) -> list[Spec]:
    """Two hedges or timeouts of one delay would fire at the same virtual instant, in the loop's order."""
    return [Spec(s.kind, (s.opts[0] + 0.011 * k, *s.opts[1:])) if s.kind in ("hedge", "timeout") else s
            for k, s in enumerate(chain)]


def build(chain: list[Spec], tel: InMemoryTelemetry) -> Pipeline:
    policies: list[Policy] = []
    breakers: dict[str, CircuitBreaker] = {}
    for spec in chain:
        o = spec.opts
        if spec.kind == "same":  # the same object again, further in
            if policies:
                policies.append(policies[o[0] % len(policies)])
        elif spec.kind == "retry":
            policies.append(Retry(attempts=o[0], initial=0.1, jitter="none", on=ON[o[1]], clock=vclock))
        elif spec.kind == "timeout":
            policies.append(Timeout(o[0], clock=vclock))
        elif spec.kind == "fallback":
            policies.append(Fallback(fallback, on=ON[o[0]], clock=vclock))
        elif spec.kind == "hedge":
            policies.append(Hedge(o[0], attempts=o[1], clock=vclock))
        elif spec.kind == "degrade":
            policies.append(Degrade(default=DEFAULT, last_good=o[1], on=ON[o[0]], clock=vclock))
        else:
            if o[0] not in breakers:
                breakers[o[0]] = CircuitBreaker(o[0], failure_threshold=o[1], reset_timeout=o[2], clock=vclock,
                                                **tel.providers)
            policies.append(breakers[o[0]])
    # one breaker listed twice is refused (see above): kept once
    policies = [p for k, p in enumerate(policies) if not isinstance(p, CircuitBreaker) or p not in policies[:k]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the orders that warn (_order.py) run as written
        return Pipeline(*policies, name="op", clock=vclock, **tel.providers)


def chains(breakers: bool) -> st.SearchStrategy[list[Spec]]:
    return st.lists(_specs(breakers), min_size=1, max_size=4).filter(lambda c: c[0].kind != "same").map(untied)


scripts = st.lists(st.lists(acts, min_size=1, max_size=4).map(tuple), min_size=2, max_size=4)
starts = st.lists(st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.0]), min_size=4, max_size=4)


async def call_at(pipeline: Pipeline, fn: Callable[[], Any], start: float) -> tuple[str, Any, float]:
    """``pipeline.call(fn)`` ``start`` s from now: ("ret" | "exc", what, how long it took). A hang is ended
    by the caller after 100 s."""
    await asyncio.sleep(start)
    began = vclock()
    try:
        async with asyncio.timeout(100):
            value = await pipeline.call(fn)
    except BaseException as exc:  # the user's outcome, whatever it is
        return "exc", exc, vclock() - began
    return "ret", value, vclock() - began


def identity(what: Any, script: Script, everyone: list[Script]) -> Any:
    """What ``what`` is, by identity: one of the objects this call's function returned or raised (its
    index), the fallback's or default's object, or an error the library made (by type)."""
    if isinstance(what, Served):
        if what.mode == "last_good":  # one per Degrade object: another call's value, the very object
            assert any(what.value is p for s in everyone for p in s.produced.values()), what
            return ("served", "last_good", identity(what.error, script, everyone))
        return ("served", identity(what.value, script, everyone), what.degraded,
                None if what.error is None else identity(what.error, script, everyone))
    if isinstance(what, FallbackError):
        return ("FallbackError", identity(what.primary, script, everyone), identity(what.fallback, script, everyone))
    if what is FALLBACK or what is DEFAULT:
        return "fallback" if what is FALLBACK else "default"
    for k, produced in script.produced.items():
        if what is produced:
            return ("own", k)
    assert isinstance(what, CircuitOpenError | TimeoutError | asyncio.CancelledError), (
        f"{what!r} is neither what the user's function produced nor an error of a policy", script.produced)
    return ("library", type(what).__name__, str(what))


@PROBES
@given(chain=chains(breakers=False), scripts=scripts, starts=starts)
def test_concurrent_calls_through_one_stack_each_get_exactly_what_they_get_alone(
    chain: list[Spec], scripts: list[tuple[Act, ...]], starts: list[float],
) -> None:
    """No state of one call leaks into another: same outcome (the very objects), same duration, same number
    of calls of the function, as when each runs alone through a stack of its own."""
    alone = []
    for k, acts_ in enumerate(scripts):
        script = Script(acts_)

        async def solo(script: Script = script, start: float = starts[k]) -> tuple[str, Any, float]:
            return await call_at(build(chain, InMemoryTelemetry()), script, start)

        kind, what, took = run_virtual(solo())
        alone.append((kind, identity(what, script, [script]), round(took, 9), script.calls))
    tel = InMemoryTelemetry()
    together = [Script(s) for s in scripts]

    async def main() -> list[tuple[str, Any, float]]:
        pipeline = build(chain, tel)
        return await asyncio.gather(*(call_at(pipeline, s, starts[k]) for k, s in enumerate(together)))

    results = run_virtual(main())
    got = [(kind, identity(what, s, [s]), round(took, 9), s.calls)
           for (kind, what, took), s in zip(results, together, strict=True)]
    assert got == alone
    tel.shutdown()


@PROBES
@given(chain=chains(breakers=True), scripts=scripts, starts=starts, nested=st.booleans(),
       cancel_at=st.sampled_from([None, None, 0.8, 2.05]))
def test_concurrent_calls_leave_no_task_and_their_attempt_spans_under_their_own_operation(
    chain: list[Spec], scripts: list[tuple[Act, ...]], starts: list[float], nested: bool, cancel_at: float | None,
) -> None:
    """Shared breakers and last good values, the same object twice in a stack, a call of another pipeline
    inside the operation (``nested``), the first caller cancelled: what each caller gets is an object its own
    function produced (or a policy's); when all calls are over no task is left and no span open; every call of
    the function ran under an attempt span of its own call's operation, whose ``shannon.attempt`` counts them."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    together = [Script(s) for s in scripts]
    outcomes: list[tuple[str, Any, float]] = []
    began: list[int] = []
    leftover: list[asyncio.Task[Any]] = []

    async def main() -> None:
        pipeline = build(chain, tel)
        inner = Pipeline(Retry(attempts=2, initial=0.0, clock=vclock), name="inner", clock=vclock, **tel.providers)

        async def one(k: int, script: Script) -> tuple[str, Any, float]:
            await asyncio.sleep(starts[k])
            began.append(k)
            return await call_at(pipeline, (lambda: inner.call(script)) if nested else script, 0.0)

        tasks = [asyncio.create_task(one(k, s)) for k, s in enumerate(together)]
        if cancel_at is not None:
            asyncio.get_running_loop().call_later(cancel_at, tasks[0].cancel)
        for t in tasks:
            try:
                outcomes.append(await t)
            except asyncio.CancelledError as exc:  # cancelled before its call began
                outcomes.append(("exc", exc, 0.0))
        await asyncio.sleep(0)
        leftover.extend(t for t in asyncio.all_tasks() if t is not asyncio.current_task())

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a coroutine never awaited
        run_virtual(main())
        gc.collect()
    assert not leftover, leftover
    assert not spans.open, f"spans left open: {sorted(spans.open.values())}"
    for (_, what, _), script in zip(outcomes, together, strict=True):
        identity(what, script, together)
    finished = tel.spans()
    by_id = {s.context.span_id: s for s in finished if s.context is not None}
    ops = [s for s in finished if s.name == "op"]
    assert len(ops) == len(began)
    for op in ops:
        tries = [s for s in finished if s.parent is not None and s.parent.span_id == op.context.span_id
                 and s.name.startswith(("attempt ", "hedge "))]
        assert attrs(op)["shannon.attempt"] == len(tries)
    owners = []
    for script in together:
        under = set()
        for span_id in script.spans:
            attempt = by_id[span_id]
            assert attempt.name.startswith(("attempt ", "hedge ")), attempt.name
            assert attempt.parent is not None
            under.add(attempt.parent.span_id)
        if nested:  # the inner call's operation sits under an attempt of the outer one
            for parent in under:
                inner_op = by_id[parent]
                assert inner_op.name == "inner" and inner_op.parent is not None
                outer_attempt = by_id[inner_op.parent.span_id]
                assert outer_attempt.name.startswith(("attempt ", "hedge ")) and outer_attempt.parent is not None
                owners.append(outer_attempt.parent.span_id)
            continue
        assert len(under) <= 1, "one call's attempts under two operations"
        if under:
            op_id = under.pop()
            assert by_id[op_id].name == "op"
            assert attrs(by_id[op_id])["shannon.attempt"] == script.calls
            owners.append(op_id)
    if not nested:
        assert len(owners) == len(set(owners)), "two calls' attempts under one operation"
    tel.shutdown()
