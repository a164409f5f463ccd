"""Property-based: random stacks of the recovery policies (any order, the "wrong" way round
too), random user functions, random hooks and random cancellation points, on the virtual-time loop with the
real OTel SDK.

Each drawn case runs twice on fresh virtual-time loops with the same scripts: once through the library, once
through a small reference model (``_Ref*``: a few lines per policy, written from the docs, not the code). The
user's result or exception must be the same in both; the library's telemetry must then agree with itself (no
span left open, every span's outcome and status consistent, metric counts equal to what the spans show) and
with the model (attempts made, breaker transitions, fallbacks, degradations, timeouts).

CI runs a moderate number of examples with ``derandomize=True`` (deterministic); hunting locally:
``SHANNON_HYPOTHESIS=hunt python3 -m pytest tests/test_policy_stack_model.py``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import math
import os
import re
import warnings
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from _metric_total import metric_total
from _open_spans import OpenSpans
from _quiet import quiet_logs  # noqa: F401  (autouse: the shannon_otel logger silenced here)
from _span_attrs import attrs
from _virtual_time import vclock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shannon_otel import Hook
from shannon_otel._events import BreakerTransition, CallObserver, CallStarted
from shannon_otel.recovery import (
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    FallbackError,
    Hedge,
    Pipeline,
    Policy,
    Retry,
    Served,
    Timeout,
)
from shannon_otel.recovery._decorated import NotAwaitableError
from shannon_otel.testing import InMemoryTelemetry, run_virtual

settings.register_profile(
    "policy-stacks-ci", max_examples=60, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "policy-stacks-hunt", max_examples=int(os.environ.get("SHANNON_EXAMPLES", "3000")), deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = "policy-stacks-hunt" if os.environ.get("SHANNON_HYPOTHESIS") == "hunt" else "policy-stacks-ci"


def examples(ci: int) -> settings:
    """The profile's settings; in CI ``ci`` examples (a few seconds), hunting as many as asked."""
    profile = settings.get_profile(PROFILE)
    return settings(profile, max_examples=ci) if PROFILE == "policy-stacks-ci" else profile


# --------------------------------------------------------------------------- the user's function
class Interrupt(BaseException):
    """A BaseException that is not an Exception (as KeyboardInterrupt): never retried, never handled."""


@dataclass(frozen=True)
class Val:
    label: str


class Big(list[int]):
    """A large result, compared by identity of its label."""

    label = ""


ERRORS: dict[str, type[BaseException]] = {
    "ValueError": ValueError, "KeyError": KeyError, "TimeoutError": TimeoutError, "OSError": OSError,
    "Interrupt": Interrupt,
}


@dataclass(frozen=True)
class Act:
    """What one call of the user's function does: sleep ``sleep`` virtual seconds, then ``kind``."""

    kind: str  # ok | none | nan | big | raise | sync | selfcancel
    sleep: float = 0.0
    error: str = "ValueError"


acts = st.builds(
    Act,
    kind=st.sampled_from(["ok", "ok", "ok", "none", "nan", "big", "raise", "raise", "raise", "sync", "selfcancel"]),
    sleep=st.sampled_from([0.0, 0.0, 1.0, 3.0]),
    error=st.sampled_from(list(ERRORS)),
)


class Script:
    """The user's function: the n-th call (in start order) does ``acts[min(n, len - 1)]``; every call and
    how it ended is recorded (``ended``: ok | raised | cancelled)."""

    def __init__(self, tag: str, script: tuple[Act, ...]) -> None:
        self.tag = tag
        self.script = script
        self.calls = 0
        self.ended: list[str] = []

    def __call__(self) -> Any:
        n = self.calls
        self.calls += 1
        act = self.script[min(n, len(self.script) - 1)]
        label = f"{self.tag}.{n}"
        if act.kind == "sync":  # a sync function where an async one belongs: awaiting its value fails
            self.ended.append("raised")
            return Val(label)
        return self._run(act, label)

    async def _run(self, act: Act, label: str) -> Any:
        try:
            if act.sleep:  # each call a little longer than the one before: hedged attempts never tie
                await asyncio.sleep(act.sleep + 0.0013 * int(label.rsplit(".", 1)[1]))
            if act.kind == "raise":
                raise ERRORS[act.error](label)
            if act.kind == "selfcancel":  # raises CancelledError without being cancelled
                raise asyncio.CancelledError(label)
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        except BaseException:
            self.ended.append("raised")
            raise
        self.ended.append("ok")
        if act.kind == "none":
            return None
        if act.kind == "nan":
            return math.nan
        if act.kind == "big":
            big = Big(range(50_000))
            big.label = label
            return big
        return Val(label)


# --------------------------------------------------------------------------- the drawn policies
@dataclass(frozen=True)
class Spec:
    """One drawn policy: ``kind`` and its settings (built fresh for the library and for the model)."""

    kind: str
    opts: tuple[Any, ...] = ()


RETRY_ON: dict[str, Any] = {
    "Exception": Exception, "ValueError": (ValueError,), "ValueError+open": (ValueError, CircuitOpenError),
    "KeyError+Timeout": (KeyError, TimeoutError),
}
HANDLE_ON: dict[str, type[Exception] | tuple[type[Exception], ...]] = {
    "Exception": Exception, "ValueError": (ValueError,), "Timeout+open": (TimeoutError, CircuitOpenError),
}

retry_specs = st.builds(
    lambda attempts, initial, on, wra, budget: Spec("retry", (attempts, initial, on, wra, budget)),
    st.integers(1, 4), st.sampled_from([0.0, 0.05, 0.13]), st.sampled_from(list(RETRY_ON)), st.booleans(),
    st.sampled_from([None, None, 0.9, 2.6]),
)
breaker_specs = st.builds(
    lambda name, threshold, reset, on: Spec("breaker", (name, threshold, reset, on)),
    st.sampled_from(["b1", "b2"]), st.integers(1, 3), st.sampled_from([0.0, 0.45, 5.5]),
    st.sampled_from(["Exception", "ValueError"]),
)
timeout_specs = st.builds(lambda s: Spec("timeout", (s,)), st.sampled_from([0.6, 2.2, 4.5]))
fallback_specs = st.builds(
    lambda beh, on: Spec("fallback", (beh, on)),
    st.sampled_from(["ok", "ok", "raise", "slow", "sync", "base"]), st.sampled_from(list(HANDLE_ON)),
)
hedge_specs = st.builds(
    lambda d, n: Spec("hedge", (d, n)), st.sampled_from([0.31, 0.77]), st.integers(1, 3),
)
degrade_specs = st.builds(
    lambda mode, on: Spec("degrade", (mode, on)),
    st.sampled_from(["default", "cheaper", "cheaper_fails", "cheaper_fails_default"]),
    st.sampled_from(["default", "Exception", "ValueError"]),
)
policy_specs = st.one_of(retry_specs, breaker_specs, timeout_specs, fallback_specs, hedge_specs, degrade_specs)


