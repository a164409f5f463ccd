"""A shared breaker whose clock fails (raises, reads NaN) as a shared state arrives takes that state all the same,
logs the clock's error once, and keeps following Redis. Each test runs its own real redis-server.

The state arrives in the background (a notification, a poll of the flusher): raised there, the clock's error left
the state untaken. From a notification it was logged at debug only, as a malformed message (NaN) or a lost
subscription; from a poll it marked the breaker's key unusable (NaN: its state local from then on) or ended the
flusher (nothing flushed or polled again)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
import redis
from _redis_server import RedisServer, wait_for

from shannon_otel import BreakerState, BreakerTransition, CircuitBreaker, Hook
from shannon_otel.redis import RedisState


class _Clock:
    """``time.monotonic()``; raises (or reads ``bad``) while ``broken`` is set."""

    def __init__(self, bad: float | str) -> None:
        self.bad = bad
        self.broken = False
        self.readings: list[float] = []

    def __call__(self) -> float:
        if not self.broken:
            self.readings.append(time.monotonic())
            return self.readings[-1]
        if self.bad == "raise":
            raise RuntimeError("clock source unavailable")
        return float(self.bad)


async def _down() -> None:
    raise ConnectionError("down")


def _warned(caplog: pytest.LogCaptureFixture) -> int:
    return sum("clock of breaker 'api' failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad", ["raise", math.nan], ids=str)
def test_a_shared_open_notified_while_the_clock_fails_is_taken_and_the_link_keeps_following_redis(
    server: RedisServer, prefix: str, bad: float | str, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock(bad)
    seen: list[BreakerTransition] = []

    class Watcher(Hook):
        def breaker_transition(self, event: BreakerTransition) -> None:
            seen.append(event)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600) as one, \
                RedisState(server.url, prefix=prefix, poll_interval_s=3600) as other:
            first = CircuitBreaker("api", shared=one, failure_threshold=1, instrument=False)
            second = CircuitBreaker("api", shared=other, failure_threshold=1, instrument=False, clock=clock,
                                    hooks=[Watcher()])
            raw = redis.Redis.from_url(server.url)
            try:  # both subscribed: the polls (hourly) take no part
                await wait_for(lambda: raw.pubsub_numsub(other.breaker_channel)[0][1] == 2)
            finally:
                raw.close()
            clock.broken = True
            with pytest.raises(ConnectionError):
                await first.call(_down)
            await wait_for(lambda: second.state is BreakerState.OPEN)
            clock.broken = False
            first.reset()
            await wait_for(lambda: second.state is BreakerState.CLOSED)  # the next notification is taken too

    with caplog.at_level(logging.DEBUG, logger="shannon_otel"):
        asyncio.run(main())
    assert _warned(caplog) == 1
    # the OPEN it could not time: timed at its last reading, its registration's
    assert [(e.to_state, e.time) for e in seen][:1] == [(BreakerState.OPEN, clock.readings[0])]
    assert not [r for r in caplog.records if "malformed" in r.getMessage() or "subscription lost" in r.getMessage()]


@pytest.mark.parametrize("bad", ["raise", math.nan], ids=str)
def test_a_shared_open_polled_while_the_clock_fails_is_taken_and_the_flusher_keeps_polling(
    server: RedisServer, prefix: str, bad: float | str, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock(bad)

    async def main() -> None:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1, flush_interval_s=0.05) as shared:
            breaker = CircuitBreaker("api", shared=shared, instrument=False, clock=clock)
            key = shared._key("breaker", "api", "state")
            raw = redis.Redis.from_url(server.url)
            try:
                clock.broken = True
                # opened elsewhere, its notification lost: the poll brings it
                raw.hset(key, mapping={"state": "open", "epoch": 7, "opened_at": int(time.time() * 1000),
                                       "reason": "failure_threshold"})
                await wait_for(lambda: breaker.state is BreakerState.OPEN)
                clock.broken = False
                raw.hset(key, mapping={"state": "closed", "epoch": 8, "reason": "reset"})
                await wait_for(lambda: breaker.state is BreakerState.CLOSED)  # polled again, the key still used
            finally:
                raw.close()
            assert not shared._bad_keys
            assert not [t for t in shared._tasks if t.done()]

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(main())
    assert _warned(caplog) == 1


def test_a_failure_whose_clock_fails_as_it_would_open_a_shared_breaker_is_not_sent_to_redis(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: the failure was added to the counts for Redis before the transition's clock failed: the warning said
    it was not counted, and the next flush sent it, opening the breaker for everyone."""
    clock = _Clock("raise")

    async def unclocked() -> None:
        clock.broken = True
        raise ConnectionError("down")

    async def main() -> tuple[BreakerState, str | None]:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600, flush_interval_s=60) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=2, instrument=False, clock=clock)
            link = breaker._link
            assert link is not None
            with pytest.raises(ConnectionError):
                await breaker.call(_down)
            with pytest.raises(ConnectionError):
                await breaker.call(unclocked)
            clock.broken = False
            await link.flush()  # what the flusher sends (each minute here): the counted results only
            raw = redis.Redis.from_url(server.url, decode_responses=True)
            try:
                state = raw.hget(shared._key("breaker", "api", "state"), "state")
            finally:
                raw.close()
            return breaker.state, state  # type: ignore[return-value]

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        local, shared_state = asyncio.run(main())
    assert (local, shared_state in (None, "closed")) == (BreakerState.CLOSED, True)
    assert sum("that result is not counted" in r.getMessage() for r in caplog.records) == 1
