"""Second round of adversarial probes of the public API (executor and recovery policies): each test
failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from shannon_otel import (
    BreakerConfig,
    BreakerState,
    CallObserver,
    CallStarted,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    Hedge,
    Hook,
    Outcome,
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


# ------------------------------------------------------------------ a hedge inside a nested call
def test_a_call_made_inside_a_hedged_attempt_reports_its_own_attempts_as_attempts() -> None:
    """The hedge marked its attempts' context "hedged" with a flag every call inside inherited: an
    instrumented call the operation made itself (a database behind a hedged API) named its own first
    attempt ``hedge 1``."""
    tel = InMemoryTelemetry()
    database = Retry(attempts=2, initial=0, name="db", **tel.providers)

    async def query() -> str:
        await asyncio.sleep(1.0)
        return "row"

    async def fetch() -> str:
        return await database.call(query)

    hedge = Hedge(0.5, attempts=2, name="api", **tel.providers)
    assert run_virtual(hedge.call(fetch)) == "row"
    api = tel.span("api")
    assert sorted(s.name for s in tel.children(api)) == ["attempt 1", "hedge 2"]
    calls = tel.spans("db")
    assert len(calls) == 2
    for db in calls:  # each call of the database, hedged or not, is one plain attempt
        assert [s.name for s in tel.children(db)] == ["attempt 1"]


# ------------------------------------------------------------------ numbers beyond the float range
@pytest.mark.parametrize(("build", "name"), [
    (lambda v: Timeout(v), "seconds"),
    (lambda v: Retry(budget_s=v), "budget_s"),
    (lambda v: Retry(maximum=v), "maximum"),
    (lambda v: Hedge(v), "delay"),
    (lambda v: Wave("w", task_timeout=v), "task_timeout"),
    (lambda v: Wave("w", rate_limit=v), "rate_limit"),
    (lambda v: BreakerConfig(reset_timeout=v), "reset_timeout"),
    (lambda v: Saga("s", compensation_timeout_s=v), "compensation_timeout_s"),
    (lambda v: Degrade(last_good=True, max_age=v), "max_age"),
])
def test_an_int_beyond_the_float_range_is_refused_naming_the_parameter(
    build: Callable[[Any], object], name: str,
) -> None:
    """``Timeout(10**400)`` raised OverflowError ("int too large to convert to float") from the check itself."""
    with pytest.raises(ValueError, match=f"^{name} must be in .* within the float range"):
        build(10**400)


@pytest.mark.parametrize(("build", "name"), [
    (lambda v: Retry(attempts=v), "attempts"),
    (lambda v: Hedge(0.1, attempts=v), "attempts"),
    (lambda v: Wave("w", max_concurrency=v), "max_concurrency"),
    (lambda v: BreakerConfig(window=v), "window"),
])
def test_huge_ints_are_checked_exactly(build: Callable[[Any], object], name: str) -> None:
    """A huge count is a valid count (compared exactly), a huge negative one is refused by name, even one
    too long for ``str()`` (over 4,300 digits), which raised its own unrelated ValueError."""
    build(10**400)
    with pytest.raises(ValueError, match=f"^{name} must be in .*got an int of 16610 bits"):
        build(-(10**5000))


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
    errors = [r for r in caplog.records if r.message == "on_progress failed"]
    assert errors and all("on_progress must be a plain" in str(r.exc_info[1]) for r in errors)  # type: ignore[index]


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
    for span in tel.spans():  # the call, when traced, failed with that TypeError, having made no attempt
        assert (span.attributes or {})["error.type"] == "TypeError"


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

    with unawaited_coroutines() as unawaited, pytest.raises((TypeError, SagaError)) as caught:
        run_virtual(main())
    error = caught.value.__cause__ if use == "saga.run" else caught.value
    assert isinstance(error, TypeError)
    assert "got the coroutine object" in str(error)
    assert unawaited == []


# ------------------------------------------------------------------ saga steps running concurrently
@pytest.mark.parametrize("stubborn", [False, True])
def test_a_gathered_step_still_running_when_its_sibling_fails_never_stays_in_effect(stubborn: bool) -> None:
    """``gather(tx.step(a), tx.step(b))`` with b failing first: the rollback ran at once while a went on,
    a completed after the saga had ended and stayed in effect, never compensated, and the result said
    it was rolled back. Now the step still running is cancelled and waited for: if it completes all the
    same (it swallows the cancellation), it is compensated like any completed step."""
    tel = InMemoryTelemetry()
    written: list[str] = []
    undone: list[str] = []

    async def write() -> str:
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            if not stubborn:
                raise
            await asyncio.sleep(0.2)  # finishes its write anyway
        written.append("a")
        return "a"

    async def undo(value: str) -> None:
        undone.append(value)

    async def fail() -> None:
        await asyncio.sleep(0.5)
        raise ValueError("b failed")

    async def main() -> Any:
        saga = Saga("gathered", **tel.providers)
        with pytest.raises(SagaError) as caught:
            async with saga.begin() as tx:
                await asyncio.gather(tx.step("a", write, compensate=undo), tx.step("b", fail))
        await asyncio.sleep(2.0)  # long after: nothing completes late
        return caught.value.result

    result = run_virtual(main())
    assert undone == written  # whatever was written was undone
    assert result.completed == result.compensated == (("a",) if stubborn else ())
    assert undone == (["a"] if stubborn else [])
    assert result.rolled_back
    saga_span = tel.span("saga gathered")
    assert {s.name for s in tel.children(saga_span)} == {"step a", "step b"} | (
        {"compensate a"} if stubborn else set())


def test_a_step_never_awaited_inside_the_block_ends_before_the_saga_does() -> None:
    written: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(1.0)
        written.append("late")
        return "late"

    async def main() -> tuple[Any, asyncio.Task[Any]]:
        async with Saga("unawaited", instrument=False).begin() as tx:
            pending = asyncio.create_task(tx.step("late", slow))
            await asyncio.sleep(0)
        await asyncio.sleep(2.0)
        return tx.result, pending

    result, pending = run_virtual(main())
    assert pending.cancelled()  # cancelled when the block ended, not left to complete after the saga
    assert result.completed == () and written == []


# ------------------------------------------------------------------ subnormal rates and windows
def test_a_rate_limit_so_small_that_its_interval_overflows_still_limits() -> None:
    """``rate_limit=1e-320``: 1/rate is inf, and the GCRA tolerance (burst - 1) * inf was 0 * inf = NaN,
    so every wait compared with NaN was no wait: every task started at once, no limit at all."""
    started: list[float] = []

    async def work() -> None:
        started.append(asyncio.get_running_loop().time())

    async def main() -> None:
        wave: Wave[None] = Wave("w", rate_limit=1e-320, clock=asyncio.get_running_loop().time, instrument=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3600.0):
                await wave.run([work, work, work])

    run_virtual(main())
    assert started == [0.0]  # the next start is 1e320 s later


def test_a_time_window_too_short_to_slice_is_refused_at_construction() -> None:
    """``window_s=5e-324`` was accepted; the breaker's first call raised ZeroDivisionError (its 10 time
    slices were 0 s wide)."""
    with pytest.raises(ValueError, match=r"^window_s must be in \[1e-06, inf\), got 5e-324"):
        CircuitBreaker("tiny-window", window_s=5e-324)


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


def test_a_batch_size_beyond_sys_maxsize_is_refused_at_construction() -> None:
    """``Wave(batch_size=2**63)`` was accepted, then every run failed with itertools' "Stop argument for
    islice() must be None or an integer: 0 <= x <= sys.maxsize"."""
    with pytest.raises(ValueError, match=rf"^batch_size must be in \[1, {sys.maxsize}\], got {2**63}"):
        Wave("w", batch_size=2**63)
    assert Wave("w", batch_size=sys.maxsize).batch_size == sys.maxsize


