"""Reconciliation: what the telemetry shows is what happened.

A seeded workload (``random.Random(seed)``, no hypothesis) of stages through the public API only: direct calls
through a random stack of policies (``Retry``, ``CircuitBreaker``, ``Timeout``, ``Fallback``, ``Hedge``,
``Degrade``; a ``Pipeline`` or the lone policy), waves of such calls (``run``, ``map``, ``stream`` left early;
sizes 0-8, ``max_concurrency``, ``task_timeout``, ``batch_size``, ``fail_fast``, ``on_progress``) and sagas of
protected steps, in turn or at once (shared breakers). The user's functions (round 4's scripted ones) return values,
``None``, NaN, large objects, raise, sleep past timeouts or are sync where async belongs, and record how each of
their calls ended: that is the ground truth. Everything runs on virtual time, so the run is deterministic.

Each seed runs twice, with the real SDK (in-memory spans, metrics and log records) and with ``instrument=False``:
what the caller got must be identical. Then every view of the instrumented run must agree with the ground truth
and with the others: attempt spans with the calls of the user's functions (outcome and ``error.type``), task spans
and ``WaveReport``s and the last ``Progress`` and the task metrics, operation spans and ``shannon.calls`` /
``shannon.retry.attempts``, span events and their counters (retries, degradations, breaker transitions), fallback
and hedge and compensation spans with their counters and the helpers' real calls, log records with the counters.
The hunting probe (round 26) ran ~8,400 seeds of this and of a wider workload (the caller cancelled at a drawn
instant, rate limits, resource pools) and found no mismatch; these seeds keep it so.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from _open_spans import OpenSpans
from _virtual_time import vclock
from test_policy_stack_model import (
    HANDLE_ON,
    RETRY_ON,
    Act,
    Big,
    Script,
    Spec,
    build,
    compensation_of,
    fallback_of,
    untied,
)

from shannon_otel import (
    CircuitBreaker,
    Fallback,
    LoggingHook,
    Pipeline,
    Policy,
    Progress,
    Saga,
    SagaError,
    SagaResult,
    Served,
    Step,
    TaskResult,
    Wave,
    WaveError,
    WaveReport,
)
from shannon_otel.recovery._decorated import NotAwaitableError
from shannon_otel.testing import InMemoryTelemetry, run_virtual

OPS = ("op", "b1", "b2")  # an operation span: a pipeline or lone policy named "op", a lone breaker by its name


# --------------------------------------------------------------------------- the drawn workload
def _act(r: random.Random) -> Act:
    kind = r.choice(["ok", "ok", "ok", "none", "nan", "big", "raise", "raise", "raise", "raise", "raise", "sync"])
    return Act(kind, r.choice([0.0, 0.0, 1.0, 3.0]), r.choice(["ValueError", "KeyError", "TimeoutError", "OSError"]))


def _spec(r: random.Random, saga: bool) -> Spec:
    kind = r.choice(["retry", "retry", "retry", "breaker", "breaker", "timeout", "fallback", "hedge"]
                    + ([] if saga else ["degrade"]))
    if kind == "retry":
        return Spec(kind, (r.randint(1, 4), r.choice([0.0, 0.05, 0.13]), r.choice(list(RETRY_ON)), r.random() < 0.5,
                           r.choice([None, None, 0.9, 2.6])))
    if kind == "breaker":
        return Spec(kind, (r.choice(["b1", "b2"]), r.randint(1, 3), r.choice([0.0, 0.45, 5.5]),
                           r.choice(["Exception", "ValueError"])))
    if kind == "timeout":
        return Spec(kind, (r.choice([0.6, 2.2, 4.5]),))
    if kind == "fallback":
        return Spec(kind, (r.choice(["ok", "ok", "raise", "slow", "sync"]), r.choice(list(HANDLE_ON))))
    if kind == "hedge":
        return Spec(kind, (r.choice([0.31, 0.77]), r.randint(1, 3)))
    return Spec(kind, (r.choice(["default", "cheaper", "cheaper_fails", "cheaper_fails_default"]),
                       r.choice(["default", "Exception", "ValueError"])))


@dataclass(frozen=True)
class Stage:
    kind: str  # call | wave | saga
    chain: tuple[Spec, ...]
    scripts: tuple[tuple[Act, ...], ...]
    lone: bool  # a chain of one: the policy itself, not a pipeline of it
    run: str  # waves: run | map | stream
    leave: int  # a stream's consumer leaves after this many results (0: reads them all)
    concurrency: int | None
    task_timeout: float | None
    batch: int | None
    fail_fast: bool
    raise_errors: bool
    gap: float
    compensations: tuple[str, ...]
    body_raises: bool  # a saga as a transaction whose body raises after its steps


def draw(seed: int) -> tuple[list[Stage], bool]:
    """The stages of ``seed`` and whether they run at once."""
    r = random.Random(seed)
    stages = []
    for _ in range(r.randint(1, 4)):
        kind = r.choice(["call", "wave", "wave", "saga"])
        chain = tuple(untied([_spec(r, kind == "saga") for _ in range(r.randint(0 if kind == "wave" else 1, 3))]))
        n = r.randint(0 if kind == "wave" else 1, 8 if kind == "wave" else 5)
        run = r.choice(["run", "map", "stream"])
        concurrency = r.choice([1, 2, 3, None])
        stages.append(Stage(
            kind, chain, tuple(tuple(_act(r) for _ in range(r.randint(1, 4))) for _ in range(n)), r.random() < 0.3,
            run, r.choice([0, 0, 1, 2]), 2 if run == "stream" and concurrency is None else concurrency,
            r.choice([None, None, 0.9, 2.5]), r.choice([None, None, 1, 2]), r.random() < 0.25, r.random() < 0.2,
            r.choice([0.0, 0.5, 6.0]), tuple(r.choice(["ok", "ok", "none", "raise", "slow"]) for _ in range(n)),
            r.random() < 0.3,
        ))
    return stages, seed % 3 == 0


# --------------------------------------------------------------------------- the user's functions: ground truth
def error_type(error: BaseException | type[BaseException]) -> str:
    kind = error if isinstance(error, type) else type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


class Truth(Script):
    """A scripted function that also records how each call ended: (success | failure | cancelled, error type)."""

    def __init__(self, tag: str, script: tuple[Act, ...]) -> None:
        super().__init__(tag, script)
        self.how: list[tuple[str, str | None]] = []

    def __call__(self) -> Any:
        made = super().__call__()
        if not asyncio.iscoroutine(made):  # sync where async belongs: the policy refuses its value
            self.how.append(("failure", error_type(NotAwaitableError)))
            return made
        return self._track(made)

    async def _track(self, made: Awaitable[Any]) -> Any:
        try:
            value = await made
        except asyncio.CancelledError:
            self.how.append(("cancelled", None))
            raise
        except BaseException as exc:
            self.how.append(("failure", error_type(exc)))
            raise
        self.how.append(("success", None))
        return value


def canon(v: Any) -> Any:
    """A value or error as the caller can compare it across runs (strict: types and messages)."""
    if isinstance(v, Served):
        return ("served", canon(v.value), v.degraded, v.mode, v.reason, canon(v.error), v.age_s)
    if isinstance(v, Big):
        return ("big", v.label, len(v))
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, BaseExceptionGroup):
        return (type(v).__name__, str(v), [canon(e) for e in v.exceptions])
    if isinstance(v, SagaError):
        return ("SagaError", str(v), canon_saga(v.result), canon(v.__cause__))
    if isinstance(v, BaseException):
        return (error_type(v), str(v))
    return v


def canon_saga(res: SagaResult) -> Any:
    return (res.outcome.value, res.completed, res.compensated,
            sorted((k, canon(e)) for k, e in res.failed_compensations.items()), canon(res.error),
            [canon(x) for x in res.values])


def canon_report(rep: WaveReport) -> Any:
    return (rep.outcome.value, sorted((k.value, v) for k, v in rep.counts.items()), sorted(rep.errors_by_type.items()),
            rep.duration_s, rep.concurrency, rep.latency.count, rep.parallel_efficiency)


# --------------------------------------------------------------------------- one run
@dataclass
class World:
    """One run's wiring and everything the caller and the user's functions saw."""

    instrumented: bool
    bridged: bool = False
    tel: InMemoryTelemetry | None = None
    logs: LoggingHook = field(default_factory=LoggingHook)
    open: OpenSpans = field(default_factory=OpenSpans)
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    seen: dict[object, Any] = field(default_factory=dict)
    scripts: list[tuple[Stage, Truth]] = field(default_factory=list)
    reports: dict[int, tuple[WaveReport, list[TaskResult[Any]], bool]] = field(default_factory=dict)  # bool: streamed
    progress: dict[int, list[Progress]] = field(default_factory=dict)
    direct: list[tuple[str, str | None]] = field(default_factory=list)
    got: list[Any] = field(default_factory=list)  # every value handed to the caller
    fallbacks_run: int = 0
    compensated: list[str] = field(default_factory=list)
    sagas: list[SagaResult] = field(default_factory=list)
    sagas_unknown: int = 0  # sagas whose error (a step's TypeError, raised as it is) carries no result

    def __post_init__(self) -> None:
        if self.instrumented:
            self.tel = InMemoryTelemetry(bridged=self.bridged, logs=True)
            self.tel.tracer_provider.add_span_processor(self.open)

    @property
    def kw(self) -> dict[str, Any]:
        if self.tel is None:
            return {"instrument": False}
        return {**self.tel.providers, "hooks": [self.logs]}

    def policy(self, stage: Stage, own: bool) -> Policy | None:
        """The stage's policy; ``own``: with its providers (called directly), else reporting to its wave's (the
        wave's hooks do not reach its calls: it gets the logging hook itself)."""
        if not stage.chain:
            return None
        extra = self.kw if own or self.tel is None else {"hooks": [self.logs]}
        for spec in stage.chain:
            if spec.kind == "breaker" and spec.opts[0] not in self.breakers:
                name, threshold, reset, on = spec.opts
                self.breakers[name] = CircuitBreaker(name, failure_threshold=threshold, reset_timeout=reset,
                                                     on=RETRY_ON[on], clock=vclock, **self.kw)
        policies = [self._one(spec, name="op", **extra) if stage.lone and len(stage.chain) == 1 else self._one(spec)
                    for spec in stage.chain]
        if stage.lone and len(stage.chain) == 1:
            return policies[0]
        return Pipeline(*policies, name="op", clock=vclock, **extra)

    def _one(self, spec: Spec, **own: Any) -> Policy:
        if spec.kind == "breaker":
            return self.breakers[spec.opts[0]]
        if spec.kind == "fallback":  # its calls counted: the ground truth of fallback spans and counter
            served = fallback_of(spec.opts[0])

            def counted(error: Exception) -> Awaitable[Any]:
                self.fallbacks_run += 1
                return served(error)
            return Fallback(counted, on=HANDLE_ON[spec.opts[1]], clock=vclock, **own)
        return build(spec, self.breakers, cast("InMemoryTelemetry", None), [], **own)  # breakers: made above


async def _call_stage(w: World, k: int, stage: Stage, made: list[Truth]) -> Any:
    policy = w.policy(stage, own=True)
    assert policy is not None
    out = []
    for script in made:
        try:
            value = await policy.call(script)
        except Exception as exc:
            out.append(("exc", canon(exc)))
            w.direct.append(("error", error_type(exc)))
        else:
            out.append(("ret", canon(value)))
            w.direct.append(("success", None))
            w.got.append(value)
    return out


async def _saga_stage(w: World, k: int, stage: Stage, made: list[Truth]) -> Any:
    policy = w.policy(stage, own=True)
    saga = Saga("order", compensation_timeout_s=1.0, clock=vclock, **w.kw)
    steps = [Step(f"step{j}", functools.partial(policy.call, s) if policy is not None else s,
                  compensation_of(stage.compensations[j], w.compensated, f"step{j}")) for j, s in enumerate(made)]
    tx = None
    try:
        if stage.body_raises:
            async with saga.begin() as tx:
                for step in steps:
                    await tx.step(step.name, step.action, compensate=step.compensate)
                raise KeyError("body")
        done = await saga.run(*steps)
    except SagaError as exc:
        w.sagas.append(exc.result)
        return ("saga-error", canon(exc))
    except Exception as exc:  # the body's KeyError, a sync action's TypeError
        if tx is not None and tx.result is not None:
            w.sagas.append(tx.result)
        else:
            w.sagas_unknown += 1
        return ("raised", canon(exc))
    w.sagas.append(done)
    return ("saga", canon_saga(done))


async def _wave_stage(w: World, k: int, stage: Stage, made: list[Truth]) -> Any:
    progress: list[Progress] = []
    w.progress[k] = progress
    wave: Wave[Any] = Wave(f"w{k}", max_concurrency=stage.concurrency, task_timeout=stage.task_timeout,
                           batch_size=stage.batch, fail_fast=stage.fail_fast, policy=w.policy(stage, own=False),
                           on_progress=progress.append, clock=vclock, **w.kw)
    if stage.run == "stream":
        consumed: list[TaskResult[Any]] = []
        stream = wave.stream(made)
        async with stream as results:
            async for r in results:
                consumed.append(r)
                if len(consumed) == stage.leave:
                    break
        assert stream.report is not None
        w.reports[k] = (stream.report, consumed, True)
        tag: Any = "stream"
        report = stream.report
    else:
        try:
            done = await (wave.run(made, raise_errors=stage.raise_errors) if stage.run == "run"
                          else wave.map(lambda s: s(), made, raise_errors=stage.raise_errors))
            tag = "ok"
        except WaveError as exc:
            done = exc.result
            tag = ("WaveError", [canon(e) for e in exc.exceptions])
        consumed, report = list(done.results), done.report
        w.reports[k] = (report, consumed, False)
    w.got.extend(r.value for r in consumed)
    return (tag, [(r.index, r.outcome.value, canon(r.value), canon(r.error)) for r in consumed], canon_report(report))


STAGES: dict[str, Callable[[World, int, Stage, list[Truth]], Awaitable[Any]]] = {
    "call": _call_stage, "saga": _saga_stage, "wave": _wave_stage,
}


def run(stages: list[Stage], concurrent: bool, instrumented: bool, bridged: bool = False) -> World:
    w = World(instrumented, bridged)

    async def one(k: int, stage: Stage) -> None:
        made = [Truth(f"s{k}.{j}", s) for j, s in enumerate(stage.scripts)]
        w.scripts.extend((stage, s) for s in made)
        w.seen[k] = await STAGES[stage.kind](w, k, stage, made)
        await asyncio.sleep(stage.gap)

    async def main() -> None:
        if concurrent:
            async with asyncio.TaskGroup() as group:
                for k, stage in enumerate(stages):
                    group.create_task(one(k, stage))
        else:
            for k, stage in enumerate(stages):
                await one(k, stage)
        w.seen["end"] = asyncio.get_running_loop().time()

    run_virtual(main())
    w.logs.flush()
    return w


# --------------------------------------------------------------------------- the views, reconciled
def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def tally(points: list[Any], *keys: str) -> Counter[tuple[Any, ...]]:
    """Counter values or histogram counts, by the attribute values ``keys``."""
    out: Counter[tuple[Any, ...]] = Counter()
    for p in points:
        out[tuple(p.attributes.get(k) for k in keys)] += p.count if hasattr(p, "bucket_counts") else p.value
    return +out


def by_attrs(spans: list[Any], *keys: str) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(attrs(s).get(k) for k in keys) for s in spans)


