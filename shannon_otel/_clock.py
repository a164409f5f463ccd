"""The library's default clocks, in one place: every ``clock=`` parameter defaults to one of these.

``monotonic`` times durations and deadlines (executor, recovery policies); ``wall`` stamps
events users compare with other systems' times (the anomaly hook's samples). Tests pass their own
clock (``shannon_otel.testing.FakeClock``) or run on ``shannon_otel.testing.VirtualTimeLoop``.
"""

from __future__ import annotations

import time

monotonic = time.perf_counter
wall = time.time
