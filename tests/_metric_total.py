"""A metric's total over its data points, for tests that read them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class _HasPoints(Protocol):
    def points(self, name: str) -> Sequence[Any]: ...


def metric_total(source: _HasPoints, name: str, **wanted: Any) -> float:
    """The sum (histograms) or value (counters, gauges) of the points of metric ``name`` read from ``source`` (an
    InMemoryTelemetry, say) whose attributes hold every ``wanted`` key and value."""
    total = 0.0
    for point in source.points(name):
        if all(point.attributes.get(k) == v for k, v in wanted.items()):
            total += point.sum if hasattr(point, "bucket_counts") else point.value
    return total
