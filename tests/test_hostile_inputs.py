"""Hostile values the bad-input table (``benchmarks/_bad_inputs.py``) and the exotic matrix
(tests/test_exotic_inputs.py) did not try, where the message itself is the point: a class given where an async
callable belongs, and exception types in a list, a set or a generator where ``except`` takes a tuple. The
table has the rest of the round's cases (an array as ``engine`` / ``on_unavailable``, a 64-character DNS label
as ``MetricsServer``'s ``host``, a pool name no pool can have)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from _user_calls import _one

import shannon_otel as so
import shannon_otel.testing as sot

loose: Any = so  # the public API, untyped: these tests pass what the annotations forbid on purpose

# Bug: each was accepted; the class was called where the library awaits what it returns, and the instance it made
# raised NotAwaitableError at the first use: a fallback's in the outage it was to serve (the user's error replaced),
# a sleep's at the first retry or hedge, a compensation's in the rollback.
CLASSES: list[tuple[str, Callable[[], object]]] = [
    ("fallback", lambda: loose.Fallback(ValueError)),
    ("fallback", lambda: loose.Fallback(KeyboardInterrupt)),
    ("cheaper", lambda: loose.Degrade(cheaper=dict)),
    ("sleep", lambda: loose.Retry(sleep=KeyboardInterrupt)),
    ("sleep", lambda: loose.Hedge(delay=0.1, sleep=ValueError)),
    ("sleep", lambda: loose.Wave("w", sleep=float)),
    ("action", lambda: loose.Step("a", object)),
    ("compensate", lambda: loose.Step("a", _one, compensate=dict)),
]


@pytest.mark.parametrize(("param", "build"), CLASSES, ids=[f"{i}-{p}" for i, (p, _) in enumerate(CLASSES)])
def test_a_class_where_an_async_callable_belongs_is_refused_where_it_is_given(
    param: str, build: Callable[[], object],
) -> None:
    with pytest.raises(TypeError, match=rf"^{param} must be an async callable.*, got the class \w+: calling it makes "
                                        r"an instance, which cannot be awaited"):
        build()


class _Pause:
    """A class whose instances are awaitable: calling it makes what ``sleep=`` must return."""

    slept: list[float] = []  # noqa: RUF012 - the test's record

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __await__(self) -> Generator[Any, None, None]:
        _Pause.slept.append(self.seconds)
        return asyncio.sleep(self.seconds).__await__()


def test_a_class_whose_instances_are_awaitable_is_still_a_sleep() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first")
        return 7

    _Pause.slept.clear()
    retry = loose.Retry(sleep=_Pause, jitter="none", initial=0.5, instrument=False)
    assert sot.run_virtual(retry.call(flaky)) == 7
    assert _Pause.slept == [0.5]


class _Served:
    """A class whose ``async def __new__`` (the "async constructor" idiom) makes a coroutine, not an instance."""

    async def __new__(cls, error: BaseException) -> Any:  # type: ignore[misc]
        return f"served after {type(error).__name__}"


class _Factory(type):
    """A metaclass whose ``__call__`` makes a coroutine: its classes' calls are awaitable."""

    def __call__(cls, error: BaseException) -> Any:
        async def made() -> str:
            return f"made after {type(error).__name__}"
        return made()


class _Made(metaclass=_Factory):
    pass


@pytest.mark.parametrize(("fallback", "expected"), [
    (_Served, "served after ConnectionError"), (_Made, "made after ConnectionError"),
], ids=["async __new__", "metaclass __call__"])
def test_a_class_whose_call_makes_an_awaitable_is_still_a_fallback(fallback: type, expected: str) -> None:
    """Bug: any class without ``__await__`` was refused, as if calling it surely made a plain instance of it; one whose
    ``__new__`` or metaclass ``__call__`` is the user's returns what that code returns (here a coroutine), and worked
    before the check. Refused now: only a class whose construction is Python's own (an exception class, ``dict``)."""

    async def down() -> str:
        raise ConnectionError("down")

    assert sot.run_virtual(loose.Fallback(fallback, instrument=False).call(down)) == expected


def _types() -> Iterator[type[Exception]]:
    yield ConnectionError
    yield TimeoutError


# `except` takes a tuple only. Before, "on must be ... got [<class 'ConnectionError'>, ...]" read as refusing the
# types themselves; it now says to pass a tuple, and a generator is left unconsumed.
EXCEPTION_PARAMS: list[tuple[str, Callable[[Any], object]]] = [
    ("on", lambda v: loose.Retry(on=v)),
    ("on", lambda v: loose.BreakerConfig(on=v)),
    ("ignore", lambda v: loose.BreakerConfig(ignore=v)),
    ("on", lambda v: loose.Fallback(_on_error, on=v)),
    ("on", lambda v: loose.Degrade(default=0, on=v)),
]
COLLECTIONS: dict[str, Callable[[], Any]] = {
    "list": lambda: [ConnectionError, TimeoutError], "set": lambda: {ConnectionError}, "generator": _types,
}


async def _on_error(error: BaseException) -> int:
    return 0


@pytest.mark.parametrize("kind", list(COLLECTIONS))
@pytest.mark.parametrize(("param", "build"), EXCEPTION_PARAMS,
                         ids=[f"{i}-{p}" for i, (p, _) in enumerate(EXCEPTION_PARAMS)])
def test_exception_types_not_in_a_tuple_are_refused_saying_to_pass_one(
    param: str, build: Callable[[Any], object], kind: str,
) -> None:
    value = COLLECTIONS[kind]()
    with pytest.raises(TypeError, match=rf"^{param} must be an exception type or a tuple of them, got a {kind}, .*: "
                                        r"pass a tuple, as `except` takes"):
        build(value)
    if kind == "generator":
        assert list(value) == [ConnectionError, TimeoutError]  # not consumed by the check


# Bug: two finite steps past the float range made FakeClock read inf, and every duration read on it after was
# inf - inf = NaN (as an infinite step did before that was refused).
@pytest.mark.parametrize("move", ["advance", "sleep"])
def test_a_fake_clock_step_past_the_float_range_is_refused_and_leaves_the_clock_as_it_was(move: str) -> None:
    clock = sot.FakeClock(start=1e308)

    async def step(seconds: float) -> None:
        if move == "advance":
            clock.advance(seconds)
        else:
            await clock.sleep(seconds)

    sot.run_virtual(step(1e307))
    with pytest.raises(ValueError, match=r"^seconds must keep the clock within the float range, got 1e\+308 with the "
                                         r"clock at 1\.1e\+308$"):
        sot.run_virtual(step(1e308))
    assert clock() == 1.1e308
