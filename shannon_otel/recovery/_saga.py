"""Compensating transactions: steps with compensations, rolled back in reverse order on failure.

``async with saga.begin() as tx: await tx.step("reserve", reserve, compensate=release)``; or
``await saga.run(Step(...), ...)``. On an error or cancellation inside the block, the compensations
of the completed steps run newest first; each failing compensation is recorded and the rest still
run. Then an error is raised as :class:`SagaError` (``__cause__`` = the step's error, ``.result``
says what was rolled back) and a cancellation is re-raised unchanged (``tx.result`` is still set).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _clock
from .._deadline import task_timed_out
from .._events import CompensationFinished, SagaFinished, SagaObserver, SagaStarted
from .._hooks import resolve_hooks
from .._isolation import Unentered, enter, finish, hook_failed, leave, start
from .._telemetry import Outcome
from ._types import Clock

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step:
    """One step of :meth:`Saga.run`: ``compensate`` receives the step's result."""

    name: str
    action: Callable[[], Awaitable[Any]]
    compensate: Callable[[Any], Awaitable[Any]] | None = None


@dataclass(frozen=True, slots=True)
class SagaResult:
    """How a saga ended. ``compensated`` is in the order the compensations ran (newest step first)."""

    saga: str
    outcome: Outcome
    completed: tuple[str, ...]
    compensated: tuple[str, ...] = ()
    failed_compensations: Mapping[str, BaseException] = field(default_factory=lambda: MappingProxyType({}))
    error: BaseException | None = None
    values: tuple[Any, ...] = ()

    @property
    def rolled_back(self) -> bool:
        """Every completed step with a compensation was compensated successfully."""
        return self.outcome is not Outcome.SUCCESS and not self.failed_compensations


class SagaError(Exception):
    """A saga step failed and the saga was rolled back; ``__cause__`` is the step's error."""

    def __init__(self, result: SagaResult) -> None:
        failed = ", ".join(result.failed_compensations) or "none"
        super().__init__(
            f"saga {result.saga!r} failed; compensated {list(result.compensated)}; failed compensations: {failed}"
        )
        self.result = result

    @property
    def compensation_errors(self) -> Mapping[str, BaseException]:
        return self.result.failed_compensations


