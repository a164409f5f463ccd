"""Every pair of policies, in both orders, through a Pipeline: success, failure, timeout (a slow
operation), cancellation. Each case is checked against a small reference model of what the pair
means (``a(b(fn))``): the result or error type, the attempts made, the virtual time it took, and
the telemetry of the call (the operation span, its attempt spans, the ``shannon.calls`` point).

The operation: ``success`` returns at once; ``failure`` raises ConnectionError at once; ``timeout``
takes 10 s (so a ``Timeout(1)`` cuts it); ``cancellation`` hangs and the caller cancels at 0.3 s.
Runs on the virtual-time loop: every sleep and timeout is exact and instant.
"""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from _virtual_time import run_virtual

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
)
from shannon_otel.testing import InMemoryTelemetry

KINDS = ("retry", "breaker", "timeout", "fallback", "hedge", "degrade")
SCENARIOS = ("success", "failure", "timeout", "cancellation")
BACKOFF = (0.1, 0.2)  # Retry(attempts=3, initial=0.1, jitter="none")
HEDGE_DELAY, TIMEOUT_S, SLOW_S, CANCEL_AT = 0.5, 1.0, 10.0, 0.3
RETRIED = ("ConnectionError", "TimeoutError")


async def _fallback(error: Exception) -> str:
    return "fallback"


def build(kind: str, tel: InMemoryTelemetry) -> Policy:
    if kind == "retry":
        return Retry(attempts=3, initial=BACKOFF[0], jitter="none", on=(ConnectionError, TimeoutError))
    if kind == "breaker":
        return CircuitBreaker(f"breaker-{next(_names)}", failure_threshold=2, reset_timeout=60.0, **tel.providers)
    if kind == "timeout":
        return Timeout(TIMEOUT_S)
    if kind == "fallback":
        return Fallback(_fallback)
    if kind == "hedge":
        return Hedge(HEDGE_DELAY, attempts=2)
    return Degrade(default="degraded", on=(ConnectionError, TimeoutError, CircuitOpenError))


_names = itertools.count()


# ------------------------------------------------------------------------- the reference model
@dataclass
class Outcome:
    kind: str  # "ok" or the error's type name
    value: Any = None
    end: float = 0.0
    starts: list[float] = field(default_factory=list)  # when each attempt started


Model = Callable[[float], Outcome]


def model_op(scenario: str) -> Model:
    if scenario == "success":
        return lambda t: Outcome("ok", "ok", t, [t])
    if scenario == "failure":
        return lambda t: Outcome("ConnectionError", None, t, [t])
    return lambda t: Outcome("ok", "ok", t + SLOW_S, [t])  # slow


def model(kind: str, inner: Model, breaker: dict[str, int]) -> Model:
    def retry(t0: float) -> Outcome:
        t, starts = t0, []
        for n in range(3):
            r = inner(t)
            starts += r.starts
            if r.kind in RETRIED and n < 2:
                t = r.end + BACKOFF[n]
                continue
            return Outcome(r.kind, r.value, r.end, starts)
        raise AssertionError

    def circuit(t0: float) -> Outcome:
        if breaker["failures"] >= 2:
            return Outcome("CircuitOpenError", None, t0, [])
        r = inner(t0)
        if r.kind != "ok":
            breaker["failures"] += 1
        return r

    def timeout(t0: float) -> Outcome:
        r = inner(t0)
        if r.end - t0 <= TIMEOUT_S:
            return r
        return Outcome("TimeoutError", None, t0 + TIMEOUT_S, [s for s in r.starts if s < t0 + TIMEOUT_S])

    def fallback(t0: float) -> Outcome:
        r = inner(t0)
        return r if r.kind == "ok" else Outcome("ok", "fallback", r.end, r.starts)

    def hedge(t0: float) -> Outcome:
        first = inner(t0)
        if first.kind == "ok" and first.end <= t0 + HEDGE_DELAY:
            return first
        second = inner(min(t0 + HEDGE_DELAY, first.end if first.kind != "ok" else t0 + HEDGE_DELAY))
        wins = sorted((r for r in (first, second) if r.kind == "ok"), key=lambda r: r.end)
        last = wins[0] if wins else max((first, second), key=lambda r: r.end)
        starts = [s for s in first.starts + second.starts if s <= last.end]
        return Outcome(last.kind, last.value, last.end, starts)

    def degrade(t0: float) -> Outcome:
        r = inner(t0)
        if r.kind == "ok":
            return Outcome("ok", ("served", r.value, False), r.end, r.starts)
        if r.kind in ("ConnectionError", "TimeoutError", "CircuitOpenError"):
            return Outcome("ok", ("served", "degraded", True), r.end, r.starts)
        return r

    return {"retry": retry, "breaker": circuit, "timeout": timeout, "fallback": fallback, "hedge": hedge,
            "degrade": degrade}[kind]


def expected(outer: str, inner: str, scenario: str) -> Outcome:
    breaker = {"failures": 0}
    return model(outer, model(inner, model_op(scenario), breaker), breaker)(0.0)


