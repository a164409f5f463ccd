"""Adversarial probes, second round, of the telemetry and backends a user sees: the Prometheus endpoint
fed by a user's own instruments (compared with the collector's exporter on the same points), the anomaly
hook under a stepping clock, the detector's block inputs and threads, delivery (flushes against a silent
backend, held-back log repeats), the metrics bridge, shared-state telemetry, worker set-up.
Each test failed before its fix (or is a strict xfail naming a known limit)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from test_cli_prometheus import promtool_check_metrics

from shannon_otel import (
    AnomalyDetector,
    AnomalyHook,
    CircuitBreaker,
    CircuitOpenError,
    PrometheusReader,
    Wave,
    _clock,
    bridged,
    configure,
)
from shannon_otel import _telemetry as tel
from shannon_otel._events import TaskFinished, WaveStarted
from shannon_otel._prometheus import series_name
from shannon_otel._telemetry import Outcome
from shannon_otel.anomaly import LATENCY, THROUGHPUT, Anomaly, DetectorConfig


def _scrape(record: Any, *, openmetrics: bool = False) -> str:
    reader = PrometheusReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    try:
        record(provider.get_meter("user"))
        return reader.scrape(openmetrics=openmetrics)
    finally:
        provider.shutdown()


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


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _feed(hook: AnomalyHook, ticks: int, *, step: float, clocks: tuple[_Clock, ...], jump: float) -> None:
    """One run of ``2 * ticks`` one-second ticks of 16 tasks of ~0.1 s (a steady 16 tasks/s), every clock
    advancing; after ``ticks`` ticks the first clock steps by ``jump`` seconds (mid-run: between runs the
    idle time is not part of a tick anyway)."""
    observer = hook.wave_started(WaveStarted("w", None, None, 0.0))
    assert observer is not None
    for i in range(16 * 2 * ticks):
        if i == 16 * ticks:
            clocks[0].now += jump
        for clock in clocks:
            clock.now += step
        observer.task_finished(None, TaskFinished(wave="w", index=i, name="t", outcome=Outcome.SUCCESS,
                                                  duration_s=0.1 + 0.01 * ((i * 7) % 5)))
    observer.wave_finished(None)  # type: ignore[arg-type]  # the hook reads no report


def test_a_wall_clock_stepped_forward_raises_no_false_throughput_anomaly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default (wall) clock, an NTP step or a resumed VM stretched the open tick over the step:
    16 tasks "in" an hour read as a throughput fall, a critical anomaly on a healthy wave."""
    wall, mono = _Clock(1_700_000_000.0), _Clock(100.0)
    monkeypatch.setattr(_clock, "wall", wall)
    monkeypatch.setattr(_clock, "monotonic", mono)
    seen: list[Anomaly] = []
    hook = AnomalyHook(on_anomaly=seen.append, tick_s=1.0, clock=_clock.wall, signals=[THROUGHPUT])
    _feed(hook, 50, step=1 / 16, clocks=(wall, mono), jump=3600.0)  # the system clock steps; not the monotonic
    assert seen == []
    assert hook.detector.last_score(f"{THROUGHPUT}\x00w") is not None  # the ticks were scored
    assert hook.detector.stats.series == 1


def test_a_clock_stepped_back_keeps_the_hook_scoring() -> None:
    """Stepped back an hour mid-run, the open tick waited for its old end: the hook scored nothing for an hour."""
    clock, seen, scored = _Clock(1_000_000.0), list[Anomaly](), list[float]()
    hook = AnomalyHook(on_anomaly=seen.append, tick_s=1.0, clock=clock, signals=[LATENCY, THROUGHPUT])
    update = hook.detector.update

    def spy(series: str, value: float, time: float) -> float | None:
        scored.append(time)
        return update(series, value, time)

    hook.detector.update = spy  # type: ignore[method-assign]
    _feed(hook, 50, step=1 / 16, clocks=(clock,), jump=-3600.0)
    after_step = [t for t in scored if t < 1_000_000.0]
    assert len(after_step) >= 2 * 48  # about one sample per signal and second after the step too
    assert seen == []  # and the tick restarted at the step reads the same 16 tasks/s, not one task more


