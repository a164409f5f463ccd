"""The virtual-time loop the timing-sensitive tests run on."""

from __future__ import annotations

import asyncio
import time

import pytest

from shannon_otel.testing import run_virtual


def test_sleeps_and_timeouts_follow_their_deadlines_instantly() -> None:
    async def main() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        async def nap(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            order.append(name)

        await asyncio.gather(nap("long", 3600.0), nap("short", 0.001), nap("mid", 60.0))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(10.0):
                await asyncio.sleep(11.0)
        return loop.time(), order

    wall = time.perf_counter()
    virtual, order = run_virtual(main())
    assert order == ["short", "mid", "long"]
    assert virtual == pytest.approx(3610.0)
    assert time.perf_counter() - wall < 60.0  # an hour of virtual time, not of wall time
