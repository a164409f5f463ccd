"""The recorder's live counters: one :class:`WaveLive` per wave run, one ``_Op`` per operation.

The display reads them between refreshes (see ``_recorder``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

    from ..executor._report import WaveReport


@dataclass(slots=True)
class WaveLive:
    """Live counters of one wave run; ``label`` is unique in the run (``name#n`` when a name repeats)."""

    label: str
    size: int | None  # None: a lazy input, whose size is not known (0 is an empty one)
    done: int = 0
    failed: int = 0
    active: int = 0
    retries: int = 0
    rejected: int = 0
    degraded: int = 0
    report: WaveReport | None = None
    trace_id: str | None = None
    name: str = ""  # the wave's name (``label`` without the ``#n``)
    # the operations holding latency for ``label``: what its eviction clears, without a scan of every
    # operation of the run (with operation names made per request, each wave's end cost O(names))
    ops: list[_Op] = field(default_factory=list, repr=False, compare=False)


@dataclass(slots=True)
class _Op:
    calls: int = 0
    attempts: int = 0
    retries: int = 0
    rejected_retries: int = 0
    rejected: int = 0
    failed: int = 0
    degraded: int = 0
    fallbacks: int = 0
    latency: dict[str, list[float]] = field(default_factory=dict)  # wave label -> [calls, sum, max]
    slowest: dict[str, SpanContext] = field(default_factory=dict)  # wave label -> the slowest call's current span
