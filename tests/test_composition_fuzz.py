"""Differential fuzzing of the promise "telemetry never changes what the user's code gets back,
and never leaves a span open".

A drawn *program* is a sequence of stages through the public API only: a call through a random stack of
policies (``Retry``, ``CircuitBreaker``, ``Timeout``, ``Fallback``, ``Hedge``, ``Degrade``), a ``Wave`` of
such calls (``run``, ``map``, ``stream``, ``stream_map``; any ``max_concurrency``, fail-fast or collect-all,
a task timeout), or a ``Saga`` of protected steps; the user's functions are round 4's scripted ones (return a
value, ``None``, NaN, a large object or an exception instance as a value; raise; sleep on virtual time; raise
``CancelledError`` themselves; be sync where async belongs), and the caller may be cancelled at a drawn
virtual instant. Every program runs on a fresh virtual-time loop in five telemetry modes:

* ``off``: every entry point ``instrument=False``;
* ``noop``: the OTel API's no-op providers (what a user without the SDK has);
* ``sdk``: the real SDK, metrics through plain SDK calls (``InMemoryTelemetry(bridged=False)``);
* ``raising``: the real SDK with the in-process bridge, plus a user hook raising in every method
  (every observer method and the scopes' ``__enter__`` / ``__exit__`` too) and a ``RunRecorder``, whose
  report must agree with the results and spans;
* ``bridged``: a MeterProvider the user built with ``bridged(InMemoryMetricReader())``.

Asserted: what the user got back (values, exception types and arguments, order, wave reports, saga results,
how many times each function ran and how each run ended, the virtual end time) is identical in all five; in
the SDK modes every span ended, every span's parent is in the same trace, a span is ERROR exactly where its
outcome says the user saw an error, the metric counts equal what the results and spans show, and the spans
and counts are the same in the three SDK modes (the raising hook changes nothing but its own error count).

CI runs a bounded, derandomized number of examples (a few seconds); hunting locally:
``SHANNON_HYPOTHESIS=hunt python3 -m pytest tests/test_composition_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import warnings
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from _metric_total import metric_total
from _open_spans import OpenSpans
from _quiet import quiet_logs  # noqa: F401  (autouse: the shannon_otel logger silenced here)
from _span_attrs import attrs
from _virtual_time import vclock
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_policy_stack_model import (
    RETRY_ON,
    Act,
    Interrupt,
    Script,
    Spec,
    acts,
    build,
    canon_error,
    canon_value,
    compensation_of,
    examples,
    policy_specs,
    untied,
)

from shannon_otel import (
    CallObserver,
    CircuitBreaker,
    Hook,
    Pipeline,
    ResourcePool,
    RunRecorder,
    Saga,
    SagaError,
    SagaObserver,
    SagaResult,
    Served,
    Step,
    Wave,
    WaveError,
    WaveObserver,
    WaveReport,
    bridged,
    task,
)
from shannon_otel.testing import InMemoryTelemetry, run_virtual

MODES = ("off", "noop", "sdk", "raising", "bridged")
SDK_MODES = ("sdk", "raising", "bridged")
OPS = ("op", "b1", "b2")  # an operation's span: a pipeline or lone policy named "op", a lone breaker by its name


# --------------------------------------------------------------------------- a hook raising everywhere
class HookBugError(Exception):
    """What the raising hook raises: an Exception, so the library isolates it."""


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise HookBugError("hook bug")


class RaisingScope:
    """A token or observer that is a scope whose ``__enter__`` and ``__exit__`` raise."""

    __enter__ = _raise
    __exit__ = _raise


def _protocol(cls: type[Any]) -> list[str]:
    return sorted(n for n, v in vars(cls).items() if callable(v) and not n.startswith("_"))


def _raising_class(base: type[Any]) -> type[Any]:
    """``base`` with every protocol method raising, except that the ``*_started`` methods of an observer
    return a raising scope as their token half the time (a scope's enter and exit are guarded too)."""
    namespace: dict[str, Any] = {}
    for name in _protocol(base):
        if name.endswith("_started") and base is not Hook:
            namespace[name] = lambda self, *args: RaisingScope() if args and hash(args[0]) % 2 else _raise()
        else:
            namespace[name] = _raise
    namespace["__enter__"] = _raise
    namespace["__exit__"] = _raise
    return type(f"Raising{base.__name__}", (base,), namespace)


_RAISING_OBSERVERS = {
    "wave_started": _raising_class(WaveObserver), "call_started": _raising_class(CallObserver),
    "saga_started": _raising_class(SagaObserver),
}


class RaisingEverywhere(_raising_class(Hook)):  # type: ignore[misc]
    """A user hook raising in every method. ``starts=False``: its ``*_started`` methods hand out observers
    (context managers) raising in every method instead, so those are exercised too."""

    def __init__(self, starts: bool) -> None:
        self.starts = starts

    def for_scope(self, hooks: tuple[Hook, ...]) -> Hook:
        return self  # raising here would only drop the hook from the scope: nothing left to probe

    def __getattribute__(self, name: str) -> Any:
        if name in _RAISING_OBSERVERS and not object.__getattribute__(self, "starts"):
            return lambda event: _RAISING_OBSERVERS[name]()
        return object.__getattribute__(self, name)


# --------------------------------------------------------------------------- the user's functions
class Script6(Script):
    """Round 4's scripted function, with more ways to end: ``excval`` returns an exception instance as its
    value (a value, not an error), ``cancelme`` cancels the task it runs in (``current_task().cancel()``) and
    awaits."""

    async def _run(self, act: Act, label: str) -> Any:
        if act.kind not in ("excval", "cancelme"):
            return await super()._run(act, label)
        try:
            if act.sleep:
                await asyncio.sleep(act.sleep + 0.0013 * int(label.rsplit(".", 1)[1]))
            if act.kind == "cancelme":
                current = asyncio.current_task()
                assert current is not None
                current.cancel()
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        self.ended.append("ok")
        return ValueError(label)


acts6 = st.one_of(acts, acts, st.builds(Act, kind=st.sampled_from(["excval", "cancelme"]),
                                        sleep=st.sampled_from([0.0, 1.0])))


class AbortedError(Exception):
    """What a saga transaction's body raises after its steps."""


# --------------------------------------------------------------------------- the programs
@dataclass(frozen=True)
class Stage:
    kind: str  # call | run | map | stream | stream_map | saga
    chain: tuple[Spec, ...]
    scripts: tuple[tuple[Act, ...], ...]
    concurrency: int | None = None
    task_timeout: float | None = None
    fail_fast: bool = False
    compensations: tuple[str, ...] = ()
    gap: float = 0.0
    entry: str = "pipeline"  # pipeline | lone (a chain of one: the policy itself) | decorator (calls only)
    # run/map: raise_errors=True; stream: the consumer leaves after this many results; saga: a transaction
    # (``begin()``) whose body raises after its steps
    variant: int = 0
    limits: tuple[int | None, float | None, int | None] = (None, None, None)  # waves: pool size, rate, batch


@dataclass(frozen=True)
class Program:
    stages: tuple[Stage, ...]
    cancel_at: float | None
    hook_starts: bool  # the raising hook raises in its *_started methods (else: its observers raise)
    concurrent: bool = False  # the stages run at once in a TaskGroup (sharing their breakers), not in turn


chains = st.lists(policy_specs, min_size=0, max_size=3).map(lambda c: tuple(untied(c)))
scripts = st.lists(st.lists(acts6, min_size=1, max_size=3).map(tuple), min_size=1, max_size=4).map(tuple)
COMPENSATIONS = ["ok", "ok", "none", "raise", "slow", "selfcancel"]

stages = st.one_of(
    st.builds(Stage, kind=st.just("call"), chain=chains.filter(bool), scripts=scripts,
              gap=st.sampled_from([0.0, 0.5, 6.0]), entry=st.sampled_from(["pipeline", "lone", "decorator"])),
    st.builds(Stage, kind=st.sampled_from(["run", "map", "stream", "stream_map"]), chain=chains, scripts=scripts,
              concurrency=st.sampled_from([1, 2, None]), task_timeout=st.sampled_from([None, 0.9, 2.5]),
              fail_fast=st.booleans(), gap=st.sampled_from([0.0, 0.5, 6.0]),
              entry=st.sampled_from(["pipeline", "lone"]), variant=st.sampled_from([0, 0, 1, 2]),
              limits=st.tuples(st.sampled_from([None, None, 1, 2]), st.sampled_from([None, None, 0.7, 3.0]),
                               st.sampled_from([None, None, 1, 2]))),
    st.builds(lambda chain, s, comps, gap, variant: Stage("saga", chain, s, compensations=tuple(comps[: len(s)]),
                                                          gap=gap, variant=variant),
              chains.map(lambda c: tuple(p for p in c if p.kind != "degrade")), scripts,
              st.lists(st.sampled_from(COMPENSATIONS), min_size=4, max_size=4), st.sampled_from([0.0, 0.5]),
              st.sampled_from([0, 1])),
)
programs = st.builds(
    Program, stages=st.lists(stages, min_size=1, max_size=3).map(tuple),
    cancel_at=st.one_of(st.none(), st.none(), st.sampled_from([0.017, 0.613, 1.417, 3.217, 7.7])),
    hook_starts=st.booleans(), concurrent=st.booleans(),
)


# --------------------------------------------------------------------------- one mode's wiring
class Wiring:
    """The providers, hooks and instrument flag of one mode; the SDK objects to read back."""

    def __init__(self, mode: str, hook_starts: bool) -> None:
        self.mode = mode
        self.open = OpenSpans()
        self.tel: InMemoryTelemetry | None = None
        self.reader: InMemoryMetricReader | None = None
        self.exporter: InMemorySpanExporter | None = None
        self.hooks: list[Hook] = []
        self.recorder = RunRecorder()  # listening in the raising mode only
        self.kwargs: dict[str, Any] = {}
        if mode == "off":
            self.kwargs = {"instrument": False}
        elif mode == "noop":
            self.kwargs = {"tracer_provider": otel_trace.NoOpTracerProvider(),
                           "meter_provider": otel_metrics.NoOpMeterProvider()}
        elif mode in ("sdk", "raising"):
            self.tel = InMemoryTelemetry(bridged=mode == "raising")
            self.tel.tracer_provider.add_span_processor(self.open)
            self.exporter = self.tel.span_exporter
            self.kwargs = dict(self.tel.providers)
            if mode == "raising":
                self.recorder = RunRecorder()
                self.hooks = [self.recorder, RaisingEverywhere(hook_starts)]
        else:
            self.exporter = InMemorySpanExporter()
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            tracer_provider.add_span_processor(self.open)
            self.reader = InMemoryMetricReader()
            self.kwargs = {"tracer_provider": tracer_provider,
                           "meter_provider": MeterProvider(metric_readers=[bridged(self.reader)])}

    def own(self) -> dict[str, Any]:
        """What an entry point standing on its own gets: its providers (or instrument=False) and the hooks."""
        return {**self.kwargs, **({"hooks": self.hooks} if self.hooks else {})}

    def breaker(self, spec: Spec) -> CircuitBreaker:
        name, threshold, reset, on = spec.opts
        return CircuitBreaker(name, failure_threshold=threshold, reset_timeout=reset, on=RETRY_ON[on],
                              clock=vclock, **self.own())

    def spans(self) -> list[Any]:
        return [] if self.exporter is None else list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        if self.tel is not None:
            return list(self.tel.points(name))
        assert self.reader is not None
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
                for p in m.data.data_points]


