"""The numpy engine's block path: a (series x time) block of clean samples scored in vectorized passes
(the numba engine, ``_engine_numba``, replaces it when numba is installed).

Computes what the scalar path computes (see ``_detector``), with the same formulas; its window sums are
differences of cumulative sums, which round otherwise, more so the longer the block (see ``PIECE``), so its
scores depend on how samples are batched into calls by rounding only. Cost per call: a few dozen passes over
the block plus one pass over each touched seasonal window (the window sums are re-derived from a cumulative
sum, so they never drift). Large intermediates live in per-detector scratch buffers, reused from call to call
instead of reallocated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import _scoring as sc
from ._ring import Rings, Scratch
from ._scoring import (
    MEAN_FLOOR,
    RANGE_RESOLUTION,
    RANGE_SPAN,
    SEASON_MIN,
    STD_FLOOR,
    X_LIMIT,
    slot_length,
    slot_numbers,
)
from ._weekly import weekly_block, weekly_tick

if TYPE_CHECKING:
    from ._config import DetectorConfig
    from ._detector import AnomalyDetector

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Rows = I64 | slice  # ring rows of the block's series: an index array, or a strided slice when contiguous


def _at(slots: I64) -> Rows:
    """``slots`` as a slice when they are consecutive (the usual case), else as they are."""
    first, s_len = int(slots[0]), len(slots)
    if int(slots[-1]) - first == s_len - 1 and (s_len < 3 or (slots[1:] - slots[:-1] == 1).all()):
        return slice(first, first + s_len)
    return slots


def _rows(slots: I64, stride: int, offset: int, contiguous: bool) -> Rows:
    if contiguous:
        first = int(slots[0]) * stride + offset
        return slice(first, first + len(slots) * stride, stride)
    return slots * stride + offset


def column_buckets(ts: F64, cfg: DetectorConfig) -> I64:
    """The seasonal bucket of each time: the number of its bucket-long slot (``period_s / buckets`` each) mod
    ``buckets``, exact for whole seconds when the slot is (``time % period / period x buckets`` put the first
    second of 2 of a 45-bucket day's buckets into the bucket before); the scalar path's arithmetic, vectorized
    (both engines use it)."""
    if cfg.buckets == 1:
        return np.zeros(len(ts), dtype=np.int64)
    out: I64 = np.mod(slot_numbers(ts, slot_length(cfg.period_s, cfg.buckets)), cfg.buckets).astype(np.int64)
    return out


def _groups(ts: F64, det: AnomalyDetector) -> list[tuple[int, slice | I64]]:
    """(bucket, columns) of the block; columns are a slice when they are adjacent (sorted times)."""
    cfg = det.config
    if cfg.buckets == 1:
        return [(0, slice(0, len(ts)))]
    buckets = column_buckets(ts, cfg)
    if buckets[0] == buckets[-1] and (buckets == buckets[0]).all():  # e.g. one tick's samples
        return [(int(buckets[0]), slice(0, len(ts)))]
    order = np.argsort(buckets, kind="stable")  # each bucket's columns stay in time order
    ends = [*(np.flatnonzero(np.diff(buckets[order])) + 1).tolist(), len(ts)]
    out: list[tuple[int, slice | I64]] = []
    start = 0
    for end in ends:
        cols = order[start:end]
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        out.append((int(buckets[lo]), slice(lo, hi) if hi - lo == end - start else cols))
        start = end
    return out


def _seasonal_z(det: AnomalyDetector, slots: I64, contiguous: bool, x: F64, ts: F64, floor: F64, z: F64) -> None:
    """z[:, j] = |x - mean| / max(std, floor) against the seasonal window before x[:, j] (0 while too short)."""
    season, tmp, buckets = det._season, det._scratch, det.config.buckets
    for g, cols in _groups(ts, det):
        fl = floor if floor.shape[1] == 1 else floor[:, cols]
        zc = z[:, cols] if isinstance(cols, slice) else tmp("zc", *x[:, cols].shape)
        _window_z(season, _rows(slots, buckets, g, contiguous), x[:, cols], fl, tmp, zc)
        if not isinstance(cols, slice):
            z[:, cols] = zc


def _step_z(det: AnomalyDetector, at: Rows, x: F64, floor: F64, z: F64) -> None:
    """z[:, j] = max(z[:, j], the z-score of the step x[:, j] - x[:, j - 1] against the steps before it)."""
    tmp = det._scratch
    steps = tmp("steps", *x.shape)
    np.subtract(x[:, 0], det._prev[at], out=steps[:, 0])  # 0 for a new series: x = 0 = prev
    np.subtract(x[:, 1:], x[:, :-1], out=steps[:, 1:])
    det._prev[at] = x[:, -1]
    zs = tmp("zs", *x.shape)
    _window_z(det._steps, at, steps, floor, tmp, zs)
    np.maximum(z, zs, out=z)


def _window_z(ring: Rings, rows: Rows, xs: F64, fl: F64, tmp: Scratch, zc: F64) -> None:
    """zc = |xs - mean| / max(std, fl) against ``rows``' windows before each value (0 while too short);
    pushes ``xs`` into them."""
    s1, s2, cnt = ring.window_sums(rows, xs, tmp, inclusive=False, squares=True)
    assert s2 is not None
    div: I64 | int = ring.width if cnt is None else np.maximum(cnt, 1)
    mean = np.divide(s1, div, out=s1)
    np.divide(s2, div, out=s2)
    sq = tmp("mean2", *s1.shape)
    np.multiply(mean, mean, out=sq)
    scale = np.subtract(s2, sq, out=s2)
    np.maximum(scale, 0.0, out=scale)
    np.sqrt(scale, out=scale)
    np.maximum(scale, fl, out=scale)
    np.subtract(xs, mean, out=zc)
    np.abs(zc, out=zc)
    ok = None if cnt is None else cnt >= SEASON_MIN
    if scale.min() > 0.0 and ok is None:
        np.divide(zc, scale, out=zc)
    else:
        ok = scale > 0.0 if ok is None else ok & (scale > 0.0)
        np.divide(zc, np.where(ok, scale, 1.0), out=zc)
        zc[~ok] = 0.0


def _shifted(tmp: Scratch, name: str, first: F64, s_len: int, t_len: int) -> F64:
    """A (s_len, t_len + 1) buffer whose column 0 is ``first``: column j + 1 will hold step j."""
    buf = tmp(name, s_len, t_len + 1)
    buf[:, 0] = first
    return buf


# The most columns the detector hands score_block at once (AnomalyDetector._score splits longer blocks, scoring
# them exactly as consecutive calls of PIECE columns would): the window sums are differences of cumulative sums
# over "window + block", whose rounding grows with the block (a rising series of 4e6 samples scored in one block
# differed from the numba engine by 1.4e-4, in pieces by 9e-7), and a piece's scratch buffers stay cache-sized.
PIECE = 16_384


def score_block(det: AnomalyDetector, slots: I64, raw: F64, ts: F64) -> F64:
    """Scores of ``raw[i, j]`` (finite) of series slot ``slots[i]`` at ``ts[j]``; advances the state."""
    cfg, tmp = det.config, det._scratch
    s_len, t_len = raw.shape
    if t_len == 1:
        return _score_tick(det, slots, raw, ts)
    at = _at(slots)
    contiguous = isinstance(at, slice)
    n0 = det._n[at]
    fresh = n0 == 0
    if fresh.any():
        det._offset[slots[fresh]] = raw[fresh, 0]
    with np.errstate(over="ignore"):  # 1e308 - -1e308: clamped to X_LIMIT below
        x = np.subtract(raw, det._offset[at, None], out=tmp("x", s_len, t_len))
    lo0, hi0 = det._min[at], det._max[at]
    x_lo, x_hi = x.min(axis=1), x.max(axis=1)
    if x_lo.min() < -X_LIMIT or x_hi.max() > X_LIMIT:  # rare: as the scalar path
        np.clip(x, -X_LIMIT, X_LIMIT, out=x)
        x_lo, x_hi = np.maximum(x_lo, -X_LIMIT), np.minimum(x_hi, X_LIMIT)
    inside = bool((x_lo >= lo0).all() and (x_hi <= hi0).all())
    if inside:  # the common steady state: no new extreme, so no running min/max to build
        lo_end, hi_end = lo0, hi0
        floor = (cfg.noise_floor * (hi0 - lo0))[:, None]
    else:
        cmin = np.minimum.accumulate(np.concatenate((lo0[:, None], x), axis=1), axis=1)
        cmax = np.maximum.accumulate(np.concatenate((hi0[:, None], x), axis=1), axis=1)
        lo_end, hi_end = cmin[:, -1], cmax[:, -1]
        floor = cfg.noise_floor * (cmax[:, 1:] - cmin[:, 1:])

    if cfg.range_rate:  # the floor's range forgets (DetectorConfig.range_rate)
        flo, fhi = envelope(x, det._fmin[at], det._fmax[at], cfg.range_rate)
        det._fmin[at], det._fmax[at] = flo[:, -1], fhi[:, -1]
        span = np.subtract(fhi, flo, out=fhi)
        span *= RANGE_SPAN
        span *= cfg.noise_floor
        lows, highs = (lo0[:, None], hi0[:, None]) if inside else (cmin[:, 1:], cmax[:, 1:])
        least = np.maximum(-lows, highs)  # as the scalar path: RANGE_RESOLUTION x (|offset| + the larger end)
        least += np.abs(det._offset[at])[:, None]
        least *= RANGE_RESOLUTION
        np.maximum(span, least, out=span)
        floor = np.minimum(span, floor, out=span)
    z = tmp("z", s_len, t_len)
    _seasonal_z(det, slots, contiguous, x, ts, floor, z)
    if det._wrho > 0.0:
        weekly_block(det, slots, x, ts, floor, z)
    _step_z(det, at, x, floor, z)
    with np.errstate(over="ignore"):  # z beyond 1e154 (noise_floor 0: a spread of 1e-150): inf, surprise 1
        r = np.multiply(z, z, out=z)  # raw surprise 1 - exp(-z^2 / 8), as sc.surprise
    np.multiply(r, -1.0 / sc.SURPRISE_SCALE, out=r)
    np.expm1(r, out=r)
    np.negative(r, out=r)
    _sharpen(r, cfg.sharpness)
    a, _, ac = det._avg.window_sums(at, r, tmp, inclusive=True, squares=False)
    np.divide(a, det._avg.width if ac is None else ac, out=a)

    rate = cfg.history_rate
    n_min = int(n0.min())
    m_all = _shifted(tmp, "m", np.where(fresh, a[:, 0], det._m[at]), s_len, t_len)
    v_all = _shifted(tmp, "v", det._v[at], s_len, t_len)
    keep: F64 | float
    if n_min + 1 >= 1.0 / rate:  # steady state: one constant weight for everything
        alpha: F64 | float = rate
        keep = 1.0 - rate
        u = np.multiply(a, rate, out=tmp("u", s_len, t_len))
    else:
        n = n0[:, None] + np.arange(1, t_len + 1)
        alpha = np.where(n == 1, 0.0, np.maximum(rate, 1.0 / n))
        keep = 1.0 - alpha
        u = alpha * a
    sc.linear_scan(keep, u, m_all[:, 0], out=m_all[:, 1:])
    m_prev = m_all[:, :-1]
    d = np.subtract(a, m_prev, out=u)
    np.multiply(d, d, out=d)
    np.multiply(d, keep * alpha, out=d)
    sc.linear_scan(keep, d, v_all[:, 0], out=v_all[:, 1:])
    m_end, v_end = m_all[:, -1].copy(), v_all[:, -1].copy()
    v_prev = v_all[:, :-1]
    np.maximum(m_prev, MEAN_FLOOR, out=m_prev)
    np.sqrt(v_prev, out=v_prev)
    np.maximum(v_prev, STD_FLOOR, out=v_prev)
    zl = np.subtract(a, m_prev, out=a)
    np.divide(zl, v_prev, out=zl)
    np.maximum(zl, 0.0, out=zl)  # only more surprise than usual is anomalous
    if cfg.level:
        _level_z(det, at, fresh, x, floor, keep, alpha, zl)
    hit = zl > det._z_red
    strong = (zl > det._z_crit) & hit  # critical only as a detection (a warning at most the least score:
    # no likelihood detects, but critical may be reached; recorded, it demoted the next sample beyond the range)
    score = sc.score_z(zl, out=np.empty((s_len, t_len)), nonnegative=True)
    spatial = None
    if not inside:  # a value beyond the range so far can only appear here
        pmin, pmax = cmin[:, :-1], cmax[:, :-1]
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf before the first value, inf * 0
            tol = cfg.spatial_tolerance * (pmax - pmin) + RANGE_RESOLUTION * (  # values offset by the first one
                np.abs(det._offset[at, None]) + np.maximum(np.abs(pmax), np.abs(pmin)))
            spatial = (pmax >= pmin) & ((x > pmax + tol) | (x < pmin - tol))
        score[spatial] = 1.0
        hit |= spatial
        strong |= spatial
    if n_min + 1 < cfg.min_history:  # a warm-up sample (not reported) is no detection
        hit &= n0[:, None] + np.arange(1, t_len + 1) >= cfg.min_history
        strong &= hit
    hit_end, crit_end = _refractory(det, at, n0, hit, strong, score, cfg.refractory)
    if n_min + 1 < cfg.min_history:
        score[n0[:, None] + np.arange(1, t_len + 1) < cfg.min_history] = np.nan

    det._n[at] = n0 + t_len
    det._min[at], det._max[at] = lo_end, hi_end
    det._m[at], det._v[at] = m_end, v_end
    det._hit[at], det._crit[at] = hit_end, crit_end
    last = score[:, -1]
    det._last[at] = np.where(np.isnan(last), det._last[at], last)
    return score


def envelope(x: F64, lo0: F64, hi0: F64, rate: float, chunk: int = 256) -> tuple[F64, F64]:
    """The forgetting range's ends (``DetectorConfig.range_rate``) along axis 1, vectorized: lo[:, t] =
    min(x[:, t], (1 - rate) lo[:, t-1] + rate x[:, t]) from lo[:, -1] = lo0, hi alike with max from hi0.

    Closed form per chunk: with P_t = (1 - rate)^t and w_t = y_t / P_t, w_t = pick(x_t / P_t, w_{t-1} +
    rate x_t / P_t), so w_t = B_t + pick(w_0, pick-accumulate of x_s / P_s - B_s) with B_t the running
    sum of rate x_s / P_s (shared by both ends). Chunks keep 1 / P_t <= 2^256 for rate <= 0.5; equal to
    the sequential recurrence up to rounding.
    """
    lo, hi = np.empty_like(x), np.empty_like(x)
    keep = 1.0 - rate
    p_all = keep ** np.arange(1, min(chunk, x.shape[1]) + 1)
    prev_lo, prev_hi = lo0, hi0
    for start in range(0, x.shape[1], chunk):
        xc = x[:, start : start + chunk]
        p = p_all[: xc.shape[1]]
        a = xc / p
        b = np.multiply(a, rate)
        np.cumsum(b, axis=1, out=b)
        np.subtract(a, b, out=a)  # x_s / P_s - B_s
        for out, prev, pick in ((lo, prev_lo, np.minimum), (hi, prev_hi, np.maximum)):
            seg = out[:, start : start + chunk]
            pick.accumulate(a, axis=1, out=seg)
            pick(seg, prev[:, None], out=seg)
            seg += b
            seg *= p
            pick(seg, xc, out=seg)  # exactly x where x is the new extreme (rounding aside otherwise)
        last = start + xc.shape[1] - 1
        prev_lo, prev_hi = lo[:, last], hi[:, last]
    return lo, hi


def _latest(n: F64, hit: npt.NDArray[np.bool_], before: F64) -> F64:
    """The sample number of the latest ``hit`` up to each sample (``before``: the latest before the block)."""
    last = np.where(hit, n, -np.inf)
    np.maximum(last[:, 0], before, out=last[:, 0])
    np.maximum.accumulate(last, axis=1, out=last)
    return last


def _refractory(det: AnomalyDetector, at: Rows, n0: I64, hit: npt.NDArray[np.bool_],
                strong: npt.NDArray[np.bool_], score: F64, refractory: int) -> tuple[F64, F64]:
    """Demote (in ``score``) each detection (``hit``) directly after a detection or within ``refractory``
    samples after a critical one (``strong``); returns the sample numbers of each series' last detection and
    last critical one after the block."""
    hit0, crit0 = det._hit[at], det._crit[at]
    if not hit.any():
        return hit0, crit0
    n = (n0[:, None] + np.arange(1, hit.shape[1] + 1)).astype(np.float64)  # each sample's number
    last, crit = _latest(n, hit, hit0), _latest(n, strong, crit0)
    prev = np.empty_like(last)  # the latest (critical) detection before each sample
    prev[:, 0], prev[:, 1:] = hit0, last[:, :-1]
    demote = n - prev <= 1.0
    prev[:, 0], prev[:, 1:] = crit0, crit[:, :-1]
    demote |= n - prev <= refractory
    demote &= hit
    np.copyto(score, det._demoted, where=demote)
    return last[:, -1].copy(), crit[:, -1].copy()


def _level_z(det: AnomalyDetector, at: Rows, fresh: npt.NDArray[np.bool_], x: F64, floor: F64,
             keep: F64 | float, alpha: F64 | float, zl: F64) -> None:
    """zl = max(zl, level z-score) per value (``DetectorConfig.level``); advances the level state.

    The long-run mean and variance of the values are the scans the surprise's use, with the same
    weights; the level window sums come from its ring (own scratch: ``zl`` lives in the main one).
    """
    tmp = det._level_scratch
    s_len, t_len = x.shape
    lm_all = _shifted(tmp, "lm", np.where(fresh, x[:, 0], det._lm[at]), s_len, t_len)
    lv_all = _shifted(tmp, "lv", det._lv[at], s_len, t_len)
    u = np.multiply(x, alpha, out=tmp("lu", s_len, t_len))
    sc.linear_scan(keep, u, lm_all[:, 0], out=lm_all[:, 1:])
    lm_prev = lm_all[:, :-1]
    d = np.subtract(x, lm_prev, out=u)
    e = np.copy(d)
    np.multiply(d, d, out=d)
    np.multiply(d, keep * alpha, out=d)
    sc.linear_scan(keep, d, lv_all[:, 0], out=lv_all[:, 1:])
    det._lm[at], det._lv[at] = lm_all[:, -1], lv_all[:, -1]
    scale = lv_all[:, :-1]
    np.sqrt(scale, out=scale)
    np.maximum(scale, floor, out=scale)
    ok = scale > 0.0
    np.divide(e, np.where(ok, scale, 1.0), out=e)
    e[~ok] = 0.0
    np.clip(e, -det.config.level_clip, det.config.level_clip, out=e)
    total, _, cnt = det._level.window_sums(at, e, tmp, inclusive=True, squares=False)
    _sides(total, det.config.level_sides)
    total /= np.sqrt(det._level.width if cnt is None else cnt)
    np.maximum(zl, total, out=zl)


def _sides(total: F64, sides: int) -> None:
    """The level window's sums as evidence, in place: |sum| counting both ways, or only a rise."""
    if sides == 2:
        np.abs(total, out=total)
    else:
        np.maximum(total, 0.0, out=total)


def _sharpen(r: F64, sharpness: float) -> None:
    """r = r ** sharpness in place (a product for the default 2: pow is several times slower)."""
    if sharpness == 2.0:
        np.multiply(r, r, out=r)
    elif sharpness != 1.0:
        np.power(r, sharpness, out=r)


def _scan1(keep: F64 | float, u: F64, y0: F64) -> F64:
    """One step of :func:`sc.linear_scan` on vectors, with its exact rounding: (u / p + y0) * p."""
    p = keep if isinstance(keep, float) else np.exp(np.log(keep))
    out: F64 = (u / p + y0) * p
    return out


def _score_tick(det: AnomalyDetector, slots: I64, raw: F64, ts: F64) -> F64:
    """:func:`score_block` for one sample per series: O(1) ring pushes on plain vectors."""
    cfg = det.config
    at = _at(slots)
    n0 = det._n[at]
    n = n0 + 1
    fresh = n0 == 0
    if fresh.any():
        det._offset[slots[fresh]] = raw[fresh, 0]
    with np.errstate(over="ignore"):
        x = raw[:, 0] - det._offset[at]
    np.clip(x, -X_LIMIT, X_LIMIT, out=x)  # as the scalar path
    lo0, hi0 = det._min[at], det._max[at]
    inside = bool((x >= lo0).all() and (x <= hi0).all())
    lo_end, hi_end = (lo0, hi0) if inside else (np.minimum(lo0, x), np.maximum(hi0, x))
    r_rate = cfg.range_rate
    if r_rate:  # the floor's range forgets, as the scalar path
        r_keep = 1.0 - r_rate
        flo = np.minimum(x, r_keep * det._fmin[at] + r_rate * x)
        fhi = np.maximum(x, r_keep * det._fmax[at] + r_rate * x)
        det._fmin[at], det._fmax[at] = flo, fhi
        least = RANGE_RESOLUTION * (np.abs(det._offset[at]) + np.maximum(-lo_end, hi_end))  # as the scalar path
        span = np.maximum(cfg.noise_floor * (RANGE_SPAN * (fhi - flo)), least)
        floor = np.minimum(span, cfg.noise_floor * (hi_end - lo_end))
    else:
        floor = cfg.noise_floor * (hi_end - lo_end)

    g = 0
    if cfg.buckets > 1:  # as _groups, on the one time
        g = int(column_buckets(ts[:1], cfg)[0])
    s1, s2, cnt = det._season.push_many(_rows(slots, cfg.buckets, g, isinstance(at, slice)), x)
    z = _tick_z(x, s1, s2, cnt, floor, det._season.width)
    if det._wrho > 0.0:
        weekly_tick(det, slots, at, x, float(ts[0]), floor, z)
    step = x - det._prev[at]
    det._prev[at] = x
    s1, s2, cnt = det._steps.push_many(at, step)
    np.maximum(z, _tick_z(step, s1, s2, cnt, floor, det._steps.width), out=z)
    avg = det._avg
    r = sc.surprise(z)
    _sharpen(r, cfg.sharpness)
    avg.push_many(at, r)
    a = avg.s1[at] / np.minimum(n, avg.width)

    rate = cfg.history_rate
    m0 = np.where(fresh, a, det._m[at])
    v0 = det._v[at]
    keep: F64 | float
    if int(n0.min()) + 1 >= 1.0 / rate:
        alpha: F64 | float = rate
        keep = 1.0 - rate
    else:
        alpha = np.where(n == 1, 0.0, np.maximum(rate, 1.0 / n))
        keep = 1.0 - alpha
    m = _scan1(keep, alpha * a, m0)
    d = a - m0
    d *= d
    d *= keep * alpha
    v = _scan1(keep, d, v0)
    zl = a - np.maximum(m0, MEAN_FLOOR)
    zl /= np.maximum(np.sqrt(v0), STD_FLOOR)
    np.maximum(zl, 0.0, out=zl)
    if cfg.level:
        lm0 = np.where(fresh, x, det._lm[at])
        lv0 = det._lv[at]
        dl = x - lm0
        scale = np.maximum(np.sqrt(lv0), floor)
        e = np.where(scale > 0.0, dl / np.where(scale > 0.0, scale, 1.0), 0.0)
        np.clip(e, -cfg.level_clip, cfg.level_clip, out=e)
        level = det._level
        level.push_many(at, e)
        total = level.s1[at]  # new arrays below: s1 (maybe a view) is the ring's state
        total = np.abs(total) if cfg.level_sides == 2 else np.maximum(total, 0.0)
        np.maximum(zl, total / np.sqrt(np.minimum(n, level.width)), out=zl)
        det._lm[at] = _scan1(keep, alpha * x, lm0)
        dl *= dl
        dl *= keep * alpha
        det._lv[at] = _scan1(keep, dl, lv0)
    hit = zl > det._z_red
    strong = zl > det._z_crit if hit.any() else None  # before score_z overwrites zl; None: no detection
    score = sc.score_z(zl, out=zl, nonnegative=True)
    if not inside:
        with np.errstate(invalid="ignore", over="ignore"):
            tol = cfg.spatial_tolerance * (hi0 - lo0) + RANGE_RESOLUTION * (  # values offset by the first one
                np.abs(det._offset[at]) + np.maximum(np.abs(hi0), np.abs(lo0)))
            spatial = (hi0 >= lo0) & ((x > hi0 + tol) | (x < lo0 - tol))
        score[spatial] = 1.0
        hit |= spatial
        strong = spatial if strong is None else strong | spatial
    warm = int(n.min()) < cfg.min_history
    if strong is not None:  # rare: demoted directly after a detection or within refractory samples after a critical one
        if warm:
            hit &= n >= cfg.min_history  # a warm-up sample (not reported) is no detection
        strong &= hit
        hit0, crit0 = det._hit[at], det._crit[at]
        np.copyto(score, det._demoted, where=hit & ((n - hit0 <= 1) | (n - crit0 <= cfg.refractory)))
        det._hit[at], det._crit[at] = np.where(hit, n, hit0), np.where(strong, n, crit0)
    if warm:
        score[n < cfg.min_history] = np.nan

    det._n[at] = n
    det._min[at], det._max[at] = lo_end, hi_end
    det._m[at], det._v[at] = m, v
    det._last[at] = np.where(np.isnan(score), det._last[at], score)
    return score[:, None]


def _tick_z(x: F64, s1: F64, s2: F64, cnt: I64, floor: F64, width: int) -> F64:
    """|x - mean| / max(std, floor) of one value per row against its window's stats (0 while too short)."""
    full = int(cnt.min()) == width  # then dividing by the width is the same
    safe: I64 | int = width if full else np.maximum(cnt, 1)
    mean = s1 / safe
    scale = np.maximum(np.sqrt(np.maximum(s2 / safe - mean * mean, 0.0)), floor)
    if full and scale.min() > 0.0:
        z: F64 = np.abs(x - mean) / scale
        return z
    ok = (cnt >= SEASON_MIN) & (scale > 0.0)
    out: F64 = np.where(ok, np.abs(x - mean) / np.where(ok, scale, 1.0), 0.0)
    return out
