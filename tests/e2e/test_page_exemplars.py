"""The exemplars of the library's own Prometheus page open the spans they name: the set-up without a collector
(collector-config/prometheus.yml's commented `shannon-app` job: `PrometheusReader` + `MetricsServer` scraped
with honor_labels, traces to Jaeger over OTLP), the real Prometheus storing the page's OpenMetrics exemplars
(--enable-feature=exemplar-storage) and each stored exemplar looked up in the real Jaeger."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

import pytest
from _stack import wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from test_exemplar_links import _span, _workload

from shannon_otel import MetricsServer, PrometheusReader, configure
from shannon_otel import _telemetry as tel
from shannon_otel.testing import run_virtual

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _stack import Jaeger, Prometheus

pytestmark = pytest.mark.e2e
SERVICE = f"page-exemplars-{uuid.uuid4().hex[:8]}"
METRICS = {
    tel.TASK_DURATION.prometheus: "task ex",
    tel.TASK_QUEUE_WAIT_DURATION.prometheus: "task ex",
    tel.WAVE_DURATION.prometheus: tel.SPAN_WAVE.format(wave="ex"),
    tel.RETRY_DELAY_DURATION.prometheus: "ex.retry",
}


@pytest.fixture(scope="module")
def stored(jaeger: Jaeger, prometheus: Prometheus) -> Iterator[dict[str, list[dict[str, str]]]]:
    """Metric -> the labels of every exemplar Prometheus stored from the page, once each metric has some; the
    scrape job is added to the stack's Prometheus for the module and removed after it."""
    reader = PrometheusReader()
    server = MetricsServer(reader, port=0)
    original = prometheus.config_file.read_text(encoding="utf-8")
    job = (f"\n  - job_name: {SERVICE}\n    honor_labels: true\n"
           f"    static_configs:\n      - targets: [\"127.0.0.1:{server.port}\"]\n")
    prometheus.config_file.write_text(original + job, encoding="utf-8")
    try:
        prometheus.reload()
        wait_until(lambda: prometheus.targets().get(SERVICE) == "up", what="Prometheus scraping the page")
        with configure(SERVICE, exporter="none", metric_readers=[reader], set_global=False,
                       span_exporters=[OTLPSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True)],
                       ) as telemetry:
            providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
            run_virtual(_workload(providers))
            assert telemetry.force_flush(10)

            def found() -> dict[str, list[dict[str, str]]]:
                out = {}
                for metric in METRICS:
                    series = prometheus.exemplars(f'{metric}_bucket{{job="{SERVICE}"}}')
                    out[metric] = [e["labels"] for s in series for e in s["exemplars"]]
                return out if all(out.values()) else {}

            yield wait_until(found, timeout=60, what=f"exemplars of {sorted(METRICS)} from the page")
    finally:
        server.close()
        prometheus.config_file.write_text(original, encoding="utf-8")
        prometheus.reload()


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_exemplar_of_the_page_opens_its_span_in_jaeger(
    jaeger: Jaeger, stored: dict[str, list[dict[str, str]]], metric: str,
) -> None:
    labels = stored[metric]
    assert all(set(e) == {"trace_id", "span_id"} for e in labels), labels
    # OpenMetrics ids as Grafana's exemplar link and Jaeger's /api/traces/<id> take them: W3C's lowercase hex.
    assert all(re.fullmatch("[0-9a-f]{32}", e["trace_id"]) and re.fullmatch("[0-9a-f]{16}", e["span_id"])
               for e in labels), labels
    names = [_span(jaeger, e)["operationName"] for e in labels]
    assert set(names) == {METRICS[metric]}, names
