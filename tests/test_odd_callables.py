"""User callables of an odd but legal-looking kind, where the library takes one.

- A clock that returns a coroutine (``clock=lambda: read_async()``) was refused, but the coroutine was left unclosed:
  Python also warned that it was never awaited.
- A start method of an observer (``task_started``, ``attempt_started``, ``step_started``) that returned a coroutine (a
  plain method calling an async one) was taken as its token: the coroutine never ran, nothing was counted, and Python
  warned that it was never awaited. A hook's ``for_scope`` returning one was counted, and still left unclosed.
- A generator function given where a plain callable belongs (a ``yield`` in a ``Retry(on=)`` predicate, a
  ``Degrade(key=)``, an ``on_progress``) was accepted: its calls returned a generator, its body never run, which a
  predicate read as true (every error retried), a key as a fresh key (no last good value ever served).
- ``@Retry()`` on a callable whose ``__qualname__`` is no str (``AsyncMock(spec=fetch)``'s is a Mock) raised
  ``functools.wraps``'s "__qualname__ must be set to a string object".
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest

from shannon_otel import (
    CallObserver,
    Degrade,
    Fallback,
    Hedge,
    Hook,
    Outcome,
    Retry,
    Saga,
    SagaObserver,
    Step,
    Wave,
    WaveObserver,
    configure,
)
from shannon_otel.testing import InMemoryTelemetry


async def _later(*args: object) -> float:
    return 1.0


def _never_awaited(run: Callable[[], Any]) -> tuple[Any, list[str]]:
    """``run()``'s result (or the type and message of the exception it raised: its traceback, which holds what
    it was raised about, is dropped before collecting) and the "never awaited" warnings it left."""
    gc.collect()  # what an earlier test left to the collector warns now, not inside the block
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = run()
        except Exception as exc:
            result = (type(exc), str(exc))
        gc.collect()
    return result, [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def _ok() -> str:
    return "ok"


CLOCK_ENTRY_POINTS: dict[str, Callable[[Callable[[], Any]], Any]] = {
    "Wave": lambda clock: Wave("w", clock=clock, instrument=False).map(lambda x: _ok(), [1]),
    "Retry": lambda clock: Retry(clock=clock, budget_s=5, instrument=False).call(_ok),
    "Saga": lambda clock: Saga("s", clock=clock, instrument=False).run(Step("a", _ok)),
}


@pytest.mark.parametrize("entry", sorted(CLOCK_ENTRY_POINTS))
def test_a_clock_returning_a_coroutine_is_refused_and_its_coroutine_closed(entry: str) -> None:
    result, unawaited = _never_awaited(lambda: asyncio.run(CLOCK_ENTRY_POINTS[entry](lambda: _later())))
    assert unawaited == []
    kind, message = result
    assert kind is TypeError
    assert "clock must be a plain (sync) callable; it returned an awaitable" in message


class _WaveObs(WaveObserver):
    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        return _later(index)  # a plain method calling an async one


class _WaveHook(Hook):
    def wave_started(self, event: object) -> WaveObserver:
        return _WaveObs()


class _CallObs(CallObserver):
    def attempt_started(self, attempt: int) -> Any:
        return _later(attempt)


class _CallHook(Hook):
    def call_started(self, event: object) -> CallObserver:
        return _CallObs()


class _SagaObs(SagaObserver):
    def step_started(self, name: str) -> Any:
        return _later(name)


class _SagaHook(Hook):
    def saga_started(self, event: object) -> SagaObserver:
        return _SagaObs()


class _ScopeHook(Hook):
    def for_scope(self, hooks: tuple[Hook, ...]) -> Any:
        return _later(hooks)


START_METHODS: dict[str, tuple[Callable[[], Hook], Callable[[list[Hook], dict[str, Any]], Any]]] = {
    "task_started": (_WaveHook, lambda hooks, p: Wave("w", hooks=hooks, **p).map(lambda x: _ok(), [1])),
    "attempt_started": (_CallHook, lambda hooks, p: Retry(hooks=hooks, **p).call(_ok)),
    "step_started": (_SagaHook, lambda hooks, p: Saga("s", hooks=hooks, **p).run(Step("a", _ok))),
    "for_scope": (_ScopeHook, lambda hooks, p: Retry(hooks=hooks, **p).call(_ok)),
}


def _value(result: Any) -> Any:
    if hasattr(result, "results"):
        return [r.value for r in result.results]
    return getattr(result, "values", result)


@pytest.mark.parametrize("method", sorted(START_METHODS))
def test_a_start_method_returning_a_coroutine_is_the_hooks_counted_failure(method: str) -> None:
    make_hook, entry = START_METHODS[method]
    hook = make_hook()
    tel = InMemoryTelemetry()
    try:
        result, unawaited = _never_awaited(lambda: asyncio.run(entry([hook], tel.providers)))
        assert _value(result) in (["ok"], ("ok",), "ok")  # the user's result, unchanged
        assert unawaited == []
        assert hook.hook_errors == {method: 1}
        (point,) = tel.points("shannon.hook.errors")
        assert point.value == 1
        assert all(span.end_time is not None for span in tel.spans())
    finally:
        tel.shutdown()


def _yields_false(error: BaseException) -> Iterator[bool]:
    yield False


def _yields_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    yield args


def _yields_nothing(*args: object) -> Iterator[None]:
    yield None


@pytest.mark.parametrize(("name", "build"), [
    ("on", lambda fn: Retry(on=fn)),
    ("key", lambda fn: Degrade(last_good=True, key=fn)),
    ("on_progress", lambda fn: Wave("w", on_progress=fn)),
    ("redact", lambda fn: configure(redact=fn, exporter="none", set_global=False)),
])
@pytest.mark.parametrize("fn", [_yields_false, _yields_key, _yields_nothing])
def test_a_generator_function_where_a_plain_callable_belongs_is_refused(
    name: str, build: Callable[[Any], object], fn: Any,
) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be .*got the generator function"):
        build(fn)


def test_a_predicate_returning_a_generator_is_refused_not_read_as_true() -> None:
    """``on=lambda e: check(e)`` of a generator function ``check``: the generator is truthy, so every error was
    retried whatever ``check`` said."""
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("no")

    def check(error: BaseException) -> Any:  # a plain function: only its call shows the generator
        return _yields_false(error)

    retry = Retry(attempts=3, initial=0, on=check, instrument=False)
    with pytest.raises(TypeError, match="on must be a plain callable returning its value; it returned a generator"):
        asyncio.run(retry.call(fails))
    assert calls == 1


async def _fetch(uid: int = 7) -> int:
    return uid


def test_a_policy_decorates_a_callable_whose_qualname_is_not_a_str() -> None:
    """``AsyncMock(spec=fetch).__qualname__`` is a Mock: ``functools.wraps`` refused to copy it onto the wrapper."""
    fake = mock.AsyncMock(spec=_fetch, return_value=3)
    tel = InMemoryTelemetry()
    try:
        decorated = Retry(attempts=1, **tel.providers)(fake)
        assert asyncio.run(decorated()) == 3
        assert decorated.__qualname__ == "AsyncMock"
        assert decorated.__wrapped__ is fake  # type: ignore[attr-defined]
        assert tel.span("AsyncMock").end_time is not None
    finally:
        tel.shutdown()


COROUTINE_OBJECT_PARAMETERS: dict[str, Callable[[Any], object]] = {
    "fallback": lambda c: Fallback(c),
    "cheaper": lambda c: Degrade(cheaper=c),
    "key": lambda c: Degrade(last_good=True, key=c),
    "Retry sleep": lambda c: Retry(sleep=c),
    "Hedge sleep": lambda c: Hedge(1.0, sleep=c),
    "Wave sleep": lambda c: Wave("w", sleep=c),
    "on": lambda c: Retry(on=c),
    "next_delay": lambda c: Retry(next_delay=c),
    "on_progress": lambda c: Wave("w", on_progress=c),
    "clock": lambda c: Wave("w", clock=c),
    "redact": lambda c: configure(redact=c, exporter="none", set_global=False),
}


@pytest.mark.parametrize("parameter", sorted(COROUTINE_OBJECT_PARAMETERS))
def test_a_coroutine_object_where_a_callable_belongs_is_refused_and_closed(parameter: str) -> None:
    """``Fallback(serve_cached())`` for ``Fallback(serve_cached)``: refused, but the coroutine was left to the
    collector, so Python also warned that it was never awaited (the policies' ``fn`` and a saga step closed it)."""
    result, unawaited = _never_awaited(lambda: COROUTINE_OBJECT_PARAMETERS[parameter](_later()))
    assert unawaited == []
    kind, message = result
    assert kind is TypeError
    assert "got the coroutine object" in message


class _YieldingHook(Hook):
    """Each scope method with a `yield` by mistake: its call returns a generator, its body never run."""

    def wave_started(self, event: object) -> Any:
        yield None

    def call_started(self, event: object) -> Any:
        yield None

    def saga_started(self, event: object) -> Any:
        yield None


@pytest.mark.parametrize(("method", "entry"), [
    ("wave_started", lambda hooks, p: Wave("w", hooks=hooks, **p).map(lambda x: _ok(), [1])),
    ("call_started", lambda hooks, p: Retry(hooks=hooks, **p).call(_ok)),
    ("saga_started", lambda hooks, p: Saga("s", hooks=hooks, **p).run(Step("a", _ok))),
])
def test_a_scope_method_returning_a_generator_is_one_failure_saying_so(
    method: str, entry: Callable[[list[Hook], dict[str, Any]], Any],
) -> None:
    """The generator was taken as the scope's observer: each observer method called on it failed on a missing
    attribute (``attempt_started``, ``call_finished``...), several failures, none naming the cause."""
    hook = _YieldingHook()
    tel = InMemoryTelemetry()
    try:
        assert _value(asyncio.run(entry([hook], tel.providers))) in (["ok"], ("ok",), "ok")
        assert hook.hook_errors == {method: 1}
        assert all(span.end_time is not None for span in tel.spans())
    finally:
        tel.shutdown()


def _consumer(seen: list[object]) -> Iterator[None]:
    """A consumer generator: each value sent to it is kept."""
    while True:
        seen.append((yield))


def _primed(seen: list[object]) -> Iterator[None]:
    consumer = _consumer(seen)
    next(consumer)  # started: a token on purpose, unlike a `yield` in the start method
    return consumer


class _PrimedObs(WaveObserver, CallObserver, SagaObserver):
    """Start methods returning a started generator as their token, which the finish methods send the outcome."""

    def __init__(self, seen: list[object], *, by_mistake: bool = False) -> None:
        self.seen = seen
        self.by_mistake = by_mistake

    def _token(self) -> Any:
        return _consumer(self.seen) if self.by_mistake else _primed(self.seen)

    def task_started(self, index: int, name: str, queue_wait_s: float) -> Any:
        return self._token()

    def task_finished(self, token: Any, event: Any) -> None:
        token.send(event.outcome)

    def attempt_started(self, attempt: int) -> Any:
        return self._token()

    def attempt_finished(self, token: Any, event: Any) -> None:
        token.send(event.outcome)

    def step_started(self, step: str) -> Any:
        return self._token()

    def step_finished(self, token: Any, step: str, outcome: Any, error: BaseException | None) -> None:
        token.send(outcome)


class _PrimedHook(Hook):
    def __init__(self, *, by_mistake: bool = False) -> None:
        self.seen: list[object] = []
        self.by_mistake = by_mistake

    def wave_started(self, event: object) -> WaveObserver:
        return _PrimedObs(self.seen, by_mistake=self.by_mistake)

    def call_started(self, event: object) -> CallObserver:
        return _PrimedObs(self.seen, by_mistake=self.by_mistake)

    def saga_started(self, event: object) -> SagaObserver:
        return _PrimedObs(self.seen, by_mistake=self.by_mistake)


TOKEN_ENTRY_POINTS: dict[str, tuple[str, Callable[[list[Hook], dict[str, Any]], Any]]] = {
    # the wave's own path for a single observer (instrument=False), and for several (the OTel hook's first)
    "wave alone": ("task_started", lambda hooks, p: Wave("w", hooks=hooks, instrument=False).map(lambda x: _ok(), [1])),
    "wave": ("task_started", lambda hooks, p: Wave("w", hooks=hooks, **p).map(lambda x: _ok(), [1])),
    "retry": ("attempt_started", lambda hooks, p: Retry(hooks=hooks, **p).call(_ok)),
    "saga": ("step_started", lambda hooks, p: Saga("s", hooks=hooks, **p).run(Step("a", _ok))),
}


@pytest.mark.parametrize("entry", sorted(TOKEN_ENTRY_POINTS))
def test_a_started_generator_a_start_method_returns_is_its_token(entry: str) -> None:
    """Before: every generator token was refused as a `yield` by mistake (counted, the observer missing the scope),
    so an observer handing its finish method a primed consumer (tokens are its own values) saw nothing."""
    _, run = TOKEN_ENTRY_POINTS[entry]
    hook = _PrimedHook()
    tel = InMemoryTelemetry()
    try:
        assert _value(asyncio.run(run([hook], tel.providers))) in (["ok"], ("ok",), "ok")
        assert hook.hook_errors == {}
        assert hook.seen == [Outcome.SUCCESS]  # the finish method had its token back
    finally:
        tel.shutdown()


@pytest.mark.parametrize("entry", sorted(TOKEN_ENTRY_POINTS))
def test_a_start_method_returning_an_unstarted_generator_is_the_hooks_counted_failure(entry: str) -> None:
    method, run = TOKEN_ENTRY_POINTS[entry]
    hook = _PrimedHook(by_mistake=True)  # what a `yield` in the start method returns: a generator never started
    tel = InMemoryTelemetry()
    try:
        assert _value(asyncio.run(run([hook], tel.providers))) in (["ok"], ("ok",), "ok")
        assert hook.hook_errors == {method: 1}
        assert hook.seen == []
        assert all(span.end_time is not None for span in tel.spans())
    finally:
        tel.shutdown()
