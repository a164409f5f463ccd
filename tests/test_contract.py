"""The telemetry contract: one module of names, documented in docs/architecture.md."""

from __future__ import annotations

from pathlib import Path

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
