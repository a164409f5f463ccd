"""The public no-collector endpoint: the collector's names and job/instance labels, OpenMetrics with
exemplars that point at real spans, content negotiation over HTTP."""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import urllib.request

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from shannon_otel import MetricsServer, PrometheusReader, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel.assets import referenced_metrics


def _run_wave() -> tuple[PrometheusReader, set[str], str]:
    reader = PrometheusReader()
    spans = InMemorySpanExporter()
    with configure("endpoint-test", exporter="none", metric_readers=[reader], span_exporters=[spans],
                   resource_attributes={"service.namespace": "shop"}, set_global=False) as handle:
        wave: Wave[int] = Wave("checkout", tracer_provider=handle.tracer_provider,
                               meter_provider=handle.meter_provider)

        async def one(i: int) -> int:
            await asyncio.sleep(0)
            return i

        asyncio.run(wave.run([functools.partial(one, i) for i in range(5)]))
        handle.force_flush()
        instance = str(handle.tracer_provider.resource.attributes["service.instance.id"])
        trace_ids = {f"{s.context.trace_id:032x}" for s in spans.get_finished_spans()}
        return reader, trace_ids, instance


def test_openmetrics_has_the_collector_names_labels_and_exemplars_of_real_traces() -> None:
    reader, trace_ids, instance = _run_wave()
    text = reader.scrape(openmetrics=True)
    assert text.endswith("# EOF\n")
    parsed = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]  # a strict OpenMetrics parser
    families = {f.name: f for f in parsed}
    samples = [s for f in families.values() for s in f.samples]
    names = {s.name for s in samples}
    # Unit-1 gauges keep _ratio, counters _total, seconds histograms _seconds: the dashboards' names.
    for spec in (tel.WAVE_EFFICIENCY, tel.TASK_OUTCOMES, tel.TASKS_ACTIVE):
        assert spec.prometheus in names, spec.prometheus
    assert tel.TASK_DURATION.prometheus + "_bucket" in names
    assert names & referenced_metrics(), "the bundled dashboards select these series"
    assert {(s.labels["job"], s.labels["instance"]) for s in samples} == {("shop/endpoint-test", instance)}
    exemplars = [s.exemplar for s in samples if s.name == tel.TASK_DURATION.prometheus + "_bucket" and s.exemplar]
    assert exemplars, "task duration buckets carry exemplars"
    assert {e.labels["trace_id"] for e in exemplars} <= trace_ids


def test_the_server_negotiates_openmetrics_and_falls_back_to_text() -> None:
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    try:
        request = urllib.request.Request(server.url, headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        })
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            assert "# {trace_id=" in response.read().decode()
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = response.read().decode()
            assert "# EOF" not in body and "trace_id" not in body
            assert "# TYPE shannon_task_outcomes_total counter" in body
    finally:
        server.close()


def test_the_server_listens_on_an_ipv6_loopback_and_keeps_localhost_on_ipv4() -> None:
    # ThreadingHTTPServer alone is IPv4: host="::1" failed with "Address family for hostname not supported".
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:  # a container with IPv6 off has no ::1 to listen on, whoever asks
        pytest.skip("this machine has no IPv6 loopback")
    reader, _, _ = _run_wave()
    v6 = MetricsServer(reader, port=0, host="::1")
    local = MetricsServer(reader, port=0, host="localhost")
    try:
        assert v6.url == f"http://[::1]:{v6.port}/metrics"
        with urllib.request.urlopen(v6.url, timeout=10) as response:
            assert "shannon_task_outcomes_total" in response.read().decode()
        # A name with an IPv4 address keeps it (scrapers are pointed at 127.0.0.1), as before.
        with urllib.request.urlopen(f"http://127.0.0.1:{local.port}/metrics", timeout=10) as response:
            assert response.status == 200
    finally:
        v6.close()
        local.close()


def test_a_port_in_use_is_refused_naming_the_address() -> None:
    reader = PrometheusReader()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"Address already in use: '127.0.0.1:{port}'") as raised:
            MetricsServer(reader, port=port)
    assert raised.value.errno == errno.EADDRINUSE and raised.value.strerror == "Address already in use"
