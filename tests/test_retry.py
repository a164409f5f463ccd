"""Retry: attempts, backoff, per-call state, cancellation, and its spans and metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from test_recovery_support import FakeClock, Telemetry, run

from shannon_otel._events import CallObserver, CallStarted, Hook, RetryScheduled
from shannon_otel.recovery import Jitter, Retry, retry
from shannon_otel.recovery._backoff import delay


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``value``."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError, value: Any = "ok") -> None:
        self.failures, self.error, self.value, self.calls = failures, error, value, 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"boom {self.calls}")
        return self.value


def test_retries_until_success_with_spans_events_and_metrics() -> None:
    tel, clock = Telemetry(), FakeClock()
    policy = Retry(attempts=5, initial=1.0, jitter="none", name="fetch", clock=clock, sleep=clock.sleep, **tel.kw)
    assert run(policy.call(Flaky(2))) == "ok"
    assert clock.sleeps == [1.0, 2.0]

    op = tel.span("fetch")
    assert op.parent is None
    assert op.attributes is not None
    assert op.attributes["shannon.call.outcome"] == "success"
    assert op.attributes["shannon.attempt"] == 3
    attempts = tel.children(op)
    assert [s.name for s in attempts] == ["attempt 1", "attempt 2", "attempt 3"]
    assert [s.attributes["shannon.attempt"] for s in attempts if s.attributes] == [1, 2, 3]
    assert [s.attributes["shannon.attempt.outcome"] for s in attempts if s.attributes] == [
        "failure", "failure", "success"]
    assert attempts[0].attributes is not None and attempts[0].attributes["error.type"] == "ConnectionError"
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[2].attributes is not None and "error.type" not in attempts[2].attributes
    scheduled = [e for e in op.events if e.name == "shannon.retry.scheduled"]
    assert [(e.attributes or {}).get("shannon.retry.delay") for e in scheduled] == [1.0, 2.0]
    assert [(e.attributes or {}).get("shannon.attempt") for e in scheduled] == [1, 2]

    assert tel.points("shannon.retry.attempts") == [
        ({"shannon.operation": "fetch", "shannon.call.outcome": "success"}, (1, 3))]
    assert tel.points("shannon.retry.delay") == [({"shannon.operation": "fetch"}, (2, 3.0))]
    assert tel.points("shannon.calls") == [({"shannon.operation": "fetch", "shannon.call.outcome": "success"}, 1)]


def test_gives_up_after_max_attempts_and_reraises_the_last_error() -> None:
    tel, clock = Telemetry(), FakeClock()
    flaky = Flaky(10)
    policy = Retry(attempts=3, jitter="none", clock=clock, sleep=clock.sleep, name="op", **tel.kw)
    with pytest.raises(ConnectionError, match="boom 3"):
        run(policy.call(flaky))
    assert flaky.calls == 3
    op = tel.span("op")
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "failure"
    assert op.attributes["error.type"] == "ConnectionError"
    assert op.status.status_code is StatusCode.ERROR
    assert tel.points("shannon.calls") == [({
        "shannon.operation": "op", "shannon.call.outcome": "failure", "error.type": "ConnectionError"}, 1)]


def test_retry_on_types_and_predicate() -> None:
    clock = FakeClock()
    only_timeouts = Retry(attempts=3, on=TimeoutError, sleep=clock.sleep, instrument=False)
    flaky = Flaky(1, ValueError)
    with pytest.raises(ValueError, match="boom 1"):
        run(only_timeouts.call(flaky))
    assert flaky.calls == 1

    predicate = Retry(attempts=3, on=lambda e: "retry" in str(e), sleep=clock.sleep, instrument=False)
    flaky = Flaky(1, ValueError)
    with pytest.raises(ValueError, match="boom 1"):
        run(predicate.call(flaky))
    assert flaky.calls == 1

    async def needs_retry() -> str:
        needs_retry.calls += 1  # type: ignore[attr-defined]
        if needs_retry.calls == 1:  # type: ignore[attr-defined]
            raise ValueError("please retry")
        return "done"

    needs_retry.calls = 0  # type: ignore[attr-defined]
    assert run(predicate.call(needs_retry)) == "done"


def test_max_total_time_stops_before_a_delay_past_the_deadline() -> None:
    clock = FakeClock()
    policy = Retry(attempts=10, budget_s=5.0, initial=1.0, jitter="none", clock=clock, sleep=clock.sleep,
                   instrument=False)
    flaky = Flaky(100)
    with pytest.raises(ConnectionError):
        run(policy.call(flaky))
    assert clock.sleeps == [1.0, 2.0]  # the next delay (4.0) would end at 7.0 > 5.0
    assert flaky.calls == 3


def test_next_delay_hook_overrides_the_backoff() -> None:
    class RateLimitedError(Exception):
        retry_after = 7.5

    def from_retry_after(error: BaseException, attempt: int) -> float | None:
        return getattr(error, "retry_after", None)

    clock = FakeClock()
    policy = Retry(attempts=3, initial=1.0, jitter="none", next_delay=from_retry_after, clock=clock,
                   sleep=clock.sleep, on=(RateLimitedError, ConnectionError), instrument=False)
    flaky = Flaky(1, RateLimitedError)
    assert run(policy.call(flaky)) == "ok"
    assert clock.sleeps == [7.5]
    flaky = Flaky(1, ConnectionError)
    assert run(policy.call(flaky)) == "ok"
    assert clock.sleeps == [7.5, 1.0]  # None: the backoff


@pytest.mark.parametrize("returned", [float("inf"), 1e9])
def test_an_infinite_or_huge_next_delay_is_capped_at_maximum(returned: float) -> None:
    """Issue 11 observed 2: a Retry-After parser returning inf/1e9 slept forever; maximum caps it."""
    clock = FakeClock()
    policy = Retry(attempts=3, initial=1.0, maximum=8.0, jitter="none", next_delay=lambda e, n: returned,
                   clock=clock, sleep=clock.sleep, instrument=False)
    assert run(policy.call(Flaky(2))) == "ok"
    assert clock.sleeps == [8.0, 8.0]


def test_a_negative_zero_next_delay_is_reported_and_logged_as_zero(caplog: pytest.LogCaptureFixture) -> None:
    """``-0.0`` (``float("-0")`` of a Retry-After header, ``max(-0.0, 0.0)``) passed the ``>= 0`` check and went
    on as it was: the span event's delay -0.0 and the log record "retrying ... in -0.00 s"."""
    import logging
    import math

    from shannon_otel.testing import InMemoryTelemetry

    clock = FakeClock()
    otel = InMemoryTelemetry()
    policy = Retry(attempts=2, next_delay=lambda e, n: -0.0, clock=clock, sleep=clock.sleep, name="negative-zero-delay",
                   **otel.providers)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert run(policy.call(Flaky(1))) == "ok"
    (scheduled,) = [e for s in otel.spans() for e in s.events if e.name == "shannon.retry.scheduled"]
    delay_s = dict(scheduled.attributes or {})["shannon.retry.delay"]
    assert isinstance(delay_s, float) and math.copysign(1.0, delay_s) == 1.0
    (message,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert "after 0.00 s" in message and "-0" not in message
    otel.shutdown()


def test_a_capped_next_delay_still_counts_against_the_budget() -> None:
    clock = FakeClock()
    policy = Retry(attempts=5, initial=1.0, maximum=4.0, budget_s=10.0, jitter="none",
                   next_delay=lambda e, n: float("inf"), clock=clock, sleep=clock.sleep, instrument=False)
    flaky = Flaky(10)
    with pytest.raises(ConnectionError):
        run(policy.call(flaky))
    assert clock.sleeps == [4.0, 4.0]  # a third wait would end at 12 > 10
    assert flaky.calls == 3


@pytest.mark.parametrize(("returned", "error", "match"), [
    (float("nan"), ValueError, "next_delay must return seconds >= 0"),
    (-1.0, ValueError, "next_delay must return seconds >= 0"),
    ("5", TypeError, "next_delay must return seconds"),
])
def test_a_bad_next_delay_value_is_a_clear_error(returned: object, error: type[Exception], match: str) -> None:
    clock = FakeClock()
    policy = Retry(attempts=3, next_delay=lambda e, n: returned,  # type: ignore[arg-type,return-value]
                   clock=clock, sleep=clock.sleep, instrument=False)
    with pytest.raises(error, match=match) as info:
        run(policy.call(Flaky(1)))
    assert isinstance(info.value.__cause__, ConnectionError)
    assert clock.sleeps == []


@pytest.mark.parametrize(("jitter", "expected"), [
    (Jitter.NONE, [1.0, 2.0, 4.0, 5.0]),
    (Jitter.FULL, [0.25, 0.5, 1.0, 1.25]),
    (Jitter.EQUAL, [0.625, 1.25, 2.5, 3.125]),
])
def test_backoff_with_jitter(jitter: Jitter, expected: list[float]) -> None:
    got = [delay(jitter, n, 0.0, 1.0, 5.0, 2.0, lambda: 0.25) for n in (1, 2, 3, 4)]
    assert got == expected


def test_a_backoff_of_int_settings_is_slept_and_reported_as_seconds_in_a_float() -> None:
    """``Retry(initial=1, multiplier=2, maximum=3, jitter="none")``: the delays were ints, slept as such and put on
    the span's ``shannon.retry.scheduled`` events as OTLP ints, where every other retry's are doubles."""
    tel, clock = Telemetry(), FakeClock()
    policy = Retry(attempts=4, initial=1, multiplier=2, maximum=3, jitter="none", sleep=clock.sleep, name="op",
                   **tel.kw)
    run(policy.call(Flaky(3)))
    delays = [(e.attributes or {})["shannon.retry.delay"] for e in tel.span("op").events
              if e.name == "shannon.retry.scheduled"]
    assert delays == [1.0, 2.0, 3.0] == clock.sleeps
    assert {type(d) for d in delays} == {type(s) for s in clock.sleeps} == {float}


def test_decorrelated_jitter_grows_from_the_previous_delay_and_is_capped() -> None:
    assert delay(Jitter.DECORRELATED, 1, 1.0, 1.0, 100.0, 2.0, lambda: 0.5) == 2.0  # in [1, 3]
    assert delay(Jitter.DECORRELATED, 2, 2.0, 1.0, 100.0, 2.0, lambda: 1.0) == 6.0
    assert delay(Jitter.DECORRELATED, 9, 50.0, 1.0, 10.0, 2.0, lambda: 1.0) == 10.0


def test_jitter_source_is_injectable_and_checked() -> None:
    clock = FakeClock()
    seeded = Retry(attempts=3, initial=1.0, random=random.Random(7), sleep=clock.sleep, instrument=False)
    run(seeded.call(Flaky(2)))
    first = list(clock.sleeps)
    clock.sleeps.clear()
    run(Retry(attempts=3, initial=1.0, random=random.Random(7), sleep=clock.sleep, instrument=False)
        .call(Flaky(2)))
    assert clock.sleeps == first
    bad = Retry(attempts=2, random=lambda: 1.5, sleep=clock.sleep, instrument=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run(bad.call(Flaky(1)))


def test_per_call_state_under_concurrency() -> None:
    """Concurrent calls through one policy never share an attempt counter (tenacity #93/#701)."""
    attempts_seen: list[int] = []

    class Recorder(Hook):
        def call_started(self, event: CallStarted) -> CallObserver:
            class Observer(CallObserver):
                def call_finished(self, event: Any) -> None:
                    attempts_seen.append(event.attempts)
            return Observer()

    async def main() -> list[int]:
        policy = Retry(attempts=3, initial=0.0, jitter="none", hooks=[Recorder()], instrument=False)
        gate = asyncio.Event()

        def make(i: int) -> Callable[[], Awaitable[Any]]:
            flaky = Flaky(2, value=i)
            original = flaky.__call__

            async def call() -> Any:
                await gate.wait()  # every call is in flight before any attempt ends
                return await original()
            return call

        tasks: list[asyncio.Task[int]] = [asyncio.create_task(policy.call(make(i))) for i in range(200)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks)

    assert run(main()) == list(range(200))
    assert attempts_seen == [3] * 200


def test_cancellation_is_not_retried_and_is_recorded_as_cancellation() -> None:
    tel = Telemetry()
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    async def main() -> None:
        policy = Retry(attempts=5, on=BaseException, name="op", **tel.kw)
        task = asyncio.create_task(policy.call(hangs))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert calls == 1
    attempt = tel.span("attempt 1")
    assert attempt.attributes is not None and attempt.attributes["shannon.attempt.outcome"] == "cancellation"
    assert attempt.status.status_code is not StatusCode.ERROR
    op = tel.span("op")
    assert op.attributes is not None and op.attributes["shannon.call.outcome"] == "cancellation"
    assert "error.type" not in op.attributes


def test_decorator_names_the_operation_and_user_spans_nest_under_the_attempt() -> None:
    tel = Telemetry()
    tracer = tel.tracer_provider.get_tracer("user")
    clock = FakeClock()

    @retry(attempts=2, sleep=clock.sleep, **tel.kw)
    async def load_user(user_id: int) -> int:
        with tracer.start_as_current_span("db query"):
            return user_id * 2

    async def main() -> int:
        with tracer.start_as_current_span("request"):
            return await load_user(21)

    assert run(main()) == 42
    request = tel.span("request")
    op = tel.span(load_user.__qualname__)
    assert op.parent is not None and op.parent.span_id == request.context.span_id
    attempt = tel.span("attempt 1")
    assert attempt.parent is not None and attempt.parent.span_id == op.context.span_id
    query = tel.span("db query")
    assert query.parent is not None and query.parent.span_id == attempt.context.span_id


def test_a_decorated_partial_or_callable_object_is_named_after_its_function_or_class() -> None:
    """Each was the operation "operation": partials of two functions, or two callable objects, decorated,
    shared one span name and metric series, and a Timeout said "operation 'operation' timed out"."""
    import functools

    from shannon_otel import Timeout
    from shannon_otel.testing import run_virtual

    tel = Telemetry()

    async def load_user(user_id: int) -> int:
        return user_id

    async def slow() -> None:
        await asyncio.sleep(1.0)

    async def main() -> None:
        assert await retry(attempts=1, **tel.kw)(functools.partial(load_user, 7))() == 7
        assert await retry(attempts=1, **tel.kw)(Flaky(0))() == "ok"
        with pytest.raises(TimeoutError, match=r"^operation '.*slow' timed out after 0.5 s"):
            await Timeout(0.5, instrument=False)(functools.partial(slow))()

    run_virtual(main())
    names = [s.name for s in tel.spans() if not s.name.startswith("attempt")]
    assert names == [load_user.__qualname__, "Flaky"]


def test_a_decorated_partial_or_callable_object_decorated_again_keeps_its_name() -> None:
    """The first decorator's wrapper of a partial or callable object was named "Policy.__call__.<locals>.wrapper"
    (wraps() had no name to copy), so a second decorator's operation span and metric series were named that."""
    import functools

    from shannon_otel import Timeout

    tel = Telemetry()

    async def load_user(user_id: int) -> int:
        return user_id

    inner = retry(attempts=1, **tel.kw)(functools.partial(load_user, 7))
    stacked = Timeout(5, **tel.kw)(inner)
    flaky = Timeout(5, **tel.kw)(retry(attempts=1, **tel.kw)(Flaky(0)))
    assert (inner.__qualname__, inner.__name__) == (load_user.__qualname__, "load_user")

    async def main() -> None:
        assert await stacked() == 7
        assert await flaky() == "ok"

    asyncio.run(main())
    names = [s.name for s in tel.spans() if not s.name.startswith("attempt")]
    assert names == [load_user.__qualname__, load_user.__qualname__, "Flaky", "Flaky"]


def test_user_hooks_see_retry_events() -> None:
    seen: list[RetryScheduled] = []

    class Recorder(Hook):
        def call_started(self, event: CallStarted) -> CallObserver:
            class Observer(CallObserver):
                def retry_scheduled(self, event: RetryScheduled) -> None:
                    seen.append(event)
            return Observer()

    clock = FakeClock()
    policy = Retry(attempts=3, initial=0.5, jitter="none", sleep=clock.sleep, hooks=[Recorder()],
                   instrument=False, name="x")
    run(policy.call(Flaky(1)))
    assert [(e.operation, e.attempt, e.delay_s, type(e.error)) for e in seen] == [
        ("x", 1, 0.5, ConnectionError)]


def test_no_providers_means_no_observer_and_no_spans() -> None:
    clock = FakeClock()
    policy = Retry(attempts=2, sleep=clock.sleep)  # global providers: the API's no-op proxies
    assert policy._hooks and policy._hooks[0].call_started(policy._started) is None
    assert run(policy.call(Flaky(1))) == "ok"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"attempts": 0}, r"attempts must be in \[1"),
    ({"attempts": -3}, r"attempts must be in \[1"),
    ({"attempts": 2.5}, "attempts must be an int"),
    ({"attempts": True}, "attempts must be an int"),
    ({"budget_s": 0}, r"budget_s must be in \(0"),
    ({"initial": -1}, r"initial must be in \[0"),
    ({"initial": 5.0, "maximum": 1.0}, "maximum must be >= initial"),
    ({"multiplier": 0.5}, r"multiplier must be in \[1"),
    ({"jitter": "wild"}, "jitter must be one of"),
    ({"on": "ValueError"}, "on must be exception types or a predicate"),
    ({"on": (ValueError, 3)}, "on must be an exception type"),
    ({"random": 3}, "random must be a random.Random"),
    ({"next_delay": 5}, "next_delay must be a callable"),
    ({"initial": float("nan")}, r"initial must be in \[0"),
])
def test_bad_input_is_rejected_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Retry(**kwargs)


