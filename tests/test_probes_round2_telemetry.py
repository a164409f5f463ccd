"""Adversarial probes, second round, of the telemetry and backends a user sees: the Prometheus endpoint
fed by a user's own instruments (compared with the collector's exporter on the same points), the anomaly
hook under a stepping clock, the detector's block inputs and threads, delivery (flushes against a silent
backend, held-back log repeats), the metrics bridge, shared-state telemetry, worker set-up.
Each test failed before its fix (or is a strict xfail naming a known limit)."""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from shannon_otel import _telemetry as tel


@pytest.mark.parametrize("timeout", [7200, 1e9, True])
def test_worker_telemetry_refuses_on_the_client_an_export_timeout_configure_refuses(timeout: Any) -> None:
    """``WorkerTelemetry(export_timeout_s=7200)`` (or True) was built, then configure() raised in every
    worker's setup: the error showed up in the workers' logs, not at the line that made the plugin."""
    from shannon_otel.dask import WorkerTelemetry

    with pytest.raises((TypeError, ValueError), match="export_timeout_s"):
        WorkerTelemetry("svc", exporter="none", export_timeout_s=timeout)
    WorkerTelemetry("svc", exporter="none", export_timeout_s=3600)  # configure's upper bound still passes


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
