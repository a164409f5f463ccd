"""A caller cancelled while its Redis command is under way: ``task.cancel("why")`` reaches it as
``CancelledError("why")``, at every point of the command, and with the command's own timeout due at once.
Each test runs its own real redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable

import pytest
from _redis_server import RedisServer

from shannon_otel.redis import RedisState, SharedPool, SharedRateLimit


def _acquirer(shared: RedisState, kind: str) -> Callable[[], Awaitable[None]]:
    """One admission of a shared rate limit or pool (a pool's slot is given back at once)."""
    if kind == "rate":
        return SharedRateLimit(shared, "api", rate=1e6, burst=1_000_000).acquire
    pool = SharedPool(shared, "db", limit=1_000)

    async def acquire() -> None:
        await pool.acquire()
        pool.release()

    return acquire


async def _outcome(task: asyncio.Task[None]) -> str:
    """What the cancelled ``task`` ended with: its CancelledError's args, or what else it did."""
    done, _ = await asyncio.wait((task,), timeout=10)
    if not done:
        return "a hang"
    try:
        task.result()
    except asyncio.CancelledError as exc:
        return repr(exc.args)
    except BaseException as exc:  # what it was is the finding
        return f"raised {exc!r}"
    return "returned"


@pytest.mark.parametrize("kind", ["rate", "pool"])
def test_a_cancel_at_each_step_of_a_command_reaches_the_caller_with_its_message(
    server: RedisServer, prefix: str, kind: str,
) -> None:
    """Bug: redis-py now and then swallowed the caller's cancellation and returned the answer (on 3.11, its
    wait_for around the socket write returns a result that is ready when the cancel lands); the state then
    raised a bare CancelledError in its place: ``task.cancel("why")`` reached the caller without "why" in
    about 1 cancel in 3 landing mid-call. Now the command runs in a task of its own that the caller waits
    for, so the caller's own cancellation is raised, with its message. Cancelled after each number of loop
    steps, until the admission ends before the cancel lands."""

    async def main() -> dict[int, str]:
        outcomes: dict[int, str] = {}
        async with RedisState(server.url, prefix=prefix, timeout_s=5) as shared:
            acquire = _acquirer(shared, kind)
            await acquire()  # the scripts loaded, a connection open: each step is the command's own
            for steps in range(100):
                task = asyncio.ensure_future(acquire())
                for _ in range(steps):
                    await asyncio.sleep(0)
                if not task.cancel("why"):
                    break  # the admission ended before this step: so does every later one
                outcomes[steps] = await _outcome(task)
            assert shared.available  # no cancel was taken for an outage
        return outcomes

    outcomes = asyncio.run(main())
    assert len(outcomes) > 3  # cancels landed inside the command, not only before it started
    assert {steps: got for steps, got in outcomes.items() if got != "('why',)"} == {}


@pytest.mark.parametrize("kind", ["rate", "pool"])
def test_a_cancel_landing_with_the_commands_timeout_reaches_the_caller_with_its_message(
    server: RedisServer, prefix: str, kind: str,
) -> None:
    """Bug: the command's timeout was a cancellation of the caller's task (asyncio.timeout); a cancel of the
    caller made in the same loop iteration, after the timeout's, was merged into it, and the caller got the
    timeout's bare CancelledError ("why" lost), or (3.11's wait_for, in redis-py) a SharedStateUnavailableError
    for the timeout, and the admission went on with the local fallback: the cancel lost altogether. Now the
    timeout never cancels the caller. Reproduced with a paused server (SIGSTOP: the command never answers) and
    a loop blocked past the timeout, so that the timeout's callback and the cancel run in one iteration, in
    that order."""
    assert server.proc is not None
    pid = server.proc.pid
    timeout_s = 0.5

    async def main() -> str:
        loop = asyncio.get_running_loop()
        async with RedisState(server.url, prefix=prefix, timeout_s=timeout_s, poll_interval_s=3600) as shared:
            acquire = _acquirer(shared, kind)
            await acquire()  # the scripts loaded, a connection open
            os.kill(pid, signal.SIGSTOP)
            try:
                task = asyncio.ensure_future(acquire())
                for _ in range(10):  # the admission is sent (a pool takes its local slot first), its timeout set
                    await asyncio.sleep(0)
                time.sleep(timeout_s * 2)  # noqa: ASYNC251 - on purpose, it blocks the loop: the timeout is due at its next iteration
                loop.call_later(0, task.cancel, "why")  # due too, run after it (timers run in deadline order)
                return await _outcome(task)
            finally:
                os.kill(pid, signal.SIGCONT)

    assert asyncio.run(main()) == "('why',)"


async def _cancelled_as_its_command_ends(acquire: Callable[[], Awaitable[None]]) -> str:
    """Start ``acquire()``, cancel it ("why") in a callback of its command's task (run as that task ends, before
    the caller resumes), and say what it ended with (see _outcome)."""
    before = asyncio.all_tasks()
    task = asyncio.ensure_future(acquire())
    commands: set[asyncio.Task[object]] = set()
    for _ in range(100):
        await asyncio.sleep(0)
        commands = asyncio.all_tasks() - before - {task}
        if commands:
            break
    assert len(commands) == 1  # the command's own task
    commands.pop().add_done_callback(lambda _: task.cancel("why"))
    return await _outcome(task)


def test_a_cancel_landing_as_the_command_fails_leaves_no_unretrieved_exception(
    server: RedisServer, prefix: str,
) -> None:
    """Bug: a caller cancelled in the loop step its command ended with an error (here a key of another type)
    left that error in the command's task, never retrieved: asyncio logged "Task exception was never retrieved"
    with the Redis error's traceback, for a command whose caller had been told nothing was wrong with it. The
    cancel is made by a callback of the command's task, run as it ends: before the caller resumes."""
    import redis

    client = redis.Redis.from_url(server.url)
    client.lpush(f"{prefix}:{{rate:api}}:tat", "not a bucket")  # the RATE script fails on it (WRONGTYPE)
    client.close()

    async def main() -> tuple[str, list[str]]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        async with RedisState(server.url, prefix=prefix, timeout_s=5) as shared:
            limit = SharedRateLimit(shared, "api", rate=1e6, burst=1_000_000)
            await limit.acquire()  # the scripts loaded, the key found unusable (local fallback)
            outcome = await _cancelled_as_its_command_ends(limit.acquire)
        gc.collect()  # the command's task is gone: an exception never retrieved is reported now
        return outcome, reported

    outcome, reported = asyncio.run(main())
    assert outcome == "('why',)"
    assert reported == []
