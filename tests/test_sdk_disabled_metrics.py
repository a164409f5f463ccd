"""``OTEL_SDK_DISABLED=true`` turns the SDK's providers into no-op ones: no span, no metric point. The
in-process histogram bridge (the task histograms ``configure()`` / ``testing`` / ``bridged()`` readers merge)
records beside the SDK's meters, and it went on serving them: a Prometheus page (or an in-memory reader)
showed ``shannon.task.duration`` and ``shannon.task.queue_wait`` alone, every other series gone, although the
SDK was off. The user's results are untouched either way."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shannon_otel import PrometheusReader, Retry, Wave, bridged, configure
from shannon_otel._metrics_bridge import BridgedInMemoryReader
from shannon_otel.testing import InMemoryTelemetry


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def _metric_names(reader: BridgedInMemoryReader) -> list[str]:
    data = reader.get_metrics_data()
    return [m.name for rm in (data.resource_metrics if data else ()) for s in rm.scope_metrics for m in s.metrics]


@pytest.fixture
def disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")


@pytest.mark.usefixtures("disabled")
def test_configure_with_the_sdk_disabled_serves_no_task_histogram() -> None:
    reader = BridgedInMemoryReader()
    with configure("svc", exporter="none", metric_readers=[reader], set_global=False) as handle:
        wave = Wave("w", max_concurrency=2, tracer_provider=handle.tracer_provider,
                    meter_provider=handle.meter_provider)
        result = asyncio.run(wave.map(_double, [1, 2, 3]))
        assert result.values() == [2, 4, 6]  # the user's results, as ever
        assert _metric_names(reader) == []


@pytest.mark.usefixtures("disabled")
def test_a_prometheus_page_with_the_sdk_disabled_has_no_shannon_series() -> None:
    reader = PrometheusReader()
    with configure("svc", exporter="none", metric_readers=[reader], set_global=False) as handle:
        wave = Wave("w", max_concurrency=2, tracer_provider=handle.tracer_provider,
                    meter_provider=handle.meter_provider)
        assert asyncio.run(wave.map(_double, [1, 2])).values() == [2, 4]
        page = reader.scrape()
        assert "shannon_" not in page, page


@pytest.mark.usefixtures("disabled")
def test_in_memory_telemetry_with_the_sdk_disabled_records_no_task_histogram() -> None:
    telemetry = InMemoryTelemetry()
    try:
        wave = Wave("w", max_concurrency=2, **telemetry.providers)
        assert asyncio.run(wave.map(_double, [1, 2])).values() == [2, 4]
        assert telemetry.metrics() == {}
        assert telemetry.spans() == []
    finally:
        telemetry.shutdown()


@pytest.mark.usefixtures("disabled")
def test_a_bridged_reader_of_a_disabled_provider_serves_no_task_histogram() -> None:
    inner = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[bridged(inner)], shutdown_on_exit=False)
    try:
        wave = Wave("w", max_concurrency=2, meter_provider=provider)
        assert asyncio.run(wave.map(_double, [1, 2])).values() == [2, 4]
        data = inner.get_metrics_data()
        assert data is None or not data.resource_metrics
    finally:
        provider.shutdown()


@pytest.mark.usefixtures("disabled")
def test_with_the_sdk_disabled_the_default_log_records_are_still_written(caplog: pytest.LogCaptureFixture) -> None:
    """The bridge is left out, not the hooks: the default logging hook rides on the OTel hook, and stdlib log
    records are not OTel telemetry (``OTEL_SDK_DISABLED`` is not a reason to stop them)."""
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first")
        return "ok"

    with configure("svc", exporter="none", set_global=False) as handle:
        retry = Retry(attempts=2, initial=0.001, tracer_provider=handle.tracer_provider,
                      meter_provider=handle.meter_provider)
        with caplog.at_level(logging.INFO, logger="shannon_otel"):
            assert asyncio.run(retry(flaky)()) == "ok"
    assert [r for r in caplog.records if r.name == "shannon_otel.retry" and "retrying" in r.getMessage()]
