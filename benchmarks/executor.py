"""Executor overhead: 10,000 no-op tasks, side by side in one process, against bare asyncio.gather.

Scenarios (interleaved, >= 5 repetitions, medians of per-repetition ratios to gather):
  no_sdk               Wave with the OTel hook but no SDK providers (the API's no-ops)
  metrics_sampled_off  SDK metrics (in-process histogram bridge) + SDK tracing sampled off
  metrics_unbridged    same, but through plain SDK calls (a user-built MeterProvider without the bridge)
  metrics_user_provider_bridged  a user-built ``MeterProvider(metric_readers=[bridged(reader)])``
  traced               every task span recorded, BatchSpanProcessor to an exporter that discards
  traced_otlp_grpc / traced_otlp_http  every task traced and metrics on, exported by the real OTLP
                       exporters to a sink process on 127.0.0.1 that discards; timed up to the flush
  peer_asyncio_instr_traced(_metrics)  opentelemetry-instrumentation-asyncio tracing the same
                       coroutines (and its SDK meter on: the equal-information peer); skipped,
                       with a note, when the peer is not installed
  peer_model_traced_metrics  a MODEL of that peer's per-coroutine work (span named after the coroutine,
                       not current; duration histogram and count counter with type/name/state), on
                       gather, written in this file from reading the peer's source: not the peer itself.
                       The real peer rows stay null when it is not installed
  floor_span_only      the Wave with a bare hook that only starts, attaches, detaches and ends one SDK span
                       per task: the cost of the SDK span itself, the floor under "traced" (run right
                       before or after "traced", alternately, so that their ratio sees one moment's load)
  gather_plus_span     asyncio.gather over coroutines that each open ``start_as_current_span``
The Wave runs with max_concurrency=100 (workers, not one asyncio task per input).
Memory: tracemalloc peak of the streaming mode for N and 10 x N lazy inputs (should not grow).
Export: with the SDK's default batch queue (2,048 spans), the spans the OTLP exporters send per
second, the rate the wave produces them, and the spans dropped because the queue was full.
Tail sampling: exported spans and export CPU per N healthy tasks (waves of 10) at ratio 0.01 vs all.
Import: milliseconds to ``import shannon_otel`` vs ``import opentelemetry.trace`` (fresh interpreters).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
import tracemalloc
import weakref
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from shannon_otel import Hook, TailSampler, Wave, WaveObserver, WaveStarted, bridged
from shannon_otel.testing import InMemoryTelemetry

from ._sink import Sink


class _Discard(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def noop() -> None:
    return None


def _gather(n: int) -> Callable[[], Awaitable[Any]]:
    async def run() -> None:
        await asyncio.gather(*(noop() for _ in range(n)))

    return run


def _wave(n: int, **kwargs: Any) -> Callable[[], Awaitable[Any]]:
    wave: Wave[None] = Wave("bench", max_concurrency=100, **kwargs)

    async def run() -> None:
        await wave.run(noop() for _ in range(n))

    return run


Toggle = Callable[[bool], None]


def _peer(n: int, tracer_provider: TracerProvider, meter_provider: MeterProvider | None = None,
          ) -> tuple[Callable[[], Awaitable[Any]], Toggle] | None:
    """The peer's gather and its on/off switch; None (and a printed note) when it is not installed."""
    os.environ["OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE"] = "noop"
    try:
        from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor
    except ImportError:
        return None

    instrumentor = AsyncioInstrumentor()

    async def run() -> None:
        await asyncio.gather(*(noop() for _ in range(n)))

    def toggle(on: bool) -> None:
        if on:
            instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        else:
            instrumentor.uninstrument()

    return run, toggle


