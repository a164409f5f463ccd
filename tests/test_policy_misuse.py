"""A policy (or a wave) given the wrong kind of thing: a coroutine where a factory or a function belongs, an
async callable where a sync one belongs and the reverse, observers with async methods. Each is refused by
name where it is given or at the call, the coroutine is closed, and nothing runs twice or is counted."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _span_attrs import attrs

from shannon_otel import (
    BreakerState,
    CallObserver,
    CallStarted,
    CircuitBreaker,
    Degrade,
    Fallback,
    Hedge,
    Hook,
    Pipeline,
    Policy,
    Progress,
    Retry,
    Saga,
    SagaError,
    SagaObserver,
    SagaStarted,
    Step,
    Timeout,
    Wave,
    WaveObserver,
    WaveStarted,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def _async_predicate(error: BaseException) -> bool:
    return False


async def _async_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0]


async def _async_clock() -> float:
    return 0.0


async def _async_progress(progress: Any) -> None:
    return None


class _AsyncHook(Hook):
    async def call_started(self, event: CallStarted) -> None:  # type: ignore[override]
        return None


@pytest.mark.parametrize(("param", "build"), [
    ("on", lambda: Retry(on=_async_predicate)),  # type: ignore[arg-type]
    ("key", lambda: Degrade(last_good=True, key=_async_key)),  # type: ignore[arg-type]
    ("clock", lambda: Retry(clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: CircuitBreaker("async-clock", clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: Pipeline(Retry(), clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: Saga("s", clock=_async_clock)),  # type: ignore[arg-type]
    ("clock", lambda: Wave("w", clock=_async_clock)),  # type: ignore[arg-type]
    ("random", lambda: Retry(random=_async_clock)),  # type: ignore[arg-type]
    ("on_progress", lambda: Wave("w", on_progress=_async_progress)),  # type: ignore[arg-type]
    ("hooks", lambda: Retry(hooks=[_AsyncHook()])),
])
def test_an_async_function_where_a_sync_callable_belongs_is_refused_naming_the_parameter(
    param: str, build: Callable[[], object],
) -> None:
    """They were accepted, and their coroutines never awaited: Retry(on=async predicate) retried every
    error (a coroutine is truthy), Degrade(key=async) never served a last good value (each call a new
    key), on_progress and async hook methods silently did nothing, an async clock or random source
    failed later with Python's "unsupported operand type(s)"."""
    with pytest.raises(TypeError, match=f"^{param} "):
        build()


def test_a_predicate_or_key_returning_an_awaitable_is_refused_at_the_call_naming_it() -> None:
    """A lambda returning a coroutine cannot be told from a sync callable before it is called."""
    attempts: list[int] = []

    async def fail() -> None:
        attempts.append(1)
        raise ValueError("fails")

    async def get(uid: int) -> int:
        return uid

    async def main() -> None:
        with pytest.raises(TypeError, match=r"^on ") as caught:
            await Retry(on=lambda e: _async_predicate(e), initial=0, instrument=False).call(fail)  # type: ignore[arg-type,return-value]
        assert isinstance(caught.value.__context__, ValueError)
        assert attempts == [1]  # refused at the first failure, not retried as "truthy"
        degrade = Degrade(last_good=True, key=lambda a, k: _async_key(a, k), instrument=False)  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match=r"^key "):
            await degrade.call(get, 1)

    run_virtual(main())


@pytest.mark.parametrize("policy", [Retry, Degrade])
def test_a_keyword_only_policy_used_as_a_bare_decorator_says_to_call_it(policy: Callable[..., object]) -> None:
    """``@retry`` without parentheses raised Python's "Retry.__init__() takes 1 positional argument
    but 2 were given", which names neither the mistake nor the fix."""

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=rf"keyword arguments only.*@{policy.__name__}\(\)"):
        policy(fetch)


@pytest.mark.parametrize(("policy", "said"), [
    (Timeout, r"seconds must be a number in \(0, inf\), got the function '.*fetch': a Timeout is applied above the "
              r"function as @Timeout\(seconds\), e\.g\. @Timeout\(5\); a bare @Timeout took the function it decorates "
              r"as its seconds$"),
    (Hedge, r"delay must be a number in \[0, inf\], got the function '.*fetch': a Hedge is applied above the "
            r"function as @Hedge\(delay\), e\.g\. @Hedge\(0\.5\); a bare @Hedge took .* as its delay$"),
    (CircuitBreaker, r"name must be a non-empty str, got the function '.*fetch': a CircuitBreaker is applied above "
                     r"the function as @CircuitBreaker\(name\), e\.g\. @CircuitBreaker\('payments-api'\); a bare "
                     r"@CircuitBreaker took .* as its name$"),
], ids=["Timeout", "Hedge", "CircuitBreaker"])
def test_a_policy_whose_first_argument_is_needed_used_as_a_bare_decorator_says_so(
    policy: Callable[..., object], said: str,
) -> None:
    """``@Timeout`` above ``async def fetch`` is ``Timeout(fetch)``: refused by the check of its first parameter as
    "seconds must be a number, got <function fetch at 0x...>", the right parameter but nothing of the decorator."""
    with pytest.raises(TypeError, match=said):
        @policy
        async def fetch() -> int:
            return 1


