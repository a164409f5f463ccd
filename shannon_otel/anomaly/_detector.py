"""The detector: per-series state in preallocated arrays, a scalar path and a block path.

Per sample of a series (both paths compute the same thing; the block path vectorizes it over
series and time):

1. z = |x - mean| / max(std, noise_floor x range) against the last ``window`` values of the
   same seasonal bucket (time of day by default);
2. raw surprise r = 1 - exp(-z^2 / 8) in [0, 1), averaged over the last ``average`` samples;
3. that average is compared with the series' own long-run (exponentially weighted) mean and
   spread of it; p = Gaussian tail probability, score = -log10(p) / 10 in [0, 1];
4. a detection (p < 1e-5) directly after a detection is demoted to p = 1e-3, so one event
   reports once; a value outside the range seen so far (by ``spatial_tolerance``) scores 1.

Not thread-safe: call it from one thread (the event loop for the hook).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from math import expm1, isfinite, sqrt

import numpy as np
import numpy.typing as npt

from . import _scoring as sc
from ._config import DetectorConfig
from ._ring import Rings, floats, ints
from ._scoring import (
    DEMOTED_SCORE,
    MEAN_FLOOR,
    ORDINARY_SCORE,
    SEASON_MIN,
    STD_FLOOR,
    SURPRISE_SCALE,
    Z_RED,
    score1,
    tail1,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class DetectorStats:
    series: int  # series tracked now
    ignored: int  # NaN / inf samples skipped
    evicted: int  # series dropped to respect max_series


class AnomalyDetector:
    """Scores many series online. State is per detector; the config is shared and immutable."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        cfg = self.config = config if config is not None else DetectorConfig()
        cap = cfg.max_series
        self._season = Rings(cap * cfg.buckets, cfg.window)
        self._avg = Rings(cap, cfg.average)
        self._n: I64 = np.zeros(cap, dtype=np.int64)
        self._offset: F64 = np.zeros(cap)
        self._min: F64 = np.full(cap, np.inf)
        self._max: F64 = np.full(cap, -np.inf)
        self._m: F64 = np.zeros(cap)
        self._v: F64 = np.zeros(cap)
        self._red: F64 = np.zeros(cap)
        self._last: F64 = np.full(cap, np.nan)
        self._vn = ints(self._n)
        self._voff, self._vmin, self._vmax, self._vm, self._vv, self._vred, self._vlast = (
            floats(a) for a in (self._offset, self._min, self._max, self._m, self._v, self._red, self._last)
        )
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._ignored = 0
        self._evicted = 0

    # ------------------------------------------------------------------ series registry
    @property
    def stats(self) -> DetectorStats:
        return DetectorStats(len(self._slots), self._ignored, self._evicted)

    def series(self) -> list[str]:
        """Tracked series, least recently updated first."""
        return list(self._slots)

    def last_score(self, series: str) -> float | None:
        """The latest score of ``series``; ``None`` if unknown or still warming up."""
        slot = self._slots.get(series)
        if slot is None:
            return None
        value = self._vlast[slot]
        return None if math.isnan(value) else value

    def _slot(self, series: str) -> int:
        slot = self._slots.get(series)
        if slot is not None:
            self._slots.move_to_end(series)
            return slot
        if len(self._slots) < self.config.max_series:
            slot = len(self._slots)
        else:
            _, slot = self._slots.popitem(last=False)
            self._evicted += 1
            self._reset(slot)
        self._slots[series] = slot
        return slot

    def _reset(self, slot: int) -> None:
        b = self.config.buckets
        self._season.clear(slice(slot * b, (slot + 1) * b))
        self._avg.clear(slice(slot, slot + 1))
        self._n[slot] = 0
        self._offset[slot] = self._m[slot] = self._v[slot] = self._red[slot] = 0.0
        self._min[slot], self._max[slot], self._last[slot] = np.inf, -np.inf, np.nan

    # ------------------------------------------------------------------ scalar path
    def update(self, series: str, value: float, time: float) -> float | None:
        """Feed one sample of ``series`` taken at ``time`` (seconds, e.g. epoch) and score it.

        Returns the score in [0, 1], or ``None`` while the series warms up or when ``value``
        is NaN/inf (such values are counted in :attr:`stats` and change nothing else).
        Raises ``ValueError`` only for a non-finite ``time``; O(1).
        """
        slot = self._slots.get(series)
        if slot is None:
            slot = self._slot(series)
        else:
            self._slots.move_to_end(series)
        if not isfinite(value):
            self._ignored += 1
            return None
        if not isfinite(time):
            raise ValueError(f"time must be a finite number of seconds, got {time!r}")
        cfg = self.config
        n = self._vn[slot] + 1
        self._vn[slot] = n
        if n == 1:
            self._voff[slot] = value
        x = value - self._voff[slot]
        pmin, pmax = self._vmin[slot], self._vmax[slot]
        lo = x if x < pmin else pmin
        hi = x if x > pmax else pmax
        self._vmin[slot], self._vmax[slot] = lo, hi
        buckets = cfg.buckets
        row = slot * buckets + (min(int(time % cfg.period_s / cfg.period_s * buckets), buckets - 1)
                                if buckets > 1 else 0)
        season = self._season
        cnt, s1, s2 = season.stats(row)
        z = 0.0
        if cnt >= SEASON_MIN:
            mean = s1 / cnt
            var = s2 / cnt - mean * mean
            scale = cfg.noise_floor * (hi - lo)
            if var > scale * scale:
                scale = sqrt(var)
            if scale > 0.0:
                z = abs(x - mean) / scale
        season.push(row, x)
        width = self._avg.width
        a = self._avg.push(slot, -expm1(-(z * z) / SURPRISE_SCALE)) / (n if n < width else width)
        if n == 1:
            m = a
            self._vm[slot] = a
            v = 0.0
        else:
            m, v = self._vm[slot], self._vv[slot]
            alpha = cfg.history_rate
            if alpha * n < 1.0:
                alpha = 1.0 / n
            d = a - m
            self._vm[slot] = m + alpha * d
            self._vv[slot] = (1.0 - alpha) * (v + alpha * d * d)
        zl = a - (m if m > MEAN_FLOOR else MEAN_FLOOR)
        if zl <= 0.0:
            score = ORDINARY_SCORE
            self._vred[slot] = 0.0
        else:
            sd = sqrt(v)
            zl /= sd if sd > STD_FLOOR else STD_FLOOR
            if zl > Z_RED:
                score = DEMOTED_SCORE if self._vred[slot] else score1(tail1(zl))
                self._vred[slot] = 1.0
            else:
                score = score1(tail1(zl))
                self._vred[slot] = 0.0
        if pmax >= pmin:  # not the first value
            tol = cfg.spatial_tolerance * (pmax - pmin)
            if x > pmax + tol or x < pmin - tol:
                score = 1.0
        if n < cfg.min_history:
            return None
        self._vlast[slot] = score
        return score

    # ------------------------------------------------------------------ block path
    def update_series(self, series: str, values: npt.ArrayLike, times: npt.ArrayLike) -> F64:
        """Feed many samples of one series, in time order; scores as :meth:`update` would give.

        Returns an array like ``values`` with NaN where :meth:`update` returns ``None``.
        """
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim != 1:
            raise ValueError(f"values must be 1-D, got shape {vals.shape}")
        out: F64 = self.update_many([series], vals[None, :], times)[0]
        return out

    def update_many(self, series: Sequence[str], values: npt.ArrayLike, times: npt.ArrayLike) -> F64:
        """Feed a block: ``values[i, j]`` is the sample of ``series[i]`` at ``times[j]``.

        Vectorized over series and time; equivalent to calling :meth:`update` column by
        column. ``series`` must be distinct. Returns scores shaped like ``values`` (NaN for
        warm-up and NaN/inf inputs). Raises ``ValueError`` on mismatched shapes.
        """
        vals = np.asarray(values, dtype=np.float64)
        ts = np.asarray(times, dtype=np.float64)
        if vals.ndim != 2 or vals.shape[0] != len(series) or ts.shape != (vals.shape[1],):
            raise ValueError(
                f"values must have shape (len(series), len(times)) = ({len(series)}, {ts.size}),"
                f" got {vals.shape}"
            )
        if not np.isfinite(ts).all():
            raise ValueError("times must be finite numbers of seconds")
        if len(set(series)) != len(series):
            raise ValueError("series must be distinct within one update_many call")
        out: F64 = np.full(vals.shape, np.nan)
        if vals.size == 0:
            return out
        slots = np.fromiter((self._slot(s) for s in series), dtype=np.int64, count=len(series))
        finite = np.isfinite(vals)
        clean = finite.all(axis=1)
        if clean.any():
            out[clean] = self._block(slots[clean], vals[clean], ts)
        for i in np.flatnonzero(~clean):  # rare: compress each row on its own
            keep = finite[i]
            self._ignored += int(keep.size - keep.sum())
            if keep.any():
                out[i, keep] = self._block(slots[i : i + 1], vals[i : i + 1, keep], ts[keep])[0]
        return out

    def _block(self, slots: I64, raw: F64, ts: F64) -> F64:
        cfg = self.config
        t_len = raw.shape[1]
        n0 = self._n[slots]
        fresh = n0 == 0
        self._offset[slots[fresh]] = raw[fresh, 0]
        x = raw - self._offset[slots, None]
        n = n0[:, None] + np.arange(1, t_len + 1)
        lo0, hi0 = self._min[slots], self._max[slots]
        inside = bool((x.min(axis=1) >= lo0).all() and (x.max(axis=1) <= hi0).all())
        if inside:  # the common steady state: no new extreme, so no running min/max to build
            lo_end, hi_end = lo0, hi0
            floor = np.broadcast_to((cfg.noise_floor * (hi0 - lo0))[:, None], x.shape)
        else:
            cmin = np.minimum.accumulate(np.concatenate((lo0[:, None], x), axis=1), axis=1)
            cmax = np.maximum.accumulate(np.concatenate((hi0[:, None], x), axis=1), axis=1)
            lo_end, hi_end = cmin[:, -1], cmax[:, -1]
            floor = cfg.noise_floor * (cmax[:, 1:] - cmin[:, 1:])

        buckets = np.minimum((ts % cfg.period_s / cfg.period_s * cfg.buckets).astype(np.int64), cfg.buckets - 1)
        z = np.empty_like(x)
        single = t_len == 1  # one tick across series: O(1) pushes instead of re-windowing
        for g in np.unique(buckets):
            cols = np.flatnonzero(buckets == g)
            xs = x[:, cols]
            rows = slots * cfg.buckets + g
            if single:
                p1, p2, pc = self._season.push_many(rows, xs[:, 0])
                s1, s2, cnt = p1[:, None], p2[:, None], pc[:, None]
            else:
                s1, s2_, cnt = self._season.extend(rows, xs)
                assert s2_ is not None
                s2 = s2_
            safe = np.maximum(cnt, 1)
            mean = s1 / safe
            scale = np.maximum(np.sqrt(np.maximum(s2 / safe - mean * mean, 0.0)), floor[:, cols])
            ok = (cnt >= SEASON_MIN) & (scale > 0.0)
            z[:, cols] = np.where(ok, np.abs(xs - mean) / np.where(ok, scale, 1.0), 0.0)

        raw_surprise = sc.surprise(z)
        if single:
            self._avg.push_many(slots, raw_surprise[:, 0])
            a = (self._avg.s1[slots] / np.minimum(n[:, 0], self._avg.width))[:, None]
        else:
            a1, _, ac = self._avg.extend(slots, raw_surprise, inclusive=True, squares=False)
            a = a1 / ac
        rate = cfg.history_rate
        m0 = np.where(fresh, a[:, 0], self._m[slots])
        v0 = self._v[slots]
        keep: F64 | float
        if n0.min() + 1 >= 1.0 / rate:  # steady state: one constant weight for everything
            alpha: F64 | float = rate
            keep = 1.0 - rate
        else:
            alpha = np.where(n == 1, 0.0, np.maximum(rate, 1.0 / n))
            keep = 1.0 - alpha
        m = sc.linear_scan(keep, alpha * a, m0)
        m_prev = np.concatenate((m0[:, None], m[:, :-1]), axis=1)
        d = a - m_prev
        d *= d
        d *= keep * alpha
        v = sc.linear_scan(keep, d, v0)
        v_prev = np.concatenate((v0[:, None], v[:, :-1]), axis=1)
        np.maximum(m_prev, MEAN_FLOOR, out=m_prev)
        np.sqrt(v_prev, out=v_prev)
        np.maximum(v_prev, STD_FLOOR, out=v_prev)
        zl = a - m_prev
        zl /= v_prev
        np.maximum(zl, 0.0, out=zl)  # only more surprise than usual is anomalous
        red = zl > Z_RED
        prev_red = np.concatenate((self._red[slots, None] > 0.0, red[:, :-1]), axis=1)
        score = sc.score_z(zl)
        score[red & prev_red] = DEMOTED_SCORE
        if not inside:  # a value beyond the range so far can only appear here
            pmin, pmax = cmin[:, :-1], cmax[:, :-1]
            with np.errstate(invalid="ignore"):  # inf - inf before the first value, inf * 0
                tol = cfg.spatial_tolerance * (pmax - pmin)
                spatial = (pmax >= pmin) & ((x > pmax + tol) | (x < pmin - tol))
            score[spatial] = 1.0
        score[n < cfg.min_history] = np.nan

        self._n[slots] = n[:, -1]
        self._min[slots], self._max[slots] = lo_end, hi_end
        self._m[slots], self._v[slots] = m[:, -1], v[:, -1]
        self._red[slots] = red[:, -1]
        last = score[:, -1]
        self._last[slots] = np.where(np.isnan(last), self._last[slots], last)
        return score
