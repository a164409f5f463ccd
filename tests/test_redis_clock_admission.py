"""A shared breaker whose clock fails as its admission takes Redis's answer (before the user's call runs): the call is
refused with the clock's error, the probe slot Redis gave it comes back, and nothing is logged for it. Each test runs
its own real redis-server.

Before, the clock's error was logged (the state taken, timed at the breaker's last reading) and the call admitted:
its result, recorded on the same failing clock, logged a second warning in the same call (a failed probe, a timed
breaker), or the timed breaker's start refused it after the first warning had said the state was taken."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis
from _failing_clock import BAD_READINGS
from _redis_server import RedisServer, breaker_state, wait_for

from shannon_otel import BreakerState, CircuitBreaker
from shannon_otel.redis import RedisState


class _Clock:
    """``time.monotonic()``; once ``good`` readings are left (None: unlimited), reads ``bad`` (or raises)."""

    def __init__(self, bad: float | str) -> None:
        self.bad = bad
        self.good: int | None = None

    def __call__(self) -> float:
        if self.good is None or self.good > 0:
            if self.good is not None:
                self.good -= 1
            return time.monotonic()
        if self.bad == "raise":
            raise RuntimeError("clock source unavailable")
        return float(self.bad)


async def _down() -> None:
    raise ConnectionError("down")


@pytest.mark.parametrize("timed", [False, True], ids=["untimed", "timed"])
@pytest.mark.parametrize("probe", ["fails", "succeeds"])
@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_clock_failing_as_the_admission_takes_redis_answer_refuses_the_call_and_gives_its_slot_back(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture, bad: float | str, probe: str, timed: bool,
) -> None:
    # A user without SUBSCRIBE: the half-open state reaches this process only as the admission's answer (its
    # notification, racing the answer, would take it first, with a warning of its own for the failing clock).
    client = redis.Redis(port=server.port)
    client.execute_command("ACL", "SETUSER", "nosub", "on", ">pw", "~*", "&*", "+@all", "-subscribe")  # type: ignore[no-untyped-call]
    client.close()
    clock = _Clock(bad)
    ran: list[str] = []

    async def operation() -> str:
        ran.append(probe)
        if probe == "fails":
            raise ConnectionError("down")
        return "ok"

    async def ok() -> str:
        return "ok"

    async def main() -> tuple[BaseException | None, dict[str, str], BreakerState, str]:
        url = f"redis://nosub:pw@127.0.0.1:{server.port}/0"
        async with RedisState(url, prefix=prefix, poll_interval_s=3600, probe_lease_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.2, half_open_probes=1,
                                     clock=clock, instrument=False, slow_call_s=60.0 if timed else None)
            link = breaker._link
            assert link is not None
            with pytest.raises(ConnectionError):
                await breaker.call(_down)
            await wait_for(lambda: breaker_state(server, prefix).get("state") == "open" and not link.pushes)
            await asyncio.sleep(0.3)  # past the reset timeout: the next call asks Redis, which admits it as the probe
            clock.good = 1  # the admission's first reading (the local reset timeout); every later one fails
            error: BaseException | None = None
            try:
                await breaker.call(operation)
            except BaseException as exc:  # what the caller gets is what is checked
                error = exc
            clock.good = None
            await wait_for(lambda: not link.pushes)
            state = breaker_state(server, prefix)
            local = breaker.state
            after = await breaker.call(ok)  # the slot given back: the next call is the probe, and closes it
            return error, state, local, after

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        error, state, local, after = asyncio.run(main())
    assert ran == []  # refused before it ran
    assert isinstance(error, RuntimeError if bad == "raise" else ValueError), repr(error)
    assert "clock" in str(error)
    assert (state["state"], state["probes_left"], local, after) == ("half_open", "1", BreakerState.HALF_OPEN, "ok")
    assert not [r for r in caplog.records if "clock" in r.getMessage()]
