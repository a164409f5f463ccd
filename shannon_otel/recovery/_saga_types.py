"""The saga's value types: a :class:`Step` of :meth:`Saga.run`, the :class:`SagaResult` of a run and
the :class:`SagaError` raised after a rollback; the checks and awaiting of the user's callables."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from .._events._error import error_type
from .._telemetry import Outcome
from .._validate import (
    brief,
    check_arity,
    check_makes_awaitable,
    check_telemetry_name,
    empty_or_not_str,
    not_callable,
    plain,
)
from ._decorated import NotAwaitableError

T = TypeVar("T")


# Generic in the action's result, which compensate receives (as Transaction.step types them); no slots=True:
# with it, Python 3.11/3.12 raise TypeError on Step[X](...) (see Served)
@dataclass(frozen=True)
class Step(Generic[T]):
    """One step of :meth:`Saga.run`: ``compensate`` receives the step's result."""

    name: str
    action: Callable[[], Awaitable[T]]
    compensate: Callable[[T], Awaitable[Any]] | None = None

    def __post_init__(self) -> None:
        _check_step(self.name, self.action, self.compensate)
        object.__setattr__(self, "name", plain(self.name))


def _check_step(name: object, action: object, compensate: object) -> None:
    if not isinstance(name, str) or not name:
        raise empty_or_not_str(name)(f"name must be a non-empty str, got {name!r}")
    check_telemetry_name("name", name)
    if not callable(action):
        raise not_callable("action", action, "an async callable taking no arguments")
    check_makes_awaitable("action", action, "an async callable taking no arguments")
    check_arity("action", action, 0, "an async callable taking no arguments")
    if compensate is not None and not callable(compensate):
        raise not_callable("compensate", compensate, "an async callable taking the step's result, or None")
    if compensate is not None:
        check_makes_awaitable("compensate", compensate, "an async callable taking the step's result, or None")
        check_arity("compensate", compensate, 1, "an async callable taking the step's result, or None")


def not_async(name: str, made: object) -> NotAwaitableError:
    """The error of the user callable ``name`` (``action``, ``compensate``) that returned ``made``, not awaitable:
    a sync function where an async one belongs, which has run. Raised through the saga and every policy as it is
    (see :class:`NotAwaitableError`): a ``Retry`` around the saga ran a sync action again on each try."""
    return NotAwaitableError(f"{name} must be an async callable (return an awaitable), it returned {made!r}")


def is_reused(made: object) -> bool:
    """Whether ``made`` is a coroutine already awaited (or being awaited), which ``await`` refuses."""
    return inspect.iscoroutine(made) and (made.cr_frame is None or made.cr_await is not None)


def reused(name: str, made: Any) -> NotAwaitableError:
    """The error of the user callable ``name`` (``action``, ``compensate``) that returned ``made``, a coroutine
    already awaited (or being awaited): awaited, it raised "cannot reuse already awaited coroutine", the step's
    failure in place of the error of the run before (a ``Retry`` around the saga, a :class:`Step` run again), or
    a compensation's that never ran. Raised as it is, like :func:`not_async`."""
    return NotAwaitableError(
        f"{name} must return a new awaitable each time it is called (a Step runs again in each saga.run), it "
        f"returned a coroutine already awaited, {brief(made)}: pass the async function (or a lambda calling it), "
        f"not a lambda returning one coroutine"
    )


async def _awaited(name: str, made: object) -> Any:
    """Await what a user callable returned, refusing a non-awaitable or a coroutine already awaited with an
    error naming ``name``."""
    if not inspect.isawaitable(made):
        raise not_async(name, made)
    if is_reused(made):
        raise reused(name, made)
    return await made


@dataclass(frozen=True, slots=True)
class SagaResult:
    """How a saga ended. ``compensated`` is in the order the compensations ran (newest step first).

    ``failed_compensations`` maps each step left in effect to its compensation's error; a step name used
    several times (a step run in a loop) keys the n-th completed step of that name as ``"name#n"`` from
    the second on (the next free ``n`` if that key is a step's own name), so every one of them is counted.
    """

    saga: str
    outcome: Outcome
    completed: tuple[str, ...]
    compensated: tuple[str, ...] = ()
    failed_compensations: Mapping[str, BaseException] = field(default_factory=lambda: MappingProxyType({}))
    error: BaseException | None = None
    values: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.failed_compensations, MappingProxyType):  # read-only, whatever was passed
            object.__setattr__(self, "failed_compensations", MappingProxyType(dict(self.failed_compensations)))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy cannot be pickled or deep-copied: the result (and the SagaError holding it) is
        # rebuilt from a plain dict of the failed compensations.
        return (type(self), (self.saga, self.outcome, self.completed, self.compensated,
                             dict(self.failed_compensations), self.error, self.values))

    @property
    def uncompensated(self) -> tuple[str, ...]:
        """Completed steps left in effect: their compensation failed, timed out or was cancelled."""
        return tuple(self.failed_compensations)

    @property
    def rolled_back(self) -> bool:
        """Every completed step with a compensation was compensated successfully."""
        return self.outcome is not Outcome.SUCCESS and not self.failed_compensations


class SagaError(Exception):
    """A saga step failed and the saga was rolled back; ``__cause__`` is the step's error."""

    def __init__(self, result: SagaResult) -> None:
        # The classes of the errors, not their messages: logged as ``%s`` it said only "saga 'etl' failed", why not
        # (a message stays on its own exception, ``__cause__`` and ``compensation_errors``).
        cause = "" if result.error is None else f" with {error_type(result.error)}"
        failed = ", ".join(f"{step} ({error_type(error)})" for step, error in result.failed_compensations.items())
        super().__init__(
            f"saga {result.saga!r} failed{cause}; compensated {list(result.compensated)}; "
            f"failed compensations: {failed or 'none'}"
        )
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its result, not the message (what BaseException's reduce passes): pickling or
        # copying it raised TypeError/AttributeError.
        return (type(self), (self.result,), self.__dict__)

    @property
    def compensation_errors(self) -> Mapping[str, BaseException]:
        """The error of each compensation that failed, by step (those steps were left in effect)."""
        return self.result.failed_compensations
