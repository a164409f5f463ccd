"""The telemetry contract: one module of names, documented in docs/architecture.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from shannon_otel import _telemetry as tel
from shannon_otel._contract_doc import updated

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _names() -> dict[str, str]:
    return {k: v for k, v in vars(tel).items() if k.isupper() and isinstance(v, str) and k != "SCOPE_NAME"}


def test_the_metric_table_in_the_docs_is_generated_from_the_contract() -> None:
    doc = DOC.read_text()
    assert updated(doc) == doc, "run: python -m shannon_otel._contract_doc --write docs/architecture.md"


@pytest.mark.parametrize("constant", sorted(_names()))
def test_every_name_of_the_contract_is_documented(constant: str) -> None:
    value = _names()[constant]
    assert value in DOC.read_text(), f"{constant} = {value!r} is not in docs/architecture.md"


def test_metric_names_are_prefixed_and_durations_are_seconds_with_explicit_buckets() -> None:
    names = [m.name for m in tel.METRICS]
    assert len(names) == len(set(names))
    for spec in tel.METRICS:
        assert spec.name.startswith("shannon."), spec.name
        assert not spec.name.endswith("_total")
        if spec.kind == "histogram":
            assert spec.buckets, spec.name
            assert list(spec.buckets) == sorted(spec.buckets)
        if spec.unit == "s":
            assert spec.kind in ("histogram", "gauge")
            assert spec.buckets is not None and spec.buckets[0] < 1, "seconds-scale buckets"
        assert "shannon.task.index" not in spec.attributes  # no per-task cardinality


def test_prometheus_names_follow_the_otlp_translation() -> None:
    assert tel.TASK_DURATION.prometheus == "shannon_task_duration_seconds"
    assert tel.TASK_OUTCOMES.prometheus == "shannon_task_outcomes_total"
    assert tel.WAVE_EFFICIENCY.prometheus == "shannon_wave_parallel_efficiency_ratio"
    assert tel.BREAKER_STATE_METRIC.prometheus == "shannon_breaker_state"
    assert tel.TASK_TOKENS.prometheus == "shannon_task_tokens"
    assert tel.TASK_COST.prometheus == "shannon_task_cost_total"


def test_units_are_ucum_or_annotations_and_prometheus_names_are_lowercase_snake_case() -> None:
    """The semantic conventions' instrument units: UCUM case-sensitive units, `1`, or a `{annotation}` for
    what UCUM has no unit for. `shannon.task.cost` had unit "USD" (no UCUM unit: UCUM has no currencies),
    which the OTLP -> Prometheus translation kept as a word: `shannon_task_cost_USD_total`, upper case in a
    Prometheus name (its naming guidance: snake_case)."""
    ucum = {"s", "1"}  # the UCUM units the contract uses; add one here only if UCUM defines it
    for spec in tel.METRICS:
        assert spec.unit in ucum or re.fullmatch(r"\{[a-zA-Z_]+\}", spec.unit), (spec.name, spec.unit)
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.prometheus), spec.prometheus


@pytest.mark.parametrize("bridged", [True, False], ids=["bridged", "sdk"])
def test_what_is_emitted_is_what_the_contract_says(bridged: bool) -> None:
    # Name, instrument kind, unit, description, attribute keys and bucket boundaries of every metric a
    # workload of waves, policies and a saga emits, read off the real SDK's export (both the bridge's
    # histograms and plain SDK calls), against the contract the docs table is generated from.
    import asyncio
    import contextlib

    from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum

    from shannon_otel import (
        CircuitBreaker,
        Degrade,
        Fallback,
        Hedge,
        Hook,
        Pipeline,
        Retry,
        Saga,
        SagaError,
        Timeout,
        Wave,
        record_cost,
        record_tokens,
    )
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    class Broken(Hook):
        def wave_started(self, event: object) -> None:
            raise RuntimeError("a broken hook")

    memory = InMemoryTelemetry(bridged=bridged)
    providers = memory.providers

    async def work(i: int) -> int:
        record_tokens(input=10, output=5)
        record_cost(0.01)
        await asyncio.sleep(0.01)
        if i == 3:
            raise ValueError("boom")
        return i

    async def fails() -> None:
        raise KeyError("down")

    async def slow() -> int:
        await asyncio.sleep(0.3)
        return 1

    async def served(error: Exception) -> int:
        return 0

    async def undo(*_: object) -> None:
        return None

    async def main() -> None:
        await Wave[int]("w", max_concurrency=2, hooks=[Broken()], **providers).map(work, range(8))
        breaker = CircuitBreaker("b", failure_threshold=1, reset_timeout=100, **providers)
        guarded = Pipeline(Fallback(served), Retry(attempts=2, initial=0.01), breaker, name="op", **providers)
        await guarded.call(fails)
        await guarded.call(fails)
        with contextlib.suppress(KeyError):  # a failure reaching the caller: shannon.calls' error.type
            await Retry(attempts=1, name="bare", **providers).call(fails)
        await Pipeline(Degrade(default=0), Timeout(0.1), name="deg", **providers).call(slow)
        await Hedge(0.1, name="hedged", **providers).call(slow)
        with contextlib.suppress(SagaError):
            async with Saga("s", **providers).begin() as tx:
                await tx.step("a", undo, compensate=undo)
                raise ValueError("roll back")

    run_virtual(main())
    kinds = {Histogram: "histogram", Gauge: "gauge"}
    specs = {spec.name: spec for spec in tel.METRICS}
    emitted: dict[str, Any] = dict(memory.metrics())
    for name, metric in emitted.items():
        spec = specs[name]
        data = metric.data
        kind = kinds.get(type(data)) or ("counter" if isinstance(data, Sum) and data.is_monotonic else "updowncounter")
        assert (kind, metric.unit, metric.description) == (spec.kind, spec.unit, spec.description), name
        keys = {key for point in data.data_points for key in point.attributes}
        assert keys == set(spec.attributes), (name, keys ^ set(spec.attributes))  # each documented key is emitted
        if spec.kind == "histogram":
            assert all(tuple(p.explicit_bounds) == spec.buckets for p in data.data_points), name
    missing = set(specs) - set(emitted)
    # the rest need ticks of the anomaly hook, configure()'s exporters or a Redis server
    assert missing == {
        "shannon.anomaly.score", "shannon.anomaly.events", "shannon.telemetry.dropped",
        "shannon.shared.errors", "shannon.shared.duration", "shannon.shared.available",
    }