# --------------------------------------------------------------------------- running a program
@dataclass
class Seen:
    """What the user's code saw: per stage its canonical outcome; the scripts' runs; the end time."""

    stages: list[Any] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    caller: str = "returned"
    end_time: float = 0.0
    reports: list[WaveReport] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (kind, canonical outcome) of each direct call
    sagas: list[SagaResult] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every stage ended with its result (none left cancelled or raising a BaseException)."""
        return self.caller == "returned" and "cancelled" not in self.stages

    def visible(self) -> Any:
        return (self.stages, [(s.calls, s.ended) for s in self.scripts], self.compensated, self.caller,
                self.end_time)


def canon_val(value: Any) -> Any:
    """Round 4's canonical value, and an exception returned as a value by its type and arguments."""
    if isinstance(value, Served):
        return ("served", canon_val(value.value), value.degraded, value.mode, value.reason,
                None if value.error is None else canon_any(value.error))
    if isinstance(value, BaseException):
        return ("value", type(value).__name__, value.args)
    return canon_value(value)


def task_outcome(result: Any) -> tuple[str, Any]:
    if result.outcome.value == "success":
        return "success", canon_val(result.value)
    return result.outcome.value, None if result.error is None else canon_any(result.error)


def canon_any(error: BaseException) -> Any:
    if isinstance(error, BaseExceptionGroup):
        return (type(error).__name__, [canon_any(e) for e in error.exceptions])
    if isinstance(error, SagaError):
        return ("SagaError", canon_saga(error.result), canon_any(error.__cause__) if error.__cause__ else None)
    return canon_error(error)


