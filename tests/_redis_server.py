"""A real redis-server on a free 127.0.0.1 port, started and stopped by the tests (never skipped)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``start()``/``stop()`` (SIGKILL: a crash, not a clean shutdown) keep the same port, so clients reconnect."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/test installs Debian's redis-server)", pytrace=False)
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--protected-mode", "yes", "--dir", str(self.workdir)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}; see {self.workdir}/redis.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not answer PING on 127.0.0.1:{self.port} within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def running_server(workdir: Path) -> Iterator[RedisServer]:
    """A started server in ``workdir``, killed when the block ends (the tests' fixtures)."""
    srv = RedisServer(workdir)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def breaker_state(server: RedisServer, prefix: str, name: str = "api") -> dict[str, str]:
    """The shared state of breaker ``name`` as Redis holds it (its hash: state, probes_left, epoch...)."""
    raw = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return {str(k): str(v) for k, v in raw.hgetall(f"{prefix}:{{breaker:{name}}}:state").items()}
    finally:
        raw.close()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout_s`` (a state that reaches a process
    through Redis, as a notification or a poll, arrives after a while, never at a known instant)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def admitted_during(breaker: CircuitBreaker, seconds: float) -> int:
    """How many calls ``breaker`` admitted of those made every 20 ms for ``seconds`` (each a no-op; a rejection,
    CircuitOpenError, is not counted)."""
    admitted = 0

    async def extra() -> None:
        nonlocal admitted
        admitted += 1

    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        with contextlib.suppress(CircuitOpenError):
            await breaker.call(extra)
        await asyncio.sleep(0.02)
    return admitted


@contextlib.asynccontextmanager
async def tripped_for_one_probe(
    server: RedisServer, prefix: str, probe_leases_s: tuple[float, float],
) -> AsyncIterator[tuple[CircuitBreaker, CircuitBreaker]]:
    """Breakers "api" (``failure_threshold=1, reset_timeout=0.2, half_open_probes=1``) of two processes sharing
    ``server`` (a RedisState each, given ``probe_lease_s`` from ``probe_leases_s``), after a failed call through
    the first, once the second has seen the breaker OPEN and the reset timeout has passed: the next call is the
    half-open period's only probe."""
    from shannon_otel.redis import RedisState  # here: the tests that never use Redis import this module too

    async def boom() -> None:
        raise ConnectionError("down")

    async with RedisState(server.url, prefix=prefix, probe_lease_s=probe_leases_s[0]) as one, \
            RedisState(server.url, prefix=prefix, probe_lease_s=probe_leases_s[1]) as other:
        first, second = (CircuitBreaker("api", shared=shared, failure_threshold=1, reset_timeout=0.2,
                                        half_open_probes=1, instrument=False) for shared in (one, other))
        with pytest.raises(ConnectionError):
            await first.call(boom)
        await wait_for(lambda: second.state is BreakerState.OPEN)
        await asyncio.sleep(0.3)  # past the reset timeout
        yield first, second


class HeldCall:
    """An operation that runs until ``finish`` is set, then returns "ok"."""

    def __init__(self) -> None:
        self.started, self.finish = asyncio.Event(), asyncio.Event()

    async def __call__(self) -> str:
        self.started.set()
        await self.finish.wait()
        return "ok"

    async def start(self, breaker: CircuitBreaker) -> asyncio.Task[str]:
        """A call of this operation through ``breaker``, once it has started running (it was admitted)."""
        self.started.clear()
        call = asyncio.ensure_future(breaker.call(self))
        await self.started.wait()
        return call


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own on 127.0.0.1, which the test may kill and restart (a fixture of every
    test module, through conftest.py; modules whose tests only read and write keys override it with one
    module-scoped server)."""
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing a server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"
