"""The hook protocol: the :class:`Hook` base class, and :class:`HookFailed` when one raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._error import error_type

if TYPE_CHECKING:
    from ._anomaly import Anomaly
    from ._breaker import BreakerRegistered, BreakerTransition
    from ._call import CallObserver, CallStarted
    from ._saga import SagaObserver, SagaStarted
    from ._wave import WaveObserver, WaveStarted


@dataclass(frozen=True, slots=True)
class HookFailed:
    """A hook (or one of its observers) raised; handed to the entry point's other hooks."""

    hook: str  # the failing hook's qualified class name
    method: str  # the method that raised, e.g. "attempt_finished"
    error: Exception

    @property
    def error_type(self) -> str | None:
        """``error``'s ``error.type`` (its class, qualified for non-builtins); None without one."""
        return error_type(self.error)


class Hook:
    """Base class of every hook: the OTel hook, the anomaly feed, user callback hooks.

    Each ``*_started`` method is called once per scope and returns a fresh observer for that
    scope or ``None``. Long-lived state (instruments, detectors, the anomaly hook's per-wave-name
    ticks) lives on the hook; per-scope state lives on the observer, so two concurrent scopes
    never share an attempt counter or a span.

    A hook that raises is isolated (see the module docstring): :attr:`hook_errors` counts its
    failures by method. Every method is called without await: one that returns nothing returning a
    coroutine (``return self.queue.put(event)``) fails, its coroutine closed, as if it raised TypeError.
    """

    __slots__ = ("_hook_errors",)

    @property
    def hook_errors(self) -> dict[str, int]:
        """How many times this hook (or an observer it returned) raised, by method name; a copy."""
        try:  # past a __getattr__ of the hook's class, which may raise for unknown names (see _isolation)
            counts = object.__getattribute__(self, "_hook_errors")
        except AttributeError:
            return {}
        return dict(counts) if type(counts) is dict else {}

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        """A wave run starts: return a fresh :class:`WaveObserver` for this run, or ``None`` to skip it.

        An observer that is a context manager is entered around the run (in the context its tasks inherit)."""
        return None

    def call_started(self, event: CallStarted) -> CallObserver | None:
        """A protected call starts (a policy's or pipeline's ``call``): return a fresh :class:`CallObserver`, or
        ``None``.

        An observer that is a context manager is entered around the call."""
        return None

    def saga_started(self, event: SagaStarted) -> SagaObserver | None:
        """A saga starts: return a fresh :class:`SagaObserver` for it, or ``None``.

        An observer that is a context manager is entered around the saga."""
        return None

    def breaker_registered(self, event: BreakerRegistered) -> None:
        """A breaker reporting to this hook was built (once per breaker, from its constructor)."""

    def breaker_transition(self, event: BreakerTransition) -> None:
        """A named breaker changed state. Called from whichever call caused the change."""

    def anomaly(self, event: Anomaly) -> None:
        """A hook of the same entry point scored a sample (the anomaly hook: every tick it closes).

        Called in the context of the work that closed the tick, with the culprit's span current
        when it is still open (the tick's slowest task for ``latency``, its last failed task for
        ``error_rate``, its last call retried after a failed or refused try for ``retry_rate``), so a span
        event lands there.
        """

    def hook_failed(self, event: HookFailed) -> None:
        """Another hook of the same wave, policy or saga raised (it was isolated; see :class:`HookFailed`)."""

    def for_scope(self, hooks: tuple[Hook, ...]) -> Hook:
        """This hook as one entry point uses it; ``hooks`` are all the hooks of that entry point.

        Called once per entry point (wave, policy, breaker, saga) when its hooks are resolved. A
        hook that emits events of its own (the anomaly hook) returns a view that hands them to the
        other hooks of the scope; everything else returns itself. This is how events reach
        hooks without a second bus: emitted events flow to the same hooks as the executor's.
        """
        return self
