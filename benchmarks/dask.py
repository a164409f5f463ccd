"""A wave on a Dask cluster vs plain Dask: ``python -m benchmarks dask [--quick]``.

2,000 tasks of ~1 ms on a 2-worker ``LocalCluster`` (worker processes, one thread each). Variants,
interleaved over ``R`` repetitions, each timed from the first submission until it has its results and
the scheduler has forgotten its tasks (released: the same end point for every row, see ``_released``):
``plain`` is ``client.map`` + ``client.gather`` of the same function; ``no_sdk`` is
``Wave.run(DaskBackend.map(...))`` with no OTel SDK; ``traced`` is the same with an SDK tracer
provider (every task span recorded, batch-exported to a sink that discards) and a user-built SDK
meter provider with its reader wrapped by ``bridged()``, the documented way to keep the per-task
histograms fast (a plain reader records every task through the SDK calls). Each variant
starts on a settled cluster (no task left on the scheduler).
Reported: medians, ratios to ``plain``, tasks/s, CPU per task (client process, which hosts the
scheduler, plus workers), and beside them the ratios timed to the last result only. Last line: one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from benchmarks._dask_work import busy_ms, scheduler_tasks


class _Discard:
    """A span exporter that accepts and drops everything (the cost measured is ours, not a network's)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def _settle(client: Any) -> None:
    """Wait until the scheduler holds no task: the previous variant's released futures are forgotten.

    Plain Dask drops its 2,000 futures at once when it ends (our backend releases each as its task
    finishes), and the scheduler and workers spend a while forgetting them: without this, that
    cleanup is timed as part of whichever variant runs next.
    """
    gc.collect()
    while await client.run_on_scheduler(scheduler_tasks):  # noqa: ASYNC110 - polling another component
        await asyncio.sleep(0.01)


async def _released(scheduler: Any, limit_s: float = 10.0) -> bool:
    """Wait until the scheduler (in this process) holds no task; False if a collection was needed.

    The end point of every timed run. A result in hand is not the end of the cluster's work: each
    dropped future sends a release message, and the scheduler and workers forget its task. The
    backend drops each future as its result is delivered, inside its run; plain drops its 2,000 when
    the caller lets go of them, after its gather returns. Timing each row to its last result timed
    that work for the backend and not for plain; timing each row until the scheduler has forgotten
    its tasks times the same work for both. Polled by reading the scheduler object of the
    ``LocalCluster`` (same process, no message), every millisecond.
    """
    deadline = time.perf_counter() + limit_s
    while scheduler.tasks:
        if time.perf_counter() > deadline:  # a future kept alive by a reference cycle: collect it
            gc.collect()
            await _settle_tasks(scheduler)
            return False
        await asyncio.sleep(0.001)
    return True


async def _settle_tasks(scheduler: Any) -> None:
    while scheduler.tasks:  # noqa: ASYNC110 - polling another component
        await asyncio.sleep(0.01)


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import Client, LocalCluster
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from shannon_otel import Wave, bridged
    from shannon_otel.dask import DaskBackend

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Discard()))  # type: ignore[arg-type]
    meter_provider = MeterProvider(metric_readers=[bridged(InMemoryMetricReader())])
    n = args.tasks
    load_start = os.getloadavg()[0]
    async with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, asynchronous=True, dashboard_address="127.0.0.1:0",
        host="127.0.0.1", silence_logs=40,
    ) as cluster, Client(cluster, asynchronous=True) as client:
        backend = DaskBackend(client)
        plain_wave = Wave("bench-no-sdk", max_concurrency=None, instrument=False)
        traced_wave = Wave("bench-traced", max_concurrency=None, tracer_provider=tracer_provider,
                           meter_provider=meter_provider)

        async def plain(n: int = n) -> list[int]:
            return list(await client.gather(client.map(busy_ms, range(n), pure=False)))

        async def no_sdk(n: int = n) -> list[Any]:
            return (await plain_wave.run(backend.map(busy_ms, range(n)))).values()

        async def traced(n: int = n) -> list[Any]:
            return (await traced_wave.run(backend.map(busy_ms, range(n)))).values()

        variants: dict[str, Callable[..., Awaitable[list[Any]]]] = {
            "plain": plain, "no_sdk": no_sdk, "traced": traced,
        }
        for variant in variants.values():  # warm up: workers import shannon_otel on its first task
            await variant(200)
        scheduler = cluster.scheduler  # in this process: polled without a message (see _released)
        times: dict[str, list[float]] = {k: [] for k in variants}
        to_results: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        cpu_client: dict[str, list[float]] = {k: [] for k in variants}
        collected = 0
        for rep in range(args.repetitions):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                await _settle(client)
                workers_start = sum((await client.run(time.process_time)).values())
                client_start = time.process_time()
                start = time.perf_counter()
                values = await variants[name]()
                to_results[name].append(time.perf_counter() - start)
                ok = values == list(range(n))
                del values  # plain's futures were dropped with its gather's list; the backend's as delivered
                collected += not await _released(scheduler)
                times[name].append(time.perf_counter() - start)
                client_end = time.process_time()
                workers_end = sum((await client.run(time.process_time)).values())
                cpu[name].append(client_end - client_start + workers_end - workers_start)
                cpu_client[name].append(client_end - client_start)
                assert ok, f"{name} returned wrong results"
    tracer_provider.shutdown()
    medians = {k: statistics.median(v) for k, v in times.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
    client_medians = {k: statistics.median(v) for k, v in cpu_client.items()}
    results_medians = {k: statistics.median(v) for k, v in to_results.items()}
    return {
        "suite": "dask",
        "tasks": n,
        "repetitions": args.repetitions,
        "median_s": {k: round(v, 4) for k, v in medians.items()},
        "ratios": {k: round(medians[k] / medians["plain"], 3) for k in ("traced", "no_sdk")},
        "tasks_per_s": {k: round(n / v, 1) for k, v in medians.items()},
        # CPU of the client process (it hosts the scheduler) and the workers: steadier than wall
        # time on a shared machine, and on a saturated one what the wall time follows.
        "cpu_us_per_task": {k: round(v * 1e6 / n) for k, v in cpu_medians.items()},
        # the client process's share of it (the rest is the workers')
        "client_cpu_us_per_task": {k: round(v * 1e6 / n) for k, v in client_medians.items()},
        "cpu_ratios": {k: round(cpu_medians[k] / cpu_medians["plain"], 3) for k in ("traced", "no_sdk")},
        # Timed to the last result only (the headline before 2026-12-05: plain's release messages fell
        # outside its window, the backend's inside; see _released).
        "ratios_to_results": {k: round(results_medians[k] / results_medians["plain"], 3) for k in ("traced", "no_sdk")},
        # runs whose tasks the scheduler forgot only after a forced collection (0 expected)
        "collections_needed": collected,
        "target": {"traced": 1.10},
        # 1-minute load average at the start and the end: the machine's other work, which the wall ratios follow
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dask")
    parser.add_argument("--quick", action="store_true", help="fewer tasks and repetitions")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--repetitions", type=int, default=None)
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (500 if args.quick else 2000)
    args.repetitions = args.repetitions or (3 if args.quick else 7)
    result = asyncio.run(_measure(args))
    for name, seconds in result["median_s"].items():
        ratio = seconds / result["median_s"]["plain"]
        print(
            f"{name:<8} {seconds * 1000:9.1f} ms  {ratio:5.2f}x plain  {result['tasks_per_s'][name]:9.1f} tasks/s"
            f"  cpu {result['cpu_us_per_task'][name]:6d} us/task (client {result['client_cpu_us_per_task'][name]:5d})",
        )
    print(f"timed to the last result only: {result['ratios_to_results']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
