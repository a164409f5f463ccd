"""The weekly profile (``DetectorConfig.weekly_rho``, opt-in): a time-of-week seasonal window beside the daily
one, used once a causal per-series test finds a weekly cycle.

Every path computes the same thing: ``AnomalyDetector._weekly_z`` (one sample; the numpy engine's block path
calls it sample by sample, :func:`weekly_block`), :func:`weekly_tick` (one sample of many series, vectorized) and
the numba kernel's pass 1c (``_engine_numba.score_rows``). The test: the values of each bucket-long slot of time
(``period_s / buckets``, an hour by default) are averaged as they arrive; when a slot closes, its mean's squared
difference from the mean of the slot one day (``buckets`` slots) and one week (7 x ``buckets``) before it is
added to that lag's sum, if that slot had values. The profile counts once there are at least two weeks of
week-apart pairs and their mean squared difference is below ``weekly_rho`` x the day-apart one; then a
sample's seasonal z-score is the smaller of its daily and its weekly one. O(1) per sample: slot means are kept
at slot number mod 7 x ``buckets`` with the slot number they belong to, so a gap needs no filling; a sample's
time-of-week bucket is its slot's number mod 7 x ``buckets`` too (exact for whole seconds, so no engine rounds a
sample at a bucket's first second into the one before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._scoring import SEASON_MIN, slot_numbers

if TYPE_CHECKING:
    from ._detector import AnomalyDetector

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# columns of AnomalyDetector._wstate, one row per series
WEEK_SLOT = 0  # the open slot's number (floor(time / slot length)); -inf before the first sample
WEEK_SUM = 1  # the open slot's sum and count of values
WEEK_COUNT = 2
WEEK_DAY = 3  # sum of squared differences of slot means one day apart, then (WEEK_DAY + 1) their count
WEEK_WEEK = 5  # ... one week apart, then (WEEK_WEEK + 1) their count
WEEK_COLUMNS = 7
MIN_WEEKS = 2.0  # weeks of week-apart pairs before the profile may count (so never before the third week)


def weekly_tick(det: AnomalyDetector, slots: I64, rows: I64 | slice, x: F64, t: float, floor: F64,
                z: F64) -> None:
    """``z`` (the daily seasonal z-scores of ``x``, one sample per series at time ``t``; ``rows`` their state
    rows, ``slots`` the same as an index array) lowered in place to the weekly z-score where the series' test
    holds and that is smaller; advances the weekly state."""
    width = det._wmeans.shape[1]
    q = float(slot_numbers(np.array([t]), det._wspan)[0])
    st = det._wstate[rows]  # a view for a slice (written in place), a copy otherwise (written back below)
    adv = q > st[:, WEEK_SLOT]
    if adv.any():
        close = adv & (st[:, WEEK_COUNT] > 0.0)
        if close.any():
            which = slots[close]
            cur = st[close, WEEK_SLOT]
            mean = st[close, WEEK_SUM] / st[close, WEEK_COUNT]
            for lag, col in ((width // 7, WEEK_DAY), (width, WEEK_WEEK)):
                back = cur - lag
                at = np.mod(back, width).astype(np.int64)
                ok = det._wids[which, at] == back
                dm = mean - det._wmeans[which, at]
                dm *= dm
                st[close, col] += np.where(ok, dm, 0.0)  # + 0.0: unchanged, as the scalar path's skipped add
                st[close, col + 1] += ok
            at = np.mod(cur, width).astype(np.int64)
            det._wmeans[which, at], det._wids[which, at] = mean, cur
        st[adv, WEEK_SLOT] = q
        st[adv, WEEK_SUM] = 0.0
        st[adv, WEEK_COUNT] = 0.0
    st[:, WEEK_SUM] += x
    st[:, WEEK_COUNT] += 1.0
    pairs, days = st[:, WEEK_WEEK + 1], st[:, WEEK_DAY + 1]
    on = (pairs >= MIN_WEEKS * width) & (
        st[:, WEEK_WEEK] / np.maximum(pairs, 1.0) < det._wrho * st[:, WEEK_DAY] / np.maximum(days, 1.0))
    det._wstate[rows] = st
    bucket = int(q % width)  # the time-of-week bucket: the slot's number mod 7 x buckets
    ring = det._week
    wrows: I64 | slice = slots * width + bucket
    if isinstance(rows, slice):
        wrows = slice(rows.start * width + bucket, rows.stop * width + bucket, width)
    s1, s2, cnt = ring.push_many(wrows, x)
    use = on & (cnt >= SEASON_MIN)
    if use.any():
        safe = np.maximum(cnt, 1)
        mean_w = s1 / safe
        scale = np.maximum(np.sqrt(np.maximum(s2 / safe - mean_w * mean_w, 0.0)), floor)
        zw = np.where(scale > 0.0, np.abs(x - mean_w) / np.where(scale > 0.0, scale, 1.0), 0.0)
        np.copyto(z, np.minimum(z, zw), where=use)


def weekly_block(det: AnomalyDetector, slots: I64, x: F64, ts: F64, floor: F64, z: F64) -> None:
    """:func:`weekly_tick` for a block (``x[i, j]`` of series slot ``slots[i]`` at ``ts[j]``; ``floor`` one
    column or one per sample): the test is sequential in time, so each sample goes through the scalar path's
    ``_weekly_z`` (on Python floats: ~2 us a sample, about the numpy engine's own speed for one series)."""
    weekly_z = det._weekly_z
    times = ts.tolist()
    for i, slot in enumerate(slots.tolist()):
        floors = floor[i].tolist()
        if len(floors) == 1:
            floors *= len(times)
        z[i] = [weekly_z(slot, xi, t, zi, fl)
                for xi, t, zi, fl in zip(x[i].tolist(), times, z[i].tolist(), floors, strict=True)]
