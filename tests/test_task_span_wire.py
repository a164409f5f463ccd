"""The exported form of task spans and task histograms, pinned field by field.

The OTel hook has a short path for the common traced task (a success without measurements or
batch) beside the general one; these tests pin what both put on the wire: the span's name, kind,
parent, timing, status, events and its attributes in order, and the task histograms' points
(through the in-process bridge and through plain SDK calls alike, exemplars included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from shannon_otel import Outcome, Wave, WaveResult, record_tokens
from shannon_otel import _telemetry as tel
from shannon_otel.testing import FakeClock, InMemoryTelemetry


def _work(clock: FakeClock, seconds: float, *, tokens: int = 0, error: Exception | None = None,
          ) -> Callable[[], Awaitable[int]]:
    async def body() -> int:
        clock.advance(seconds)
        if tokens:
            record_tokens(input=tokens)
        await asyncio.sleep(0)
        if error is not None:
            raise error
        return 1

    return body


def _run_wave(otel: InMemoryTelemetry, name: str = "wire") -> WaveResult[int]:
    clock = FakeClock(start=0.0)
    wave: Wave[int] = Wave(name, max_concurrency=2, clock=clock, **otel.providers)
    tasks = [
        _work(clock, 0.003), _work(clock, 0.02), _work(clock, 0.5),  # successes: the short path
        _work(clock, 0.004, tokens=7),  # a success with a measurement: the general path
        _work(clock, 0.01, error=KeyError("k")),  # a failure: the general path
    ]
    return asyncio.run(wave.run(tasks))


def _task_spans(otel: InMemoryTelemetry) -> dict[int, ReadableSpan]:
    found: dict[int, ReadableSpan] = {}
    for span in otel.spans("task wire"):
        assert span.attributes is not None
        index = span.attributes[tel.TASK_INDEX]
        assert isinstance(index, int)
        found[index] = span
    return found


def test_every_task_span_carries_its_attributes_in_order_and_nothing_else() -> None:
    otel = InMemoryTelemetry()
    result = _run_wave(otel)
    wave_span = otel.span("wave wire")
    spans = _task_spans(otel)
    assert sorted(spans) == [0, 1, 2, 3, 4]
    for r in result.results:
        span = spans[r.index]
        assert span.kind is SpanKind.INTERNAL
        assert span.parent is not None and wave_span.context is not None
        assert span.parent.span_id == wave_span.context.span_id
        assert span.context is not None and span.context.trace_id == wave_span.context.trace_id
        assert span.start_time is not None and span.end_time is not None
        assert wave_span.start_time is not None and wave_span.end_time is not None
        assert wave_span.start_time <= span.start_time <= span.end_time <= wave_span.end_time
        assert not span.links
        assert span.dropped_attributes == 0
        assert span.attributes is not None
        # measurements first: past the SDK's attribute count limit the oldest go (tests/test_span_limits.py)
        expected: list[tuple[str, Any]] = (
            [(tel.TASK_INPUT_TOKENS, 7), (tel.TASK_OUTPUT_TOKENS, 0)] if r.index == 3 else []
        )
        if r.outcome is not Outcome.SUCCESS:  # what a search for the wave's failed tasks reads
            expected.append((tel.WAVE_NAME, "wire"))
        expected += [
            (tel.TASK_INDEX, r.index), (tel.TASK_QUEUE_WAIT, r.queue_wait_s), (tel.TASK_OUTCOME, r.outcome.value),
        ]
        if r.index == 4:
            expected.append((tel.ERROR_TYPE, "KeyError"))
        assert list(span.attributes.items()) == expected
        if r.outcome is Outcome.SUCCESS:
            assert span.status.status_code is StatusCode.UNSET and span.status.description is None
            assert not span.events
        else:
            assert span.status.status_code is StatusCode.ERROR
            assert span.status.description == "KeyError: 'k'"
            assert [e.name for e in span.events] == ["exception"]


def _histograms(otel: InMemoryTelemetry, spans: dict[int, ReadableSpan]) -> dict[str, list[Any]]:
    """Each task histogram's points, exemplars named by the index of the task span they point at."""
    by_span_id = {s.context.span_id: i for i, s in spans.items() if s.context is not None}
    found: dict[str, list[Any]] = {}
    metrics = otel.metrics()  # one collection: the SDK's exemplars are those since the last one
    for spec in (tel.TASK_DURATION, tel.TASK_QUEUE_WAIT_DURATION, tel.TASK_TOKENS):
        rows = []
        points: list[Any] = list(metrics[spec.name].data.data_points)
        for p in points:
            exemplars = sorted((e.value, by_span_id[e.span_id], dict(e.filtered_attributes or {}))
                               for e in p.exemplars)
            rows.append((dict(p.attributes), p.count, round(p.sum, 12), list(p.bucket_counts),
                         list(p.explicit_bounds), p.min, p.max, exemplars))
        found[spec.name] = sorted(rows, key=repr)
    return found


def test_task_histograms_are_the_same_through_the_bridge_and_plain_sdk_calls() -> None:
    bridged, plain = InMemoryTelemetry(), InMemoryTelemetry(bridged=False)
    result, _ = _run_wave(bridged), _run_wave(plain)
    ours, sdk = _histograms(bridged, _task_spans(bridged)), _histograms(plain, _task_spans(plain))
    assert ours == sdk
    durations = {repr(row[0]): row for row in ours[tel.TASK_DURATION.name]}
    success = durations[repr({tel.WAVE_NAME: "wire", tel.TASK_OUTCOME: "success"})]
    assert success[1] == 4  # the three short-path successes and the measured one
    assert success[2] == round(sum(r.duration_s for r in result.results if r.ok), 12)
    # The exemplars (the last success per bucket) point at the task span whose duration they hold.
    assert success[7]
    for value, index, _ in success[7]:
        assert result.results[index].ok and value == result.results[index].duration_s
    (queue,) = ours[tel.TASK_QUEUE_WAIT_DURATION.name]
    assert queue[0] == {tel.WAVE_NAME: "wire"} and queue[1] == 5
