"""Executor overhead: 10,000 no-op tasks, side by side in one process, against bare asyncio.gather.

Scenarios (interleaved, >= 5 repetitions, medians of per-repetition ratios to gather):
  no_sdk               Wave with the OTel hook but no SDK providers (the API's no-ops)
  metrics_sampled_off  SDK metrics (in-process histogram bridge) + SDK tracing sampled off
  metrics_unbridged    same, but through plain SDK calls (what a user-built MeterProvider gets)
  traced               every task span recorded, BatchSpanProcessor to an exporter that discards
  peer_asyncio_instr_traced  opentelemetry-instrumentation-asyncio tracing the same coroutines
  floor_span_only      the Wave with a bare hook that only starts, attaches, detaches and ends one SDK span
                       per task: the cost of the SDK span itself, the floor under "traced"
  gather_plus_span     asyncio.gather over coroutines that each open ``start_as_current_span``
The Wave runs with max_concurrency=100 (workers, not one asyncio task per input).
Memory: tracemalloc peak of the streaming mode for N and 10 x N lazy inputs (should not grow).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from shannon_otel import Hook, Wave, WaveObserver, WaveStarted
from shannon_otel.testing import InMemoryTelemetry


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


def _peer(n: int, tracer_provider: TracerProvider) -> tuple[Callable[[], Awaitable[Any]], Callable[[bool], None]]:
    os.environ["OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE"] = "noop"
    from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor

    instrumentor = AsyncioInstrumentor()

    async def run() -> None:
        await asyncio.gather(*(noop() for _ in range(n)))

    def toggle(on: bool) -> None:
        if on:
            instrumentor.instrument(tracer_provider=tracer_provider)
        else:
            instrumentor.uninstrument()

    return run, toggle


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


def _time(fn: Callable[[], Awaitable[Any]]) -> float:
    async def timed() -> float:
        gc.collect()
        start = time.perf_counter()
        await fn()
        return time.perf_counter() - start

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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks executor")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 60 s)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.tasks
    repeat = args.repeat or (5 if args.quick else 11)

    sampled_off = InMemoryTelemetry(sampled=False)
    unbridged = InMemoryTelemetry(sampled=False, bridged=False)
    traced_tp = TracerProvider()
    traced_tp.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=n * 2))
    traced_metrics = InMemoryTelemetry(sampled=False)
    peer_tp = TracerProvider()
    peer_tp.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=n * 2))
    peer_run, peer_toggle = _peer(n, peer_tp)

    scenarios: dict[str, Callable[[], Awaitable[Any]]] = {
        "gather": _gather(n),
        "no_sdk": _wave(n),
        "metrics_sampled_off": _wave(n, **sampled_off.providers),
        "metrics_unbridged": _wave(n, **unbridged.providers),
        "traced": _wave(n, tracer_provider=traced_tp, meter_provider=traced_metrics.meter_provider),
        "peer_asyncio_instr_traced": peer_run,
        "floor_span_only": _wave(n, hooks=(_SpanOnly(traced_tp),), instrument=False),
        "gather_plus_span": _gather_span(n, traced_tp),
    }
    times: dict[str, list[float]] = {k: [] for k in scenarios}
    for name, fn in scenarios.items():  # warm-up
        if name.startswith("peer"):
            peer_toggle(True)
        _time(fn)
        if name.startswith("peer"):
            peer_toggle(False)
    for _ in range(repeat):
        for name, fn in scenarios.items():
            if name.startswith("peer"):
                peer_toggle(True)
            times[name].append(_time(fn))
            if name.startswith("peer"):
                peer_toggle(False)
            traced_tp.force_flush()
            peer_tp.force_flush()

    base = times["gather"]
    ratios = {
        k: round(statistics.median(t / b for t, b in zip(v, base, strict=True)), 3)
        for k, v in times.items() if k != "gather"
    }
    us = {k: round(statistics.median(v) / n * 1e6, 3) for k, v in times.items()}
    small, large = n, n * 10
    peaks = {str(small): asyncio.run(_stream_peak(small)), str(large): asyncio.run(_stream_peak(large))}
    for k, v in ratios.items():
        print(f"{k:28s} {v:6.3f}x gather   {us[k]:8.3f} us/task")
    print(f"{'gather':28s} {1:6.3f}x          {us['gather']:8.3f} us/task")
    print(f"stream peak memory: {peaks[str(small)] // 1024} KiB for {small} tasks, "
          f"{peaks[str(large)] // 1024} KiB for {large} tasks")
    print(json.dumps({
        "suite": "executor", "tasks": n, "repeat": repeat, "max_concurrency": 100, "ratios": ratios,
        "us_per_task": us, "stream_peak_bytes": peaks,
        "stream_memory_ratio_10x_tasks": round(peaks[str(large)] / peaks[str(small)], 3),
    }))
    return 0