def untied(chain: list[Spec]) -> list[Spec]:
    """Two hedges (or timeouts) of one delay in a stack would fire at the same virtual instant, where which
    goes first is the event loop's choice, not a policy's: each one further in gets a few ms more. A breaker
    drawn twice is kept once: a pipeline refuses one breaker listed twice (test_policy_orders.py)."""
    once = [s for k, s in enumerate(chain)
            if s.kind != "breaker" or all(t.kind != "breaker" or t.opts[0] != s.opts[0] for t in chain[:k])]
    return [Spec(s.kind, (s.opts[0] + 0.011 * k, *s.opts[1:])) if s.kind in ("hedge", "timeout") else s
            for k, s in enumerate(once)]


chains = st.lists(policy_specs, min_size=1, max_size=4).map(untied)


async def _fallback_fn(behaviour: str, error: Exception) -> Any:
    if behaviour == "slow":
        await asyncio.sleep(1.0)
        return Val("fb-slow")
    if behaviour == "raise":
        raise OSError("fb")
    if behaviour == "base":
        raise Interrupt("fb")
    return Val("fb")


def fallback_of(behaviour: str) -> Callable[[Exception], Awaitable[Any]]:
    if behaviour == "sync":
        return lambda error: Val("fb-sync")  # type: ignore[return-value]
    return lambda error: _fallback_fn(behaviour, error)


async def _cheaper(fails: bool) -> Any:
    if fails:
        raise OSError("cheaper")
    return Val("cheap")


DEGRADE_ON: dict[str, Any] = {
    "default": (CircuitOpenError, TimeoutError), "Exception": Exception, "ValueError": (ValueError,),
}


def build(spec: Spec, breakers: dict[str, CircuitBreaker], tel: InMemoryTelemetry, breaker_hooks: list[Hook],
          /, **own: Any) -> Policy:
    """The library's policy for ``spec`` (a breaker is shared by name across the calls of a case);
    ``own``: name, hooks and providers of a policy called on its own."""
    o = spec.opts
    if spec.kind == "retry":
        return Retry(attempts=o[0], initial=o[1], jitter="none", on=RETRY_ON[o[2]], wait_retry_after=o[3],
                     budget_s=o[4], clock=vclock, **own)
    if spec.kind == "breaker":
        if o[0] not in breakers:
            breakers[o[0]] = CircuitBreaker(
                o[0], failure_threshold=o[1], reset_timeout=o[2], on=RETRY_ON[o[3]], clock=vclock,
                hooks=breaker_hooks, **tel.providers,
            )
        return breakers[o[0]]
    if spec.kind == "timeout":
        return Timeout(o[0], clock=vclock, **own)
    if spec.kind == "fallback":
        return Fallback(fallback_of(o[0]), on=HANDLE_ON[o[1]], clock=vclock, **own)
    if spec.kind == "hedge":
        return Hedge(o[0], attempts=o[1], clock=vclock, **own)
    mode, on = o
    kwargs: dict[str, Any] = {"on": DEGRADE_ON[on]}
    if mode in ("default", "cheaper_fails_default"):
        kwargs["default"] = Val("deg")
    if mode.startswith("cheaper"):
        fails = mode != "cheaper"
        kwargs["cheaper"] = lambda: _cheaper(fails)
    return Degrade(clock=vclock, **kwargs, **own)


# --------------------------------------------------------------------------- the reference model
class RefStats:
    def __init__(self) -> None:
        self.transitions: list[tuple[str, str, str]] = []
        self.fallbacks = 0
        self.degraded = 0
        self.timeouts = 0
        self.retries = 0


class RefBreaker:
    """The breaker as docs/architecture.md states it: count window, failure threshold, reset timeout, one
    probe; results of calls admitted before a transition are dropped."""

    def __init__(self, name: str, threshold: int, reset: float, on: Any, stats: RefStats) -> None:
        self.name, self.threshold, self.reset, self.on, self.stats = name, threshold, reset, on, stats
        self.state, self.gen, self.opened_at, self.probes = "closed", 0, 0.0, 0
        self.window: deque[bool] = deque(maxlen=100)

    def _to(self, state: str) -> None:
        self.stats.transitions.append((self.name, self.state, state))
        self.state = state
        self.gen += 1
        self.window.clear()
        if state == "open":
            self.opened_at = vclock()
        elif state == "half_open":
            self.probes = 1

    def admit(self) -> int:
        if self.state == "open":
            remaining = (self.opened_at + self.reset) - vclock()  # to the deadline, as the breaker measures it
            if remaining > 0:
                raise CircuitOpenError(self.name, "open", remaining)
            self._to("half_open")
        if self.state == "half_open":
            if self.probes <= 0:
                raise CircuitOpenError(self.name, "half_open", None)
            self.probes -= 1
        return self.gen

    def result(self, gen: int, error: BaseException | None) -> None:
        if gen != self.gen:
            return
        counted = (error is not None and isinstance(error, Exception) and isinstance(error, self.on)
                   and not isinstance(error, RefRefusedError))
        if error is None:
            if self.state == "closed":
                self.window.append(False)
            elif self.state == "half_open":
                self._to("closed")
        elif counted:
            if self.state == "half_open":
                self._to("open")
            elif self.state == "closed":
                self.window.append(True)
                if sum(self.window) >= self.threshold:
                    self._to("open")
        elif self.state == "half_open":
            self.probes += 1


def reason_of(error: BaseException) -> str:
    if isinstance(error, CircuitOpenError):
        return "breaker_open"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "failure"


class RefRefusedError(TypeError):
    """The model's error for a sync function where an async one belongs: no policy acts on it."""


