"""Scoring math shared by the scalar and the block paths of the detector.

The score of a sample is ``-log10(p) / 10`` clipped to [0, 1], where ``p`` is the tail
probability that the recent average surprise of its series is as high as it is, given that
series' own long-run surprise distribution (Numenta's "anomaly likelihood" idea, computed
here from a cheap seasonal z-score instead of an HTM). So 0.5 means p = 1e-5 and 1.0 means
p <= 1e-10 or a value outside everything seen so far.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

P_FLOOR = 1e-10  # score 1.0
RED_P = 1e-5  # score 0.5: a first detection
DEMOTED_P = 1e-3  # score 0.3: a repeat of the previous sample's detection
MEAN_FLOOR = 0.03  # long-run surprise is never assumed lower than this...
STD_FLOOR = math.sqrt(3e-4)  # ...nor steadier than this, so a quiet series is not hair-trigger
SEASON_MIN = 3  # values needed in a seasonal bucket before it can surprise
SURPRISE_SCALE = 8.0  # raw surprise 1 - exp(-z^2 / 8): z = 2 gives 0.39, z = 4 gives 0.86
_LOG_P_FLOOR = math.log10(P_FLOOR)


def surprise(z: F64) -> F64:
    """Raw surprise in [0, 1) of seasonal z-scores (vectorized)."""
    out: F64 = -np.expm1(-(z * z) / SURPRISE_SCALE)
    return out


def surprise1(z: float) -> float:
    return -math.expm1(-(z * z) / SURPRISE_SCALE)


def tail(z: F64) -> F64:
    """Upper Gaussian tail Q(|z|) (vectorized), relative error below 1.2e-7.

    Chebyshev fit of erfc (Numerical Recipes ``erfcc``): numpy has no erfc ufunc and the
    library does not depend on scipy.
    """
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    out: F64 = 0.5 * t * np.exp(-x * x + poly)
    return out


def tail1(z: float) -> float:
    return 0.5 * math.erfc(abs(z) / math.sqrt(2.0))


def score_of(p: F64) -> F64:
    """Score in [0, 1] of tail probabilities (vectorized)."""
    out: F64 = np.minimum(-np.log10(p + P_FLOOR) / -_LOG_P_FLOOR, 1.0)
    return out


def score1(p: float) -> float:
    return min(-math.log10(p + P_FLOOR) / -_LOG_P_FLOOR, 1.0)


def _table() -> tuple[F64, float]:
    # score_of(tail(z)) on a grid up to where it reaches 1.0; interpolated by score_z.
    step = 1.0 / 256.0
    grid = np.arange(0.0, 8.0 + 2 * step, step)
    values = np.array([score1(tail1(float(g))) for g in grid])
    top = int(np.argmax(values >= 1.0))
    return values[: top + 2], step


_SCORE_TABLE, _STEP = _table()
_ZMAX = (len(_SCORE_TABLE) - 2) * _STEP
Z_RED = 4.264890793922825  # Q(Z_RED) = RED_P


def score_z(z: F64) -> F64:
    """score_of(tail(z)) for |z| (vectorized) by linear interpolation in a table (error < 1e-6)."""
    pos = np.minimum(np.abs(z), _ZMAX) * (1.0 / _STEP)
    idx = pos.astype(np.intp)
    frac = pos - idx
    lo = _SCORE_TABLE[idx]
    out: F64 = lo + frac * (_SCORE_TABLE[idx + 1] - lo)
    return out


def linear_scan(coef: F64, u: F64, y0: F64, chunk: int = 256) -> F64:
    """y[:, t] = coef[:, t] * y[:, t-1] + u[:, t] along axis 1, with y[:, -1] = y0 (vectorized).

    Closed form per chunk: y_t = P_t * (y0 + sum_k u_k / P_k), P_t the running product of
    coef. Chunks keep 1 / P_t far from overflow for coef >= 0.5. ``coef`` must be > 0.
    """
    out = np.empty_like(u)
    prev = y0
    for lo in range(0, u.shape[1], chunk):
        c = coef[:, lo : lo + chunk]
        p = np.exp(np.cumsum(np.log(c), axis=1))
        out[:, lo : lo + chunk] = p * (prev[:, None] + np.cumsum(u[:, lo : lo + chunk] / p, axis=1))
        prev = out[:, lo + c.shape[1] - 1]
    return out
