"""Which trace context each record of the logging hook carries (docs/logging.md, "Trace correlation").

A record was stamped with whatever span was current when it was written, which was not always the call it
described: the summary of a key evicted past ``max_keys`` carried the evicting call's ids (another operation's),
the rejections a breaker transition drains carried the transitioning call's, ``flush()`` called inside a span
stamped that span on summaries of calls long gone, and an anomaly's record carried the span current where the
detector scored (the task that closed the tick), not the culprit the anomaly names. Clicking from such a log line
to its trace landed on an unrelated call. Now a record about one call carries that call's ids, a summary of calls
that are not the current one carries none, and an anomaly's record its culprit's ids (none when it names none).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _log_records import exported_logs
from _retried_call import eight_calls_the_fourth_retried
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan

from shannon_otel import Anomaly, CircuitBreaker, CircuitOpenError, Hook, LoggingHook, Retry
from shannon_otel import _telemetry as t
from shannon_otel._logs._joined import _Default
from shannon_otel._telemetry import Severity
from shannon_otel.anomaly import RETRY_RATE, AnomalyHook, DetectorConfig
from shannon_otel.testing import FakeClock, InMemoryTelemetry

NONE = (0, 0)


@pytest.fixture
def tel() -> Iterator[InMemoryTelemetry]:
    with exported_logs() as telemetry:
        yield telemetry


def records(tel: InMemoryTelemetry) -> list[tuple[str, tuple[int, int]]]:
    """(body, (trace id, span id)) of every exported record, (0, 0) for none."""
    return [(str(r.log_record.body), (r.log_record.trace_id or 0, r.log_record.span_id or 0))
            for r in tel.log_records()]


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def failing_once() -> Any:
    left = [1]

    async def fn() -> str:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("down")
        return "ok"

    return fn


def test_a_summary_of_a_key_evicted_past_max_keys_carries_no_ids_not_the_evicting_calls(
    tel: InMemoryTelemetry,
) -> None:
    clock = FakeClock()
    hook = LoggingHook(clock=clock, max_keys=1)
    policies = [Retry(name=name, attempts=2, initial=0, jitter="none", clock=clock, sleep=clock.sleep, hooks=[hook],
                      **tel.providers) for name in ("op0", "op1")]

    async def main() -> None:
        for _ in range(3):
            await policies[0].call(failing_once())
        await policies[1].call(failing_once())  # evicts op0: its 2 held-back retries are told

    asyncio.run(main())
    op0, op1 = tel.spans("op0"), tel.spans("op1")
    assert records(tel) == [
        ("retrying 'op0' after 0.00 s (attempt 2/2): ConnectionError", ids(op0[0])),
        # written during op1's call, about two calls of op0: before, it carried op1's ids
        ("retried 'op0' 2 times in the last 0 s (last: attempt 2/2 after 0.00 s: ConnectionError)", NONE),
        ("retrying 'op1' after 0.00 s (attempt 2/2): ConnectionError", ids(op1[0])),
    ]


def test_a_summary_closing_its_window_carries_the_closing_call_and_flush_in_a_span_carries_none(
    tel: InMemoryTelemetry,
) -> None:
    clock = FakeClock()
    hook = LoggingHook(clock=clock, interval_s=10)
    policy = Retry(name="op", attempts=2, initial=0, jitter="none", clock=clock, sleep=clock.sleep, hooks=[hook],
                   **tel.providers)

    async def main() -> None:
        for _ in range(3):
            await policy.call(failing_once())
        clock.now += 10
        await policy.call(failing_once())  # closes the window: a summary of 3 whose "last" is this call
        await policy.call(failing_once())  # held back again

    asyncio.run(main())
    with tel.tracer_provider.get_tracer("test").start_as_current_span("shutdown"):
        hook.flush()  # the user's span is current: the summary is of the fifth call, not of it
    calls = tel.spans("op")
    assert records(tel) == [
        ("retrying 'op' after 0.00 s (attempt 2/2): ConnectionError", ids(calls[0])),
        ("retried 'op' 3 times in the last 10 s (last: attempt 2/2 after 0.00 s: ConnectionError)", ids(calls[3])),
        # one held back, told alone: its call is gone (its span was not kept: that would cost every held-back one)
        ("retrying 'op' after 0.00 s (attempt 2/2): ConnectionError", NONE),
    ]


def test_rejections_drained_at_a_breaker_transition_carry_no_ids_the_transition_its_calls(
    tel: InMemoryTelemetry,
) -> None:
    async def succeeding() -> str:
        return "ok"

    clock = FakeClock()
    hook = LoggingHook(clock=clock)
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=5, clock=clock, hooks=[hook], **tel.providers)

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(failing_once())
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await breaker.call(failing_once())
        clock.now += 5
        assert await breaker.call(succeeding) == "ok"  # half-opens: the 2 held-back rejections are told first

    asyncio.run(main())
    calls = tel.spans("db")
    got = records(tel)
    assert [body for body, _ in got] == [
        "circuit breaker 'db' is open (was closed): failure_threshold",
        "rejected a call to 'db': circuit breaker 'db' is open",
        "rejected 2 calls to 'db' in the last 5 s: circuit breaker 'db' is open",
        "circuit breaker 'db' is half_open (was open): reset_timeout",
        "circuit breaker 'db' is closed (was half_open): probe_success",
    ]
    assert got[1][1] == ids(calls[1])
    assert got[2][1] == NONE  # before: the ids of the call half-opening the breaker, none of the rejected ones
    # the transition itself: the call that caused it (its span, or its attempt's under it)
    assert got[3][1][0] == ids(calls[4])[0]


def test_an_anomaly_record_carries_its_culprits_ids_or_none(tel: InMemoryTelemetry) -> None:
    tracer = tel.tracer_provider.get_tracer("test")
    hook = LoggingHook()
    with tracer.start_as_current_span("slowest task") as culprit_span:
        pass
    culprit = culprit_span.get_span_context()
    hexed = format(culprit.trace_id, "032x"), format(culprit.span_id, "016x")
    with tracer.start_as_current_span("task closing the tick"):  # where the detector scores
        hook.anomaly(Anomaly("checkout", "latency", 0.991, Severity.WARNING, 2.5, *hexed, 1.0))
        # no culprit known (none, or sampled out): no ids, not the current span's
        hook.anomaly(Anomaly("checkout", "error_rate", 0.9999, Severity.CRITICAL, 0.4, None, None, 2.0))
    assert [i for _, i in records(tel)] == [(culprit.trace_id, culprit.span_id), NONE]


def test_a_rate_anomaly_through_the_default_hook_links_the_retried_call_not_the_one_closing_the_tick(
    tel: InMemoryTelemetry,
) -> None:
    """End to end: the fourth call is retried, the eighth closes the tick and is current when it is scored; the
    anomaly names the fourth (ended by then), and so does its record now (before: the eighth's ids)."""
    _Default.reset()  # the process-wide default hook: no flood window of another test
    clock = FakeClock()
    detector = AnomalyHook(DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9), tick_s=1.0,
                           clock=clock, signals=[RETRY_RATE])
    seen: list[Anomaly] = []
    detector_hooks = (detector, _Seen(seen))
    retry = Retry(attempts=2, initial=0.0, name="op", clock=clock, hooks=detector_hooks, **tel.providers)

    try:
        asyncio.run(eight_calls_the_fourth_retried(retry, clock))
    finally:
        _Default.reset()
    (event,) = seen
    calls = tel.spans("op")
    trace_id, span_id = ids(calls[3])
    assert (event.trace_id, event.span_id) == (format(trace_id, "032x"), format(span_id, "016x"))
    anomalies = [i for body, i in records(tel) if "anomaly" in body]
    assert anomalies == [ids(calls[3])]
    assert ids(calls[3]) != ids(calls[7])


