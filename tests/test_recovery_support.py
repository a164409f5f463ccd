"""Helpers shared by the recovery tests (real SDK, in-memory), and tests of the shared validation."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shannon_otel.recovery as recovery

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Telemetry:
    """A TracerProvider + MeterProvider of one test, exported in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    @property
    def kw(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return sorted(
            (s for s in self.spans() if s.parent is not None and s.parent.span_id == parent.context.span_id),
            key=lambda s: s.start_time or 0,
        )

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of every point of ``metric``; histograms give (count, sum)."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != metric:
                        continue
                    for p in m.data.data_points:
                        value = p.value if isinstance(p, NumberDataPoint) else (p.count, p.sum)
                        out.append((dict(p.attributes or {}), value))
        return out


class FakeClock:
    """A clock whose ``sleep`` advances it instantly (and yields once to the loop)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_public_names_exported() -> None:
    for name in recovery.__all__:
        assert hasattr(recovery, name), name


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: recovery.Timeout(0), "seconds must be in (0"),
    (lambda: recovery.Timeout(-1.0), "seconds must be in (0"),
    (lambda: recovery.Timeout("1"), "seconds must be a number"),  # type: ignore[arg-type]
    (lambda: recovery.Hedge(-0.1), "delay must be in [0"),
    (lambda: recovery.Hedge(0.1, attempts=0), "attempts must be in [1"),
    (lambda: recovery.Degrade(), "declare a degraded result"),
    (lambda: recovery.Degrade(default=1, max_age=5.0), "max_age applies to last_good"),
    (lambda: recovery.Degrade(last_good=True, max_age=0), "max_age must be in (0"),
    (lambda: recovery.Degrade(default=1, key=lambda a, k: a[0]), "key applies to last_good"),
    (lambda: recovery.Degrade(last_good=True, key="uid"), "key must be a callable"),  # type: ignore[arg-type]
    (lambda: recovery.Degrade(last_good=True, max_keys=0), "max_keys must be in [1"),
    (lambda: recovery.Fallback(42), "fallback must be an async callable"),  # type: ignore[arg-type]
    (lambda: recovery.Pipeline(), "at least one policy"),
    (lambda: recovery.Pipeline(object()), "Pipeline takes policies"),  # type: ignore[arg-type]
    # One list of right policies used to be reported as a wrong policy, printed whole.
    (lambda: recovery.Pipeline([recovery.Timeout(1)]), "takes the policies as separate arguments"),  # type: ignore[arg-type]
    (lambda: recovery.resilient((recovery.Timeout(1),)), "as separate arguments"),  # type: ignore[arg-type]
])
def test_bad_input_is_rejected_at_construction(factory: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace("[", r"\[")):
        factory()
