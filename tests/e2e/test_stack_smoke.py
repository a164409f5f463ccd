"""The bundled stack works as configured: the configs load in the real binaries, and telemetry from the
plain OpenTelemetry SDK reaches Jaeger (directly and through the collector) and Prometheus.

This proves the plumbing only; tests of the library's own telemetry build on the same fixtures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from _stack import CONFIG_DIR, REPO, get_json, wait_until
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from pathlib import Path

    from _stack import Collector, Jaeger, Prometheus
    from conftest import StackEnv
    from opentelemetry.sdk.trace.export import SpanExporter


def unique_service(kind: str) -> str:
    return f"smoke-{kind}-{uuid.uuid4().hex[:8]}"


def send_trace(exporter: SpanExporter, service: str, *, error: bool = False) -> None:
    """One SERVER span with a child, exported synchronously, provider shut down."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("smoke")
    with tracer.start_as_current_span("smoke.request", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("smoke.answer", 42)
        with tracer.start_as_current_span("smoke.step") as child:
            if error:
                child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()


def jaeger_validate(jaeger_bin: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(jaeger_bin), "validate", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["otelcol.yaml", "otelcol-tail-sampling.yaml", "jaeger.yaml"])
def test_config_validates_with_the_jaeger_binary(stack_env: StackEnv, name: str) -> None:
    proc = jaeger_validate(stack_env.jaeger_bin, CONFIG_DIR / name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_servers_are_the_pinned_version_set(stack_env: StackEnv, prometheus: Prometheus) -> None:
    # What the tests run is the set scripts/stack pins (and compose, the docs: tests/test_stack_script.py).
    status = stack_env.run("status")
    module = re.search(r"^\s+jaeger\s+(\S+) \(Go module \S+ (v[\d.]+);", status, re.MULTILINE)
    assert module, status
    assert f"({module.group(2)})" in next(ln for ln in status.splitlines() if ln.startswith("jaeger binary:"))
    built = subprocess.run([str(stack_env.jaeger_bin), "version"], capture_output=True, text=True, check=False)
    assert f'"gitVersion":"{module.group(2)}"' in built.stdout.replace(" ", "")
    pinned = re.search(r"^\s+prometheus\s+([\d.]+) ", status, re.MULTILINE)
    assert pinned, status
    info = get_json(f"{prometheus.url}/api/v1/status/buildinfo")["data"]
    assert info["version"].split("+")[0] == pinned.group(1), info


def test_jaeger_validate_rejects_an_unknown_component(stack_env: StackEnv, tmp_path: Path) -> None:
    # Guards the test above: `validate` must really resolve components, not just parse YAML.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (CONFIG_DIR / "otelcol.yaml").read_text().replace("exporters: [prometheus]", "exporters: [prometheus, nosuch]")
    )
    proc = jaeger_validate(stack_env.jaeger_bin, bad)
    assert proc.returncode != 0
    assert "nosuch" in proc.stdout + proc.stderr


def test_prometheus_config_and_rules_check(stack_env: StackEnv) -> None:
    # The committed file as docker-compose uses it (rule files included), and the copy scripts/stack runs.
    for config in (CONFIG_DIR / "prometheus.yml", stack_env.state_dir / "prometheus.check.yml"):
        if config.name == "prometheus.check.yml":
            config.write_text(stack_env.run("prometheus-config"))
        proc = subprocess.run(
            [str(stack_env.promtool_bin), "check", "config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docker_compose_sets_exactly_the_variables_the_configs_read() -> None:
    # docker-compose.yaml cannot run here (no Docker engine); this keeps it in step with the configs.
    compose = (CONFIG_DIR / "docker-compose.yaml").read_text()
    for config, prefix in (("otelcol.yaml", "SHANNON_COLLECTOR_"), ("jaeger.yaml", "SHANNON_JAEGER_")):
        read = set(re.findall(r"\$\{env:(\w+)", (CONFIG_DIR / config).read_text()))
        set_ = set(re.findall(rf"^\s+({prefix}\w+):", compose, re.MULTILINE))
        optional = {"SHANNON_COLLECTOR_SPANMETRICS_FLUSH", "SHANNON_JAEGER_MAX_TRACES", "SHANNON_JAEGER_UI_ASSETS"}
        assert set_ <= read, f"docker-compose.yaml sets variables {config} never reads"
        assert read - optional <= set_, f"docker-compose.yaml leaves {config}'s listen addresses at localhost"
    for mounted in re.findall(r"^\s+- (\.\.?/[\w./-]+):", compose, re.MULTILINE):
        assert (CONFIG_DIR / mounted).exists(), mounted


# ----------------------------------------------------------------------------- traces


def test_span_sent_to_jaeger_directly_appears_in_its_api(jaeger: Jaeger) -> None:
    service = unique_service("direct")
    send_trace(GrpcSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True), service)

    (trace,) = jaeger.wait_for_traces(service, min_spans=2)
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert set(spans) == {"smoke.request", "smoke.step"}
    assert trace["processes"][spans["smoke.request"]["processID"]]["serviceName"] == service
    assert {"key": "smoke.answer", "type": "int64", "value": 42} in spans["smoke.request"]["tags"]
    (ref,) = spans["smoke.step"]["references"]
    assert (ref["refType"], ref["spanID"]) == ("CHILD_OF", spans["smoke.request"]["spanID"])
    assert service in jaeger.services()


def test_span_sent_through_the_collector_appears_in_jaeger(jaeger: Jaeger, collector: Collector) -> None:
    service = unique_service("collector")
    send_trace(HttpSpanExporter(endpoint=f"{collector.otlp_http_endpoint}/v1/traces"), service, error=True)

    (trace,) = jaeger.wait_for_traces(service, min_spans=2)
    step = next(s for s in trace["spans"] if s["operationName"] == "smoke.step")
    assert {"key": "error", "type": "bool", "value": True} in step["tags"]


# ----------------------------------------------------------------------------- metrics


def test_metric_sent_through_the_collector_is_scraped_by_prometheus(
    collector: Collector, prometheus: Prometheus
) -> None:
    service = unique_service("metrics")
    exporter = OTLPMetricExporter(endpoint=collector.otlp_grpc_endpoint, insecure=True)
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)],
        resource=Resource.create({"service.name": service}),
    )
    meter = provider.get_meter("smoke")
    meter.create_counter("smoke.requests").add(3, {"outcome": "ok"})
    meter.create_histogram("smoke.latency", unit="s").record(0.25)
    provider.shutdown()  # exports once, now

    (sample,) = prometheus.wait_for(f'smoke_requests_total{{job="{service}"}}')
    assert sample["value"][1] == "3"
    assert sample["metric"]["outcome"] == "ok"
    assert sample["metric"]["job"] == service  # honor_labels keeps the exporter's job = service.name
    # The bundled config copies the resource attributes onto the series (resource_to_telemetry_conversion), so
    # the alert and dashboard links find service.name unchanged in service_name (job is namespace/name); constant
    # per process, they add no series. target_info keeps them too.
    assert sample["metric"]["service_name"] == service
    assert sample["metric"]["telemetry_sdk_language"] == "python"
    (info,) = prometheus.wait_for(f'target_info{{job="{service}"}}')
    assert info["metric"]["telemetry_sdk_language"] == "python"
    (count,) = prometheus.wait_for(f'smoke_latency_seconds_count{{job="{service}"}}')
    assert count["value"][1] == "1"
    wait_until(prometheus.targets_up, timeout=10, what="every scrape target up")


