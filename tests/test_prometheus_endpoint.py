"""The public no-collector endpoint: the collector's names and job/instance labels, OpenMetrics with
exemplars that point at real spans, content negotiation over HTTP."""

from __future__ import annotations

import asyncio
import errno
import functools
import gzip
import http.client
import logging
import math
import os
import re
import socket
import struct
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _forked import fork_while_locked
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from test_cli_prometheus import promtool_check_metrics

from shannon_otel import MetricsServer, PrometheusReader, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel._prometheus import OPENMETRICS, TEXT, series_name
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
    # every series, the bridged task histograms too, carries the resource labels the bundled collector writes
    assert {(s.labels["job"], s.labels["instance"], s.labels["service_name"], s.labels["service_namespace"])
            for s in samples} == {("shop/endpoint-test", instance, "endpoint-test", "shop")}
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


@pytest.mark.parametrize("host", ["[::1]", "[localhost]"])
def test_a_host_in_a_urls_brackets_is_refused_naming_host(host: str) -> None:
    """``host="[::1]"`` (copied from ``http://[::1]:9464/``) failed resolving with an OSError naming ``[[::1]]:9464``;
    it is a ValueError naming ``host`` and what to give instead, raised before any resolver is asked."""
    with pytest.raises(ValueError, match=re.escape(f"host must be an address or name without the brackets of a URL, "
                                                   f"got '{host}' (give '{host[1:-1]}')")):
        MetricsServer(PrometheusReader(), port=0, host=host)


def test_a_port_in_use_on_ipv6_is_named_with_brackets() -> None:
    """The error named ``::1:9464`` (which reads as one IPv6 address, the port lost in it); it names
    ``[::1]:9464``, as the server's url does."""
    try:
        taken = socket.socket(socket.AF_INET6)
        taken.bind(("::1", 0))
    except OSError:  # a container with IPv6 off has no ::1 to listen on
        pytest.skip("no IPv6 loopback here")
    with taken:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=re.escape(f"Address already in use: '[::1]:{port}'")) as raised:
            MetricsServer(PrometheusReader(), port=port, host="::1")
    assert raised.value.filename == f"[::1]:{port}"


def _scrape(record: Any, *, openmetrics: bool = False) -> str:
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        record(provider.get_meter("user"))
        return reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()


@pytest.mark.parametrize("openmetrics", [False, True])
def test_attributes_that_sanitize_to_one_label_name_are_one_label(openmetrics: bool) -> None:
    """``a.b`` and ``a_b``, ``!`` and ``?`` (both ``_``), ``1a`` and ``key_1a``, ``job`` and ``exported_job``: a label
    name twice in one series makes Prometheus refuse the whole scrape. They are joined with ``;`` in key order (the
    OTel specification's rule), each name once; the strict parsers take the page."""
    attributes = {"a.b": 1, "a_b": 2, "!": "x", "?": "y", "1a": 3, "key_1a": 4, "job": "j", "exported_job": "e"}
    text = _scrape(lambda meter: meter.create_counter("my.requests").add(1, attributes), openmetrics=openmetrics)
    parse = text_string_to_metric_families if openmetrics else text_families
    [family] = [f for f in parse(text) if f.name.startswith("my_requests")]  # raises on a duplicate label name
    [sample] = family.samples
    assert {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope")} == {
        "a_b": "1;2", "_": "x;y", "key_1a": "3;4", "exported_job": "e;j", "job": "svc",
        "instance": sample.labels["instance"], "service_name": "svc",
    }
    if not openmetrics:
        assert promtool_check_metrics(text) == ""


@pytest.mark.parametrize("openmetrics", [False, True])
@pytest.mark.parametrize(("name", "namespace"), [
    ("pay/api", None), ("pay/api", "team/shop"), ('a "quoted"\\ name\nnext é ✓', "ns"), ("svc", None),
])
def test_every_series_names_its_service_as_the_bundled_collector_does(
    openmetrics: bool, name: str, namespace: str | None,
) -> None:
    """The page wrote ``job`` (``service.namespace/service.name``) and ``instance`` only, so the dashboards' and
    alerts' Jaeger links, which read ``service_name``, fell back to ``job`` cut at its last ``/``: ``pay/api``
    searched Jaeger for ``api``. Every series now carries ``service_name`` (and ``service_namespace`` when set),
    ``service.name`` unchanged as the bundled collector's ``resource_to_telemetry_conversion`` writes it; an
    attribute of the same name on a point becomes ``exported_service_name``, as ``job`` does; no ``target_info``."""
    resource = {"service.name": name} | ({"service.namespace": namespace} if namespace else {})
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(resource))
    try:
        meter = provider.get_meter("user")
        meter.create_counter("my.requests").add(1, {"service.name": "mine", "k": "v"})
        meter.create_histogram("my.size", unit="By").record(3)
        meter.create_up_down_counter("my.queue").add(2)
        text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    families = list(parse(text))
    samples = [s for f in families for s in f.samples]
    assert {s.name.split("_")[1] for s in samples} == {"requests", "size", "queue"}
    expected = {"service_name": name} | ({"service_namespace": namespace} if namespace else {})
    assert {tuple((k, s.labels.get(k)) for k in ("service_name", "service_namespace")) for s in samples} == {
        (("service_name", name), ("service_namespace", namespace))}, text
    assert {s.labels["job"] for s in samples} == {f"{namespace}/{name}" if namespace else name}
    [counter] = [s for s in samples if s.name.startswith("my_requests")]
    assert counter.labels["exported_service_name"] == "mine" and counter.labels["k"] == "v"
    assert expected.items() <= counter.labels.items()
    assert not any(f.name.startswith("target") for f in families)
    if not openmetrics:
        assert promtool_check_metrics(text) == ""


