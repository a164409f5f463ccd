"""A shared breaker's clock failing as a half-open probe's result is recorded: the probe is reported to Redis
once, and left uncounted there as it is here (its slot given back). Each test runs its own real redis-server."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis
from _redis_server import RedisServer, breaker_state, wait_for

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
from shannon_otel.redis import RedisState


class _Clock:
    """``time.monotonic()``; raises while ``broken`` is set."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self) -> float:
        if self.broken:
            raise RuntimeError("clock source unavailable")
        return time.monotonic()


async def _failing() -> None:
    raise ConnectionError("down")


async def _ok() -> str:
    return "ok"


def test_a_probe_failure_whose_clock_fails_is_reported_once_and_left_uncounted_in_redis(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: the probe's failure was sent to Redis (PROBE failure: the breaker opened everywhere), then the clock
    failed opening it here, and the result was taken as uncounted: a second report, PROBE giveback, for the same
    probe, while the warning said the result was not counted. Now the clock is read before anything is reported:
    one report (the give-back), and the shared state is the local one: HALF_OPEN, its probe slot back."""
    clock = _Clock()

    async def boom() -> None:
        clock.broken = True  # fails at the next reading: the one recording this probe's failure
        raise ConnectionError("down")

    async def main() -> tuple[list[str], dict[str, str], BreakerState, str]:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600, probe_lease_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.2,
                                     half_open_probes=1, clock=clock, instrument=False)
            link = breaker._link
            assert link is not None
            with pytest.raises(ConnectionError):
                await breaker.call(_failing)
            await wait_for(lambda: breaker_state(server, prefix).get("state") == "open" and not link.pushes)
            await asyncio.sleep(0.3)  # past the reset timeout
            watcher = aioredis.Redis.from_url(server.url, decode_responses=True)
            # loaded now: a first EVALSHA answered NOSCRIPT is sent again, and the monitor would see it twice
            probe_sha = await watcher.script_load(shared._scripts["PROBE"].script)
            reports: list[str] = []
            try:
                async with watcher.monitor() as monitor:
                    with pytest.raises(ConnectionError):  # the probe: the caller gets its error
                        await breaker.call(boom)
                    clock.broken = False
                    await wait_for(lambda: not link.pushes)
                    await watcher.echo(f"{prefix}-end")  # through the monitor after every report sent before it
                    while True:
                        command = (await monitor.next_command())["command"]
                        if command == f"ECHO {prefix}-end":
                            break
                        if command.startswith(f"EVALSHA {probe_sha}"):
                            reports.append(command.split()[-3])  # ... outcome epoch success_threshold
            finally:
                await watcher.aclose()
            state = breaker_state(server, prefix)
            local = breaker.state
            try:  # the next call is admitted: the slot given back is there, in Redis
                after = await breaker.call(_ok)
            except CircuitOpenError as exc:
                after = repr(exc)
            return reports, state, local, after

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        reports, state, local, after = asyncio.run(main())
    assert (reports, state["state"], state["probes_left"]) == (["giveback"], "half_open", "1")
    assert (local, after) == (BreakerState.HALF_OPEN, "ok")
    warned = [r for r in caplog.records if "clock of breaker 'api' failed" in r.getMessage()]
    assert len(warned) == 1