async def _agen() -> Any:
    yield 1


def test_a_bare_resilient_decorator_or_a_policy_class_in_a_pipeline_says_what_to_pass() -> None:
    """``@resilient`` without the policies (or ``resilient(Retry)``) said only "Pipeline takes policies ...,
    got <function fetch>", a class the user never named."""
    from shannon_otel import resilient

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"got <function .*fetch.*>: as a decorator, give it the policies first"):
        resilient(fetch)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got <class .*Retry'>: create one, Retry\(\.\.\.\)$"):
        Pipeline(Timeout(1), Retry)  # type: ignore[arg-type]


@pytest.mark.parametrize("func", [5, _agen])
def test_decorating_what_cannot_be_awaited_is_refused_at_decoration_naming_func(func: Any) -> None:
    """A non-callable or an async generator function was decorated silently; every call then failed
    with Python's "object ... can't be used in 'await' expression"."""
    with pytest.raises(TypeError, match=r"^func "):
        Retry()(func)


async def _doubled(x: int) -> int:
    return 2 * x


@pytest.mark.parametrize("kind", [staticmethod, classmethod])
def test_a_policy_above_staticmethod_or_classmethod_is_refused_saying_to_put_it_below(kind: type) -> None:
    """``@Fallback(...)`` above ``@staticmethod`` was accepted: the wrapper is a plain function, so an
    instance bound it and ``obj.f(5)`` called ``f(obj, 5)``. That TypeError was the operation's failure:
    the fallback served its value for every call, a retry retried it, a breaker counted it."""
    served: list[Exception] = []

    async def fallback(error: Exception) -> str:
        served.append(error)
        return "served"

    with pytest.raises(TypeError, match=rf"^func .*got a {kind.__name__}: put the policy below @{kind.__name__}"):
        Fallback(fallback, instrument=False)(kind(_doubled))
    assert served == []


def test_a_policy_below_staticmethod_and_classmethod_decorates_them() -> None:
    retry = Retry(attempts=2, initial=0.0, instrument=False)

    class Service:
        @staticmethod
        @retry
        async def doubled(x: int) -> int:
            return 2 * x

        @classmethod
        @retry
        async def named(cls, x: int) -> tuple[str, int]:
            return cls.__name__, x

    async def main() -> None:
        assert await Service().doubled(5) == 10
        assert await Service.named(1) == ("Service", 1)
        assert await Service().named(2) == ("Service", 2)

    run_virtual(main())


@contextlib.contextmanager
def unawaited_coroutines() -> Iterator[list[str]]:
    """Collects the "coroutine ... was never awaited" warnings raised while the block runs (and at the
    garbage collection after it): Python reports them as unraisable, so pytest's filter misses some."""
    found: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        found.append(str(unraisable.exc_value))

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
            gc.collect()
        found.extend(str(w.message) for w in caught if "never awaited" in str(w.message))
    finally:
        sys.unraisablehook = previous


# ------------------------------------------------------------------ sync callables returning coroutines
async def _seconds(*args: Any) -> float:
    return 0.0


async def _fails() -> None:
    raise ValueError("down")


@pytest.mark.parametrize("param", ["next_delay", "random"])
def test_a_retry_callable_returning_a_coroutine_is_refused_by_name_and_closed(param: str) -> None:
    """``next_delay`` / ``random`` given as lambdas returning coroutines: the coroutine was never awaited
    (RuntimeWarning), and ``random``'s error was Python's "'<=' not supported between ... 'coroutine'"."""
    options: dict[str, Any] = {param: (lambda *args: _seconds())}
    retry = Retry(initial=0.1, instrument=False, **options)
    with unawaited_coroutines() as unawaited, pytest.raises(TypeError, match=f"^{param} must be a plain"):
        run_virtual(retry.call(_fails))
    assert unawaited == []


