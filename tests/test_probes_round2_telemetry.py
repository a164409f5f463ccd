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
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from shannon_otel import (
    AnomalyDetector,
    AnomalyHook,
    _clock,
)
from shannon_otel import _telemetry as tel
from shannon_otel._events import TaskFinished, WaveStarted
from shannon_otel._telemetry import Outcome
from shannon_otel.anomaly import LATENCY, THROUGHPUT, Anomaly, DetectorConfig


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
