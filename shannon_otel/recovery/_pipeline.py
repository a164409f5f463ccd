"""Composition: ``Pipeline(outer, ..., inner)`` / ``@resilient(...)``, the first policy outermost.

Ordering semantics: ``Pipeline(a, b, c).call(fn)`` behaves like ``a(b(c(fn)))``: each policy sees
the outcome of everything listed after it. The usual order is::

    Pipeline(Degrade(...) or Fallback(...), Timeout(total), Retry(...), breaker, Timeout(per_attempt))

- a fallback/degradation outermost catches what is left after every retry (and a rejection);
- a timeout outside the retry bounds the whole call, backoff included; inside it, each attempt;
- a breaker inside the retry sees (and counts) every attempt; its rejection is not retried unless
  the retry asks (``on=`` listing CircuitOpenError, or ``wait_retry_after=True``); outside the
  retry it counts one result per call;
- a hedge whose attempts all failed raises the last attempt's error, which outer policies match;
- the attempt (and its span) is the innermost call of ``fn``; a hedge inside a retry hedges each attempt.
- an order whose outer retry or breaker can never act, or only when the fallback fails too (a fallback
  inside it serves every error it handles) warns at construction (``_order.py``) and runs as written.

The pipeline is one observed operation: one span named after it, one child span per attempt;
the inner policies report to the pipeline's hooks. So it refuses, at construction (TypeError), an
inner policy given ``name=``, ``hooks=``, ``tracer_provider=`` or ``meter_provider=``: those
would be silently unused (``instrument=False`` asks for nothing and is allowed), and honouring
them would mean one span and one set of observers per policy per call, on a hot path budgeted at
0.8 us. Put them on the pipeline. A breaker is the exception: its name is its identity (``shannon.breaker.name``) and it
reports its transitions to its own hooks and providers, inside a pipeline too.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .. import _clock
from .._events import CallStarted
from .._hooks import check_hooks, resolve_hooks
from .._validate import check_spread, check_sync_callable, check_telemetry_name, empty_or_not_str, plain, shown
from ._breaker import CircuitBreaker
from ._call import _Call, first_failed, observed, start_call
from ._decorated import DecoratedCall, not_a_factory
from ._order import warn_dead_policies
from ._policy import Policy, Scoped, scoped
from ._timeout import Timeout
from ._types import Chain, Clock, Factory

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook

T = TypeVar("T")
P = ParamSpec("P")


class Pipeline(Policy):
    """Policies stacked outermost first; usable per task by the executor (``call(fn)``) and as a decorator."""

    __slots__ = ("_chain", "_clock", "_given", "_hooks", "_name", "_options", "_started")

    def __init__(
        self, *policies: Policy, name: str | None = None, clock: Clock = _clock.monotonic,
        hooks: Iterable[Hook] | None = None, tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None, instrument: bool = True,
    ) -> None:
        if not policies:
            raise ValueError("Pipeline needs at least one policy")
        check_spread("Pipeline", "policies", policies)
        for p in policies:
            if not isinstance(p, Policy):
                raise TypeError(
                    f"Pipeline takes policies (Retry, CircuitBreaker, Timeout, ...), got {shown(p)}{_hint(p)}")
            if type(p).run is Policy.run:  # a policy of the user's overriding call() alone: a bare NotImplementedError
                raise TypeError(
                    f"Pipeline takes the library's policies (Retry, CircuitBreaker, Timeout, ...), got {shown(p)}, "
                    f"whose class does not implement the step a Pipeline runs: apply it outside the pipeline, "
                    f"{type(p).__name__}(...)(pipeline(fn)) or a Wave's policy="
                )
            unused = p._unused_in_pipeline()
            if unused:
                given = ", ".join(f"{u}=" for u in unused)
                raise TypeError(
                    f"{type(p).__name__}({given}...) inside a Pipeline: the pipeline is one observed "
                    f"operation and would not use {given} of the policies inside it; pass "
                    f"{given} to the Pipeline (or resilient) instead"
                )
        if name is not None and (not isinstance(name, str) or not name):
            raise empty_or_not_str(name)(f"name must be a non-empty str or None, got {name!r}")
        check_telemetry_name("name", name)
        name = None if name is None else plain(name)
        check_sync_callable("clock", clock, "a callable returning seconds", takes=0)
        clock = _clock.seconds(clock)
        # A nested pipeline is flattened: it is the same as listing its policies in its place.
        chain: list[Policy] = []
        for p in policies:
            chain.extend(p._given if isinstance(p, Pipeline) else (p,))
        self._given: Chain = tuple(chain)  # as the user listed them
        _refuse_a_breaker_twice(self._given)
        warn_dead_policies(self._given)
        # What runs: each Timeout named after the pipeline, so its TimeoutError names the operation whether or
        # not a hook observes the call (it did only when one did: telemetry changed the user's error). A
        # Timeout holds no state, so running a named copy changes nothing else; built once, here.
        self._chain: Chain = _timeouts_named(self._given, name)
        self._name = name
        self._clock = clock
        hooks = check_hooks(hooks)
        self._options: dict[str, Any] = {
            "clock": clock, "hooks": hooks, "tracer_provider": tracer_provider,
            "meter_provider": meter_provider, "instrument": instrument,
        }
        self._hooks = resolve_hooks(hooks, tracer_provider, meter_provider, instrument=instrument)
        self._started = CallStarted(name or "pipeline", "pipeline")

    @property
    def policies(self) -> Chain:
        """The policies as given, outermost first."""
        return self._given

    # Read-only, as every policy is: the name is built into the call's events and its Timeouts' messages.
    @property
    def name(self) -> str | None:
        """The operation name of the pipeline's calls (read-only)."""
        return self._name

    @property
    def clock(self) -> Clock:
        """The clock its durations are read from (read-only)."""
        return self._clock

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self._given))}, name={self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled and deep-copied from its arguments, as every policy is (see _hooks.rebuilt): its resolved OTel hook
        # holds locks, and pickle.dumps / copy.deepcopy of a Pipeline (or of a Wave whose policy= is one) raised
        # "cannot pickle '_thread.lock' object", naming nothing.
        return (_rebuilt, (self._given, self._name, self._options))

    def __copy__(self) -> Pipeline:  # a shallow copy holds the same parts; never built again (see _named)
        twin = object.__new__(type(self))
        for slot in Pipeline.__slots__:
            setattr(twin, slot, getattr(self, slot))
        return twin

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if args or kwargs:
            fn = DecoratedCall(fn, *args, **kwargs)
        elif not callable(fn):  # refused before an inner policy retries it, falls back or counts it
            raise not_a_factory(fn)
        chain = self._chain
        hooks = self._hooks
        if hooks:
            try:
                first = hooks[0].call_started(self._started)
            except Exception as exc:
                first = first_failed(hooks, exc)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, self._started, self._clock, first)
                if call is not None:
                    return await observed(self, chain, 0, fn, call)
        return await chain[0].run(chain, 1, fn, None)

    def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> Awaitable[T]:
        # Only reached through ``observed`` with this pipeline's own chain (nesting is flattened).
        return chain[0].run(chain, 1, fn, call)

    def _named(self, name: str) -> Policy:
        if self.name is not None:
            return self
        # A copy, not Pipeline(...) again: that checked the order again, and an order that warns warned twice, the
        # second time at the decorator's line (raised under -W error where the user had let the first one pass).
        named = copy.copy(self)
        named._name = name
        named._chain = _timeouts_named(self._given, name)
        named._started = CallStarted(name, "pipeline")
        return named

    def _reporting_to(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> Policy | Scoped:
        o = self._options
        return scoped(self, self._chain, o["hooks"], (o["tracer_provider"], o["meter_provider"]),
                      (tracer_provider, meter_provider), instrument=o["instrument"])

    def _unused_in_pipeline(self) -> tuple[str, ...]:
        # A nested pipeline is flattened into the outer one: its own settings would go unused too.
        o = self._options
        unused = {
            "name": self.name is not None, "hooks": bool(o["hooks"]),
            "tracer_provider": o["tracer_provider"] is not None,
            "meter_provider": o["meter_provider"] is not None,
        }
        return tuple(k for k, v in unused.items() if v)

    def _keyed_by_arguments(self, func: Callable[..., Any]) -> bool:
        keyed = False
        for p in self._given:  # every policy checks: a keyed one must not hide an unkeyed one after it
            keyed = p._keyed_by_arguments(func) or keyed
        return keyed


def _rebuilt(given: Chain, name: str | None, options: dict[str, Any]) -> Pipeline:
    return Pipeline(*given, name=name, **options)


def _timeouts_named(chain: Chain, name: str | None) -> Chain:
    """``chain`` as a pipeline named ``name`` runs it: each Timeout named after the pipeline (see ``__init__``)."""
    if name is None:
        return chain
    return tuple(replace(p, name=name) if isinstance(p, Timeout) else p for p in chain)


def _hint(given: object) -> str:
    """What to say of ``given``, passed to ``Pipeline`` / ``resilient`` where a policy belongs: a policy class
    (``resilient(Retry)``), or the function a bare ``@resilient`` decorates."""
    if isinstance(given, type) and issubclass(given, Policy):
        return f": create one, {given.__name__}(...)"
    if callable(given):
        return (": as a decorator, give it the policies first, @resilient(Retry(), ...), "
                "then it decorates the function")
    return ""


def _refuse_a_breaker_twice(chain: Chain) -> None:
    """TypeError naming ``policies`` for one breaker object listed twice (nested pipelines flattened).

    It would record each call twice in one window, and once open it never closed again: half-open, the outer
    place admits the one probe, the inner place rejects it (no probe left), and the outer place counts that
    rejection as the probe's failure, so it opens again, every reset timeout, however healthy the service.
    """
    where: dict[int, int] = {}
    for k, p in enumerate(chain, 1):
        if isinstance(p, CircuitBreaker):
            first = where.setdefault(id(p), k)
            if first != k:
                raise TypeError(
                    f"policies: CircuitBreaker {p.name!r} is listed twice (policies {first} and {k} of the "
                    "pipeline): half-open, its inner place rejects the probe its outer place admitted, and it "
                    "never closes again. List it once: outside the Retry to count one result per call, inside "
                    "it to count every attempt"
                )


def resilient(
    *policies: Policy, name: str | None = None, clock: Clock = _clock.monotonic, hooks: Iterable[Hook] | None = None,
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None, instrument: bool = True,
) -> Pipeline:
    """Decorator form of :class:`Pipeline`: ``@resilient(Timeout(5), Retry(attempts=3), breaker)``.

    The decorated function keeps its parameters' types; its result type is the function's own, which
    a ``Fallback`` or ``Degrade`` inside changes at run time (``typing.cast`` such results: an annotation of the
    other type is refused by the type checker)."""
    return Pipeline(
        *policies, name=name, clock=clock, hooks=hooks, tracer_provider=tracer_provider,
        meter_provider=meter_provider, instrument=instrument,
    )
