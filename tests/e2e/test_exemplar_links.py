"""The exemplar dots of the bundled dashboards open the trace (and span) they are about: a wave with
failures and timeouts and a retried call exported through the real collector, each exemplar Prometheus
stores on the library's histograms looked up in the real Jaeger."""

from __future__ import annotations

import asyncio
import functools
import random
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from _stack import wait_until

from shannon_otel import Retry, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel.testing import run_virtual

if TYPE_CHECKING:
    from _stack import Collector, Jaeger, Prometheus

pytestmark = pytest.mark.e2e
SERVICE = f"exemplars-{uuid.uuid4().hex[:8]}"
KINDS = ["ok"] * 6 + ["fail"] * 3 + ["timeout"] * 2
RETRIED = 4


class BoomError(Exception):
    """A failing task."""


async def _task(kind: str) -> str:
    await asyncio.sleep(0.05)
    if kind == "fail":
        raise BoomError(kind)
    if kind == "timeout":
        await asyncio.sleep(10)
    return kind


async def _workload(providers: dict[str, Any]) -> None:
    clock = asyncio.get_running_loop().time
    wave: Wave[str] = Wave("ex", max_concurrency=len(KINDS), task_timeout=1.0, clock=clock, **providers)
    await wave.run([functools.partial(_task, k) for k in KINDS])
    retry = Retry(attempts=3, initial=0.01, random=random.Random(1), name="ex.retry", clock=clock, **providers)
    for _ in range(RETRIED):
        tries = [0]

        async def flaky(tries: list[int] = tries) -> int:
            tries[0] += 1
            if tries[0] == 1:
                raise BoomError("first")
            return tries[0]

        await retry.call(flaky)


@pytest.fixture(scope="module")
def exported(collector: Collector, jaeger: Jaeger, prometheus: Prometheus) -> None:
    """The workload, then two exports back to back (no periodic one between): the collector's Prometheus
    endpoint shows the second, as it would once a process exported again after its last retry or wave (with
    the SDK's exemplars, which an export carries once, a scrape then found none)."""
    wait_until(prometheus.targets_up, what="Prometheus scraping the collector")
    with configure(SERVICE, exporter="otlp_grpc", endpoint=collector.otlp_grpc_endpoint, metric_interval_s=3600,
                   set_global=False) as telemetry:
        providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
        run_virtual(_workload(providers))
        assert telemetry.force_flush(10)
        assert telemetry.meter_provider.force_flush(10_000)


def _exemplars(prometheus: Prometheus, metric: str) -> list[dict[str, str]]:
    def found() -> list[dict[str, str]]:
        series = prometheus.exemplars(f'{metric}_bucket{{job="{SERVICE}"}}')
        return [e["labels"] for s in series for e in s["exemplars"]]

    return wait_until(found, timeout=60, what=f"exemplars of {metric} for {SERVICE}")


def _span(jaeger: Jaeger, labels: dict[str, str]) -> dict[str, Any]:
    """The span an exemplar names, from the trace it names (which must exist in Jaeger)."""
    trace_id, span_id = labels["trace_id"], labels["span_id"]
    trace = wait_until(lambda: _trace_or_none(jaeger, trace_id) or {}, timeout=30,
                       what=f"trace {trace_id} in Jaeger")
    spans: dict[str, dict[str, Any]] = {s["spanID"].lstrip("0"): s for s in trace["spans"]}
    assert span_id.lstrip("0") in spans, (labels, sorted(s["operationName"] for s in trace["spans"]))
    return spans[span_id.lstrip("0")]


def _trace_or_none(jaeger: Jaeger, trace_id: str) -> dict[str, Any] | None:
    try:
        return jaeger.trace(trace_id)
    except AssertionError:  # 404 until the batch arrives
        return None


@pytest.mark.parametrize(("metric", "operation"), [
    (tel.TASK_DURATION.prometheus, "task ex"),
    (tel.TASK_QUEUE_WAIT_DURATION.prometheus, "task ex"),
    (tel.WAVE_DURATION.prometheus, tel.SPAN_WAVE.format(wave="ex")),
    (tel.RETRY_DELAY_DURATION.prometheus, "ex.retry"),  # the retried call's operation span
])
def test_every_exemplar_opens_its_span_in_jaeger(
    jaeger: Jaeger, prometheus: Prometheus, exported: None, metric: str, operation: str,
) -> None:
    names = [_span(jaeger, labels)["operationName"] for labels in _exemplars(prometheus, metric)]
    assert set(names) == {operation}, names
