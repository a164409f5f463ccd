"""configure(): providers, resource, exporter choice, the histogram bridge, and no global side effects."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter, MetricExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel._config import _choose
from shannon_otel._otel._providers import bridge_for


async def _noop() -> int:
    return 1


def test_configure_without_globals_builds_working_providers_with_a_resource() -> None:
    spans = InMemorySpanExporter()
    handle = configure(
        "svc-a", exporter="none", span_exporters=[spans], resource_attributes={"deployment.environment": "test"},
        set_global=False,
    )
    with handle:
        assert not isinstance(trace.get_tracer_provider(), type(handle.tracer_provider))
        wave: Wave[int] = Wave("cfg", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider)
        asyncio.run(wave.run([_noop]))
        assert handle.force_flush()
        names = sorted(s.name for s in spans.get_finished_spans())
        assert names == ["task cfg", "wave cfg"]
        resource = spans.get_finished_spans()[0].resource.attributes
        assert resource["service.name"] == "svc-a"
        assert resource["deployment.environment"] == "test"
        assert "service.version" not in resource  # the app's version, not ours (ours is the scope's)
    handle.shutdown()  # idempotent


def test_exporter_choice_follows_the_standard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    assert _choose("TRACES", None) == ("otlp_grpc",)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert _choose("TRACES", None) == ("otlp_http",)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")  # the per-signal variable wins
    assert _choose("TRACES", None) == ("otlp_grpc",)
    assert _choose("METRICS", None) == ("otlp_http",)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert _choose("TRACES", None) == ("console",)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")  # several, as the specification allows
    assert _choose("TRACES", None) == ("otlp_grpc", "console")
    assert _choose("TRACES", "none") == ()
    with pytest.raises(ValueError, match="exporter must be one of"):
        _choose("TRACES", "zipkin")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric_interval_s": 0}, r"metric_interval_s must be in \(0"),
        ({"export_timeout_s": -1}, "export_timeout_s"),
        ({"export_timeout_s": float("inf")}, r"export_timeout_s must be in \(0, 3600.0\], got inf"),
        ({"export_timeout_s": float("nan")}, "export_timeout_s must be in"),
        ({"shutdown_timeout_s": 0}, "shutdown_timeout_s must be in"),
        ({"shutdown_timeout_s": float("inf")}, "shutdown_timeout_s must be in"),
        ({"max_queue_size": 0}, "max_queue_size must be in"),
        ({"max_queue_size": 10, "max_export_batch_size": 11}, "max_export_batch_size must be <= max_queue_size"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        configure(exporter="none", set_global=False, **kwargs)  # type: ignore[arg-type]


class _Capture(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):  # type: ignore[no-untyped-def]
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                self.names.update(m.name for m in sm.metrics)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def test_the_exporter_path_carries_the_bridged_task_histograms(monkeypatch: pytest.MonkeyPatch) -> None:
    capture = _Capture()
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda *a: capture)
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda *a: None)
    handle = configure("svc-b", exporter="console", set_global=False, metric_interval_s=3600)
    assert bridge_for(handle.meter_provider) is not None
    wave: Wave[int] = Wave("exp", meter_provider=handle.meter_provider, tracer_provider=handle.tracer_provider)
    asyncio.run(wave.run([_noop]))
    handle.force_flush()
    assert {tel.TASK_DURATION.name, tel.TASK_QUEUE_WAIT_DURATION.name, tel.TASK_OUTCOMES.name} <= capture.names
    handle.shutdown()


def test_a_foreign_metric_reader_makes_the_task_histograms_use_plain_sdk_calls() -> None:
    reader = InMemoryMetricReader()
    handle = configure("svc-c", exporter="none", metric_readers=[reader], set_global=False)
    assert bridge_for(handle.meter_provider) is None
    wave: Wave[int] = Wave("foreign", meter_provider=handle.meter_provider, tracer_provider=handle.tracer_provider)
    asyncio.run(wave.run([_noop]))
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert tel.TASK_DURATION.name in names
    handle.shutdown()


def test_configure_sets_the_globals_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(trace, "set_tracer_provider", calls.append)
    monkeypatch.setattr(metrics, "set_meter_provider", calls.append)
    handle = configure("svc-d", exporter="none")
    assert calls == [handle.tracer_provider, handle.meter_provider]
    handle.shutdown()


def test_the_resource_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=checkout,service.version=2.3.1")
    handle = configure(exporter="none", set_global=False)
    resource = handle.tracer_provider.resource.attributes
    assert resource["service.name"] == "checkout"
    assert resource["service.version"] == "2.3.1"
    handle.shutdown()
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    fallback = configure(exporter="none", set_global=False)
    assert fallback.tracer_provider.resource.attributes["service.name"] == "shannon-otel"
    fallback.shutdown()


def test_a_second_global_configure_is_an_error_not_a_silent_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setattr(trace, "get_tracer_provider", TracerProvider)
    with pytest.raises(RuntimeError, match="already set"):
        configure("again", exporter="none")


def test_force_flush_flushes_traces_and_metrics_at_once_within_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    handle = configure("flush", exporter="none", set_global=False)
    seen: list[int] = []
    metrics_flushed = threading.Event()

    def traces_waiting_for_metrics(timeout_millis: int = 30_000) -> bool:
        seen.append(timeout_millis)
        return metrics_flushed.wait(5)  # True only if the metrics are flushed meanwhile, not after

    def quick_metrics(ms: int) -> bool:
        seen.append(ms)
        metrics_flushed.set()
        return True

    monkeypatch.setattr(handle.tracer_provider, "force_flush", traces_waiting_for_metrics)
    monkeypatch.setattr(handle.meter_provider, "force_flush", quick_metrics)
    assert handle.force_flush(10.0)  # a budget no scheduling delay on a loaded machine eats
    assert len(seen) == 2 and all(0 < ms <= 10_000 for ms in seen)
    handle.shutdown()


def test_the_logs_signal_follows_otel_logs_exporter_and_carries_the_hook_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from shannon_otel import Retry
    from shannon_otel._logs._joined import _Default

    for kind in ("TRACES", "METRICS"):
        monkeypatch.setenv(f"OTEL_{kind}_EXPORTER", "none")
    monkeypatch.delenv("OTEL_LOGS_EXPORTER", raising=False)
    root = logging.getLogger("shannon_otel")
    before = list(root.handlers)
    with configure("svc-logs", set_global=False) as off:
        assert off.logger_provider is None and root.handlers == before  # not asked for: no logs signal
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "console")
    _Default.reset()
    handle = configure("svc-logs", set_global=False)
    assert handle.logger_provider is not None
    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    handle.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    assert len(root.handlers) == len(before) + 1
    spans = InMemorySpanExporter()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    handle.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))

    async def fail_once(left: list[int] = [1]) -> str:  # noqa: B006 - state across the retry's calls
        if left.pop() if left else 0:
            raise ConnectionError
        return "ok"

    async def sleep(seconds: float) -> None:
        return None

    policy = Retry(name="logged-op", attempts=2, sleep=sleep, tracer_provider=handle.tracer_provider,
                   meter_provider=handle.meter_provider)
    assert asyncio.run(policy.call(fail_once)) == "ok"
    handle.shutdown()
    _Default.reset()
    assert root.handlers == before  # shutdown removes the handler
    (record,) = memory.get_finished_logs()
    (operation,) = [s for s in spans.get_finished_spans() if s.name == "logged-op"]
    assert record.log_record.attributes is not None
    assert record.log_record.attributes[tel.OPERATION] == "logged-op"
    assert record.resource.attributes["service.name"] == "svc-logs"
    assert operation.context is not None
    assert (record.log_record.trace_id, record.log_record.span_id) == (
        operation.context.trace_id, operation.context.span_id)


def test_every_configure_has_a_service_instance_id_even_where_the_sdk_sets_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SDKs before 1.43 detect no service.instance.id; replicas of one service then share every series.
    from opentelemetry.sdk import resources

    if hasattr(resources, "_build_resource_detectors"):
        monkeypatch.setattr(resources, "_build_resource_detectors", lambda: [resources.OTELResourceDetector()])
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert "service.instance.id" not in resources.Resource.create({}).attributes  # the old SDK's behaviour
    first = configure("replica", exporter="none", set_global=False)
    second = configure("replica", exporter="none", set_global=False)
    ids = [str(h.tracer_provider.resource.attributes["service.instance.id"]) for h in (first, second)]
    assert ids[0] != ids[1]
    assert first.meter_provider._sdk_config.resource.attributes["service.instance.id"] == ids[0]
    for handle in (first, second):
        handle.shutdown()
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7")
    chosen = configure("replica", exporter="none", set_global=False)
    assert chosen.tracer_provider.resource.attributes["service.instance.id"] == "pod-7"
    chosen.shutdown()


@pytest.mark.parametrize("given", ["variable", "argument"])
def test_a_blank_service_instance_id_is_replaced_like_a_missing_one(
    monkeypatch: pytest.MonkeyPatch, given: str,
) -> None:
    # Before: "" was kept (service.instance.id=$(POD_NAME) with the variable unset): every replica wrote one series.
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    if given == "variable":
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=")
    blank = {"service.instance.id": " "} if given == "argument" else None
    handles = [configure("replica", exporter="none", set_global=False, resource_attributes=blank) for _ in range(2)]
    ids = [str(h.tracer_provider.resource.attributes["service.instance.id"]) for h in handles]
    for handle in handles:
        handle.shutdown()
    assert all(i.strip() for i in ids)
    assert ids[0] != ids[1]
