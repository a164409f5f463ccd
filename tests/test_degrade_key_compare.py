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
from _forked import run_python

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


class _Sometimes:
    """A key of one hash throughout, comparable until ``strict`` is set; then keys 1 and 2 fail to compare."""

    strict = False

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        if _Sometimes.strict and isinstance(other, _Sometimes) and {self.n, other.n} == {1, 2}:
            raise RuntimeError("cannot compare 1 with 2")
        return isinstance(other, _Sometimes) and other.n == self.n


def test_dropping_the_least_recently_used_value_over_keys_that_fail_to_compare_keeps_the_result(
    telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture,
) -> None:
    """Dropping a value past ``max_keys`` looks its key up too (a dict compares it with the keys of its hash met
    first): ``OrderedDict.popitem`` raised that comparison's error into the call whose result was just stored."""

    async def main() -> None:
        degrade = Degrade(last_good=True, key=lambda args, kwargs: _Sometimes(args[0]), max_keys=2,
                          **telemetry.providers)

        @degrade
        async def get(n: int) -> str:
            return f"value {n}"

        _Sometimes.strict = False
        try:
            for n in (1, 2, 1):  # 2 is now the least recently used, 1 met before it in a lookup
                await get(n)
            _Sometimes.strict = True
            with caplog.at_level(logging.WARNING, logger="shannon_otel"):
                assert await get(3) == Served("value 3")  # 2 dropped: compared with 1 first
        finally:
            _Sometimes.strict = False
        assert await get(4) == Served("value 4")  # the drop that failed is made up: the newest 2 kept
        assert len(degrade._state.goods) == 2
        calls = [s for s in telemetry.spans() if s.name.endswith("get")]
        assert {dict(s.attributes or {}).get("shannon.call.outcome") for s in calls} == {"success"}

    asyncio.run(main())


# Event loops in two threads sharing one Degrade: the other thread runs its calls while this one's key is being
# compared (a dataclass's __eq__ is Python code, where a thread switch may fall), here made certain by starting it
# from __eq__ and waiting for it. Run in an interpreter of its own: before, the last good values were an
# OrderedDict, and its move_to_end, finding the dict changed under it, crashed the interpreter (SIGSEGV).
_OTHER_THREAD_MID_COMPARE = """
import asyncio, threading
from shannon_otel import Degrade

class Key:
    others = 0  # times a comparison will let the other thread's calls run

    def __init__(self, n):
        self.n = n

    def __hash__(self):
        return 7 if self.n < 1000 else self.n

    def __eq__(self, other):
        if Key.others:
            Key.others -= 1
            thread = threading.Thread(target=asyncio.run, args=(others(1000 + 100 * Key.others),))
            thread.start()
            thread.join()
        return isinstance(other, Key) and other.n == self.n

degrade = Degrade(last_good=True, key=lambda args, kwargs: Key(args[0]), max_keys=8)

@degrade
async def get(n):
    return f"value {n}"

async def others(first):
    for n in range(first, first + 4):
        assert (await get(n)).value == f"value {n}"

async def main():
    for n in range(1, 6):
        await get(n)
    Key.others = 3
    print((await get(4)).value)
    assert len(degrade._state.goods) <= 8

asyncio.run(main())
"""


def test_another_threads_calls_during_a_key_comparison_leave_the_values_sound() -> None:
    assert run_python("-c", _OTHER_THREAD_MID_COMPARE).stdout.split() == ["value", "4"]


class _HashedOnce:
    """A key whose ``__hash__`` works once (as the call is keyed, before the operation runs) and then raises."""

    def __init__(self) -> None:
        self.hashed = False

    def __hash__(self) -> int:
        if self.hashed:
            raise RuntimeError("cannot hash again")
        self.hashed = True
        return 7


def test_a_key_that_fails_to_hash_once_the_operation_ran_costs_no_result_and_is_named_so(
    telemetry: InMemoryTelemetry, caplog: pytest.LogCaptureFixture,
) -> None:
    """Storing the value hashes the key again: the result is returned (not kept), and the warning blames the key's
    ``__hash__`` as well as its ``__eq__`` (it named only ``__eq__``, which no one had called)."""

    async def main() -> None:
        degrade = Degrade(last_good=True, key=lambda args, kwargs: _HashedOnce(), **telemetry.providers)

        @degrade
        async def get(n: int) -> str:
            return f"value {n}"

        with caplog.at_level(logging.WARNING, logger="shannon_otel"):
            assert await get(1) == Served("value 1")
        assert len(degrade._state.goods) == 0
        (record,) = [r for r in caplog.records if r.exc_info]
        assert record.exc_info is not None and "cannot hash again" in str(record.exc_info[1])
        assert "__hash__" in record.getMessage(), record.getMessage()

    asyncio.run(main())