def test_policy_is_immutable() -> None:
    policy = Retry(attempts=3, instrument=False)
    with pytest.raises(AttributeError):
        policy.attempts = 5  # type: ignore[misc]


@dataclasses.dataclass(frozen=True)
class _FrozenError(Exception):
    code: int


@pytest.mark.parametrize("observed", [False, True])
def test_a_frozen_dataclass_error_that_spends_the_attempts_is_raised_itself(observed: bool) -> None:
    # Retry restores the error's own __context__ after raising it (a raise inside the caller's `except` sets it):
    # assigned as an attribute, a frozen dataclass exception's __setattr__ refused it, and the caller got
    # FrozenInstanceError in place of the error, which no outer Retry(on=...), breaker or Fallback recognised.
    errors: list[_FrozenError] = []

    async def fails() -> None:
        errors.append(_FrozenError(len(errors)))
        raise errors[-1]

    clock = FakeClock()
    kw = Telemetry().kw if observed else {"instrument": False}
    policy = Retry(attempts=2, on=_FrozenError, clock=clock, sleep=clock.sleep, **kw)

    async def handling() -> None:
        try:
            raise KeyError("the caller's")
        except KeyError:
            await policy.call(fails)

    with pytest.raises(_FrozenError) as caught:
        run(policy.call(fails))
    assert caught.value is errors[1] and caught.value.__context__ is None
    with pytest.raises(_FrozenError) as caught:
        run(handling())
    assert caught.value is errors[3] and isinstance(caught.value.__context__, KeyError)


def test_the_backoff_of_a_late_attempt_with_an_int_multiplier_builds_no_huge_int() -> None:
    """``multiplier=2`` (an int, as written) raised to the attempt number was an exact int of that many bits, made
    anew at every retry of an unbounded one: at attempt 10**7 a 1.2 MB int and 0.3 s of CPU holding the event
    loop, per retry, growing with every attempt. Measured in memory allocated (deterministic), not time."""
    tracemalloc.start()
    try:
        got = delay(Jitter.NONE, 10**7, 0.1, 0.1, 10.0, 2, lambda: 0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == 10.0 and type(got) is float
    assert peak < 64_000
    assert [delay(Jitter.NONE, n, 1.0, 1, 100, 2, lambda: 0.5) for n in (1, 2, 3, 1025)] == [1.0, 2.0, 4.0, 100.0]
