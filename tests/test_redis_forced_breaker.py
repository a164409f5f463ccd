"""A shared breaker forced open (``force_open()``) in one process, as seen by the others, on a real redis-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _redis_server import RedisServer, running_server

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
from shannon_otel import _telemetry as tel
from shannon_otel.redis import RedisState
from shannon_otel.testing import FakeClock, InMemoryTelemetry


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_server(tmp_path) as srv:
        yield srv


async def _ok() -> int:
    return 1


async def _wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _acquires(otel: InMemoryTelemetry) -> int:
    """Admission scripts this process ran against Redis (each answered, so each a duration point)."""
    return sum(p.count for p in otel.points(tel.SHARED_DURATION.name)
               if p.attributes.get(tel.SHARED_OPERATION) == "acquire")


def test_a_breaker_forced_open_elsewhere_rejects_here_without_asking_redis_even_when_redis_goes(
    server: RedisServer,
) -> None:
    """Bug: ``force_open()`` reached the other processes as a plain OPEN: past their reset timeout, every call
    there asked Redis (one round trip per call, each rejected), and once Redis went away (fail-open, the local
    state taking over) their own breaker moved to HALF_OPEN and let calls through a breaker an operator had
    forced open. The forced flag now travels with the state (its reason, ``forced_open``), until a reset."""
    prefix = f"f{uuid.uuid4().hex[:10]}"
    otel = InMemoryTelemetry()
    clock = FakeClock()

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2) as operator, \
                RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=0.2,
                           meter_provider=otel.meter_provider) as replica:
            forcing = CircuitBreaker("api", shared=operator, failure_threshold=1, reset_timeout=30, instrument=False)
            here = CircuitBreaker("api", shared=replica, failure_threshold=1, reset_timeout=30, clock=clock,
                                  instrument=False)
            forcing.force_open()
            await _wait_for(lambda: here.state is BreakerState.OPEN)
            clock.advance(31)  # past the reset timeout here: only the force holds it open
            for _ in range(20):
                with pytest.raises(CircuitOpenError):
                    await here.call(_ok)
            assert _acquires(otel) == 0  # rejected here, as the forcing process rejects, no round trip

            forcing.reset()  # the force ends everywhere with a reset
            await _wait_for(lambda: here.state is BreakerState.CLOSED)
            assert await here.call(_ok) == 1

            forcing.force_open()
            await _wait_for(lambda: here.state is BreakerState.OPEN)
            clock.advance(31)
            server.stop()
            await _wait_for(lambda: not replica.available)  # fail-open: the local state machine takes over
            for _ in range(5):
                with pytest.raises(CircuitOpenError):
                    await here.call(_ok)
            assert here.state is BreakerState.OPEN

    asyncio.run(main())