class _Seen(Hook):
    def __init__(self, events: list[Anomaly]) -> None:
        self.events = events

    def anomaly(self, event: Anomaly) -> None:
        self.events.append(event)


class _Current(logging.Handler):
    """What a stdlib-side reader of the current span sees (as the OTel logging instrumentation's record factory
    reads it for ``otelTraceID``), and the baggage around it: only the span key may change."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        context = trace.get_current_span().get_span_context()
        self.seen.append((getattr(record, t.LOG_EVENT_NAME, ""), context.span_id, baggage.get_baggage("tenant")))


def test_the_plain_logging_path_sees_the_same_span_and_the_rest_of_the_context_is_left_alone() -> None:
    handler = _Current()
    logger = logging.getLogger("shannon_otel")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    clock = FakeClock()
    hook = LoggingHook(clock=clock)
    tel = InMemoryTelemetry()
    tracer = tel.tracer_provider.get_tracer("test")
    token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
    try:
        with tracer.start_as_current_span("current") as current:
            hook.anomaly(Anomaly("s", "latency", 0.99, Severity.WARNING, 1.0, "0" * 31 + "1", "0" * 15 + "2", 1.0))
            assert trace.get_current_span() is current  # restored after the record
        assert baggage.get_baggage("tenant") == "t1"
    finally:
        otel_context.detach(token)
        logger.removeHandler(handler)
        logger.setLevel(level)
        tel.shutdown()
    assert handler.seen == [(t.EVENT_ANOMALY, 2, "t1")]
