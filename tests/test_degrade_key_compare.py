"""A ``Degrade(last_good=True, key=...)`` whose keys fail to compare (``__eq__`` raising, which a dict calls only for
two keys of one hash): the operation's outcome is what the caller gets, never that comparison's error.

Before, the key was looked up unguarded: once the operation had returned, storing its value raised the comparison's
error in place of its result (lost, the operation span a failure); once it had failed, looking up a last good value
raised it in place of the declared default (or of the operation's own error)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from shannon_otel import Degrade, Served
from shannon_otel.testing import InMemoryTelemetry


class _Tangled:
    """A key all of whose instances share one hash and which cannot be compared with another instance."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        raise RuntimeError("cannot compare")


@pytest.fixture
def telemetry() -> Iterator[InMemoryTelemetry]:
    t = InMemoryTelemetry()
    yield t
    t.shutdown()


def test_the_result_of_a_call_whose_key_cannot_be_stored_is_returned(
    telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        degrade = Degrade(last_good=True, key=lambda args, kwargs: _Tangled(args[0]), **telemetry.providers)

        @degrade
        async def get(n: int) -> str:
            return f"value {n}"

        assert await get(1) == Served("value 1")
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            assert await get(2) == Served("value 2")  # stored beside the first: their keys compared
        calls = [s for s in telemetry.spans() if s.name.endswith("get")]
        assert [dict(s.attributes or {}).get("shannon.call.outcome") for s in calls] == ["success", "success"]
        assert any("cannot compare" in str(r.exc_info[1]) for r in caplog.records if r.exc_info), caplog.text

    asyncio.run(main())


def test_a_failed_call_whose_key_cannot_be_looked_up_is_served_its_default(
    telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        degrade = Degrade(last_good=True, key=lambda args, kwargs: _Tangled(args[0]), default="static",
                          **telemetry.providers)

        @degrade
        async def get(n: int) -> str:
            if n == 2:
                raise TimeoutError("slow")
            return f"value {n}"

        assert await get(1) == Served("value 1")
        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            served = await get(2)
        assert (served.value, served.degraded, served.mode, served.reason) == ("static", True, "static", "timeout")
        assert isinstance(served.error, TimeoutError)
        assert any("cannot compare" in str(r.exc_info[1]) for r in caplog.records if r.exc_info), caplog.text

    asyncio.run(main())


def test_with_nothing_else_to_serve_the_operations_own_error_is_raised(telemetry: InMemoryTelemetry) -> None:
    async def main() -> None:
        degrade = Degrade(last_good=True, key=lambda args, kwargs: _Tangled(args[0]), **telemetry.providers)

        @degrade
        async def get(n: int) -> str:
            if n == 2:
                raise TimeoutError("slow")
            return f"value {n}"

        await get(1)
        with pytest.raises(TimeoutError, match="slow"):
            await get(2)

    asyncio.run(main())
