"""The OTel side of recovery: global-provider switch, breaker state series, hook isolation."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _abandoned import abandoned_with_its_loop
from opentelemetry import trace as otel_trace
from opentelemetry.trace import StatusCode
from test_recovery_support import FakeClock, Telemetry, run

from shannon_otel import CircuitBreaker, Fallback, Policy, Saga, Step, Timeout, Wave
from shannon_otel._otel import _providers as otel_providers
from shannon_otel._otel import _recovery as otel_recovery
from shannon_otel._otel._recovery import RecoveryTelemetry
from shannon_otel._otel._series import SeriesWatch
from shannon_otel._telemetry import BreakerState
from shannon_otel.recovery import BreakerRegistry, CircuitOpenError, Hedge, Pipeline, Retry
from shannon_otel.testing import InMemoryTelemetry, run_virtual

ROOT = Path(__file__).resolve().parents[1]


def test_global_providers_are_watched_until_set_then_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import metrics, trace

    api = types.SimpleNamespace(_TRACER_PROVIDER=None)
    metrics_api = types.SimpleNamespace(_METER_PROVIDER=None)
    for module in (otel_recovery, otel_providers):  # the policies' inlined check, and Recording's own
        monkeypatch.setattr(module, "TRACE_API", api)
        monkeypatch.setattr(module, "METRICS_API", metrics_api)
    checks: list[Any] = []

    def enabled(provider: Any) -> bool:
        checks.append(provider)
        return True

    monkeypatch.setattr(otel_providers, "tracing_enabled", enabled)
    tel = RecoveryTelemetry(trace.get_tracer("t"), metrics.get_meter("m"), {}, SeriesWatch(), None, None)
    started = types.SimpleNamespace(operation="op")
    assert tel.call_started(started) is None  # type: ignore[arg-type]
    assert checks == []  # O(1): no getter called while the global slot is empty
    api._TRACER_PROVIDER = object()  # configure() set the global
    assert tel.call_started(started) is not None  # type: ignore[arg-type]
    assert tel.call_started(started) is not None  # type: ignore[arg-type]
    assert checks == [None]  # resolved once


def test_breakers_built_before_configure_get_their_state_series_once_it_has_run() -> None:
    # Breakers decorating functions at import time, before configure(): their registration found no SDK, so they
    # had no shannon.breaker.state series until their first transition (one opened meanwhile: none while open).
    # In a fresh interpreter: the globals can be set once per process.
    script = """
import asyncio, json
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from shannon_otel import CircuitBreaker, CircuitOpenError, configure

early = CircuitBreaker(name="early")
tripped = CircuitBreaker(name="tripped", failure_threshold=1, reset_timeout=3600)

@early
async def ok() -> int:
    return 1

@tripped
async def fail() -> None:
    raise ConnectionError

async def calls() -> None:
    await ok()
    try:
        await fail()
    except (ConnectionError, CircuitOpenError):
        pass

asyncio.run(calls())  # before configure(): tripped opens
reader = InMemoryMetricReader()
telemetry = configure(service_name="early", exporter="none", metric_readers=[reader])
asyncio.run(calls())
points = [(dict(p.attributes), p.value) for rm in reader.get_metrics_data().resource_metrics
          for sm in rm.scope_metrics for m in sm.metrics if m.name == "shannon.breaker.state"
          for p in m.data.data_points]
print(json.dumps(sorted([a["shannon.breaker.name"], a["shannon.breaker.state"], v] for a, v in points)))
telemetry.shutdown()
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        ["early", "closed", 1], ["early", "half_open", 0], ["early", "open", 0],
        ["tripped", "closed", 0], ["tripped", "half_open", 0], ["tripped", "open", 1],
    ]


def test_breaker_state_series_follow_transitions_across_a_registry() -> None:
    tel, clock = Telemetry(), FakeClock()
    registry = BreakerRegistry(clock=clock, **tel.kw)
    a = registry.get("a", failure_threshold=1, reset_timeout=1)
    registry.get("b")

    async def fail() -> None:
        raise ConnectionError

    async def ok() -> str:
        return "ok"

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await a.call(fail)
        with pytest.raises(CircuitOpenError):
            await a.call(ok)
        clock.now += 1
        assert await a.call(ok) == "ok"

    run(main())
    assert a.state is BreakerState.CLOSED
    states = {(p[0]["shannon.breaker.name"], p[0]["shannon.breaker.state"]): p[1]
              for p in tel.points("shannon.breaker.state")}
    assert states == {
        ("a", "closed"): 1, ("a", "open"): 0, ("a", "half_open"): 0,
        ("b", "closed"): 1, ("b", "open"): 0, ("b", "half_open"): 0,
    }
    transitions = sorted((p[0]["shannon.breaker.state.from"], p[0]["shannon.breaker.state.to"], p[1])
                         for p in tel.points("shannon.breaker.transitions"))
    assert transitions == [("closed", "open", 1), ("half_open", "closed", 1), ("open", "half_open", 1)]


