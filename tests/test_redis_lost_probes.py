"""Half-open probe slots of admissions whose caller never got Redis's answer (a paused server, a cancelled call):
given back, whichever of the admission and the give-back runs first. Each test runs its own real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time

import pytest
from _redis_server import HeldCall, RedisServer, admitted_during, breaker_state, tripped_for_one_probe, wait_for

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
from shannon_otel.redis import RedisState


async def _ok() -> int:
    return 1


async def _boom() -> None:
    raise ConnectionError("down")


async def _admitted_within_10_s(breaker: CircuitBreaker, server: RedisServer, prefix: str) -> None:
    """Call ``breaker`` (named "api") until a call is admitted and returns 1; fail, with the probes the shared
    state has left, if every call for 10 s is rejected."""
    deadline = time.monotonic() + 10
    while True:
        try:
            assert await breaker.call(_ok) == 1
            return
        except CircuitOpenError:
            left = breaker_state(server, prefix).get("probes_left")
            assert time.monotonic() < deadline, f"every call rejected; probes_left={left}"
            await asyncio.sleep(0.05)


def test_an_admission_that_timed_out_on_a_paused_redis_gives_its_probe_slot_back(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: an admission sent to a paused (SIGSTOP) Redis timed out and the call went on locally
    (fail-open), but Redis ran the ACQUIRE when it resumed: it moved the breaker to HALF_OPEN and took its
    only probe slot for a caller that was gone. No outcome ever came, so every call in every process was
    rejected for probe_lease_s (60 s by default; an hour here). Now the slot is given back once Redis answers."""
    assert server.proc is not None
    pid = server.proc.pid

    async def main() -> tuple[int, dict[str, str], BreakerState]:
        async with RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=3600,
                              probe_lease_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.3,
                                     half_open_probes=1, success_threshold=1, instrument=False)
            # One whole cycle first, as in a running service: the scripts are loaded in Redis (a paused server
            # runs a script it knows when it resumes).
            for cycle in range(2):
                with pytest.raises(ConnectionError):
                    await breaker.call(_boom)
                await wait_for(lambda: breaker_state(server, prefix).get("state") == "open")
                await asyncio.sleep(0.4)  # past the reset timeout, on both clocks
                if cycle == 0:
                    assert await breaker.call(_ok) == 1
                    await wait_for(lambda: breaker.state is BreakerState.CLOSED)
            await wait_for(lambda: not shared._pending)
            os.kill(pid, signal.SIGSTOP)
            try:
                during = await breaker.call(_ok)  # the ACQUIRE times out: a local probe
                assert not shared.available
            finally:
                os.kill(pid, signal.SIGCONT)
            # The late ACQUIRE ran: the shared period is HALF_OPEN (else this test proves nothing).
            await wait_for(lambda: breaker_state(server, prefix).get("state") == "half_open")
            await wait_for(lambda: shared.available)
            await _admitted_within_10_s(breaker, server, prefix)
            await wait_for(lambda: breaker.state is BreakerState.CLOSED)
            return during, breaker_state(server, prefix), breaker.state

    during, state, local = asyncio.run(main())
    assert during == 1
    assert state["state"] == "closed" and local is BreakerState.CLOSED


def test_a_give_back_that_runs_before_its_late_admission_takes_nothing_and_twice_gives_once(
    server: RedisServer, prefix: str,
) -> None:
    """The give-back may reach Redis before the admission it answers (two connections, a server waking from
    a pause): it leaves a tombstone, so the admission takes no slot; given back twice, the slot comes back once."""

    async def main() -> list[dict[str, str]]:
        seen = []
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600, probe_lease_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.1,
                                     half_open_probes=2, instrument=False)
            link = breaker._link
            assert link is not None
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await wait_for(lambda: not shared._pending)
            await asyncio.sleep(0.2)  # past the reset timeout
            lease_ms = 3600 * 1000

            def keys(token: str) -> list[str]:
                return [link.keys[0], shared._key("breaker", "api", f"admission:{token}")]

            acquire_args = link._args(100, 2, lease_ms)
            giveback_args = link._args(lease_ms)
            # A probe, given back twice: one slot back
            verdict = (await shared._script("ACQUIRE", keys("a"), acquire_args, 1))[0]
            assert verdict == "probe"
            seen.append(breaker_state(server, prefix))
            for _ in range(2):
                await shared._script("GIVEBACK", keys("a"), giveback_args, 1)
            seen.append(breaker_state(server, prefix))
            # The give-back first: the late admission is refused, and takes nothing
            await shared._script("GIVEBACK", keys("b"), giveback_args, 1)
            verdict = (await shared._script("ACQUIRE", keys("b"), acquire_args, 1))[0]
            assert verdict == "rejected"
            seen.append(breaker_state(server, prefix))
        return seen

    first, given_back, after_tombstone = asyncio.run(main())
    assert (first["state"], first["probes_left"]) == ("half_open", "1")
    assert given_back["probes_left"] == "2"  # not 3
    assert after_tombstone["probes_left"] == "2"


