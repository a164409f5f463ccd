"""Calls left pending when their event loop is closed (a program ended by Ctrl-C that closes its loop without
cancelling its tasks), after an error was already recorded inside them, then used again in a new loop.

The exception events are written once per exception: a child span's error is noted on its parent span in a
module-level weak dictionary. Its notes held the exception, whose traceback holds the call's frames, which hold
the parent span: the weak key was kept alive by its own value, so the abandoned call was never collected. Its
spans stayed open for good, a half-open breaker's probe never came back (every later call rejected, in every
later loop), and a pool's permit was never returned."""

from __future__ import annotations

import asyncio
import gc

from _abandoned import abandoned_with_its_loop
from _open_spans import OpenSpans

from shannon_otel import BreakerConfig, CircuitBreaker, CircuitOpenError, Pipeline, Retry
from shannon_otel._telemetry import BreakerState
from shannon_otel.testing import FakeClock, InMemoryTelemetry


def _telemetry() -> tuple[InMemoryTelemetry, OpenSpans]:
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    return tel, spans


async def _fails_then_hangs(calls: list[int]) -> None:
    calls.append(1)
    if len(calls) == 1:
        raise ConnectionError("first attempt fails")
    await asyncio.sleep(3600)


def test_a_retry_abandoned_in_its_backoff_after_a_failed_attempt_is_collected_and_ends_its_span() -> None:
    tel, spans = _telemetry()
    calls: list[int] = []
    retry = Retry(attempts=3, initial=3600, maximum=3600, name="op", **tel.providers)
    found = abandoned_with_its_loop(retry.call(_fails_then_hangs, calls), steps=3)
    gc.collect()
    assert calls == [1]  # the first attempt failed and the retry was waiting for its backoff
    assert found == []
    assert spans.open == {}, spans.open
    assert [s.name for s in tel.spans()] == ["attempt 1", "op"]


def test_a_half_open_probe_abandoned_after_an_inner_failure_comes_back_for_the_next_loop() -> None:
    """The probe, a pipeline call whose first attempt failed, is left pending in its retry when the loop is
    closed: once collected it is no probe any more, and the breaker admits the next loop's call."""
    tel, spans = _telemetry()
    clock = FakeClock()
    breaker = CircuitBreaker("db", BreakerConfig(failure_threshold=1, min_calls=1, window=1, reset_timeout=1.0),
                             clock=clock)
    probe = Pipeline(breaker, Retry(attempts=3, initial=3600, maximum=3600), name="op", **tel.providers)

    async def fails() -> None:
        raise ConnectionError("down")

    try:
        asyncio.run(breaker.call(fails))
    except ConnectionError:
        pass
    assert breaker.state is BreakerState.OPEN
    clock.advance(1.0)
    calls: list[int] = []
    abandoned_with_its_loop(probe.call(_fails_then_hangs, calls), steps=3)
    gc.collect()
    assert calls == [1]

    async def ok() -> str:
        return "ok"

    try:
        answer = asyncio.run(breaker.call(ok))
    except CircuitOpenError as error:  # the lost probe: rejected in every later loop, for good
        raise AssertionError(f"the abandoned probe was never given back: {error}") from None
    assert answer == "ok"
    assert spans.open == {}, spans.open
