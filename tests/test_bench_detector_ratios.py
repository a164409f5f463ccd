"""The detector benchmark's JSON gives each rate as a ratio to the same run's naive baseline."""

from __future__ import annotations

from benchmarks.detector import vs_naive  # importable through pytest's pythonpath = ["."]


def test_each_rate_is_divided_by_the_same_runs_naive_rate() -> None:
    got = vs_naive({"naive": 4_000.0, "single_series_batch": 10_000_000.0, "per_sample_calls": 130_000.0})
    assert got == {"single_series_batch": 2500.0, "per_sample_calls": 32.5}


def test_a_missing_rate_or_baseline_is_none_not_a_number() -> None:
    assert vs_naive({"naive": 2_000.0, "river": None}) == {"river": None}
    assert vs_naive({"naive": None, "many_series": 5e7}) == {"many_series": None}
    assert vs_naive({"naive": 0.0, "many_series": 5e7}) == {"many_series": None}
