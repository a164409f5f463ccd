"""A hook method set on the instance (``hook.wave_started = fn``) as an ``async def`` is refused where the
hook is given, as one defined on the class is.

Accepted, it was called without await: its coroutine became the scope's "observer", every task failed on
``'coroutine' object has no attribute 'task_started'`` (counted on the hook, far from the cause), the
callback never ran and Python warned that the coroutine was never awaited.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from shannon_otel import CallObserver, CircuitBreaker, Hook, Outcome, SagaObserver, Step, Wave, WaveObserver
from shannon_otel.recovery import Retry, Saga


class Plain(Hook):
    pass


async def started(event: object) -> None:
    return None


ENTRY_POINTS: dict[str, Callable[[list[Hook]], object]] = {
    "Wave": lambda hooks: Wave("w", hooks=hooks),
    "Retry": lambda hooks: Retry(attempts=2, hooks=hooks),
    "Saga": lambda hooks: Saga("order", hooks=hooks),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("method", ["wave_started", "call_started", "saga_started", "anomaly", "hook_failed"])
def test_an_async_method_set_on_the_instance_is_refused(entry: str, method: str) -> None:
    hook = Plain()
    setattr(hook, method, started)
    with pytest.raises(TypeError, match=rf"plain functions \(called without await\): Plain\.{method} is async"):
        ENTRY_POINTS[entry]([hook])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_hook_class_given_for_an_instance_is_refused_saying_so(entry: str) -> None:
    """``hooks=[MyHook]`` (the class, not ``MyHook()``) was refused as "must hold Hook objects (subclass
    shannon_otel.Hook)", advice the class already follows."""
    with pytest.raises(TypeError, match=r"hooks must hold Hook instances, got the class Plain: pass Plain\(\)"):
        ENTRY_POINTS[entry]([Plain])  # type: ignore[list-item]


def test_a_plain_method_set_on_the_instance_is_accepted() -> None:
    hook = Plain()
    hook.wave_started = lambda event: None  # type: ignore[method-assign]
    assert Wave("w", hooks=[hook]).hooks == (hook,)


class ReturnsAwaitable(Hook):
    """Plain methods that return what an async helper returns, or the observer's class (no instance)."""

    def __init__(self, returned: str) -> None:
        self.returned = returned

    def _observer(self) -> Any:
        if self.returned == "coroutine":
            return started(None)
        if self.returned == "class":
            return WaveObserver if self.kind == "wave" else (CallObserver if self.kind == "call" else SagaObserver)
        return asyncio.get_running_loop().create_future()

    def wave_started(self, event: object) -> Any:
        self.kind = "wave"
        return self._observer()

    def call_started(self, event: object) -> Any:
        self.kind = "call"
        return self._observer()

    def saga_started(self, event: object) -> Any:
        self.kind = "saga"
        return self._observer()


async def _work(i: int) -> int:
    await asyncio.sleep(0)
    return i


RUNS: dict[str, Callable[[list[Hook]], Coroutine[Any, Any, object]]] = {
    "Wave": lambda hooks: Wave("w", hooks=hooks, instrument=False).map(_work, range(3)),
    "Retry": lambda hooks: Retry(attempts=2, hooks=hooks, instrument=False).call(_work, 7),
    "Saga": lambda hooks: Saga("order", hooks=hooks, instrument=False).run(Step("a", lambda: _work(1))),
}


@pytest.mark.parametrize("entry", sorted(RUNS))
@pytest.mark.parametrize("returned", ["coroutine", "future", "class"])
def test_a_plain_started_method_returning_an_awaitable_or_a_class_is_one_clear_failure(
    entry: str, returned: str,
) -> None:
    """Used as the scope's observer, it failed at every later call (``'coroutine' object has no attribute
    'task_started'``, a missing argument of the unbound method), counted far from the cause, and a coroutine
    was never awaited (never ran; Python warned). Now refused at once: one TypeError saying what to return."""
    hook = ReturnsAwaitable(returned)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" is a RuntimeWarning
        asyncio.run(RUNS[entry]([hook]))
        gc.collect()
    assert sum(hook.hook_errors.values()) == 1, hook.hook_errors


class Notifies(Hook):
    """Plain methods handing each event to an async ``post`` without awaiting it: ``return self.queue.put(event)``
    of an ``asyncio.Queue``, the usual slip. Every method the library calls for nothing back does so."""

    def __init__(self) -> None:
        self.posted: list[object] = []

    async def post(self, event: object) -> None:
        self.posted.append(event)

    def wave_started(self, event: object) -> Any:
        hook = self

        class Observer(WaveObserver):
            def task_finished(self, token: Any, event: Any) -> Any:
                return hook.post(event)

            def wave_finished(self, report: Any) -> Any:
                return hook.post(report)

        return Observer()

    def call_started(self, event: object) -> Any:
        hook = self

        class Observer(CallObserver):
            def call_finished(self, event: Any) -> Any:
                return hook.post(event)

        return Observer()

    def saga_started(self, event: object) -> Any:
        hook = self

        class Observer(SagaObserver):
            def saga_finished(self, event: Any) -> Any:
                return hook.post(event)

        return Observer()

    def breaker_registered(self, event: Any) -> Any:
        return self.post(event)


@pytest.mark.parametrize(("entry", "methods"), [
    ("Wave", {"task_finished": 3, "wave_finished": 1}),
    ("Retry", {"call_finished": 1}),
    ("Saga", {"saga_finished": 1}),
    ("CircuitBreaker", {"breaker_registered": 1, "call_finished": 1}),
])
def test_a_method_returning_a_coroutine_is_the_hooks_failure(entry: str, methods: dict[str, int]) -> None:
    """Called without await, the coroutine never ran: the events were never posted, ``hook_errors`` stayed empty and
    only Python's "never awaited" warning said anything. Now each is a TypeError of that method (counted, logged
    once), its coroutine closed (no warning), the user's results unchanged."""
    hook = Notifies()
    runs: dict[str, Callable[[], Coroutine[Any, Any, object]]] = {
        **{name: functools.partial(run, [hook]) for name, run in RUNS.items()},
        "CircuitBreaker": lambda: CircuitBreaker(name="notified", hooks=[hook], instrument=False).call(_work, 7),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" is a RuntimeWarning
        result = asyncio.run(runs[entry]())
        gc.collect()
    expected = {"Wave": [0, 1, 2], "Retry": 7, "CircuitBreaker": 7}
    if entry == "Wave":
        assert [r.value for r in result.results] == expected[entry]  # type: ignore[attr-defined]
    elif entry == "Saga":
        assert result.outcome is Outcome.SUCCESS  # type: ignore[attr-defined]
    else:
        assert result == expected[entry]
    assert hook.hook_errors == methods
    assert hook.posted == []


class Yields(Hook):
    """A hook whose ``wave_finished`` observer method has a ``yield`` by mistake (a generator function)."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def wave_started(self, event: object) -> Any:
        hook = self

        class Observer(WaveObserver):
            def wave_finished(self, report: Any) -> Any:
                hook.seen.append(report)
                yield report

        return Observer()


def test_a_method_returning_a_generator_is_the_hooks_failure() -> None:
    """Called once and its result unused, a generator method's body never ran, and nothing said so (not even
    Python's "never awaited" warning of a coroutine). Now a TypeError of that method, counted, results unchanged."""
    hook = Yields()
    result = asyncio.run(RUNS["Wave"]([hook]))
    assert [r.value for r in result.results] == [0, 1, 2]  # type: ignore[attr-defined]
    assert hook.hook_errors == {"wave_finished": 1}
    assert hook.seen == []
