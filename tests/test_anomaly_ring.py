"""Ring buffers and scans: incremental statistics agree with a direct numpy computation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shannon_otel.anomaly import AnomalyDetector, DetectorConfig
from shannon_otel.anomaly._ring import Rings
from shannon_otel.anomaly._scoring import linear_scan, score1, score_z, tail1

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None)
@given(values, st.integers(1, 40))
def test_push_keeps_window_sums_of_the_last_width_values(xs: list[float], width: int) -> None:
    rings = Rings(2, width)
    for i, x in enumerate(xs):
        rings.push(1, x)
        window = np.asarray(xs[max(0, i + 1 - width) : i + 1])
        count, s1, s2 = rings.stats(1)
        assert count == window.size
        assert np.isclose(s1, window.sum(), rtol=1e-9, atol=1e-6)
        assert np.isclose(s2, (window * window).sum(), rtol=1e-9, atol=1e-3)
    assert rings.stats(0) == (0, 0.0, 0.0)


@settings(max_examples=60, deadline=None)
@given(values, st.integers(1, 30), st.integers(1, 7))
def test_extend_matches_push_and_reports_the_window_before_each_value(
    xs: list[float], width: int, split: int
) -> None:
    ring_a, ring_b = Rings(1, width), Rings(1, width)
    row = np.array([0])
    head, tail = xs[: len(xs) // split], xs[len(xs) // split :]
    for x in head:
        ring_a.push(0, x)
    ring_b.extend(row, np.asarray([head]).reshape(1, -1))
    s1, s2, cnt = ring_b.extend(row, np.asarray([tail]))
    for j, x in enumerate(tail):
        count, e1, e2 = ring_a.stats(0)
        assert cnt[0, j] == count
        assert np.isclose(s1[0, j], e1, rtol=1e-9, atol=1e-6)
        assert s2 is not None
        assert np.isclose(s2[0, j], e2, rtol=1e-9, atol=1e-3)
        ring_a.push(0, x)
    assert ring_a.stats(0)[0] == ring_b.stats(0)[0]
    assert np.allclose(ring_a.ordered(row), ring_b.ordered(row))


# values of very different sizes (a spike of 1e12 among values of 1, zeros): a sum that added the spike and
# subtracts it again keeps only rounding noise of the others unless it is re-added (CANCEL)
wide = st.lists(st.sampled_from([0.0, 0.0, 1.0, -2.5, 3e-3, 1e6, -1e12, 7e-9]), min_size=1, max_size=200)


def _close(s1: float, s2: float, window: np.ndarray) -> bool:
    """Sums of a window to ~1e-9 of its own size (not of values that left it)."""
    exact2 = float((window * window).sum())
    return abs(s2 - exact2) <= 1e-9 * exact2 and abs(s1 - window.sum()) <= 1e-9 * np.sqrt(window.size * exact2)


@settings(max_examples=200, deadline=None)
@given(wide, st.integers(1, 40))
def test_push_sums_stay_exact_to_the_window_after_a_huge_value_leaves(xs: list[float], width: int) -> None:
    rings = Rings(1, width)
    for i, x in enumerate(xs):
        rings.push(0, x)
        _, s1, s2 = rings.stats(0)
        assert _close(s1, s2, np.asarray(xs[max(0, i + 1 - width) : i + 1])), i
    many = Rings(3, width)  # the vectorized push (the numpy engine's one-sample blocks): same bound
    rows = np.array([0, 2])
    for i, x in enumerate(xs):
        many.push_many(rows, np.array([x, -x]))
        window = np.asarray(xs[max(0, i + 1 - width) : i + 1])
        assert _close(float(many.s1[0]), float(many.s2[0]), window), i
        assert _close(float(many.s1[2]), float(many.s2[2]), -window), i


@settings(max_examples=200, deadline=None)
@given(wide, st.integers(1, 30), st.booleans())
def test_block_window_sums_stay_exact_to_the_window_after_a_huge_value_leaves(
    xs: list[float], width: int, inclusive: bool
) -> None:
    # the block path's sums are differences of one cumulative sum over the block: 1e12 in it swamped every
    # later window of it (rounding noise of ~1e-4 in sums of squares of values of 1)
    s1, s2, _ = Rings(1, width).extend(np.array([0]), np.asarray([xs]), inclusive=inclusive)
    assert s2 is not None
    for j in range(len(xs)):
        end = j + int(inclusive)
        assert _close(float(s1[0, j]), float(s2[0, j]), np.asarray(xs[max(0, end - width) : end])), j


def test_linear_scan_matches_the_recurrence() -> None:
    rng = np.random.default_rng(0)
    coef = rng.uniform(0.5, 1.0, (3, 700))
    u = rng.normal(size=(3, 700))
    y0 = rng.normal(size=3)
    expected = np.empty_like(u)
    prev = y0.copy()
    for t in range(u.shape[1]):
        prev = coef[:, t] * prev + u[:, t]
        expected[:, t] = prev
    assert np.allclose(linear_scan(coef, u, y0), expected)
    assert np.allclose(linear_scan(0.997, u, y0), linear_scan(np.full_like(u, 0.997), u, y0))


def test_score_table_matches_the_exact_tail() -> None:
    z = np.linspace(0.0, 12.0, 5001)
    exact = np.array([score1(tail1(float(v))) for v in z])
    assert np.max(np.abs(score_z(z) - exact)) < 1e-6
    assert score1(tail1(0.0)) < 0.031  # an ordinary sample: p = 0.5


@settings(max_examples=100, deadline=None)
@given(wide, st.integers(3, 12), st.integers(3, 12))
def test_updates_leave_the_window_state_rings_push_leaves(xs: list[float], window: int, steps: int) -> None:
    """AnomalyDetector.update writes Rings.push out inline (a call per push cost ~4% of a call):
    its seasonal and step windows end bit for bit where Rings.push leaves the same values, laps
    and re-adds after a cancelling eviction (CANCEL, the spikes of ``wide``) included."""
    det = AnomalyDetector(DetectorConfig(buckets=1, window=window, steps=steps, level=3, max_series=2))
    season, step = Rings(2, window), Rings(2, steps)
    prev = 0.0
    for k, value in enumerate(xs):
        det.update("a", value, 60.0 * k)
        x = value - xs[0]  # the values are kept offset by the series' first one
        season.push(0, x)
        step.push(0, x - prev)
        prev = x
    for mine, theirs in ((det._season, season), (det._steps, step)):
        for name in ("buf", "head", "count", "s1", "s2"):
            assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name
