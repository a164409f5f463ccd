"""NAB scoring, written from the description in ``../shared/nab/README.md`` (not NAB's code).

One corpus = files with per-row timestamps, label windows and detector scores. The scorer
builds each file's row values v(i) once, turns every file into a list of (threshold, delta)
steps of the corpus raw score S(theta), and finds the best threshold with one sorted sweep,
so optimizing over every distinct score costs O(rows log rows), not O(rows x thresholds).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

PROFILES: dict[str, tuple[float, float, float]] = {  # name: (A_TP, A_FP, A_FN)
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}
NO_DETECTION = 1.1


def sigmoid(x: F64) -> F64:
    """NAB's scaled sigmoid: 2 / (1 + e^(5x)) - 1, and -1 beyond x = 3."""
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, out)


@dataclass(frozen=True, slots=True)
class LabelledFile:
    """One data file: its row count and its windows as inclusive row ranges (L, R)."""

    key: str  # path relative to data/, e.g. "realKnownCause/nyc_taxi.csv"
    n: int
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        return min(math.floor(0.15 * self.n), 750)


def read_timestamps_values(path: Path) -> tuple[list[str], F64]:
    """Timestamps (as written) and values of a NAB data file, in file order."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            stamps.append(row[0])
            values.append(float(row[1]))
    return stamps, np.asarray(values, dtype=np.float64)


def label_file(key: str, stamps: Sequence[str], windows: Iterable[Sequence[str]]) -> LabelledFile:
    """Map each window's [start, end] timestamps to the row positions that carry them."""
    row_of: dict[str, int] = {}
    for i, stamp in enumerate(stamps):
        row_of.setdefault(stamp, i)
    ranges = []
    for start, end in windows:
        ranges.append((row_of[start.split(".")[0]], row_of[end.split(".")[0]]))
    return LabelledFile(key, len(stamps), tuple(ranges))


def load_windows(labels: Path) -> dict[str, list[list[str]]]:
    with labels.open() as fh:
        data: dict[str, list[list[str]]] = json.load(fh)
    return data


def row_values(f: LabelledFile, a_tp: float, a_fp: float) -> tuple[F64, npt.NDArray[np.int64]]:
    """v(i) for every row, and the window index of each row (-1 outside all windows)."""
    idx = np.arange(f.n, dtype=np.float64)
    v = np.full(f.n, -a_fp)
    win = np.full(f.n, -1, dtype=np.int64)
    for k, (lo, hi) in enumerate(f.windows):
        width = hi - lo + 1
        rows = idx[lo : hi + 1]
        v[lo : hi + 1] = a_tp * sigmoid(-(hi - rows + 1) / width) / sigmoid(np.array(-1.0))
        win[lo : hi + 1] = k
        nxt = f.windows[k + 1][0] if k + 1 < len(f.windows) else f.n
        after = idx[hi + 1 : nxt]
        # A window of width 1 would divide by zero; NAB windows are always wider.
        v[hi + 1 : nxt] = a_fp * sigmoid((after - hi) / max(width - 1, 1))
    return v, win


def file_steps(
    f: LabelledFile, scores: F64, profile: str
) -> tuple[F64, F64, float]:
    """(thresholds, deltas, base): S_file(theta) = base + sum(deltas[thresholds >= theta])."""
    a_tp, a_fp, a_fn = PROFILES[profile]
    v, win = row_values(f, a_tp, a_fp)
    p = f.probation
    s, v, win = scores[p:], v[p:], win[p:]
    keys: list[F64] = []
    deltas: list[F64] = []
    outside = win < 0
    keys.append(s[outside])
    deltas.append(v[outside])
    for k in range(len(f.windows)):
        ws, wv = s[win == k], v[win == k]
        if ws.size == 0:
            continue
        # Left-to-right strict prefix maxima: the earliest detected row at theta is the first
        # record whose score reaches theta.
        running = np.maximum.accumulate(ws)
        is_record = np.empty(ws.size, dtype=bool)
        is_record[0] = True
        is_record[1:] = ws[1:] > running[:-1]
        rs, rv = ws[is_record], wv[is_record]
        nxt = np.append(rv[1:], -a_fn)
        keys.append(rs)
        deltas.append(rv - nxt)
    return np.concatenate(keys), np.concatenate(deltas), -a_fn * len(f.windows)


def optimize(
    files: Sequence[LabelledFile], scores: Mapping[str, F64], profile: str
) -> tuple[float, float]:
    """(best theta, S(theta)) over every distinct non-probationary score plus 1.1; ties -> largest."""
    keys, deltas, base = [], [], 0.0
    for f in files:
        k, d, b = file_steps(f, scores[f.key], profile)
        keys.append(k)
        deltas.append(d)
        base += b
    key = np.concatenate(keys)
    delta = np.concatenate(deltas)
    order = np.argsort(-key, kind="stable")
    key, delta = key[order], delta[order]
    cum = np.cumsum(delta)
    # S at a candidate theta counts every step whose key >= theta: take the last of equal keys.
    last = np.append(key[1:] != key[:-1], True)
    cand, total = key[last], base + cum[last]
    best_theta, best = NO_DETECTION, base
    if cand.size:
        i = int(np.argmax(total))  # first max = largest theta among ties (keys descend)
        # 1.1 beats every candidate below it on a tie.
        if total[i] > best and cand[i] <= NO_DETECTION:
            best_theta, best = float(cand[i]), float(total[i])
    return best_theta, best


def score_at(files: Sequence[LabelledFile], scores: Mapping[str, F64], profile: str, theta: float) -> float:
    """Corpus raw score S(theta)."""
    total = 0.0
    for f in files:
        k, d, b = file_steps(f, scores[f.key], profile)
        total += b + float(d[k >= theta].sum())
    return total


def normalized(files: Sequence[LabelledFile], scores: Mapping[str, F64],
               profiles: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Per profile (all by default): optimized threshold, raw score and the 0..100 NAB score."""
    null = {f.key: np.full(f.n, 0.5) for f in files}
    n_windows = sum(len(f.windows) for f in files)
    out: dict[str, dict[str, float]] = {}
    for profile in PROFILES if profiles is None else profiles:
        a_tp = PROFILES[profile][0]
        theta, raw = optimize(files, scores, profile)
        _, raw_null = optimize(files, null, profile)
        perfect = a_tp * n_windows
        out[profile] = {
            "threshold": theta,
            "raw": raw,
            "score": 100.0 * (raw - raw_null) / (perfect - raw_null),
        }
    return out