@pytest.mark.parametrize("openmetrics", [False, True])
def test_an_attribute_named_like_a_reserved_label_never_makes_the_scrape_invalid(openmetrics: bool) -> None:
    """A user attribute ``__name__`` became the label ``__name__``: Prometheus (and promtool) refuse the
    whole scrape ("label name is reserved"), so one attribute cost every series of the target."""
    text = _scrape(lambda meter: meter.create_counter("my.requests", unit="{request}").add(
        1, {"__name__": "evil", "__meta": "x", "ok": "y"}), openmetrics=openmetrics)
    (line,) = [line for line in text.splitlines() if line.startswith("my_requests_total{")]
    # prefixed "key" (the collector v0.139 drops the whole metric with an error: "not a valid label name")
    assert 'key__meta="x",key__name__="evil",ok="y",job="svc"' in line
    if openmetrics:
        families = {f.name: f for f in text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
        assert families["my_requests"].samples[0].labels["key__name__"] == "evil"
    else:
        assert promtool_check_metrics(text) == ""


def test_label_values_are_written_as_the_collector_writes_them() -> None:
    """Booleans were ``True``, sequences Python reprs (``('a', 1, True)``), 2.0 ``2.0``: a dashboard
    filtering ``{flag="true"}`` matched the collector's series but never this endpoint's."""
    text = _scrape(lambda meter: meter.create_counter("my.requests", unit="{request}").add(
        1, {"flag": True, "off": False, "tags": ("a", 1, True, 2.5), "ratio": 2.0, "half": 0.5, "n": 3}))
    (line,) = [line for line in text.splitlines() if line.startswith("my_requests_total{")]
    assert line.startswith(
        'my_requests_total{flag="true",half="0.5",n="3",off="false",ratio="2",tags="[\\"a\\",1,true,2.5]",')
    assert promtool_check_metrics(text) == ""
    # whatever else the SDK lets through still renders (bytes in base64 as the collector writes them)
    text = _scrape(lambda meter: meter.create_counter("my.requests", unit="{request}").add(
        1, {"raw": b"x", "nested": {"a": 1}, "odd": (b"a", float("nan")), "nan": float("nan")}))
    (line,) = [line for line in text.splitlines() if line.startswith("my_requests_total{")]
    assert line.startswith('my_requests_total{nan="NaN",nested="{\\"a\\":1}",odd="[\\"YQ==\\",\\"nan\\"]",raw="eA==",')


def test_labels_are_the_collectors_for_a_leading_digit_and_every_series_names_its_scope() -> None:
    """Compared with the collector's exporter (v0.139, run on the same points): a key starting with a digit
    became ``_1digit`` (the collector: ``key_1digit``), and the ``otel_scope_name`` / ``otel_scope_version``
    / ``otel_scope_schema_url`` labels it adds to every series were missing, so one metric name made by two
    scopes (two libraries' ``http.requests``) was the same series twice, and Prometheus kept one of them."""

    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        provider.get_meter("lib.a", "1.0").create_counter("my.requests", unit="{request}").add(1, {"1digit": "v"})
        provider.get_meter("lib.b").create_counter("my.requests", unit="{request}").add(2, {"1digit": "v"})
        text = reader.scrape(openmetrics=True)
    finally:
        provider.shutdown()
    (family,) = [f for f in text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
                 if f.name == "my_requests"]
    got = {(s.labels["otel_scope_name"], s.labels["otel_scope_version"], s.labels["key_1digit"], s.value)
           for s in family.samples}
    assert got == {("lib.a", "1.0", "v", 1.0), ("lib.b", "", "v", 2.0)}


@pytest.mark.parametrize(("unit", "kind", "name"), [
    ("ms", "histogram", "my_latency_milliseconds"),
    ("By", "counter", "my_latency_bytes_total"),
    ("By/s", "gauge", "my_latency_bytes_per_second"),
    ("1/s", "gauge", "my_latency_per_second"),
    ("{request}/s", "counter", "my_latency_per_second_total"),
    ("%", "gauge", "my_latency_percent"),
    ("Cel", "gauge", "my_latency_celsius"),
])
def test_a_user_metric_gets_the_unit_suffix_the_collector_gives_it(unit: str, kind: str, name: str) -> None:
    """The unit was appended as written (``my_latency_ms``, ``..._By_s`` once sanitized): the endpoint
    promises the collector's names, and the collector writes ``milliseconds``, ``bytes_per_second``."""

    def record(meter: Any) -> None:
        if kind == "histogram":
            meter.create_histogram("my.latency", unit=unit).record(1.0)
        elif kind == "counter":
            meter.create_counter("my.latency", unit=unit).add(1)
        else:
            meter.create_gauge("my.latency", unit=unit).set(1.0)

    text = _scrape(record)
    assert f"# TYPE {name} {kind}\n" in text


@pytest.mark.parametrize(("name", "unit", "kind", "series"), [
    ("my.total", "", "counter", "my_total"),
    ("http.requests_total", "", "counter", "http_requests_total"),
    ("req.total.count", "", "counter", "req_count_total"),
    ("a..b__c", "", "counter", "a_b_c_total"),
    ("ratio.of.cpu", "1", "gauge", "of_cpu_ratio"),
    ("bytes.per.second", "By/s", "gauge", "bytes_per_second"),
    ("mem.seconds.used", "s", "gauge", "mem_seconds_used"),
])
def test_a_user_metric_name_gets_the_collectors_total_ratio_and_unit_rules(
    name: str, unit: str, kind: str, series: str,
) -> None:
    """``http.requests_total`` became ``http_requests_total_total`` (the collector: ``http_requests_total``),
    ``a..b__c`` ``a__b__c_total``; each expectation is what the collector's exporter (v0.139) wrote."""
    assert series_name(name, unit, kind) == series


@pytest.mark.parametrize(("name", "unit", "kind", "series"), [
    ("x", "s.", "gauge", "x_s"),  # was x_s_
    ("x", "_total", "counter", "x_total"),  # was x__total_total
    ("x", ".", "counter", "x_total"),  # was x___total
    ("x", "-s", "gauge", "x_s"),  # was x__s
    ("x", "m.s/s.", "gauge", "x_m_s_per_s"),  # was x_m_s_per_s_
    ("x", "req}", "gauge", "x"),  # an annotation, as "{req}" (the collector drops either brace): was x_req_
    ("x.m.s", "m.s", "gauge", "x_m_s"),  # the name holds the unit already: was x_m_s_m_s
    ("x.km", "km/h", "gauge", "x_km_per_hour"),
    ("x", "\u00b5s", "histogram", "x_microseconds"),  # micro sign: was x_s, read as seconds
    ("x", "\u03bcs/ms", "gauge", "x_microseconds_per_ms"),  # Greek mu: was x_s_per_ms
])
def test_a_unit_never_leaves_a_stray_underscore_or_a_second_suffix(name: str, unit: str, kind: str,
                                                                    series: str) -> None:
    """A unit appended as written made names with a trailing or doubled ``_`` (``x_s_``, ``x__total_total``):
    each unit word is cleaned to its letters and digits (the collector's ``CleanUpString``), and a name that
    already holds the unit's words in a row gets no second copy (the specification's "unless the metric
    name already contains the unit")."""
    assert series_name(name, unit, kind) == series
    assert re.fullmatch(r"[a-zA-Z_:]+(_[a-zA-Z0-9:]+)*", series)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(attributes=st.dictionaries(st.text(max_size=12), _VALUES, max_size=6))
def test_any_attributes_the_sdk_passes_render_a_valid_exposition(attributes: dict[str, Any]) -> None:
    """Whatever a user's own instrument records, every scrape renders and parses (both formats)."""
    for openmetrics in (False, True):
        text = _scrape(lambda meter: meter.create_counter("my.requests").add(1, attributes), openmetrics=openmetrics)
        parse = text_string_to_metric_families if openmetrics else text_families
        families = list(parse(text))  # raises on an invalid exposition
        assert any(f.name.startswith("my_requests") for f in families)


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_label_value_with_a_lone_surrogate_never_fails_the_scrape(openmetrics: bool) -> None:
    """A user's attribute holding a path decoded with ``surrogateescape`` (``os.fsdecode(b"/data/\\xff")``,
    what ``os.listdir`` gives for a file name that is not UTF-8) made every scrape fail: the page could not
    be encoded as UTF-8, the server closed the connection without an answer and the target went down with
    all its series (the library's own names refuse such text where given). It is written as U+FFFD."""
    name = os.fsdecode(b"/data/\xff")
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    server = MetricsServer(reader, port=0)
    try:
        async def one() -> int:
            return 1

        asyncio.run(Wave[int]("w", meter_provider=provider).run([one]))
        provider.get_meter("user", "1\udcff").create_counter("my.requests", description="of \udcff").add(1, {"k": name})
        request = urllib.request.Request(server.url, headers={
            "Accept": "application/openmetrics-text" if openmetrics else "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
        provider.shutdown()
    assert 'my_requests_total{k="/data/\ufffd",job="svc",' in text and 'otel_scope_version="1\ufffd"' in text
    assert "# HELP my_requests_total of \ufffd" in text or "# HELP my_requests of \ufffd" in text
    parse = text_string_to_metric_families if openmetrics else text_families
    assert {"shannon_task_outcomes", "my_requests"} <= {f.name for f in parse(text)}
    if not openmetrics:
        assert promtool_check_metrics(text) == ""


def _get(server: MetricsServer, method: str = "GET", accept: str | None = None) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, "/metrics", headers={"Accept": accept} if accept is not None else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("accept", "openmetrics"), [
    # Prometheus with scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0] prefers text: it got OpenMetrics
    ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4", False),
    ("application/openmetrics-text;q=0,text/plain", False),  # q=0 is "not acceptable": it got OpenMetrics
    ("Application/OpenMetrics-Text; Version=1.0.0", True),  # media types are case-insensitive: it got text
    ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;"
     "version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,"
     "*/*;q=0.2", True),  # what Prometheus 3 sends by default
    ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", True),
    ("application/openmetrics-text;q=0.5,*/*;q=0.5", True),
    ("application/openmetrics-text;q=oops,text/plain;q=0.1", False),
    ("*/*", False),
    (None, False),
])
def test_the_format_follows_the_accept_headers_weights(accept: str | None, openmetrics: bool) -> None:
    server = MetricsServer(PrometheusReader(), port=0)
    try:
        status, content_type, _ = _get(server, accept=accept)
    finally:
        server.close()
    assert status == 200
    assert content_type == (OPENMETRICS if openmetrics else TEXT)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_a_method_the_page_does_not_allow_is_405_with_the_allow_header(method: str) -> None:
    """A POST (a misconfigured pusher, a health check set to POST) got 501 "Unsupported method", which says the server
    does not know the method at all; RFC 9110 answers a known method the resource refuses with 405 and ``Allow``."""
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request(method, "/metrics", body=b"x=1" if method in ("POST", "PUT", "PATCH") else None)
            response = connection.getresponse()
            assert (response.status, response.getheader("Allow"), response.read()) == (405, "GET, HEAD", b"")
        finally:
            connection.close()
        assert _get(server, "FOO")[0] == 501  # a method HTTP does not define: not implemented, as before
        assert _get(server)[0] == 200  # the server goes on serving
    finally:
        server.close()


def test_head_answers_with_the_get_headers_and_no_body() -> None:
    """``curl -I`` (an operator checking the endpoint, a load balancer's health check) got 501."""
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    try:
        status, content_type, body = _get(server, "HEAD")
        assert (status, content_type, body) == (200, TEXT, b"")
        assert _get(server)[0] == 200
    finally:
        server.close()


@pytest.mark.parametrize(("target", "status"), [
    ("/metrics", 200), ("/", 200), ("/metrics?format=x", 200), ("/metrics#top", 200),
    ("http://127.0.0.1/metrics", 200),  # absolute form (RFC 9112 3.2.2: a server MUST accept it): got 404
    ("http://127.0.0.1/metrics?x=1", 200), ("/other", 404), ("http://127.0.0.1/other", 404), ("/metrics/x", 404),
    ("http://[/metrics", 400),  # a target urlsplit refuses: an answer, not a dropped connection
])
def test_the_page_is_served_for_any_form_of_the_metrics_target(target: str, status: int) -> None:
    server = MetricsServer(PrometheusReader(), port=0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            first = client.makefile("rb").readline()
    finally:
        server.close()
    assert first.split()[1] == str(status).encode(), first


def test_close_ends_a_connection_that_never_sent_its_request() -> None:
    """A client that connects and sends nothing kept its handler thread and the socket open for good,
    also after close(); other scrapes must not wait on it meanwhile."""
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    stalled = socket.create_connection(("127.0.0.1", server.port))
    try:
        # Accepted in order: once this later scrape is answered, the stalled connection is being served.
        assert _get(server)[0] == 200
        server.close()
        server.close()  # a second close does nothing
        stalled.settimeout(10)
        assert stalled.recv(1) == b"", "the server ended the stalled connection"
    finally:
        stalled.close()
        server.close()


class _HeldReader(PrometheusReader):
    """A reader whose scrape waits for the test: the scraper can leave before the answer is written."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()
        self.answer = threading.Event()

    def scrape(self, *, openmetrics: bool = False) -> str:
        self.asked.set()
        assert self.answer.wait(10)
        return "x 1\n" * 100_000


def test_a_scraper_that_leaves_mid_answer_prints_no_traceback(capfd: pytest.CaptureFixture[str],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Prometheus giving up at its scrape timeout (or ``curl`` stopped) printed socketserver's traceback
    (ConnectionResetError) on the application's stderr at every such scrape."""
    reader = _HeldReader()
    server = MetricsServer(reader, port=0)
    before = set(threading.enumerate())
    try:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.asked.wait(10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, as a scraper that timed out
        reader.answer.set()
        for thread in set(threading.enumerate()) - before:
            if "process_request" in thread.name:
                thread.join(10)
    finally:
        server.close()
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("openmetrics", [False, True])
def test_two_metrics_claiming_one_family_name_never_invalidate_the_page(openmetrics: bool) -> None:
    """A counter ``jobs`` and a gauge ``jobs`` (two libraries' scopes) were two OpenMetrics families named
    ``jobs``: the strict parser (and Prometheus, which asks for OpenMetrics) refused the whole page, so
    every series of the target was lost. Same for a gauge ``lat_count`` beside a histogram ``lat``."""
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        provider.get_meter("a").create_counter("jobs").add(1)
        provider.get_meter("b").create_gauge("jobs").set(3)
        provider.get_meter("a").create_histogram("lat").record(1)
        provider.get_meter("b").create_gauge("lat_count").set(7)
        provider.get_meter("a").create_counter("ok").add(1)
        text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    families = {f.name: f.type for f in parse(text)}
    assert families["ok"] == "counter" and families["lat"] == "histogram"
    assert families["jobs"] == ("counter" if openmetrics else "gauge")
    if not openmetrics:  # promtool lints OpenMetrics counters as having no help text: text format only
        assert promtool_check_metrics(text) == ""


def test_close_in_a_forked_child_returns_and_leaves_the_parent_serving(tmp_path: Path) -> None:
    """close() in a forked child (a worker cleaning up what it inherited) waited for a serving thread
    that exists only in the parent: the child hung for good."""
    result = fork_while_locked(tmp_path, """
        import threading, urllib.request
        from shannon_otel import MetricsServer, PrometheusReader
        server = MetricsServer(PrometheusReader(), port=0)
        lock = threading.Lock()
    """, """
        server.close()
        server.close()
        with urllib.request.urlopen(server.url, timeout=10) as response:  # the parent's, still serving
            assert response.status == 200
    """)
    assert result == {"hung": False, "status": 0}


@pytest.mark.parametrize("openmetrics", [False, True])
def test_two_metrics_of_two_kinds_with_one_series_name_keep_the_first(openmetrics: bool) -> None:
    """A gauge ``lat_seconds`` beside a histogram ``lat`` of unit ``s`` (and a gauge ``x_total`` beside a
    counter ``x``) have one series name: the second's samples were written under the first's TYPE (a
    gauge sample in a histogram family, which the strict OpenMetrics parser refuses with the whole page;
    a gauge value as a second sample of the counter's series). The first metric is kept, alone."""
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        provider.get_meter("a").create_histogram("lat", unit="s").record(1)
        provider.get_meter("a").create_gauge("lat_seconds").set(3)
        provider.get_meter("a").create_counter("x").add(1)
        provider.get_meter("a").create_gauge("x_total").set(5)
        text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    families = {f.name: f for f in parse(text)}
    histogram = families["lat_seconds"]
    assert histogram.type == "histogram"
    assert {s.name for s in histogram.samples} == {"lat_seconds_bucket", "lat_seconds_sum", "lat_seconds_count"}
    counter = families["x"]
    assert counter.type == "counter" and [s.value for s in counter.samples] == [1]
    if not openmetrics:
        assert promtool_check_metrics(text) == ""


def test_a_scrape_that_raises_answers_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK raises ``MetricsTimeoutError`` from ``collect()`` when observable callbacks outrun its
    timeout: the server closed the connection without any answer (Prometheus: "EOF", as if the app had
    died). It answers 500 naming the error class, and logs the error."""
    from opentelemetry.sdk.metrics._internal.exceptions import MetricsTimeoutError

    class Failing(PrometheusReader):
        def scrape(self, *, openmetrics: bool = False) -> str:
            raise MetricsTimeoutError("Timed out while executing callback")

    server = MetricsServer(Failing(), port=0)
    try:
        for method in ("GET", "HEAD"):
            with pytest.raises(urllib.error.HTTPError) as raised:
                urllib.request.urlopen(urllib.request.Request(server.url, method=method), timeout=10)
            with raised.value as answer:
                assert answer.code == 500
                assert method == "HEAD" or b"MetricsTimeoutError" in answer.read()
    finally:
        server.close()
    assert [r.levelno for r in caplog.records if "failed to collect" in r.getMessage()] == [logging.WARNING] * 2


@pytest.mark.parametrize("openmetrics", [False, True])
def test_two_metrics_of_one_kind_and_series_name_never_write_one_series_twice(
    openmetrics: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """``jobs.done`` and ``jobs_done`` are one Prometheus name: both metrics' points went into one family,
    so ``jobs_done_total{...}`` was written twice, 1 and 5, and Prometheus 2.42 silently kept the first.
    Now a series holds the first point only; the others of the family stay, and what is left out is logged
    once (the OTel specification: "the exporter SHOULD warn the user"), not at every scrape."""
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("user")
        meter.create_gauge("queue.depth", description="first").set(1.0, {"k": "v"})
        second = meter.create_gauge("queue_depth", description="second")
        second.set(2.0, {"k": "v"})
        second.set(3.0, {"k": "w"})
        meter.create_counter("jobs.done").add(1)
        meter.create_counter("jobs_done").add(5)
        meter.create_histogram("work.time").record(1.0)
        meter.create_histogram("work_time").record(2.0)
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            text = reader.scrape(openmetrics=openmetrics)
            assert reader.scrape(openmetrics=openmetrics) == text
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    samples = [(s.name, tuple(sorted(s.labels.items())), s.value) for f in parse(text) for s in f.samples]
    series = [(name, labels) for name, labels, _ in samples]
    assert len(series) == len(set(series)), text
    values = {(name, dict(labels).get("k")): value for name, labels, value in samples}
    assert values[("queue_depth", "v")] == 1.0 and values[("queue_depth", "w")] == 3.0
    assert values[("jobs_done_total", None)] == 1.0
    assert values[("work_time_sum", None)] == 1.0
    assert text.count("# HELP queue_depth first\n") == 1 and "second" not in text
    if not openmetrics:
        assert promtool_check_metrics(text) == ""
    logged = [r.getMessage() for r in caplog.records]
    for metric in ("queue_depth", "jobs_done", "work_time"):
        assert sum(f"points of metric {metric!r}" in m for m in logged) == 1, logged
    assert sum("description of metric 'queue_depth'" in m for m in logged) == 1, logged


@pytest.mark.parametrize(("accept_encoding", "gzipped"), [
    ("gzip", True),  # what Prometheus sends
    ("identity;q=0.5, GZIP", True),
    ("*", True),
    ("x-gzip", True),
    ("gzip;q=0, *", False),
    ("gzip;q=0", False),
    ("br", False),
    ("", False),
])
def test_the_page_is_gzipped_when_the_scraper_takes_gzip(accept_encoding: str, gzipped: bool) -> None:
    """Prometheus asks for ``Accept-Encoding: gzip`` at every scrape and got the page uncompressed (a page
    of many series is ~10x larger). The body decompresses to the very page an identity request gets."""
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            bodies: list[tuple[str | None, bytes]] = []
            for asked in (accept_encoding, "identity"):
                connection.request("GET", "/metrics", headers={"Accept-Encoding": asked})
                response = connection.getresponse()
                body = response.read()
                assert response.status == 200 and int(response.getheader("Content-Length") or -1) == len(body)
                assert "Accept-Encoding" in (response.getheader("Vary") or "")
                bodies.append((response.getheader("Content-Encoding"), body))
            connection.request("HEAD", "/metrics", headers={"Accept-Encoding": accept_encoding})
            head = connection.getresponse()
            assert head.read() == b"" and head.getheader("Content-Encoding") == bodies[0][0]
        finally:
            connection.close()
    finally:
        server.close()
    (encoding, body), (plain_encoding, plain) = bodies
    assert plain_encoding is None and b"shannon_task_duration_seconds_bucket{" in plain
    assert encoding == ("gzip" if gzipped else None)
    assert (gzip.decompress(body) if gzipped else body) == plain


def test_a_client_trickling_its_request_is_dropped_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket's timeout applied to each read afresh: a client sending a header line every 29 s held its
    thread for ~50 min, one byte every 29 s for days. The whole request must now arrive within 30 s of the
    connection (a fake clock here: the server reads it when the connection starts and before each read)."""
    import shannon_otel._prometheus as prometheus

    clock = [0.0]
    read = threading.Event()

    def now() -> float:
        read.set()
        return clock[0]

    monkeypatch.setattr(prometheus, "_now", now)
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            read.wait(10)  # the connection's deadline is set (by the fix): 30 s from clock 0
            clock[0] = 31.0
            try:
                client.sendall(b"GET /metrics HTTP/1.0\r\nX-Trickle: 1\r\n")
                ended = client.recv(1)
            except ConnectionResetError:
                ended = b""
            assert ended == b"", "the server ended the connection past its deadline, before the request was whole"
    finally:
        server.close()


def test_connections_past_the_cap_get_a_503_at_once_not_a_thread_each(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Every connection held a thread until its request was answered or it timed out: 200 idle connections
    were 200 threads (10,000 would be 10,000). Past the cap, a connection is answered 503 on the accepting
    thread without reading its request, and that is logged once."""
    import shannon_otel._prometheus as prometheus

    monkeypatch.setattr(prometheus, "_MAX_CONNECTIONS", 2)
    reader, _, _ = _run_wave()
    server = MetricsServer(reader, port=0)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            for _ in range(2):  # accepted in order: the idle two are being served when these come
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
                    assert extra.makefile("rb").readline().split()[1] == b"503"
        assert sum("answers 503" in r.getMessage() for r in caplog.records) == 1, caplog.records
    finally:
        for connection in idle:
            connection.close()
        server.close()


def test_the_notes_of_what_the_page_leaves_out_stay_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each distinct note ("points of metric 'jobs7.done' ...") was kept in the reader for good, to be logged
    once: one per metric name, without bound. Past the cap, one warning says no more are logged."""
    import shannon_otel._prometheus as prometheus

    monkeypatch.setattr(prometheus, "_MAX_WARNED", 3)
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("user")
        for i in range(6):  # one Prometheus name for two metrics: one note each pair
            meter.create_counter(f"jobs{i}.done").add(1)
            meter.create_counter(f"jobs{i}_done").add(5)
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            reader.scrape()
            reader.scrape()
    finally:
        provider.shutdown()
    logged = [r.getMessage() for r in caplog.records]
    assert sum("leaves out points of metric" in m for m in logged) == 3, logged
    assert sum("from now on is not logged" in m for m in logged) == 1, logged
    assert len(reader._warned) == 4


@pytest.mark.parametrize("first_the_counter", [True, False])
def test_a_gauge_named_like_a_counters_created_series_never_invalidates_openmetrics(first_the_counter: bool) -> None:
    """OpenMetrics reserves ``<name>_created`` of a counter or histogram: a gauge ``jobs_created`` beside a counter
    ``jobs`` (or ``lat_created`` beside a histogram ``lat``) made the strict parser refuse the whole page ("Clashing
    name"), though the page writes no ``_created`` series. The first of the two is kept; text format keeps both."""
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("user")
        if first_the_counter:
            meter.create_counter("jobs").add(1)
            meter.create_histogram("lat").record(1)
        meter.create_gauge("jobs_created").set(7)
        meter.create_gauge("lat_created").set(8)
        if not first_the_counter:
            meter.create_counter("jobs").add(1)
            meter.create_histogram("lat").record(1)
        meter.create_gauge("ok").set(1)
        texts = {openmetrics: reader.scrape(openmetrics=openmetrics) for openmetrics in (False, True)}
    finally:
        provider.shutdown()
    strict = text_string_to_metric_families(texts[True])  # type: ignore[no-untyped-call]
    families = {f.name: f.type for f in strict}  # raises on a clash
    kept = {"jobs": "counter", "lat": "histogram"} if first_the_counter else {"jobs_created": "gauge",
                                                                             "lat_created": "gauge"}
    assert families == kept | {"ok": "gauge"}
    assert {f.name for f in text_families(texts[False])} == {"jobs", "lat", "jobs_created", "lat_created", "ok"}
    assert promtool_check_metrics(texts[False]) == ""


def test_a_negative_observable_counter_never_invalidates_openmetrics(caplog: pytest.LogCaptureFixture) -> None:
    """An observable counter whose callback returns a negative total (the SDK passes it) was written as a negative
    ``_total``: OpenMetrics forbids one, and the strict parser refused the whole page with every other series. The
    point is left out of OpenMetrics, and said once; text format 0.0.4, which allows it, keeps it."""
    from opentelemetry.metrics import Observation

    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("user")
        meter.create_observable_counter("drift", [lambda _: [Observation(-5, {"k": "a"}), Observation(3, {"k": "b"})]])
        meter.create_gauge("ok").set(1)
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            om = reader.scrape(openmetrics=True)
            assert reader.scrape(openmetrics=True) == om
            text = reader.scrape()
    finally:
        provider.shutdown()
    strict = text_string_to_metric_families(om)  # type: ignore[no-untyped-call]
    samples = {(s.name, s.labels.get("k")): s.value for f in strict for s in f.samples}
    assert samples == {("drift_total", "b"): 3, ("ok", None): 1}
    assert {(s.name, s.labels.get("k")): s.value for f in text_families(text) for s in f.samples} == samples | {
        ("drift_total", "a"): -5}
    assert sum("metric 'drift': a negative value" in r.getMessage() for r in caplog.records) == 1, caplog.records


def test_an_exponential_histogram_left_out_is_said(caplog: pytest.LogCaptureFixture) -> None:
    """A user's View making a histogram exponential: neither text format can hold it, and the page left it out
    without a word (every other thing the page leaves out is logged once)."""
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}),
                             views=[View(instrument_name="lat", aggregation=ExponentialBucketHistogramAggregation())])
    try:
        meter = provider.get_meter("user")
        meter.create_histogram("lat").record(1.5)
        meter.create_gauge("ok").set(1)
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            text = reader.scrape()
            reader.scrape(openmetrics=True)
    finally:
        provider.shutdown()
    assert {f.name for f in text_families(text)} == {"ok"}
    logged = [r.getMessage() for r in caplog.records]
    assert sum("metric 'lat' (an exponential histogram)" in m for m in logged) == 1, logged


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_bool_or_fraction_value_is_written_as_a_number(openmetrics: bool) -> None:
    """The SDK passes on what the user's code gives: ``gauge.set(True)`` (an observable gauge's ``Observation(flag)``)
    was written ``True`` and a ``Fraction`` ``1/3``; Prometheus (and promtool, and the strict parser) refused the
    whole page, every series of the target. A bool is ``1``/``0``; any other number is written as a float."""
    from fractions import Fraction

    from opentelemetry.metrics import Observation

    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("user")
        meter.create_gauge("healthy").set(True)
        meter.create_observable_gauge("enabled", [lambda _: [Observation(False)]])
        meter.create_gauge("share").set(Fraction(1, 4))  # type: ignore[arg-type]  # what untyped code passes
        meter.create_histogram("part", explicit_bucket_boundaries_advisory=[0.5]).record(Fraction(1, 3))  # type: ignore[arg-type]
        meter.create_counter("big").add(2**70)
        text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    values = {s.name: s.value for f in parse(text) for s in f.samples if "le" not in s.labels}  # raises if invalid
    assert values == {"healthy": 1, "enabled": 0, "share": 0.25, "part_sum": 1 / 3, "part_count": 1,
                      "big_total": 2**70}
    assert "big_total{" in text and f"}} {2**70}\n" in text  # an integer stays exact
    if not openmetrics:
        assert promtool_check_metrics(text) == ""


@pytest.mark.parametrize("openmetrics", [False, True])
def test_an_int_attribute_past_pythons_text_limit_never_fails_the_scrape(openmetrics: bool) -> None:
    """The SDK keeps an int attribute of any size: one past Python's limit for decimal text (4300 digits), alone or in
    a sequence, raised ValueError out of the render, and every scrape of the page failed (500). The int is written in
    its exact digits; a sequence holding one as its type's name (no JSON text of it can be made)."""
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("user")
        meter.create_counter("jobs").add(1, {"n": 10**5000, "o": (1, 10**5000)})
        meter.create_counter("calls").add(2)
        text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    samples = {s.name: s for f in parse(text) for s in f.samples}  # raises if invalid
    assert samples["calls_total"].value == 2 and samples["jobs_total"].value == 1
    assert samples["jobs_total"].labels["n"] == "1" + "0" * 5000
    assert samples["jobs_total"].labels["o"] == "<tuple>"


@pytest.mark.parametrize("openmetrics", [False, True])
def test_an_integer_sum_past_floats_range_never_invalidates_the_page(openmetrics: bool) -> None:
    """The SDK refuses one measurement past float's range but sums integers as integers: a counter (a histogram's
    sum) added 1e308 twice held an int of 309 digits, written exactly, and Prometheus (promtool, the strict parser)
    refused the whole page ("expected float as value"); a ``Fraction`` sum past it was ``NaN``. As a float either is
    infinite: ``+Inf`` / ``-Inf``."""
    from fractions import Fraction

    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        meter = provider.get_meter("user")
        counter, histogram = meter.create_counter("huge"), meter.create_histogram("size")
        owed, share = meter.create_up_down_counter("owed"), meter.create_histogram("share")
        for _ in range(2):
            counter.add(10**308)
            histogram.record(10**308)
            owed.add(-(10**308))
            share.record(Fraction(10**308))  # type: ignore[arg-type]  # what untyped code passes
        meter.create_counter("calls").add(2**70)
        text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    values = {s.name: s.value for f in parse(text) for s in f.samples if "le" not in s.labels}  # raises if invalid
    assert values == {"huge_total": math.inf, "size_sum": math.inf, "size_count": 2, "owed": -math.inf,
                      "share_sum": math.inf, "share_count": 2, "calls_total": 2**70}
    assert f"}} {2**70}\n" in text  # an integer within range stays exact
    if not openmetrics:
        assert promtool_check_metrics(text) == ""


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_metric_with_no_prometheus_name_left_never_invalidates_the_page(
    openmetrics: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """A View may name a metric anything: ``"é"`` sanitized to an empty name, and ``# HELP  é`` with samples of no
    name made Prometheus, promtool and the strict parsers refuse the whole page. The metric is left out, and said."""
    from opentelemetry.sdk.metrics.view import View

    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}),
                             views=[View(instrument_name="temp", name="é"), View(instrument_name="lat", name="ñ.ü"),
                                    View(instrument_name="ok")])
    try:
        meter = provider.get_meter("user")
        meter.create_gauge("temp").set(20)
        meter.create_histogram("lat").record(1)
        meter.create_gauge("ok").set(1)
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            text = reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()
    parse = text_string_to_metric_families if openmetrics else text_families
    assert {f.name for f in parse(text)} == {"ok"}
    if not openmetrics:
        assert promtool_check_metrics(text) == ""
    logged = [r.getMessage() for r in caplog.records]
    for name in ("é", "ñ.ü"):
        assert sum(f"metric {name!r}: no Prometheus name" in m for m in logged) == 1, logged
