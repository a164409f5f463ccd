"""One tick's worth of calls through a Retry, one of them retried: the workload of the retry-rate anomaly tests."""

from __future__ import annotations

from shannon_otel import Retry
from shannon_otel.testing import FakeClock


async def eight_calls_the_fourth_retried(retry: Retry, clock: FakeClock) -> None:
    """Eight calls through ``retry``, each advancing ``clock`` by 1/8 s (a tick of 1 s): the fourth fails its first
    try (and is retried), the eighth closes the tick."""
    for i in range(8):
        tries = [0]

        async def call(i: int = i, tries: list[int] = tries) -> None:
            tries[0] += 1
            clock.advance(0.125)
            if i == 3 and tries[0] == 1:
                raise ConnectionError("flaky")

        await retry.call(call)
