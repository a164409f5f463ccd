"""A timeout a policy of the same call recovers from is logged at WARNING; ERROR means the call failed.

Before: ``Pipeline(Retry(attempts=2), Timeout(0.5))`` whose first attempt timed out and whose second returned wrote
``'op' timed out after 0.50 s`` at ERROR under the operation span, whose status is UNSET (the call succeeded), then
the WARNING retry record: an alert on ERROR records paged for calls that returned their value. A ``Fallback``
serving the call did the same. The spans were right already: the timed-out attempt span ERROR, the call's UNSET.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from _log_records import Records, capturing
from opentelemetry.trace import StatusCode

from shannon_otel import Fallback, Hedge, LoggingHook, Pipeline, Policy, Retry, Timeout
from shannon_otel.testing import InMemoryTelemetry, run_virtual, set_testing


async def _served(error: BaseException) -> str:
    return "served"


def _slow_first() -> Callable[[], Any]:
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)  # virtual time: past the 0.5 s limit
        return "ok"

    return work


_RECOVERING: dict[str, Callable[..., Policy]] = {
    "retry": lambda **kw: Pipeline(Retry(attempts=2, initial=0, jitter="none"), Timeout(0.5), **kw),
    "fallback": lambda **kw: Pipeline(Fallback(_served), Timeout(0.5), **kw),
    "fallback-retry": lambda **kw: Pipeline(Fallback(_served), Retry(attempts=2, initial=0, jitter="none"),
                                            Timeout(0.5), **kw),
}
_FAILING: dict[str, Callable[..., Policy]] = {
    "pipeline": lambda **kw: Pipeline(Timeout(0.5), **kw),
    "retry-exhausted": lambda **kw: Pipeline(Retry(attempts=1, initial=0, jitter="none"), Timeout(0.5), **kw),
}


def _timeout_records(telemetry: InMemoryTelemetry) -> list[Any]:
    return [r for r in telemetry.log_records() if "timed out" in str(r.log_record.body)]


@pytest.mark.parametrize("make", list(_RECOVERING))
def test_a_timeout_the_call_recovers_from_is_a_warning_under_its_succeeded_span(make: str) -> None:
    name = f"op-{make}-{uuid.uuid4().hex[:8]}"  # the default hook's flood limiter is the process's
    telemetry = InMemoryTelemetry(logs=True)
    try:
        with set_testing(True):
            assert run_virtual(_RECOVERING[make](name=name, **telemetry.providers).call(_slow_first())) in {
                "ok", "served"}
        operation = telemetry.span(name)
        assert operation.status.status_code is StatusCode.UNSET
        [attempt] = telemetry.spans("attempt 1")
        assert attempt.status.status_code is StatusCode.ERROR  # that attempt did fail
        [record] = _timeout_records(telemetry)
        assert (record.log_record.severity_text, record.log_record.body) == ("WARN", f"{name!r} timed out after 0.50 s")
        assert record.log_record.span_id == operation.context.span_id
        bodies = [str(r.log_record.body) for r in telemetry.log_records()]
        assert bodies.index(record.log_record.body) == 0  # still before the retry's or fallback's record
        assert len(bodies) == 2
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize("make", list(_FAILING))
def test_a_timeout_that_fails_the_call_stays_an_error_under_its_failed_span(make: str) -> None:
    name = f"op-{make}-{uuid.uuid4().hex[:8]}"
    telemetry = InMemoryTelemetry(logs=True)
    try:
        with set_testing(True), pytest.raises(TimeoutError):
            run_virtual(_FAILING[make](name=name, **telemetry.providers).call(_slow_first()))
        operation = telemetry.span(name)
        assert operation.status.status_code is StatusCode.ERROR
        [record] = _timeout_records(telemetry)
        assert record.log_record.severity_text == "ERROR"
        assert record.log_record.span_id == operation.context.span_id
    finally:
        telemetry.shutdown()


def test_a_hook_of_the_users_own_writes_the_same_levels_and_a_custom_level_steps_down_once() -> None:
    hook = LoggingHook(levels={"shannon.timed_out": logging.CRITICAL})
    with capturing("shannon_otel.timeout", Records()) as handler, set_testing(True):
        recovering = Pipeline(Retry(attempts=2, initial=0, jitter="none"), Timeout(0.5), name="own", hooks=[hook])
        assert run_virtual(recovering.call(_slow_first())) == "ok"
        failing = Pipeline(Timeout(0.5), name="own-failing", hooks=[hook])
        with pytest.raises(TimeoutError):
            run_virtual(failing.call(_slow_first()))
        bare = Timeout(0.5, name="bare", hooks=[hook])  # alone, nothing of its call can recover: at once
        with pytest.raises(TimeoutError):
            run_virtual(bare.call(_slow_first()))
    assert [(r.levelno, r.getMessage()) for r in handler.records] == [
        (logging.ERROR, "'own' timed out after 0.50 s"),
        (logging.CRITICAL, "'own-failing' timed out after 0.50 s"),
        (logging.CRITICAL, "'bare' timed out after 0.50 s"),
    ]


def test_a_hedged_attempt_that_timed_out_while_another_won_is_a_warning_written_as_the_call_ends() -> None:
    name = f"hedged-{uuid.uuid4().hex[:8]}"
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(5 if calls == 1 else 0.45)  # attempt 1 cut at 0.5 s; the hedge (from 0.1 s) wins
        return "ok"

    telemetry = InMemoryTelemetry(logs=True)
    try:
        with set_testing(True):
            assert run_virtual(Pipeline(Hedge(0.1, 2), Timeout(0.5), name=name, **telemetry.providers).call(work)) \
                == "ok"
        assert telemetry.span(name).status.status_code is StatusCode.UNSET
        assert telemetry.span("attempt 1").status.status_code is StatusCode.ERROR
        [record] = _timeout_records(telemetry)
        assert record.log_record.severity_text == "WARN"
        assert record.log_record.span_id == telemetry.span(name).context.span_id
    finally:
        telemetry.shutdown()


def test_a_timeout_record_told_after_the_retrys_wait_is_stamped_when_the_timeout_fired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The retry is told once its wait is over: the held record is written then, stamped with the time it fired.
    from shannon_otel._logs import _hook

    wall = [1_000_000.25]
    monkeypatch.setattr(_hook, "time", type("Wall", (), {"time": staticmethod(lambda: wall[0])}))

    async def waited(seconds: float) -> None:
        wall[0] += 30.0

    hook = LoggingHook()
    with capturing("shannon_otel.timeout", Records()) as handler, set_testing(False):
        retried = Pipeline(Retry(attempts=2, initial=5, jitter="none", sleep=waited), Timeout(0.5), name="stamped",
                           hooks=[hook])
        assert run_virtual(retried.call(_slow_first())) == "ok"
    [record] = handler.records
    assert (record.levelno, record.created, record.msecs) == (logging.WARNING, 1_000_000.25, 250.0)
