"""An injected clock reading numbers that are not builtin floats: every value shown stays a builtin number.

A clock returning ``numpy.float32``, ``numpy.int64`` or ``Fraction`` readings passed the reading check (each
is a real number) and made every duration, report field and event field of its type: the OTel SDK warned
"Invalid type numpy.float32 for attribute value" and dropped the attribute (or exported it as a string), the
saga's compensation and the breaker's events carried numpy scalars, a summary log record's interval a
``Fraction``. Each wave, policy, saga and logging hook now reads its clock as float seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import logging
import numbers
import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from _log_records import Records

import shannon_otel as so
from shannon_otel.testing import FakeClock, InMemoryTelemetry, run_virtual

np = pytest.importorskip("numpy")

_KINDS: dict[str, Callable[[float], object]] = {
    "numpy.float32": lambda t: np.float32(t),
    "numpy.float64": lambda t: np.float64(t),
    "numpy.int64": lambda t: np.int64(round(t)),
    "Fraction": fractions.Fraction,
    "int": round,
}


def _foreign(value: object, path: str = "") -> Iterator[str]:
    """The paths inside ``value`` of numbers that are not builtin int/float/bool (numpy scalars, Fractions)."""
    if isinstance(value, numbers.Number):
        kind: type = type(value)
        if kind not in (int, float, bool) and not isinstance(value, so.BreakerState | so.Outcome):
            yield f"{path}: {type(value).__module__}.{type(value).__qualname__}"
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _foreign(v, f"{path}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _foreign(v, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _foreign(getattr(value, f.name), f"{path}.{f.name}")


class _Seen(so.Hook, so.WaveObserver, so.CallObserver, so.SagaObserver):
    """Every event and argument any entry point hands its hooks."""

    def __init__(self) -> None:
        self.seen: list[object] = []


def _recorder(name: str) -> Callable[..., object]:
    def record(self: _Seen, *args: object) -> object:
        self.seen.append((name, args))
        return self
    return record


for _name in ("wave_started", "call_started", "saga_started", "breaker_registered", "breaker_transition",
              "task_started", "task_finished", "task_skipped", "wave_finished", "attempt_started",
              "timed_out", "attempt_finished", "retry_scheduled", "rejected", "degraded", "call_finished",
              "step_started", "step_finished", "compensation_started", "compensation_finished", "saga_finished"):
    setattr(_Seen, _name, _recorder(_name))


async def _work(clk: Callable[[], Any], tel: InMemoryTelemetry, hooks: list[so.Hook]) -> list[object]:
    """Run every component taking ``clock=`` on ``clk``; return what the user gets back from each."""
    kw: dict[str, Any] = {"clock": clk, "hooks": hooks, **tel.providers}
    shown: list[object] = []

    async def slow() -> int:
        await asyncio.sleep(1.5)
        return 1

    async def broken() -> None:
        await asyncio.sleep(1.0)
        raise ValueError("down")

    result = await so.Wave("w", rate_limit=2.0, task_timeout=5.0, **kw).run([slow, broken, slow])
    shown += [result.report, result.results]

    tries = 0

    async def flaky() -> int:
        nonlocal tries
        tries += 1
        await asyncio.sleep(1.0)
        if tries % 3:
            raise ValueError("again")
        return tries

    retry = so.Retry(attempts=3, initial=1.0, budget_s=60.0, **kw)
    shown += [await retry.call(flaky), await retry.call(flaky)]  # the second's retries: a summary log record
    shown.append(await so.Pipeline(so.Retry(attempts=3, initial=1.0), so.Timeout(30.0), **kw).call(flaky))

    breaker = so.CircuitBreaker("b", failure_threshold=2, slow_call_s=0.5, reset_timeout=5.0, **kw)
    for _ in range(3):
        with pytest.raises((ValueError, so.CircuitOpenError)):
            await breaker.call(broken)
    await asyncio.sleep(6.0)
    shown.append(await breaker.call(slow))

    degrade = so.Degrade(last_good=True, on=ValueError, **kw)
    await degrade.call(slow)
    await asyncio.sleep(2.0)
    shown.append(await degrade.call(broken))

    async def undo(value: object) -> None:
        await asyncio.sleep(1.0)

    with pytest.raises(so.SagaError) as failed:
        await so.Saga("s", **kw).run(so.Step("a", slow, undo), so.Step("b", broken))
    shown.append(failed.value.result)
    return shown


@pytest.mark.parametrize("kind", list(_KINDS), ids=list(_KINDS))
def test_every_value_shown_is_a_builtin_number_whatever_number_type_the_clock_reads(
    kind: str, caplog: pytest.LogCaptureFixture,
) -> None:
    tel, seen, records = InMemoryTelemetry(), _Seen(), Records(logging.DEBUG)
    recorder = so.RunRecorder()
    log = logging.getLogger("shannon_otel")
    log.addHandler(records)
    try:
        async def main() -> list[object]:
            loop = asyncio.get_running_loop()
            read = _KINDS[kind]
            clk: Any = lambda: read(loop.time())  # noqa: E731
            logs = so.LoggingHook(clock=clk, interval_s=4.0)  # retries logged as they start, 3 s apart: a summary
            return await _work(clk, tel, [seen, recorder, logs])

        with caplog.at_level(logging.WARNING, logger="opentelemetry"):
            shown = run_virtual(main())
    finally:
        log.removeHandler(records)

    assert not [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")]
    found = list(_foreign(shown, "returned"))
    found += _foreign(seen.seen, "events")
    found += _foreign(recorder.report(), "RunRecorder.report()")
    for span in tel.spans():
        found += _foreign(dict(span.attributes or {}), f"span {span.name}")
        for event in span.events:
            found += _foreign(dict(event.attributes or {}), f"span {span.name} event {event.name}")
    for name, metric in tel.metrics().items():
        for point in metric.data.data_points:
            found += _foreign(dict(point.attributes or {}), f"metric {name} attributes")
            values = {k: getattr(point, k) for k in ("value", "sum", "min", "max") if hasattr(point, k)}
            found += _foreign(values, f"metric {name}")
    for record in records.records:
        found += _foreign({k: v for k, v in vars(record).items() if k.startswith("shannon.")}, "log record")
    assert [r for r in records.records if "shannon.log.interval" in vars(r)], "a summary record was written"
    assert found == []


def test_a_clock_is_read_as_given_by_equality_repr_pickle_and_replace() -> None:
    """The float-reading clock a wave or policy keeps stands for the user's: a wave or policy built
    with it equals one built with the clock itself, shows it, and copies as it."""
    clock = FakeClock()
    wave: so.Wave[Any] = so.Wave("w", clock=clock, instrument=False)
    assert wave == so.Wave("w", clock=clock, instrument=False)
    assert repr(clock) in repr(wave)
    assert wave.clock() == 1000.0 and type(wave.clock()) is float
    assert dataclasses.replace(wave, name="v").clock == wave.clock
    copied = pickle.loads(pickle.dumps(so.Retry(clock=_half, instrument=False)))
    assert copied == so.Retry(clock=_half, instrument=False) and type(copied.clock()) is float


def _half() -> Any:  # a Fraction
    return fractions.Fraction(1, 2)


def test_a_clock_reading_an_int_beyond_the_float_range_is_refused_naming_it() -> None:
    """10**400 compared as finite, then float() of it raised a bare OverflowError deep in the wave."""
    wave: so.Wave[Any] = so.Wave("w", clock=lambda: 10**400, instrument=False)

    async def work() -> None:
        return None

    with pytest.raises(ValueError, match=r"^clock must return finite seconds"):
        run_virtual(wave.run([work]))


def test_the_default_clocks_are_kept_as_they_are() -> None:
    """The default clock's hot path costs no extra call: it is not wrapped."""

    assert so.Retry().clock is time.perf_counter
    assert so.Wave("w").clock is time.perf_counter
    assert so.CircuitBreaker("b").clock is time.perf_counter
    assert so.Retry(clock=time.monotonic).clock is time.monotonic
