"""Fault isolation: a hook that raises in any one method changes nothing the user sees.

Every entry point (waves, each policy's ``call`` and decorator, pipelines, sagas, breaker transitions)
is run twice on the virtual-time loop with the real SDK: with the OTel hook only, and with the OTel
hook plus a :class:`Probe` hook that raises in exactly one method. The methods are read off the hook
and observer classes, so a method added to the protocol is covered without touching this file.
Asserted: the user's results (values, raised exception types) are identical, the span current after
the work is the one before it, every started span ended, the OTel spans are the same, and the failure
is logged once per hook and method and counted on the hook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

import pytest
from _virtual_time import run_virtual
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from shannon_otel import (
    Anomaly,
    AnomalyHook,
    CallObserver,
    CircuitBreaker,
    Degrade,
    DetectorConfig,
    Fallback,
    Hedge,
    Hook,
    HookFailed,
    Outcome,
    Pipeline,
    Retry,
    Saga,
    SagaObserver,
    Served,
    Step,
    Timeout,
    Wave,
    WaveObserver,
    WaveResult,
    resilient,
)
from shannon_otel import _telemetry as tel
from shannon_otel.recovery import SagaError, SagaResult
from shannon_otel.testing import InMemoryTelemetry

Scenario = Callable[[dict[str, Any]], Awaitable[Any]]

async def _echo(i: int) -> int:
    await asyncio.sleep(0)
    return i

OBSERVERS: dict[str, type[Any]] = {
    "wave_started": WaveObserver, "call_started": CallObserver, "saga_started": SagaObserver,
}


def protocol_methods(cls: type[Any]) -> list[str]:
    return sorted(n for n, v in vars(cls).items() if callable(v) and not n.startswith("_"))


METHODS = [name for cls in (Hook, WaveObserver, CallObserver, SagaObserver) for name in protocol_methods(cls)]


class HookBugError(Exception):
    pass


# --------------------------------------------------------------------------- the probe hook
class _ProbeBase:
    """What the probe hook and its observers share: count every call, raise in the target method."""

    _probe: Probe


def _probe_method(base: type[Any], name: str) -> Callable[..., Any]:
    original = getattr(base, name)

    def method(self: Any, *args: Any) -> Any:
        probe = self._probe
        probe.calls[name] += 1
        if name == probe.target:
            probe.raised += 1
            if probe.stray_cancel:  # a bug raising CancelledError: the result of a future cancelled elsewhere
                cancelled = asyncio.get_running_loop().create_future()
                cancelled.cancel()
                cancelled.result()
            raise HookBugError(name)
        if name in OBSERVERS and base is Hook:
            bulk = name == "wave_started" and probe.target == "tasks_skipped"
            return (BULK_PROBE if bulk else PROBE_OBSERVERS[name])(probe)
        return original(self, *args)

    return method


def _probe_class(base: type[Any]) -> type[Any]:
    # WaveObserver.tasks_skipped (a run of unstarted tasks) is left out: an observer that does not override it
    # gets task_skipped once per task from the executor, which is probed so; BULK_PROBE overrides it.
    namespace: dict[str, Any] = {name: _probe_method(base, name) for name in protocol_methods(base)
                                 if name != "tasks_skipped"}
    if base is not Hook:
        def init(self: Any, probe: Probe) -> None:
            self._probe = probe

        namespace["__init__"] = init
    return type(f"Probe{base.__name__}", (base, _ProbeBase), namespace)


PROBE_OBSERVERS = {name: _probe_class(cls) for name, cls in OBSERVERS.items()}
# the wave observer of a probe raising in tasks_skipped: one overriding it (the others never call it)
BULK_PROBE = type("ProbeBulkObserver", (PROBE_OBSERVERS["wave_started"],),
                  {"tasks_skipped": _probe_method(WaveObserver, "tasks_skipped")})


class Probe(_probe_class(Hook)):  # type: ignore[misc]
    """A hook whose every method (its observers' too) is counted; ``target`` raises :class:`HookBugError`."""

    def __init__(self, target: str | None, *, stray_cancel: bool = False) -> None:
        self._probe = self
        self.target = target
        self.stray_cancel = stray_cancel
        self.calls: Counter[str] = Counter()
        self.raised = 0


class Tripwire(Hook):
    """Raises wherever a hook is asked for an observer: makes the others receive ``hook_failed``."""

    def wave_started(self, event: Any) -> Any:
        raise HookBugError("tripwire")

    def call_started(self, event: Any) -> Any:
        raise HookBugError("tripwire")

    def saga_started(self, event: Any) -> Any:
        raise HookBugError("tripwire")

    def breaker_transition(self, event: Any) -> None:
        raise HookBugError("tripwire")


class Tracker(SpanProcessor):
    """Spans started and not yet ended (keyed by span id)."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        self.open.pop(span.context.span_id, None)


# --------------------------------------------------------------------------- entry points
def now() -> float:
    return asyncio.get_running_loop().time()


_NAMES = itertools.count()


def unique(prefix: str) -> str:
    """A fresh name per object (breakers and sagas of one name would share state across runs)."""
    return f"{prefix}-{next(_NAMES)}"


def flaky(failures: int, error: type[Exception] = ConnectionError, delay: float = 0.01) -> Callable[[], Any]:
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(delay)
        if calls <= failures:
            raise error(calls)
        return calls

    return fn


def slow(seconds: float, value: int = 7) -> Callable[[], Any]:
    async def fn() -> int:
        await asyncio.sleep(seconds)
        return value

    return fn


async def each(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """The normalized outcome of each call in turn: its value, or the type of what it raised."""
    outcomes = []
    for call in calls:
        try:
            outcomes.append(normalize(await call()))
        except Exception as exc:
            outcomes.append(normalize(exc))
    return outcomes


def normalize(x: Any) -> Any:
    if isinstance(x, Served):
        return ("served", x.value, x.degraded, x.mode, x.reason, type(x.error))
    if isinstance(x, WaveResult):
        return tuple((r.index, r.outcome, r.value, type(r.error)) for r in x.results)
    if isinstance(x, SagaResult):
        return (x.outcome, x.completed, x.compensated, tuple(x.failed_compensations), x.values)
    if isinstance(x, SagaError):
        return (SagaError, normalize(x.result), type(x.__cause__))
    if isinstance(x, BaseExceptionGroup):
        return (type(x), tuple(normalize(e) for e in x.exceptions))
    if isinstance(x, BaseException):
        return type(x)
    if isinstance(x, list | tuple):
        return tuple(normalize(e) for e in x)
    return x


async def fallback_value(error: Exception) -> int:
    return -1


async def fallback_fails(error: Exception) -> int:
    raise KeyError("fallback")


def retry(kw: dict[str, Any], **options: Any) -> Retry:
    return Retry(attempts=3, initial=0.01, clock=now, **options, **kw)


def breaker(kw: dict[str, Any]) -> CircuitBreaker:
    return CircuitBreaker(unique("breaker"), failure_threshold=1, reset_timeout=1.0, clock=now, **kw)


async def retry_call(kw: dict[str, Any]) -> Any:
    r = retry(kw)
    return await each(lambda: r.call(flaky(1)), lambda: r.call(flaky(5)), lambda: r.call(flaky(1, KeyError)))


async def retry_decorator(kw: dict[str, Any]) -> Any:
    fns = [flaky(1), flaky(5)]

    @retry(kw)
    async def op(k: int) -> int:
        return await fns[k]()  # type: ignore[no-any-return]

    return await each(lambda: op(0), lambda: op(1))


async def breaker_calls(b: CircuitBreaker, call: Callable[[Callable[[], Any]], Awaitable[Any]]) -> list[Any]:
    outcomes = await each(
        lambda: call(slow(0.01, 1)),  # closed
        lambda: call(flaky(1)),  # opens it (a transition inside the call)
        lambda: call(slow(0.01, 2)),  # rejected
    )
    await asyncio.sleep(1.5)
    outcomes += await each(lambda: call(slow(0.01, 3)))  # half-open probe, closes it
    b.force_open()  # transitions outside any call
    b.reset()
    return outcomes


async def breaker_call(kw: dict[str, Any]) -> Any:
    b = breaker(kw)
    return await breaker_calls(b, b.call)


async def breaker_decorator(kw: dict[str, Any]) -> Any:
    b = breaker(kw)

    @b
    async def op(fn: Callable[[], Any]) -> Any:
        return await fn()

    return await breaker_calls(b, op)


async def timeout_call(kw: dict[str, Any]) -> Any:
    t = Timeout(0.5, clock=now, **kw)
    return await each(lambda: t.call(slow(0.01)), lambda: t.call(slow(5.0)), lambda: t.call(flaky(1)))


async def timeout_decorator(kw: dict[str, Any]) -> Any:
    @Timeout(0.5, clock=now, **kw)
    async def op(seconds: float) -> int:
        await asyncio.sleep(seconds)
        return 1

    return await each(lambda: op(0.01), lambda: op(5.0))


async def fallback_call(kw: dict[str, Any]) -> Any:
    good, bad = Fallback(fallback_value, clock=now, **kw), Fallback(fallback_fails, clock=now, **kw)
    return await each(lambda: good.call(slow(0.01)), lambda: good.call(flaky(1)), lambda: bad.call(flaky(1)))


async def fallback_decorator(kw: dict[str, Any]) -> Any:
    @Fallback(fallback_value, clock=now, **kw)
    async def op() -> int:
        raise ConnectionError

    return await each(op)


async def hedge_call(kw: dict[str, Any]) -> Any:
    h = Hedge(delay=0.05, attempts=2, clock=now, **kw)
    first_slow = [slow(1.0, 1), slow(0.01, 2)]
    both_fail = [flaky(1), flaky(1)]
    return await each(
        lambda: h.call(lambda: first_slow.pop(0)()),  # the hedge (attempt 2) wins
        lambda: h.call(lambda: both_fail.pop(0)()),
        lambda: h.call(slow(0.01, 3)),
        # a retry inside the hedge: the hedged attempt's second try is hedge_retry_started
        lambda: Pipeline(Hedge(delay=0.05, attempts=2, clock=now), Retry(attempts=3, initial=0.01, clock=now),
                         clock=now, **kw).call(flaky(4, delay=0.2)),
    )


async def hedge_decorator(kw: dict[str, Any]) -> Any:
    delays = [1.0, 0.01]

    @Hedge(delay=0.05, attempts=2, clock=now, **kw)
    async def op() -> float:
        d = delays.pop(0)
        await asyncio.sleep(d)
        return d

    return await each(op)


async def degrade_call(kw: dict[str, Any]) -> Any:
    d = Degrade(default=0, last_good=True, on=(ConnectionError,), clock=now, **kw)
    outcomes = await each(lambda: d.call(slow(0.01, 5)), lambda: d.call(flaky(1)), lambda: d.call(flaky(1, KeyError)))
    d.flag("anomaly")
    outcomes += await each(lambda: d.call(slow(0.01, 6)))
    return outcomes


async def degrade_decorator(kw: dict[str, Any]) -> Any:
    @Degrade(default=0, on=(ConnectionError,), clock=now, **kw)
    async def op() -> int:
        raise ConnectionError

    return await each(op)


def pipeline(kw: dict[str, Any], fallback: Any = fallback_value) -> Pipeline:
    return Pipeline(
        Fallback(fallback, on=(KeyError,), clock=now), Timeout(3.0, clock=now), retry({}, on=ConnectionError),
        breaker({}), Timeout(0.5, clock=now), Hedge(delay=0.1, attempts=2, clock=now), clock=now, **kw,
    )


async def pipeline_call(kw: dict[str, Any]) -> Any:
    p, q = pipeline(kw), pipeline(kw, fallback_fails)
    return await each(
        lambda: p.call(flaky(1)), lambda: p.call(slow(1.0)), lambda: p.call(flaky(1, KeyError)),
        lambda: q.call(flaky(1, KeyError)), lambda: p.call(flaky(9)), lambda: p.call(slow(0.01)),
    )


async def pipeline_decorator(kw: dict[str, Any]) -> Any:
    @resilient(Retry(attempts=2, initial=0.01, clock=now), Timeout(0.5, clock=now), clock=now, **kw)
    async def op(fn: Callable[[], Any]) -> Any:
        return await fn()

    return await each(lambda: op(flaky(1)), lambda: op(slow(5.0)))


async def noop(value: Any) -> None:
    return None


async def failing_compensation(value: Any) -> None:
    raise KeyError("compensation")


async def saga_run(kw: dict[str, Any]) -> Any:
    saga = Saga(unique("saga"), clock=now, **kw)
    return await each(
        lambda: saga.run(Step("a", slow(0.01, 1), noop), Step("b", slow(0.01, 2))),
        lambda: saga.run(Step("a", slow(0.01, 1), noop), Step("c", slow(0.01, 3), failing_compensation),
                         Step("b", flaky(1))),
    )


async def saga_begin(kw: dict[str, Any]) -> Any:
    saga = Saga(unique("saga"), clock=now, **kw)

    async def ok() -> Any:
        async with saga.begin() as tx:
            await tx.step("a", slow(0.01, 1), compensate=noop)
        return tx.result

    async def fails() -> Any:
        async with saga.begin() as tx:
            await tx.step("a", slow(0.01, 1), compensate=noop)
            await tx.step("b", flaky(1))
        return tx.result

    return await each(ok, fails)


def tasks() -> list[Any]:
    return [slow(0.01, 1), flaky(1, KeyError), slow(5.0), flaky(1), slow(0.02, 5)]


async def wave_run(kw: dict[str, Any]) -> Any:
    hooks = tuple(kw.pop("hooks"))
    plain: Wave[Any] = Wave(unique("wave"), max_concurrency=2, task_timeout=1.0, hooks=hooks, **kw)
    policy: Wave[Any] = Wave(unique("wave"), max_concurrency=2, task_timeout=1.0, policy=retry(dict(kw, hooks=hooks)),
                  hooks=hooks, **kw)
    fail_fast: Wave[Any] = Wave(unique("wave"), max_concurrency=1, fail_fast=True, hooks=hooks, **kw)
    return await each(lambda: plain.run(tasks()), lambda: policy.run(tasks()),
                      lambda: plain.run(tasks(), raise_errors=True), lambda: fail_fast.run(tasks()))


async def wave_stream(kw: dict[str, Any]) -> Any:
    wave: Wave[Any] = Wave(unique("wave"), max_concurrency=2, task_timeout=1.0, hooks=tuple(kw.pop("hooks")), **kw)

    async def collect(lazy: bool) -> Any:
        # a lazy input too: its tasks are told to the observers as they are taken (WaveObserver.task_queued)
        async with wave.stream(iter(tasks()) if lazy else tasks()) as results:
            return sorted((r.index, r.outcome, r.value, type(r.error)) for r in [r async for r in results])

    return await each(functools.partial(collect, False), functools.partial(collect, True))


async def anomaly_events(kw: dict[str, Any]) -> Any:
    """A wave whose hooks hold an anomaly hook: it hands its ``Anomaly`` events to the other hooks."""
    clock = [0.0]
    detector = AnomalyHook(DetectorConfig(buckets=1, min_history=5, window=20, spatial_tolerance=0.0),
                           tick_s=1.0, min_tick_tasks=1, clock=lambda: clock[0], signals=["latency"])
    wave: Wave[float] = Wave(unique("wave"), max_concurrency=1, hooks=(detector, *kw.pop("hooks")), **kw)

    async def job(seconds: float) -> float:
        clock[0] += 1.0
        await asyncio.sleep(seconds)
        return seconds

    return await each(*(functools.partial(wave.map, job, [s]) for s in [0.01] * 8 + [5.0, 9.0]))


ENTRY_POINTS: dict[str, Scenario] = {
    "Wave.run": wave_run, "Wave.stream": wave_stream,
    "Retry.call": retry_call, "@Retry": retry_decorator,
    "CircuitBreaker.call": breaker_call, "@CircuitBreaker": breaker_decorator,
    "Timeout.call": timeout_call, "@Timeout": timeout_decorator,
    "Fallback.call": fallback_call, "@Fallback": fallback_decorator,
    "Hedge.call": hedge_call, "@Hedge": hedge_decorator,
    "Degrade.call": degrade_call, "@Degrade": degrade_decorator,
    "Pipeline.call": pipeline_call, "@resilient": pipeline_decorator,
    "Saga.run": saga_run, "Saga.begin": saga_begin, "anomaly events": anomaly_events,
}


# --------------------------------------------------------------------------- running one
class Run:
    def __init__(self, scenario: Scenario, hooks: tuple[Hook, ...]) -> None:
        self.otel = InMemoryTelemetry()
        self.tracker = Tracker()
        self.otel.tracer_provider.add_span_processor(self.tracker)
        self.result = run_virtual(self._main(scenario, hooks))
        self.spans = sorted(re.sub(r"-\d+", "", s.name) for s in self.otel.spans())  # unique() names

    async def _main(self, scenario: Scenario, hooks: tuple[Hook, ...]) -> Any:
        tracer = self.otel.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("caller") as caller:
            async with asyncio.timeout(600):  # virtual seconds: a hang fails at once instead of blocking
                result = await scenario({"hooks": hooks, **self.otel.providers})
            assert trace.get_current_span() is caller, "the caller's span is current again"
        assert not trace.get_current_span().get_span_context().is_valid
        return result


_BASELINES: dict[str, Run] = {}


def baseline(entry: str) -> Run:
    if entry not in _BASELINES:
        _BASELINES[entry] = Run(ENTRY_POINTS[entry], ())
    return _BASELINES[entry]


def probe_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "shannon_otel" and "Probe" in r.getMessage()]


@pytest.mark.parametrize("stray_cancel", [False, True], ids=["error", "stray-cancel"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_hook_raising_in_one_method_changes_nothing_the_user_sees(
    entry: str, method: str, stray_cancel: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """``stray_cancel``: the hook raises CancelledError though nothing was cancelled (hooks are called without
    await). It was taken for a cancellation: a wave worker ended silently (its next tasks never ran, the wave
    reported success), a policy's call raised CancelledError. It is the hook's error, as any other."""
    expected = baseline(entry)
    probe = Probe(method, stray_cancel=stray_cancel)
    hooks: tuple[Hook, ...] = (probe, Tripwire()) if method == "hook_failed" else (probe,)
    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        run = Run(ENTRY_POINTS[entry], hooks)
    assert run.result == expected.result
    assert run.tracker.open == {}, "every started span ended"
    assert run.spans == expected.spans, "the OTel hook's spans do not depend on the other hooks"
    records = probe_records(caplog)
    if probe.raised:
        # One record per method that failed: ``method`` itself, or one calling it (``hedge_started``
        # defaults to ``attempt_started``), each logged once however often it failed.
        assert method in probe.hook_errors
        assert sum(probe.hook_errors.values()) == probe.raised
        failed_in = sorted(m for r in records for m in probe.hook_errors if f"failed in {m};" in r.getMessage())
        assert failed_in == sorted(probe.hook_errors), [r.getMessage() for r in records]
        if stray_cancel:
            assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError
                       and type(r.exc_info[1].__cause__) is asyncio.CancelledError for r in records)
        else:
            assert all(r.exc_info is not None and r.exc_info[0] is HookBugError for r in records)
    else:
        assert records == []
        assert probe.hook_errors == {}


def test_every_protocol_method_is_reached_by_some_entry_point() -> None:
    """Otherwise the test above would pass without a hook ever raising in that method."""
    reached: Counter[str] = Counter()
    for scenario in ENTRY_POINTS.values():
        probe = Probe(None)
        Run(scenario, (probe, Tripwire()))
        reached.update(probe.calls)
        bulk = Probe("tasks_skipped")  # the only probe overriding it (see BULK_PROBE)
        Run(scenario, (bulk, Tripwire()))
        reached["tasks_skipped"] += bulk.calls["tasks_skipped"]
    assert [m for m in METHODS if not reached[m]] == []


def test_the_other_hooks_are_told_which_hook_failed_where() -> None:
    seen: list[HookFailed] = []

    class Listener(Hook):
        def hook_failed(self, event: HookFailed) -> None:
            seen.append(event)

    bad = Probe("attempt_finished")
    run = Run(retry_call, (bad, Listener()))
    assert run.result == baseline("Retry.call").result
    assert {(e.hook, e.method, type(e.error)) for e in seen} == {
        (f"{__name__}.Probe", "attempt_finished", HookBugError),
    }
    assert len(seen) == bad.raised == bad.hook_errors["attempt_finished"]


def test_a_failing_on_anomaly_callback_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    calls: list[Anomaly] = []

    def callback(anomaly: Anomaly) -> None:
        calls.append(anomaly)
        raise HookBugError("on_anomaly")

    # refractory=1: the three slow tasks are separate events (the default span would report them as one)
    config = DetectorConfig(buckets=1, min_history=5, window=20, spatial_tolerance=0.0, refractory=1)
    hook = AnomalyHook(config, on_anomaly=callback, tick_s=1.0, min_tick_tasks=1, clock=lambda: clock[0],
                       signals=["latency"])
    async def job(seconds: float) -> float:
        clock[0] += 1.0
        await asyncio.sleep(seconds)
        return seconds

    async def main() -> list[Any]:
        # Task durations on the virtual loop's clock: with the default (real) clock the virtual sleeps
        # measured microseconds of noise, and whether the detector fired depended on the machine's load.
        # Two waves, each one series with one slow task: two anomalies (a slow task's tick latency is capped,
        # so a second slow task of the same series is no new extreme; it took a rounding false positive
        # of the range rule, since fixed, for one series to report twice).
        values = []
        for name in ("anomalous", "anomalous too"):
            wave: Wave[float] = Wave(name, max_concurrency=1, hooks=(hook,), instrument=False,
                                     clock=asyncio.get_running_loop().time)
            for seconds in [0.01] * 10 + [5.0]:
                result = await wave.run([functools.partial(job, seconds)])
                values.extend(result.values())
        return values

    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        values = run_virtual(main())
    assert values == ([0.01] * 10 + [5.0]) * 2
    assert len(calls) >= 2, "the callback kept being called"
    records = [r for r in caplog.records if "failed in on_anomaly" in r.getMessage()]
    assert len(records) == 1
    assert hook.hook_errors == {"on_anomaly": len(calls)}


def test_the_otel_hook_counts_the_other_hooks_errors() -> None:
    bad = Probe("retry_scheduled")
    run = Run(retry_call, (bad,))
    assert bad.raised >= 2
    point = run.otel.point(tel.HOOK_ERRORS.name, shannon_hook_method="retry_scheduled")
    assert point.value == bad.raised
    assert dict(point.attributes) == {
        tel.HOOK_NAME: f"{__name__}.Probe", tel.HOOK_METHOD: "retry_scheduled",
        tel.ERROR_TYPE: f"{__name__}.HookBugError",
    }


def test_an_on_progress_raising_a_stray_cancelled_error_costs_the_wave_no_task() -> None:
    """``on_progress`` is called without await, between two tasks of a worker: its CancelledError (nothing was
    cancelled) ended that worker as if cancelled, and with ``max_concurrency=1`` every later task was reported
    cancelled, never run, in a wave reported as a success."""
    calls: list[int] = []

    def progress(p: Any) -> None:
        calls.append(p.done)
        cancelled = asyncio.get_running_loop().create_future()
        cancelled.cancel()
        cancelled.result()

    wave: Wave[int] = Wave("progress-cancel", max_concurrency=1, on_progress=progress, progress_interval=1e-9,
                           instrument=False)
    result = run_virtual(wave.map(_echo, range(5)))
    assert [r.value for r in result.results] == [0, 1, 2, 3, 4]
    assert result.report.counts[Outcome.SUCCESS] == 5
    assert len(calls) >= 5


@pytest.mark.parametrize("mode", ["fail-fast run", "stream left early"])
def test_an_observer_not_subclassing_wave_observer_misses_only_what_it_lacks(mode: str) -> None:
    """The rest of a wave that stopped early is told to each observer in bulk when it overrides ``tasks_skipped``;
    that was looked up on the observer's class outside any guard: one without it (a duck-typed observer) made the
    wave raise AttributeError in place of its results."""

    class Duck:
        def task_started(self, index: int, name: str, queue_wait_s: float) -> None:
            return None

        def task_finished(self, token: Any, event: Any) -> None:
            pass

        def wave_finished(self, report: Any) -> None:
            pass

    class DuckHook(Hook):
        def wave_started(self, event: Any) -> Any:
            return Duck()

    async def job(i: int) -> int:
        await asyncio.sleep(0)
        if i == 0 and mode == "fail-fast run":
            raise ValueError("the first task fails")
        return i

    hook = DuckHook()
    wave: Wave[int] = Wave("duck", max_concurrency=1, fail_fast=True, hooks=[hook], instrument=False)

    async def main() -> list[Outcome]:
        if mode == "fail-fast run":
            return [r.outcome for r in (await wave.map(job, range(6))).results]
        async with wave.stream_map(job, range(6)) as results:
            first = await anext(results)
        assert results.report is not None
        counts = results.report.counts
        return [first.outcome] + [Outcome.SUCCESS] * (counts[Outcome.SUCCESS] - 1) + [
            Outcome.CANCELLATION] * counts[Outcome.CANCELLATION]

    outcomes = run_virtual(main())
    first = Outcome.FAILURE if mode == "fail-fast run" else Outcome.SUCCESS
    assert outcomes[0] is first and outcomes[-1] is Outcome.CANCELLATION and len(outcomes) == 6
    assert hook.hook_errors["task_skipped"] >= 1  # it lacks task_skipped too: each call its isolated failure


@pytest.mark.parametrize("slots", [False, True])
def test_a_frozen_dataclass_hook_is_counted_and_logged_once(slots: bool, caplog: pytest.LogCaptureFixture) -> None:
    """A hook written as a frozen dataclass (as the policies are) refused the assignment of its failure counts:
    ``hook_errors`` stayed empty, and each failure was logged with its traceback (a record per task), though the
    first record said later ones would only be counted."""

    class Failing(WaveObserver):
        def task_finished(self, token: Any, event: Any) -> None:
            raise HookBugError("task_finished")

    frozen = dataclasses.dataclass(frozen=True, slots=True) if slots else dataclasses.dataclass(frozen=True)

    @frozen
    class FrozenHook(Hook):
        label: str = "frozen"

        def wave_started(self, event: Any) -> Any:
            return Failing()

    hook = FrozenHook()
    wave: Wave[int] = Wave("frozen-hook", hooks=[hook], instrument=False)
    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        result = run_virtual(wave.map(_echo, range(5)))
    assert [r.value for r in result.results] == [0, 1, 2, 3, 4]
    assert hook.hook_errors == {"task_finished": 5}
    assert len([r for r in caplog.records if "failed in task_finished" in r.getMessage()]) == 1


def test_a_mock_hook_is_isolated_like_any_other(caplog: pytest.LogCaptureFixture) -> None:
    """``Mock(spec=Hook)``, as a user's test passes to see what their wave reports: it answers ``_hook_errors`` with a
    Mock, which the failure count read as its dict. Recording its first failure (``for_scope`` returns no Hook)
    raised "argument of type 'Mock' is not iterable" out of the isolation itself, and the Wave was never built."""
    hook = mock.Mock(spec=Hook)

    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        wave: Wave[int] = Wave("mock-hook", hooks=[hook], instrument=False)
        result = run_virtual(wave.map(_echo, range(3)))
    assert [r.value for r in result.results] == [0, 1, 2]
    hook.wave_started.assert_called_once()
    assert len([r for r in caplog.records if "failed in for_scope" in r.getMessage()]) == 1


def test_a_hook_whose_getattr_raises_for_unknown_names_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """A hook reading its settings through ``__getattr__`` (``return self._settings[name]``) raises KeyError for any
    name it lacks: the isolation's look-up of ``__wrapped__`` and of the failure counts raised it, out of the guard,
    and the wave raised an ExceptionGroup in place of its results."""

    class Failing(WaveObserver):
        def task_finished(self, token: Any, event: Any) -> None:
            raise HookBugError("task_finished")

    class Settings(Hook):
        def __init__(self) -> None:
            self._settings = {"label": "x"}

        def __getattr__(self, name: str) -> Any:
            return self._settings[name]

        def wave_started(self, event: Any) -> Any:
            return Failing()

    class Listener(Hook):  # another hook of the scope, told of the failure, and itself failing in turn
        def wave_started(self, event: Any) -> Any:
            return Failing()

    hook = Settings()
    assert hook.hook_errors == {}
    wave: Wave[int] = Wave("getattr-hook", hooks=[hook, Listener()], instrument=False)
    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        result = run_virtual(wave.map(_echo, range(3)))
    assert [r.value for r in result.results] == [0, 1, 2]
    assert hook.hook_errors == {"task_finished": 3}
