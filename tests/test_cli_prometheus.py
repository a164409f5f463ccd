"""The --prometheus-port reader: text exposition with the collector's names, bridge merged, over HTTP."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from shannon_otel import Wave, configure
from shannon_otel._telemetry import METRICS
from shannon_otel.cli._prometheus import MetricsServer, PrometheusReader, render, series_name
from shannon_otel.recovery import CircuitBreaker, Pipeline, Retry
from shannon_otel.testing import FakeClock


def promtool_check_metrics(text: str) -> str:
    """``promtool check metrics`` on ``text``: its problems, "" when clean. Fails (never skips) without promtool."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `scripts/stack install` (Debian's prometheus package)")
    proc = subprocess.run([path, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30,
                          check=False)
    return "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("spec", METRICS, ids=lambda s: s.name)
def test_series_names_are_the_contract_translation(spec: object) -> None:
    assert series_name(spec.name, spec.unit, spec.kind) == spec.prometheus  # type: ignore[attr-defined]


def test_unknown_metrics_get_the_generic_translation() -> None:
    assert series_name("my.app.latency", "s", "histogram") == "my_app_latency_seconds"
    assert series_name("my.app.requests", "{request}", "counter") == "my_app_requests_total"


def test_render_counter_gauge_and_histogram() -> None:
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.get_empty())
    meter = provider.get_meter("t")
    meter.create_counter("shannon.calls", unit="{call}").add(2, {"shannon.operation": 'a"b\\c'})
    meter.create_up_down_counter("shannon.task.active", unit="{task}").add(-1, {"shannon.wave.name": "w"})
    hist = meter.create_histogram("shannon.retry.delay", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0])
    for value in (0.05, 0.5, 5.0):
        hist.record(value, {"shannon.operation": "op"})
    text = reader.scrape()
    provider.shutdown()
    assert "# HELP shannon_calls_total " in text, "HELP and TYPE name the sample, as prometheus_client does"
    assert "# TYPE shannon_calls_total counter\n" in text
    scope = 'otel_scope_name="t",otel_scope_schema_url="",otel_scope_version=""'  # the collector's scope labels
    assert f'shannon_calls_total{{shannon_operation="a\\"b\\\\c",{scope}}} 2\n' in text
    assert "# TYPE shannon_task_active gauge\n" in text
    assert f'shannon_task_active{{shannon_wave_name="w",{scope}}} -1\n' in text
    assert "# TYPE shannon_retry_delay_seconds histogram\n" in text
    bucket_line = r'shannon_retry_delay_seconds_bucket\{shannon_operation="op",' + scope + r',le="([^"]+)"\} (\d+)'
    buckets = re.findall(bucket_line, text)
    assert buckets == [("0.1", "1"), ("1.0", "2"), ("+Inf", "3")], "cumulative, ending with +Inf"
    assert f'shannon_retry_delay_seconds_sum{{shannon_operation="op",{scope}}} 5.55\n' in text
    assert f'shannon_retry_delay_seconds_count{{shannon_operation="op",{scope}}} 3\n' in text


def test_a_metric_without_a_unit_gets_no_stray_underscore() -> None:
    # was "my_app_requests__total" (the empty unit became a "_" suffix); the collector writes this
    assert series_name("my.app.requests", "", "counter") == "my_app_requests_total"
    assert series_name("my.app.queue", "", "gauge") == "my_app_queue"


def test_attributes_that_clash_as_labels_never_make_the_scrape_invalid() -> None:
    # Before: 'a_b="x",a_b="y"' and a second 'job' label: Prometheus (and promtool) reject the whole
    # scrape for a duplicate label name, so one user attribute cost every series of the target.
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    meter = provider.get_meter("t")
    meter.create_counter("my.requests", unit="{request}").add(1, {"a.b": "x", "a_b": "y", "job": "mine"})
    meter.create_histogram("my.size", unit="{item}", explicit_bucket_boundaries_advisory=[1.0]).record(
        2, {"le": "mine"})
    text = reader.scrape()
    provider.shutdown()
    assert promtool_check_metrics(text) == ""
    (line,) = [line for line in text.splitlines() if line.startswith("my_requests_total{")]
    # joined in the order of the keys (the OTel spec's rule); Prometheus' exported_ prefix for a clash
    assert 'a_b="x;y",exported_job="mine",job="svc",' in line
    assert 'my_size_bucket{exported_le="mine",job="svc",' in text
    assert 'my_size_sum{exported_le="mine",job="svc",' in text  # one label set across the histogram's lines


def test_metrics_without_a_description_still_get_help_text() -> None:
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("my.app.requests", unit="{request}").add(1)
    text = reader.scrape()
    provider.shutdown()
    assert "# HELP my_app_requests_total my.app.requests\n# TYPE my_app_requests_total counter\n" in text
    assert promtool_check_metrics(text) == ""


def test_a_scrape_of_a_real_run_passes_promtool_check_metrics() -> None:
    reader = PrometheusReader()
    telemetry = configure("prom-test", exporter="none", metric_readers=[reader], set_global=False)
    tracer_provider, meter_provider = telemetry.tracer_provider, telemetry.meter_provider
    clock = FakeClock()
    breaker = CircuitBreaker("dep", failure_threshold=2, reset_timeout=10, clock=clock,
                             tracer_provider=tracer_provider, meter_provider=meter_provider)
    call = Pipeline(Retry(attempts=3, initial=0.0), breaker, name="dep-call", clock=clock,
                    tracer_provider=tracer_provider, meter_provider=meter_provider)

    async def down() -> None:
        raise ConnectionError("down")

    async def ok() -> None:
        await asyncio.sleep(0)

    try:
        wave: Wave[None] = Wave("scraped", tracer_provider=tracer_provider, meter_provider=meter_provider)
        asyncio.run(wave.run([ok, ok, lambda: call.call(down), lambda: call.call(down)]))
        text = reader.scrape()
    finally:
        telemetry.shutdown()
    assert "shannon_calls_total" in text and "shannon_breaker_transitions_total" in text
    assert "shannon_task_duration_seconds_bucket" in text
    assert promtool_check_metrics(text) == ""


def test_empty_provider_renders_nothing() -> None:
    assert render(None) == ""


def test_bridged_task_histograms_are_served_over_http() -> None:
    reader = PrometheusReader()
    telemetry = configure("prom-test", exporter="none", metric_readers=[reader], set_global=False)
    server = MetricsServer(reader, 0)
    try:
        async def work() -> None:
            await asyncio.sleep(0)

        wave: Wave[None] = Wave("scraped", tracer_provider=telemetry.tracer_provider,
                                meter_provider=telemetry.meter_provider)
        asyncio.run(wave.run([work for _ in range(5)]))
        with urllib.request.urlopen(server.url, timeout=5) as response:
            text = response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=5)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.close()
        telemetry.shutdown()
    assert re.search(r'^shannon_task_duration_seconds_count\{.*shannon_wave_name="scraped".*\} 5$', text, re.MULTILINE)
    assert re.search(r'^shannon_task_outcomes_total\{.*shannon_wave_name="scraped".*\} 5$', text, re.MULTILINE)