async def ref_run(chain: list[Spec], i: int, fn: Callable[[], Any], refs: dict[str, RefBreaker],
                  stats: RefStats) -> Any:
    if i == len(chain):
        made = fn()
        if not inspect.isawaitable(made):
            raise RefRefusedError(made)
        return await made
    spec, o = chain[i], chain[i].opts

    def inner() -> Any:
        return ref_run(chain, i + 1, fn, refs, stats)

    if spec.kind == "retry":
        attempts, initial, on_name, wait_retry_after, budget = o
        on = RETRY_ON[on_name]
        types = on if isinstance(on, tuple) else (on,)
        open_ok = any(issubclass(t, CircuitOpenError) for t in types) or wait_retry_after
        start, attempt = vclock(), 1
        while True:
            try:
                return await inner()
            except Exception as exc:
                if isinstance(exc, RefRefusedError):
                    raise
                if isinstance(exc, CircuitOpenError) and not open_ok:
                    raise
                if not (isinstance(exc, CircuitOpenError) and wait_retry_after) and not isinstance(exc, types):
                    raise
                if attempt >= attempts:
                    raise
                wait = None
                if wait_retry_after and isinstance(exc, CircuitOpenError):
                    wait = exc.retry_after_s
                    if wait is not None:
                        wait = min(wait, 10.0)
                if wait is None:
                    wait = min(10.0, initial * 2.0 ** (attempt - 1))
                if budget is not None and vclock() - start + wait > budget:
                    raise
                stats.retries += 1
                await asyncio.sleep(wait)
                attempt += 1
    if spec.kind == "breaker":
        ref = refs[o[0]]
        gen = ref.admit()
        try:
            value = await inner()
        except BaseException as exc:
            ref.result(gen, exc)
            raise
        ref.result(gen, None)
        return value
    if spec.kind == "timeout":
        try:
            async with asyncio.timeout(o[0]) as scope:
                return await inner()
        except TimeoutError:
            if scope.expired():
                stats.timeouts += 1
            raise
    if spec.kind == "fallback":
        behaviour, on_name = o
        try:
            return await inner()
        except Exception as exc:
            if not isinstance(exc, HANDLE_ON[on_name]) or isinstance(exc, RefRefusedError):
                raise
            primary = exc
        stats.fallbacks += 1
        try:
            made = fallback_of(behaviour)(primary)
            if not hasattr(made, "__await__"):
                raise TypeError("fallback must be an async callable")
            return await made
        except Exception as exc:
            raise FallbackError("the primary and the fallback both failed", [primary, exc]) from None
    if spec.kind == "hedge":
        return await ref_hedge(o[0], o[1], inner)
    mode, on_name = o
    try:
        value = await inner()
    except Exception as exc:
        if not isinstance(exc, DEGRADE_ON[on_name]) or isinstance(exc, RefRefusedError):
            raise
        reason = reason_of(exc)
        if mode.startswith("cheaper"):
            try:
                cheap = await _cheaper(mode != "cheaper")
            except Exception:
                if mode != "cheaper_fails_default":
                    raise
            else:
                stats.degraded += 1
                return Served(cheap, True, "cheaper", reason, None, exc)
        if mode in ("default", "cheaper_fails_default"):
            stats.degraded += 1
            return Served(Val("deg"), True, "static", reason, None, exc)
        raise
    return Served(value)


async def ref_hedge(delay: float, attempts: int, inner: Callable[[], Any]) -> Any:
    """Up to ``attempts`` concurrent attempts, the next ``delay`` after the previous started or at once when
    one fails; the first success wins; all failed: the error of the last one to fail."""

    async def attempt() -> tuple[bool, Any]:
        try:
            return True, await inner()
        except Exception as exc:
            if isinstance(exc, RefRefusedError):
                raise
            return False, exc

    running: set[asyncio.Task[tuple[bool, Any]]] = {asyncio.create_task(attempt())}
    started, last_error = 1, None
    timer: asyncio.Task[None] | None = None
    try:
        while running:
            if timer is None and started < attempts:
                timer = asyncio.create_task(asyncio.sleep(delay))
            done, _ = await asyncio.wait({*running, *([timer] if timer else [])},
                                         return_when=asyncio.FIRST_COMPLETED)
            fired = timer in done
            if fired:
                timer = None
            failed = False
            for task in done:
                if task in running:
                    running.discard(task)
                    ok, value = cast("tuple[bool, Any]", task.result())
                    if ok:
                        return value
                    last_error, failed = value, True
            if started < attempts and (fired or failed):
                if timer is not None:
                    timer.cancel()
                    timer = None
                started += 1
                running.add(asyncio.create_task(attempt()))
        assert last_error is not None
        raise last_error
    finally:
        rest = [*running, *([timer] if timer else [])]
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.gather(*rest, return_exceptions=True)


# --------------------------------------------------------------------------- hooks
class Recorder(Hook):
    """Records breaker transitions and, per call, the events the policies report."""

    def __init__(self) -> None:
        self.transitions: list[tuple[str, str, str]] = []
        self.events: Counter[str] = Counter()

    def breaker_transition(self, event: BreakerTransition) -> None:
        self.transitions.append((event.breaker, event.from_state.value, event.to_state.value))

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return _RecordingObserver(self.events)


class _RecordingObserver(CallObserver):
    def __init__(self, events: Counter[str]) -> None:
        self.events = events

    def timed_out(self, event: Any) -> None:
        self.events["timed_out"] += 1

    def degraded(self, event: Any) -> None:
        self.events["degraded"] += 1

    def fallback_started(self, event: Any) -> Any:
        self.events["fallback"] += 1

    def retry_scheduled(self, event: Any) -> None:
        self.events["retry"] += 1


class Raising(Hook):
    """A buggy user hook: its observer raises RuntimeError from ``method`` (isolated by the library)."""

    def __init__(self, method: str) -> None:
        self.method = method

    def breaker_transition(self, event: BreakerTransition) -> None:
        if self.method == "breaker_transition":
            raise RuntimeError("hook bug")

    def call_started(self, event: CallStarted) -> CallObserver | None:
        if self.method == "call_started":
            raise RuntimeError("hook bug")
        observer = _Observer()

        def raising(*args: Any) -> None:
            raise RuntimeError("hook bug")

        setattr(observer, self.method, raising)
        return observer


class _Observer(CallObserver):
    """A plain observer with an instance ``__dict__``, so a test can replace one of its methods."""


RAISING_METHODS = ["call_started", "attempt_started", "attempt_finished", "call_finished", "retry_scheduled",
                   "fallback_started", "degraded", "rejected", "timed_out", "breaker_transition", "hedge_started"]


