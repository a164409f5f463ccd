"""NAB thirteenth research pass (docs/benchmarks.md, "Thirteenth pass"): ``python -m benchmarks.nab_thirteenth``.

Builds on the tenth and eleventh passes' harness (``benchmarks/nab_tenth.py``: the research kernel, the channel's
own likelihood and :func:`detect`; ``benchmarks/nab_eleventh.py``: :class:`Bench`, :func:`loo`, :func:`fmt`,
:func:`detect_ext`). Three channels, written from the descriptions, each combined as in the fifth pass (``w`` x its z
max-combined with the detector's likelihood z before the range rule and the refractory span):

* **multi-scale** (:func:`multiscale_z`): the same detector run on the series causally aggregated by ``s`` (the
  mean of each complete block of ``s`` samples, stamped with its last sample's time); the aggregated run's own
  likelihood z reaches the original series at the sample that completes the block (``hold``: also on the block's
  ``s - 1`` samples after it), muted for the aggregated run's first ``mute`` samples; 2x and 4x can be combined
  by max.
* **Holt-Winters residual** (:func:`_holt_winters`): additive Holt-Winters (level, trend, one seasonal index per
  bucket of the detector's day, rates ``a``, ``b``, ``g``); the one-step residual in units of the running mean
  absolute residual before it (rate 0.01, floored at 1% of the range seen), averaged over the last ``m``
  samples: the signal whose own likelihood (rate 0.003) is the channel's z (a forecast-residual likelihood, not a
  value likelihood).
* **EXPoSE** (:func:`_expose`, Schneider et al. 2016): the last ``d`` values scaled to the range seen, random Fourier
  features of a Gaussian kernel, minus the inner product with the decayed mean embedding of the points before.

Robust Random Cut Forest was not run (cost; docs). Prints each channel's rows (real categories as corpora of their
own, the three together, the whole split, paired gain, LOO over the default and the grid, and the official ``--cv``
with the grid added) and the official ``--cv`` as default at a few settings; ``--sweep``: the official ``--cv`` as
default over the Holt-Winters neighbourhood.
None is in the detector: none holds under the protocol.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from shannon_otel.anomaly import DetectorConfig

from .nab import CANDIDATES, REAL, category
from .nab_eleventh import Bench, detect_ext, fmt, loo
from .nab_tenth import F64, _jit, detect, jitted


def _aggregate(xs: F64, ts: F64, s: int) -> tuple[F64, F64]:
    """Means of the complete blocks of ``s`` samples and each block's last time (causal: known at its end)."""
    nb = xs.shape[0] // s
    return xs[:nb * s].reshape(nb, s).mean(axis=1), ts[s - 1:nb * s:s].copy()


def multiscale_z(xs: F64, ts: F64, s: int, hold: bool, mute: int, cfg: DetectorConfig | None = None) -> F64:
    """The likelihood z of the detector run on the series aggregated by ``s``, mapped back to the samples."""
    out = np.zeros(xs.shape[0])
    ax, at = _aggregate(xs, ts, s)
    if ax.shape[0] == 0:
        return out
    z = detect_ext(ax, at, None, 0.0, 0, cfg)[2]
    z[:mute] = 0.0
    ends = np.arange(ax.shape[0]) * s + s - 1
    if hold:
        for j in range(s):
            idx = ends + j
            ok = idx < xs.shape[0]
            out[idx[ok]] = z[ok]
    else:
        out[ends] = z
    return out


