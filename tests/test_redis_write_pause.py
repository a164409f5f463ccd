"""A server that answers reads but not writes (``CLIENT PAUSE WRITE``, as a failover pauses its primary) is one
outage, not one per poll. Each test runs its own real redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
import redis
from _redis_server import RedisServer, wait_for

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
from shannon_otel.redis import RedisState, SharedRateLimit, SharedStateUnavailableError


async def _ok() -> str:
    return "ok"


def test_a_poll_answered_while_redis_pauses_writes_neither_ends_the_outage_nor_closes_a_fail_closed_breaker(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: with writes paused (every script timed out) the poll's read was answered, and that ended the outage:
    ``available`` went back to true, the fail-closed breaker took the shared state and closed (admitting calls
    while nothing could be written), and the next script began the outage again: a warning, and an open/close of
    every breaker, each poll_interval_s. Now only a write ends the outage; a poll answered meanwhile is not taken."""
    raw = redis.Redis.from_url(server.url)

    async def main() -> tuple[BreakerState, bool, BreakerState]:
        # The flusher's own poll is an hour away (it checks with a write each second meanwhile): this test polls
        async with RedisState(server.url, prefix=prefix, on_unavailable="reject", timeout_s=0.2,
                              poll_interval_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, instrument=False)
            limit = SharedRateLimit(shared, "api", rate=1000)
            await limit.acquire()
            raw.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")  # type: ignore[no-untyped-call]
            try:
                with pytest.raises(SharedStateUnavailableError):
                    await limit.acquire()  # its script times out: the outage begins, the breaker opens
                assert breaker.state is BreakerState.OPEN
                await shared._poll()  # what the flusher does each poll_interval_s: a read, answered
                during = breaker.state, shared.available
                with pytest.raises(CircuitOpenError):
                    await breaker.call(_ok)
            finally:
                raw.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
            await wait_for(lambda: shared.available)  # the flusher's write check ends it
            await wait_for(lambda: breaker.state is BreakerState.CLOSED)
            return *during, breaker.state

    with caplog.at_level(logging.WARNING, logger="shannon_otel.redis"):
        try:
            state, available, after = asyncio.run(main())
        finally:
            raw.close()
    assert (state, available, after) == (BreakerState.OPEN, False, BreakerState.CLOSED)
    outages = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outages) == 1, [r.getMessage() for r in outages]


def test_an_acl_user_without_time_is_one_outage_naming_time(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bug: a user given the usual categories (+@read +@write +@scripting +@pubsub +@connection) lacks TIME (in
    @fast alone), which every script and the poll read. The write check that ends an outage does not read it: each
    check ended the outage and the next poll began it again (a warning and ``available`` flapping each
    poll_interval_s). Now the check reads TIME, and the outage names it."""
    raw = redis.Redis.from_url(server.url)
    raw.execute_command("ACL", "SETUSER", "cats", "on", ">pw", "~*", "&*",
                        "+@read", "+@write", "+@scripting", "+@pubsub", "+@connection")  # type: ignore[no-untyped-call]
    url = server.url.replace("redis://", "redis://cats:pw@")

    async def main() -> tuple[list[bool], str]:
        async with RedisState(url, prefix=prefix, on_unavailable="reject", poll_interval_s=3600) as shared:
            CircuitBreaker("api", shared=shared, instrument=False)
            seen = []
            for _ in range(2):  # the flusher's recovery step during an outage, each second
                with contextlib.suppress(SharedStateUnavailableError):
                    await shared._check()
                    await shared._poll()
                seen.append(shared.available)
            with pytest.raises(SharedStateUnavailableError) as caught:
                await SharedRateLimit(shared, "api", rate=10).acquire()
            return seen, str(caught.value)

    with caplog.at_level(logging.WARNING, logger="shannon_otel.redis"):
        try:
            seen, error = asyncio.run(main())
        finally:
            raw.close()
    outages = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outages) == 1, [r.getMessage() for r in outages]
    assert seen == [False, False]
    assert "time" in error.lower()
