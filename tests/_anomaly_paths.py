"""The detector's one-sample path over a block, for tests comparing it with the block paths."""

from __future__ import annotations

import numpy as np

from shannon_otel.anomaly import AnomalyDetector


def scalar(det: AnomalyDetector, names: list[str], block: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """``block`` (one row per series of ``names``, one column per time of ``ts``) fed through ``update()`` one
    sample at a time, time by time; NaN where it gave no score."""
    out = np.full(block.shape, np.nan)
    for j, t in enumerate(ts.tolist()):
        for i, name in enumerate(names):
            got = det.update(name, float(block[i, j]), t)
            if got is not None:
                out[i, j] = got
    return out
