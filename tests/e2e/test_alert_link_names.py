"""The Jaeger links of oddly named services, waves and breakers: the bundled rules (`for: 0m`, one failed task
enough) rendered by the real Prometheus and the bundled dashboards' linked panels evaluated by it, each link asked
of the real Jaeger.

Names: a wave and a breaker holding what JSON escapes otherwise than Go (Go's `printf "%q"` wrote a control
character as `\\x01`, which Jaeger's JSON reading of `tags` refused: "400 malformed 'tags' parameter"); services
with and without a `service.namespace`, whose `service.name` holds a `/`, spaces, quotes or non-ASCII. `job` is
`service.namespace/service.name`: the links cut it at its last `/`, so `pay/api` (or namespace `team/shop` with
it) searched Jaeger for `api`, a service it does not know.

Two paths to Prometheus: the bundled collector (`SERVICES`), and the library's own page (`PAGE_SERVICES`:
`PrometheusReader` + `MetricsServer` scraped with honor_labels, as collector-config/prometheus.yml's `shannon-app`
job, traces straight to Jaeger), which wrote `job`/`instance` only, so its slash names searched the cut `job`."""

from __future__ import annotations

import re
import urllib.parse
import uuid
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from _prometheus import at_once, dashboard_query, firing_alerts, loaded_rules
from _stack import get_json, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from shannon_otel import CircuitBreaker, MetricsServer, PrometheusReader, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel.assets import _promql as q
from shannon_otel.assets import alert_rules, dashboards
from shannon_otel.testing import run_virtual

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _stack import Collector, Jaeger, Prometheus

pytestmark = pytest.mark.e2e
_ID = uuid.uuid4().hex[:8]
SERVICE = f"names-{_ID}"
# service.name -> service.namespace (None: unset); each is its own process' resource, so its own `job`.
SERVICES: dict[str, str | None] = {
    SERVICE: None,
    f"names-ns-{_ID}": "shop",
    f"pay/names-{_ID}": None,
    f"pay/names-both-{_ID}": "team/shop",
    f"names {_ID} \"quoted\" 'single' é ✓": None,
}
# The same kinds of names served by the library's own page, one page (one process' resource) each.
PAGE_SERVICES: dict[str, str | None] = {
    f"page-names-{_ID}": None,
    f"pay/page-names-{_ID}": None,
    f"pay/page-names-both-{_ID}": "team/shop",
}
ALL_SERVICES = SERVICES | PAGE_SERVICES
# A control character (\x01: Go quotes it \x01, JSON \u0001), a tab, quotes, a backslash, what Go's `js`
# escapes besides (<, >, &, =) and a character outside ASCII.
NAME = "odd\x01\t'\"\\<=>&é"
#: service -> alert name -> the firing alert
Firing = dict[str, dict[str, dict[str, Any]]]
FIRING = ("ShannonTaskErrorRateHigh", "ShannonCircuitBreakerOpenTooLong")


class DownError(Exception):
    """The failing dependency."""


async def _workload(providers: dict[str, Any]) -> None:
    breaker = CircuitBreaker(NAME, failure_threshold=1, reset_timeout=3600, **providers)

    async def down() -> None:
        raise DownError

    async def task() -> None:
        await breaker.call(down)

    await Wave(NAME, **providers).run([task, task])


def _job(service: str) -> str:
    namespace = ALL_SERVICES[service]
    return f"{namespace}/{service}" if namespace else service


def _resource(service: str) -> dict[str, str] | None:
    namespace = ALL_SERVICES[service]
    return {"service.namespace": namespace} if namespace else None


@contextmanager
def _pages(prometheus: Prometheus) -> Iterator[dict[str, PrometheusReader]]:
    """Service -> the reader of its page, each page scraped by the stack's Prometheus (honor_labels) for the block."""
    readers = {service: PrometheusReader() for service in PAGE_SERVICES}
    original = prometheus.config_file.read_text(encoding="utf-8")
    with ExitStack() as servers:
        ports = [servers.enter_context(_serving(reader)) for reader in readers.values()]
        jobs = "".join(f"\n  - job_name: page-{i}-{_ID}\n    honor_labels: true\n"
                       f"    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
                       for i, port in enumerate(ports))
        prometheus.config_file.write_text(original + jobs, encoding="utf-8")
        try:
            prometheus.reload()
            wait_until(lambda: all(prometheus.targets().get(f"page-{i}-{_ID}") == "up" for i in range(len(ports))),
                       what="Prometheus scraping the pages")
            yield readers
        finally:
            prometheus.config_file.write_text(original, encoding="utf-8")
            prometheus.reload()


