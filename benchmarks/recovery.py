"""Added microseconds per successful call: our policies vs peers, tracing off (no SDK providers).

``python -m benchmarks recovery [--quick]``. Every variant awaits the same trivial coroutine
function ``N`` times; the variants run interleaved, ``R`` rounds, and each one's median time per
call minus the median of the plain ``await`` baseline is reported. Last line: one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._rounds import calls_and_rounds

# (kind, target): "plain" awaits target(), "call" awaits target(_work) (a policy's bound ``call``).
Variant = tuple[str, Callable[..., Awaitable[Any]]]


async def _work() -> int:
    return 1


def _variants() -> dict[str, Variant]:
    from shannon_otel.recovery import CircuitBreaker, Pipeline, Retry

    ours_retry = Retry(attempts=3)
    ours_breaker = CircuitBreaker("bench")
    ours_pipeline = Pipeline(Retry(attempts=3), CircuitBreaker("bench-pipeline"))
    decorated = Retry(attempts=3)(_work)
    variants: dict[str, Variant] = {
        "baseline": ("plain", _work),
        "retry": ("call", ours_retry.call),
        "breaker": ("call", ours_breaker.call),
        "pipeline": ("call", ours_pipeline.call),
        "retry_decorator": ("plain", decorated),
    }
    try:
        import tenacity

        variants["tenacity"] = ("plain", tenacity.retry(stop=tenacity.stop_after_attempt(3))(_work))
    except ImportError:
        pass
    try:
        import stamina

        variants["stamina"] = ("plain", stamina.retry(on=Exception, attempts=3)(_work))
    except ImportError:
        pass
    try:
        import aiobreaker  # type: ignore[import-untyped]

        peer_breaker = aiobreaker.CircuitBreaker()
        variants["aiobreaker"] = ("call", peer_breaker.call_async)
    except ImportError:
        pass
    try:
        import purgatory

        variants["purgatory"] = ("plain", purgatory.AsyncCircuitBreakerFactory()("bench")(_work))
    except ImportError:
        pass
    return variants


async def _time(variant: Variant, n: int) -> float:
    kind, target = variant
    work = _work
    start = time.perf_counter()
    if kind == "plain":
        for _ in range(n):
            await target()
    else:
        for _ in range(n):
            await target(work)
    return (time.perf_counter() - start) / n * 1e6


async def _run(n: int, rounds: int) -> dict[str, float]:
    variants = _variants()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for variant in variants.values():  # warm-up: imports, caches, specialisation
        await _time(variant, max(1, n // 10))
    for _ in range(rounds):
        for name, variant in variants.items():
            samples[name].append(await _time(variant, n))
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str]) -> int:
    n, rounds = calls_and_rounds("recovery", argv, quick_rounds=7, full_rounds=15)
    medians = asyncio.run(_run(n, rounds))
    base = medians["baseline"]
    print(f"{'variant':<16}{'us/call':>10}{'added us':>10}{'x base':>9}")
    for name, value in medians.items():
        print(f"{name:<16}{value:>10.3f}{value - base:>10.3f}{value / base:>9.2f}")
    keys = ("retry", "breaker", "pipeline", "tenacity", "stamina", "aiobreaker", "purgatory")
    added = {k: round(medians[k] - base, 3) for k in keys if k in medians}
    print(json.dumps({"suite": "recovery", "baseline_us": round(base, 3), "added_us": added,
                      "calls": n, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
