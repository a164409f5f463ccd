"""Every instrumentation scope of ours carries the semantic conventions' schema URL.

Our spans, metrics and log records use semantic-convention names (``error.type``, the ``exception`` event's
``exception.*``, the log record's EventName), yet their scopes had no schema URL: a collector's schema
transformation could not tell which release of the conventions to translate from, and a backend could not tell
our ``error.type`` is the conventions' one. The SDK keys a meter by name, version and schema URL, so every meter
of ours must carry the same one: two would split one instrument's series over two scopes (and the Prometheus
exporter's ``otel_scope_schema_url`` label).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.semconv.attributes import error_attributes, exception_attributes
from opentelemetry.semconv.schemas import Schemas

from shannon_otel import Retry, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def _fails() -> None:
    raise KeyError("down")


async def _ok() -> int:
    return 1


def _work(providers: dict[str, Any], op: str = "op") -> None:
    """A wave of a success and a failure, and a retried call that fails: spans, histograms, counters, a log."""
    async def main() -> None:
        await Wave("w", **providers).run([_ok, _fails])
        with contextlib.suppress(KeyError):
            await Retry(attempts=2, initial=0.01, name=op, **providers).call(_fails)

    run_virtual(main())


class _Refusing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def _our_scopes(data: MetricsData | None) -> list[Any]:
    assert data is not None
    return [sm for rm in data.resource_metrics for sm in rm.scope_metrics if sm.scope.name == tel.SCOPE_NAME]


def test_the_schema_url_is_a_release_whose_stable_names_are_the_ones_we_use() -> None:
    assert tel.SCHEMA_URL in {s.value for s in Schemas}
    assert tel.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert (tel.EXCEPTION_TYPE, tel.EXCEPTION_MESSAGE, tel.EXCEPTION_STACKTRACE) == (
        exception_attributes.EXCEPTION_TYPE, exception_attributes.EXCEPTION_MESSAGE,
        exception_attributes.EXCEPTION_STACKTRACE,
    )


@pytest.mark.parametrize("bridged", [True, False])
def test_every_span_metric_and_log_record_of_ours_carries_the_schema_url(bridged: bool) -> None:
    memory = InMemoryTelemetry(bridged=bridged, logs=True)
    logger = logging.getLogger(tel.SCOPE_NAME)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        op = f"op{bridged}"  # the logging hook summarises a repeat of one operation's record
        _work(memory.providers, op)
        spans = memory.spans()
        assert {s.name for s in spans} >= {"wave w", "task w", op, "attempt 1"}
        assert {s.instrumentation_scope.schema_url for s in spans if s.instrumentation_scope} == {tel.SCHEMA_URL}
        assert all(s.instrumentation_scope is not None for s in spans)
        scopes = _our_scopes(memory.metric_reader.get_metrics_data())
        assert len(scopes) == 1, [(s.scope, s.schema_url) for s in scopes]  # one scope: no series split over two
        (scope,) = scopes
        assert (scope.scope.schema_url, scope.schema_url) == (tel.SCHEMA_URL, tel.SCHEMA_URL)
        names = {m.name for m in scope.metrics}
        assert {tel.TASK_DURATION.name, tel.WAVE_DURATION.name, tel.CALLS.name, tel.TASK_OUTCOMES.name} <= names
        records = memory.log_records()
        assert records, "the retry's record"
        assert {r.instrumentation_scope.schema_url for r in records if r.instrumentation_scope} == {tel.SCHEMA_URL}
    finally:
        logger.setLevel(level)
        memory.shutdown()


def test_configures_own_counter_shares_the_hooks_scope() -> None:
    """``shannon.telemetry.dropped`` is made by configure() on its own meter: with another schema URL than the
    hooks' meter it would be a scope of its own."""
    reader = InMemoryMetricReader()
    handle = configure("schema", exporter="none", metric_readers=[reader], span_exporters=[_Refusing()],
                       set_global=False)
    try:
        _work({"tracer_provider": handle.tracer_provider, "meter_provider": handle.meter_provider})
        handle.force_flush(5.0)  # the spans' export fails: shannon.telemetry.dropped has a point
        scopes = _our_scopes(reader.get_metrics_data())
        assert [(s.scope.schema_url, s.schema_url) for s in scopes] == [(tel.SCHEMA_URL, tel.SCHEMA_URL)]
        assert {tel.TELEMETRY_DROPPED.name, tel.CALLS.name} <= {m.name for m in scopes[0].metrics}
    finally:
        handle.shutdown()


def test_the_bridges_histograms_alone_are_in_the_same_scope() -> None:
    """A collection in which the SDK had no point of ours (its data None) gets the bridge's histograms in a scope
    the bridge builds itself: the same scope, schema URL included."""
    from shannon_otel._otel._providers import bridge_for

    memory = InMemoryTelemetry()
    try:
        _work(memory.providers, "bridge")
        bridge = bridge_for(memory.meter_provider)
        assert bridge is not None
        (scope,) = _our_scopes(bridge.merge(None))
        assert tel.TASK_DURATION.name in {m.name for m in scope.metrics}
        assert (scope.scope.schema_url, scope.schema_url) == (tel.SCHEMA_URL, tel.SCHEMA_URL)
    finally:
        memory.shutdown()


def test_the_anomaly_and_shared_state_instruments_are_in_the_same_scope() -> None:
    """Their meters are made apart from the hooks' (per provider, when the first anomaly or Redis store comes)."""
    from shannon_otel import Anomaly
    from shannon_otel._otel import OTelHook
    from shannon_otel._otel._shared import SharedTelemetry
    from shannon_otel._telemetry import Severity

    memory = InMemoryTelemetry()
    try:
        _work(memory.providers, "anomaly")
        OTelHook(**memory.providers).anomaly(Anomaly("w", "latency", 0.9, Severity.CRITICAL, 2.0, None, None, 0.0))
        SharedTelemetry(memory.meter_provider).errors.add(1, {tel.SHARED_OPERATION: "get", tel.ERROR_TYPE: "X"})
        (scope,) = _our_scopes(memory.metric_reader.get_metrics_data())
        assert {tel.ANOMALY_EVENTS.name, tel.SHARED_ERRORS.name, tel.CALLS.name} <= {m.name for m in scope.metrics}
    finally:
        memory.shutdown()