def _parent_ok(name: str, parent: str | None) -> bool:
    if name.startswith("wave ") or name == "saga order":
        return parent is None
    if name.startswith("task "):
        return parent == "wave " + name.removeprefix("task ")
    if name in OPS:
        return parent is None or parent.startswith(("task ", "step "))
    if name.startswith(("attempt ", "hedge ", "rejected ", "fallback ")):
        return parent in OPS
    return name.startswith(("step ", "compensate ")) and parent == "saga order"


def _served(v: Any) -> int:
    return int(v.degraded) + _served(v.value) if isinstance(v, Served) else 0


def reconcile(stages: list[Stage], concurrent: bool, w: World) -> None:
    tel = w.tel
    assert tel is not None
    assert not w.open.open, f"spans left open: {w.open.open}"
    spans = list(tel.span_exporter.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}
    parent = {s.context.span_id: by_id.get(s.parent.span_id) if s.parent else None for s in spans}
    children: dict[int, list[Any]] = {}
    for s in spans:
        p = parent[s.context.span_id]
        assert _parent_ok(s.name, p.name if p else None), (s.name, p.name if p else None)
        if p is not None:
            children.setdefault(p.context.span_id, []).append(s)

    def points(name: str) -> list[Any]:
        return list(tel.points(name))

    def total(name: str, **wanted: Any) -> float:
        return float(sum(p.count if hasattr(p, "bucket_counts") else p.value for p in points(name)
                         if all(p.attributes.get(k) == v for k, v in wanted.items())))

    def under(span: Any, ancestor: Any) -> bool:
        p = parent[span.context.span_id]
        while p is not None and p is not ancestor:
            p = parent[p.context.span_id]
        return p is ancestor

    # attempts: one per call of the user's functions, ending as the call did
    attempts = [s for s in spans if s.name.startswith(("attempt ", "hedge "))]

    def ended(spans_: list[Any]) -> Counter[tuple[str, str | None]]:
        out: Counter[tuple[str, str | None]] = Counter()
        for x in spans_:
            outcome = attrs(x)["shannon.attempt.outcome"]
            cut = outcome in ("timeout", "cancellation")  # by a timeout or a cancellation: the function cannot tell
            out[("cancelled", None) if cut else (outcome, attrs(x).get("error.type"))] += 1
        return out

    truth = Counter(how for stage, s in w.scripts if stage.chain for how in s.how)
    assert ended(attempts) == truth, (ended(attempts), truth)
    # waves: span, report, progress, task spans and results agree
    waves = {s.name: s for s in spans if s.name.startswith("wave ")}
    assert sorted(waves) == sorted(f"wave w{k}" for k in w.reports), (sorted(waves), sorted(w.reports))
    scripts_of = {k: [s for st, s in w.scripts if st is stages[k]] for k in w.reports}
    for k, (report, results, streamed) in w.reports.items():
        span = waves[f"wave w{k}"]
        a = attrs(span)
        told = Counter({o.value: n for o, n in report.counts.items()})
        shown = Counter({key.removeprefix("shannon.wave.tasks."): v for key, v in a.items()
                         if key.startswith("shannon.wave.tasks.")})
        assert +shown == +told, (shown, told)
        assert a["shannon.task.outcome"] == report.outcome.value
        assert a.get("shannon.wave.parallel_efficiency") == report.parallel_efficiency
        assert a.get("shannon.wave.size") == len(stages[k].scripts)
        progress = w.progress[k]
        assert all(p.done <= q.done and p.failed <= q.failed for p, q in itertools.pairwise(progress))
        assert (progress[-1].done, progress[-1].failed, progress[-1].active) == (report.total, report.failed, 0)
        if not streamed:
            failed = Counter(error_type(r.error) for r in results if r.error is not None and not r.ok)
            assert failed == Counter(report.errors_by_type), (failed, report.errors_by_type)
        tasks = [t for t in children.get(span.context.span_id, []) if t.name.startswith("task ")]
        assert len(tasks) == report.latency.count
        assert Counter(attrs(t)["shannon.task.outcome"] for t in tasks) <= told
        result_of = {r.index: r for r in results}
        for t in tasks:
            ta = attrs(t)
            r = result_of.get(ta["shannon.task.index"])
            if r is not None:  # a result the caller got
                assert ta["shannon.task.outcome"] == r.outcome.value
                assert ta.get("error.type") == (None if r.ok else r.error_type), (ta, r)
                assert ta["shannon.task.queue_wait"] == r.queue_wait_s
                assert ta.get("shannon.wave.batch") == r.batch
            if stages[k].chain:
                script = scripts_of[k][ta["shannon.task.index"]]
                assert ended([x for x in attempts if under(x, t)]) == Counter(script.how), (ta, script.how)
    # task and wave metrics
    outcomes: Counter[tuple[Any, ...]] = Counter()
    for k, (report, results, streamed) in w.reports.items():
        if streamed:  # by the report: its results were not all read
            for o, n in report.counts.items():
                outcomes[(f"w{k}", "failure/timeout" if o.value in ("failure", "timeout") else o.value)] += n
        else:
            outcomes.update((f"w{k}", r.outcome.value, r.error_type) for r in results)
    metric: Counter[tuple[Any, ...]] = Counter()
    for (name, outcome, etype), n in tally(points("shannon.task.outcomes"), "shannon.wave.name",
                                           "shannon.task.outcome", "error.type").items():
        if name.removeprefix("w").isdigit() and w.reports[int(name[1:])][2]:
            metric[(name, "failure/timeout" if outcome in ("failure", "timeout") else outcome)] += n
        else:
            metric[(name, outcome, etype)] += n
    assert +metric == +outcomes, (metric, outcomes)
    task_spans = [s for s in spans if s.name.startswith("task ")]
    keys = ("shannon.wave.name", "shannon.task.outcome", "error.type")
    shown_tasks = Counter((s.name.removeprefix("task "), *(attrs(s).get(key) for key in keys[1:])) for s in task_spans)
    assert tally(points("shannon.task.duration"), *keys) == shown_tasks
    reports = [rep for rep, _, _ in w.reports.values()]
    for name, summary in (("shannon.task.duration", "latency"), ("shannon.task.queue_wait.duration", "queue_wait")):
        assert total(name) == sum(getattr(rep, summary).count for rep in reports)
        assert math.isclose(sum(p.sum for p in points(name)), sum(getattr(rep, summary).total for rep in reports),
                            abs_tol=1e-9), name
    assert tally(points("shannon.wave.duration"), "shannon.wave.name", "shannon.task.outcome") == Counter(
        (s.name.removeprefix("wave "), attrs(s)["shannon.task.outcome"]) for s in waves.values())
    assert math.isclose(sum(p.sum for p in points("shannon.wave.duration")), sum(r.duration_s for r in reports),
                        abs_tol=1e-9)
    efficiency = {p.attributes["shannon.wave.name"]: p.value for p in points("shannon.wave.parallel_efficiency")}
    assert efficiency == {f"w{k}": rep.parallel_efficiency for k, (rep, _, _) in w.reports.items()}
    assert all(p.value == 0 for p in points("shannon.task.active") + points("shannon.task.pending"))
    # protected calls: spans and metrics, in the order the caller got them
    ops = [s for s in spans if s.name in OPS]
    call_keys = ("shannon.operation", "shannon.call.outcome", "error.type")
    assert tally(points("shannon.calls"), *call_keys) == by_attrs(ops, *call_keys)
    assert tally(points("shannon.retry.attempts"), *call_keys[:2]) == by_attrs(ops, *call_keys[:2])
    assert sum(p.sum for p in points("shannon.retry.attempts")) == sum(attrs(s)["shannon.attempt"] for s in ops)
    roots = sorted((s for s in ops if parent[s.context.span_id] is None), key=lambda s: s.start_time or 0)
    shown_calls = [("success", None) if attrs(s)["shannon.call.outcome"] == "success" else ("error",
                   attrs(s).get("error.type")) for s in roots]
    assert (sorted(shown_calls, key=repr) == sorted(w.direct, key=repr) if concurrent
            else shown_calls == w.direct), (shown_calls, w.direct)
    # span events, child spans and the helpers' calls against their counters
    def events(name: str) -> list[Any]:
        return [e for s in spans for e in s.events if e.name == name]

    retries = events("shannon.retry.scheduled")
    assert total("shannon.retry.delay") == len(retries)
    assert math.isclose(sum(p.sum for p in points("shannon.retry.delay")),
                        sum(e.attributes["shannon.retry.delay"] for e in retries), abs_tol=1e-9)
    assert total("shannon.hedges") == len([s for s in spans if s.name.startswith("hedge ")])
    assert total("shannon.fallbacks") == len([s for s in spans if s.name.startswith("fallback ")]) == w.fallbacks_run
    degraded = Counter((e.attributes["shannon.degrade.mode"], e.attributes["shannon.degrade.reason"])
                       for e in events("shannon.degraded"))
    assert tally(points("shannon.degradations"), "shannon.degrade.mode", "shannon.degrade.reason") == degraded
    # A degradation is told only for a degraded value the call returns: never on a call that ended cancelled (a
    # fail-fast wave cancelling a task whose Hedge had its attempt's degraded value, a losing attempt's Degrade).
    handed = sum(1 for s in ops for e in s.events if e.name == "shannon.degraded")
    left_early = any(st.kind == "wave" and st.run == "stream" and st.leave for st in stages)
    assert (sum(map(_served, w.got)) <= handed) if left_early else (sum(map(_served, w.got)) == handed)
    transition_keys = ("shannon.breaker.name", "shannon.breaker.state.from", "shannon.breaker.state.to")
    assert tally(points("shannon.breaker.transitions"), *transition_keys) == Counter(
        tuple(e.attributes[k] for k in transition_keys) for e in events("shannon.breaker.transition"))
    for name, breaker in w.breakers.items():
        for state in ("closed", "open", "half_open"):
            gauge = total("shannon.breaker.state", **{"shannon.breaker.name": name, "shannon.breaker.state": state})
            assert gauge == (breaker.state.value == state), (name, state, gauge)
    compensations = [s for s in spans if s.name.startswith("compensate ")]
    assert tally(points("shannon.compensations"), "shannon.compensation.outcome") == by_attrs(
        compensations, "shannon.compensation.outcome")
    assert len(compensations) == len(w.compensated)
    sagas = Counter(attrs(s)["shannon.saga.outcome"] for s in spans if s.name == "saga order")
    assert Counter(r.outcome.value for r in w.sagas) <= sagas
    assert sagas.total() == len(w.sagas) + w.sagas_unknown
    # log records (summaries by their repeats) against the counters
    logged: Counter[str] = Counter()
    for record in tel.log_records():
        fields = dict(record.log_record.attributes or {})
        repeats = fields.get("shannon.log.repeats", 1)
        assert isinstance(repeats, int)
        logged[str(fields.get("event.name"))] += repeats
    compensated_ok = total("shannon.compensations", **{"shannon.compensation.outcome": "success"})
    assert dict(logged) == {k: v for k, v in {
        "shannon.retry.scheduled": len(retries), "shannon.timed_out": total("shannon.timeouts"),
        "shannon.fallback": total("shannon.fallbacks"), "shannon.degraded": total("shannon.degradations"),
        "shannon.call.rejected": len([s for s in spans if s.name.startswith("rejected ")]),
        "shannon.breaker.opened": total("shannon.breaker.transitions", **{"shannon.breaker.state.to": "open"}),
        "shannon.breaker.half_opened": total("shannon.breaker.transitions",
                                             **{"shannon.breaker.state.to": "half_open"}),
        "shannon.breaker.closed": total("shannon.breaker.transitions", **{"shannon.breaker.state.to": "closed"}),
        "shannon.saga.compensated": compensated_ok,
        "shannon.saga.compensation_failed": len(compensations) - compensated_ok,
    }.items() if v}, logged
    assert total("shannon.hook.errors") == 0


# --------------------------------------------------------------------------- the test
@pytest.fixture
def info_logs() -> Iterator[None]:
    """The library's records reach the in-memory log exporter (INFO: breaker closings), not the terminal."""
    logger = logging.getLogger("shannon_otel")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.filterwarnings("ignore::UserWarning")  # a pipeline's order warnings (a breaker behind a fallback...)
@pytest.mark.parametrize("seed", range(50))
@pytest.mark.usefixtures("info_logs")
def test_what_the_telemetry_shows_is_what_happened(seed: int) -> None:
    stages, concurrent = draw(seed)
    shown = run(stages, concurrent, instrumented=True, bridged=seed % 2 == 0)
    off = run(stages, concurrent, instrumented=False)
    try:
        assert shown.seen == off.seen  # the promise: the caller got the same back
        assert [(s.calls, s.how) for _, s in shown.scripts] == [(s.calls, s.how) for _, s in off.scripts]
        assert shown.fallbacks_run == off.fallbacks_run
        reconcile(stages, concurrent, shown)
    finally:
        assert shown.tel is not None
        shown.tel.shutdown()