def _holt_winters(xs: F64, ts: F64, buckets: int, period: float, a: float, b: float, g: float, m: int,
                  floor_frac: float) -> F64:
    """The mean of the last ``m`` absolute one-step Holt-Winters residuals, each in units of the running mean
    absolute residual before it (rate 0.01; floored at ``floor_frac`` x the range seen); NaN until each bucket
    has had one value (the seasonal indices start at the first residual from the level)."""
    n = xs.shape[0]
    out = np.full(n, np.nan)
    season = np.zeros(buckets)
    seen = np.zeros(buckets, np.int64)
    ring = np.zeros(m)
    rh = 0
    rc = 0
    racc = 0.0
    lev = 0.0
    tr = 0.0
    mad = 0.0
    k = 0
    vmin, vmax = np.inf, -np.inf
    span = period / buckets
    for i in range(n):
        x = xs[i]
        vmin = min(vmin, x)
        vmax = max(vmax, x)
        row = int(math.floor(ts[i] / span) % buckets)
        if i == 0:
            lev = x
            season[row] = 0.0
            seen[row] = 1
            continue
        if seen[row] == 0:  # the bucket's first value: its index from the level, no residual yet
            season[row] = x - (lev + tr)
            seen[row] = 1
        f = lev + tr + season[row]
        e = x - f
        k += 1
        fl = floor_frac * (vmax - vmin)
        sc = mad if mad > fl else fl
        r = abs(e) / sc if sc > 0.0 else 0.0
        ak = 0.01 if 0.01 * k >= 1.0 else 1.0 / k
        mad += ak * (abs(e) - mad)
        nl = a * (x - season[row]) + (1.0 - a) * (lev + tr)
        tr = b * (nl - lev) + (1.0 - b) * tr
        lev = nl
        season[row] = g * (x - lev) + (1.0 - g) * season[row]
        if rc == m:
            racc += r - ring[rh]
        else:
            rc += 1
            racc += r
        ring[rh] = r
        rh = (rh + 1) % m
        if k > 1:
            out[i] = racc / rc
    return out


def _expose(xs: F64, dims: int, feats: int, bandwidth: float, rate: float, seed: int) -> F64:
    """EXPoSE: the last ``dims`` values scaled to the range seen, mapped by ``feats`` random Fourier features of a
    Gaussian kernel (``bandwidth`` in range units); the signal is minus the inner product of a point's features
    with the exponentially decayed mean embedding (rate ``rate``) of the points before it, a kernel density
    estimate of how expected the point is (NaN until the embedding has ``dims`` points); O(dims x feats) a sample."""
    np.random.seed(seed)
    n = xs.shape[0]
    wm = np.random.standard_normal((feats, dims)) / bandwidth
    bb = np.random.uniform(0.0, 2.0 * np.pi, feats)
    mu = np.zeros(feats)
    phi = np.zeros(feats)
    out = np.full(n, np.nan)
    vmin, vmax = np.inf, -np.inf
    k = 0
    c = math.sqrt(2.0 / feats)
    for i in range(n):
        vmin = min(vmin, xs[i])
        vmax = max(vmax, xs[i])
        if i + 1 < dims:
            continue
        rg = vmax - vmin
        for f in range(feats):
            acc = bb[f]
            for d in range(dims):
                acc += wm[f, d] * ((xs[i - dims + 1 + d] - vmin) / rg if rg > 0 else 0.5)
            phi[f] = c * math.cos(acc)
        k += 1
        if k > dims:
            dot = 0.0
            for f in range(feats):
                dot += phi[f] * mu[f]
            out[i] = -dot
        a = rate if rate * k >= 1.0 else 1.0 / k
        for f in range(feats):
            mu[f] += a * (phi[f] - mu[f])
    return out


def grid_expose(b: Bench) -> dict[str, dict[str, F64]]:
    ex = _jit_here("_expose")
    runs: dict[str, dict[str, F64]] = {}
    for dims in (1, 4, 8):
        for bw in (0.05, 0.2):
            for rate in (0.003, 0.01):
                sig = {k: ex(b.corpus.values[k], dims, 64, bw, rate, 7) for k in b.keys}
                for mute in (0, 300):
                    for w in (0.4, 0.6):
                        runs[f"expose d{dims} bw{bw} r{rate} mute{mute} w{w}"] = b.combined(sig, w, mute)
    return runs


def _cfgs() -> dict[str, DetectorConfig]:
    return {name: replace(DetectorConfig(), **over)  # type: ignore[arg-type]
            for name, over in CANDIDATES.items() if name != "level=20"}  # level: not in the research kernel


