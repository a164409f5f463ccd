"""LogHistogram: O(1) running statistics with bounded relative error on quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shannon_otel._stats import LogHistogram


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-5, max_value=1e4), min_size=1, max_size=300), st.floats(0, 1))
def test_quantiles_are_within_two_percent_of_an_observed_value(values: list[float], q: float) -> None:
    hist = LogHistogram()
    for v in values:
        hist.add(v)
    got = hist.quantile(q)
    ordered = sorted(values)
    exact = ordered[max(1, math.ceil(q * len(values))) - 1]
    assert got == pytest.approx(exact, rel=0.021)
    assert hist.count == len(values)
    assert hist.total == pytest.approx(float(np.sum(values)))
    assert hist.min == min(values)
    assert hist.max == max(values)


def test_empty_and_tiny_values() -> None:
    hist = LogHistogram()
    assert math.isnan(hist.quantile(0.5))
    assert math.isnan(hist.mean)
    hist.add(0.0)
    hist.add(0.0)
    assert hist.quantile(0.99) == 0.0
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        hist.quantile(1.5)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1e-8, max_value=1e14).flatmap(lambda m: st.sampled_from([m, -m])),
        min_size=1, max_size=300,
    ),
    st.floats(0, 1),
)
def test_quantiles_of_any_magnitude_and_sign_are_within_two_percent(values: list[float], q: float) -> None:
    # record() takes any finite number: token counts in the millions, tiny costs, negative deltas.
    # Values beyond ~3e5 all shared the last bin and negative ones the first, so a p50 of 400k..4M
    # tokens read 400k and the p95 of -5..-50 read -50.
    hist = LogHistogram()
    for v in values:
        hist.add(v)
    ordered = sorted(values)
    exact = ordered[max(1, math.ceil(q * len(values))) - 1]
    assert hist.quantile(q) == pytest.approx(exact, rel=0.021)


def test_a_waves_measurement_summary_is_true_for_large_and_negative_values() -> None:
    from typing import Any

    from shannon_otel import Wave, record, record_tokens
    from shannon_otel.testing import run_virtual

    def work(i: int) -> Any:
        async def run() -> None:
            record_tokens(input=400_000 * i)
            record("delta", -5.0 * i)
        return run

    async def main() -> None:
        report = (await Wave[None]("m", instrument=False).run([work(i) for i in range(1, 11)])).report
        tokens, delta = report.measurements["shannon.task.tokens.input"], report.measurements["delta"]
        assert tokens.p50 == pytest.approx(2_000_000, rel=0.021)
        assert tokens.p95 == pytest.approx(4_000_000, rel=0.021)
        assert delta.p50 == pytest.approx(-30.0, rel=0.021)
        assert delta.p95 == pytest.approx(-5.0, rel=0.021)

    run_virtual(main())
