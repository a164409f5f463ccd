"""Every entry point that takes a name the telemetry carries, to be given a bad one.

``ENTRY_POINTS`` rows are ``(where, parameter, build)``: ``build(name)`` passes ``name`` to the entry point
``where`` (raising what it raises), and ``parameter`` is the name its error gives the argument. Shared by the
tests of the length limit (test_name_length.py) and of names that are not UTF-8 (test_unencodable_names.py),
so that an entry point added here is checked for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from shannon_otel import (
    BreakerRegistry,
    CircuitBreaker,
    Degrade,
    Fallback,
    Hedge,
    Pipeline,
    ResourcePool,
    Retry,
    Saga,
    Step,
    TaskSpec,
    Timeout,
    Wave,
    configure,
    record,
    task,
)


async def work() -> int:
    return 1


def _in_a_step(name: str) -> None:
    async def main() -> None:
        async with Saga("checkout").begin() as tx:
            await tx.step(name, work)

    asyncio.run(main())


def _recorded(name: str) -> None:
    async def recording() -> int:
        record(name, 1.0)
        return 1

    result = asyncio.run(Wave[int]("w", instrument=False).run([recording]))
    error = result.results[0].error
    if error is not None:
        raise error


def _service(name: str) -> None:
    from shannon_otel.testing import InMemoryTelemetry

    InMemoryTelemetry(service_name=name).shutdown()


def _redis_prefix(name: str) -> None:
    pytest.importorskip("redis")
    from shannon_otel.redis import RedisState

    RedisState("redis://127.0.0.1:1", prefix=name)


def _shared_limit(name: str) -> None:
    pytest.importorskip("redis")
    from shannon_otel.redis import RedisState, SharedRateLimit

    SharedRateLimit(RedisState("redis://127.0.0.1:1"), name, rate=1.0)


ENTRY_POINTS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("Wave", "name", lambda n: Wave[int](n)),
    ("TaskSpec", "name", lambda n: TaskSpec(work, name=n)),
    ("task", "name", lambda n: task(work, name=n)),
    ("record", "record\\(\\): name", _recorded),
    ("ResourcePool", "ResourcePool name", lambda n: ResourcePool(n, 1)),
    ("Retry", "name", lambda n: Retry(name=n)),
    ("Timeout", "name", lambda n: Timeout(1.0, name=n)),
    ("Fallback", "name", lambda n: Fallback(lambda error: work(), name=n)),
    ("Hedge", "name", lambda n: Hedge(1.0, name=n)),
    ("Degrade", "name", lambda n: Degrade(default=0, name=n)),
    ("Pipeline", "name", lambda n: Pipeline(Retry(), name=n)),
    ("CircuitBreaker", "name", lambda n: CircuitBreaker(n)),
    ("BreakerRegistry.get", "name", lambda n: BreakerRegistry().get(n)),
    ("Saga", "name", lambda n: Saga(n)),
    ("Step", "name", lambda n: Step(n, work)),
    ("Transaction.step", "name", _in_a_step),
    ("Degrade.flag", "reason", lambda n: Degrade(default=0).flag(n)),
    ("configure", "service_name", lambda n: configure(n, exporter="none", set_global=False).shutdown()),
    ("InMemoryTelemetry", "service_name", _service),
    ("RedisState", "prefix", _redis_prefix),
    ("SharedRateLimit", "name", _shared_limit),
]
