"""The anomaly hook as one entry point uses it: its events go to that entry point's other hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace

from .._events import Hook
from .._isolation import notify

if TYPE_CHECKING:
    from .._events import Anomaly, CallObserver, CallStarted, WaveObserver, WaveStarted
    from ._feed import AnomalyHook


def _publish(event: Anomaly, sinks: tuple[Hook, ...], culprit: trace.Span | None) -> None:
    """Hand ``event`` to the other hooks of the scope, with ``culprit`` (an open span that is not
    the current one) current meanwhile; a hook that raises is logged and the others still get it. A
    ``KeyboardInterrupt`` (``SystemExit``) one raises is raised once every other one got the event."""
    token = otel_context.attach(trace.set_span_in_context(culprit)) if culprit is not None else None
    try:
        notify(sinks, sinks, sinks, "anomaly", event)
    finally:
        if token is not None:
            otel_context.detach(token)


class _Scoped(Hook):
    """An :class:`AnomalyHook` as one entry point uses it: its events go to that entry point's hooks."""

    __slots__ = ("_hook", "_sinks")

    def __init__(self, hook: AnomalyHook, sinks: tuple[Hook, ...]) -> None:
        self._hook, self._sinks = hook, sinks

    @property
    def __wrapped__(self) -> AnomalyHook:
        """The hook this is a view of: its failures are counted and logged as that hook's (_isolation)."""
        return self._hook

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        return self._hook._wave_started(event, self._sinks)

    def call_started(self, event: CallStarted) -> CallObserver | None:
        return self._hook._call_started(event, self._sinks)