def test_a_retried_hedge_reports_attempts_and_hedges_in_one_trace() -> None:
    tel, clock = Telemetry(), FakeClock()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError(calls)
        return "ok"

    async def never(seconds: float) -> None:
        import asyncio

        await asyncio.Event().wait()

    pipeline = Pipeline(Retry(attempts=2, jitter="none", sleep=clock.sleep), Hedge(1.0, sleep=never),
                        name="lookup", **tel.kw)
    assert run(pipeline.call(flaky)) == "ok"
    op = tel.span("lookup")
    assert [s.name for s in tel.children(op)] == ["attempt 1", "hedge 2", "attempt 3"]
    hedge = tel.span("hedge 2")
    assert hedge.attributes is not None and hedge.attributes["shannon.hedge.attempt"] == 2
    assert tel.points("shannon.hedges") == [({"shannon.operation": "lookup"}, 1)]
    assert tel.points("shannon.retry.attempts") == [
        ({"shannon.operation": "lookup", "shannon.call.outcome": "success"}, (1, 3))]


@pytest.mark.parametrize("order", ["hedge outside the breaker", "breaker outside the hedge"])
def test_a_hedged_attempt_names_the_breaker_that_admitted_it_as_an_attempt_does(order: str) -> None:
    """docs/architecture.md: a `hedge {attempt}` span has the attributes of an attempt span, plus
    `shannon.hedge.attempt`; `attempt 1` named the breaker that admitted it and its state, `hedge 2` (the same
    breaker's admission, in either order) named neither."""
    tel = InMemoryTelemetry()

    async def slow_failure() -> None:
        await asyncio.sleep(0.1)
        raise ConnectionError("down")

    breaker = CircuitBreaker("api", failure_threshold=10)
    policies = (Hedge(0.05), breaker) if order.startswith("hedge") else (breaker, Hedge(0.05))

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await Pipeline(*policies, name="lookup", **tel.providers).call(slow_failure)

    run_virtual(main())
    for name in ("attempt 1", "hedge 2"):
        attributes = tel.span(name).attributes
        assert attributes is not None
        assert (attributes.get("shannon.breaker.name"), attributes.get("shannon.breaker.state")) == ("api", "closed")


def test_a_retry_inside_a_hedge_retries_the_hedged_attempt_without_counting_another_hedge() -> None:
    """``Pipeline(Hedge(0.01, attempts=2), Retry(attempts=3))``, always failing: the Retry inside the hedged
    attempt retried it, and each of its retries was named ``hedge N`` and counted in ``shannon.hedges`` (spans
    attempt 1, hedge 2, attempt 3, hedge 4, attempt 5, hedge 6 and 3 hedges, for the one the Hedge launched).
    A retry of either attempt is an ``attempt N`` span; the retries of the hedged one name it in
    ``shannon.hedge.attempt``; ``shannon.hedges`` counts the hedge launched: 1 (docs/architecture.md)."""
    tel = InMemoryTelemetry()

    async def failing() -> None:
        await asyncio.sleep(0.05)  # outlives the hedge's delay: both attempts run and retry
        raise ConnectionError("down")

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await Pipeline(Hedge(0.01, attempts=2), Retry(attempts=3, initial=0), name="lookup",
                           **tel.providers).call(failing)

    run_virtual(main())
    children = tel.children(tel.span("lookup"))
    named = sorted((s.name, (s.attributes or {}).get("shannon.hedge.attempt")) for s in children)
    hedge = [n for n, _ in named if n.startswith("hedge ")]
    assert len(hedge) == 1, named
    first = int(hedge[0].split()[1])
    assert [h for n, h in named if n.startswith("attempt ")].count(first) == 2, named  # its two retries
    assert [h for n, h in named if n.startswith("attempt ")].count(None) == 3, named  # attempt 1 and its retries
    assert sorted(int(n.split()[1]) for n, _ in named) == [1, 2, 3, 4, 5, 6]
    assert [(dict(p.attributes), p.value) for p in tel.points("shannon.hedges")] == [
        ({"shannon.operation": "lookup"}, 1)]