# ------------------------------------------------------------------ a fallback cut off by a timeout
@pytest.mark.parametrize("cut_by", ["policy", "wave"])
def test_a_fallback_cut_off_by_a_timeout_is_recorded_as_a_timeout_like_an_attempt(cut_by: str) -> None:
    """``Pipeline(Timeout(1), Fallback(slow))``: the attempt the Timeout cut off read ``timeout`` (ERROR),
    the fallback it cut off read ``cancellation`` with status UNSET, as if someone had cancelled the call;
    cut off by the wave's task timeout it read ``timeout`` but still UNSET."""
    tel = InMemoryTelemetry()

    async def failing() -> str:
        await asyncio.sleep(0.5)
        raise ConnectionError("down")

    async def slow_fallback(error: Exception) -> str:
        await asyncio.sleep(5.0)
        return "fallback"

    fallback = Fallback(slow_fallback)
    if cut_by == "policy":
        pipeline = Pipeline(Timeout(1.0), fallback, name="op", **tel.providers)
        with pytest.raises(TimeoutError):
            run_virtual(pipeline.call(failing))
    else:
        wave: Wave[str] = Wave("w", task_timeout=1.0, policy=Pipeline(fallback, name="op", **tel.providers),
                               **tel.providers)
        assert run_virtual(wave.run([failing])).results[0].outcome.value == "timeout"
    span = tel.span("fallback op")
    assert (span.attributes or {})["shannon.attempt.outcome"] == "timeout"
    assert (span.attributes or {})["error.type"] == "ConnectionError"  # the primary's, as documented
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "timeout"


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


