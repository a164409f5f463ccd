"""The ``exception`` span event: once per exception, on the innermost span of ours it ended (the OTel spec's
"on the span during which it occurred"); the spans it then fails on the way out say ERROR, ``error.type`` and
the status description, without a second copy of the stack trace. No deprecated ``exception.escaped``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from shannon_otel import Hedge, Retry, Saga, SagaError, Step, Timeout, Wave
from shannon_otel.testing import InMemoryTelemetry, run_virtual


def _exceptions(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "exception"]


async def _boom() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


def test_an_error_crossing_attempt_operation_and_task_spans_is_recorded_once_where_it_was_raised() -> None:
    """The same ValueError was an `exception` event (stack trace and all) on attempt 2, the operation span
    and the task span: three copies in Jaeger, each span's trace a few KB more."""
    otel = InMemoryTelemetry()
    retry = Retry(attempts=2, initial=0, name="op", **otel.providers)

    async def task() -> None:
        await retry.call(_boom)

    run_virtual(Wave[None]("w", **otel.providers).run([task]))
    for name in ("attempt 1", "attempt 2"):  # two raises, two exceptions: one event each
        [event] = _exceptions(otel.span(name))
        assert event["exception.type"] == "ValueError"
        assert event["exception.message"] == "boom"
        assert "ValueError: boom" in event["exception.stacktrace"]
    for name in ("op", "task w"):  # it passed through: failed, said why, no second stack trace
        span = otel.span(name)
        assert _exceptions(span) == [], name
        assert span.status.status_code is StatusCode.ERROR, name
        assert span.status.description == "ValueError: boom", name
        assert (span.attributes or {})["error.type"] == "ValueError", name


def test_the_exception_event_has_no_deprecated_escaped_attribute() -> None:
    """`exception.escaped` was written as the string "False" (the SDK's record_exception) on spans the
    exception did escape; the semantic conventions deprecate the attribute, and it is a boolean."""
    otel = InMemoryTelemetry()
    run_virtual(Wave[None]("w", **otel.providers).run([_boom]))
    [event] = _exceptions(otel.span("task w"))
    assert set(event) == {"exception.type", "exception.message", "exception.stacktrace"}


def test_an_operation_inside_a_saga_step_leaves_the_step_without_a_second_event() -> None:
    otel = InMemoryTelemetry()
    retry = Retry(attempts=1, initial=0, name="op", **otel.providers)

    async def action() -> None:
        await retry.call(_boom)

    with pytest.raises(SagaError):
        run_virtual(Saga("s", **otel.providers).run(Step("one", action)))
    assert len(_exceptions(otel.span("attempt 1"))) == 1
    step = otel.span("step one")
    assert _exceptions(step) == []
    assert step.status.status_code is StatusCode.ERROR
    assert (step.attributes or {})["error.type"] == "ValueError"


def test_a_new_error_raised_on_the_way_out_is_recorded_where_it_was_raised() -> None:
    """Only the same exception object is left out: a task that catches the operation's error and raises
    its own records that one."""
    otel = InMemoryTelemetry()
    retry = Retry(attempts=1, initial=0, name="op", **otel.providers)

    async def task() -> None:
        try:
            await retry.call(_boom)
        except ValueError as exc:
            raise RuntimeError("wrapped") from exc

    run_virtual(Wave[None]("w", **otel.providers).run([task]))
    assert [e["exception.type"] for e in _exceptions(otel.span("attempt 1"))] == ["ValueError"]
    assert _exceptions(otel.span("op")) == []
    [event] = _exceptions(otel.span("task w"))
    assert event["exception.type"] == "RuntimeError"
    assert "ValueError: boom" in event["exception.stacktrace"]  # its cause, as Python prints it