def test_an_admission_cancelled_mid_call_leaves_no_probe_slot_taken(server: RedisServer, prefix: str) -> None:
    """Bug: a call cancelled while its ACQUIRE was in flight (or whose answer redis-py returned after the
    cancellation) raised CancelledError, but the probe slot the script took stayed taken: one such cancel and
    the breaker rejected every call in every process for probe_lease_s. Now the slot is given back."""
    rng = random.Random(7)

    async def main() -> str:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=0.1, probe_lease_s=3600) as shared:
            # No call ends: the shared period stays HALF_OPEN, its one slot taken and given back (cancelled probes)
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.1,
                                     half_open_probes=1, instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await asyncio.sleep(0.2)  # past the reset timeout

            async def forever() -> int:
                await asyncio.Event().wait()
                return 1

            for _ in range(100):
                calling = asyncio.ensure_future(breaker.call(forever))
                await asyncio.sleep(rng.random() * 0.002)  # lands before, during or after the script
                calling.cancel()
                with pytest.raises((asyncio.CancelledError, CircuitOpenError)):
                    await asyncio.wait_for(asyncio.shield(calling), 5)
                await asyncio.sleep(0.06)  # past the local half-open recheck
            await wait_for(lambda: not shared._pending)
            await wait_for(lambda: breaker_state(server, prefix).get("probes_left") == "1")
            return breaker_state(server, prefix)["state"]

    assert asyncio.run(main()) == "half_open"