# ------------------------------------------------------------------ work cut off by an enclosing Timeout policy
def test_a_saga_cut_off_by_a_timeout_policy_around_it_records_a_timeout() -> None:
    """A saga inside ``Timeout(1).call(...)`` recorded its cut step and itself as ``cancellation`` (UNSET),
    while the attempt around it read ``timeout``: only the wave task's timeout was told from a cancellation."""
    tel = InMemoryTelemetry()
    saga = Saga("order", **tel.providers)

    async def reserve() -> int:
        return 1

    async def release(value: int) -> None:
        return None

    async def pay() -> int:
        await asyncio.sleep(5.0)
        return 2

    async def body() -> Any:
        return await saga.run(Step("reserve", reserve, compensate=release), Step("pay", pay))

    with pytest.raises(TimeoutError):
        run_virtual(Timeout(1.0, name="op", **tel.providers).call(body))
    for name, key in (("step pay", "shannon.saga.outcome"), ("saga order", "shannon.saga.outcome")):
        span = tel.span(name)
        assert (span.attributes or {})[key] == "timeout", name
        assert span.status.status_code is StatusCode.ERROR, name
    assert (tel.span("compensate reserve").attributes or {})["shannon.compensation.outcome"] == "success"


def test_a_call_cut_off_by_a_timeout_policy_around_it_records_a_timeout_like_a_wave_timeout() -> None:
    """``Timeout(1).call(api)`` where ``api`` makes an instrumented call of its own: that call and its attempt
    read ``cancellation``; cut off the same way by the wave's task timeout they read failure/timeout. Now
    both read the timeout (the cancellation still propagates, uncounted and never retried)."""
    tel = InMemoryTelemetry()
    database = Retry(attempts=3, initial=0, name="db", **tel.providers)
    breaker = CircuitBreaker("db-breaker", failure_threshold=1, **tel.providers)

    async def query() -> int:
        await asyncio.sleep(5.0)
        return 1

    async def api() -> int:
        return await database.call(breaker.call, query)

    with pytest.raises(TimeoutError):
        run_virtual(Timeout(1.0, name="api", **tel.providers).call(api))
    db = tel.span("db")
    assert (db.attributes or {})["shannon.call.outcome"] == "failure"
    assert (db.attributes or {})["error.type"] == "TimeoutError"
    assert [(s.attributes or {})["shannon.attempt.outcome"] for s in tel.children(db)] == ["timeout"]  # not retried
    assert breaker.state is BreakerState.CLOSED  # a cancellation, uncounted


# ------------------------------------------------------------------ errors that cross process boundaries
def _round_trips(error: BaseException) -> list[Any]:
    return [pickle.loads(pickle.dumps(error)), copy.deepcopy(error), copy.copy(error)]


def test_a_circuit_open_error_pickles_and_copies_with_its_attributes() -> None:
    """``pickle`` / ``copy`` rebuilt it from its message alone: TypeError (missing ``state``), so a breaker
    rejection in a Dask worker or a process pool could not be shipped back."""
    error = CircuitOpenError("payments", "open", 1.5)
    error.add_note("while paying")
    for copied in _round_trips(error):
        assert type(copied) is CircuitOpenError
        assert (copied.breaker, copied.state, copied.retry_after_s) == ("payments", "open", 1.5)
        assert str(copied) == str(error) and copied.__notes__ == ["while paying"]


