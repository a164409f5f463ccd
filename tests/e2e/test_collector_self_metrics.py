"""The collector's own series the dashboards and alert rules select exist in the real collector, and its
alerts evaluate on them: a name that is not emitted would leave a panel empty and an alert silent."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from _stack import wait_until

from shannon_otel import Retry, Wave, configure
from shannon_otel.assets import pipeline_metrics, rule_queries

if TYPE_CHECKING:
    from _stack import Collector, Prometheus

pytestmark = pytest.mark.e2e


def _send_every_signal(endpoint: str) -> None:
    """Spans, metric points and log records (the logging hook's retry warning) through the collector."""
    service = f"pipeline-{uuid.uuid4().hex[:8]}"
    with configure(service, exporter="otlp_grpc", endpoint=endpoint, metric_interval_s=0.5, set_global=False,
                   logs=True) as telemetry:
        providers: dict[str, Any] = {
            "tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider,
        }
        retry = Retry(attempts=2, initial=0.001, name="pipeline.retry", **providers)
        tries = [0]

        async def flaky() -> int:
            tries[0] += 1
            if tries[0] == 1:
                raise ConnectionError("reset")
            return tries[0]

        async def task() -> int:
            return await retry.call(flaky)

        wave: Wave[int] = Wave("pipeline", **providers)
        asyncio.run(wave.run([task]))
        assert telemetry.force_flush(10)


def test_every_collector_series_the_assets_select_is_emitted(collector: Collector, prometheus: Prometheus) -> None:
    _send_every_signal(collector.otlp_grpc_endpoint)
    wanted = pipeline_metrics()
    # The per-signal rules name the log records' series too: they must be real names, not guesses.
    assert {"otelcol_receiver_refused_log_records_total", "otelcol_exporter_send_failed_log_records_total"} <= wanted

    def missing() -> set[str]:
        return wanted - prometheus.metric_names()

    wait_until(lambda: not missing(), timeout=60, what=f"collector series {sorted(wanted)}")
    # ShannonCollectorDown's selector matches both scrape jobs of collector-config/prometheus.yml.
    wait_until(lambda: {s["metric"]["job"] for s in prometheus.query('up{job=~"otel-collector.*"} == 1')}
               == {"otel-collector", "otel-collector-self"}, what="both collector scrape jobs up")


def test_the_collector_alerts_evaluate_to_zero_on_a_healthy_collector(
    collector: Collector, prometheus: Prometheus,
) -> None:
    """Each collector alert's expression without its threshold: one series per component, all 0."""
    _send_every_signal(collector.otlp_grpc_endpoint)
    for name, expr in rule_queries():
        if not name.startswith("ShannonCollector") or name == "ShannonCollectorDown":
            continue
        measured = re.sub(r"\s*> 0$", "", expr)
        assert measured != expr, name
        component = "exporter" if "Export" in name else "receiver"
        expected = {"otlp/jaeger", "prometheus", "debug"} if component == "exporter" else {"otlp"}

        def measured_series(m: str = measured, c: str = component, e: set[str] = expected) -> list[dict[str, Any]]:
            found = prometheus.query(m)
            return found if {s["metric"][c] for s in found} >= e else []

        series = wait_until(measured_series, timeout=60, what=f"{name}'s series for {sorted(expected)}")
        assert all(float(s["value"][1]) == 0 for s in series), (name, series)
