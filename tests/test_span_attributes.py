"""The task attributes' direct write (``_otel/_span_attributes.py``) equals ``span.set_attributes``.

It relies on SDK internals, so these tests pin the behaviour on the installed SDK: for every span
limit and span state that could make ``set_attributes`` do more than insert three items (drop,
truncate, move, refuse), two twin spans, one given the attributes each way, export the same
attributes in the same order with the same dropped count. And the direct write really is taken
where it applies (otherwise the equality would prove nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import _telemetry as tel
from shannon_otel._otel import _span_attributes
from shannon_otel._otel._span_attributes import set_task_attributes

KEYS = (tel.TASK_INDEX, tel.TASK_QUEUE_WAIT, tel.TASK_OUTCOME)

LIMITS = {
    "default": SpanLimits(),
    "three attributes": SpanLimits(max_span_attributes=3),
    "two attributes": SpanLimits(max_span_attributes=2),
    "no attributes": SpanLimits(max_span_attributes=0),
    "values of 4 chars": SpanLimits(max_span_attribute_length=4),
    "values of 7 chars": SpanLimits(max_span_attribute_length=7),
    "values of 0 chars": SpanLimits(max_attribute_length=0),
}


def _nothing(span: Any) -> None:
    return None


def _user_attribute(span: Any) -> None:
    span.set_attribute("user.key", "v")


def _same_key(span: Any) -> None:
    span.set_attribute(tel.TASK_INDEX, 99)


def _ended(span: Any) -> None:
    span.end()


STATES: dict[str, Callable[[Any], None]] = {
    "fresh": _nothing, "with a user attribute": _user_attribute, "with one of the keys": _same_key,
    "ended": _ended,
}

VALUES = {
    "int, float, str": (3, 0.25, "success"),
    "an int queue wait": (3, 2, "timeout"),
    "a NaN queue wait": (0, math.nan, "failure"),
    "a bool index": (True, 0.5, "success"),
    "a long outcome": (1, 0.5, "cancellation"),
}


def _exported(limits: SpanLimits, state: Callable[[Any], None], write: Callable[[Any], None]) -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("pin").start_span("task")
    state(span)
    write(span)
    if span.is_recording():
        span.end()
    (finished,) = exporter.get_finished_spans()
    return finished


def _form(span: ReadableSpan) -> tuple[Any, ...]:
    assert span.attributes is not None
    items = [(k, "nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in span.attributes.items()]
    return items, span.dropped_attributes


@pytest.mark.parametrize("values", list(VALUES.values()), ids=list(VALUES))
@pytest.mark.parametrize("state", list(STATES.values()), ids=list(STATES))
@pytest.mark.parametrize("limits", list(LIMITS.values()), ids=list(LIMITS))
def test_the_direct_write_exports_what_set_attributes_exports(
    limits: SpanLimits, state: Callable[[Any], None], values: tuple[Any, Any, str],
) -> None:
    pairs = dict(zip(KEYS, values, strict=True))

    def public(span: Any) -> None:
        span.set_attributes(pairs)

    def direct(span: Any) -> None:
        set_task_attributes(span, KEYS[0], values[0], KEYS[1], values[1], KEYS[2], values[2])

    assert _form(_exported(limits, state, direct)) == _form(_exported(limits, state, public))


def test_the_direct_write_is_taken_on_a_fresh_sdk_span(monkeypatch: pytest.MonkeyPatch) -> None:
    span: Any = TracerProvider().get_tracer("pin").start_span("task")
    public: list[Any] = []
    monkeypatch.setattr(span, "set_attributes", public.append)  # only the fallback calls it
    set_task_attributes(span, KEYS[0], 1, KEYS[1], 0.5, KEYS[2], "success")
    assert public == []
    assert dict(span.attributes or {}) == {KEYS[0]: 1, KEYS[1]: 0.5, KEYS[2]: "success"}


class _OwnSpan(trace.NonRecordingSpan):
    """A span that is not the SDK's: it only takes the public path."""

    def __init__(self) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.seen: list[Any] = []

    def set_attributes(self, attributes: Any) -> None:
        self.seen.append(dict(attributes))


def test_a_span_of_another_class_gets_set_attributes() -> None:
    span = _OwnSpan()
    set_task_attributes(span, KEYS[0], 1, KEYS[1], 0.5, KEYS[2], "success")
    assert span.seen == [{KEYS[0]: 1, KEYS[1]: 0.5, KEYS[2]: "success"}]
    assert _span_attributes._PLAIN[_OwnSpan] is False


def test_a_non_recording_span_is_left_alone() -> None:
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    set_task_attributes(span, KEYS[0], 1, KEYS[1], 0.5, KEYS[2], "success")  # the API's no-op, no error
    assert not span.is_recording()
