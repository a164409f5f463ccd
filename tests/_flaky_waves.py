"""The exemplar tests' workload: waves with a failed task now and then, and Retry calls with a failing try."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from opentelemetry import context
from opentelemetry.trace import NonRecordingSpan, SpanContext, set_span_in_context

from shannon_otel import Retry, Wave


def run_flaky_waves(providers: Mapping[str, object], waves: int, parent: SpanContext | None = None) -> None:
    """``waves`` waves of 3 tasks (one wave in five with a failed task), each followed by a Retry call (one try in
    three failing), in a new loop; under ``parent`` (a remote span context) when given."""
    attempts = {"n": 0}

    async def flaky() -> int:
        attempts["n"] += 1
        if attempts["n"] % 3 == 0:
            raise ValueError("flaky")
        return 1

    async def ok() -> int:
        await asyncio.sleep(0)
        return 1

    async def bad() -> int:
        raise ValueError("bad")

    async def main() -> None:
        token = context.attach(set_span_in_context(NonRecordingSpan(parent))) if parent is not None else None
        try:
            retry = Retry(attempts=3, initial=0.0, name="r", **providers)  # type: ignore[arg-type]
            for i in range(waves):
                wave: Wave[int] = Wave("w", max_concurrency=2, **providers)  # type: ignore[arg-type]
                await wave.run([ok(), ok(), bad() if i % 5 == 0 else ok()])
                await retry.call(flaky)
        finally:
            if token is not None:
                context.detach(token)

    asyncio.run(main())
