"""Names the telemetry carries: exportable, and written the same everywhere.

A str with a lone surrogate (``os.fsdecode`` of bytes that are not UTF-8: a file name from ``os.listdir``,
a header decoded with ``surrogateescape``) cannot be encoded as UTF-8, which OTLP and Prometheus require:
one wave, operation or breaker so named made every OTLP export of its provider fail -- each span batch
holding it and, its metric series being cumulative, every metric export for the rest of the process
(counted as dropped, nothing delivered). Such a name is now refused where it is given, naming the
parameter. A str subclass (an enum member) is kept as a plain str."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest
from _name_entry_points import ENTRY_POINTS
from _name_entry_points import work as _work

from shannon_otel import CircuitBreaker, Retry, Saga, Step, Wave, configure, record

BAD = os.fsdecode(b"/data/\xff")  # '/data/\udcff'


async def _recording() -> int:
    record(BAD, 1.0)
    return 1


@pytest.mark.parametrize(("where", "parameter", "build"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_a_name_with_a_lone_surrogate_is_refused_naming_the_parameter(
    where: str, parameter: str, build: Callable[[str], Any],
) -> None:
    with pytest.raises(ValueError, match=rf"^{parameter} must be text encodable as UTF-8 .* '\\udcff' at 6"):
        build(BAD)


def test_resource_attributes_and_recorded_measurement_names_are_checked_too() -> None:
    with pytest.raises(ValueError, match=r"resource_attributes\['k'\] must be text encodable as UTF-8"):
        configure("svc", exporter="none", set_global=False, resource_attributes={"k": BAD})
    with pytest.raises(ValueError, match=r"resource_attributes key must be text encodable as UTF-8"):
        configure("svc", exporter="none", set_global=False, resource_attributes={BAD: "v"})
    result = asyncio.run(Wave[int]("w", instrument=False).run([_recording]))
    (error,) = [r.error for r in result.results]
    assert isinstance(error, ValueError) and "record(): name must be text encodable as UTF-8" in str(error)


def test_an_error_type_with_a_lone_surrogate_is_exported() -> None:
    """An exception class of a module loaded under a name made from a file name that is not UTF-8
    (``importlib.util.spec_from_file_location(os.fsdecode(stem), path)``: its classes' ``__module__``) became
    the ``error.type`` of ``shannon.task.outcomes`` as it was: OTLP could not encode it, so every export of
    the cumulative series logged a stack trace and sent the failures without their ``error.type``. It is
    written with U+FFFD."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    from shannon_otel.testing import InMemoryTelemetry

    class FeedError(Exception):
        pass

    FeedError.__module__ = os.fsdecode(b"feed_\xff")

    async def failing() -> int:
        raise FeedError

    tel = InMemoryTelemetry(sampled=False)
    result = asyncio.run(Wave[int]("w", **tel.providers).run([failing]))
    assert type(result.results[0].error) is FeedError  # the user's error is theirs, untouched
    data = tel.metric_reader.get_metrics_data()
    assert data is not None
    request = encode_metrics(data)
    tel.shutdown()
    (outcomes,) = [m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                   if m.name == "shannon.task.outcomes"]
    (point,) = outcomes.sum.data_points
    attributes = {kv.key: kv.value.string_value for kv in point.attributes}
    assert attributes["error.type"] == "feed_\ufffd." + FeedError.__qualname__


def test_shared_state_names_are_checked_too() -> None:
    """A Redis key prefix or a shared limit's name is in every key, which redis-py encodes as UTF-8: with a
    lone surrogate every Redis call of it failed inside redis-py (UnicodeEncodeError), never reaching Redis."""
    from shannon_otel import ResourcePool
    from shannon_otel.redis import RedisState, SharedRateLimit

    with pytest.raises(ValueError, match=r"prefix must be text encodable as UTF-8"):
        RedisState("redis://127.0.0.1:1", prefix=BAD)
    with pytest.raises(ValueError, match=r"ResourcePool name must be text encodable as UTF-8"):
        ResourcePool(BAD, 1)
    with pytest.raises(ValueError, match=r"^name must be text encodable as UTF-8"):
        SharedRateLimit(RedisState("redis://127.0.0.1:1"), BAD, rate=1.0)


def test_a_name_given_as_a_str_enum_member_is_written_the_same_in_spans_metrics_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``class Op(str, Enum)`` members as names: the metric attributes carried their characters ("fetch")
    but span names and log lines their ``format()``/``str()`` ("wave Op.FETCH", "retrying Op.FETCH"), so
    the bundled alerts' links to the traces of a wave (``operation=wave <shannon_wave_name>``) found none.
    Names are now kept as plain str."""
    import enum
    import logging

    from shannon_otel import LoggingHook
    from shannon_otel.testing import InMemoryTelemetry

    class Op(str, enum.Enum):  # noqa: UP042  # the pre-3.11 idiom, still common: the case at hand
        FETCH = "fetch"

    tel = InMemoryTelemetry(sampled=True)
    calls = {"n": 0}

    async def flaky() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("once")
        return 1

    logs = [LoggingHook()]  # its own flood limiter: the process's default one may hold back "retrying fetch"

    async def task() -> int:
        await Saga(Op.FETCH, hooks=logs, **tel.providers).run(Step(Op.FETCH, _work))
        await CircuitBreaker(Op.FETCH, hooks=logs, **tel.providers).call(_work)
        return await Retry(name=Op.FETCH, attempts=2, initial=0, maximum=0, hooks=logs, **tel.providers).call(flaky)

    with caplog.at_level(logging.INFO, logger="shannon_otel"):
        asyncio.run(Wave[int](Op.FETCH, hooks=logs, **tel.providers).run([task]))
    names = {s.name for s in tel.spans()}
    assert {"wave fetch", "task fetch", "saga fetch", "step fetch", "fetch"} <= names
    assert not [n for n in names if "Op." in n]
    assert {p.attributes["shannon.wave.name"] for p in tel.points("shannon.task.outcomes")} == {"fetch"}
    assert [type(p.attributes["shannon.wave.name"]) for p in tel.points("shannon.task.outcomes")] == [str]
    assert not [r.getMessage() for r in caplog.records if "Op." in r.getMessage()]
    assert [r for r in caplog.records if "retrying 'fetch'" in r.getMessage()]
    tel.shutdown()
