"""Compensating transactions: steps with compensations, rolled back in reverse order on failure.

``async with saga.begin() as tx: await tx.step("reserve", reserve, compensate=release)``; or
``await saga.run(Step(...), ...)``. On an error or cancellation inside the block, the compensations
of the completed steps run newest first; each failing compensation is recorded and the rest still
run. Then an error is raised as :class:`SagaError` (``__cause__`` = the step's error, ``.result``
says what was rolled back) and a cancellation is re-raised unchanged (``tx.result`` is still set). A sync
function given as an action has run when its value is found not awaitable: its step is completed (and
compensated), and its ``TypeError`` is raised as it is, as through every policy, not as a ``SagaError``; so
is a sync compensation's, once the rollback has ended (its step is left listed in effect: nothing tells what it undid).

Compensations are shielded from cancellation: each runs in its own task, bounded by the saga's
``compensation_timeout_s``, and a cancellation arriving meanwhile waits for it (then for the rest of
the rollback) and is re-raised after. A compensation that fails, times out or is cancelled itself
leaves its step in effect: it is in ``SagaResult.uncompensated``, the logging hook (on by default)
logs it at ERROR (``shannon.saga.compensation_failed``), and the saga span's status is ERROR. A saga
left pending when its event loop was closed, closed later by the garbage collector (while no loop runs, or
another one), can run no compensation: each fails with a RuntimeError saying so, and the saga still ends (its
spans, its result) as a failure.

Steps may run concurrently inside the block (a gather, a ``TaskGroup``, tasks awaited in it); one still running in
another task when the block ends is cancelled and waited for first, so no step completes after its saga ended (one
completing all the same is compensated like any other). The block failed (a gathered step's sibling): its error goes
on. The block ended normally (a ``create_task(tx.step(...))`` never awaited): the block fails with a ``MisuseError``
(a TypeError) naming the step cut off, raised as it is after the rollback of the completed steps; a success would hide
a step cut off midway. Waiting for it, as a ``TaskGroup`` does, could hang the block on a step the user forgot.
One never started when the block ends (``tx.step(...)`` without ``await``, or in a task not yet run) never
runs: the block fails with a ``MisuseError`` (a TypeError) naming ``tx.step()`` and the step, raised as it is
after the rollback of the steps that ran (see ``Transaction.step``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._hooks import check_hooks, rebuilt, resolve_hooks
from .._validate import (
    builtin_numbers,
    check_number,
    check_spread,
    check_sync_callable,
    check_telemetry_name,
    empty_or_not_str,
    plain,
    shown,
)
from ._saga_types import SagaResult, Step
from ._transaction import Transaction
from ._types import Clock

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook


@dataclass(frozen=True, slots=True)
class Saga:
    """A named kind of compensating transaction; each :meth:`begin` is a fresh, independent run.

    ``compensation_timeout_s``: how long each compensation may run (> 0, default 30 s; ``None``: no
    bound). Compensations are shielded from cancellation, so this is what bounds a rollback (cooperatively, as
    any asyncio timeout: a compensation that catches its ``CancelledError`` and goes on holds the rollback until
    it ends, and counts as compensated if it then returns).

    ``clock``: times the compensations; read as each run begins (TypeError/ValueError naming it unless
    it reads finite seconds, before any step runs). One that fails during a rollback (raises, NaN, an infinity)
    neither stops it nor replaces what the saga raises: the durations it could not time are 0 and its error is
    logged (``shannon_otel`` logger, warning).
    """

    name: str
    compensation_timeout_s: float | None = field(default=30.0, kw_only=True)
    clock: Clock = field(default=_clock.monotonic, kw_only=True)
    hooks: Iterable[Hook] | None = field(default=None, repr=False, compare=False, kw_only=True)
    tracer_provider: TracerProvider | None = field(default=None, repr=False, compare=False, kw_only=True)
    meter_provider: MeterProvider | None = field(default=None, repr=False, compare=False, kw_only=True)
    instrument: bool = field(default=True, repr=False, kw_only=True)
    _hooks: tuple[Hook, ...] = field(init=False, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied from its arguments (see rebuilt)
        return rebuilt(self)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise empty_or_not_str(self.name)(f"name must be a non-empty str, got {self.name!r}")
        check_telemetry_name("name", self.name)
        object.__setattr__(self, "name", plain(self.name))
        check_number("compensation_timeout_s", self.compensation_timeout_s, low=0, low_open=True,
                     allow_none=True, finite="None for no bound")
        builtin_numbers(self, "compensation_timeout_s")
        check_sync_callable("clock", self.clock, "a callable returning seconds", takes=0)
        object.__setattr__(self, "clock", _clock.seconds(self.clock))
        if not isinstance(self.instrument, bool):
            raise TypeError(f"instrument must be a bool, got {self.instrument!r}")
        hooks = check_hooks(self.hooks)
        object.__setattr__(self, "hooks", hooks)
        resolved = resolve_hooks(hooks, self.tracer_provider, self.meter_provider, instrument=self.instrument)
        object.__setattr__(self, "_hooks", resolved)

    def begin(self) -> Transaction:
        """A transaction for ``async with saga.begin() as tx:``, whose ``await tx.step(name, action, compensate=...)``
        calls run steps; the block's error (or a step's) rolls the completed steps back, as :meth:`run` does."""
        return Transaction(self)

    async def run(self, *steps: Step[Any]) -> SagaResult:
        """Run ``steps`` in order as one transaction; raises :class:`SagaError` after a rollback (a sync or
        reused action or compensation: its ``TypeError`` as it is, after the rollback)."""
        check_spread("run", "steps", steps)
        for k, s in enumerate(steps):
            if not isinstance(s, Step):
                raise TypeError(f"steps must be Step objects, got {shown(s)} at position {k}")
        async with self.begin() as tx:
            for s in steps:
                await tx.step(s.name, s.action, compensate=s.compensate)
        assert tx.result is not None
        return tx.result
