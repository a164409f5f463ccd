"""One trace across processes, in the real Jaeger: a wave on the client, its tasks on Dask worker
processes that export their own spans (WorkerTelemetry) through the real collector."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import _dask_e2e_tasks as worker_tasks
import dask
import pytest
from distributed import Client, LocalCluster

from shannon_otel import Wave, configure
from shannon_otel.dask import DaskBackend, WorkerTelemetry

if TYPE_CHECKING:
    from _stack import Collector, Jaeger

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::ResourceWarning")]
RUN = uuid.uuid4().hex[:8]


def test_client_and_worker_spans_form_one_trace_in_jaeger(jaeger: Jaeger, collector: Collector) -> None:
    client_service, worker_service = f"dask-client-{RUN}", f"dask-worker-{RUN}"
    telemetry = configure(
        client_service, exporter="otlp_grpc", endpoint=collector.otlp_grpc_endpoint, set_global=False,
    )

    async def main() -> Any:
        async with Client(cluster.scheduler_address, asynchronous=True) as client:
            await client.register_plugin(
                WorkerTelemetry(worker_service, exporter="otlp_grpc", endpoint=collector.otlp_grpc_endpoint),
            )
            backend = DaskBackend(client)
            wave: Wave[int] = Wave("fan-out", max_concurrency=4, tracer_provider=telemetry.tracer_provider,
                        meter_provider=telemetry.meter_provider)
            result = await wave.run(backend.map(worker_tasks.traced_square, range(6)))
            await client.unregister_worker_plugin(WorkerTelemetry.name)  # teardown flushes the workers
            return result

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", host="127.0.0.1",
        silence_logs=40,
    ) as cluster:
        result = asyncio.run(main())
    telemetry.shutdown()
    assert result.values() == [x * x for x in range(6)]

    # 1 wave + 6 tasks on the client, 6 remote + 6 user spans on the workers.
    traces = jaeger.wait_for_traces(client_service, min_spans=19, timeout=60)
    assert len(traces) == 1, [t["traceID"] for t in traces]
    spans = traces[0]["spans"]
    processes = traces[0]["processes"]
    by_id = {s["spanID"]: s for s in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        assert len(refs) == 1, span
        found: dict[str, Any] = by_id[refs[0]["spanID"]]
        return found

    def service(span: dict[str, Any]) -> str:
        return str(processes[span["processID"]]["serviceName"])

    waves = [s for s in spans if s["operationName"] == "wave fan-out"]
    tasks = [s for s in spans if s["operationName"] == "task traced_square"]
    remotes = [s for s in spans if s["operationName"] == "remote traced_square"]
    users = [s for s in spans if s["operationName"] == "user work"]
    assert (len(waves), len(tasks), len(remotes), len(users)) == (1, 6, 6, 6)
    assert {service(s) for s in waves + tasks} == {client_service}
    assert {service(s) for s in remotes + users} == {worker_service}
    assert all(parent(t) is waves[0] for t in tasks)
    assert {parent(r)["spanID"] for r in remotes} == {t["spanID"] for t in tasks}
    assert {parent(u)["spanID"] for u in users} == {r["spanID"] for r in remotes}
    # each worker process has its own service.instance.id
    tags = [tag for s in remotes for tag in processes[s["processID"]]["tags"]]
    instance_ids = {tag["value"] for tag in tags if tag["key"] == "service.instance.id"}
    assert 1 <= len(instance_ids) <= 2
    assert all(any(t["key"] == "shannon.dask.worker" for t in r["tags"]) for r in remotes)
