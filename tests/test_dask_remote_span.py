"""The worker side of a Dask task: the ``remote {task}`` span, run in this process against an in-memory SDK
standing in for the worker's global provider (what ``WorkerTelemetry`` configures there). The cluster tests
(test_dask*.py) and tests/e2e/test_dask_e2e.py show the same span crossing real processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from shannon_otel.dask._remote import Payload, run_async, run_sync
from shannon_otel.testing import InMemoryTelemetry


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryTelemetry]:
    """The worker's global tracer provider (never set for real: the globals can be set once a process)."""
    otel = InMemoryTelemetry()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: otel.tracer_provider)
    yield otel
    otel.shutdown()


def _payload(otel: InMemoryTelemetry, fn: Any) -> tuple[Payload, ReadableSpan]:
    """A payload whose carrier holds the context of a finished client-side span (its parent)."""
    carrier: dict[str, str] = {}
    with otel.tracer_provider.get_tracer("client").start_as_current_span("task f"):
        propagate.inject(carrier)
    return Payload(fn, "f", carrier, (), {}), otel.span("task f")


def _boom() -> None:
    raise ValueError("boom")


def test_the_remote_span_is_a_consumer_span_under_the_client_span(worker: InMemoryTelemetry) -> None:
    """It was INTERNAL, the kind the specification keeps for spans without remote parents or children."""
    payload, parent = _payload(worker, lambda: 42)
    assert run_sync(payload) == 42
    span = worker.span("remote f")
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None and parent.context is not None
    assert span.parent.span_id == parent.context.span_id
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})


def test_a_failure_on_the_worker_is_marked_as_a_failed_task_span_is(worker: InMemoryTelemetry) -> None:
    """The span had ERROR and an SDK exception event, but no error.type (which the local task span and the
    metrics carry), and its event had exception.escaped as the string "True"."""
    payload, _ = _payload(worker, _boom)
    with pytest.raises(ValueError, match="boom"):
        run_sync(payload)
    span = worker.span("remote f")
    assert (span.attributes or {})["error.type"] == "ValueError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    [event] = [dict(e.attributes or {}) for e in span.events if e.name == "exception"]
    assert set(event) == {"exception.type", "exception.message", "exception.stacktrace"}
    assert event["exception.type"] == "ValueError"


def test_a_cancelled_remote_task_is_no_error(worker: InMemoryTelemetry) -> None:
    """Cancellation is an outcome, never an error (the SDK's handling, which the span no longer uses, left
    it UNSET too: it recorded only `Exception`s)."""
    async def forever() -> None:
        await asyncio.Event().wait()

    payload, _ = _payload(worker, forever)

    async def main() -> None:
        task = asyncio.ensure_future(run_async(payload))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = worker.span("remote f")
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})
    assert [e.name for e in span.events] == []


class _Interrupt(BaseException):
    """Neither an Exception nor a cancellation: KeyboardInterrupt, SystemExit, a custom BaseException."""


def _interrupt() -> None:
    raise _Interrupt


def test_a_base_exception_on_the_worker_is_a_failure_as_on_a_local_task_span(worker: InMemoryTelemetry) -> None:
    """A local task span records a BaseException that is not a cancellation as a failure; the remote span,
    through the SDK's handling (Exceptions only), ended UNSET with nothing recorded."""
    payload, _ = _payload(worker, _interrupt)
    with pytest.raises(_Interrupt):
        run_sync(payload)
    span = worker.span("remote f")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == f"{__name__}._Interrupt"
    assert len([e for e in span.events if e.name == "exception"]) == 1


# Bug: the local task, wave, policy and saga spans end no earlier than they start (shannon_otel._otel._end), but the
# worker's `remote {task}` span was ended by the SDK's context manager at the wall clock's now: stepped back an hour
# while the task ran on the worker, it ended an hour before it started (a negative duration in Jaeger).
@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_the_remote_span_never_ends_before_it_starts_when_the_wall_clock_steps_back(
        worker: InMemoryTelemetry, monkeypatch: pytest.MonkeyPatch, fails: bool) -> None:
    import opentelemetry.sdk.trace as sdk_trace

    now = [1_700_000_000 * 10**9]

    def wall() -> int:  # 1 ms a reading, stepped by the task: what the SDK stamps spans with, and _end reads
        now[0] += 10**6
        return now[0]

    monkeypatch.setattr(sdk_trace, "time_ns", wall)

    def step_back() -> int:
        now[0] -= 3600 * 10**9
        if fails:
            raise ValueError("boom")
        return 1

    payload, _ = _payload(worker, step_back)
    if fails:
        with pytest.raises(ValueError, match="boom"):
            run_sync(payload)
    else:
        assert run_sync(payload) == 1
    span = worker.span("remote f")
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time >= span.start_time
    assert span.status.status_code is (StatusCode.ERROR if fails else StatusCode.UNSET)


def test_the_remote_span_carries_the_semantic_conventions_schema_url(worker: InMemoryTelemetry) -> None:
    """Its tracer was obtained without one, unlike the client's spans (tests/test_schema_url.py)."""
    from shannon_otel._telemetry import SCHEMA_URL, SCOPE_NAME

    payload, _ = _payload(worker, lambda: 42)
    assert run_sync(payload) == 42
    scope = worker.span("remote f").instrumentation_scope
    assert scope is not None and (scope.name, scope.schema_url) == (SCOPE_NAME, SCHEMA_URL)
