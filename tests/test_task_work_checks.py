"""``task(work)`` refuses, where it is given, work a wave could never run: a policy-decorated function that needs
arguments, and an async generator function (as ``Wave.map`` and the policies' decorator already refuse one).

Before, both were accepted and every run of the task failed: the decorated one with a ``NotAwaitableError`` ("fn
could not be called with the call's arguments"), since the decorator's wrapper takes ``*args, **kwargs`` and
``task()`` read the wrapper's code, not the function's; the generator one with "it returned async_generator".
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from shannon_otel import Pipeline, Retry, Timeout, Wave, resilient, task
from shannon_otel.testing import InMemoryTelemetry, run_virtual

ZERO_ARGS = r"^work must be a zero-argument async callable \(the wave calls it with no arguments\)"


@Retry(attempts=2, initial=0)
async def fetch(url: str) -> str:
    return url


@resilient(Timeout(5), Retry(attempts=2, initial=0))
async def fetch_kw(*, url: str) -> str:
    return url


@Retry(attempts=2, initial=0)
async def ping() -> str:
    return "pong"


class Client:
    @Retry(attempts=2, initial=0)
    async def get(self, url: str) -> str:
        return url

    @Retry(attempts=2, initial=0)
    async def ping(self) -> str:
        return "pong"

    @classmethod
    @Retry(attempts=2, initial=0)
    async def make(cls, url: str) -> str:
        return url

    @staticmethod
    @Retry(attempts=2, initial=0)
    async def static(url: str) -> str:
        return url


async def _plain_get(url: str) -> str:
    return url


async def pages() -> AsyncIterator[int]:
    yield 1


NEEDS_ARGUMENTS: dict[str, Callable[[], Any]] = {
    "decorated function": lambda: fetch,
    "resilient keyword-only": lambda: fetch_kw,
    "decorated method, bound": lambda: Client().get,
    "decorated method, unbound": lambda: Client.ping,
    "decorated classmethod": lambda: Client.make,
    "decorated staticmethod": lambda: Client.static,
    "policy on a bound method": lambda: Retry(attempts=2)(Client().get),
    "policies stacked": lambda: Timeout(5)(fetch),
    "pipeline decorator": lambda: Pipeline(Retry(attempts=2))(_plain_get),
}


@pytest.mark.parametrize("case", list(NEEDS_ARGUMENTS))
def test_a_policy_decorated_function_that_needs_arguments_is_refused_naming_work(case: str) -> None:
    with pytest.raises(TypeError, match=ZERO_ARGS + r": it is called with 0 positional arguments.*missing"):
        task(NEEDS_ARGUMENTS[case]())


def test_an_async_generator_function_is_refused_naming_work() -> None:
    with pytest.raises(TypeError, match=ZERO_ARGS + r", got the async generator function"):
        task(pages)  # type: ignore[arg-type]


def _supplying(func: Callable[[str], Awaitable[str]]) -> Callable[..., Awaitable[str]]:
    """A user's own decorator that supplies the argument itself: its ``__wrapped__`` needs one, its call does not."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Awaitable[str]:
        return func("supplied", *args, **kwargs)

    return wrapper


def test_decorated_functions_callable_without_arguments_are_taken_and_run() -> None:
    telemetry = InMemoryTelemetry()
    specs = [
        task(ping, name="ping"), task(Client().ping, name="method"), task(_supplying(_plain_get), name="user's"),
        task(Retry(attempts=2, initial=0)(_supplying(_plain_get)), name="policy on user's"),
        task(functools.partial(fetch, "p"), name="partial"),
    ]
    result = run_virtual(Wave("w", **telemetry.providers).run(specs))
    assert result.values() == ["pong", "pong", "supplied", "supplied", "p"]
    tasks = telemetry.spans()
    assert sorted(s.name for s in tasks if s.name.startswith("task ")) == [
        "task method", "task partial", "task ping", "task policy on user's", "task user's",
    ]
    assert all(s.end_time is not None for s in tasks)
