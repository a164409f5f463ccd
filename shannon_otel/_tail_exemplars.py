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
_TASK_PREFIX = tel.SPAN_TASK.format(task="")  # "task ": every task span's name starts so


class TailExemplarFilter(ExemplarFilter):
    """Offers a measurement when the span current at it is sampled and the sampler will export it: its trace id is
    under ``healthy_ratio`` (every part of such a trace is kept), its part of the trace was kept or holds a troubled
    span already, or the measurement is a failed / timed-out task's and its current span is the one that ends with that
    outcome (the wave span of the wave it names, or a task span under it), which keeps its undecided part. Called by
    the SDK on the recording thread, once per measurement.

    The outcome of a measurement says nothing of any other span: a wave without spans (its tracer provider a no-op)
    records its failed tasks under the span it runs in (the caller's, a ``Retry`` call's, an outer wave's task's),
    which ends healthy; so does a user's own instrument given a ``shannon.task.outcome``. Taken as troubled, such a
    span's part was offered, then dropped: the exemplars of ``shannon.task.duration`` and ``shannon.wave.duration``
    named traces the sampler never exported."""

    def __init__(self, sampler: TailSampler) -> None:
        self._sampler = sampler

    def should_sample(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> bool:
        span = trace.get_current_span(context)
        span_context = span.get_span_context()
        if not span_context.is_valid or not span_context.trace_flags.sampled:
            return False
        outcome = attributes.get(tel.TASK_OUTCOME) if attributes else None  # a user's value may be a list
        troubled = isinstance(outcome, str) and outcome in _TROUBLE and self._ends_with_it(
            span, attributes.get(tel.WAVE_NAME) if attributes else None)
        return self._sampler._will_export(span_context, troubled=troubled)

    def _ends_with_it(self, span: trace.Span, wave: object) -> bool:
        """Whether ``span`` ends with the outcome of a measurement of ``wave``: it is that wave's span, or a task span
        whose parent (open, started through the sampler) is. Asked of failed / timed-out measurements only."""
        if not isinstance(wave, str) or not _ours(span):
            return False
        name, wave_span_name = getattr(span, "name", None), tel.SPAN_WAVE.format(wave=wave)
        if name == wave_span_name:
            return True
        parent = getattr(span, "parent", None)
        if not isinstance(name, str) or not name.startswith(_TASK_PREFIX) or parent is None:
            return False
        wave_span = self._sampler._open_span(parent.span_id)
        return wave_span is not None and _ours(wave_span) and wave_span.name == wave_span_name


def _ours(span: object) -> bool:
    """Whether ``span`` is this library's (its tracer's scope; None for a span not of the SDK)."""
    scope = getattr(span, "instrumentation_scope", None)
    return scope is not None and scope.name == tel.SCOPE_NAME
