"""A retry is told (``shannon.retry.scheduled`` span event, ``shannon.retry.delay``, the log record, the
``RunReport``'s ``retries``) once its wait is over, as it runs, stamped when it was scheduled; a retry whose wait was
cancelled never ran and is told nowhere.

Before, each was told as the retry was scheduled: a ``Retry`` inside a losing hedged attempt, cancelled in its 10 s
backoff when the other attempt won, counted a retry in the span events, ``shannon.retry.delay`` and the RunReport
(and so in the dashboards' retries per call and the retry-storm alert), though no attempt ran after it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _virtual_time import watched
from opentelemetry.sdk import trace as sdk_trace

from shannon_otel import Hedge, LoggingHook, Retry, RunRecorder, Wave, resilient
from shannon_otel.testing import InMemoryTelemetry

_SECOND = 10**9
_EPOCH = 1_700_000_000 * _SECOND


@pytest.fixture(autouse=True)
def virtual_wall(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's wall clock reads the virtual-time loop's (what it stamps spans and span events with)."""

    def now() -> int:
        try:
            return _EPOCH + round(asyncio.get_running_loop().time() * _SECOND)
        except RuntimeError:  # no loop running (the provider's shutdown)
            return _EPOCH

    monkeypatch.setattr(sdk_trace, "time_ns", now)


def _told(tel: InMemoryTelemetry, rec: RunRecorder, caplog: pytest.LogCaptureFixture) -> tuple[int, int, int, int]:
    """(shannon.retry.scheduled events on the op span, shannon.retry.delay count, retry log records, RunReport
    retries)."""
    events = sum(1 for event in tel.span("op").events if event.name == "shannon.retry.scheduled")
    delays = sum(point.count for point in tel.points("shannon.retry.delay"))
    logged = sum(1 for record in caplog.records if record.name == "shannon_otel.retry")
    return events, delays, logged, rec.report().operations["op"].retries


def _hooks(rec: RunRecorder) -> list[Any]:
    """The recorder, and a logging hook of its own writing every record (the process's default one holds back a
    repeat of a key for 10 s of the real clock: what an earlier test logged would decide the count)."""
    return [rec, LoggingHook(interval_s=0)]


async def _down_then_ok(calls: list[float]) -> str:
    calls.append(asyncio.get_running_loop().time())
    if len(calls) == 1:
        raise ConnectionError("down")
    return "ok"


def test_a_retry_cancelled_in_its_wait_in_a_losing_hedged_attempt_is_not_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "shannon_otel")
    tel, rec = InMemoryTelemetry(), RunRecorder()
    calls: list[float] = []
    # attempt 1 fails at 0 s and waits 10 s to retry; at 1 s hedge 2 succeeds, and attempt 1's wait is cancelled
    policy = resilient(Hedge(delay=1.0, attempts=2), Retry(attempts=3, initial=10.0, jitter="none"), name="op",
                       hooks=_hooks(rec), **tel.providers)

    async def main() -> Any:
        return await policy.call(lambda: _down_then_ok(calls))

    assert watched(main) == "ok"
    assert calls == [0.0, 1.0]  # two attempts ran, no retry
    assert [span.name for span in tel.spans() if span.name.startswith(("attempt", "hedge"))] == [
        "attempt 1", "hedge 2"]
    assert _told(tel, rec, caplog) == (0, 0, 0, 0)  # was (1, 1, 1, 1)
    assert rec.report().operations["op"].attempts == 2
    tel.shutdown()


def test_a_retry_cut_off_in_its_wait_by_a_wave_task_timeout_is_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "shannon_otel")
    tel, rec = InMemoryTelemetry(), RunRecorder()
    calls: list[float] = []
    policy = resilient(Retry(attempts=3, initial=10.0, jitter="none"), name="op", hooks=_hooks(rec), **tel.providers)
    wave = Wave("w", task_timeout=5.0, hooks=[rec], **tel.providers)

    async def main() -> Any:
        return await wave.run([lambda: policy.call(lambda: _down_then_ok(calls))])

    result = watched(main)
    assert calls == [0.0] and result.report.failed == 1  # the task timeout cut the 10 s wait at 5 s: no retry ran
    assert _told(tel, rec, caplog) == (0, 0, 0, 0)
    assert rec.totals["retries"] == 0
    tel.shutdown()


def test_a_retry_that_ran_is_counted_once_stamped_when_it_was_scheduled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "shannon_otel")
    tel, rec = InMemoryTelemetry(), RunRecorder()
    calls: list[float] = []
    policy = resilient(Retry(attempts=3, initial=10.0, jitter="none"), name="op", hooks=_hooks(rec), **tel.providers)

    async def main() -> Any:
        return await policy.call(lambda: _down_then_ok(calls))

    assert watched(main) == "ok"
    assert calls == [0.0, 10.0]
    assert _told(tel, rec, caplog) == (1, 1, 1, 1)
    [event] = [event for event in tel.span("op").events if event.name == "shannon.retry.scheduled"]
    assert event.timestamp == tel.span("attempt 1").end_time == _EPOCH  # when scheduled, not when it ran (10 s)
    assert dict(event.attributes or {})["shannon.retry.delay"] == 10.0
    tel.shutdown()


def test_the_resilience_dashboard_describes_the_retries_that_ran() -> None:
    """The retry panels read ``shannon.retry.delay``, recorded as a retry starts: their descriptions said "Retries
    scheduled" and "Backoff delay scheduled", which counted a wait cut short, as the metric no longer does."""
    import json
    from pathlib import Path

    dashboard = Path(__file__).resolve().parent.parent / "dashboards" / "shannon-otel-resilience.json"
    panels = json.loads(dashboard.read_text(encoding="utf-8"))["panels"]
    described = {panel["title"]: panel.get("description") or "" for panel in panels}
    assert described["Retries by operation"].startswith("Retries run in each interval")
    assert "cut short is not counted" in described["Retries by operation"]
    assert described["Retry delay percentiles"].startswith("Backoff delay waited before a retry")
    assert "scheduled" not in described["Retries by operation"] + described["Retry delay percentiles"]
