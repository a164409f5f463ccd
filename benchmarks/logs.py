"""What the logging hook adds per call: the success path (must stay within the breaker's 0.3 us) and a
rejected call of an open breaker (a flood the hook summarises), logs on vs off in the same run.

``python -m benchmarks logs [--quick]``. Pairs of variants differ only in the logging hook; they run
interleaved (alternating which runs first), ``R`` rounds of ``N`` calls, and the median of each pair's
per-round differences is reported (robust on a shared machine). Records go
to a NullHandler (a flood's summaries are the only ones written). Last line: one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._rounds import calls_and_rounds

Call = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def _work() -> int:
    return 1


def _policies(logs: bool) -> dict[str, tuple[Call, bool]]:
    """name -> (bound ``call``, whether it raises CircuitOpenError), built with the default logs on/off."""
    from opentelemetry.sdk.trace import TracerProvider

    from shannon_otel import CallObserver, CircuitBreaker, Hook, LoggingHook, Retry

    class Watch(Hook):
        """Stands for any hook that watches a call: the observed path without logging."""

        __slots__ = ()
        _observer = CallObserver()

        def call_started(self, event: Any) -> CallObserver:
            return self._observer

    old = os.environ.pop("SHANNON_OTEL_LOGS", None)
    if not logs:
        os.environ["SHANNON_OTEL_LOGS"] = "off"
    try:
        tracing = TracerProvider()  # spans made and ended, exported nowhere
        tag = "on" if logs else "off"
        rejecting = CircuitBreaker(f"open-{tag}", tracer_provider=tracing)
        rejecting.force_open()
        watched = CircuitBreaker(f"watched-{tag}", hooks=[LoggingHook() if logs else Watch()], instrument=False)
        watched.force_open()
        return {
            "retry": (Retry(attempts=3).call, False),
            "breaker": (CircuitBreaker(f"b-{tag}").call, False),
            "breaker_traced": (CircuitBreaker(f"t-{tag}", tracer_provider=tracing).call, False),
            "rejected_traced": (rejecting.call, True),
            "rejected_hook": (watched.call, True),
        }
    finally:
        os.environ.pop("SHANNON_OTEL_LOGS", None)
        if old is not None:
            os.environ["SHANNON_OTEL_LOGS"] = old


async def _time(call: Call, raises: bool, n: int) -> float:
    from shannon_otel import CircuitOpenError

    work = _work
    start = time.perf_counter()
    if raises:
        for _ in range(n):
            try:
                await call(work)
            except CircuitOpenError:
                pass
    else:
        for _ in range(n):
            await call(work)
    return (time.perf_counter() - start) / n * 1e6


async def _run(n: int, rounds: int) -> dict[str, tuple[float, float, float]]:
    """name -> (median us with logs, median us without, median of the per-round differences)."""
    on, off = _policies(True), _policies(False)
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in on}
    for name in on:  # warm-up
        await _time(*on[name], max(1, n // 10))
        await _time(*off[name], max(1, n // 10))
    for i in range(rounds):
        for name in on:
            if i % 2:  # alternate which of the pair runs first: the machine drifts within a round
                samples[name][1].append(await _time(*off[name], n))
                samples[name][0].append(await _time(*on[name], n))
            else:
                samples[name][0].append(await _time(*on[name], n))
                samples[name][1].append(await _time(*off[name], n))
    return {
        name: (statistics.median(a), statistics.median(b), statistics.median(x - y for x, y in zip(a, b, strict=True)))
        for name, (a, b) in samples.items()
    }


def main(argv: list[str]) -> int:
    n, rounds = calls_and_rounds("logs", argv, quick_rounds=15, full_rounds=31)
    root = logging.getLogger("shannon_otel")
    root.addHandler(logging.NullHandler())
    root.propagate = False
    medians = asyncio.run(_run(n, rounds))
    print(f"{'variant':<18}{'logs on us':>12}{'logs off us':>12}{'added us':>10}  (median of paired differences)")
    for name, (with_logs, without, diff) in medians.items():
        print(f"{name:<18}{with_logs:>12.3f}{without:>12.3f}{diff:>10.3f}")
    added = {name: round(diff, 3) for name, (_, _, diff) in medians.items()}
    print(json.dumps({"suite": "logs", "added_us": added, "calls": n, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
