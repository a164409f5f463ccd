"""The detector's opt-in weekly profile (``DetectorConfig.weekly_rho``): when its causal test switches it on,
and that every path (scalar ``update``, numpy and numba blocks, one-sample ticks) computes the same scores; and
that every path puts a sample at a bucket's first second in that bucket, daily and weekly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _anomaly_paths import scalar
from hypothesis import given, settings
from hypothesis import strategies as st

from shannon_otel.anomaly import AnomalyDetector, DetectorConfig
from shannon_otel.anomaly import _engine_numba as _kernel
from shannon_otel.anomaly._engine_numba import PARALLEL_MIN

HOUR = 3600.0
WEEKS = 10
WEEKLY = DetectorConfig(weekly_rho=0.9, max_series=8)
OFF = DetectorConfig(max_series=8)


def hourly(kind: str, seed: int, weeks: int = WEEKS) -> tuple[np.ndarray, np.ndarray]:
    """An hourly series of ``weeks`` weeks: a daily cycle, one damped at weekends, white noise or a random walk."""
    rng = np.random.default_rng(seed)
    ts = np.arange(24 * 7 * weeks) * HOUR
    hour, weekday = ts % 86_400.0 / HOUR, ts // 86_400.0 % 7
    noise = rng.standard_normal(ts.size)
    daily = np.sin(2 * np.pi * hour / 24)
    values = {
        "daily": daily + 0.3 * noise,
        "weekday/weekend": daily * np.where(weekday < 5, 1.0, 0.3) + 0.3 * noise,
        "white noise": noise,
        "random walk": np.cumsum(noise),
    }[kind]
    return values, ts


@pytest.mark.parametrize("seed", range(5))
def test_the_profile_switches_on_for_a_weekly_cycle_and_only_from_its_third_week(seed: int) -> None:
    values, ts = hourly("weekday/weekend", seed)
    off = AnomalyDetector(OFF).update_series("a", values, ts)
    on = AnomalyDetector(WEEKLY).update_series("a", values, ts)
    moved = np.flatnonzero(off != on)  # warm-up NaNs are equal on both (NaN != NaN only where both are NaN)
    moved = moved[~(np.isnan(off[moved]) & np.isnan(on[moved]))]
    assert moved.size > 24 * 7  # it acts, for weeks
    assert moved[0] >= 3 * 24 * 7  # two weeks of week-apart pairs first


@pytest.mark.parametrize("kind", ["daily", "white noise", "random walk"])
@pytest.mark.parametrize("seed", range(5))
def test_the_profile_never_switches_on_without_a_weekly_cycle(kind: str, seed: int) -> None:
    values, ts = hourly(kind, seed)
    off = AnomalyDetector(OFF).update_series("a", values, ts)
    on = AnomalyDetector(WEEKLY).update_series("a", values, ts)
    assert np.array_equal(off, on, equal_nan=True)  # bit for bit: its z-score never counted


def test_a_value_usual_for_its_hour_of_the_week_is_less_surprising_with_the_profile() -> None:
    # weekends sit 3 spreads higher: the daily profile mixes them with weekdays, the weekly one does not
    rng = np.random.default_rng(3)
    ts = np.arange(24 * 7 * WEEKS) * HOUR
    weekend = ts // 86_400.0 % 7 >= 5
    values = 3.0 * weekend + rng.standard_normal(ts.size)
    off = AnomalyDetector(OFF).update_series("a", values, ts)
    on = AnomalyDetector(WEEKLY).update_series("a", values, ts)
    later = ts >= 4 * 7 * 86_400.0
    assert np.nanmean(on[later & weekend]) < np.nanmean(off[later & weekend])


def weekly_block(seed: int, rows: int = 5, weeks: int = 5) -> tuple[np.ndarray, np.ndarray]:
    values = np.stack([hourly("weekday/weekend" if i % 2 == 0 else "white noise", seed + i, weeks)[0]
                       for i in range(rows)])
    ts = hourly("daily", 0, weeks)[1]
    values[1, 100:110] = np.nan  # ignored values
    values[2, 600] = 12.0  # a spike
    values[3, 700:] += 2.0  # a level shift
    return values, ts


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_block_chunked_and_one_sample_paths_agree_with_the_profile(engine: str) -> None:
    names = [f"s{i}" for i in range(5)]
    block, ts = weekly_block(1)
    keep = np.ones(ts.size, dtype=bool)
    keep[300:340] = False  # a gap of 40 hours: slots without values
    block, ts = block[:, keep], ts[keep]
    whole = AnomalyDetector(WEEKLY, engine=engine).update_many(names, block, ts)
    det = AnomalyDetector(WEEKLY, engine=engine)
    chunks = np.concatenate([det.update_many(names, block[:, i : i + 53], ts[i : i + 53])
                             for i in range(0, ts.size, 53)], axis=1)
    det = AnomalyDetector(WEEKLY, engine=engine)
    ticks = np.concatenate([det.update_many(names, block[:, j : j + 1], ts[j : j + 1]) for j in range(ts.size)],
                           axis=1)
    one = scalar(AnomalyDetector(WEEKLY), names, block, ts)
    off = AnomalyDetector(OFF, engine=engine).update_many(names, block, ts)
    assert not np.array_equal(whole, off, equal_nan=True)  # the profile acts here
    for other in (chunks, ticks, one):
        assert np.array_equal(np.isnan(whole), np.isnan(other))
    assert np.nanmax(np.abs(whole - chunks)) < 1e-9
    assert np.nanmax(np.abs(whole - ticks)) < 1e-6
    assert np.nanmax(np.abs(whole - one)) < 1e-6  # the scalar path interpolates no table


def test_numba_and_numpy_engines_agree_with_the_profile() -> None:
    names = [f"s{i}" for i in range(5)]
    block, ts = weekly_block(2)
    fast = AnomalyDetector(WEEKLY, engine="numba").update_many(names, block, ts)
    slow = AnomalyDetector(WEEKLY, engine="numpy").update_many(names, block, ts)
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.nanmax(np.abs(fast - slow)) < 1e-9


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rho=st.floats(0.05, 1.0),
    buckets=st.sampled_from([1, 3, 24]),
    cuts=st.lists(st.integers(1, 24 * 7 * 4 - 1), max_size=6),
    start=st.floats(-1e6, 1e6),
    step=st.sampled_from([HOUR / 2, HOUR, 1.5 * HOUR]),
)
def test_paths_agree_with_the_profile_for_any_blocks_rho_and_times(seed: int, rho: float, buckets: int,
                                                                    cuts: list[int], start: float,
                                                                    step: float) -> None:
    cfg = DetectorConfig(weekly_rho=rho, buckets=buckets, max_series=4, window=5, min_history=20)
    rng = np.random.default_rng(seed)
    n = 24 * 7 * 4
    ts = start + np.arange(n) * step
    weekday = np.floor(ts / 86_400.0) % 7 < 5
    block = np.stack([np.where(weekday, 2.0, 0.0) + rng.standard_normal(n), rng.standard_normal(n)])
    block[1, rng.integers(0, n, 5)] = np.nan
    names = ["a", "b"]
    bounds = [0, *sorted(set(cuts)), n]
    results = []
    for engine in ("numba", "numpy"):
        det = AnomalyDetector(cfg, engine=engine)
        results.append(np.concatenate([det.update_many(names, block[:, lo:hi], ts[lo:hi])
                                       for lo, hi in itertools.pairwise(bounds) if hi > lo], axis=1))
    one = scalar(AnomalyDetector(cfg), names, block, ts)
    fast, slow = results
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.array_equal(np.isnan(fast), np.isnan(one))
    assert np.nanmax(np.abs(fast - slow)) < 1e-9
    assert np.nanmax(np.abs(fast - one)) < 1e-6


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_an_evicted_series_starts_its_weekly_state_afresh(engine: str) -> None:
    values, ts = hourly("weekday/weekend", 4, weeks=5)
    cfg = DetectorConfig(weekly_rho=0.9, max_series=1)
    det = AnomalyDetector(cfg, engine=engine)
    det.update_series("a", values, ts)
    det.update_series("b", values[:10], ts[:10])  # evicts "a" (one series at a time)
    again = det.update_series("a", values, ts)
    fresh = AnomalyDetector(cfg, engine=engine).update_series("a", values, ts)
    assert np.array_equal(again, fresh, equal_nan=True)
    det = AnomalyDetector(cfg)  # the scalar path alike
    scalar(det, ["a"], values[None, :], ts)
    det.update("b", 1.0, 0.0)
    fresh_scalar = scalar(AnomalyDetector(cfg), ["a"], values[None, :], ts)
    assert np.array_equal(scalar(det, ["a"], values[None, :], ts), fresh_scalar, equal_nan=True)


@pytest.mark.parametrize("rho", [0.0, -0.5, 1.5, float("nan"), float("inf"), True, "0.9"])
def test_a_bad_weekly_rho_is_refused_naming_the_parameter_and_range(rho: object) -> None:
    with pytest.raises(ValueError, match=r"DetectorConfig\.weekly_rho must be a number in \(0\.0, 1\.0\] or None"):
        DetectorConfig(weekly_rho=rho)  # type: ignore[arg-type]


def test_the_profile_is_off_by_default_and_accepts_its_whole_range() -> None:
    assert DetectorConfig().weekly_rho is None
    assert DetectorConfig(weekly_rho=1).weekly_rho == 1
    assert DetectorConfig(weekly_rho=np.float64(0.5)).weekly_rho.__class__ is float


def test_threads_split_a_large_weekly_block_and_give_the_same_scores() -> None:
    kernel = _kernel.load()
    assert kernel is not None
    rows = 8
    block = np.stack([hourly("weekday/weekend" if i % 2 else "daily", i, weeks=25)[0] for i in range(rows)])
    ts = hourly("daily", 0, weeks=25)[1]
    assert block.size >= PARALLEL_MIN
    names = [f"s{i}" for i in range(rows)]
    expected = AnomalyDetector(WEEKLY, engine="numba").update_many(names, block, ts)
    threaded = AnomalyDetector(WEEKLY, engine="numba", threads=2)
    threaded._kernel = kernel._replace(max_threads=2)  # split even on a 1-CPU machine
    assert np.array_equal(threaded.update_many(names, block, ts), expected, equal_nan=True)
    assert not np.array_equal(expected, AnomalyDetector(OFF, engine="numba").update_many(names, block, ts),
                              equal_nan=True)


def _one_sample(cfg: DetectorConfig, path: str, t: float) -> AnomalyDetector:
    """A detector fed one sample at time ``t`` by ``path`` (series "a"; "numpy tick": "a" and "b")."""
    det = AnomalyDetector(cfg, engine="numba" if path == "numba block" else "numpy")
    if path == "update":
        det.update("a", 1.0, t)
    elif path == "numpy tick":
        det.update_many(["a", "b"], np.ones((2, 1)), np.array([t]))
    else:
        det.update_series("a", np.ones(1), np.array([t]))
    return det


def _week_row_filled(det: AnomalyDetector) -> list[int]:
    """The time-of-week ring rows holding a value (one series: rows 0 .. 7 x buckets - 1)."""
    return np.flatnonzero(det._week.count).tolist()


@pytest.mark.parametrize("path", ["update", "numpy block", "numba block", "numpy tick"])
def test_a_sample_at_an_hours_first_second_lands_in_that_hours_weekly_bucket(path: str) -> None:
    # The time-of-week bucket was int(t % week / week x 168): for 3.6% of whole hours that rounds just below
    # the hour's number, so the hour's first sample joined the previous hour's weekly window on every path.
    # It is the slot's number mod 168 now, exact for whole seconds.
    week = 7 * 86_400.0
    hour = next(k for k in range(1, 10_000) if int(k * HOUR % week / week * 168) != k % 168)
    det = _one_sample(WEEKLY, path, hour * HOUR)
    assert _week_row_filled(det)[0] == hour % 168


@pytest.mark.parametrize("path", ["update", "numpy block", "numba block", "numpy tick"])
def test_a_sample_at_a_buckets_first_second_lands_in_that_daily_bucket(path: str) -> None:
    # The daily bucket had the same arithmetic: with 45 buckets (1,920 s each) two of them began a second late.
    day, buckets = 86_400.0, 45
    j = next(k for k in range(buckets) if int(k * 1920.0 % day / day * buckets) != k)
    det = _one_sample(DetectorConfig(buckets=buckets, max_series=2), path, j * 1920.0 + 3 * day)
    assert np.flatnonzero(det._season.count)[0] == j