def test_on_progress_returning_a_coroutine_is_logged_by_name_not_left_unawaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``on_progress=lambda p: show(p)`` with an async ``show``: silently never shown, only a RuntimeWarning."""
    shown: list[Progress] = []

    async def show(progress: Progress) -> None:
        shown.append(progress)

    async def ok() -> int:
        return 1

    wave: Wave[int] = Wave("w", on_progress=lambda p: show(p), instrument=False)  # type: ignore[arg-type]
    with unawaited_coroutines() as unawaited:
        result = run_virtual(wave.run([ok, ok]))
    assert [r.value for r in result.results] == [1, 1]
    assert unawaited == []
    errors = [r for r in caplog.records if r.message.startswith("on_progress failed")]
    assert len(errors) == 1 and all("on_progress must be a plain" in str(r.exc_info[1]) for r in errors)  # type: ignore[index]


# ------------------------------------------------------------------ a coroutine where a factory belongs
async def _fetch() -> str:
    return "data"


async def _fallback(error: Exception) -> str:
    return "fallback"


POLICIES: dict[str, Callable[[dict[str, Any]], Policy]] = {
    "retry": lambda t: Retry(initial=0.1, **t),
    "breaker": lambda t: CircuitBreaker("coroutine-given", failure_threshold=1, **t),
    "timeout": lambda t: Timeout(1.0, **t),
    "hedge": lambda t: Hedge(0.1, **t),
    "fallback": lambda t: Fallback(_fallback, **t),
    "degrade": lambda t: Degrade(default="degraded", on=Exception, **t),
    "pipeline": lambda t: Pipeline(Fallback(_fallback), Retry(initial=0.1), **t),
}


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_a_coroutine_given_instead_of_a_factory_is_refused_before_any_policy_acts_on_it(
    kind: str, traced: bool,
) -> None:
    """``policy.call(fetch())`` (the coroutine, not the function): a Retry retried Python's "'coroutine'
    object is not callable" with backoff, a Fallback served its fallback for it, a breaker counted it as a
    failure of the service, and the coroutine was never awaited."""
    tel = InMemoryTelemetry()
    policy = POLICIES[kind](tel.providers if traced else {"instrument": False})
    with unawaited_coroutines() as unawaited:
        for _ in range(2):  # a breaker that had counted the first would reject the second
            with pytest.raises(TypeError, match=r"^fn must be a callable .* got the coroutine object"):
                run_virtual(policy.call(_fetch()))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^fn must be a callable .* got the coroutine object"):
            run_virtual(policy.call(_fetch(), 1))  # type: ignore[arg-type]
    assert unawaited == []
    if isinstance(policy, CircuitBreaker):
        assert policy.state is BreakerState.CLOSED
    assert not [s for s in tel.spans() if s.name.startswith(("attempt", "hedge", "fallback"))]
    for span in tel.spans():  # the call, when traced, failed with that TypeError (a MisuseError), no attempt made
        assert attrs(span)["error.type"].endswith("MisuseError")


def test_a_half_open_breaker_given_a_coroutine_keeps_its_probe_slot() -> None:
    async def main() -> None:
        clock = asyncio.get_running_loop().time
        breaker = CircuitBreaker("probe-slot", failure_threshold=1, reset_timeout=1.0, clock=clock, instrument=False)
        with contextlib.suppress(ValueError):
            await breaker.call(_fails)
        await asyncio.sleep(1.0)
        with pytest.raises(TypeError, match=r"^fn must be"):
            await breaker.call(_fetch())  # type: ignore[arg-type]
        assert breaker.state is BreakerState.HALF_OPEN
        assert await breaker.call(_fetch) == "data"  # the one probe slot was given back
        assert breaker.state is BreakerState.CLOSED  # type: ignore[comparison-overlap]

    run_virtual(main())


@pytest.mark.parametrize("use", ["decorator", "step", "saga.run", "wave.map"])
def test_a_coroutine_given_where_a_function_belongs_is_refused_by_name_and_closed(use: str) -> None:
    async def main() -> None:
        if use == "decorator":
            Retry()(_fetch())  # type: ignore[arg-type]
        elif use == "step":
            Step("s", _fetch())  # type: ignore[arg-type]
        elif use == "saga.run":
            async with Saga("s", instrument=False).begin() as tx:
                await tx.step("s", _fetch())  # type: ignore[arg-type]
        else:
            await Wave("w", instrument=False).map(_fetch(), [1])  # type: ignore[arg-type]

    with unawaited_coroutines() as unawaited, pytest.raises(TypeError) as caught:
        run_virtual(main())
    error = caught.value
    assert not isinstance(error, SagaError)  # tx.step's refusal is raised as it is, not retried as a SagaError
    assert "got the coroutine object" in str(error)
    assert unawaited == []


# ------------------------------------------------------------------ hooks asked once; async observers
class _Counting(Hook):
    """Counts the calls it is asked about, watching none of them."""

    def __init__(self) -> None:
        self.asked = 0

    def call_started(self, event: CallStarted) -> None:
        self.asked += 1


class _Watching(Hook):
    def call_started(self, event: CallStarted) -> CallObserver:
        return CallObserver()


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_the_first_hook_is_asked_once_per_call_even_when_it_watches_nothing(kind: str) -> None:
    """The inline prologue asked ``hooks[0]`` and, when it answered None while another hook followed,
    ``start_call`` asked it again: a first hook counting calls counted each one twice."""
    counting = _Counting()
    policy = POLICIES[kind]({"hooks": [counting, _Watching()], "instrument": False})
    run_virtual(policy.call(_fetch))
    assert counting.asked == 1


class _AsyncObserver(CallObserver, WaveObserver, SagaObserver):
    """An observer whose methods were written async: called without await, they never ran."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def call_finished(self, event: Any) -> None:  # type: ignore[override]
        self.seen.append("call_finished")

    async def task_finished(self, token: Any, event: Any) -> None:  # type: ignore[override]
        self.seen.append("task_finished")

    async def step_finished(self, token: Any, *args: Any) -> None:  # type: ignore[override]
        self.seen.append("step_finished")


