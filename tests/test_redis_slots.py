"""``Slots`` (how many commands a ``RedisState`` sends at once): a waiter cancelled never keeps a slot."""

from __future__ import annotations

import asyncio

import pytest

from shannon_otel.redis._slots import Slots


def test_a_waiter_cancelled_before_or_as_it_is_handed_a_slot_keeps_none_and_the_next_gets_it() -> None:
    async def main() -> tuple[int, int, int]:
        slots = Slots(1, 3)
        await slots.acquire()
        before = asyncio.ensure_future(slots.acquire())
        handed = asyncio.ensure_future(slots.acquire())
        last = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        before.cancel()  # cancelled while waiting
        await asyncio.sleep(0)
        slots.release()  # handed to `handed`, cancelled in the same step: passed on to `last`
        handed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await before
        with pytest.raises(asyncio.CancelledError):
            await handed
        await last
        busy = slots.busy
        slots.answered()  # one more at once
        slots.answered()
        grown = slots.limit
        slots.lost()
        return busy, grown, slots.limit

    assert asyncio.run(main()) == (1, 3, 1)
