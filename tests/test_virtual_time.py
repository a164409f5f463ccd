"""The virtual-time loop the timing-sensitive tests run on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shannon_otel.testing import VirtualTimeLoop, run_virtual


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


@pytest.mark.parametrize("at", [3e7, 1e9])
def test_a_timer_due_exactly_now_runs_however_late_the_virtual_clock(at: float) -> None:
    # asyncio runs the timers due before time() + 1 ns. Past ~1e7 virtual seconds time() + 1 ns rounded back
    # to time(): a timer due exactly at the virtual now (where every jump lands) never ran, and the loop spun
    # for good (run_virtual(asyncio.sleep(3e7)) never returned). Checked a loop iteration at a time first, so
    # that the bug fails this test instead of hanging it.
    loop = VirtualTimeLoop()
    try:
        fired: list[float] = []
        loop.advance(at)
        loop.call_at(at, lambda: fired.append(loop.time()))
        for _ in range(3):  # each: one iteration of the loop
            loop.call_soon(loop.stop)
            loop.run_forever()
        assert fired == [at]
    finally:
        loop.close()

    async def main() -> float:
        await asyncio.sleep(at)
        await asyncio.wait_for(asyncio.sleep(5), 10)
        return asyncio.get_running_loop().time()

    assert run_virtual(main()) == at + 5


def test_a_sleep_of_a_numpy_float32_delay_ends() -> None:
    """The wait to a timer due at a float32 (``loop.time() + np.float32(0.1)``) made the virtual clock a
    float32; ``time() + 1 ns`` then rounded back to ``time()``, the timer never ran and the loop spun for good.
    A watchdog thread stops the loop, so that the bug fails this test instead of hanging it."""
    np = pytest.importorskip("numpy")
    loop = VirtualTimeLoop()
    watchdog = threading.Timer(10.0, lambda: loop.call_soon_threadsafe(loop.stop))
    try:
        fired: list[float] = []

        def fire() -> None:
            fired.append(loop.time())
            loop.stop()

        loop.advance(1.0)
        loop.call_later(np.float32(0.1), fire)
        watchdog.start()
        loop.run_forever()
        assert fired == [pytest.approx(1.1)] and type(loop.time()) is float
    finally:
        watchdog.cancel()
        loop.close()