def official(b: Bench, extra: dict[str, dict[str, F64]]) -> float:
    """The official ``--cv`` (the candidates, less ``level=20``) with the ``extra`` runs added."""
    keys = [k for k in b.keys if category(k) in REAL]
    runs = {name: {k: detect(b.corpus.values[k], b.corpus.times[k], None, 0.0, cfg) for k in keys}
            for name, cfg in _cfgs().items()}
    return loo(b.corpus, runs | extra)[0]


def official_as_default(b: Bench, channel: Any, w: float) -> tuple[float, dict[str, tuple[str, float]]]:
    """The official ``--cv`` with the channel (``channel(values, times, cfg) -> z``) in every candidate."""
    keys = [k for k in b.keys if category(k) in REAL]
    runs = {}
    for name, cfg in _cfgs().items():
        runs[name] = {k: detect(b.corpus.values[k], b.corpus.times[k],
                                channel(b.corpus.values[k], b.corpus.times[k], cfg), w, cfg) for k in keys}
    return loo(b.corpus, runs)


def grid_multiscale(b: Bench) -> dict[str, dict[str, F64]]:
    runs: dict[str, dict[str, F64]] = {}
    for scales in ((2,), (4,), (2, 4), (8,)):
        for hold in (False, True):
            for mute in (0, 200):
                z = {k: np.max([multiscale_z(b.corpus.values[k], b.corpus.times[k], s, hold, mute)
                                for s in scales], axis=0) for k in b.keys}
                for w in (0.6, 0.8, 1.0):
                    name = f"ms s{'+'.join(map(str, scales))} {'held' if hold else 'ends'} mute{mute} w{w}"
                    runs[name] = {k: detect(b.corpus.values[k], b.corpus.times[k], z[k], w) for k in b.keys}
    return runs


def grid_holt_winters(b: Bench) -> dict[str, dict[str, F64]]:
    hw = _jit_here("_holt_winters")
    runs: dict[str, dict[str, F64]] = {}
    cfg = DetectorConfig()
    for a, bt, g in ((0.1, 0.0, 0.1), (0.3, 0.0, 0.1), (0.1, 0.01, 0.1), (0.3, 0.05, 0.3)):
        for m in (1, 5, 10):
            sig = {k: hw(b.corpus.values[k], b.corpus.times[k], cfg.buckets, cfg.period_s, a, bt, g, m, 0.01)
                   for k in b.keys}
            for mute in (0, 300):
                for w in (0.5, 0.7, 0.9):
                    name = f"hw a{a} b{bt} g{g} m{m} mute{mute} w{w}"
                    runs[name] = b.combined(sig, w, mute)
    return runs


def _jit_here(name: str) -> Any:
    """The numba-compiled function ``name`` of this module."""
    return jitted(globals()[name])


def summarize(b: Bench, label: str, runs: dict[str, dict[str, F64]], top: int = 6) -> list[str]:
    tables = {name: b.table(s) for name, s in runs.items()}
    real3 = [t["real3"] for t in tables.values()]
    paired = [t["paired"] for t in tables.values()]
    clean = sum(1 for t in tables.values() if t["paired"] > 0 and all(t[c] >= b.base_table[c] - 1e-9 for c in REAL))
    print(f"{label}: {len(runs)} settings, real-3 {min(real3):.2f}-{max(real3):.2f}, "
          f"paired {min(paired):+.2f} to {max(paired):+.2f} (median {float(np.median(paired)):+.2f}), "
          f"gaining while losing on no category {clean}")
    best = sorted(tables, key=lambda n: -tables[n]["paired"])[:top]
    for name in best:
        print("  ", name, fmt(tables[name]))
    mean, folds = loo(b.corpus, {"default": b.base} | runs)
    print(f"  LOO over default + grid: {mean:.2f}", {c: (n, round(v, 2)) for c, (n, v) in folds.items()})
    print(f"  official with the grid added: {official(b, runs):.2f}")
    return best


def hw_channel(a: float, bt: float, g: float, m: int, mute: int = 0) -> Any:
    """The Holt-Winters residual channel's z as a function of (values, times, config)."""
    like = _jit("_own_likelihood")
    hwk = _jit_here("_holt_winters")

    def ch(x: F64, t: F64, cfg: DetectorConfig) -> F64:
        out: F64 = like(hwk(x, t, cfg.buckets, cfg.period_s, a, bt, g, m, 0.01), 0.003, mute)
        return out

    return ch