def canon_saga(result: SagaResult) -> Any:
    return (result.outcome.value, result.completed, result.compensated,
            sorted((k, canon_any(v)) for k, v in result.failed_compensations.items()),
            None if result.error is None else canon_any(result.error), [canon_val(v) for v in result.values])


def canon_report(report: WaveReport) -> Any:
    return (report.outcome.value, sorted((k.value, v) for k, v in report.counts.items() if v),
            sorted(report.errors_by_type.items()), report.duration_s, report.concurrency)


NO_PROVIDERS: Any = SimpleNamespace(providers={})  # what build() reads of a telemetry: breakers are made here


def _stage_policy(stage: Stage, wiring: Wiring, breakers: dict[str, CircuitBreaker], standalone: bool) -> Any:
    if not stage.chain:
        return None
    for spec in stage.chain:
        if spec.kind == "breaker" and spec.opts[0] not in breakers:
            breakers[spec.opts[0]] = wiring.breaker(spec)
    if stage.entry == "lone" and len(stage.chain) == 1:  # the policy itself, named "op" (a breaker: its own name)
        spec = stage.chain[0]
        if spec.kind == "breaker":
            return breakers[spec.opts[0]]
        if standalone or wiring.mode == "off":
            return build(spec, breakers, NO_PROVIDERS, [], name="op", **wiring.own())
        return build(spec, breakers, NO_PROVIDERS, [], name="op",
                     **({"hooks": wiring.hooks} if wiring.hooks else {}))
    policies = [build(spec, breakers, NO_PROVIDERS, []) for spec in stage.chain]
    if standalone or wiring.mode == "off":
        return Pipeline(*policies, name="op", clock=vclock, **wiring.own())
    hooks: dict[str, Any] = {"hooks": wiring.hooks} if wiring.hooks else {}
    return Pipeline(*policies, name="op", clock=vclock, **hooks)