def test_a_state_closed_right_after_a_pause_gives_back_the_probe_slot_its_timed_out_admission_took(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: the slot of an admission that timed out on a paused Redis was given back only by the next poll
    (up to 1 s after Redis resumed): a process that closed its RedisState before that (a short job ending)
    left the breaker's only probe taken in every other process for probe_lease_s. Now closing gives it back
    (bounded by timeout_s; pool leases of timed-out acquires too)."""
    assert server.proc is not None
    pid = server.proc.pid

    async def main() -> BreakerState:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=3600) as warm:  # the scripts loaded
            breaker = CircuitBreaker("api", shared=warm, failure_threshold=1, reset_timeout=0.1, instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await asyncio.sleep(0.2)
            assert await breaker.call(_ok) == 1
            await wait_for(lambda: breaker.state is BreakerState.CLOSED)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await wait_for(lambda: not warm._pending)
        await asyncio.sleep(0.2)  # past the reset timeout
        shared = RedisState(server.url, prefix=prefix, timeout_s=0.2, poll_interval_s=3600, probe_lease_s=3600)
        await shared.start()
        breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.1,
                                 half_open_probes=1, instrument=False)
        await wait_for(lambda: breaker.state is BreakerState.OPEN and not shared._pending)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert await breaker.call(_ok) == 1  # the ACQUIRE times out: a local probe
        finally:
            os.kill(pid, signal.SIGCONT)
        await shared.close()  # at once: before its next poll would have given the slot back
        # Another process: admitted as the probe (without the give-back, rejected for probe_lease_s)
        async with RedisState(server.url, prefix=prefix, probe_lease_s=3600) as other:
            theirs = CircuitBreaker("api", shared=other, failure_threshold=1, reset_timeout=0.1,
                                    half_open_probes=1, instrument=False)
            await wait_for(lambda: theirs.state is BreakerState.HALF_OPEN)  # the shared state read (before, CLOSED)
            await _admitted_within_10_s(theirs, server, prefix)
            await wait_for(lambda: theirs.state is BreakerState.CLOSED)
            return theirs.state

    assert asyncio.run(main()) is BreakerState.CLOSED


def test_the_late_outcome_of_a_probe_of_an_earlier_half_open_period_is_ignored(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: a probe that outlived probe_lease_s (its period restarted by another process's admission) sent its
    outcome with the epoch this process held by then, the new period's: its failure re-opened the breaker for
    everyone (and a success counted towards closing it), although a late outcome of the old period is ignored
    (docs/shared-state.md). Now a new half-open period makes this process's earlier probes stale."""

    async def main() -> tuple[str, BreakerState]:
        # Both leases short: a period lasts the longest lease of its probes (a process with a short one never
        # restarts it under another's longer probe: tests/test_redis_mismatch.py)
        async with RedisState(server.url, prefix=prefix, probe_lease_s=0.1) as mine_state, \
                RedisState(server.url, prefix=prefix, probe_lease_s=0.1) as theirs_state:
            mine = CircuitBreaker("api", shared=mine_state, failure_threshold=1, reset_timeout=0.1,
                                  half_open_probes=1, instrument=False)
            theirs = CircuitBreaker("api", shared=theirs_state, failure_threshold=1, reset_timeout=0.1,
                                    half_open_probes=1, instrument=False)
            with pytest.raises(ConnectionError):
                await mine.call(_boom)
            await wait_for(lambda: theirs.state is BreakerState.OPEN)
            await asyncio.sleep(0.2)  # past the reset timeout
            entered, release = asyncio.Event(), asyncio.Event()

            async def slow_probe() -> None:
                entered.set()
                await release.wait()
                raise ConnectionError("down")

            probe = asyncio.ensure_future(mine.call(slow_probe))
            await entered.wait()
            first = breaker_state(server, prefix)["epoch"]
            await asyncio.sleep(0.2)  # past theirs' probe lease: their admission starts a new period
            released = asyncio.Event()

            async def their_probe() -> None:
                await released.wait()

            theirs_probe = asyncio.ensure_future(theirs.call(their_probe))
            await wait_for(lambda: breaker_state(server, prefix)["epoch"] != first)
            second = breaker_state(server, prefix)["epoch"]
            link = mine._link
            assert link is not None
            await wait_for(lambda: str(link.epoch) == second)  # the new period's notification
            release.set()
            with pytest.raises(ConnectionError):
                await probe  # the old period's probe fails, late
            await wait_for(lambda: not mine_state._pending)
            state = breaker_state(server, prefix)
            released.set()
            await theirs_probe
            return state["state"], mine.state

    shared, mine = asyncio.run(main())
    assert shared == "half_open"  # the new period's probe is still out: the late failure did not re-open it
    assert mine is BreakerState.HALF_OPEN


def test_a_probe_taken_late_in_a_half_open_period_is_not_overtaken_by_a_new_period(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: a half-open period whose probes were all taken started again ``probe_lease_s`` after the period began,
    whenever its probes were taken: with ``half_open_probes=1``, a probe given back 1.5 s in (its call cancelled)
    and taken again by another process was overtaken 1.5 s later by a new period's probe while it still ran (two
    probes at once, and the new one's success closed the breaker under it). The period now lasts until the
    latest of its probes' leases ends."""

    async def main() -> None:
        async with tripped_for_one_probe(server, prefix, probe_leases_s=(3, 3)) as (here, there):
            held = HeldCall()
            first = await held.start(here)  # the period's only probe
            await asyncio.sleep(1.5)
            first.cancel()  # its slot given back, 1.5 s into the period
            await asyncio.gather(first, return_exceptions=True)
            await wait_for(lambda: breaker_state(server, prefix).get("probes_left") == "1")
            second = await held.start(there)  # the slot taken again: its lease ends ~3 s on
            assert await admitted_during(here, 2.2) == 0  # past the period's first lease (before: admitted ~1.5 s on)
            held.finish.set()
            assert await second == "ok"
            await wait_for(lambda: here.state is BreakerState.CLOSED)

    asyncio.run(main())


class _IgnoredError(Exception):
    pass


async def _ignored() -> None:
    raise _IgnoredError("not a result of the service")


@pytest.mark.parametrize("probe", [_ok, _ignored], ids=["succeeded", "ignored"])
def test_a_call_made_right_after_a_probe_ended_is_admitted_as_by_a_local_breaker(
    server: RedisServer, prefix: str, probe: object,
) -> None:
    """Bug: a probe's outcome (a success, or the slot an ignored or cancelled probe gives back) was sent in the
    background, and a call made right after it asked Redis first, from the state of before the outcome: a
    caller whose probe had just closed the breaker (success_threshold=1) got CircuitOpenError ("breaker 'api' is
    closed; call rejected"), as did one retrying after an ignored error, where a local breaker admits both.
    Now an admission waits for the breaker's outcomes still being sent."""

    async def main() -> int:
        async with RedisState(server.url, prefix=prefix, poll_interval_s=60, probe_lease_s=3600) as shared:
            breaker = CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.05,
                                     half_open_probes=1, on=(ConnectionError,), instrument=False)
            with pytest.raises(ConnectionError):
                await breaker.call(_boom)
            await asyncio.sleep(0.2)  # past the reset timeout
            with contextlib.suppress(_IgnoredError):
                await breaker.call(probe)  # type: ignore[arg-type]
            return await breaker.call(_ok)  # no await in between: nothing else had the loop

    assert asyncio.run(main()) == 1
