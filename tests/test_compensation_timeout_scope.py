"""A saga's ``compensation_timeout_s`` is a timeout to the policies running inside the compensation.

The wave's ``task_timeout`` and every ``Timeout`` policy tell the code they cut off that their cancellation is a
timeout (``_deadline.timed_out``): an attempt records ``timeout``, the operation ``failure`` with ``error.type``
``TimeoutError``, and a ``Hedge`` gives what an attempt that caught its ``CancelledError`` then returns. The
compensation's own timeout did not: a protected call inside a compensation cut off by it recorded a
``cancellation`` (its attempt too) under a compensation span saying ``timeout``, and a ``Hedge`` inside threw away
the value the undo returned late, leaving the step in effect, where the same undo without the hedge, or under a
``Retry``, counted as compensated (docs: a compensation that returns after its cancellation is compensated).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _span_attrs import attrs
from _virtual_time import watched

from shannon_otel import Hedge, Retry, Saga, SagaError, Step
from shannon_otel.testing import InMemoryTelemetry


async def _done() -> int:
    return 1


async def _fails() -> None:
    raise ValueError("the second step failed")


def test_a_call_inside_a_compensation_cut_off_by_its_timeout_records_a_timeout() -> None:
    tel = InMemoryTelemetry()
    undo = Retry(attempts=1, name="undo", **tel.providers)

    async def slow(value: int) -> None:
        await asyncio.sleep(5.0)

    saga = Saga("order", compensation_timeout_s=1.0, **tel.providers)

    async def main() -> SagaError:
        with pytest.raises(SagaError) as caught:
            await saga.run(Step("reserve", _done, lambda value: undo.call(slow, value)), Step("pay", _fails))
        return caught.value

    error = watched(main)
    assert list(error.result.failed_compensations) == ["reserve"]
    assert attrs(tel.span("compensate reserve"))["shannon.compensation.outcome"] == "timeout"
    operation = attrs(tel.span("undo"))
    assert (operation["shannon.call.outcome"], operation["error.type"]) == ("failure", "TimeoutError")
    assert attrs(tel.span("attempt 1"))["shannon.attempt.outcome"] == "timeout"


@pytest.mark.parametrize("policy", ["none", "retry", "hedge"])
def test_an_undo_returning_after_its_compensation_timed_out_is_compensated_under_any_policy(policy: str) -> None:
    returned: list[str] = []

    async def undo(value: int) -> str:
        try:
            await asyncio.sleep(5.0)
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(0.5)
        returned.append("undone")
        return "undone"

    wrapped: dict[str, Any] = {
        "none": undo,
        "retry": lambda value: Retry(attempts=1, instrument=False).call(undo, value),
        "hedge": lambda value: Hedge(10.0, attempts=1, instrument=False).call(undo, value),
    }
    saga = Saga("order", compensation_timeout_s=1.0, instrument=False)

    async def main() -> SagaError:
        with pytest.raises(SagaError) as caught:
            await saga.run(Step("reserve", _done, wrapped[policy]), Step("pay", _fails))
        return caught.value

    error = watched(main)
    assert returned == ["undone"]
    assert error.result.compensated == ("reserve",)
    assert error.result.rolled_back