# --------------------------------------------------------------------------- canonical outcomes
def canon_value(value: Any) -> Any:
    if isinstance(value, Served):
        return ("served", canon_value(value.value), value.degraded, value.mode, value.reason,
                canon_error(value.error) if value.error is not None else None)
    if isinstance(value, Big):
        return ("big", value.label, len(value))
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def canon_error(error: BaseException) -> Any:
    if isinstance(error, FallbackError):
        return ("FallbackError", canon_error(error.primary), canon_error(error.fallback))
    if isinstance(error, CircuitOpenError):
        after = None if error.retry_after_s is None else round(error.retry_after_s, 6)
        return ("CircuitOpenError", error.breaker, error.state, after)
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, NotAwaitableError | RefRefusedError):  # a sync function refused: no policy acted on it
        return "refused"
    if isinstance(error, TypeError):  # the message of a sync function's value differs, the error does not
        return "TypeError"
    if type(error) is TimeoutError and (not error.args or _EXPIRED.search(str(error))):
        # a scope that expired: the model's asyncio.timeout raises it bare, the library names what timed out
        return ("TimeoutError", "expired")
    return (type(error).__name__, error.args)


_EXPIRED = re.compile(r"timed out after \S+ s \((Timeout policy|task_timeout)\)$")


def canon(outcome: tuple[str, Any]) -> Any:
    kind, what = outcome
    return (kind, canon_value(what) if kind == "ret" else canon_error(what))


# --------------------------------------------------------------------------- one case
@dataclass
class Case:
    chain: list[Spec]
    nest: int  # 0: Pipeline(*chain); k: Pipeline(Pipeline(*chain[:k]), *chain[k:]) (flattened)
    scripts: list[tuple[Act, ...]]
    gaps: list[float]
    raising: str | None
    cancel_at: float | None  # virtual time the caller is cancelled at
    cancel_iter: int | None  # or the number of loop iterations after which it is cancelled
    # pipeline: Pipeline(...).call; direct: a lone policy's own call(); bare: uninstrumented (the hot path);
    # decorator: @resilient(...) on the function
    entry: str = "pipeline"


cases = st.builds(
    Case,
    entry=st.sampled_from(["pipeline", "pipeline", "direct", "bare", "decorator"]),
    chain=chains,
    nest=st.integers(0, 3),
    scripts=st.lists(st.lists(acts, min_size=1, max_size=4).map(tuple), min_size=1, max_size=4),
    gaps=st.lists(st.sampled_from([0.0, 0.5, 6.0]), min_size=4, max_size=4),
    raising=st.one_of(st.none(), st.sampled_from(RAISING_METHODS)),
    cancel_at=st.one_of(st.none(), st.none(), st.sampled_from([0.017, 0.613, 1.417, 3.217, 7.7])),
    cancel_iter=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 12)),
)


@dataclass
class Run:
    outcomes: list[tuple[str, Any]] = field(default_factory=list)
    cancelled_caller: bool = False
    scripts: list[Script] = field(default_factory=list)
    end_time: float = 0.0


def _cancel_as_drawn(case: Case | WaveCase, task: asyncio.Task[Any]) -> tuple[list[bool], asyncio.Task[None] | None]:
    """Cancel ``task`` as the case draws it: at virtual time ``cancel_at`` and/or after ``cancel_iter`` loop
    iterations. Returns what each ``task.cancel()`` returned (filled as they happen) and the task counting the
    iterations, if any, for the caller to await once ``task`` is done."""
    requested: list[bool] = []

    def cancel() -> None:
        if not task.done():
            requested.append(task.cancel())

    if case.cancel_at is not None:
        asyncio.get_running_loop().call_later(case.cancel_at, cancel)
    helper = None
    if case.cancel_iter is not None:
        async def after_iterations(n: int) -> None:
            for _ in range(n):
                await asyncio.sleep(0)
            cancel()
        helper = asyncio.create_task(after_iterations(case.cancel_iter))
    return requested, helper


async def _drive(case: Case, call_one: Callable[[Script], Awaitable[Any]], run: Run) -> None:
    """Run the case's calls one after another (a breaker's state carries over), cancelling the caller as
    the case says; records each call's outcome."""

    async def calls() -> None:
        for k, script in enumerate(case.scripts):
            s = Script(f"c{k}", script)
            run.scripts.append(s)
            try:
                value = await call_one(s)
            except asyncio.CancelledError as exc:
                run.outcomes.append(("exc", exc))
                raise
            except BaseException as exc:
                run.outcomes.append(("exc", exc))
                if not isinstance(exc, Exception):
                    raise
            else:
                run.outcomes.append(("ret", value))
            await asyncio.sleep(case.gaps[k])

    task = asyncio.create_task(calls())
    loop = asyncio.get_running_loop()
    requested, helper = _cancel_as_drawn(case, task)
    try:
        await task
    except asyncio.CancelledError:  # the cancel below, or the user's own CancelledError: the user's outcome
        run.cancelled_caller = True
    except Interrupt:  # the user's BaseException ends the caller, as it would without the policies
        pass
    if helper is not None:
        await helper
    # Cancellation is an outcome, never turned into a result: a cancel that reached a running caller ends it.
    if requested and requested[0]:
        assert run.cancelled_caller, f"the caller was cancelled yet completed: {run.outcomes}"
    run.end_time = loop.time()
    # no hang: whatever ran stops within the drawn bounds (sleeps, backoffs, timeouts are all bounded)
    assert run.end_time < 1000.0