@pytest.mark.parametrize("bad", [["1.5", "2"], [None, 1.0], [b"1", b"2"]])
def test_update_many_refuses_what_update_refuses(bad: list[Any]) -> None:
    """numpy parsed strings as numbers and made None NaN: ``update_series("s", ["1.5", ...])`` scored
    where ``update("s", "1.5", t)`` raises TypeError (the docs: "equivalent to calling update")."""
    det = AnomalyDetector(DetectorConfig(min_history=3))
    with pytest.raises(TypeError, match="values must be an array of real numbers"):
        det.update_series("s", bad, [0.0, 1.0])
    with pytest.raises(TypeError, match="times must be an array of real numbers"):
        det.update_series("s", [1.0, 2.0], bad)
    with pytest.raises(TypeError, match="value must be a real number"):
        det.update("s", bad[0], 0.0)
    assert det.stats.series == 0


def test_update_many_names_the_parameter_of_a_number_beyond_any_float() -> None:
    """It raised Python's bare ``OverflowError: int too large to convert to float``."""
    det = AnomalyDetector()
    with pytest.raises(ValueError, match="values must be real numbers within the range of a float"):
        det.update_series("s", [1, 10**400], [0.0, 1.0])
    with pytest.raises(ValueError, match="times must be real numbers within the range of a float"):
        det.update_many(["s"], [[1.0]], [10**400])
    # numbers update takes still pass: bools, numpy scalars, ints, Fractions
    numbers: list[Any] = [True, np.float32(2.5), 3, Fraction(1, 3)]
    scores = det.update_series("t", numbers, [0.0, 1.0, 2.0, 3.0])
    assert scores.shape == (4,)


@pytest.mark.parametrize("path", ["scalar", "numpy", "numba", "numpy-columns"])
def test_a_constant_series_one_ulp_off_is_not_an_anomaly(path: str) -> None:
    """A series constant at 0.1 for 300 samples, then 0.09999999999999999 (the same mean summed in another
    order, as the hook's tick means are) scored 1.0, critical: its range is zero, so the range rule's
    tolerance (spatial_tolerance x range) was zero too. The range rule now has a resolution floor
    (RANGE_RESOLUTION of the range's larger end) on every path; a real change still scores 1.0."""
    for later, anomalous in ((float(np.nextafter(0.1, 0.0)), False), (0.1 * (1 + 1e-12), False), (0.1001, True)):
        xs = np.array([0.1] * 300 + [later])
        ts = np.arange(301.0)
        if path == "scalar":
            det = AnomalyDetector()
            for t in range(300):
                det.update("s", 0.1, float(t))
            score = det.update("s", later, 300.0)
        elif path == "numpy-columns":  # one column per call after a block: the per-tick block path
            det = AnomalyDetector(engine="numpy")
            det.update_many(["s"], xs[None, :300], ts[:300])
            score = float(det.update_many(["s"], xs[None, 300:], ts[300:])[0, 0])
        else:
            score = float(AnomalyDetector(engine=path).update_series("s", xs, ts)[-1])
        assert score is not None
        assert (score >= DetectorConfig().critical) is anomalous, (later, score)



@pytest.mark.parametrize("timeout", [7200, 1e9, True])
def test_worker_telemetry_refuses_on_the_client_an_export_timeout_configure_refuses(timeout: Any) -> None:
    """``WorkerTelemetry(export_timeout_s=7200)`` (or True) was built, then configure() raised in every
    worker's setup: the error showed up in the workers' logs, not at the line that made the plugin."""
    from shannon_otel.dask import WorkerTelemetry

    with pytest.raises((TypeError, ValueError), match="export_timeout_s"):
        WorkerTelemetry("svc", exporter="none", export_timeout_s=timeout)
    WorkerTelemetry("svc", exporter="none", export_timeout_s=3600)  # configure's upper bound still passes


async def _nap(_: int) -> None:
    await asyncio.sleep(0)


