"""NAB eleventh research pass (docs/benchmarks.md, "Eleventh pass"): ``python -m benchmarks.nab_eleventh``.

Builds on the tenth pass's research kernel (``benchmarks/nab_tenth.py``: the detector's scalar algorithm for one
series, numba, equal to the detector to 7e-7). Its kernel (:func:`benchmarks.nab_tenth._kernel`, the same scores
with nothing switched on) exposes the averaged surprise and the likelihood z, with three switches: a channel's
z max-combined (as the tenth pass), replacing the likelihood z, or combined with it by Fisher's method; and a
count floor (a Poisson spread floor while every value so far is a non-negative integer). Channels and calibrations
of this pass: a robust level-shift test across two adjacent windows (:func:`_rank_shift`: the last ``W`` means of
``s`` samples against the ``L`` before them, a Mann-Whitney rank-sum z or a median difference over the reference's
MAD) and an extreme-value (SPOT-like, generalized Pareto) calibration of a signal's tail
(:func:`_spot_likelihood`). Prints the pass's key rows: the real categories as corpora of their own, the three
together, the whole split, the paired gain over the default. None is in the detector: none holds under the
protocol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from shannon_otel.anomaly import DetectorConfig
from shannon_otel.anomaly._scoring import (
    ORDINARY_SCORE,
    demoted_score,
    red_z,
)

from . import _nabscore as ns
from .nab import DEFAULT_ROOT, REAL, Corpus, category, data_files
from .nab_tenth import F64, _jit, detect, jitted


def _rank_shift(xs: F64, s: int, width: int, ref: int, kind: int, floor_frac: float, hold: bool = True,
                ref_min: int = 0) -> F64:
    """Level shift between the last ``width`` means of ``s`` samples and the ``ref`` means before them, held
    between means (NaN until both windows are full). ``kind`` 0: |Mann-Whitney z| (ties counted half); 1: |median
    difference| / max(1.4826 x MAD of the reference, ``floor_frac`` x the range seen). ``hold`` False: the
    signal only at the samples that complete a mean (NaN between, which the likelihood skips). ``ref_min`` > 0:
    start once ``ref_min`` reference means are in, the reference growing to ``ref``."""
    n = xs.shape[0]
    out = np.full(n, np.nan)
    tot = width + ref
    ring = np.zeros(tot)
    head = 0
    cnt = 0
    acc = 0.0
    k = 0
    vmin, vmax = np.inf, -np.inf
    a = np.zeros(width)
    b = np.zeros(ref)
    last = np.nan
    for i in range(n):
        x = xs[i]
        vmin = min(vmin, x)
        vmax = max(vmax, x)
        acc += x
        k += 1
        if k < s:
            if hold:
                out[i] = last
            continue
        ring[head] = acc / s
        head = (head + 1) % tot
        acc = 0.0
        k = 0
        if cnt < tot:
            cnt += 1
        have = cnt - width  # reference means available
        if have < (ref if ref_min <= 0 else ref_min):
            continue
        # oldest first: ring[head - cnt], ..., ring[head - 1]
        first = (head - cnt) % tot
        for j in range(have):
            b[j] = ring[(first + j) % tot]
        for j in range(width):
            a[j] = ring[(first + have + j) % tot]
        if kind == 1:
            mb = np.median(b[:have])
            ma = np.median(a)
            mad = 1.4826 * np.median(np.abs(b[:have] - mb))
            fl = floor_frac * (vmax - vmin)
            sc = mad if mad > fl else fl
            last = abs(ma - mb) / sc if sc > 0 else 0.0
        else:
            u = 0.0
            for p in range(width):
                for q in range(have):
                    if a[p] > b[q]:
                        u += 1.0
                    elif a[p] == b[q]:
                        u += 0.5
            mu = 0.5 * width * have
            sd = math.sqrt(width * have * (width + have + 1) / 12.0)
            last = abs(u - mu) / sd
        out[i] = last
    return out


def _spot_likelihood(sig: F64, q: float, eta: float, peaks: int, min_peaks: int, mute: int) -> F64:
    """Extreme-value calibration of a signal (SPOT-like, causal): a running upper ``q`` quantile u (stochastic
    approximation, step ``eta`` x the signal's running mean absolute deviation), the excesses over u of the last
    ``peaks`` values above it, a generalized Pareto tail fitted to them by the method of moments (xi = (1 - m^2 /
    v) / 2, sigma = m (1 + m^2 / v) / 2), and the tail probability p = (1 - q) (1 + xi (s - u) / sigma)^(-1 / xi)
    of each value above u, read back as the Gaussian z of p (0 at or below u; NaN before ``min_peaks`` peaks, in
    the channel's first ``mute`` samples, or with no signal yet)."""
    n = sig.shape[0]
    out = np.full(n, np.nan)
    ring = np.zeros(peaks)
    head = 0
    cnt = 0
    u = 0.0
    dev = 0.0
    mean = 0.0
    k = 0
    for i in range(n):
        s = sig[i]
        if not np.isfinite(s):
            continue
        k += 1
        if k == 1:
            u = s
            mean = s
        if cnt >= min_peaks and k > mute:
            out[i] = 0.0
        if s > u and cnt >= min_peaks and k > mute:
            m = 0.0
            for j in range(cnt):
                m += ring[j]
            m /= cnt
            v = 0.0
            for j in range(cnt):
                v += (ring[j] - m) * (ring[j] - m)
            v /= cnt
            y = s - u
            if m <= 0.0:
                p = 1e-300
            elif v <= 0.0:
                p = (1.0 - q) * math.exp(-y / m)
            else:
                r = m * m / v
                xi = 0.5 * (1.0 - r)
                sigma = 0.5 * m * (1.0 + r)
                if abs(xi) < 1e-6:
                    p = (1.0 - q) * math.exp(-y / sigma)
                else:
                    base = 1.0 + xi * y / sigma
                    p = 0.0 if base <= 0.0 else (1.0 - q) * base ** (-1.0 / xi)
            p = max(p, 1e-300)
            # Gaussian z of the upper tail p (Acklam-free: Newton on erfc)
            z = math.sqrt(max(-2.0 * math.log(p), 0.0))
            for _ in range(30):
                f = 0.5 * math.erfc(z / math.sqrt(2.0)) - p
                d = -math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
                z -= f / d
            out[i] = z if z > 0 else 0.0
        if s > u:
            ring[head] = s - u
            head = (head + 1) % peaks
            if cnt < peaks:
                cnt += 1
        a = 0.01 if 0.01 * k >= 1.0 else 1.0 / k
        dev = (1 - a) * dev + a * abs(s - mean)
        mean += a * (s - mean)
        step = eta * (dev if dev > 0 else 1e-12)
        u += step * ((1.0 if s > u else 0.0) - (1.0 - q)) / (1.0 - q)
    return out


def detect_ext(values: F64, times: F64, zc: F64 | None, w: float, mode: int, cfg: DetectorConfig | None = None,
               cfloor: float = 0.0) -> tuple[F64, F64, F64]:
    """Scores, averaged surprise and likelihood z of one series through :func:`benchmarks.nab_tenth._kernel`."""
    cfg = DetectorConfig() if cfg is None else cfg
    n = len(values)
    z = np.zeros(n) if zc is None else zc
    araw, zraw = np.zeros(n), np.zeros(n)
    out = _jit("_kernel")(
        values, times, z, w, mode, cfloor, araw, zraw, cfg.window, cfg.buckets, cfg.period_s, cfg.steps,
        cfg.noise_floor, cfg.sharpness, cfg.average, cfg.history_rate, cfg.min_history, cfg.refractory,
        cfg.spatial_tolerance, cfg.range_rate, red_z(cfg.warning), red_z(cfg.critical), demoted_score(cfg.warning),
        ORDINARY_SCORE)
    return out, araw, zraw


def jit(name: str) -> Any:
    return jitted(globals()[name])


class Bench:
    """The 41 files read once, the default's scores, and scoring helpers."""

    def __init__(self) -> None:
        root = DEFAULT_ROOT
        windows = ns.load_windows(root / "labels" / "combined_windows.json")
        self.corpus = Corpus(root / "data", data_files(root / "data"), windows)
        self.keys = self.corpus.keys
        self.base = {k: detect(self.corpus.values[k], self.corpus.times[k]) for k in self.keys}
        self.base_table = self.table(self.base)

    def table(self, scores: Mapping[str, F64]) -> dict[str, float]:
        c = self.corpus
        out = {cat: c.score(scores, (cat,), "standard")["standard"]["score"] for cat in REAL}
        out["real3"] = c.score(scores, REAL, "standard")["standard"]["score"]
        whole = c.score(scores, None, "standard")["standard"]
        out["whole"] = whole["score"]
        # artificialNoAnomaly: samples after the probation at or above the whole split's threshold (all false)
        fp = 0
        for k in self.keys:
            if category(k) == "artificialNoAnomaly":
                f = c.files[k]
                fp += int(np.sum(scores[k][f.probation:] >= whole["threshold"]))
        out["noanom_fp"] = fp
        out["paired"] = (sum(out[cat] - self.base_table[cat] for cat in REAL) / 3) if hasattr(self, "base_table") \
            else 0.0
        return out

    def combined(self, signal: Mapping[str, F64], w: float, mute: int, rate: float = 0.003,
                 spot: tuple[float, float, int, int] | None = None) -> dict[str, F64]:
        if spot is not None:
            sp = jit("_spot_likelihood")
            return {k: detect(self.corpus.values[k], self.corpus.times[k], sp(signal[k], *spot, mute), w)
                    for k in self.keys}
        like = _jit("_own_likelihood")
        return {k: detect(self.corpus.values[k], self.corpus.times[k], like(signal[k], rate, mute), w)
                for k in self.keys}


def loo(corpus: Corpus, runs: Mapping[str, Mapping[str, F64]]) -> tuple[float, dict[str, tuple[str, float]]]:
    """Leave one real category out over ``runs`` (name -> scores; ties to the earlier name)."""
    folds = {}
    for held in REAL:
        others = [c for c in REAL if c != held]
        train = {n: corpus.score(s, others, "standard")["standard"]["score"] for n, s in runs.items()}
        best = max(train, key=lambda n: train[n])
        folds[held] = (best, corpus.score(runs[best], (held,), "standard")["standard"]["score"])
    return sum(v for _, v in folds.values()) / 3, folds


def fmt(t: Mapping[str, float]) -> str:
    return (" / ".join(f"{t[c]:.2f}" for c in REAL) + f" | real3 {t['real3']:.2f} whole {t['whole']:.2f}"
            f" paired {t['paired']:+.2f} noanomFP {t['noanom_fp']}")


def main() -> int:
    """Reprints the pass's key rows (docs/benchmarks.md, "Eleventh pass")."""
    b = Bench()
    print("default", fmt(b.base_table))
    rank = jit("_rank_shift")
    for s, width, ref, kind, hold, w in [(4, 32, 32, 1, True, 0.7), (16, 16, 128, 1, True, 0.7),
                                         (32, 16, 256, 1, True, 1.0)]:
        sig = {k: rank(b.corpus.values[k], s, width, ref, kind, 0.01, hold) for k in b.keys}
        for mute in (0, 300):
            print(f"rank shift s{s} W{width} L{ref} {'median/MAD' if kind else 'Mann-Whitney'} w{w} muted {mute}",
                  fmt(b.table(b.combined(sig, w, mute))))
    spot = jit("_spot_likelihood")
    for q, mode in [(0.98, 1), (0.98, 0)]:
        scores = {}
        for k in b.keys:
            a = detect_ext(b.corpus.values[k], b.corpus.times[k], None, 0.0, 0)[1]
            scores[k] = detect_ext(b.corpus.values[k], b.corpus.times[k], spot(a, q, 0.02, 300, 20, 0), 1.0, mode)[0]
        print(f"SPOT on the averaged surprise, q {q}, {'replacing' if mode == 1 else 'max with'} the likelihood",
              fmt(b.table(scores)))
    for cf in (1.0, 2.0):
        scores = {k: detect_ext(b.corpus.values[k], b.corpus.times[k], None, 0.0, 0, None, cf)[0] for k in b.keys}
        print(f"count floor {cf} x Poisson spread", fmt(b.table(scores)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