class _PeerModel:
    """A model of opentelemetry-instrumentation-asyncio's per-coroutine work, for when the peer is not
    installed (``ratios.peer_model_traced_metrics``). NOT the peer: written here from reading its
    source (``instrumentation/opentelemetry-instrumentation-asyncio/.../asyncio/__init__.py``), no code
    taken. What it does for each coroutine passed to ``asyncio.gather``: wrap it in a new coroutine
    (skipping tasks and already-wrapped coroutines, tracked in a WeakSet); start a span named
    ``asyncio coro-<name>`` (not made current, no attributes; error status and exception on failure);
    record the duration in a histogram and add 1 to a counter, both with {type, name, state}; end the span.
    """

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider,
                 names: frozenset[str] = frozenset({"noop"})) -> None:
        self._tracer = tracer_provider.get_tracer("peer-model")
        meter = meter_provider.get_meter("peer-model")
        self._durations = meter.create_histogram("asyncio.process.duration", unit="s",
                                                 description="Duration of asyncio process")
        self._created = meter.create_counter("asyncio.process.created", unit="{process}",
                                             description="Number of asyncio process")
        self._names = names  # the peer's OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def wrap(self, item: Any) -> Any:
        """What the peer's ``gather`` wrapper does with each argument."""
        if isinstance(item, asyncio.Task):
            return item
        if asyncio.iscoroutine(item):
            return self._traced(item)
        return item

    async def _traced(self, coro: Any) -> Any:
        if coro in self._seen:
            return await coro
        self._seen.add(coro)
        name = getattr(coro, "__name__", None)
        if name is None:
            return await coro
        start = timeit.default_timer()
        attributes = {"type": "coroutine", "name": name}
        span = self._tracer.start_span("asyncio coro-" + name) if name in self._names else None
        error: BaseException | None = None
        try:
            attributes["state"] = "finished"
            return await coro
        except asyncio.CancelledError:
            attributes["state"] = "cancelled"
            raise
        except Exception as exc:
            error = exc
            attributes["state"] = "timeout" if isinstance(exc, TimeoutError) else "exception"
            raise
        finally:
            self._durations.record(max(timeit.default_timer() - start, 0), attributes)
            self._created.add(1, attributes)
            if span is not None:
                if span.is_recording() and error is not None:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                    span.record_exception(error)
                span.end()


def _peer_model(n: int, tracer_provider: TracerProvider, meter_provider: MeterProvider,
                ) -> Callable[[], Awaitable[Any]]:
    model = _PeerModel(tracer_provider, meter_provider)

    async def run() -> None:
        await asyncio.gather(*(model.wrap(noop()) for _ in range(n)))

    return run


class _Counting(SpanExporter):
    """Delegates to ``inner``; counts the spans exported and the time and CPU spent exporting them."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self.spans = 0
        self.seconds = 0.0
        self.cpu_s = 0.0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        start, cpu = time.perf_counter(), time.thread_time()
        result = self._inner.export(spans)
        self.cpu_s += time.thread_time() - cpu
        self.seconds += time.perf_counter() - start
        self.spans += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()


class _Encode(SpanExporter):
    """The CPU of an OTLP export without a network: encode to protobuf bytes, discard."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def _otlp_exporters(protocol: str, endpoint: str) -> tuple[SpanExporter, Any]:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint=endpoint, insecure=True), GrpcMetrics(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    return HttpSpans(endpoint=f"{endpoint}/v1/traces"), HttpMetrics(endpoint=f"{endpoint}/v1/metrics")


def _traced_otlp(n: int, protocol: str, endpoint: str) -> tuple[Callable[[], Awaitable[Any]], Callable[[], None]]:
    """Every task traced and metrics on, both exported over OTLP; a run lasts until the spans are sent."""
    span_exporter, metric_exporter = _otlp_exporters(protocol, endpoint)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, max_queue_size=n * 2))
    meter_provider = MeterProvider(metric_readers=[bridged(PeriodicExportingMetricReader(
        metric_exporter, export_interval_millis=3_600_000,
    ))])
    wave: Wave[None] = Wave("bench", max_concurrency=100, tracer_provider=tracer_provider,
                            meter_provider=meter_provider)

    async def run() -> None:
        await wave.run(noop() for _ in range(n))
        tracer_provider.force_flush()
        meter_provider.force_flush()

    def close() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return run, close


def _export_drops(n: int, protocol: str, endpoint: str) -> dict[str, float]:
    """With the SDK's default batch queue: spans/s exported, spans/s produced, spans dropped."""
    span_exporter, _ = _otlp_exporters(protocol, endpoint)
    counting = _Counting(span_exporter)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(counting))
    wave: Wave[None] = Wave("bench", max_concurrency=100, tracer_provider=tracer_provider)
    produced_s = _time(lambda: wave.run(noop() for _ in range(n)))
    tracer_provider.force_flush()
    tracer_provider.shutdown()
    created = n + 1
    return {
        "exported_spans_per_s": round(counting.spans / counting.seconds) if counting.seconds else 0.0,
        "produced_spans_per_s": round(created / produced_s),
        "dropped_spans": created - counting.spans,
    }


