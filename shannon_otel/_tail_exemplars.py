"""The exemplar filter of a :class:`~shannon_otel.TailSampler`: exemplars that name only traces it exports.

An exemplar is taken when its measurement is made (a task's duration as the task ends), before the sampler decides
the trace: under the SDK's default ``trace_based`` filter most exemplars named healthy traces the sampler then
dropped, and Grafana's exemplar link found no trace in Jaeger. Given to the MeterProvider
(``MeterProvider(..., exemplar_filter=sampler.exemplar_filter())``), this filter offers a measurement to the
reservoir only when the span current at it is sure to be exported (:meth:`TailSampler._will_export`); the others
are counted and timed all the same, they just name no trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import ExemplarFilter
from opentelemetry.util.types import Attributes

from . import _telemetry as tel

if TYPE_CHECKING:
    from ._tail import TailSampler

__all__ = ["TailExemplarFilter"]

_TROUBLE = frozenset({tel.Outcome.FAILURE.value, tel.Outcome.TIMEOUT.value})


class TailExemplarFilter(ExemplarFilter):
    """Offers a measurement when the span current at it is sampled and the sampler will export it: its trace id is
    under ``healthy_ratio`` (every part of such a trace is kept), its part of the trace was kept or holds a troubled
    span already, or the measurement is a failed / timed-out task's and its current span is this library's (a task or
    wave span, ending next with that outcome, keeps its undecided part). Called by the SDK on the recording thread,
    once per measurement.

    The outcome of a measurement says nothing of a span of another scope: a wave without spans (its tracer provider
    a no-op) records its failed tasks under the caller's span, which ends healthy; so does a user's own instrument
    given a ``shannon.task.outcome``. Taken as troubled, such a span's part was offered, then dropped: the exemplars
    of ``shannon.task.duration`` and ``shannon.wave.duration`` named traces the sampler never exported."""

    def __init__(self, sampler: TailSampler) -> None:
        self._sampler = sampler

    def should_sample(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> bool:
        span = trace.get_current_span(context)
        span_context = span.get_span_context()
        if not span_context.is_valid or not span_context.trace_flags.sampled:
            return False
        outcome = attributes.get(tel.TASK_OUTCOME) if attributes else None  # a user's value may be a list
        troubled = isinstance(outcome, str) and outcome in _TROUBLE and _ours(span)
        return self._sampler._will_export(span_context, troubled=troubled)


def _ours(span: trace.Span) -> bool:
    """Whether ``span`` is this library's (a task or wave span: it takes the outcome of the measurement made in it)."""
    scope = getattr(span, "instrumentation_scope", None)  # the SDK's spans; None for a non-recording one
    return scope is not None and scope.name == tel.SCOPE_NAME