@dataclass(frozen=True, slots=True)
class Saga:
    """A named kind of compensating transaction; each :meth:`begin` is a fresh, independent run."""

    name: str
    clock: Clock = field(default=_clock.monotonic, kw_only=True)
    hooks: Iterable[Hook] | None = field(default=None, repr=False, compare=False, kw_only=True)
    tracer_provider: TracerProvider | None = field(default=None, repr=False, compare=False, kw_only=True)
    meter_provider: MeterProvider | None = field(default=None, repr=False, compare=False, kw_only=True)
    instrument: bool = field(default=True, repr=False, kw_only=True)
    _hooks: tuple[Hook, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        hooks = tuple(self.hooks or ())
        object.__setattr__(self, "hooks", hooks)
        resolved = resolve_hooks(hooks, self.tracer_provider, self.meter_provider, instrument=self.instrument)
        object.__setattr__(self, "_hooks", resolved)

    def begin(self) -> Transaction:
        return Transaction(self)

    async def run(self, *steps: Step) -> SagaResult:
        """Run ``steps`` in order as one transaction; raises :class:`SagaError` after a rollback."""
        async with self.begin() as tx:
            for s in steps:
                await tx.step(s.name, s.action, compensate=s.compensate)
        assert tx.result is not None
        return tx.result


class Transaction:
    """One run of a :class:`Saga`; use it as ``async with`` in a single task.

    Observers are isolated (``shannon_otel._isolation``): one that raises is recorded and skipped;
    an observer that is a context manager is entered in ``__aenter__`` and exited in ``__aexit__``.
    """

    __slots__ = ("_done", "_entered", "_observers", "_owners", "_saga", "result")

    def __init__(self, saga: Saga) -> None:
        self._saga = saga
        self._done: list[tuple[str, Any, Callable[[Any], Awaitable[Any]] | None]] = []
        self._observers: list[SagaObserver] = []
        self._owners: list[Hook] = []
        self._entered: list[Any] = []
        self.result: SagaResult | None = None

    async def __aenter__(self) -> Transaction:
        hooks = self._saga._hooks
        if hooks:
            event = SagaStarted(self._saga.name)
            for hook in hooks:
                try:
                    observer = hook.saga_started(event)
                except Exception as exc:
                    hook_failed(hook, "saga_started", exc, hooks)
                    continue
                if observer is not None:
                    self._observers.append(observer)
                    self._owners.append(hook)
                    self._entered.append(enter(observer, hook, "saga_started", hooks))
        return self

    async def step(
        self, name: str, action: Callable[[], Awaitable[T]], *,
        compensate: Callable[[T], Awaitable[Any]] | None = None,
    ) -> T:
        """Run one step; on success its compensation (given the result) is registered for a rollback."""
        observers, owners, hooks = self._observers, self._owners, self._saga._hooks
        tokens: list[Any] = []
        outcome, error = Outcome.SUCCESS, None
        try:
            if observers:
                start(observers, owners, hooks, tokens, "step_started", name)
            value = await action()
        except asyncio.CancelledError:
            outcome = Outcome.TIMEOUT if task_timed_out() else Outcome.CANCELLATION
            raise
        except BaseException as exc:
            outcome, error = Outcome.FAILURE, exc
            raise
        finally:
            if tokens:
                finish(observers, owners, hooks, tokens, "step_finished", name, outcome, error)
        self._done.append((name, value, compensate))
        return value

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> bool:
        try:
            return await self._exit(exc)
        finally:
            self._leave()

    async def _exit(self, exc: BaseException | None) -> bool:
        completed = tuple(name for name, _, _ in self._done)
        values = tuple(value for _, value, _ in self._done)
        if exc is None:
            self._finish(SagaResult(self._saga.name, Outcome.SUCCESS, completed, values=values))
            return False
        compensated, failed, cancelled = await self._compensate()
        if isinstance(exc, asyncio.CancelledError):  # the wave task's own timeout, or a real cancellation
            outcome = Outcome.TIMEOUT if task_timed_out() else Outcome.CANCELLATION
        else:
            outcome = Outcome.FAILURE
        result = SagaResult(
            self._saga.name, outcome, completed, compensated, MappingProxyType(failed), exc, values,
        )
        self._finish(result)
        if cancelled is not None and not isinstance(exc, asyncio.CancelledError):
            raise cancelled
        if isinstance(exc, Exception):
            raise SagaError(result) from exc
        return False  # cancellation (and other BaseExceptions) propagate unchanged

    async def _compensate(
        self,
    ) -> tuple[tuple[str, ...], dict[str, BaseException], asyncio.CancelledError | None]:
        compensated: list[str] = []
        failed: dict[str, BaseException] = {}
        cancelled: asyncio.CancelledError | None = None
        saga, clock, observers = self._saga.name, self._saga.clock, self._observers
        owners, hooks = self._owners, self._saga._hooks
        for name, value, compensate in reversed(self._done):
            if compensate is None:
                continue
            tokens: list[Any] = []
            begin = clock()
            outcome: Outcome = Outcome.SUCCESS
            error: BaseException | None = None
            try:
                start(observers, owners, hooks, tokens, "compensation_started", name)
                await compensate(value)
                compensated.append(name)
            except asyncio.CancelledError as exc:
                # Cancelled again while rolling back: finish the rollback, then re-raise.
                outcome, error, cancelled = Outcome.CANCELLATION, exc, exc
                failed[name] = exc
            except Exception as exc:
                outcome, error = Outcome.FAILURE, exc
                failed[name] = exc
            event = CompensationFinished(saga, name, outcome, clock() - begin, error)
            finish(observers, owners, hooks, tokens, "compensation_finished", event)
        return tuple(compensated), failed, cancelled

    def _finish(self, result: SagaResult) -> None:
        self.result = result
        if self._observers:
            event = SagaFinished(
                result.saga, result.outcome, result.completed, result.compensated,
                tuple(result.failed_compensations),
            )
            observers, owners, hooks = self._observers, self._owners, self._saga._hooks
            for k in range(len(observers) - 1, -1, -1):
                try:
                    observers[k].saga_finished(event)
                except Exception as exc:
                    hook_failed(owners[k], "saga_finished", exc, hooks)

    def _leave(self) -> None:
        """Exit the observers entered in ``__aenter__``, newest first (after ``saga_finished``)."""
        observers, owners, entered, hooks = self._observers, self._owners, self._entered, self._saga._hooks
        for k in range(len(entered) - 1, -1, -1):
            if type(entered[k]) is not Unentered:
                leave(observers[k], owners[k], "saga_finished", hooks)
        entered.clear()