class _AsyncObserving(Hook):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def call_started(self, event: CallStarted) -> _AsyncObserver:
        return _AsyncObserver(self.seen)

    def wave_started(self, event: WaveStarted) -> _AsyncObserver:
        return _AsyncObserver(self.seen)

    def saga_started(self, event: SagaStarted) -> _AsyncObserver:
        return _AsyncObserver(self.seen)


class _AsyncScope(CallObserver, WaveObserver, SagaObserver):
    """A scope observer whose ``__enter__`` was written async."""

    async def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


class _AsyncScopeObserving(_AsyncObserving):
    def call_started(self, event: CallStarted) -> Any:
        return _AsyncScope()

    def wave_started(self, event: WaveStarted) -> Any:
        return _AsyncScope()

    def saga_started(self, event: SagaStarted) -> Any:
        return _AsyncScope()


@pytest.mark.parametrize("scope", [False, True])
@pytest.mark.parametrize("entry", ["call", "wave", "saga"])
def test_an_observer_with_async_methods_is_a_recorded_hook_failure_not_a_silent_no_op(
    entry: str, scope: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """``check_hooks`` refused async hook methods, but an observer the hook returned was never checked:
    its async methods made coroutines nobody awaited (a RuntimeWarning), so the hook silently saw nothing."""
    hook = _AsyncScopeObserving() if scope else _AsyncObserving()
    tel = InMemoryTelemetry()
    options: dict[str, Any] = {"hooks": [hook], **tel.providers}

    async def main() -> Any:
        if entry == "call":
            return await Retry(**options).call(_fetch)
        if entry == "wave":
            wave: Wave[str] = Wave("w", **options)
            return (await wave.run([_fetch])).results[0].value
        async with Saga("s", **options).begin() as tx:
            return await tx.step("fetch", _fetch)

    with unawaited_coroutines() as unawaited:
        assert run_virtual(main()) == "data"
    assert unawaited == []
    method = {"call": "call_started", "wave": "wave_started", "saga": "saga_started"}[entry]
    assert hook.hook_errors == {method: 1}
    assert ("_AsyncScope.__enter__" if scope else "_AsyncObserver") in caplog.text and "is async" in caplog.text
    point = tel.point("shannon.hook.errors", shannon_hook_method=method)
    assert point.value == 1 and point.attributes["error.type"] == "TypeError"


def test_the_coroutines_an_input_yielded_before_it_raised_are_closed() -> None:
    """``wave.run(gen())`` where ``gen`` yields coroutines and then raises: ``list(tasks)`` dropped the
    coroutines it had taken, each warning that it was never awaited."""
    async def fetch(i: int) -> int:
        return i

    def tasks() -> Iterator[Any]:
        yield fetch(1)
        yield fetch(2)
        raise ValueError("input broke")

    with unawaited_coroutines() as unawaited, pytest.raises(ValueError, match="input broke"):
        run_virtual(Wave("w", instrument=False).run(tasks()))
    assert unawaited == []


# --------------------------------------------------------------------------- sync callables where async ones belong
def _type_errors_of_a_wave(**options: Any) -> list[str]:
    """Run a wave of two tasks built with ``options`` (what the annotations refuse, and a user may pass all the
    same); check that each task failed with a TypeError, and return their messages."""

    async def work() -> int:
        return 1

    async def main() -> Any:
        wave: Wave[int] = Wave("w", instrument=False, **options)
        return await wave.run([work, work])

    result = run_virtual(main())
    for r in result.results:
        assert r.outcome.value == "failure"
        assert isinstance(r.error, TypeError)
    return [str(r.error) for r in result.results]


def test_a_shared_rate_limit_whose_acquire_is_sync_fails_the_tasks_naming_it() -> None:
    """A limiter whose ``acquire`` is sync (it returns True, as ``threading.Semaphore``'s does; a semaphore itself
    is refused when the wave is built, see tests/test_wave_limits.py): every task failed with Python's "object
    bool can't be used in 'await' expression", naming nothing."""

    class SyncLimiter:
        def acquire(self) -> bool:
            return True

    for message in _type_errors_of_a_wave(rate_limit=SyncLimiter()):
        assert "rate_limit.acquire" in message, message


def test_a_policy_object_whose_call_is_sync_fails_the_tasks_naming_it() -> None:
    """A ``policy=`` of the user's own (the TaskPolicy protocol) whose ``call`` is sync: every task failed with
    Python's "object int can't be used in 'await' expression", naming nothing."""

    class SyncPolicy:
        def call(self, fn: Callable[[], Any]) -> int:
            return 42

    for message in _type_errors_of_a_wave(policy=SyncPolicy()):
        assert message.startswith("policy.call must be an async callable"), message


def _sync_op(runs: list[int]) -> Callable[[], Any]:
    def op() -> int:
        runs.append(1)
        return 42
    return op


async def _served(error: Exception) -> str:
    return "served"


SYNC_CASES: dict[str, Callable[[InMemoryTelemetry], Policy]] = {
    "retry": lambda tel: Retry(attempts=3, initial=0.0, instrument=False),
    "retry-observed": lambda tel: Retry(attempts=3, initial=0.0, **tel.providers),
    "breaker": lambda tel: CircuitBreaker("sync-op", failure_threshold=1, instrument=False),
    "breaker-observed": lambda tel: CircuitBreaker("sync-op", failure_threshold=1, **tel.providers),
    "fallback": lambda tel: Fallback(_served, instrument=False),
    "degrade": lambda tel: Degrade(default="served", on=Exception, instrument=False),
    "hedge": lambda tel: Hedge(0.1, attempts=3, instrument=False),
    "pipeline": lambda tel: Pipeline(Fallback(_served), Retry(attempts=3, initial=0.0),
                                     CircuitBreaker("sync-op", failure_threshold=1), Hedge(0.1, attempts=3),
                                     instrument=False),
    "pipeline-observed": lambda tel: Pipeline(
        Degrade(default="served", on=Exception), Retry(attempts=3, initial=0.0),
        CircuitBreaker("sync-op", failure_threshold=1), Timeout(1.0), name="op", **tel.providers),
}


@pytest.mark.parametrize("case", list(SYNC_CASES))
def test_a_sync_operation_is_refused_naming_fn_not_run_again_counted_or_fallen_back_on(case: str) -> None:
    """A sync function given to a policy (``Retry().call(op)``, ``@Retry()`` on a plain ``def``) ran, its value
    was lost to Python's "object int can't be used in 'await' expression", and that TypeError was then
    treated as the operation's failure: a retry or a hedge ran the function again (its side effects three
    times), a breaker counted it and opened, a fallback or degradation served a result for a programming
    error. Now it is refused as a TypeError naming fn, raised through every policy, after one run."""
    tel = InMemoryTelemetry()
    runs: list[int] = []
    policy = SYNC_CASES[case](tel)

    async def main() -> None:
        for _ in range(2):  # the second call: a breaker that counted the first would reject it
            with pytest.raises(TypeError, match=r"^fn must return an awaitable.* it returned int 42"):
                await policy.call(_sync_op(runs))
        decorated = policy(_sync_op(runs))
        with pytest.raises(TypeError, match=r"^fn must return an awaitable"):
            await decorated()

    run_virtual(main())
    assert runs == [1, 1, 1]
    for p in getattr(policy, "policies", (policy,)):
        if isinstance(p, CircuitBreaker):
            assert p.state.value == "closed"
    ops = [s for s in tel.spans() if s.name in ("op", "retry", "sync-op")]
    for op in ops:  # an observed call says what it was: a failure with error.type TypeError, not retried
        assert attrs(op)["shannon.call.outcome"] == "failure"
        assert attrs(op)["shannon.attempt"] == 1


# ------------------------------------------------------------------ a policy's own async callable given sync
def _sync_served(error: Exception) -> str:
    return "served"


def _sync_sleep(seconds: float) -> None:
    return None


def _refused_as_a_programming_error(tel: InMemoryTelemetry, policy: Policy, match: str, error_type: str,
                                    *args: object) -> int:
    """Call ``policy`` (a Pipeline named "op" reporting to ``tel``) twice with a failing operation and ``args``:
    each call must raise the TypeError ``match`` describes, leave its breakers closed (the second call: a breaker
    that counted the first would reject it) and end its "op" spans as failures of an ``error_type``. Returns how
    many times the operation ran."""
    runs: list[int] = []

    async def failing(*args: object) -> None:
        runs.append(1)
        await asyncio.sleep(0)
        raise ValueError("primary")

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(TypeError, match=match):
                await policy.call(failing, *args)

    run_virtual(main())
    for p in policy.policies:  # type: ignore[attr-defined]
        if isinstance(p, CircuitBreaker):
            assert p.state.value == "closed"
    for op in tel.spans("op"):
        assert attrs(op)["shannon.call.outcome"] == "failure"
        assert attrs(op)["error.type"].endswith(error_type)
    return len(runs)


# Each: the policy whose callable is sync, with policies around it that must not act on that programming error.
SYNC_CALLABLE_CASES: dict[str, Callable[[InMemoryTelemetry], Policy]] = {
    "fallback-in-retry": lambda tel: Pipeline(
        Retry(attempts=3, initial=0.0), Fallback(_sync_served, on=ValueError), name="op", **tel.providers),  # type: ignore[arg-type]
    "cheaper-in-retry": lambda tel: Pipeline(
        Retry(attempts=3, initial=0.0), Degrade(cheaper=lambda: "cheap", on=Exception),  # type: ignore[arg-type,return-value]
        name="op", **tel.providers),
    "retry-sleep-in-fallback": lambda tel: Pipeline(
        Fallback(_served), Retry(attempts=3, initial=0.1, sleep=_sync_sleep), name="op",  # type: ignore[arg-type]
        **tel.providers),
    "hedge-sleep-in-degrade": lambda tel: Pipeline(
        Degrade(default="served", on=Exception), Hedge(0.1, attempts=2, sleep=_sync_sleep),  # type: ignore[arg-type]
        name="op", **tel.providers),
    "fallback-in-breaker": lambda tel: Pipeline(
        CircuitBreaker("sync-fallback", failure_threshold=1), Fallback(_sync_served, on=ValueError),  # type: ignore[arg-type]
        name="op", **tel.providers),
}


@pytest.mark.parametrize("case", list(SYNC_CALLABLE_CASES))
def test_a_sync_policy_callable_is_refused_through_every_policy_around_it(case: str) -> None:
    """A sync ``Fallback(fallback)``, ``Degrade(cheaper=)``, ``Retry(sleep=)`` or ``Hedge(sleep=)`` was refused with a
    plain TypeError naming it, which the policies around it then took for the operation's failure: a ``Retry``
    retried it (the operation ran three times), a ``Fallback`` or ``Degrade`` served a result for it (the call
    reported a success, the mistake hidden), a breaker counted it and opened, and a sync fallback's error came
    wrapped in a ``FallbackError``. Now it is a programming error, as a sync ``fn`` is: raised as it is through
    every policy, after one run of the operation."""
    tel = InMemoryTelemetry()
    policy = SYNC_CALLABLE_CASES[case](tel)
    runs = _refused_as_a_programming_error(
        tel, policy, r"^(fallback|cheaper|sleep) must be an async callable", "NotAwaitableError")
    assert runs == 2
    for op in tel.spans("op"):
        assert attrs(op)["shannon.attempt"] == 1


def _a_coroutine(*args: object) -> Any:
    return asyncio.sleep(0)  # what a lambda calling an async function returns where a plain value is needed


# Each: the policy whose sync callable returns an awaitable, with policies around it that must not act on that
# programming error; and how many times the operation runs per call (key= is read before the operation runs).
NOT_SYNC_CASES: dict[str, tuple[Callable[[InMemoryTelemetry], Policy], int]] = {
    "on-in-fallback": (lambda tel: Pipeline(
        Fallback(_served), Retry(attempts=3, initial=0.0, on=_a_coroutine), name="op", **tel.providers), 1),
    "next-delay-in-retry": (lambda tel: Pipeline(
        Retry(attempts=3, initial=0.0), Retry(attempts=2, next_delay=_a_coroutine), name="op", **tel.providers), 1),
    "random-in-degrade": (lambda tel: Pipeline(
        Degrade(default="served", on=Exception), Retry(attempts=2, initial=0.1, random=_a_coroutine), name="op",
        **tel.providers), 1),
    "key-in-breaker": (lambda tel: Pipeline(
        CircuitBreaker("not-sync-key", failure_threshold=1), Degrade(last_good=True, key=_a_coroutine), name="op",
        **tel.providers), 0),
}


@pytest.mark.parametrize("case", list(NOT_SYNC_CASES))
def test_a_sync_policy_callable_returning_an_awaitable_is_refused_through_every_policy_around_it(case: str) -> None:
    """``Retry(on=)``, ``next_delay=``, ``random=`` or ``Degrade(key=)`` returning an awaitable (a lambda calling an
    async function) was refused with a plain TypeError naming it, which the policies around it took for the
    operation's failure: an outer ``Retry`` retried it, a ``Fallback`` or ``Degrade`` served a result for it (the call
    reported a success), a breaker counted it and opened. Now it is a programming error, raised as it is."""
    tel = InMemoryTelemetry()
    build, per_call = NOT_SYNC_CASES[case]
    runs = _refused_as_a_programming_error(
        tel, build(tel), r"^(on|next_delay|random|key) must be a plain \(sync\) callable", "NotSyncError", 1)
    assert runs == 2 * per_call


@pytest.mark.parametrize(("degrade", "factory"), [
    (lambda: Degrade(last_good=True), lambda fn: functools.partial(fn, 7)),  # arguments and no key=
    (lambda: Degrade(last_good=True, key=lambda args, kwargs: list(args)),  # type: ignore[arg-type,return-value]
     lambda fn: functools.partial(fn, 7)),
    (lambda: Degrade(last_good=True, key=lambda args, kwargs: args), lambda fn: lambda: fn(7)),  # nothing to key by
], ids=["no-key", "unhashable-key", "key-without-arguments"])
def test_a_degrade_call_that_cannot_be_keyed_is_refused_through_every_policy_around_it(
    degrade: Callable[[], Degrade], factory: Callable[[Callable[..., Any]], Callable[[], Any]],
) -> None:
    """A ``Degrade(last_good=True)`` call it cannot key (arguments without ``key=``, an unhashable key, ``key=`` and
    no arguments) was refused with a plain TypeError, which a ``Fallback`` around it served a result for: the
    call reported a success, the operation never ran and the mistake was hidden. Now it is raised as it is."""
    tel = InMemoryTelemetry()
    runs: list[int] = []
    breaker = CircuitBreaker("keyed", failure_threshold=1, instrument=False)
    policy = Pipeline(Fallback(_served), breaker, degrade(), name="op", **tel.providers)

    async def get(uid: int) -> int:
        runs.append(uid)
        return uid

    async def main() -> None:
        for _ in range(2):  # the second call: a breaker that counted the first would reject it
            with pytest.raises(TypeError, match=r"Degrade\(last_good=True|key must return a hashable"):
                await policy.call(factory(get))

    run_virtual(main())
    assert runs == []
    assert breaker.state.value == "closed"
    for op in tel.spans("op"):
        assert attrs(op)["shannon.call.outcome"] == "failure"


def test_a_coroutine_given_to_a_policy_one_level_down_is_refused_through_the_policies_around_it() -> None:
    """``call(fetch())`` for ``call(fetch)`` inside a function an outer policy runs: the inner policy refused it with
    a TypeError naming fn, which the outer ``Retry`` then retried (three times) and an outer ``Fallback`` served
    a result for, the call reporting a success. Now it is raised as it is through them."""
    tel = InMemoryTelemetry()
    tries: list[int] = []

    async def fetch() -> int:
        return 1

    def slip() -> Any:
        tries.append(1)
        return Timeout(1, instrument=False).call(fetch())  # type: ignore[arg-type]

    outer = Pipeline(Fallback(_served), Retry(attempts=3, initial=0.0), name="op", **tel.providers)
    with pytest.raises(TypeError, match=r"^fn must be a callable returning an awaitable.* got the coroutine object"):
        run_virtual(outer.call(slip))
    assert tries == [1]
    assert attrs(tel.span("op"))["shannon.call.outcome"] == "failure"


# ------------------------------------------------------------------ one coroutine returned for every attempt
REUSED_CASES: dict[str, Callable[[InMemoryTelemetry, list[Exception]], Any]] = {
    "retry": lambda tel, served: Retry(attempts=3, initial=0.0, instrument=False),
    "retry-observed": lambda tel, served: Retry(attempts=3, initial=0.0, **tel.providers),
    "hedge": lambda tel, served: Hedge(0.1, attempts=3, instrument=False),
    "pipeline": lambda tel, served: Pipeline(
        Fallback(lambda error: _recorded(served, error)), Retry(attempts=3, initial=0.0),
        CircuitBreaker("reused", failure_threshold=2), instrument=False),
    "pipeline-observed": lambda tel, served: Pipeline(
        Degrade(default="served", on=Exception), Hedge(0.1, attempts=2), name="op", **tel.providers),
}


async def _recorded(served: list[Exception], error: Exception) -> str:
    served.append(error)
    return "served"


@pytest.mark.parametrize("case", list(REUSED_CASES))
def test_a_factory_returning_one_coroutine_for_every_attempt_is_refused_naming_fn(case: str) -> None:
    """``policy.call(lambda: coro)``: the retry awaited the coroutine its first attempt had finished, and the
    caller got "RuntimeError: cannot reuse already awaited coroutine" in place of the operation's own error,
    after retrying that RuntimeError (a breaker counted it, a fallback served a value for it); a hedge's later
    attempts failed at once on the running coroutine. Now the second call of ``fn`` is refused as a TypeError
    naming fn, raised through every policy (the hedge's first attempt cancelled)."""
    tel = InMemoryTelemetry()
    served: list[Exception] = []
    policy = REUSED_CASES[case](tel, served)
    runs: list[int] = []

    async def op() -> None:
        runs.append(1)
        await asyncio.sleep(1.0)  # still running when a hedge starts its next attempt
        raise ValueError("down")

    async def main() -> None:
        coro = op()
        with pytest.raises(TypeError, match=r"^fn must return a new awaitable .* already awaited"):
            await policy.call(lambda: coro)

    with unawaited_coroutines() as unawaited:
        run_virtual(main())
    assert unawaited == []
    assert runs == [1]
    assert served == []
    for p in getattr(policy, "policies", (policy,)):
        if isinstance(p, CircuitBreaker):
            assert p.state is BreakerState.CLOSED
    ops = [s for s in tel.spans() if s.name in ("op", "retry")]
    assert len(ops) == case.endswith("observed")
    for span in ops:  # a failure with the refusal's error.type, not retried again
        assert attrs(span)["shannon.call.outcome"] == "failure"
        assert attrs(span)["error.type"].endswith("NotAwaitableError")
        assert attrs(span)["shannon.attempt"] == 2


@pytest.mark.parametrize("kind", ["retry", "breaker", "pipeline", "hedge", "timeout"])
def test_a_coroutine_awaited_before_the_first_attempt_ends_alike_with_or_without_telemetry(kind: str) -> None:
    """The first attempt awaits what ``fn()`` returned as it is (``await`` raises "cannot reuse already awaited
    coroutine", which the policies act on as on any error); a re-run refuses it. Where that check sat on the
    observed path only, telemetry changed the error and a breaker's state."""

    def outcome(observed: bool) -> tuple[str, list[str]]:
        tel = InMemoryTelemetry()
        options: dict[str, Any] = tel.providers if observed else {"instrument": False}
        breaker = CircuitBreaker(f"spent-{kind}-{observed}", failure_threshold=1)
        builders: dict[str, Callable[[], Any]] = {
            "retry": lambda: Retry(attempts=2, initial=0.0, **options),
            "breaker": lambda: CircuitBreaker(breaker.name, failure_threshold=1, **options),
            "pipeline": lambda: Pipeline(Retry(attempts=2, initial=0.0), breaker, **options),
            "hedge": lambda: Hedge(0.1, attempts=2, **options),
            "timeout": lambda: Timeout(1.0, **options),
        }
        policy = builders[kind]()

        async def op() -> int:
            return 1

        async def main() -> str:
            coro = op()
            await coro
            try:
                await policy.call(lambda: coro)
            except Exception as exc:
                return f"{type(exc).__name__}, already awaited: {'already awaited' in str(exc)}"
            return "returned"

        error = run_virtual(main())
        states = [p.state.value for p in getattr(policy, "policies", (policy,)) if isinstance(p, CircuitBreaker)]
        return error, states

    assert outcome(observed=False) == outcome(observed=True)


def test_the_not_awaitable_errors_docstring_says_only_a_re_run_refuses_an_awaited_coroutine() -> None:
    """Its docstring listed "a coroutine already awaited" among what ``fn`` returned that is refused, but a first
    attempt awaits it as it is (above): a one-attempt policy raises await's RuntimeError, a retry refuses it at
    the second attempt."""
    from shannon_otel.recovery._decorated import NotAwaitableError

    async def op() -> int:
        return 1

    async def main(policy: Any) -> str:
        coro = op()
        await coro
        try:
            await policy.call(lambda: coro)
        except (RuntimeError, TypeError) as exc:
            return type(exc).__name__
        return "returned"

    assert run_virtual(main(Timeout(1.0, instrument=False))) == "RuntimeError"
    assert run_virtual(main(Retry(attempts=2, initial=0.0, instrument=False))) == "NotAwaitableError"
    doc = " ".join((NotAwaitableError.__doc__ or "").split())
    assert "a coroutine already awaited handed to a re-run" in doc
    assert "A first attempt awaits what ``fn()`` returned as it is" in doc


# ------------------------------------------------------------------ a call whose arguments do not fit the function
WRONG_CALL_CASES: dict[str, Callable[[InMemoryTelemetry, list[Exception]], Any]] = {
    "retry": lambda tel, served: Retry(attempts=3, initial=0.0, instrument=False),
    "retry-observed": lambda tel, served: Retry(attempts=3, initial=0.0, **tel.providers),
    "breaker": lambda tel, served: CircuitBreaker("wrong-call", failure_threshold=1, instrument=False),
    "fallback": lambda tel, served: Fallback(lambda error: _recorded(served, error), instrument=False),
    "degrade-observed": lambda tel, served: Degrade(default="served", on=Exception, **tel.providers),
    "hedge": lambda tel, served: Hedge(0.1, attempts=3, instrument=False),
    "pipeline": lambda tel, served: Pipeline(
        Fallback(lambda error: _recorded(served, error)), Retry(attempts=3, initial=0.0),
        CircuitBreaker("wrong-call-p", failure_threshold=1), instrument=False),
}


@pytest.mark.parametrize("case", list(WRONG_CALL_CASES))
def test_a_decorated_function_called_with_the_wrong_arguments_raises_that_typeerror_through_every_policy(
    case: str,
) -> None:
    """``@Fallback(...) async def get(uid)`` called as ``get()``: the TypeError Python raises at such a call was the
    attempt's failure, so the fallback served its value for the caller's bug (every call, silently), a retry
    retried it, a breaker counted it and opened. Now it is raised as a TypeError naming fn (its cause Python's own),
    before any policy acts; a TypeError raised inside the function is still the operation's failure."""
    tel = InMemoryTelemetry()
    served: list[Exception] = []
    policy = WRONG_CALL_CASES[case](tel, served)
    runs: list[int] = []

    async def get(uid: int) -> int:
        runs.append(uid)
        return uid

    async def broken(uid: int) -> int:
        runs.append(uid)
        raise TypeError("the operation's own")

    async def main() -> None:
        decorated: Any = policy(get)
        for call in (decorated, lambda: policy.call(get, 1, 2)):
            wrong = r"^fn could not be called with the call's arguments \(.*get\(\)"
            with pytest.raises(TypeError, match=wrong) as caught:
                await call()
            assert isinstance(caught.value.__cause__, TypeError)
        assert runs == []
        assert served == []
        for p in getattr(policy, "policies", (policy,)):
            if isinstance(p, CircuitBreaker):
                assert p.state is BreakerState.CLOSED
        with contextlib.suppress(TypeError):  # the function's own TypeError: its failure, which the policy acts on
            await policy(broken)(7)
        assert runs and set(runs) == {7}
        assert len(runs) == (3 if case in ("retry", "retry-observed", "hedge") else 1)  # retried, hedged

    run_virtual(main())
    ops = [s for s in tel.spans() if s.name.endswith(("get", "retry", "degrade"))]  # decorated, then call()
    assert len(ops) == 2 * case.endswith("observed")
    for span in ops:  # a failure with the refusal's error.type, after one attempt
        assert attrs(span)["shannon.call.outcome"] == "failure"
        assert attrs(span)["error.type"].endswith("NotAwaitableError")
        assert attrs(span)["shannon.attempt"] == 1
