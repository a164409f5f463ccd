"""Shared state through Redis: ``python -m benchmarks shared [--quick]``.

Starts its own ``redis-server`` on a free 127.0.0.1 port (Debian's package; ``scripts/stack install``
installs it) and measures, against a baseline of the same run:

- ``added_us``: microseconds added per successful call on the CLOSED path, a breaker bound to a
  ``RedisState`` vs the same breaker local, tracing off (variants interleaved, medians of rounds).
  Target <= 2 us added over the local breaker.
- ``open_propagation_ms``: a breaker opened through one ``RedisState`` seen OPEN by a breaker of the
  same name bound to a second ``RedisState`` (its own connection and subscription; the same path another
  process takes), median and max of repeated trips. Target <= 100 ms.
- ``rate_error``: 4 processes sharing a ``SharedRateLimit`` for 10 s (3 s with --quick): starts counted
  against rate x seconds (+ burst). Target <= 5 %.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: run scripts/stack install (Debian's redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait(10)


async def _ok() -> int:
    return 1


async def _boom() -> None:
    raise ConnectionError("down")


async def _per_call(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n * 1e6


async def added_us(url: str, n: int, rounds: int) -> dict[str, float]:
    from shannon_otel import CircuitBreaker
    from shannon_otel.redis import RedisState

    async with RedisState(url, prefix="bench-added") as shared:
        local = CircuitBreaker("local", instrument=False)
        remote = CircuitBreaker("shared", shared=shared, instrument=False)
        variants: dict[str, Callable[[], Awaitable[Any]]] = {
            "baseline": _ok, "local": lambda: local.call(_ok), "shared": lambda: remote.call(_ok),
        }
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(rounds):
            for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
                samples[name].append(await _per_call(variants[name], n))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"local": med["local"] - med["baseline"], "shared": med["shared"] - med["baseline"],
            "shared_over_local": med["shared"] - med["local"]}


async def open_propagation_ms(url: str, trips: int) -> list[float]:
    from shannon_otel import BreakerState, CircuitBreaker, CircuitOpenError
    from shannon_otel.redis import RedisState

    found = []
    async with RedisState(url, prefix="bench-prop", poll_interval_s=60) as a, \
            RedisState(url, prefix="bench-prop", poll_interval_s=60) as b:
        for i in range(trips):
            name = f"trip-{i}"
            here = CircuitBreaker(name, shared=a, failure_threshold=1, reset_timeout=60, instrument=False)
            there = CircuitBreaker(name, shared=b, failure_threshold=1, reset_timeout=60, instrument=False)
            await asyncio.sleep(0.05)  # both subscribed and idle
            start = time.perf_counter()
            try:
                await here.call(_boom)
            except (ConnectionError, CircuitOpenError):
                pass
            while there.state is not BreakerState.OPEN:
                if time.perf_counter() - start > 5:
                    break
                await asyncio.sleep(0.0005)
            found.append((time.perf_counter() - start) * 1000)
    return found


def _limited(url: str, rate: float, seconds: float, start_at: float, queue: Any) -> None:
    async def main() -> int:
        from shannon_otel.redis import RedisState, SharedRateLimit

        async with RedisState(url, prefix="bench-rate") as shared:
            limit = SharedRateLimit(shared, "api", rate=rate)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            starts = 0
            while True:
                await limit.acquire()
                if time.time() >= start_at + seconds:
                    return starts
                starts += 1

    queue.put(asyncio.run(main()))


def rate_error(url: str, processes: int, rate: float, seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0
    workers = [ctx.Process(target=_limited, args=(url, rate, seconds, start_at, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    starts = sum(queue.get(timeout=seconds + 60) for _ in workers)
    for w in workers:
        w.join(30)
    expected = rate * seconds
    return {"starts": starts, "expected": expected, "error": abs(starts - expected) / expected}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks shared")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n, rounds, trips, seconds = (2000, 5, 10, 3.0) if args.quick else (20000, 11, 30, 10.0)
    with redis_server() as url:
        added = asyncio.run(added_us(url, n, rounds))
        prop = asyncio.run(open_propagation_ms(url, trips))
        rate = rate_error(url, processes=4, rate=50.0, seconds=seconds)
    print(f"added per successful call: local breaker {added['local']:.3f} us, shared {added['shared']:.3f} us "
          f"(+{added['shared_over_local']:.3f} us over local; target <= 2)")
    print(f"open propagated to another RedisState: median {statistics.median(prop):.1f} ms, "
          f"max {max(prop):.1f} ms over {trips} trips (target <= 100)")
    print(f"shared rate limit, 4 processes, 50/s for {seconds:g} s: {rate['starts']:.0f} starts "
          f"vs {rate['expected']:.0f} expected, error {rate['error'] * 100:.1f} % (target <= 5)")
    print(json.dumps({
        "suite": "shared",
        "added_us": {k: round(v, 3) for k, v in added.items()},
        "open_propagation_ms": {"median": round(statistics.median(prop), 2), "max": round(max(prop), 2)},
        "rate_limit": {"processes": 4, "rate": 50.0, "seconds": seconds, **{k: round(v, 4) for k, v in rate.items()}},
        "targets": {"added_over_local_us": 2.0, "open_propagation_ms": 100, "rate_error": 0.05},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