def test_one_exception_ending_two_sibling_tasks_is_recorded_on_each() -> None:
    """The note follows the real parent: a failed future awaited by two tasks (one exception object)
    ended both task spans, neither under the other, so each carries the event."""
    otel = InMemoryTelemetry()

    async def main() -> None:
        shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shared.set_exception(ValueError("shared"))

        async def task() -> None:
            await shared

        await Wave[None]("w", **otel.providers).run([task, task])

    run_virtual(main())
    spans = otel.spans("task w")
    assert len(spans) == 2
    for span in spans:
        [event] = _exceptions(span)
        assert event["exception.message"] == "shared"


def test_an_operation_under_a_task_of_another_tracer_provider_is_recorded_once() -> None:
    """The policy and the wave report to different providers: the note is on the task span itself."""
    waves, calls = InMemoryTelemetry(), InMemoryTelemetry()
    retry = Retry(attempts=1, initial=0, name="op", **calls.providers)

    async def task() -> None:
        await retry.call(_boom)

    run_virtual(Wave[None]("w", **waves.providers).run([task]))
    assert len(_exceptions(calls.span("attempt 1"))) == 1
    assert _exceptions(calls.span("op")) == []
    task_span = waves.span("task w")
    assert _exceptions(task_span) == []
    assert task_span.status.status_code is StatusCode.ERROR


class _TrackedError(Exception):
    """A user's exception class: weakly referenceable, so a test can see whether anything still holds it."""


def test_a_users_span_above_an_operation_holds_none_of_its_exceptions() -> None:
    """The note goes only on spans of ours: a user's span (a request or worker-loop span that may live as
    long as the process) above a failing operation would otherwise keep every exception, frames and all."""
    otel = InMemoryTelemetry()
    retry = Retry(attempts=1, initial=0, name="op", **otel.providers)
    refs: list[weakref.ref[_TrackedError]] = []

    async def fails() -> None:
        error = _TrackedError("tracked")
        refs.append(weakref.ref(error))
        raise error

    async def main() -> None:
        with otel.tracer_provider.get_tracer("user").start_as_current_span("worker loop"):
            for _ in range(3):
                with contextlib.suppress(_TrackedError):
                    await retry.call(fails)
            gc.collect()
            assert [r for r in refs if r() is not None] == []  # while the user's span is still open

    run_virtual(main())
    assert len(otel.spans("op")) == 3


def test_a_long_task_catching_many_errors_holds_only_the_latest_few() -> None:
    otel = InMemoryTelemetry()
    retry = Retry(attempts=1, initial=0, name="op", **otel.providers)
    refs: list[weakref.ref[_TrackedError]] = []
    alive: list[int] = []

    async def fails() -> None:
        error = _TrackedError("tracked")
        refs.append(weakref.ref(error))
        raise error

    async def task() -> None:
        for _ in range(50):
            with contextlib.suppress(_TrackedError):
                await retry.call(fails)
        gc.collect()
        alive.append(len([r for r in refs if r() is not None]))  # while the task span is still open

    run_virtual(Wave[None]("w", **otel.providers).run([task]))
    assert 0 < alive[0] <= 8


def test_nested_policies_and_hedges_record_each_exception_once() -> None:
    """An inner operation inside an outer one's attempt, and two failed hedges: one event per raise."""
    otel = InMemoryTelemetry()
    outer = Retry(attempts=1, initial=0, name="outer", **otel.providers)
    inner = Retry(attempts=1, initial=0, name="inner", **otel.providers)
    hedged = Hedge(0.1, name="hedged", **otel.providers)

    async def slow_boom() -> None:
        await asyncio.sleep(0.2)
        raise ValueError("boom")

    async def nested() -> None:
        await outer.call(lambda: inner.call(_boom))

    async def hedging() -> None:
        await hedged.call(slow_boom)

    run_virtual(Wave[None]("w", **otel.providers).run([nested, hedging]))
    inner_attempt, outer_attempt = (
        next(s for s in otel.spans("attempt 1") if (s.attributes or {})["shannon.operation"] == op)
        for op in ("inner", "outer")
    )
    assert len(_exceptions(inner_attempt)) == 1
    assert len(_exceptions(otel.span("hedge 2"))) == 1
    hedge_first = next(s for s in otel.spans("attempt 1") if (s.attributes or {})["shannon.operation"] == "hedged")
    assert len(_exceptions(hedge_first)) == 1
    for span in [outer_attempt, otel.span("inner"), otel.span("outer"), otel.span("hedged"), *otel.spans("task w")]:
        assert _exceptions(span) == [], span.name
        assert span.status.status_code is StatusCode.ERROR, span.name