def test_a_saga_error_pickles_and_copies_with_its_result() -> None:
    """``SagaError`` rebuilt from its message (AttributeError) and its result's mappingproxy (TypeError:
    cannot pickle 'mappingproxy')."""
    async def reserve() -> str:
        return "seat"

    async def release(value: str) -> None:
        raise ConnectionError("release failed")

    async def pay() -> None:
        raise ValueError("card declined")

    with pytest.raises(SagaError) as caught:
        run_virtual(Saga("order", instrument=False).run(Step("reserve", reserve, compensate=release), Step("pay", pay)))
    for copied in _round_trips(caught.value):
        assert type(copied) is SagaError and str(copied) == str(caught.value)
        result = copied.result
        assert (result.saga, result.outcome, result.completed, result.values) == (
            "order", Outcome.FAILURE, ("reserve",), ("seat",))
        assert result.uncompensated == ("reserve",)
        assert isinstance(result.failed_compensations["reserve"], ConnectionError)
        assert isinstance(result.failed_compensations, MappingProxyType)  # still read-only
        assert isinstance(result.error, ValueError)


def test_every_step_of_a_repeated_name_left_in_effect_is_reported() -> None:
    """Three ``tx.step("reserve", ...)`` in a loop whose compensations all failed: ``failed_compensations``
    was keyed by name, so ``uncompensated`` said one step was left in effect, not three."""
    async def reserve() -> str:
        return "seat"

    async def release(value: str) -> None:
        raise ConnectionError("release failed")

    async def pay() -> None:
        raise ValueError("card declined")

    async def main() -> None:
        async with Saga("order", instrument=False).begin() as tx:
            for _ in range(3):
                await tx.step("reserve", reserve, compensate=release)
            await tx.step("pay", pay)

    with pytest.raises(SagaError) as caught:
        run_virtual(main())
    result = caught.value.result
    assert result.completed == ("reserve", "reserve", "reserve")
    assert sorted(result.uncompensated) == ["reserve", "reserve#2", "reserve#3"]
    assert all(isinstance(e, ConnectionError) for e in result.failed_compensations.values())


# ------------------------------------------------------------------ breaker rates
def test_a_fast_call_completing_min_calls_opens_a_breaker_on_its_slow_call_rate() -> None:
    """slow, slow, fast, fast with ``min_calls=4, slow_call_rate=0.5``: the fourth call made the window
    2/4 slow, but a fast success re-evaluated the rates only when the window held failures: it stayed
    closed (and with the next fast call the rate fell below the threshold for good)."""
    async def main() -> list[BreakerState]:
        clock = asyncio.get_running_loop().time
        breaker = CircuitBreaker("slow-rate", failure_threshold=None, slow_call_s=1.0, slow_call_rate=0.5,
                                 min_calls=4, window=10, clock=clock, instrument=False)

        async def slow() -> None:
            await asyncio.sleep(1.5)

        async def fast() -> None:
            return None

        states = []
        for call in (slow, slow, fast, fast):
            await breaker.call(call)
            states.append(breaker.state)
        return states

    assert run_virtual(main()) == [BreakerState.CLOSED] * 3 + [BreakerState.OPEN]


def test_a_failure_threshold_a_count_window_can_never_hold_is_refused() -> None:
    """``CircuitBreaker(failure_threshold=5, window=3)`` was accepted and could never open: a window of
    the last 3 calls never holds 5 failures."""
    with pytest.raises(ValueError, match=r"^failure_threshold \(5\) must be <= window \(3\)"):
        CircuitBreaker("never-opens", failure_threshold=5, window=3)
    CircuitBreaker("time-window", failure_threshold=5, window=3, window_s=10.0)  # a time window holds any number


def test_a_timeout_call_abandoned_with_its_loop_is_collected_without_an_error() -> None:
    """Guard of the Timeout policy's published scope: a call left pending when its loop is closed is closed
    by the garbage collector outside its task's context, where resetting the scope raised ValueError."""
    async def slow() -> None:
        await asyncio.sleep(10.0)

    found: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: found.append(repr(unraisable.exc_value))
    try:
        loop = asyncio.new_event_loop()
        task = loop.create_task(Timeout(5.0, instrument=False).call(slow))
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Task was destroyed but it is pending" is logged, not raised
            del task
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not [f for f in found if "ValueError" in f], found