def _instrumented(raising: str | None) -> tuple[InMemoryTelemetry, OpenSpans, Recorder, list[Hook]]:
    """Fresh telemetry, the spans it leaves open, a Recorder, and the hooks to give the policies: the Recorder,
    then a hook raising ``raising`` if drawn."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    recorder = Recorder()
    hooks: list[Hook] = [recorder]
    if raising is not None:
        hooks.append(Raising(raising))
    return tel, spans, recorder, hooks


def run_library(case: Case) -> tuple[Run, InMemoryTelemetry, OpenSpans, Recorder, dict[str, CircuitBreaker]]:
    tel, spans, recorder, hooks = _instrumented(case.raising)
    run = Run()
    breakers: dict[str, CircuitBreaker] = {}

    async def main() -> None:
        if case.entry == "direct" and len(case.chain) == 1:
            own = {} if case.chain[0].kind == "breaker" else {"name": "op", "hooks": hooks, **tel.providers}
            policy = build(case.chain[0], breakers, tel, hooks, **own)
            await _drive(case, lambda s: policy.call(s), run)
            return
        if case.entry == "bare" and len(case.chain) == 1:
            if case.chain[0].kind == "breaker":  # the breaker's own fast path: no hook, no provider
                name, threshold, reset, on = case.chain[0].opts
                policy = breakers[name] = CircuitBreaker(name, failure_threshold=threshold, reset_timeout=reset,
                                                         on=RETRY_ON[on], clock=vclock, instrument=False)
            else:
                policy = build(case.chain[0], breakers, tel, hooks, instrument=False)
            await _drive(case, lambda s: policy.call(s), run)
            return
        policies = [build(s, breakers, tel, hooks) for s in case.chain]
        k = case.nest
        if 0 < k < len(policies):
            policies = [Pipeline(*policies[:k]), *policies[k:]]
        if case.entry == "bare":
            bare = Pipeline(*policies, instrument=False)
            await _drive(case, lambda s: bare.call(s), run)
            return
        pipeline = Pipeline(*policies, name="op", hooks=hooks, clock=vclock, **tel.providers)
        if case.entry == "decorator":
            await _drive(case, lambda s: pipeline(s)(), run)
            return
        await _drive(case, lambda s: pipeline.call(s), run)

    run_virtual(main())
    return run, tel, spans, recorder, breakers


def _ref_breakers(chain: list[Spec], stats: RefStats) -> dict[str, RefBreaker]:
    """The reference model's breakers of ``chain``, one per name (specs of one name share it), counting into
    ``stats``."""
    refs: dict[str, RefBreaker] = {}
    for spec in chain:
        if spec.kind == "breaker" and spec.opts[0] not in refs:
            name, threshold, reset, on = spec.opts
            refs[name] = RefBreaker(name, threshold, reset, RETRY_ON[on], stats)
    return refs


def run_reference(case: Case) -> tuple[Run, RefStats, dict[str, RefBreaker]]:
    stats = RefStats()
    run = Run()
    refs = _ref_breakers(case.chain, stats)

    async def main() -> None:
        await _drive(case, lambda s: ref_run(case.chain, 0, s, refs, stats), run)

    run_virtual(main())
    return run, stats, refs


def _count(tel: InMemoryTelemetry, name: str) -> int:
    return sum(point.count for point in tel.points(name))


def _check_breakers(tel: InMemoryTelemetry, recorder: Recorder, breakers: dict[str, CircuitBreaker]) -> None:
    """Every transition the hooks saw is counted, and each breaker's state gauge is 1 for its state, 0 for others."""
    assert metric_total(tel, "shannon.breaker.transitions") == len(recorder.transitions)
    for name, breaker in breakers.items():
        for state in ("closed", "open", "half_open"):
            expected = 1 if breaker.state.value == state else 0
            got = metric_total(tel, "shannon.breaker.state",
                               **{"shannon.breaker.name": name, "shannon.breaker.state": state})
            assert got == expected, (name, state, got, breaker.state)


def check_telemetry(case: Case, run: Run, tel: InMemoryTelemetry, spans: OpenSpans, recorder: Recorder,
                    breakers: dict[str, CircuitBreaker]) -> None:
    assert not spans.open, f"spans left open: {sorted(spans.open.values())}"
    finished = tel.spans()
    op_name = "op"
    if case.entry == "direct" and len(case.chain) == 1 and case.chain[0].kind == "breaker":
        op_name = case.chain[0].opts[0]
    if case.entry == "bare":
        assert not [s for s in finished if s.name == "op"]
        assert metric_total(tel, "shannon.breaker.transitions") == len(recorder.transitions)
        return
    ops = sorted((s for s in finished if s.name == op_name), key=lambda s: s.start_time or 0)
    assert len(ops) == len(run.outcomes) or (run.cancelled_caller and len(ops) == len(run.outcomes)), (
        len(ops), run.outcomes)
    has_breaker = any(s.kind == "breaker" for s in case.chain)
    by_parent: dict[int, list[Any]] = {}
    for s in finished:
        if s.parent is not None:
            by_parent.setdefault(s.parent.span_id, []).append(s)
    outcomes: Counter[str] = Counter()
    attempt_outcomes: Counter[str] = Counter()
    for op, (kind, what) in zip(ops, run.outcomes, strict=True):
        outcome = attrs(op)["shannon.call.outcome"]
        outcomes[outcome] += 1
        if kind == "ret":
            assert outcome == "success", (outcome, what)
        elif isinstance(what, asyncio.CancelledError):
            assert outcome == "cancellation", outcome
        elif isinstance(what, CircuitOpenError):
            assert outcome == "rejected", outcome
        else:
            assert outcome in (("failure", "ignored") if has_breaker else ("failure",)), (outcome, what)
        error = outcome in ("failure", "rejected", "ignored")  # an ignored error still reached the caller
        assert (op.status.status_code.name == "ERROR") == error, (outcome, op.status)
        children = by_parent.get(op.context.span_id, [])
        tries = [c for c in children if c.name.startswith(("attempt ", "hedge "))]
        assert attrs(op)["shannon.attempt"] == len(tries), (attrs(op), [c.name for c in children])
        for t in tries:
            a = attrs(t)["shannon.attempt.outcome"]
            attempt_outcomes[a] += 1
            assert (t.status.status_code.name == "ERROR") == (a in ("failure", "timeout")), (a, t.status)
    ended: Counter[str] = Counter(e for s in run.scripts for e in s.ended)
    assert attempt_outcomes["success"] == ended["ok"], (attempt_outcomes, ended)
    assert attempt_outcomes["failure"] == ended["raised"], (attempt_outcomes, ended)
    assert attempt_outcomes["cancellation"] + attempt_outcomes["timeout"] == ended["cancelled"], (
        attempt_outcomes, ended)
    # metrics equal what the spans show
    for outcome, n in outcomes.items():
        assert metric_total(tel, "shannon.calls", **{"shannon.call.outcome": outcome}) == n, outcome
    assert sum(p.value for p in tel.points("shannon.calls")) == len(ops)
    assert _count(tel, "shannon.retry.attempts") == len(ops)
    assert metric_total(tel, "shannon.retry.attempts") == sum(attempt_outcomes.values())
    hedges = [s for s in finished if s.name.startswith("hedge ")]
    assert metric_total(tel, "shannon.hedges") == len(hedges)
    fallbacks = [s for s in finished if s.name == f"fallback {op_name}"]
    assert metric_total(tel, "shannon.fallbacks") == len(fallbacks) == recorder.events["fallback"]
    events = [e for op in ops for e in op.events]
    assert _count(tel, "shannon.retry.delay") == sum(e.name == "shannon.retry.scheduled" for e in events)
    assert metric_total(tel, "shannon.degradations") == sum(e.name == "shannon.degraded" for e in events)
    assert metric_total(tel, "shannon.timeouts") == recorder.events["timed_out"]
    _check_breakers(tel, recorder, breakers)


