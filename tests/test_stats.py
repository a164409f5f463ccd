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
