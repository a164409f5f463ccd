"""Scoring math shared by the scalar and the block paths of the detector.

The score of a sample is ``-log10(p) / 10`` clipped to [0, 1], where ``p`` is the tail
probability that the recent average surprise of its series is as high as it is, given that
series' own long-run surprise distribution (Numenta's "anomaly likelihood" idea, computed
here from a cheap seasonal z-score instead of an HTM). So 0.5 means p = 1e-5 and 1.0 means
p <= 1e-10 or a value outside everything seen so far.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

P_FLOOR = 1e-10  # score 1.0
RED_P = 1e-5  # score 0.5: a first detection
DEMOTED_P = 1e-3  # score ~0.3: a repeat of the previous sample's detection
MEAN_FLOOR = 0.03  # long-run surprise is never assumed lower than this...
STD_FLOOR = math.sqrt(3e-4)  # ...nor steadier than this, so a quiet series is not hair-trigger
SEASON_MIN = 3  # values needed in a seasonal bucket before it can surprise
SURPRISE_SCALE = 8.0  # raw surprise 1 - exp(-z^2 / 8): z = 2 gives 0.39, z = 4 gives 0.86
# A value enters the statistics at most this far from its series' first value (further is clamped to
# it; 1e308 - -1e308 is no float): sums of squared steps (2 X_LIMIT each) over any window, the block
# path's cumulative sums over any block and its long-run scans (1 / keep^256 <= 2^256) stay finite.
X_LIMIT = 1e100
# With DetectorConfig.range_rate > 0 the noise floor's range is the range of all values seen, but at most
# this many times the forgetting range: an outlier no longer widens it for good, and the usual range of a
# series (within this factor of its recent one) floors it as before.
RANGE_SPAN = 10.0
# The range rule's resolution: a value within this fraction of the range's larger end (in magnitude) of the
# range is inside it, so a constant series' rounding (0.1 summed in another order: 0.09999999999999999) is
# no value beyond a zero-width range; far below any real change (1 in 10^9).
RANGE_RESOLUTION = 1e-9
_LOG_P_FLOOR = math.log10(P_FLOOR)
# The largest slot number of a time (see slot_numbers): a finite time over a tiny slot length (period_s 1e-300, or
# a time of 1e300 over 1e-9 s slots) is a number beyond any float, which no path can put in a bucket.
SLOT_LIMIT = sys.float_info.max


def slot_length(period_s: float, buckets: int) -> float:
    """The length of one seasonal bucket's slot of time, ``period_s / buckets``, but never 0 (a period of 5e-324 s
    over 24 buckets is): every time is divided by it."""
    return max(period_s / buckets, math.ulp(0.0))


def slot_numbers(ts: F64, span: float) -> F64:
    """The number of the ``span``-long slot of each time, ``floor(t / span)``, held within +-SLOT_LIMIT (a time
    whose slot number is beyond any float is in the last slot of its sign); the one-sample paths write out the
    same operations."""
    if span >= 1.0:  # finite times over it cannot overflow (np.errstate costs ~2 us a call)
        q: F64 = np.divide(ts, span)
    else:
        with np.errstate(over="ignore"):
            q = np.divide(ts, span)
    np.minimum(q, SLOT_LIMIT, out=q)  # np.clip's Python wrappers cost more than the two ufuncs (NaN stays NaN)
    np.maximum(q, -SLOT_LIMIT, out=q)
    return np.floor(q, out=q)


def surprise(z: F64) -> F64:
    """Raw surprise in [0, 1] of seasonal z-scores (vectorized); a z beyond 1e154 (its square no float) gives 1,
    without numpy's overflow warning, as the one-sample path's float arithmetic does."""
    with np.errstate(over="ignore"):
        out: F64 = -np.expm1(-(z * z) / SURPRISE_SCALE)
    return out


def tail1(z: float) -> float:
    return 0.5 * math.erfc(abs(z) / math.sqrt(2.0))


def score1(p: float) -> float:
    return min(-math.log10(p + P_FLOOR) / -_LOG_P_FLOOR, 1.0)


def _table() -> tuple[F64, float]:
    # score1(tail1(z)) on a grid up to z = 9, where it is within 1e-8 of 1.0.
    step = 1.0 / 256.0
    grid = np.arange(0.0, 9.0 + 2 * step, step)
    return np.array([score1(tail1(float(g))) for g in grid]), step


SCORE_TABLE, STEP = _table()
ZMAX = (len(SCORE_TABLE) - 2) * STEP
SCORE_DIFF = SCORE_TABLE[1:] - SCORE_TABLE[:-1]
Z_RED = 4.264890793922825  # Q(Z_RED) = RED_P


def red_z(warning: float) -> float:
    """The likelihood z-score that scores ``warning`` (``score1(tail1(z))``): a detection above it
    starts an event, and one directly after it is demoted (``inf`` when no z-score reaches it, and when every
    one does: a ``warning`` at most ORDINARY_SCORE, the least score, reports every sample, and no likelihood
    tells a detection to demote the next from an ordinary sample; the bisection gave ~1e-59 there, and whether
    a sample was a detection hung on the rounding of a z-score of 0, which differs between the engines)."""
    target = 10.0 ** (-10.0 * warning) - P_FLOOR
    if target <= 0.0 or target >= 0.5:  # tail1(0) = 0.5
        return math.inf
    lo, hi = 0.0, 40.0
    for _ in range(200):  # bisection: tail1 is decreasing in z
        mid = 0.5 * (lo + hi)
        if tail1(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return hi


def score_z(z: F64, out: F64 | None = None, *, nonnegative: bool = False) -> F64:
    """score_of(tail(z)) for |z| (vectorized) by linear interpolation in a table (error < 1e-6).

    ``out`` receives the scores (it may be ``z``); ``nonnegative`` promises z >= 0 (skips |z|).
    """
    pos = np.minimum(z if nonnegative else np.abs(z), ZMAX, out=out)
    pos *= 1.0 / STEP
    idx = pos.astype(np.intp)
    frac = np.subtract(pos, idx, out=pos)
    lo = SCORE_TABLE.take(idx)
    frac *= SCORE_DIFF.take(idx)  # = SCORE_TABLE[idx + 1] - lo, bit for bit
    res: F64 = np.add(lo, frac, out=frac)
    return res


def linear_scan(coef: F64 | float, u: F64, y0: F64, chunk: int = 256, out: F64 | None = None) -> F64:
    """y[:, t] = coef[:, t] * y[:, t-1] + u[:, t] along axis 1, with y[:, -1] = y0 (vectorized).

    Closed form per chunk: y_t = P_t * (y0 + sum_k u_k / P_k), P_t the running product of
    coef. Chunks keep 1 / P_t far from overflow for coef >= 0.5. ``coef`` must be > 0; a
    scalar ``coef`` (the steady state) skips the per-element logarithms. ``out`` (shaped like
    ``u``, not aliasing it) receives y.
    """
    if out is None:
        out = np.empty_like(u)
    prev = y0
    const = None
    if isinstance(coef, float):
        const = coef ** np.arange(1, min(chunk, u.shape[1]) + 1)
    for lo in range(0, u.shape[1], chunk):
        uc = u[:, lo : lo + chunk]
        p = (const[: uc.shape[1]] if const is not None
             else np.exp(np.cumsum(np.log(coef[:, lo : lo + chunk]), axis=1)))  # type: ignore[index]
        seg = out[:, lo : lo + chunk]
        np.cumsum(uc / p, axis=1, out=seg)
        seg += prev[:, None]
        seg *= p
        prev = seg[:, -1]
    return out


DEMOTED_SCORE = score1(DEMOTED_P)
ORDINARY_SCORE = score1(0.5)  # no more surprise than usual


def demoted_score(warning: float) -> float:
    """The score of a demoted detection: DEMOTED_SCORE, or just below ``warning`` when that is lower, so a demoted
    detection is no anomaly (at ``warning=0.2`` each repeat of one event scored 0.3, a warning again); never below
    ORDINARY_SCORE, the least score (a ``warning`` at most that reports every sample)."""
    return max(ORDINARY_SCORE, min(DEMOTED_SCORE, math.nextafter(warning, 0.0)))
