"""Credits: the O(1)-release semaphore behind stream gates and resource pools."""

from __future__ import annotations

import asyncio
import random

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


class _ComparedFuture(asyncio.Future[None]):
    """A waiter counting how often it is compared with another (what a scan of the queue for one costs)."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _ComparedFuture.compared += 1
        return self is other

    __hash__ = asyncio.Future.__hash__


def test_cancelling_many_waiters_in_any_order_never_scans_the_queue_for_each() -> None:
    """Each cancelled waiter was looked up and removed from the queue, a scan of it each: a wave's workers
    waiting on a pool are cancelled in no set order, and cancelling 100_000 of them took ~30 s. The rest are
    still served in arrival order, each credit once."""
    n = 2_000
    order: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.create_future = lambda: _ComparedFuture(loop=loop)  # type: ignore[method-assign]
        credits = Credits(0)

        async def waiter(i: int) -> None:
            await credits.acquire()
            order.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(n)]
        await asyncio.sleep(0)
        doomed = [t for i, t in enumerate(tasks) if i % 4]  # three in four, in a shuffled order
        random.Random(7).shuffle(doomed)
        for t in doomed:
            t.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        for _ in range(n // 4):
            credits.release()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1)
        assert credits.free == 0
        credits.release()
        assert credits.free == 1

    asyncio.run(main())
    assert order == list(range(0, n, 4))
    assert _ComparedFuture.compared <= 4 * n, _ComparedFuture.compared