@contextmanager
def _serving(reader: PrometheusReader) -> Iterator[int]:
    server = MetricsServer(reader, port=0)
    try:
        yield server.port
    finally:
        server.close()


@pytest.fixture(scope="module")
def firing(collector: Collector, jaeger: Jaeger, prometheus: Prometheus) -> Iterator[Firing]:
    """Service -> alert name -> its firing alert, each service's workload run under its own resource: through the
    collector, or on its own page (kept open, and so scraped, until its alerts fire)."""
    chosen = at_once(alert_rules(jaeger_url=jaeger.query_url, min_tasks=1), FIRING)
    with loaded_rules(prometheus, "link-names", chosen), _pages(prometheus) as readers, ExitStack() as open_pages:
        for service in SERVICES:
            with configure(
                service, exporter="otlp_grpc", endpoint=collector.otlp_grpc_endpoint, set_global=False,
                metric_interval_s=0.5, resource_attributes=_resource(service),
            ) as telemetry:
                providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
                run_virtual(_workload(providers))
                assert telemetry.force_flush(10)
                assert telemetry.meter_provider.force_flush(10_000)
        for service, reader in readers.items():
            telemetry = open_pages.enter_context(configure(
                service, exporter="none", metric_readers=[reader], set_global=False,
                span_exporters=[OTLPSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True)],
                resource_attributes=_resource(service),
            ))
            providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
            run_virtual(_workload(providers))
            assert telemetry.force_flush(10)
        yield {service: firing_alerts(prometheus, _job(service), FIRING) for service in ALL_SERVICES}


def _traces(jaeger: Jaeger, query: str) -> list[dict[str, Any]]:
    """The traces of Jaeger's search ``query``: get_json fails on Jaeger's 400; spans reach Jaeger in batches, so
    ask until the search finds some."""
    return wait_until(lambda: get_json(f"{jaeger.query_url}/api/traces?{query}")["data"], timeout=30,
                      what=f"traces behind {query}")


def _tags(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{t["key"]: t["value"] for t in s["tags"]} for tr in traces for s in tr["spans"]]


@pytest.mark.parametrize(("name", "attribute"), [
    ("ShannonTaskErrorRateHigh", tel.WAVE_NAME), ("ShannonCircuitBreakerOpenTooLong", tel.BREAKER_NAME),
])
def test_the_link_of_an_oddly_named_wave_or_breaker_opens_its_traces(
    jaeger: Jaeger, firing: Firing, name: str, attribute: str,
) -> None:
    alert = firing[SERVICE][name]
    assert alert["labels"][attribute.replace(".", "_")] == NAME
    url = alert["annotations"]["traces_url"]
    assert url.startswith(f"{jaeger.query_url}/search?service={SERVICE}&"), url
    assert any(t.get(attribute) == NAME for t in _tags(_traces(jaeger, url.split("?", 1)[1])))


@pytest.mark.parametrize("service", list(ALL_SERVICES))
@pytest.mark.parametrize("name", FIRING)
def test_an_alert_link_searches_the_service_name_whatever_the_job(
    jaeger: Jaeger, firing: Firing, service: str, name: str,
) -> None:
    url = firing[service][name]["annotations"]["traces_url"]
    query = url.split("?", 1)[1]
    assert urllib.parse.parse_qs(query)["service"] == [service], url
    traces = _traces(jaeger, query)
    assert {p["serviceName"] for tr in traces for p in tr["processes"].values()} == {service}


@pytest.mark.parametrize("service", list(ALL_SERVICES))
def test_a_dashboard_link_names_the_service_jaeger_knows(
    jaeger: Jaeger, prometheus: Prometheus, firing: Firing, service: str,
) -> None:
    # Each linked panel's series carry the `service` label their "Traces of ... in Jaeger" link opens. The
    # `$job` variable holds one job: Grafana writes its value into `job=~"$job"` with regex characters escaped.
    chosen = {"job": q.string(re.escape(_job(service)))}
    seen = set()
    for model in dashboards().values():
        for panel in model["panels"]:
            if panel.get("fieldConfig", {}).get("defaults", {}).get("links"):
                for target in panel["targets"]:
                    seen |= {s["metric"].get(q.SERVICE) for s in
                             prometheus.query(dashboard_query(prometheus, target["expr"], chosen))}
    assert seen == {service}
    assert service in jaeger.services()