@examples(40)
@given(case=cases)
def test_random_policy_stacks_agree_with_the_reference_model_and_their_own_telemetry(case: Case) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run, tel, spans, recorder, breakers = run_library(case)
        ref, stats, refs = run_reference(case)
        gc.collect()
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not unawaited, unawaited
    check_telemetry(case, run, tel, spans, recorder, breakers)
    if case.cancel_iter is not None:
        return  # cancelled after k loop iterations: a point the two implementations reach differently
    assert [canon(o) for o in run.outcomes] == [canon(o) for o in ref.outcomes]
    assert run.cancelled_caller == ref.cancelled_caller
    assert run.end_time == ref.end_time
    assert [s.calls for s in run.scripts] == [s.calls for s in ref.scripts]
    for name, breaker in breakers.items():
        assert breaker.state.value == refs[name].state
    lone_bare_breaker = case.entry == "bare" and len(case.chain) == 1 and case.chain[0].kind == "breaker"
    if not lone_bare_breaker:  # that breaker has no hook: its state says where it went
        assert recorder.transitions == stats.transitions
    if case.entry == "bare":
        return  # no hook watches the calls
    assert recorder.events["fallback"] == stats.fallbacks
    assert recorder.events["degraded"] == stats.degraded
    assert recorder.events["timed_out"] == stats.timeouts
    assert recorder.events["retry"] == stats.retries


# --------------------------------------------------------------------------- inside a wave
@dataclass
class WaveCase:
    chain: list[Spec]  # empty: no policy
    scripts: list[tuple[Act, ...]]
    concurrency: int | None
    task_timeout: float | None
    fail_fast: bool
    raising: str | None
    cancel_at: float | None
    cancel_iter: int | None
    rate_limit: float | None = None
    lone: bool = False  # a chain of one policy given as the wave's policy itself, not in a Pipeline


wave_cases = st.builds(
    WaveCase,
    rate_limit=st.sampled_from([None, None, 0.7, 3.0]),
    lone=st.booleans(),
    chain=st.lists(policy_specs, min_size=0, max_size=3).map(untied),
    scripts=st.lists(st.lists(acts, min_size=1, max_size=3).map(tuple), min_size=1, max_size=5),
    concurrency=st.sampled_from([1, 1, 2, None]),
    task_timeout=st.sampled_from([None, 0.9, 2.5, 5.2]),
    fail_fast=st.booleans(),
    raising=st.one_of(st.none(), st.sampled_from(RAISING_METHODS)),
    cancel_at=st.one_of(st.none(), st.none(), st.sampled_from([0.017, 0.613, 1.417, 3.217, 7.7])),
    cancel_iter=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 12)),
)


@dataclass
class WaveRunResult:
    results: list[tuple[str, Any]] | None = None  # (outcome, canonical value or error) per task
    raised: BaseException | None = None
    scripts: list[Script] = field(default_factory=list)
    end_time: float = 0.0


async def _drive_wave(case: WaveCase, run_wave: Callable[[], Coroutine[Any, Any, Any]], out: WaveRunResult) -> None:
    task = asyncio.create_task(run_wave())
    loop = asyncio.get_running_loop()
    requested, helper = _cancel_as_drawn(case, task)
    try:
        out.results = await task
    except BaseException as exc:
        if isinstance(exc, BaseExceptionGroup):  # the wave's TaskGroup: a task's Interrupt, as documented
            if not all(isinstance(e, Interrupt) for e in exc.exceptions):
                raise
            exc = exc.exceptions[0]
        if not isinstance(exc, asyncio.CancelledError | Interrupt):
            raise
        out.raised = exc
    if helper is not None:
        await helper
    if requested and requested[0]:
        assert isinstance(out.raised, asyncio.CancelledError | Interrupt), (
            f"the wave's caller was cancelled yet the wave returned {out.results}")
    out.end_time = loop.time()
    assert out.end_time < 1000.0


def _task_outcome(result: Any) -> tuple[str, Any]:
    outcome = result.outcome.value
    if outcome == "success":
        return outcome, canon_value(result.value)
    if result.error is not None:
        return outcome, canon_error(result.error)
    return outcome, None


def run_wave_library(case: WaveCase) -> tuple[WaveRunResult, InMemoryTelemetry, OpenSpans, Recorder,
                                                dict[str, CircuitBreaker]]:
    from shannon_otel import Wave

    tel, spans, recorder, hooks = _instrumented(case.raising)
    out = WaveRunResult()
    breakers: dict[str, CircuitBreaker] = {}

    async def main() -> None:
        policy: Any = None
        if len(case.chain) == 1 and case.lone:  # a lone policy reports to the wave's providers, as "<kind>"
            policy = build(case.chain[0], breakers, tel, hooks)
        elif case.chain:
            policy = Pipeline(*[build(s, breakers, tel, hooks) for s in case.chain], name="op", hooks=hooks,
                              clock=vclock)
        wave: Wave[Any] = Wave("w", max_concurrency=case.concurrency, task_timeout=case.task_timeout,
                               fail_fast=case.fail_fast, policy=policy, rate_limit=case.rate_limit, clock=vclock,
                               **tel.providers)
        out.scripts = [Script(f"t{k}", s) for k, s in enumerate(case.scripts)]

        async def run_wave() -> list[tuple[str, Any]]:
            result = await wave.run(out.scripts)
            return [_task_outcome(r) for r in result.results]

        await _drive_wave(case, run_wave, out)

    run_virtual(main())
    return out, tel, spans, recorder, breakers


