"""An async generator function given where the library awaits what a callable returns is refused where it is given.

A ``Fallback``'s fallback, a ``Degrade``'s ``cheaper``, a saga step's compensation and a ``sleep`` run only when
something has failed: such a one was accepted, and failed (a NotAwaitableError in place of the served result) at
its first use, in the very outage it was written for. ``Wave.map`` and the policies' decorator already refused one.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from test_recovery_support import run

from shannon_otel import Degrade, Fallback, Hedge, Retry, Saga, Step, Wave


async def _cached() -> AsyncIterator[str]:
    yield "cached"


async def _served(error: BaseException | None) -> AsyncIterator[str]:
    yield "served"


async def _slept(seconds: float) -> AsyncIterator[None]:
    yield None


class _Streaming:
    async def __call__(self, error: BaseException | None) -> AsyncIterator[str]:
        yield "served"


async def _action() -> str:
    return "done"


# what an untyped caller passes (a type checker refuses each already; the runtime check is for code it does not see)
CACHED: Any = _cached
SERVED: Any = _served
SLEPT: Any = _slept


GIVEN: dict[str, tuple[str, Callable[[], object]]] = {
    "degrade cheaper": ("cheaper", lambda: Degrade(cheaper=CACHED, default="static")),
    "fallback": ("fallback", lambda: Fallback(SERVED)),
    "fallback partial": ("fallback", lambda: Fallback(functools.partial(SERVED))),
    "fallback object": ("fallback", lambda: Fallback(cast("Any", _Streaming()))),
    "step compensate": ("compensate", lambda: Step("charge", _action, SERVED)),
    "step action": ("action", lambda: Step("charge", CACHED)),
    "retry sleep": ("sleep", lambda: Retry(sleep=SLEPT)),
    "hedge sleep": ("sleep", lambda: Hedge(0.1, sleep=SLEPT)),
    "wave sleep": ("sleep", lambda: Wave("w", sleep=SLEPT)),
}


@pytest.mark.parametrize("case", list(GIVEN))
def test_an_async_generator_function_is_refused_where_it_is_given_naming_the_parameter(case: str) -> None:
    name, build = GIVEN[case]
    with pytest.raises(TypeError, match=rf"^{name} must be an async callable.*got the async generator function"):
        build()


def test_a_transaction_step_compensated_by_an_async_generator_function_is_refused_before_it_runs() -> None:
    ran: list[str] = []

    async def charge() -> str:
        ran.append("charge")
        return "charged"

    async def main() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            await tx.step("charge", charge, compensate=SERVED)

    with pytest.raises(TypeError, match=r"^compensate must be an async callable"):
        run(main())
    assert ran == []  # refused before the step ran: nothing to compensate, nothing left uncompensated


def test_the_async_callables_they_take_are_still_accepted() -> None:
    async def cheaper() -> str:
        return "cheap"

    async def fallback(error: Exception) -> str:
        return "served"

    async def timed_out() -> Any:
        raise TimeoutError

    assert run(Degrade(cheaper=cheaper, instrument=False).call(timed_out)).value == "cheap"
    assert run(Fallback(fallback, instrument=False).call(timed_out)) == "served"
    assert run(Fallback(functools.partial(fallback), instrument=False).call(timed_out)) == "served"
