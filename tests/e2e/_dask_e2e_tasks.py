"""Task functions the e2e Dask workers import by reference."""

from __future__ import annotations

from opentelemetry import trace


def traced_square(x: int) -> int:
    """Opens a span of the user's own on the worker: it must nest under the remote task span."""
    with trace.get_tracer("user-code").start_as_current_span("user work"):
        return x * x