# ------------------------------------------------------------------------- the real thing
def real_op(scenario: str) -> Callable[[], Any]:
    async def op() -> str:
        if scenario == "failure":
            raise ConnectionError("down")
        if scenario == "timeout":
            await asyncio.sleep(SLOW_S)
        elif scenario == "cancellation":
            await asyncio.Event().wait()
        return "ok"

    return op


PAIRS = [(a, b) for a in KINDS for b in KINDS if a != b]
# Orders whose outer policy can never act, by the types each policy handles (``build``): the inner one
# serves a result for every error the outer one retries or counts. The breaker counts every Exception,
# and the degrade serves only three types, so the breaker outside the degrade still counts the others.
# Outside a Fallback, what the fallback raises still reaches the outer policy (not part of the model: it serves).
# (The retry's on= takes no FallbackError: it does not retry a fallback that fails too; the breaker counts it.)
NEVER_ACTS = {("retry", "fallback"): "retry only when the fallback re-raises the error",
              ("retry", "degrade"): "never retry",
              ("breaker", "fallback"): "open only when the fallback fails too or re-raises the error"}


@pytest.mark.parametrize(("outer", "inner"), sorted(NEVER_ACTS))
def test_the_orders_that_warn_are_those_whose_outer_policy_the_model_never_runs(outer: str, inner: str) -> None:
    for scenario in ("failure", "timeout"):  # the failures: served inside, never seen outside
        want = expected(outer, inner, scenario)
        assert want.kind == "ok" and len(want.starts) == 1
        assert expected_failures(outer, inner, scenario) == 0


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize(("outer", "inner"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_pair(outer: str, inner: str, scenario: str) -> None:
    tel = InMemoryTelemetry()
    policies = (build(outer, tel), build(inner, tel))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = Pipeline(*policies, name="op", **tel.providers)
    # The construction warns exactly for the orders whose outer policy can never act (see below).
    assert [str(w.message).split(":")[0] for w in caught] == (
        [f"{type(policies[0]).__name__} (policy 1 of the pipeline) will {NEVER_ACTS[outer, inner]}"]
        if (outer, inner) in NEVER_ACTS else [])
    op = real_op(scenario)

    async def main() -> tuple[str, Any, float]:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(pipeline.call(op))
        if scenario == "cancellation":
            await asyncio.sleep(CANCEL_AT)
            task.cancel()
        try:
            value = await task
        except asyncio.CancelledError:
            return "CancelledError", None, loop.time()
        except Exception as exc:
            return type(exc).__name__, None, loop.time()
        if isinstance(value, Served):
            value = ("served", value.value, value.degraded)
        return "ok", value, loop.time()

    kind, value, end = run_virtual(main())
    span = tel.span("op")
    attributes = dict(span.attributes or {})
    attempts = [s for s in tel.children(span) if s.name.startswith(("attempt ", "hedge "))]

    if scenario == "cancellation":  # never retried, never a fallback, never counted by a breaker
        assert (kind, end) == ("CancelledError", CANCEL_AT)
        assert attributes["shannon.call.outcome"] == "cancellation"
        assert attributes["shannon.attempt"] == len(attempts) == 1
        assert tel.points("shannon.breaker.transitions") == []
        assert not tel.spans("fallback op")
        return

    want = expected(outer, inner, scenario)
    assert (kind, value) == (want.kind, want.value)
    assert end == pytest.approx(want.end)
    assert attributes["shannon.attempt"] == len(attempts) == len(want.starts)
    outcome = "success" if kind == "ok" else "rejected" if kind == "CircuitOpenError" else "failure"
    assert attributes["shannon.call.outcome"] == outcome
    error_type = attributes.get("error.type")  # qualified for library errors: shannon_otel.CircuitOpenError
    short = None if error_type is None else str(error_type).rsplit(".", 1)[-1]
    assert short == (None if kind == "ok" else kind)
    point = tel.point("shannon.calls", shannon_operation="op", shannon_call_outcome=outcome)
    assert point.value == 1
    if "breaker" in (outer, inner):
        opened = want.kind == "CircuitOpenError" or expected_failures(outer, inner, scenario) >= 2
        states = {(p.attributes["shannon.breaker.state.to"]) for p in tel.points("shannon.breaker.transitions")}
        assert states == ({"open"} if opened else set())


def expected_failures(outer: str, inner: str, scenario: str) -> int:
    breaker = {"failures": 0}
    model(outer, model(inner, model_op(scenario), breaker), breaker)(0.0)
    return breaker["failures"]


def test_the_matrix_covers_every_ordered_pair() -> None:
    assert len(PAIRS) == 30 and len(set(PAIRS)) == 30


# ------------------------------------------------------------------ the order warning, case by case
def _order_warnings(build_it: Callable[[], object]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_it()
    return [w for w in caught if "(policy" in str(w.message)]


def test_a_retry_outside_a_fallback_warns_at_the_users_line_naming_the_order_meant() -> None:
    for build_it in (lambda: Pipeline(Retry(), Fallback(_fallback)),
                     lambda: resilient_of(Retry(), Hedge(0.1), Fallback(_fallback)),
                     lambda: Pipeline(Pipeline(Retry()), Fallback(_fallback))):  # nested: flattened, then read
        (caught,) = _order_warnings(build_it)
        assert caught.category is UserWarning and caught.filename == __file__
        message = str(caught.message)
        assert message.startswith(
            "Retry (policy 1 of the pipeline) will retry only when the fallback fails too or re-raises the error: "
            "the Fallback inside it (policy")
        assert "resilient(Fallback(...), Retry(...))" in message


def resilient_of(*policies: Policy) -> object:
    from shannon_otel import resilient

    return resilient(*policies)


@pytest.mark.parametrize("build_it", [
    lambda: Pipeline(Fallback(_fallback), Retry()),  # the usual order
    lambda: Pipeline(Retry(), Timeout(1), Fallback(_fallback)),  # the retry still sees the Timeout's errors
    lambda: Pipeline(Retry(), Fallback(_fallback, on=ValueError)),  # serves only some of what is retried
    lambda: Pipeline(Retry(on=lambda exc: True), Fallback(_fallback)),  # a predicate cannot be read
    lambda: Pipeline(Retry(), Degrade(last_good=True, on=Exception)),  # no default: may raise the error again
    lambda: Pipeline(CircuitBreaker("order-b", slow_call_s=1.0), Fallback(_fallback)),  # slow successes count
    # wait_retry_after retries the rejections of the breaker inside the fallback, whatever on= says
    lambda: Pipeline(Retry(on=ValueError, wait_retry_after=True), Fallback(_fallback, on=ValueError),
                     CircuitBreaker("order-c")),
], ids=["usual", "timeout-between", "narrow", "predicate", "no-default", "slow-calls", "waits-retry-after"])
def test_orders_where_the_outer_policy_can_still_act_do_not_warn(build_it: Callable[[], object]) -> None:
    assert _order_warnings(build_it) == []


def test_a_breaker_between_them_is_the_policy_named() -> None:
    # The retry would see the breaker's rejections, but the breaker outside the fallback never opens.
    (caught,) = _order_warnings(lambda: Pipeline(Retry(), CircuitBreaker("order-a"), Fallback(_fallback)))
    assert str(caught.message).startswith(
        "CircuitBreaker (policy 2 of the pipeline) will open only when the fallback fails too or re-raises the "
        "error: the Fallback inside it (policy 3)")


def test_a_warned_order_still_runs_as_written() -> None:
    # The warning is advice: Retry(Fallback(fn)) serves the fallback at the first failure, as composed.
    calls = []

    async def failing() -> str:
        calls.append(1)
        raise ConnectionError("down")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = Pipeline(Retry(attempts=3, initial=0.0), Fallback(_fallback), instrument=False)
    assert run_virtual(pipeline.call(failing)) == "fallback"
    assert calls == [1]


@pytest.mark.parametrize(("on", "declines", "attempts"), [
    (Exception, False, 3), (ConnectionError, False, 1), (ConnectionError, True, 3),
], ids=["fails-FallbackError-retried", "fails-FallbackError-not-retried", "re-raises"])
def test_the_order_warning_says_what_the_retry_does_when_the_fallback_does_not_serve(
    on: type[Exception], declines: bool, attempts: int,
) -> None:
    """It said "will never retry" for ``Pipeline(Retry(), Fallback(fb))``, yet when ``fb`` failed too the retry
    retried the FallbackError (the default ``on=Exception`` takes it) and called the operation three times; so
    it does when ``fb`` re-raises the error it was given, whatever ``on=``. Then it said "when the fallback fails
    too" for ``Retry(on=ConnectionError)`` too, which never retries a FallbackError: said only when it does."""
    calls = []

    async def failing() -> str:
        calls.append(1)
        raise ConnectionError("down")

    async def fallback(error: Exception) -> str:
        if declines:
            raise error
        raise KeyError("no fallback either")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = Pipeline(Retry(attempts=3, initial=0.0, on=on), Fallback(fallback), instrument=False)
    (warning,) = caught
    # It said "fails too" for on=ConnectionError as well, which does not take the FallbackError: one attempt
    fails_too = "fails too or " if on is Exception else ""
    assert str(warning.message).startswith(
        f"Retry (policy 1 of the pipeline) will retry only when the fallback {fails_too}re-raises the error: ")
    with pytest.raises(ConnectionError if declines else FallbackError):
        run_virtual(pipeline.call(failing))
    assert len(calls) == attempts


def test_decorating_with_a_warned_pipeline_does_not_warn_again() -> None:
    """The decorator named the pipeline by building it again, which checked the order again: a second warning, at
    the decorator's line, raised as an error under ``-W error`` where the user had let the first one pass."""

    async def failing() -> str:
        raise ConnectionError("down")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = Pipeline(Retry(attempts=3, initial=0.0), Fallback(_fallback), Timeout(1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decorated = pipeline(failing)
    assert run_virtual(decorated()) == "fallback"
    with pytest.raises(TimeoutError, match=r"^operation '.*slow' timed out after 0.5 s"):
        run_virtual(Pipeline(Timeout(0.5), instrument=False)(_slow)())


async def _slow() -> None:
    await asyncio.sleep(1.0)
