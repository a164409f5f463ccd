"""Adversarial probes of the telemetry a user sees: the public metrics bridge on user-built providers,
tail sampling, log records, the anomaly hook fed by real waves. Each test reproduces one found bug."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from _user_calls import _ok
from _virtual_time import run_virtual
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags, set_span_in_context
from test_metrics_bridge import _run_workload

from shannon_otel import Hook, LoggingHook, Retry, TailSampler, Wave, bridged
from shannon_otel import _telemetry as tel
from shannon_otel._metrics_bridge import EXEMPLARS_SUPPORTED
from shannon_otel._otel._providers import bridge_for
from shannon_otel._redact import drop_messages
from shannon_otel.testing import FakeClock, set_testing


def _task_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [p for rm in data.resource_metrics for s in rm.scope_metrics for m in s.metrics if m.name == name
            for p in m.data.data_points] if data else []


@pytest.mark.skipif(not EXEMPLARS_SUPPORTED, reason="this SDK has no exemplar reservoirs")
def test_a_views_own_exemplar_reservoir_is_honoured_by_the_bridge() -> None:
    # A View's exemplar_reservoir_factory was ignored: the bridge kept one exemplar per bucket where
    # the user's reservoir keeps one per point.
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, SimpleFixedSizeExemplarReservoir

    def one_exemplar(aggregation: Any) -> Any:
        return lambda **kwargs: SimpleFixedSizeExemplarReservoir(size=1)

    reader = InMemoryMetricReader()
    view = View(instrument_name=tel.TASK_DURATION.name, exemplar_reservoir_factory=one_exemplar)
    provider = MeterProvider(metric_readers=[bridged(reader)], exemplar_filter=AlwaysOnExemplarFilter(), views=[view])
    _run_workload(provider, TracerProvider())
    points = _task_points(reader, tel.TASK_DURATION.name)
    assert points and all(len(p.exemplars) == 1 for p in points)
    bridge = bridge_for(provider)
    assert bridge is not None and bridge.sink(tel.TASK_DURATION) is None  # left to the SDK
    assert bridge.sink(tel.TASK_QUEUE_WAIT_DURATION) is not None


@pytest.mark.parametrize("order", ["bridged-then-bridged", "plain-then-bridged", "bridged-then-plain", "twice-in-one"])
def test_a_reader_registered_already_is_refused_like_the_sdk_does(order: str) -> None:
    # bridged(reader) for a reader some provider had already let the second provider take it over
    # silently: the first provider's reader then collected nothing at all.
    reader = InMemoryMetricReader()
    if order == "twice-in-one":
        readers = [bridged(reader), bridged(reader)]
    else:
        first, second = order.split("-then-")
        MeterProvider(metric_readers=[bridged(reader) if first == "bridged" else reader])
        readers = [bridged(reader) if second == "bridged" else reader]
    with pytest.raises(Exception, match="registered already"):
        MeterProvider(metric_readers=readers)


def test_a_removed_bridged_reader_collects_like_a_removed_plain_one() -> None:
    # MeterProvider.remove_metric_reader(bridged(r)) left r calling a None callback: TypeError on collect.
    reader = InMemoryMetricReader()
    wrapper = bridged(reader)
    provider = MeterProvider(metric_readers=[wrapper])
    _run_workload(provider, TracerProvider(), waves=1)
    provider.remove_metric_reader(wrapper)
    assert reader.get_metrics_data() is None  # the SDK's "not registered" answer, not a TypeError
    again = MeterProvider(metric_readers=[reader])  # unregistered: usable again, as with the SDK
    _run_workload(again, TracerProvider(), waves=1)
    assert _task_points(reader, tel.TASK_DURATION.name)


# NOT FIXED (reported): the fix lies in _metrics_bridge.py / _otel/ (edited concurrently by another helper) and
# is not small: once the bridge serves a provider, a reader added later with MeterProvider.add_metric_reader
# (SDK >= 1.28) gets no task histograms at all, bridged or not: the hook records into the stores found at the
# first wave (discover() reads MeterProvider._metric_readers, which add_metric_reader does not even update).
@pytest.mark.xfail(strict=True, reason="a reader added after the bridge was discovered misses the task histograms")
@pytest.mark.parametrize("wrap", [True, False], ids=["bridged", "plain"])
def test_a_reader_added_after_the_first_wave_gets_the_task_histograms(wrap: bool) -> None:
    if not hasattr(MeterProvider, "add_metric_reader"):
        pytest.skip("this SDK cannot add readers to a built provider")
    first = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[bridged(first)])
    _run_workload(provider, TracerProvider(), waves=1)
    added = InMemoryMetricReader()
    provider.add_metric_reader(bridged(added) if wrap else added)
    _run_workload(provider, TracerProvider(), waves=1)
    assert sum(p.count for p in _task_points(added, tel.TASK_DURATION.name)) == 25


def _tail(ratio: float) -> tuple[TracerProvider, InMemorySpanExporter, TailSampler]:
    exporter = InMemorySpanExporter()
    sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=ratio)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    return provider, exporter, sampler


async def _bad() -> int:
    raise ValueError("boom")


def test_a_failing_request_is_kept_when_a_healthy_one_of_the_same_upstream_trace_was_dropped() -> None:
    # Two requests of one upstream trace served here (each a local root under a remote parent): the first,
    # healthy, decided the whole trace id "dropped", and the second's failing wave was dropped with it.
    provider, exporter, sampler = _tail(0.0)
    tracer = provider.get_tracer("server")
    upstream = SpanContext(trace_id=0xABC, span_id=0x123, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    async def request(fail: bool) -> None:
        with tracer.start_as_current_span("GET /quote", context=set_span_in_context(NonRecordingSpan(upstream))):
            await Wave[int]("quote", tracer_provider=provider).run([_ok(), _bad() if fail else _ok()])

    async def main() -> None:
        await request(False)
        await request(True)

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["GET /quote", "task quote", "task quote", "wave quote"]
    assert any(s.attributes and s.attributes.get(tel.TASK_OUTCOME) == "failure" for s in spans)
    assert (sampler.kept_traces, sampler.dropped_traces, sampler.buffered_spans) == (1, 1, 0)


def test_a_wave_under_another_providers_span_is_decided_when_it_ends() -> None:
    # The wave span's parent, a span of the user's own TracerProvider, never reaches this processor: the
    # wave's trace waited for that "local root" forever, buffered (nothing exported, even at ratio 1).
    provider, exporter, sampler = _tail(1.0)
    users_own = TracerProvider().get_tracer("app")

    async def main() -> None:
        for _ in range(3):
            with users_own.start_as_current_span("request"):
                await Wave[int]("w", tracer_provider=provider).run([_ok(), _bad()])

    asyncio.run(main())
    assert len(exporter.get_finished_spans()) == 9
    assert (sampler.kept_traces, sampler.buffered_spans) == (3, 0)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_no_kept_span_misses_its_local_parent_in_random_span_trees(ratio: float) -> None:
    # Random trees: remote-parented requests sharing trace ids, children started under open or ended spans
    # (after their part's decision too), spans ending late, failures anywhere, tiny and large buffers (decisions
    # remembered: past max_decisions a late span may be decided anew, as documented).
    # (An intermediate per-part sampler forwarded fire-and-forget children of dropped parts.)
    for seed in range(60):
        rng = random.Random(seed)
        exporter = InMemorySpanExporter()
        sampler = TailSampler(SimpleSpanProcessor(exporter), healthy_ratio=ratio,
                              max_buffered_spans=rng.choice([3, 50]), max_decisions=1000)
        provider = TracerProvider()
        provider.add_span_processor(sampler)
        tracer = provider.get_tracer("fuzz")
        running: list[Any] = []
        ended: list[Any] = []
        for _ in range(60):
            draw = rng.random()
            if draw < 0.15 or not (running or ended):
                upstream = SpanContext(trace_id=rng.choice([1, 2, 3]) << 70 | 0xFFFF, span_id=rng.getrandbits(64) or 1,
                                       is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
                parent = set_span_in_context(NonRecordingSpan(upstream)) if rng.random() < 0.5 else None
                running.append(tracer.start_span("root", context=parent))
            elif draw < 0.6:
                parent_span = rng.choice(running + ended[-5:])
                running.append(tracer.start_span("child", context=set_span_in_context(parent_span)))
            elif running:
                span = running.pop(rng.randrange(len(running)))
                if rng.random() < 0.1:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                ended.append(span)
        for span in running:
            span.end()
        provider.shutdown()
        spans = exporter.get_finished_spans()
        ids = {s.context.span_id for s in spans if s.context is not None}
        orphans = [s for s in spans if s.parent is not None and not s.parent.is_remote and s.parent.span_id not in ids]
        assert not orphans, f"seed {seed}: a kept span lost its parent"
        assert sampler.buffered_spans == 0


def _stacktraces_with(redact: Any, error: Callable[[], BaseException]) -> list[str]:
    from shannon_otel import configure

    memory = InMemorySpanExporter()
    handle = configure("probe", exporter="none", span_exporters=[memory], set_global=False, redact=redact)
    try:
        async def fail() -> None:
            raise error()

        async def main() -> None:
            wave: Wave[None] = Wave("w", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider)
            with contextlib.suppress(BaseExceptionGroup), \
                    handle.tracer_provider.get_tracer("user").start_as_current_span("user"):
                await wave.run([fail], raise_errors=True)  # a WaveError (an ExceptionGroup) through the user span

        run_virtual(main())
        handle.force_flush(5.0)
    finally:
        handle.shutdown()
    return [str(e.attributes["exception.stacktrace"]) for s in memory.get_finished_spans() for e in s.events
            if e.name == "exception" and e.attributes]


def _noted() -> BaseException:
    error = ValueError("login failed")
    error.add_note("password=hunter2")
    return error


@pytest.mark.parametrize("error", [
    lambda: ValueError("login failed\npassword=hunter2"),
    lambda: ValueError("login failed\n  password=hunter2"),
    _noted,
], ids=["multi-line", "indented-line", "note"])
def test_redaction_covers_every_line_of_a_message_and_exception_groups(error: Callable[[], BaseException]) -> None:
    # exception.stacktrace was redacted line by line: the second line of a message, a note, and every
    # sub-exception of an exception group (WaveError, the "  | ValueError: ..." lines) went out as they were.
    traces = _stacktraces_with(drop_messages, error)
    assert len(traces) == 2 and any("| ValueError" in t for t in traces)  # the task span's and the user span's
    assert all("hunter2" not in t and "File " in t for t in traces)
    masked = _stacktraces_with(lambda type_name, message: message.replace("hunter2", "***"), error)
    assert all("hunter2" not in t and "password=***" in t and "login failed" in t for t in masked)


@pytest.mark.parametrize(("operation", "message"), [("GET /users/{id}", "plain"), ("quotes", "bad json {'a': 1}")])
def test_a_summary_of_repeats_is_written_whatever_braces_names_and_messages_hold(
        operation: str, message: str, caplog: pytest.LogCaptureFixture) -> None:
    # The summary was built with str.format over text holding the operation name and (opted in) the
    # exception message: a route template or a dict in a message raised inside the hook, and the summary
    # of every held-back retry was lost (only counted in hook.errors).
    hook = LoggingHook(exception_messages=True)
    retry = Retry(attempts=5, initial=0.0, name=operation, hooks=[hook])

    async def fail() -> None:
        raise ValueError(message)

    async def main() -> None:
        for _ in range(3):
            with contextlib.suppress(ValueError):
                await retry.call(fail)

    caplog.set_level(logging.WARNING, logger="shannon_otel")
    with set_testing(True):
        run_virtual(main())
    hook.flush()
    texts = [r.getMessage() for r in caplog.records if r.name == "shannon_otel.retry"]
    assert hook.errors == 0
    assert len(texts) == 2 and texts[1].startswith(f"retried {operation} 11 times in the last 0 s")
    assert texts[1].endswith(f"ValueError: {message})")
    assert caplog.records[-1].__dict__["shannon.log.repeats"] == 11


def test_run_virtual_lets_executor_threads_finish_before_a_later_timer() -> None:
    # VirtualTimeLoop jumped to the next timer whenever no I/O was ready, also while a thread worked: a 20 ms
    # asyncio.to_thread call under a 5 s timeout (a wave's task_timeout) always "timed out" under run_virtual.
    def work() -> str:
        time.sleep(0.02)
        return "done"

    async def main() -> tuple[str, dict[str, int]]:
        loop = asyncio.get_running_loop()
        done = await asyncio.wait_for(asyncio.to_thread(work), timeout=5)
        wave: Wave[None] = Wave("threads", task_timeout=5, clock=loop.time)
        result = await wave.map(lambda _: asyncio.to_thread(time.sleep, 0.02), range(2))
        return done, {str(k): v for k, v in result.report.counts.items()}

    done, counts = run_virtual(main())
    assert done == "done" and counts["success"] == 2 and counts["timeout"] == 0


def test_a_fake_clock_refuses_infinite_time() -> None:
    # FakeClock(math.inf) and advance(math.inf) were accepted although the error names [0, inf): every
    # duration measured on the clock afterwards was inf - inf = NaN.
    with pytest.raises(ValueError, match=r"start must be a finite number"):
        FakeClock(math.inf)
    clock = FakeClock()
    with pytest.raises(ValueError, match=r"seconds must be in \[0, inf\)"):
        clock.advance(math.inf)
    assert clock() == 1000.0


class _SameIds(IdGenerator):
    """The same ids in every run, so exemplar ids compare across the bridged and the plain run."""

    def __init__(self) -> None:
        self._random = random.Random(1)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


@pytest.mark.skipif(not EXEMPLARS_SUPPORTED, reason="this SDK has no exemplar filter")
def test_always_on_exemplars_of_sampled_off_waves_carry_the_same_ids_as_plain_sdk_calls() -> None:
    # With no task span (the wave sampled off) the bridge wrote always_on exemplars without ids, where the SDK
    # takes the current span's (the wave span's) trace and span id.
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter

    found = []
    for wrap in (True, False):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[bridged(reader) if wrap else reader],
                                 exemplar_filter=AlwaysOnExemplarFilter())
        _run_workload(provider, TracerProvider(sampler=ALWAYS_OFF, id_generator=_SameIds()), waves=1)
        found.append(sorted((tuple(sorted(p.attributes.items())), e.value, e.trace_id, e.span_id)
                            for p in _task_points(reader, tel.TASK_DURATION.name) for e in p.exemplars))
    assert found[0] == found[1]
    assert found[0] and all(trace_id is not None for _, _, trace_id, _ in found[0])


# A wave with tracing off (a no-op TracerProvider) but metrics on, run inside a sampled span of the user's:
# plain SDK calls give each point an exemplar of that span (trace_based filter, the default); the bridge got
# no span context from the hook and gave none.
def test_a_wave_without_tracing_inside_a_sampled_user_span_gets_the_same_exemplars_as_plain_sdk_calls() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    users_own = TracerProvider().get_tracer("app")
    counts = []
    for wrap in (True, False):
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[bridged(reader) if wrap else reader])

        async def main(provider: MeterProvider = provider) -> None:
            with users_own.start_as_current_span("request"):
                await Wave[int]("w", tracer_provider=NoOpTracerProvider(), meter_provider=provider).run([_ok(), _ok()])

        asyncio.run(main())
        counts.append([len(p.exemplars) for p in _task_points(reader, tel.TASK_DURATION.name)])
    assert counts[1] == [1]  # the SDK's exemplar, linking the user's span
    assert counts[0] == counts[1]


# NOT FIXED (reported, a design choice in anomaly/_ticks.py, edited concurrently): a latency tick spans several
# runs of a wave; its Anomaly (on_anomaly, the run report, the log record's fields) names the slowest task's
# trace, but the shannon.anomaly span event goes on the span current when the tick closed, in a later run's
# trace. With a TailSampler, the slowest task's trace is healthy and decided (dropped) before the tick closes,
# so the trace id the Anomaly names was never exported.
@pytest.mark.xfail(strict=True, reason="a latency anomaly names a trace the tail sampler dropped")
def test_a_latency_anomaly_names_a_trace_the_tail_sampler_kept() -> None:
    from shannon_otel import AnomalyHook

    provider, exporter, _ = _tail(0.0)
    clock = FakeClock()
    found: list[Any] = []
    hook = AnomalyHook(tick_s=1.0, min_tick_tasks=8, clock=clock, on_anomaly=found.append)

    async def job(slow: bool) -> None:
        clock.advance(2.5 if slow else 0.25)

    async def main() -> None:
        for run in range(200):  # 3 tasks a run, ticks of >= 8 tasks: every tick spans three runs
            wave: Wave[None] = Wave("checkout", max_concurrency=1, clock=clock, tracer_provider=provider,
                                    hooks=(hook,))
            await wave.run([job(run >= 180 and i == 0) for i in range(3)])

    asyncio.run(main())
    exported = {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans() if s.context is not None}
    latency = [a for a in found if a.signal == "latency"]
    assert latency
    assert all(a.trace_id in exported for a in latency)


_SECRET = "hunter" + "2"  # built, so that no traceback's source line holds it


class _FailingHook(Hook):
    def wave_started(self, event: Any) -> None:
        raise RuntimeError(f"db password={_SECRET} rejected")


def test_redact_applies_to_the_log_records_configure_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    # configure(redact=...) redacted spans only: with the logs signal on, the record of a failing hook (its
    # traceback: exception.message, exception.stacktrace) and LoggingHook(exception_messages=True) records
    # went to the log exporter with the messages redact was set to hide.
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    from shannon_otel import configure

    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    monkeypatch.setattr("shannon_otel._config._log_exporter", lambda *a: memory)
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda *a: None)
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda *a: None)
    handle = configure("probe", exporter="console", logs=True, set_global=False, redact=drop_messages)
    try:
        async def flaky() -> None:
            raise ConnectionError(f"token={_SECRET} refused")

        async def main() -> None:
            wave: Wave[int] = Wave("w", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider,
                                   hooks=(_FailingHook(),))
            await wave.run([_ok()])
            retry = Retry(attempts=2, initial=0.0, name="search", tracer_provider=handle.tracer_provider,
                          meter_provider=handle.meter_provider, hooks=[LoggingHook(exception_messages=True)])
            with contextlib.suppress(ConnectionError):
                await retry.call(flaky)

        run_virtual(main())
        assert handle.force_flush(5.0)
    finally:
        handle.shutdown()
    records = [r.log_record for r in memory.get_finished_logs()]
    hook_failure = [r for r in records if "failed in wave_started" in str(r.body)]
    retried = [r for r in records if str(r.body).startswith("retrying search")]
    assert hook_failure and retried
    for record in records:
        assert "hunter2" not in str(record.body) and "hunter2" not in str(dict(record.attributes or {}))
    attributes = dict(hook_failure[0].attributes or {})
    assert attributes["exception.type"] == "RuntimeError" and "wave_started" in str(attributes["exception.stacktrace"])
    assert str(retried[0].body).endswith(": ConnectionError")  # the type stays, the message is gone
