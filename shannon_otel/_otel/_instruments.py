"""Instruments made from the contract's specs: one place turns a MetricSpec into an SDK instrument."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

    from .._telemetry import MetricSpec

Callback = Callable[["CallbackOptions"], Iterable["Observation"]]


def histogram(meter: Meter, spec: MetricSpec) -> Histogram:
    """A histogram with the spec's bucket boundaries as advice (honoured by the SDK's default view)."""
    return meter.create_histogram(
        spec.name, unit=spec.unit, description=spec.description,
        explicit_bucket_boundaries_advisory=list(spec.buckets or ()),
    )


def instrument(meter: Meter, spec: MetricSpec, callbacks: Sequence[Callback] | None = None) -> Any:
    """The instrument ``spec`` describes; the observable kind when ``callbacks`` are given."""
    if spec.kind == "histogram":
        return histogram(meter, spec)
    if callbacks is None:
        make: Any = {
            "counter": meter.create_counter, "updowncounter": meter.create_up_down_counter,
            "gauge": meter.create_gauge,
        }[spec.kind]
        return make(spec.name, unit=spec.unit, description=spec.description)
    observable: Any = {
        "counter": meter.create_observable_counter, "updowncounter": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }[spec.kind]
    return observable(spec.name, callbacks=list(callbacks), unit=spec.unit, description=spec.description)