# ------------------------------------------------------------------ a hedge inside a nested call
def test_a_call_made_inside_a_hedged_attempt_reports_its_own_attempts_as_attempts() -> None:
    """The hedge marked its attempts' context "hedged" with a flag every call inside inherited: an
    instrumented call the operation made itself (a database behind a hedged API) named its own first
    attempt ``hedge 1``."""
    tel = InMemoryTelemetry()
    database = Retry(attempts=2, initial=0, name="db", **tel.providers)

    async def query() -> str:
        await asyncio.sleep(1.0)
        return "row"

    async def fetch() -> str:
        return await database.call(query)

    hedge = Hedge(0.5, attempts=2, name="api", **tel.providers)
    assert run_virtual(hedge.call(fetch)) == "row"
    api = tel.span("api")
    assert sorted(s.name for s in tel.children(api)) == ["attempt 1", "hedge 2"]
    calls = tel.spans("db")
    assert len(calls) == 2
    for db in calls:  # each call of the database, hedged or not, is one plain attempt
        assert [s.name for s in tel.children(db)] == ["attempt 1"]


# ------------------------------------------------------------------ a fallback cut off by a timeout
@pytest.mark.parametrize("cut_by", ["policy", "wave"])
def test_a_fallback_cut_off_by_a_timeout_is_recorded_as_a_timeout_like_an_attempt(cut_by: str) -> None:
    """``Pipeline(Timeout(1), Fallback(slow))``: the attempt the Timeout cut off read ``timeout`` (ERROR),
    the fallback it cut off read ``cancellation`` with status UNSET, as if someone had cancelled the call;
    cut off by the wave's task timeout it read ``timeout`` but still UNSET."""
    tel = InMemoryTelemetry()

    async def failing() -> str:
        await asyncio.sleep(0.5)
        raise ConnectionError("down")

    async def slow_fallback(error: Exception) -> str:
        await asyncio.sleep(5.0)
        return "fallback"

    fallback = Fallback(slow_fallback)
    if cut_by == "policy":
        pipeline = Pipeline(Timeout(1.0), fallback, name="op", **tel.providers)
        with pytest.raises(TimeoutError):
            run_virtual(pipeline.call(failing))
    else:
        wave: Wave[str] = Wave("w", task_timeout=1.0, policy=Pipeline(fallback, name="op", **tel.providers),
                               **tel.providers)
        assert run_virtual(wave.run([failing])).results[0].outcome.value == "timeout"
    span = tel.span("fallback op")
    assert (span.attributes or {})["shannon.attempt.outcome"] == "timeout"
    assert (span.attributes or {})["error.type"] == "TimeoutError"  # as a timed-out attempt's (was the primary's)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "timeout"


# ------------------------------------------------------------------ work cut off by an enclosing Timeout policy
def test_a_saga_cut_off_by_a_timeout_policy_around_it_records_a_timeout() -> None:
    """A saga inside ``Timeout(1).call(...)`` recorded its cut step and itself as ``cancellation`` (UNSET),
    while the attempt around it read ``timeout``: only the wave task's timeout was told from a cancellation."""
    tel = InMemoryTelemetry()
    saga = Saga("order", **tel.providers)

    async def reserve() -> int:
        return 1

    async def release(value: int) -> None:
        return None

    async def pay() -> int:
        await asyncio.sleep(5.0)
        return 2

    async def body() -> Any:
        return await saga.run(Step("reserve", reserve, compensate=release), Step("pay", pay))

    with pytest.raises(TimeoutError):
        run_virtual(Timeout(1.0, name="op", **tel.providers).call(body))
    for name, key in (("step pay", "shannon.saga.outcome"), ("saga order", "shannon.saga.outcome")):
        span = tel.span(name)
        assert (span.attributes or {})[key] == "timeout", name
        assert span.status.status_code is StatusCode.ERROR, name
    assert (tel.span("compensate reserve").attributes or {})["shannon.compensation.outcome"] == "success"


def test_a_call_cut_off_by_a_timeout_policy_around_it_records_a_timeout_like_a_wave_timeout() -> None:
    """``Timeout(1).call(api)`` where ``api`` makes an instrumented call of its own: that call and its attempt
    read ``cancellation``; cut off the same way by the wave's task timeout they read failure/timeout. Now
    both read the timeout (the cancellation still propagates, uncounted and never retried)."""
    tel = InMemoryTelemetry()
    database = Retry(attempts=3, initial=0, name="db", **tel.providers)
    breaker = CircuitBreaker("db-breaker", failure_threshold=1, **tel.providers)

    async def query() -> int:
        await asyncio.sleep(5.0)
        return 1

    async def api() -> int:
        return await database.call(breaker.call, query)

    with pytest.raises(TimeoutError):
        run_virtual(Timeout(1.0, name="api", **tel.providers).call(api))
    db = tel.span("db")
    assert (db.attributes or {})["shannon.call.outcome"] == "failure"
    assert (db.attributes or {})["error.type"] == "TimeoutError"
    assert [(s.attributes or {})["shannon.attempt.outcome"] for s in tel.children(db)] == ["timeout"]  # not retried
    assert breaker.state is BreakerState.CLOSED  # a cancellation, uncounted