def docs_span_kind() -> str:
    """The span kind docs/stack.md tells users to pick in Jaeger's Monitor tab (its API spelling)."""
    found = re.findall(r"spanKind=(\w+)", (REPO / "docs" / "stack.md").read_text())
    assert found and len(set(found)) == 1, f"docs/stack.md names no single Monitor span kind: {found}"
    return str(found[0])


def test_the_demo_shows_in_the_jaeger_monitor_tab_with_the_span_kind_the_docs_name(
    jaeger: Jaeger, collector: Collector, prometheus: Prometheus
) -> None:
    # The demo's own spans (all INTERNAL) through the collector's spanmetrics connector, Prometheus and
    # Jaeger's Monitor API: what a user opening the Monitor tab as docs/stack.md says would see.
    # spanmetrics attaches exemplars only to the flush (every 1 s here) right after spans arrive, and the
    # next flush without new spans drops them again: Prometheus stores them only if a scrape falls in
    # that window. With the SDK's default 5 s batch delay the demo's spans came in 2 batches, two ~1 s
    # windows a loaded machine's scrapes could both miss; exported every 100 ms for the 6 s the demo
    # runs, they give dozens of windows.
    service = unique_service("spm-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    demo = subprocess.run(
        [sys.executable, "-m", "shannon_otel", "demo", "--duration", "6", "--tasks", "6", "--plain",
         "--otlp-endpoint", collector.otlp_grpc_endpoint, "--service-name", service],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr
    kind = docs_span_kind()
    selector = f'{{service_name="{service}", span_kind="SPAN_KIND_{kind.upper()}"}}'
    prometheus.wait_for(f"traces_span_metrics_calls_total{selector}")

    series = wait_until(
        lambda: prometheus.exemplars(f"traces_span_metrics_duration_milliseconds_bucket{selector}"),
        timeout=60,
        what="exemplars on the span duration histogram",
    )
    # Jaeger prints trace ids without leading zeros.
    trace_ids = {str(e["labels"].get("trace_id")).lstrip("0") for s in series for e in s["exemplars"]}
    assert trace_ids & {t["traceID"].lstrip("0") for t in jaeger.wait_for_traces(service)}

    def monitor(path: str, **params: object) -> list[dict[str, Any]]:
        body = get_json(
            f"{jaeger.query_url}/api/metrics/{path}",
            {"service": service, "endTs": int(time.time() * 1000), "lookback": 600_000, "step": 1000,
             "ratePer": 60_000, **params},
        )
        return [m for m in body["metrics"] if m["metricPoints"]]

    calls = wait_until(lambda: monitor("calls", spanKind=kind, groupByOperation="true"), timeout=30,
                       what=f"the demo's call rates in Jaeger's Monitor API (spanKind={kind})")
    operations = {label["value"] for m in calls for label in m["labels"] if label["name"] == "operation"}
    assert {"wave plan", "wave research", "wave write"} <= operations, operations
    assert wait_until(lambda: monitor("latencies", spanKind=kind, quantile=0.95), timeout=30,
                      what="the demo's p95 latency in Jaeger's Monitor API")
    # Why the docs name a span kind: the tab's default (SERVER) finds none of the demo's spans.
    assert monitor("calls") == []
    assert monitor("calls", spanKind="server") == []


def test_prometheus_loads_every_alert_rule(prometheus: Prometheus) -> None:
    committed = {
        name
        for path in (CONFIG_DIR / "rules").glob("*.yml")
        for name in re.findall(r"^\s*- alert:\s*\"?(\w+)", path.read_text(), re.MULTILINE)
    }
    loaded = {r["name"] for g in prometheus.rule_groups() for r in g["rules"] if r["type"] == "alerting"}
    assert committed, "no alert rules in collector-config/rules/*.yml"
    assert loaded == committed
    assert all(r["health"] != "err" for g in prometheus.rule_groups() for r in g["rules"])
