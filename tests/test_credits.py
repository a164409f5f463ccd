"""Credits: the O(1)-release semaphore behind stream gates and resource pools."""

from __future__ import annotations

import asyncio

import pytest

from shannon_otel.executor._semaphore import Credits


def test_waiters_are_served_in_arrival_order_and_credits_are_conserved() -> None:
    async def main() -> list[int]:
        credits = Credits(1)
        order: list[int] = []
        await credits.acquire()

        async def waiter(i: int) -> None:
            await credits.acquire()
            order.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0)
        for _ in range(3):
            credits.release()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        credits.release()
        assert credits.free == 1
        return order

    assert asyncio.run(main()) == [0, 1, 2]


def test_a_waiter_cancelled_before_its_turn_leaves_the_queue() -> None:
    async def main() -> None:
        credits = Credits(0)
        first = asyncio.create_task(credits.acquire())
        second = asyncio.create_task(credits.acquire())
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        credits.release()
        await asyncio.wait_for(second, 1)
        assert credits.free == 0

    asyncio.run(main())


def test_a_waiter_cancelled_after_it_was_handed_a_credit_passes_it_on() -> None:
    async def main() -> None:
        credits = Credits(0)
        first = asyncio.create_task(credits.acquire())
        second = asyncio.create_task(credits.acquire())
        await asyncio.sleep(0)
        credits.release()  # hands the credit to `first`...
        first.cancel()  # ...which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)  # the credit went on to `second`
        assert credits.free == 0
        credits.release()
        assert credits.free == 1

    asyncio.run(main())
