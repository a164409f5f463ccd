"""Ending a span of ours no earlier than it started.

The SDK stamps a span's start and end with the wall clock (``time.time_ns``): stepped back while the span
was open (NTP, an operator, a VM resumed and resynced), the span ended before it started, and a trace
viewer or backend showed a negative duration (or dropped the span). Ended here at the later of now and its
start: a step back reads as a span of 0 s (its length is unknown), never a negative one. A step forward is
time the wall clock says passed, as for any span. The durations the library measures (metrics, reports) are
taken on the monotonic clock (``_clock.monotonic``), not from these stamps.
"""

from __future__ import annotations

from opentelemetry.trace import Span

from .._clock import wall_ns


def end(span: Span) -> None:
    """End ``span`` now, or at its start if the wall clock now reads earlier (a span that records nothing
    ends as it would)."""
    start = getattr(span, "start_time", None)
    if type(start) is not int:  # not a span the SDK stamped (one that records nothing, another SDK's): as it would
        span.end()
        return
    now = wall_ns()  # on the clock the SDK stamped its start with, not a second one
    span.end(end_time=now if now >= start else start)
