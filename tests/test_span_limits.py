"""Spans under the SDK's own limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, ``OTEL_SPAN_EVENT_COUNT_LIMIT``, read when
the TracerProvider is built): past a limit the SDK drops the oldest attributes (with a warning), so what the
library sets on a span that searches, alert links and the tail sampler read must be set last."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import StatusCode

from shannon_otel import Retry, Wave, record
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class PaymentError(Exception):
    pass


def test_many_user_measurements_never_push_the_outcome_off_the_task_and_wave_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task recording more measurements than the attribute limit lost `shannon.task.outcome` (set before the
    measurements, so dropped first): the failed task was missing from every `shannon.task.outcome=failure`
    search, the alert rules' Jaeger link among them. The wave span lost its outcome to its task counts."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    otel = InMemoryTelemetry()

    async def charge(i: int) -> None:
        for k in range(6):
            record(f"step.{k}.seconds", 0.5)
        await asyncio.sleep(0)
        raise PaymentError("declined")

    result = run_virtual(Wave[None]("pay", **otel.providers).map(charge, range(1)))
    assert result.results[0].outcome.value == "failure"
    task = otel.span("task pay")
    assert task.attributes is not None
    assert task.attributes["shannon.task.outcome"] == "failure"
    assert task.attributes["error.type"] == f"{__name__}.PaymentError"
    assert task.status.status_code is StatusCode.ERROR
    wave = otel.span("wave pay")
    assert wave.attributes is not None and wave.attributes["shannon.task.outcome"] == "failure"


def test_an_event_limit_of_one_keeps_the_failure_and_crashes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "1")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    otel = InMemoryTelemetry()
    retry = Retry(attempts=3, initial=0, name="op", **otel.providers)

    async def fail() -> None:
        raise PaymentError("declined")

    async def task() -> None:
        await retry.call(fail)

    result = run_virtual(Wave[None]("w", **otel.providers).run([task]))
    assert result.results[0].outcome.value == "failure"
    op = otel.span("op")
    assert op.status.status_code is StatusCode.ERROR
    assert op.attributes is not None and op.attributes["error.type"] == f"{__name__}.PaymentError"
    assert op.attributes["shannon.call.outcome"] == "failure"
    assert len(op.events) <= 1
    assert all(s.end_time is not None for s in otel.spans())