def run_wave_reference(case: WaveCase) -> tuple[WaveRunResult, RefStats, dict[str, RefBreaker]]:
    """One task at a time (max_concurrency=1): each under the task timeout; fail-fast starts no more."""
    stats = RefStats()
    refs = _ref_breakers(case.chain, stats)
    out = WaveRunResult()

    async def one(script: Script) -> Any:
        if case.chain:
            return await ref_run(case.chain, 0, script, refs, stats)
        return await script()

    async def run_wave() -> list[tuple[str, Any]]:
        results: list[tuple[str, Any]] = []
        stopped = False
        tat = vclock()  # the rate limit: one start per 1/rate seconds
        for script in out.scripts:
            if stopped:
                results.append(("cancellation", None))
                continue
            if case.rate_limit is not None:
                now = vclock()
                start, tat = max(tat, now), max(tat, now) + 1.0 / case.rate_limit
                if start > now:
                    await asyncio.sleep(start - now)
            try:
                if case.task_timeout is not None:
                    async with asyncio.timeout(case.task_timeout):
                        value = await one(script)
                else:
                    value = await one(script)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                results.append(("cancellation", None))
            except TimeoutError as exc:
                results.append(("timeout", canon_error(exc)))
            except Exception as exc:
                results.append(("failure", canon_error(exc)))
            else:
                results.append(("success", canon_value(value)))
            stopped = case.fail_fast and results[-1][0] in ("failure", "timeout")
        return results

    async def main() -> None:
        out.scripts = [Script(f"t{k}", s) for k, s in enumerate(case.scripts)]
        await _drive_wave(case, run_wave, out)

    run_virtual(main())
    return out, stats, refs


def check_wave_telemetry(case: WaveCase, out: WaveRunResult, tel: InMemoryTelemetry, spans: OpenSpans,
                         recorder: Recorder, breakers: dict[str, CircuitBreaker]) -> None:
    assert not spans.open, f"spans left open: {sorted(spans.open.values())}"
    finished = tel.spans()
    waves = [s for s in finished if s.name == "wave w"]
    assert len(waves) == 1
    wave = waves[0]
    tasks = [s for s in finished if s.name == "task w"]
    task_outcomes = Counter(attrs(s)["shannon.task.outcome"] for s in tasks)
    for s in tasks:
        outcome = attrs(s)["shannon.task.outcome"]
        assert (s.status.status_code.name == "ERROR") == (outcome in ("failure", "timeout")), (outcome, s.status)
    # the wave span's counts and the outcome metric agree with the task spans and the results
    counted = {o: attrs(wave).get(f"shannon.wave.tasks.{o}", 0)
               for o in ("success", "failure", "timeout", "cancellation")}
    if out.results is not None:
        assert Counter(o for o, _ in out.results) == Counter({k: v for k, v in counted.items() if v}), (
            out.results, counted)
    for outcome in ("success", "failure", "timeout", "cancellation"):
        metric = metric_total(tel, "shannon.task.outcomes", **{"shannon.task.outcome": outcome})
        assert metric == counted[outcome], (outcome, metric, counted)
    assert sum(counted.values()) == len(case.scripts)
    started = {o: n for o, n in counted.items() if o != "cancellation"}
    assert all(task_outcomes[o] == n for o, n in started.items()), (task_outcomes, counted)
    # every task that ran a policy has one operation span, whose outcome agrees with the task's
    by_parent: dict[int, list[Any]] = {}
    for s in finished:
        if s.parent is not None:
            by_parent.setdefault(s.parent.span_id, []).append(s)
    op_name = "op"
    if len(case.chain) == 1 and case.lone:
        spec = case.chain[0]
        op_name = spec.opts[0] if spec.kind == "breaker" else spec.kind
    ops = [s for s in finished if s.name == op_name]
    attempt_outcomes: Counter[str] = Counter()
    for task_span in tasks:
        children = [c for c in by_parent.get(task_span.context.span_id, []) if c.name == op_name]
        task_outcome = attrs(task_span)["shannon.task.outcome"]
        if not case.chain:
            assert not children
            continue
        assert len(children) <= 1
        if not children:
            continue
        op = children[0]
        call = attrs(op)["shannon.call.outcome"]
        allowed = {
            "success": {"success"},
            "failure": {"failure", "ignored", "rejected"},
            "timeout": {"failure", "ignored", "cancellation"},
            "cancellation": {"cancellation", "failure"},
        }[task_outcome]
        assert call in allowed, (task_outcome, call, attrs(op))
        failed = call in ("failure", "rejected", "ignored")
        assert (op.status.status_code.name == "ERROR") == failed, (call, op.status)
        tries = [c for c in by_parent.get(op.context.span_id, []) if c.name.startswith(("attempt ", "hedge "))]
        assert attrs(op)["shannon.attempt"] == len(tries)
        for t in tries:
            a = attrs(t)["shannon.attempt.outcome"]
            attempt_outcomes[a] += 1
            assert (t.status.status_code.name == "ERROR") == (a in ("failure", "timeout")), (a, t.status)
    ended: Counter[str] = Counter(e for s in out.scripts for e in s.ended)
    if case.chain:
        assert attempt_outcomes["success"] == ended["ok"], (attempt_outcomes, ended)
        assert attempt_outcomes["failure"] == ended["raised"], (attempt_outcomes, ended)
        assert attempt_outcomes["cancellation"] + attempt_outcomes["timeout"] == ended["cancelled"], (
            attempt_outcomes, ended)
        calls = Counter(attrs(op)["shannon.call.outcome"] for op in ops)
        for outcome, n in calls.items():
            assert metric_total(tel, "shannon.calls", **{"shannon.call.outcome": outcome}) == n, outcome
        assert _count(tel, "shannon.retry.attempts") == len(ops)
        assert metric_total(tel, "shannon.retry.attempts") == sum(attempt_outcomes.values())
    _check_breakers(tel, recorder, breakers)
    if out.raised is not None or out.results is None:
        assert attrs(wave).get("shannon.task.outcome") in ("cancellation", "failure"), attrs(wave)


@examples(25)
@given(case=wave_cases)
def test_random_policy_stacks_in_random_waves_keep_results_spans_and_metrics_consistent(case: WaveCase) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, tel, spans, recorder, breakers = run_wave_library(case)
        gc.collect()
    unawaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not unawaited, unawaited
    check_wave_telemetry(case, out, tel, spans, recorder, breakers)
    if case.concurrency != 1 or case.cancel_iter is not None:
        return  # tasks interleave (or the cancel lands at a loop iteration): no one sequential answer
    ref, stats, _refs = run_wave_reference(case)
    assert out.results == ref.results
    assert type(out.raised) is type(ref.raised)
    assert out.end_time == ref.end_time
    assert [s.calls for s in out.scripts] == [s.calls for s in ref.scripts]
    assert recorder.transitions == stats.transitions