def test_a_message_with_a_lone_surrogate_is_exported_with_its_batch() -> None:
    """``ValueError(f"cannot read {path}")`` for a path from ``os.listdir`` that is not UTF-8 (a lone
    surrogate, ``os.fsdecode``) went into the exception event, its stack trace and the status description
    as it was: OTLP could not encode it, and every span exported in the same batch was lost (counted as
    dropped). The text is now written with U+FFFD for the surrogate; the user's error is untouched."""
    import os

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    path = os.fsdecode(b"/data/\xff")
    otel = InMemoryTelemetry()
    retry = Retry(attempts=1, name="read", **otel.providers)

    async def read() -> None:
        raise ValueError(f"cannot read {path}")

    async def task() -> None:
        await retry.call(read)

    result = run_virtual(Wave[None]("w", **otel.providers).run([task]))
    assert str(result.results[0].error) == f"cannot read {path}"  # the user's own error keeps its text
    spans = otel.spans()
    encode_spans(spans).SerializeToString()  # raised UnicodeEncodeError: the whole batch undeliverable
    (event,) = _exceptions(otel.span("attempt 1"))
    assert event["exception.message"] == "cannot read /data/\ufffd"
    assert "ValueError: cannot read /data/\ufffd" in event["exception.stacktrace"]
    assert otel.span("task w").status.description == "ValueError: cannot read /data/\ufffd"


async def _forever() -> None:
    await asyncio.sleep(3600)


def test_an_operation_cut_off_by_its_wave_tasks_timeout_records_no_timeout_of_its_own() -> None:
    """The operation span of a call the wave's task_timeout cut off carried an `exception` event of its own:
    a TimeoutError with an empty message that was never raised (the call's record of the timeout), its stack
    trace the library's, beside the real one on the task span; and its description read `TimeoutError`
    where every span a timeout cut off says `timeout`."""
    otel = InMemoryTelemetry()
    retry = Retry(attempts=3, initial=0, name="op", **otel.providers)

    async def task() -> None:
        await retry.call(_forever)

    run_virtual(Wave[None]("w", task_timeout=1, **otel.providers).run([task]))
    op = otel.span("op")
    assert _exceptions(op) == []
    assert op.status.status_code is StatusCode.ERROR
    assert op.status.description == "timeout"
    assert (op.attributes or {})["error.type"] == "TimeoutError"
    assert (op.attributes or {})["shannon.call.outcome"] == "failure"  # as shannon.calls counts it
    [event] = _exceptions(otel.span("task w"))  # the TimeoutError the task's timeout raised: recorded once
    assert "timed out after 1 s (task_timeout)" in event["exception.message"]
    assert [e for s in otel.spans() for e in _exceptions(s)] == [event]


def test_an_operation_cut_off_by_a_timeout_policy_around_it_records_no_timeout_of_its_own() -> None:
    """As above for a Timeout policy around the call (an enclosing call's): its TimeoutError, raised by the
    outer operation, is recorded once there; the inner operation says `timeout` without an event."""
    otel = InMemoryTelemetry()
    inner = Retry(attempts=3, initial=0, name="inner", **otel.providers)
    outer = Timeout(1, name="outer", **otel.providers)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await outer.call(lambda: inner.call(_forever))

    run_virtual(main())
    op = otel.span("inner")
    assert _exceptions(op) == []
    assert op.status.description == "timeout"
    assert (op.attributes or {})["error.type"] == "TimeoutError"
    [event] = _exceptions(otel.span("outer"))
    assert "Timeout policy" in event["exception.message"]
    assert [e for s in otel.spans() for e in _exceptions(s)] == [event]