def _tail_sampling(n: int, ratio: float | None) -> dict[str, float]:
    """N healthy tasks in waves of 10: spans exported and the exporter's CPU (encoding to OTLP protobuf)."""
    counting = _Counting(_Encode())
    batch = BatchSpanProcessor(counting, max_queue_size=n * 2)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(batch if ratio is None else TailSampler(batch, healthy_ratio=ratio))

    async def run() -> None:
        for i in range(n // 10):
            wave: Wave[None] = Wave(f"w{i % 10}", max_concurrency=10, tracer_provider=tracer_provider)
            await wave.run(noop() for _ in range(10))

    cpu = time.process_time()
    asyncio.run(run())
    tracer_provider.force_flush()
    process_cpu = time.process_time() - cpu
    tracer_provider.shutdown()
    return {"exported_spans": counting.spans, "export_cpu_ms": round(counting.cpu_s * 1000, 2),
            "process_cpu_ms": round(process_cpu * 1000, 1)}


def _import_ms(statement: str, repeat: int) -> float:
    """Median wall time of ``statement`` in fresh interpreters (this checkout's package first).

    As an installed package imports: from bytecode. pip compiles it at install; a checkout run with
    PYTHONDONTWRITEBYTECODE=1 (set on this machine) would otherwise compile every module at every
    import (measured: ~135 ms instead of ~80), while the OTel packages it is compared with import from
    their installed bytecode. So that variable is dropped, and one untimed import writes the cache.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                 check=True).stdout) for _ in range(repeat + 1)][1:]
    return round(statistics.median(runs) * 1000, 2)


class _SpanOnly(Hook):
    """The least a per-task span costs: start, make current, end. No attributes, no metrics."""

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer("floor")

    def wave_started(self, event: WaveStarted) -> WaveObserver:
        tracer = self._tracer
        wave = tracer.start_span("wave")
        parent = trace.set_span_in_context(wave)

        class Observer(WaveObserver):
            def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
                span = tracer.start_span("task", context=parent)
                return span, otel_context.attach(trace.set_span_in_context(span))

            def task_finished(self, token: Any, event: Any) -> None:
                otel_context.detach(token[1])
                token[0].end()

            def wave_finished(self, report: Any) -> None:
                wave.end()

        return Observer()


def _gather_span(n: int, tracer_provider: TracerProvider) -> Callable[[], Awaitable[Any]]:
    tracer = tracer_provider.get_tracer("gather")

    async def one() -> None:
        with tracer.start_as_current_span("task"):
            await noop()

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(n)))

    return run


def _time(fn: Callable[[], Awaitable[Any]], clock: Callable[[], float] = time.perf_counter) -> float:
    async def timed() -> float:
        gc.collect()
        start = clock()
        await fn()
        return clock() - start

    return asyncio.run(timed())


async def _stream_peak(n: int) -> int:
    wave: Wave[None] = Wave("mem", max_concurrency=100, instrument=False)
    tracemalloc.start()
    async with wave.stream(noop() for _ in range(n)) as results:
        async for _ in results:
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


async def _left_early(n: int, mapped: bool) -> float:
    """Seconds a stream over ``n`` sized items takes to end once its consumer leaves after one result (SDK
    metrics and sampled-out tracing on: the OTel hook counts every task never started)."""
    tel = InMemoryTelemetry(sampled=False)
    wave: Wave[int] = Wave("left-early", max_concurrency=8, **tel.providers)

    async def work(i: int) -> int:
        return i

    stream = wave.stream_map(work, range(n)) if mapped else wave.stream([functools.partial(work, i)
                                                                         for i in range(n)])
    async with stream as results:
        async for _ in results:
            break
        start = time.perf_counter()
    elapsed = time.perf_counter() - start
    assert results.report is not None and sum(results.report.counts.values()) == n
    tel.shutdown()
    return elapsed


def _paired_order(names: list[str], first: str, second: str, rep: int) -> list[str]:
    """``names`` with ``second`` run right after ``first``, the two swapped on odd repetitions.

    Their ratio (``traced_over_floor``) has a target: run back to back, both see the same moment of
    a shared machine's load (other scenarios ran between them, up to ~2 s of drift), and neither
    always runs first (what the one before leaves behind, e.g. the OTLP runs' threads and heap).
    """
    order = [name for name in names if name != second]
    at = order.index(first)
    order[at:at + 1] = [first, second] if rep % 2 == 0 else [second, first]
    return order


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks executor")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 90 s)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the scenarios by wall clock (default) or by this process's CPU time, all "
                             "threads (steadier on a machine other jobs share; the export threads count too)")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    n = args.tasks
    repeat = args.repeat or (5 if args.quick else 11)

    sampled_off = InMemoryTelemetry(sampled=False)
    unbridged = InMemoryTelemetry(sampled=False, bridged=False)
    user_meters = MeterProvider(metric_readers=[bridged(InMemoryMetricReader())])
    user_tracer = TracerProvider(sampler=ALWAYS_OFF)
    traced_tp = TracerProvider()
    traced_tp.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=n * 2))
    traced_metrics = InMemoryTelemetry(sampled=False)
    peer_tp = TracerProvider()
    peer_tp.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=n * 2))
    peers = {
        "peer_asyncio_instr_traced": _peer(n, peer_tp),
        "peer_asyncio_instr_traced_metrics": _peer(n, peer_tp, InMemoryTelemetry(sampled=False).meter_provider),
    }
    toggles: dict[str, Toggle] = {}
    notes: list[str] = []

    with Sink("grpc") as grpc_sink, Sink("http") as http_sink:
        otlp = {p: _traced_otlp(n, p, sink.endpoint) for p, sink in (("grpc", grpc_sink), ("http", http_sink))}
        scenarios: dict[str, Callable[[], Awaitable[Any]]] = {
            "gather": _gather(n),
            "no_sdk": _wave(n),
            "metrics_sampled_off": _wave(n, **sampled_off.providers),
            "metrics_unbridged": _wave(n, **unbridged.providers),
            "metrics_user_provider_bridged": _wave(n, tracer_provider=user_tracer, meter_provider=user_meters),
            "traced": _wave(n, tracer_provider=traced_tp, meter_provider=traced_metrics.meter_provider),
            "traced_otlp_grpc": otlp["grpc"][0],
            "traced_otlp_http": otlp["http"][0],
            "floor_span_only": _wave(n, hooks=(_SpanOnly(traced_tp),), instrument=False),
            # A model of the peer (see _PeerModel), on the same tracer provider and a meter like traced's.
            "peer_model_traced_metrics": _peer_model(n, traced_tp, InMemoryTelemetry(sampled=False).meter_provider),
            "gather_plus_span": _gather_span(n, traced_tp),
        }
        for name, peer in peers.items():
            if peer is None:
                notes.append(f"{name}: skipped, opentelemetry-instrumentation-asyncio is not installed "
                             "(pip install -e '.[bench-peers]'; it may lag the newest SDK)")
            else:
                scenarios[name], toggles[name] = peer

        def timed(name: str) -> float:
            toggle = toggles.get(name)
            if toggle is not None:
                toggle(True)
            try:
                return _time(scenarios[name], clock)
            finally:
                if toggle is not None:
                    toggle(False)
                traced_tp.force_flush()
                peer_tp.force_flush()

        for name in scenarios:  # warm-up
            timed(name)
        times: dict[str, list[float]] = {k: [] for k in scenarios}
        for rep in range(repeat):
            for name in _paired_order(list(scenarios), "traced", "floor_span_only", rep):
                times[name].append(timed(name))
        for _, close in otlp.values():
            close()
        export = {f"otlp_{p}": _export_drops(n, p, sink.endpoint) for p, sink in (("grpc", grpc_sink),
                                                                                   ("http", http_sink))}

    base = times["gather"]
    ratios = {
        k: round(statistics.median(t / b for t, b in zip(v, base, strict=True)), 3)
        for k, v in times.items() if k != "gather"
    }
    ratios_out: dict[str, float | None] = dict(ratios)
    for name, peer in peers.items():
        if peer is None:
            ratios_out[name] = None  # skipped: see "notes"
    traced_over_floor = round(statistics.median(
        t / f for t, f in zip(times["traced"], times["floor_span_only"], strict=True)), 3)
    traced_over_peer_model = round(statistics.median(
        t / p for t, p in zip(times["traced"], times["peer_model_traced_metrics"], strict=True)), 3)
    # the real peer, when installed (pip install -e '.[bench-peers]'): the equal-information comparison
    traced_over_peer = round(statistics.median(
        t / p for t, p in zip(times["traced"], times["peer_asyncio_instr_traced_metrics"], strict=True)), 3
    ) if "peer_asyncio_instr_traced_metrics" in times else None
    us = {k: round(statistics.median(v) / n * 1e6, 3) for k, v in times.items()}
    small, large = n, n * 10
    peaks = {str(small): asyncio.run(_stream_peak(small)), str(large): asyncio.run(_stream_peak(large))}
    left_n = 200_000 if args.quick else 1_000_000
    left_early = {kind: round(statistics.median(asyncio.run(_left_early(left_n, kind == "stream_map"))
                                                for _ in range(3)), 3) for kind in ("stream_map", "stream_list")}
    keep_all, sampled = _tail_sampling(n, None), _tail_sampling(n, 0.01)
    tail = {
        "keep_all": keep_all, "ratio_0.01": sampled,
        "exported_span_ratio": round(sampled["exported_spans"] / keep_all["exported_spans"], 4),
        "export_cpu_ratio": round(sampled["export_cpu_ms"] / keep_all["export_cpu_ms"], 4)
        if keep_all["export_cpu_ms"] else None,
    }
    import_ms: dict[str, float] = {}
    for _ in range(3 if args.quick else 5):  # interleaved
        for key, statement in (("shannon_otel", "import shannon_otel"),
                               ("opentelemetry_trace", "import opentelemetry.trace")):
            import_ms.setdefault(key, 0.0)
            import_ms[key] += _import_ms(statement, 1)
    rounds = 3 if args.quick else 5
    import_ms = {k: round(v / rounds, 2) for k, v in import_ms.items()}

    for k, v in ratios.items():
        print(f"{k:34s} {v:6.3f}x gather   {us[k]:8.3f} us/task")
    print(f"{'gather':34s} {1:6.3f}x          {us['gather']:8.3f} us/task")
    print(f"traced / floor_span_only: {traced_over_floor:.3f}x (target <= 1.25)")
    print(f"traced / peer_model_traced_metrics: {traced_over_peer_model:.3f}x (a model of the peer, not the peer; "
          "below 1: traced is cheaper)")
    if traced_over_peer is not None:
        print(f"traced / peer_asyncio_instr_traced_metrics: {traced_over_peer:.3f}x (the peer itself, traced and its "
              "meter on; target: below 1)")
    for name, row in export.items():
        print(f"export {name}: {row['exported_spans_per_s']} spans/s sent, {row['produced_spans_per_s']} spans/s "
              f"produced, {row['dropped_spans']} dropped (default queue of 2048)")
    print(f"tail sampling, {n} healthy tasks: {sampled['exported_spans']} spans exported at ratio 0.01 vs "
          f"{keep_all['exported_spans']} keeping all; export CPU {sampled['export_cpu_ms']} ms vs "
          f"{keep_all['export_cpu_ms']} ms")
    print(f"import: shannon_otel {import_ms['shannon_otel']} ms, opentelemetry.trace "
          f"{import_ms['opentelemetry_trace']} ms")
    print(f"stream peak memory: {peaks[str(small)] // 1024} KiB for {small} tasks, "
          f"{peaks[str(large)] // 1024} KiB for {large} tasks")
    print(f"stream left early over {left_n} items: {left_early['stream_map']} s (stream_map of a range), "
          f"{left_early['stream_list']} s (stream of a list of partials), medians of 3")
    for note in notes:
        print(f"note: {note}")
    print(json.dumps({
        "suite": "executor", "tasks": n, "repeat": repeat, "clock": args.clock, "max_concurrency": 100,
        "ratios": ratios_out,
        "traced_over_floor": traced_over_floor, "traced_over_peer_model": traced_over_peer_model,
        "traced_over_peer": traced_over_peer,
        "us_per_task": us, "export": export, "tail_sampling": tail,
        "import_ms": import_ms, "notes": notes, "stream_peak_bytes": peaks,
        "stream_memory_ratio_10x_tasks": round(peaks[str(large)] / peaks[str(small)], 3),
        "stream_left_early_items": left_n, "stream_left_early_s": left_early,
    }))
    return 0
