"""set_testing scopes: nested or overlapping (two concurrent tests), the setting after they exit is the
one from before them, and while any is active it is that of the latest one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from shannon_otel.recovery import Retry
from shannon_otel.recovery._backoff import TESTING
from shannon_otel.testing import is_testing, run_virtual, set_testing


@pytest.fixture(autouse=True)
def off_around() -> Iterator[None]:
    set_testing(False)
    yield
    set_testing(False)


def setting() -> tuple[bool, int | None]:
    return is_testing(), TESTING.attempts


def attempts_made(retry: Retry) -> int:
    made = 0

    async def fails() -> None:
        nonlocal made
        made += 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        run_virtual(retry.call(fails))
    return made


def test_nested_scopes_restore_each_level() -> None:
    with set_testing(True):
        with set_testing(True, attempts=2):
            assert setting() == (True, 2)
        assert setting() == (True, None)
    assert setting() == (False, None)


def test_a_scope_exiting_before_a_later_one_leaves_the_later_one_in_force_then_all_restore() -> None:
    retry = Retry(attempts=5, initial=1.0, instrument=False)
    first = set_testing(True)
    first.__enter__()
    second = set_testing(True, attempts=2)
    second.__enter__()
    first.__exit__(None, None, None)
    assert setting() == (True, 2)  # the second test is still running: its setting holds
    assert attempts_made(retry) == 2
    second.__exit__(None, None, None)
    assert setting() == (False, None)  # both ended: as before either began
    assert attempts_made(Retry(attempts=3, initial=0.0, maximum=0.0, instrument=False)) == 3


def test_two_overlapping_async_tests_leave_testing_off() -> None:
    async def a_test(start: float, hold: float, attempts: int) -> None:
        await asyncio.sleep(start)
        with set_testing(True, attempts=attempts):
            await asyncio.sleep(hold)
            assert is_testing()

    async def both() -> None:
        await asyncio.gather(a_test(0, 2, 3), a_test(1, 2, 4))

    run_virtual(both())
    assert setting() == (False, None)


def test_three_scopes_exiting_in_any_order_restore_the_setting_from_before() -> None:
    with set_testing(True, attempts=7):
        scopes = [set_testing(True, attempts=n) for n in (1, 2, 3)]
        for s in scopes:
            s.__enter__()  # each applies at its set_testing() call; entering changes nothing
        assert setting() == (True, 3)
        seen = []
        for k in (0, 2, 1):
            scopes[k].__exit__(None, None, None)
            seen.append(setting())
        # the latest active scope's setting while any is left, then the one from before them
        assert seen == [(True, 3), (True, 2), (True, 7)]
    assert setting() == (False, None)


def test_a_scope_exited_without_being_entered_restores_its_previous_setting() -> None:
    scope = set_testing(True, attempts=2)
    scope.__exit__(None, None, None)
    assert setting() == (False, None)