# --------------------------------------------------------------------------- sagas of protected steps
@dataclass
class SagaCase:
    chain: list[Spec]  # the policies each step's action runs through (empty: none)
    steps: list[tuple[tuple[Act, ...], str]]  # (the action's script, its compensation's behaviour)
    compensation_timeout: float | None
    cancel_at: float | None


COMPENSATIONS = ["ok", "ok", "none", "raise", "slow", "base", "sync", "selfcancel"]

saga_cases = st.builds(
    SagaCase,
    chain=st.lists(policy_specs.filter(lambda s: s.kind != "degrade"), min_size=0, max_size=2).map(untied),
    steps=st.lists(st.tuples(st.lists(acts, min_size=1, max_size=2).map(tuple), st.sampled_from(COMPENSATIONS)),
                   min_size=1, max_size=4),
    compensation_timeout=st.sampled_from([None, 1.0, 30.0]),
    cancel_at=st.one_of(st.none(), st.sampled_from([0.017, 0.613, 1.417, 2.5, 3.217, 7.7])),
)


def compensation_of(behaviour: str, log: list[str], name: str) -> Callable[[Any], Awaitable[Any]] | None:
    if behaviour == "none":
        return None
    if behaviour == "sync":
        def sync(value: Any) -> Any:
            log.append(name)
            return "not awaitable"
        return sync

    async def compensate(value: Any) -> None:
        log.append(name)
        if behaviour == "slow":
            await asyncio.sleep(2.0)
        elif behaviour == "raise":
            raise OSError(f"undo {name}")
        elif behaviour == "base":
            raise Interrupt(f"undo {name}")
        elif behaviour == "selfcancel":
            raise asyncio.CancelledError(f"undo {name}")
    return compensate


@examples(25)
@given(case=saga_cases)
def test_sagas_of_protected_steps_roll_back_exactly_what_completed_and_say_so(case: SagaCase) -> None:
    from shannon_otel import Saga, SagaError

    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    compensated_log: list[str] = []
    scripts = [Script(f"s{k}", acts_) for k, (acts_, _) in enumerate(case.steps)]
    state: dict[str, Any] = {}

    async def main() -> None:
        breakers: dict[str, CircuitBreaker] = {}
        pipeline = (Pipeline(*[build(s, breakers, tel, []) for s in case.chain], name="op", clock=vclock,
                             **tel.providers) if case.chain else None)
        saga = Saga("order", compensation_timeout_s=case.compensation_timeout, clock=vclock, **tel.providers)
        completed: list[str] = []
        state["completed"] = completed

        async def body() -> Any:
            async with saga.begin() as tx:
                state["tx"] = tx
                for k, (script, (_, behaviour)) in enumerate(zip(scripts, case.steps, strict=True)):
                    name = f"step{k}"
                    action: Callable[[], Awaitable[Any]] = (
                        functools.partial(pipeline.call, script) if pipeline is not None else script)
                    try:
                        await tx.step(name, action, compensate=compensation_of(behaviour, compensated_log, name))
                    except NotAwaitableError:
                        if pipeline is None:  # a sync action has run, then is refused: its step is in effect
                            completed.append(name)
                        raise
                    completed.append(name)
            return tx.result

        task = asyncio.create_task(body())
        requested: list[bool] = []
        if case.cancel_at is not None:
            asyncio.get_running_loop().call_later(
                case.cancel_at, lambda: None if task.done() else requested.append(task.cancel()))
        try:
            state["result"] = await task
        except BaseException as exc:
            state["raised"] = exc
        state["requested"] = bool(requested and requested[0])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_virtual(main())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert not spans.open, f"spans left open: {sorted(spans.open.values())}"
    tx = state["tx"]
    result = tx.result
    assert result is not None, "every saga that began has a result"
    completed = state["completed"]
    raised = state.get("raised")
    # What completed is what the result says completed (a step whose action returned is in effect).
    assert list(result.completed) == completed
    with_compensation = [f"step{k}" for k, (_, b) in enumerate(case.steps) if b != "none"]
    if raised is None:
        assert result.outcome.value == "success"
        assert compensated_log == []
        assert not state["requested"], "a cancelled saga returned a result"
    else:
        # every completed step with a compensation was rolled back once, newest first
        expected = [n for n in reversed(completed) if n in with_compensation]
        assert compensated_log == expected, (compensated_log, expected)
        assert list(result.compensated) + list(result.failed_compensations) != [] or not expected
        assert sorted([*result.compensated, *result.failed_compensations]) == sorted(expected)
        if state["requested"] and not isinstance(raised, Interrupt):
            assert isinstance(raised, asyncio.CancelledError), f"a cancelled saga raised {raised!r}"
        if isinstance(raised, SagaError):
            assert raised.__cause__ is result.error
            assert isinstance(result.error, Exception)
    # telemetry: the saga span's outcome is the result's; one compensate span per compensation run,
    # counted by outcome in shannon.compensations
    finished = tel.spans()
    saga_span = [s for s in finished if s.name == "saga order"]
    assert len(saga_span) == 1
    assert attrs(saga_span[0])["shannon.saga.outcome"] == result.outcome.value
    comps = [s for s in finished if s.name.startswith("compensate ")]
    assert len(comps) == len(compensated_log)
    by_outcome = Counter(attrs(s)["shannon.compensation.outcome"] for s in comps)
    for outcome, n in by_outcome.items():
        assert metric_total(tel, "shannon.compensations", **{"shannon.compensation.outcome": outcome}) == n
    assert by_outcome["success"] == len(result.compensated)
    failed_statuses = [s for s in comps if s.status.status_code.name == "ERROR"]
    assert len(failed_statuses) == by_outcome["failure"] + by_outcome["timeout"]  # a cancelled one: UNSET
    assert sum(by_outcome.values()) - by_outcome["success"] == len(result.failed_compensations)
    if result.failed_compensations:
        assert saga_span[0].status.status_code.name == "ERROR"
    steps = [s for s in finished if s.name.startswith("step ")]
    assert len(steps) >= len(completed)