def grid_hw_neighbours(b: Bench) -> dict[str, dict[str, F64]]:
    """The neighbourhood of the first grid's best (no trend): a 0.05-0.2, g 0.05-0.2, m 5-30, w 0.4-0.6."""
    runs: dict[str, dict[str, F64]] = {}
    for a in (0.05, 0.1, 0.2):
        for g in (0.05, 0.1, 0.2):
            for m in (5, 10, 20, 30):
                z = {k: hw_channel(a, 0.0, g, m)(b.corpus.values[k], b.corpus.times[k], DetectorConfig())
                     for k in b.keys}
                for w in (0.4, 0.5, 0.6):
                    runs[f"hw a{a} b0.0 g{g} m{m} mute0 w{w}"] = {
                        k: detect(b.corpus.values[k], b.corpus.times[k], z[k], w) for k in b.keys}
    return runs


def main(argv: list[str] | None = None) -> int:
    """Reprints the pass's rows (docs/benchmarks.md, "Thirteenth pass"); ``--sweep``: the official ``--cv`` as
    default for every setting of the Holt-Winters neighbourhood (108 runs of the candidates, ~15 min)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    b = Bench()
    print("default", fmt(b.base_table))
    print(f"official (reproduced, without level=20): {official(b, {}):.2f}")
    if "--sweep" in argv:
        for name in grid_names_hw():
            p = name.split()
            a, bt, g, m, w = float(p[1][1:]), float(p[2][1:]), float(p[3][1:]), int(p[4][1:]), float(p[6][1:])
            mean, folds = official_as_default(b, hw_channel(a, bt, g, m), w)
            print(f"official as default, {name}: {mean:.2f}",
                  {c: (n, round(v, 2)) for c, (n, v) in folds.items()}, flush=True)
        return 0
    best_ms = summarize(b, "multi-scale", grid_multiscale(b))
    summarize(b, "Holt-Winters residual", grid_holt_winters(b))
    summarize(b, "Holt-Winters residual, neighbourhood", grid_hw_neighbours(b))
    summarize(b, "EXPoSE", grid_expose(b))
    for name in best_ms[:1]:
        parts = name.split()
        scales = tuple(int(s) for s in parts[1][1:].split("+"))
        hold, mute, w = parts[2] == "held", int(parts[3][4:]), float(parts[4][1:])

        def ch(x: F64, t: F64, cfg: DetectorConfig, sc: tuple[int, ...] = scales, h: bool = hold, mu: int = mute
               ) -> F64:
            out: F64 = np.max([multiscale_z(x, t, s, h, mu, cfg) for s in sc], axis=0)
            return out

        mean, folds = official_as_default(b, ch, w)
        print(f"official as default, {name}: {mean:.2f}", {c: (n, round(v, 2)) for c, (n, v) in folds.items()})
    for name in ("hw a0.1 b0.0 g0.1 m10 mute0 w0.4", "hw a0.1 b0.0 g0.1 m10 mute0 w0.5",
                 "hw a0.05 b0.0 g0.2 m10 mute0 w0.5"):
        p = name.split()
        a, bt, g, m, w = float(p[1][1:]), float(p[2][1:]), float(p[3][1:]), int(p[4][1:]), float(p[6][1:])
        mean, folds = official_as_default(b, hw_channel(a, bt, g, m), w)
        print(f"official as default, {name}: {mean:.2f}", {c: (n, round(v, 2)) for c, (n, v) in folds.items()})
    return 0


def grid_names_hw() -> list[str]:
    return [f"hw a{a} b0.0 g{g} m{m} mute0 w{w}" for a in (0.05, 0.1, 0.2) for g in (0.05, 0.1, 0.2)
            for m in (5, 10, 20, 30) for w in (0.4, 0.5, 0.6)]


if __name__ == "__main__":
    raise SystemExit(main())