async def _run_stage(stage: Stage, k: int, wiring: Wiring, breakers: dict[str, CircuitBreaker], seen: Seen) -> Any:
    made = [Script6(f"s{k}.{j}", s) for j, s in enumerate(stage.scripts)]
    seen.scripts.extend(made)
    if stage.kind == "call":
        policy = _stage_policy(stage, wiring, breakers, standalone=True)
        outcomes = []
        for script in made:
            try:
                value = await (policy(script)() if stage.entry == "decorator" else policy.call(script))
            except BaseException as exc:
                outcomes.append(("exc", canon_any(exc)))
                seen.calls.append(("exc", exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                outcomes.append(("ret", canon_val(value)))
                seen.calls.append(("ret", value))
            # after a value or an error alike, no span stays current: the caller's context is what it was
            assert not otel_trace.get_current_span().get_span_context().is_valid, wiring.mode
        return outcomes
    if stage.kind == "saga":
        policy = _stage_policy(stage, wiring, breakers, standalone=True)
        saga = Saga("order", compensation_timeout_s=1.0, clock=vclock, **wiring.own())
        steps = []
        for j, script in enumerate(made):
            name = f"step{j}"
            action = functools.partial(policy.call, script) if policy is not None else script
            behaviour = stage.compensations[j] if j < len(stage.compensations) else "none"
            steps.append(Step(name, action, compensation_of(behaviour, seen.compensated, name)))
        tx = None
        try:
            if stage.variant:
                async with saga.begin() as tx:
                    for step in steps:
                        await tx.step(step.name, step.action, compensate=step.compensate)
                    raise AbortedError("the body gave up")
            done = await saga.run(*steps)
        except SagaError as exc:
            seen.sagas.append(exc.result)
            return ("saga-error", canon_any(exc))
        except AbortedError as exc:
            assert tx is not None and tx.result is not None
            seen.sagas.append(tx.result)
            return ("aborted", canon_any(exc), canon_saga(tx.result))
        seen.sagas.append(done)
        return ("saga", canon_saga(done))
    policy = _stage_policy(stage, wiring, breakers, standalone=False)
    pool_size, rate, batch = stage.limits
    wave: Wave[Any] = Wave("w", max_concurrency=stage.concurrency, task_timeout=stage.task_timeout,
                           fail_fast=stage.fail_fast, policy=policy, rate_limit=rate, batch_size=batch,
                           clock=vclock, **wiring.own())
    tasks: list[Any] = list(made)
    if pool_size is not None:
        pool = ResourcePool("p", pool_size)
        tasks = [task(script, pool=pool) for script in made]
    if stage.kind in ("run", "map"):
        raise_errors = stage.variant == 1
        try:
            result = await (wave.run(tasks, raise_errors=raise_errors) if stage.kind == "run"
                            else wave.map(lambda s: s(), made, raise_errors=raise_errors))
        except WaveError as exc:
            result = exc.result
            seen.reports.append(result.report)
            return ("WaveError", [task_outcome(r) for r in result.results], canon_report(result.report),
                    [canon_any(e) for e in exc.exceptions])
        seen.reports.append(result.report)
        return ([task_outcome(r) for r in result.results], canon_report(result.report))
    stream = wave.stream(tasks) if stage.kind == "stream" else wave.stream_map(lambda s: s(), made)
    got = []
    async with stream as results:
        async for r in results:
            got.append((r.index, *task_outcome(r)))
            if len(got) == stage.variant:
                break  # the consumer leaves early: the rest is cancelled
    assert stream.report is not None
    seen.reports.append(stream.report)
    return (got, canon_report(stream.report))


def run_program(program: Program, mode: str) -> tuple[Seen, Wiring, dict[str, CircuitBreaker]]:
    wiring = Wiring(mode, program.hook_starts)
    seen = Seen()
    breakers: dict[str, CircuitBreaker] = {}

    seen.stages = [None] * len(program.stages)

    async def one(k: int, stage: Stage) -> None:
        try:
            seen.stages[k] = await _run_stage(stage, k, wiring, breakers, seen)
            # no span stays current after the work: the caller's context is what it was
            assert not otel_trace.get_current_span().get_span_context().is_valid, (wiring.mode, k)
        except asyncio.CancelledError:  # the caller's, or the stage's own (a function cancelled its task)
            seen.stages[k] = "cancelled"
            raise
        except BaseException as exc:  # a task's Interrupt out of a wave, a step's out of a saga
            seen.stages[k] = ("raised", canon_any(exc))
            raise
        await asyncio.sleep(stage.gap)

    async def body() -> None:
        if program.concurrent:
            async with asyncio.TaskGroup() as group:
                for k, stage in enumerate(program.stages):
                    group.create_task(one(k, stage))
            return
        for k, stage in enumerate(program.stages):
            await one(k, stage)

    async def main() -> None:
        task = asyncio.create_task(body())
        if program.cancel_at is not None:
            asyncio.get_running_loop().call_later(program.cancel_at, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            seen.caller = "cancelled"
        except BaseException as exc:
            if not isinstance(exc, Interrupt | BaseExceptionGroup):
                raise
            seen.caller = f"raised {type(exc).__name__}"
        seen.end_time = asyncio.get_running_loop().time()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_virtual(main())
        gc.collect()
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not unawaited, (mode, unawaited)
    return seen, wiring, breakers


# --------------------------------------------------------------------------- the telemetry checks
ERROR_OUTCOMES = {
    "shannon.call.outcome": ("failure", "rejected", "ignored"),  # an ignored error reached the caller too
    "shannon.task.outcome": ("failure", "timeout"),
    "shannon.attempt.outcome": ("failure", "timeout"),
}


def check_telemetry(program: Program, seen: Seen, wiring: Wiring, breakers: dict[str, CircuitBreaker]) -> Any:
    """The invariants of one SDK mode; returns the shape of its telemetry, compared across the SDK modes."""
    assert not wiring.open.open, f"{wiring.mode}: spans left open: {sorted(wiring.open.open.values())}"
    spans = wiring.spans()
    by_id = {s.context.span_id: s for s in spans}
    for s in spans:
        if s.parent is not None:  # every span's parent ended too, in the same trace
            parent = by_id.get(s.parent.span_id)
            assert parent is not None, f"{wiring.mode}: {s.name}'s parent is missing"
            assert parent.context.trace_id == s.context.trace_id
        else:
            assert s.name in (*OPS, "wave w", "saga order"), f"{wiring.mode}: {s.name} is a root"
        a = attrs(s)
        for key, errors in ERROR_OUTCOMES.items():  # ERROR exactly where the outcome says the user saw one
            if key in a and s.name != "wave w":
                assert (s.status.status_code.name == "ERROR") == (a[key] in errors), (wiring.mode, s.name, a)
    # direct calls: one root op span each, in order, agreeing with what the caller saw
    roots = sorted((s for s in spans if s.name in OPS and s.parent is None), key=lambda s: s.start_time or 0)
    assert len(roots) == len(seen.calls), (wiring.mode, len(roots), len(seen.calls))
    def saw(kind: str, what: Any) -> str:
        return "success" if kind == "ret" else "cancellation" if isinstance(what, asyncio.CancelledError) else "error"

    def shows(span: Any) -> str:
        outcome = attrs(span)["shannon.call.outcome"]
        return outcome if outcome in ("success", "cancellation") else "error"  # failure, rejected, ignored

    if program.concurrent:  # the calls of concurrent stages end in another order than they started
        assert Counter(saw(*c) for c in seen.calls) == Counter(map(shows, roots)), wiring.mode
    else:
        for span, call in zip(roots, seen.calls, strict=True):
            assert shows(span) == saw(*call), (wiring.mode, attrs(span), call)
    # waves: the outcome counter adds up to every task of every wave, by the outcomes the user saw
    waves = [s for s in spans if s.name == "wave w"]
    tasks_of_waves = sum(len(st.scripts) for st in program.stages if st.kind not in ("call", "saga"))
    counted = Counter({o: metric_total(wiring, "shannon.task.outcomes", **{"shannon.task.outcome": o})
                       for o in ("success", "failure", "timeout", "cancellation")})
    assert sum(counted.values()) == sum(sum(v for k, v in attrs(w).items() if k.startswith("shannon.wave.tasks."))
                                        for w in waves), (wiring.mode, counted)
    if seen.complete:
        assert len(waves) == len(seen.reports)
        assert sum(counted.values()) == tasks_of_waves, (wiring.mode, counted, tasks_of_waves)
        from_reports: Counter[str] = Counter()
        for report in seen.reports:
            for outcome, n in report.counts.items():
                from_reports[outcome.value] += n
        assert +counted == +from_reports, (wiring.mode, counted, from_reports)
    for w in waves:
        a = attrs(w)
        failed = a.get("shannon.wave.tasks.failure", 0) + a.get("shannon.wave.tasks.timeout", 0)
        # ERROR when a task failed or timed out, or the wave itself failed (a task's BaseException)
        raised = a.get("shannon.task.outcome") in ("failure", "timeout")
        assert (w.status.status_code.name == "ERROR") == bool(failed or raised), (wiring.mode, a)
    # protected calls: one shannon.calls point per operation span, by outcome
    ops = [s for s in spans if s.name in OPS]
    by_outcome = Counter(attrs(s)["shannon.call.outcome"] for s in ops)
    for outcome, n in by_outcome.items():
        assert metric_total(wiring, "shannon.calls", **{"shannon.call.outcome": outcome}) == n, (wiring.mode, outcome)
    assert sum(p.value for p in wiring.points("shannon.calls")) == len(ops), wiring.mode
    # sagas: the span's outcome is the result's
    saga_spans = [s for s in spans if s.name == "saga order"]
    told = Counter(r.outcome.value for r in seen.sagas)
    shown = Counter(attrs(s)["shannon.saga.outcome"] for s in saga_spans)
    assert told == shown if seen.complete else told <= shown, (wiring.mode, told, shown)
    comps = [s for s in spans if s.name.startswith("compensate ")]
    assert len(comps) == len(seen.compensated), (wiring.mode, [s.name for s in comps], seen.compensated)
    for name, breaker in breakers.items():
        for state in ("closed", "open", "half_open"):
            wanted = {"shannon.breaker.name": name, "shannon.breaker.state": state}
            got = metric_total(wiring, "shannon.breaker.state", **wanted)
            assert got == (1 if breaker.state.value == state else 0), (wiring.mode, name, state, got)
    return shape(spans, wiring)


def shape(spans: list[Any], wiring: Wiring) -> Any:
    """The telemetry's shape, ids and wall times left out: each span's name, its parent's name, status and
    attributes; the points of the counters."""
    by_id = {s.context.span_id: s for s in spans}

    def one(s: Any) -> Any:
        parent = by_id[s.parent.span_id].name if s.parent is not None else None
        return (s.name, parent, s.status.status_code.name, tuple(sorted(attrs(s).items())),
                tuple(e.name for e in s.events))

    counters = {}
    for name in ("shannon.task.outcomes", "shannon.calls", "shannon.timeouts", "shannon.fallbacks",
                 "shannon.degradations", "shannon.compensations", "shannon.hedges", "shannon.breaker.transitions"):
        counters[name] = sorted(((tuple(sorted(p.attributes.items())), p.value) for p in wiring.points(name)), key=repr)
    return sorted(map(one, spans), key=repr), counters


# --------------------------------------------------------------------------- the property
def check_program(program: Program) -> None:
    runs = {mode: run_program(program, mode) for mode in MODES}
    visible = {mode: seen.visible() for mode, (seen, _, _) in runs.items()}
    for mode in MODES[1:]:
        assert visible[mode] == visible["off"], f"{mode} differs from off"
    shapes = {mode: check_telemetry(program, *runs[mode]) for mode in SDK_MODES}
    assert shapes["raising"] == shapes["sdk"]
    assert shapes["bridged"] == shapes["sdk"]
    seen, wiring, _ = runs["raising"]
    assert wiring.hooks[1].hook_errors or not wiring.spans()  # it was called, and raised, and nothing showed
    check_recorder(program, seen, wiring)


def check_recorder(program: Program, seen: Seen, wiring: Wiring) -> None:
    """The RunRecorder beside the raising hook heard what the user saw and the spans show."""
    report = wiring.recorder.report()
    heard = [dict(w.counts) for w in report.waves]
    told = [dict(r.counts) for r in seen.reports]
    if program.concurrent:  # the recorder lists waves as they start, the user sees their reports as they end
        heard_n, told_n = Counter(map(repr, heard)), Counter(map(repr, told))
        assert told_n == heard_n if seen.complete else told_n <= heard_n, (heard, told)
    else:
        if seen.caller != "returned":  # the wave the caller left (cancelled, a task's BaseException): no report
            heard = heard[: len(told)]
        assert heard == told
    spans = wiring.spans()
    ops = [s for s in spans if s.name in OPS]
    assert sum(o.calls for o in report.operations.values()) == len(ops), (report.operations, len(ops))
    transitions = sum(p.value for p in wiring.points("shannon.breaker.transitions"))
    assert len(report.transitions) == transitions


@examples(30)
@given(program=programs)
def test_random_programs_get_the_same_back_in_every_telemetry_mode(program: Program) -> None:
    check_program(program)