class _Backwards:
    """A clock each reading of which is a second earlier than the last (a wall clock stepped back, at worst)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now -= 1.0
        return self.now


def _histogram_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[int, float]]]:
    data = reader.get_metrics_data()
    return {m.name: sorted((p.count, p.sum) for p in m.data.data_points) for rm in data.resource_metrics
            for s in rm.scope_metrics for m in s.metrics if isinstance(m.data, Histogram)} if data else {}


def test_the_bridge_drops_negative_durations_as_the_sdk_does() -> None:
    """A wave timed on a clock that went back measured negative durations: the SDK's histograms drop them,
    the bridge recorded them (a point of sum -25 s, five "fast" tasks in the first bucket)."""
    got: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for label, wrap in (("sdk", lambda r: r), ("bridged", bridged)):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[wrap(reader)])
        try:
            wave: Wave[None] = Wave("w", meter_provider=provider, clock=_Backwards())
            asyncio.run(wave.map(_nap, range(5)))
            got[label] = _histogram_points(reader)
        finally:
            provider.shutdown()
    assert got["bridged"] == got["sdk"]


async def _down() -> None:
    raise ConnectionError("down")


async def _reject_many(breaker: CircuitBreaker, calls: int) -> None:
    for _ in range(calls):
        with contextlib.suppress(ConnectionError, CircuitOpenError):
            await breaker.call(_down)


def test_shutdown_writes_the_repeats_the_default_logging_hook_held_back(caplog: pytest.LogCaptureFixture) -> None:
    """A breaker rejecting 99 calls within the flood window logged the first rejection only; the other 98
    waited for a summary nobody asked for (the default hook is the library's: the user cannot flush() it),
    so the logs (and the logs signal configure() exports) never told them."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    handle = configure("svc", exporter="none", set_global=False)
    breaker = CircuitBreaker(name, failure_threshold=1, reset_timeout=60, tracer_provider=handle.tracer_provider,
                             meter_provider=handle.meter_provider)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(_reject_many(breaker, 100))
        handle.shutdown()
    rejected = [r for r in caplog.records if getattr(r, tel.BREAKER_NAME, None) == name
                and r.__dict__.get("event.name") == tel.LOG_EVENT_REJECTED]
    assert [r.__dict__.get(tel.LOG_REPEATS, 1) for r in rejected] == [1, 98]


def test_the_default_logging_hook_writes_its_held_back_repeats_at_interpreter_exit(tmp_path: Path) -> None:
    """Without configure() (the user's own providers and logging set-up) the 98 were never logged."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import asyncio, logging
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from shannon_otel import CircuitBreaker
        trace.set_tracer_provider(TracerProvider())
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        async def down(): raise ConnectionError("down")
        async def main():
            breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=60)
            for _ in range(100):
                try:
                    await breaker.call(down)
                except Exception:
                    pass
        asyncio.run(main())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONPATH": "."})
    assert "rejected a call to api" in out.stderr
    assert "rejected 98 calls to api" in out.stderr


class _StuckExporter(SpanExporter):
    """A span exporter whose export blocks until released: a collector that accepts and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(60)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_repeated_flushes_against_a_silent_backend_leave_one_thread_behind_not_one_per_call() -> None:
    """Each force_flush(timeout) left its thread blocked behind the previous one (the SDK's flush exports
    on the calling thread, one at a time): 30 flushes of 0.2 s against a black hole left 30 threads."""
    stuck = _StuckExporter()
    before = set(threading.enumerate())  # another test's flush may still be running
    handle = configure("svc", exporter="none", span_exporters=[stuck], set_global=False, shutdown_timeout_s=0.1)
    try:
        with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
            pass
        results = [handle.force_flush(0.01) for _ in range(5)]
        flushing = [t for t in set(threading.enumerate()) - before if t.name == "shannon-otel flush"]
        assert results == [False] * 5
        assert len(flushing) == 1
    finally:
        stuck.release.set()
        handle.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_redis_state_of_a_provider_reports_its_availability_and_a_closed_one_stops() -> None:
    """Each RedisState made its own ``shannon.shared.available`` gauge; the SDK keeps the first gauge of a
    name on a meter, so a second state (another prefix, another event loop) was never reported, and the
    first was reported (and kept alive) after its close. ``error.type`` of a failed call was the bare class
    name (``ConnectionError`` for redis' own), not the qualified one every other metric uses."""
    from shannon_otel.redis import RedisState, SharedRateLimit
    from shannon_otel.testing import InMemoryTelemetry

    otel = InMemoryTelemetry()
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nobody listens: down from the start (not an error)

    def available() -> dict[str, float]:
        points: Any = otel.metrics()[tel.SHARED_AVAILABLE.name].data.data_points
        return {p.attributes[tel.SHARED_PREFIX]: p.value for p in points}

    async def main() -> None:
        first = RedisState(url, prefix="first", timeout_s=0.2, meter_provider=otel.meter_provider)
        async with RedisState(url, prefix="second", timeout_s=0.2, meter_provider=otel.meter_provider) as second:
            async with first:
                await SharedRateLimit(first, "r", rate=100).acquire()  # a failed call (local fallback)
                assert available() == {"first": 0, "second": 0}
            assert available() == {"second": 0}
            assert second.available is False

    asyncio.run(main())
    errors: Any = otel.metrics()[tel.SHARED_ERRORS.name].data.data_points
    assert {p.attributes[tel.ERROR_TYPE] for p in errors} <= {"redis.exceptions.ConnectionError", "TimeoutError"}
    assert errors
    otel.shutdown()


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


def test_threads_feeding_one_detector_never_share_a_slot() -> None:
    """Updates from four threads interleaved inside the series registry: two series ended up in one slot
    (each scoring against the other's history from then on) and the detector tracked more than
    ``max_series`` (52 of 50 measured), all silently."""
    det = AnomalyDetector(DetectorConfig(max_series=20, min_history=5), engine="numpy")
    errors: list[BaseException] = []

    def feed(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            for i in range(500):
                names = list(dict.fromkeys(f"s{(i * 5 + j + k * 13) % 90}" for j in range(5)))
                if i % 2:
                    det.update_many(names, rng.normal(size=(len(names), 3)), np.arange(3.0) + i)
                else:
                    det.update(names[0], float(rng.normal()), float(i))
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: the race shows every run
    try:
        threads = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    slots = list(det._slots.values())
    assert len(slots) == len(set(slots)) <= 20


def _make_closure() -> Callable[[int], int]:
    seen: list[int] = []

    def count(x: int) -> int:
        seen.append(x)
        return len(seen)

    return count


async def _agen(x: int) -> AsyncIterator[int]:
    yield x


def _gen(x: int) -> Iterator[int]:
    yield x


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # Dask's own shutdown, not the code under test
@pytest.mark.parametrize(("fn", "match"), [
    (functools.partial(_make_closure(), 1), "'_make_closure.<locals>.count' is a closure over local state"),
    (_agen, "'_agen' is a generator function"),
    (_gen, "'_gen' is a generator function"),
])
def test_dask_refuses_a_wrapped_closure_and_generator_functions_before_submitting(fn: Any, match: str) -> None:
    """``partial(closure)`` passed the closure check (the worker's copy of its state never came back), and a
    (async) generator function ran on a worker and then failed to send back its generator (``Could not
    serialize object of type generator``), its side effects done."""
    import psutil  # type: ignore[import-untyped]  # comes with distributed; no stubs installed
    from distributed import Client, LocalCluster

    from shannon_otel.dask import DaskBackend, UnshippableTaskError

    async def main() -> None:
        async with (
            # threads in this process (inproc://): the refusal comes before anything reaches it. Their HTTP
            # servers still listen: on 127.0.0.1 only (dashboard_address=None meant 0.0.0.0:8787 and :: )
            LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0",  # type: ignore[no-untyped-call]
                         worker_dashboard_address="127.0.0.1:0", silence_logs=40, asynchronous=True) as cluster,
            Client(cluster, asynchronous=True) as client,  # type: ignore[no-untyped-call]
        ):
            listening = {c.laddr.ip for c in psutil.Process().net_connections() if c.status == psutil.CONN_LISTEN}
            assert listening <= {"127.0.0.1"}, listening
            backend = DaskBackend(client)
            with pytest.raises(UnshippableTaskError, match=re.escape(match)):
                backend.map(fn, [1])
            with pytest.raises(UnshippableTaskError, match=re.escape(match)):
                backend.task(fn, 1)

    asyncio.run(main())


class _RefusingExporter(SpanExporter):
    """A backend that answers at once and refuses everything (connection refused, a 4xx)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("refusing", [True, False])
def test_a_shutdown_that_lost_telemetry_says_so_once_with_every_signal(
    refusing: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """Against a backend that refuses at once, shutdown finished in time and shannon-otel said nothing: the
    spans lost were only in ``Telemetry.dropped`` and the SDK's per-attempt lines (which users silence); and
    the warning of a shutdown past its budget counted the spans only, not the metric points and log records."""
    exporter: SpanExporter = _RefusingExporter() if refusing else InMemorySpanExporter()
    handle = configure("svc", exporter="none", span_exporters=[exporter], set_global=False)
    with handle.tracer_provider.get_tracer("t").start_as_current_span("s"):
        pass
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert handle.shutdown()
    said = [r.getMessage() for r in caplog.records if r.name == "shannon_otel"]
    if refusing:
        assert said == ["telemetry shutdown finished; not delivered over the run: 1 spans, 0 metric points, "
                        "0 log records (Telemetry.dropped, metric shannon.telemetry.dropped)"]
    else:
        assert said == []
