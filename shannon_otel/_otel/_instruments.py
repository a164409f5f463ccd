"""Instruments made from the contract's specs (one place for names, units, descriptions, buckets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, Meter

    from .._telemetry import MetricSpec


def histogram(meter: Meter, spec: MetricSpec) -> Histogram:
    """A histogram with the spec's bucket boundaries as advice (honoured by the SDK's default view)."""
    return meter.create_histogram(
        spec.name, unit=spec.unit, description=spec.description,
        explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
    )
