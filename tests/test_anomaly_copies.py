"""A detector pickled or copied mid-stream (a checkpoint, a copy to try something on): the copy scores what
the original goes on to score, bit for bit, on every path, and the two share no state. (pickle.dumps and
copy.deepcopy raised "cannot pickle memoryview objects"; copy.copy gave a second name for the same state.)"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from _anomaly_paths import scalar

from shannon_otel import AnomalyDetector, DetectorConfig

STEP = 600.0
CONFIGS = [
    DetectorConfig(min_history=20, max_series=3),  # 4 series: one is evicted, and comes back
    DetectorConfig(min_history=20, level=6, weekly_rho=0.9, period_s=3_600.0, buckets=4),
]


def block(cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(10.0, 1.0, (4, cols))
    values[0, cols // 2] = 80.0  # a spike
    values[1, cols // 3 :] += 6.0  # a level shift
    values[2, [3, 11]] = [np.nan, np.inf]
    return values


COPIES: dict[str, Callable[[AnomalyDetector], AnomalyDetector]] = {
    "pickle": lambda det: pickle.loads(pickle.dumps(det)),
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("path", ["update", "numpy", "numba"])
@pytest.mark.parametrize("config", CONFIGS)
def test_a_copy_taken_mid_stream_scores_as_the_original_goes_on(how: str, path: str, config: DetectorConfig) -> None:
    names = ["a", "b", "c", "d"]
    values, ts = block(900, seed=3), np.arange(900) * STEP

    def feed(det: AnomalyDetector, cols: slice) -> np.ndarray:
        # three series, then the fourth: with max_series 3 it evicts one, which comes back in the next call
        if path == "update":
            return np.vstack([scalar(det, names[:3], values[:3, cols], ts[cols]),
                              scalar(det, names[3:], values[3:, cols], ts[cols])])
        return np.vstack([det.update_many(names[:3], values[:3, cols], ts[cols]),
                          det.update_many(names[3:], values[3:, cols], ts[cols])])

    original = AnomalyDetector(config, engine="numpy" if path == "update" else path)
    first = feed(original, slice(0, 500))
    assert np.isfinite(first).any()  # past the warm-up: the copy has history to keep
    twin = COPIES[how](original)
    assert twin.series() == original.series() and twin.stats == original.stats
    assert twin.engine == original.engine and twin.config == original.config
    rest = feed(twin, slice(500, None))
    assert np.array_equal(rest, feed(original, slice(500, None)), equal_nan=True)  # the original, untouched
    assert twin.stats == original.stats and twin.series() == original.series()
    assert np.nanmax(rest) >= config.warning  # the level shift or the spike is found after the copy


def test_a_copy_shares_no_state_with_the_original() -> None:
    def fed(det: AnomalyDetector) -> AnomalyDetector:
        for i in range(10):
            det.update("a", 10.0 + i % 3, i * STEP)
        return det

    original = fed(AnomalyDetector(DetectorConfig(min_history=5)))
    twin = copy.copy(original)
    twin.update("b", 1.0, 10 * STEP)
    for i in range(10, 40):
        twin.update("a", 1e6, i * STEP)
    assert original.series() == ["a"] and original.stats.series == 1 and twin.stats.series == 2
    assert original.update("a", 11.0, 10 * STEP) == fed(AnomalyDetector(DetectorConfig(min_history=5))).update(
        "a", 11.0, 10 * STEP)
