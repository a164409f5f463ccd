"""Events and the hook protocol: how the executor and the policies tell observers what happened.

Data flows one way: user code -> executor / policies -> events -> hooks (OTel, detector, run
recorder, callbacks) -> SDK. A hook that derives events of its own (the anomaly detector's
:class:`Anomaly`) hands them to the other hooks of the same entry point through this same
protocol (:meth:`Hook.for_scope`, :meth:`Hook.anomaly`): there is no second bus.

A :class:`Hook` is long-lived; for each wave, protected call or saga it may return a fresh
*observer* holding that scope's state, or ``None`` when it does not care. Events are built only
when some observer exists, so a wave nobody watches pays nothing for them.

Observer calls happen on the event loop thread, inside the context of the work they describe:
``wave_started`` runs in the context the wave's tasks inherit, ``task_started`` /
``task_finished`` in the task's own context. Observers of one scope are finished in reverse order
of their start, like nested ``with`` blocks.

Scopes: a wave, call or saga observer that is a context manager (has ``__enter__`` / ``__exit__``)
is entered around the whole wave, call or saga, and a token returned by ``attempt_started``,
``hedge_started``, ``hedge_retry_started``, ``fallback_started``, ``step_started`` or ``compensation_started``
that is a context manager is entered around that attempt, fallback, step or compensation. The caller enters it
right after the start method and exits it right after the matching ``*_finished`` (told no
exception; its return value is ignored). That is how the OTel hook makes its spans current: the
attach is in ``__enter__`` and the detach in ``__exit__`` of one ``with``-like block the caller
always closes, so a span can never stay current after the work, whatever another hook does.
A wave observer is entered right after its hook's ``wave_started`` (the next hooks see its span
current); ``call_started`` / ``saga_started`` all run before the call's or saga's scopes are entered.

Fault isolation: hooks should not raise, and when one does it costs nothing but itself. Every
call into a hook or observer is guarded where it is made (``shannon_otel._isolation``): the error
is counted on the hook (:attr:`Hook.hook_errors`), logged with its traceback the first time per hook
and method, reported to the other hooks as :class:`HookFailed`, and never raised into the user's
call. An observer whose start method raised misses that scope (no ``*_finished``); one whose
finish raised is still exited. The user's result, raised exception and current span are exactly
what they would be without the hook.
"""

from __future__ import annotations

from ._anomaly import Anomaly
from ._breaker import BreakerRegistered, BreakerTransition
from ._call import (
    AttemptFinished,
    CallFinished,
    CallObserver,
    CallRejected,
    CallStarted,
    Degraded,
    FallbackStarted,
    RetryScheduled,
    TimedOut,
)
from ._error import cut_off, error_message, error_type, is_cut_off
from ._hook import Hook, HookFailed
from ._saga import CompensationFinished, SagaFinished, SagaObserver, SagaStarted
from ._wave import TaskFinished, TaskResult, WaveObserver, WaveStarted

__all__ = [
    "Anomaly", "AttemptFinished", "BreakerRegistered", "BreakerTransition", "CallFinished", "CallObserver",
    "CallRejected", "CallStarted", "CompensationFinished", "Degraded", "FallbackStarted", "Hook", "HookFailed",
    "RetryScheduled", "SagaFinished", "SagaObserver", "SagaStarted", "TaskFinished", "TaskResult", "TimedOut",
    "WaveObserver", "WaveStarted", "cut_off", "error_message", "error_type", "is_cut_off",
]