def test_a_timeout_call_abandoned_with_its_loop_is_collected_without_an_error() -> None:
    """Guard of the Timeout policy's published scope: a call left pending when its loop is closed is closed
    by the garbage collector outside its task's context, where resetting the scope raised ValueError."""
    async def slow() -> None:
        await asyncio.sleep(10.0)

    found = abandoned_with_its_loop(Timeout(5.0, instrument=False).call(slow))
    assert not [f for f in found if "ValueError" in f], found


def test_a_hedge_call_abandoned_with_its_loop_is_collected_without_an_error() -> None:
    """As the Timeout's above: a hedge left pending when its loop is closed is closed by the garbage collector,
    where cancelling its attempts raised "Event loop is closed" (an "Exception ignored" traceback)."""
    async def slow() -> None:
        await asyncio.sleep(10.0)

    # three loop turns: the hedge launches its attempts
    found = abandoned_with_its_loop(Hedge(delay=0.0, attempts=3, instrument=False).call(slow), steps=3)
    assert found == []


@pytest.mark.parametrize("policy", ["retry", "timeout", "fallback", "hedge", "pipeline"])
def test_an_instrumented_call_abandoned_with_its_loop_ends_its_spans_without_logging_tracebacks(
    policy: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A call left pending when its loop is closed is closed by the garbage collector in another context: its
    spans' scopes then detached there, and the OTel API logged "Failed to detach context" with two tracebacks
    per call (the executor and sagas already ended theirs quietly). Its spans still end."""
    tel = InMemoryTelemetry()

    async def slow() -> None:
        await asyncio.sleep(10.0)

    async def fallback(error: Exception) -> None:
        return None

    makers: dict[str, Callable[[], Policy]] = {
        "retry": lambda: Retry(name="op", **tel.providers),
        "timeout": lambda: Timeout(5.0, name="op", **tel.providers),
        "fallback": lambda: Fallback(fallback, name="op", **tel.providers),
        "hedge": lambda: Hedge(delay=5.0, name="op", **tel.providers),
        "pipeline": lambda: Pipeline(Retry(), Timeout(5.0), name="op", **tel.providers),
    }
    made = makers[policy]()
    with caplog.at_level(logging.DEBUG, logger="opentelemetry.context"):
        found = abandoned_with_its_loop(made.call(slow), steps=2)
    assert found == []
    assert [r.getMessage() for r in caplog.records if r.name == "opentelemetry.context"] == []
    assert sorted(s.name for s in tel.spans()) == ["attempt 1", "op"]


def test_an_instrumented_call_dropped_pending_while_its_loop_runs_is_collected_without_logging_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task dropped while pending (no reference kept, a "fire and forget" call) is collected while its loop still
    runs: the garbage collector closes its coroutine in whichever task triggered the collection, on the same loop.
    Its scopes then detached in that task's context, where their tokens cannot be reset: "Failed to detach
    context", two tracebacks per call. Its span still ends, and the collecting task's current span is untouched."""
    tel = InMemoryTelemetry()
    tracer = tel.tracer_provider.get_tracer("user")

    def fire_and_forget() -> None:
        forgotten = asyncio.get_running_loop().create_future()

        async def wait() -> None:
            await forgotten  # only this coroutine holds it: the task, once dropped, is garbage

        asyncio.create_task(Retry(name="op", **tel.providers).call(wait))  # noqa: RUF006  # dropped on purpose

    async def main() -> bool:
        with tracer.start_as_current_span("user") as user:
            fire_and_forget()
            await asyncio.sleep(0)  # the call starts: its scopes are entered, in its task
            gc.collect()
            return otel_trace.get_current_span() is user

    with caplog.at_level(logging.DEBUG, logger="opentelemetry.context"):
        assert asyncio.run(main())
    assert [r.getMessage() for r in caplog.records if r.name == "opentelemetry.context"] == []
    assert sorted(s.name for s in tel.spans()) == ["attempt 1", "op", "user"]
