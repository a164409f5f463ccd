"""A provider that raises making shannon-otel's tracer or instruments breaks nothing the user built.

A MeterProvider whose ``get_meter`` raised, or whose meter raised in ``create_histogram`` (or any instrument
constructor), made ``Wave(...)``, ``Retry(...)``, ``CircuitBreaker(...)`` and the rest raise the provider's own
error at construction; so did a TracerProvider whose ``get_tracer`` raised. Now the provider is logged once and
left out: the values, and the spans (metrics) of the healthy provider, are those of a run without it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import AnomalyHook, CircuitBreaker, DetectorConfig, Pipeline, Retry, Saga, Step, Timeout, Wave
from shannon_otel.testing import FakeClock


class ProviderError(Exception):
    pass


class NoMeter(MeterProvider):
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise ProviderError("get_meter is broken")


class RaisingIn(MeterProvider):
    """A real SDK meter, but its ``method`` (an instrument constructor) raises; the other instruments are made."""

    method = ""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        meter = super().get_meter(*args, **kwargs)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ProviderError(f"{self.method} is broken")

        setattr(meter, self.method, broken)
        return meter


def raising_in(method: str) -> type[MeterProvider]:
    return type(f"RaisingIn_{method}", (RaisingIn,), {"method": method, "__module__": __name__})


class NoTracer(TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        raise ProviderError("get_tracer is broken")


def _spans(exporter: InMemorySpanExporter) -> list[tuple[str, str | None, str]]:
    spans = exporter.get_finished_spans()
    names = {s.context.span_id: s.name for s in spans}
    return sorted(
        (s.name, names.get(s.parent.span_id) if s.parent else None, s.status.status_code.name) for s in spans
    )


def _scenario(**providers: Any) -> list[Any]:
    """A wave whose tasks run under Retry + Timeout + CircuitBreaker, a protected call, and a saga; each built
    twice (the provider is logged once, not per entry point). Returns what the user's code got back."""
    clock = FakeClock()
    flaky: dict[int, int] = {}

    async def work(i: int) -> int:
        clock.advance(0.125)
        flaky[i] = flaky.get(i, 0) + 1
        if i == 1 and flaky[i] == 1:
            raise ConnectionError("once")
        return i * 10

    async def main() -> list[Any]:
        got: list[Any] = []
        for n in range(2):
            policy = Pipeline(
                Retry(attempts=2, initial=0, maximum=0, clock=clock, sleep=clock.sleep), Timeout(5),
                CircuitBreaker(f"inner{n}", clock=clock), name="op", clock=clock, **providers,
            )
            # scores every tick: anomaly events reach the OTel hook (the score gauge is made at the first)
            detector = AnomalyHook(DetectorConfig(buckets=1, min_history=1, warning=1e-9, critical=1e-9), tick_s=0.1,
                                   min_tick_tasks=1, clock=clock, signals=["latency"])
            wave: Wave[int] = Wave("w", max_concurrency=1, policy=policy, hooks=[detector], clock=clock,
                                   sleep=clock.sleep, **providers)
            flaky.clear()
            result = await wave.map(work, range(8))
            got.append(result.values())
            got.append(await Retry(attempts=2, initial=0, maximum=0, name="call", clock=clock, sleep=clock.sleep,
                                   **providers).call(work, 2))
            got.append(await CircuitBreaker(f"cb{n}", clock=clock, **providers).call(work, 4))
            got.append(await Timeout(5, name="t", **providers).call(work, 5))
            saga = await Saga("s", **providers).run(Step("a", lambda: work(3)))
            got.append((saga.outcome, saga.values))
        return got

    return asyncio.run(main())


def _failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "making shannon-otel's" in r.getMessage()]


# create_observable_gauge: the anomaly score gauge, made when the wave's first anomaly event arrives.
@pytest.mark.parametrize("broken", [NoMeter, *map(raising_in, (
    "create_histogram", "create_counter", "create_observable_counter", "create_observable_up_down_counter",
    "create_observable_gauge",
))], ids=lambda c: c.__name__)
def test_a_meter_provider_that_raises_making_the_instruments_leaves_values_and_spans_as_without_it(
    broken: type[MeterProvider], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="shannon_otel")
    runs = {}
    for meter_provider in (None, broken()):
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        kw: dict[str, Any] = {"tracer_provider": tracer_provider}
        if meter_provider is not None:
            kw["meter_provider"] = meter_provider
        runs[meter_provider is None] = (_scenario(**kw), _spans(exporter))
    assert runs[False] == runs[True]
    assert runs[True][0][0] == [i * 10 for i in range(8)]
    failed = _failures(caplog)
    assert len(failed) == 1, failed
    assert failed[0].startswith(f"meter_provider <{__name__}.{broken.__name__} object at ")
    assert "raised ProviderError making shannon-otel's instruments" in failed[0]
    (record,) = [r for r in caplog.records if "making shannon-otel's" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info and isinstance(record.exc_info[1], ProviderError)


def test_a_tracer_provider_that_raises_in_get_tracer_leaves_values_and_metrics_as_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="shannon_otel")
    runs = {}
    for tracer_provider in (None, NoTracer()):
        reader = InMemoryMetricReader()
        kw: dict[str, Any] = {"meter_provider": MeterProvider(metric_readers=[reader])}
        if tracer_provider is not None:
            kw["tracer_provider"] = tracer_provider
        values = _scenario(**kw)
        data = reader.get_metrics_data()
        outcomes = sorted(
            (m.name, tuple(sorted(dict(p.attributes or {}).items())), getattr(p, "value", None))
            for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
            if m.name in ("shannon.task.outcomes", "shannon.calls") for p in m.data.data_points
        )
        runs[tracer_provider is None] = (values, outcomes)
    assert runs[False] == runs[True]
    assert runs[True][1]  # the metrics were recorded
    failed = _failures(caplog)
    assert len(failed) == 1, failed
    assert failed[0].startswith(f"tracer_provider <{__name__}.NoTracer object at ")
    assert "raised ProviderError making shannon-otel's tracer" in failed[0]


def test_a_shared_state_built_with_a_broken_meter_provider_is_built(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("redis")
    from shannon_otel.redis import RedisState

    caplog.set_level(logging.DEBUG, logger="shannon_otel")
    broken = NoMeter()
    for _ in range(2):  # made, not connected (raised get_meter's error before)
        RedisState("redis://127.0.0.1:1/0", meter_provider=broken)
    failed = _failures(caplog)
    assert len(failed) == 1 and failed[0].startswith(f"meter_provider <{__name__}.NoMeter object at "), failed
