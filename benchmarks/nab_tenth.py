"""NAB tenth research pass (docs/benchmarks.md, "Tenth pass"): ``python -m benchmarks.nab_tenth``.

A research copy of the detector's scalar algorithm for one series (numba; equal to the detector to 7e-7 on the
41 files, the numba engine's table interpolation) with one extra channel combined as in the fifth pass: the
channel's signal gets its own likelihood z (against its exponentially weighted mean and variance before it, rate
0.003, z > 0 only), and ``w`` x that z is max-combined with the detector's likelihood z before the range rule and
the refractory span. Channels, written from the papers' descriptions: Bayesian online changepoint detection
(Adams & MacKay 2007), streaming Half-Space Trees (Tan, Ting & Liu 2011), an AR(p) one-step error fitted by
recursive least squares, and a volatility ratio (variance of the last W steps over their running variance).
Prints, for the pass's best setting of each channel, the real categories as corpora of their own, the three
together and the paired gain over the default. None is in the detector: none holds under the protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from shannon_otel.anomaly import DetectorConfig
from shannon_otel.anomaly._scoring import (
    MEAN_FLOOR,
    ORDINARY_SCORE,
    P_FLOOR,
    RANGE_RESOLUTION,
    RANGE_SPAN,
    SEASON_MIN,
    STD_FLOOR,
    SURPRISE_SCALE,
    demoted_score,
    red_z,
)

from . import _nabscore as ns
from .nab import DEFAULT_ROOT, REAL, Corpus, category, data_files

F64 = npt.NDArray[np.float64]


def _kernel(xs: F64, ts: F64, zc: F64, w: float, mode: int, cfloor: float, araw: F64, zraw: F64, window: int,
            buckets: int, period: float, steps: int,
            floor_frac: float, sharp: float, average: int, hist: float, min_hist: int, refr: int, tol: float,
            rrate: float, zred: float, zcrit: float, demoted: float, ordinary: float) -> F64:
    """The detector's scalar algorithm for one series, with the averaged surprise and the likelihood z
    written to ``araw`` / ``zraw``; ``mode`` 0: ``w x zc`` max-combined with the likelihood z (as the tenth pass);
    1: ``zc`` replaces the likelihood z (an external calibration of ``araw``; its warm-up keeps the detector's);
    2: the likelihood z and ``zc`` averaged (``(zl + w x zc) / 2``, both > 0 parts); 3: Fisher's combination of the two
    upper-tail probabilities (chi-squared, 4 degrees of freedom; the likelihood z alone where ``zc`` is NaN), read
    back as a Gaussian z. ``cfloor`` > 0: while every
    value so far is a non-negative integer (a count), the seasonal spread is floored at ``cfloor`` x the Poisson
    spread sqrt(max(bucket mean, 1)) and the step spread at ``cfloor`` x sqrt(2 max(previous value, 1))."""
    n_all = xs.shape[0]
    out = np.zeros(n_all)
    season = np.zeros((buckets, window))
    scnt = np.zeros(buckets, np.int64)
    shead = np.zeros(buckets, np.int64)
    ss1 = np.zeros(buckets)
    ss2 = np.zeros(buckets)
    stp = np.zeros(steps)
    tcnt = 0
    thead = 0
    t1 = 0.0
    t2 = 0.0
    avg = np.zeros(average)
    acnt = 0
    ahead = 0
    a1 = 0.0
    vmin, vmax = np.inf, -np.inf
    fmin, fmax = np.inf, -np.inf
    prev = 0.0
    m = 0.0
    v = 0.0
    vhit = -1e18
    vcrit = -1e18
    off = 0.0
    floor = 0.0
    span = period / buckets
    isint = cfloor > 0.0
    for i in range(n_all):
        n = i + 1
        x = xs[i]
        if isint and (x < 0.0 or x != math.floor(x)):
            isint = False
        if n == 1:
            off = x
        x -= off
        pmin, pmax = vmin, vmax
        lo = x if x < pmin else pmin
        hi = x if x > pmax else pmax
        vmin, vmax = lo, hi
        row = int(math.floor(ts[i] / span) % buckets)
        if rrate > 0:
            keep = 1.0 - rrate
            flo = keep * fmin + rrate * x
            fhi = keep * fmax + rrate * x
            flo = x if x < flo else flo
            fhi = x if x > fhi else fhi
            fmin, fmax = flo, fhi
            floor = floor_frac * (hi - lo)
            sp = floor_frac * (RANGE_SPAN * (fhi - flo))
            floor = sp if sp < floor else floor
        else:
            floor = floor_frac * (hi - lo)
        cnt = scnt[row]
        s1 = ss1[row]
        s2 = ss2[row]
        z = 0.0
        if cnt >= SEASON_MIN:
            mean = s1 / cnt
            var = s2 / cnt - mean * mean
            scale = floor
            if var > scale * scale:
                scale = math.sqrt(var)
            if isint:
                pf = cfloor * math.sqrt(max(mean + off, 1.0))
                if pf > scale:
                    scale = pf
            if scale > 0.0:
                z = abs(x - mean) / scale
        h = shead[row]
        if cnt == window:
            old = season[row, h]
            s1 += x - old
            s2 += x * x - old * old
        else:
            scnt[row] = cnt + 1
            s1 += x
            s2 += x * x
        season[row, h] = x
        h += 1
        if h == window:
            h = 0
            s1 = 0.0
            s2 = 0.0
            for k in range(window):
                s1 += season[row, k]
                s2 += season[row, k] * season[row, k]
        shead[row] = h
        ss1[row] = s1
        ss2[row] = s2
        step = x - prev
        plevel = prev + off
        prev = x
        if tcnt >= SEASON_MIN:
            mean = t1 / tcnt
            var = t2 / tcnt - mean * mean
            scale = floor
            if var > scale * scale:
                scale = math.sqrt(var)
            if isint:
                pf = cfloor * math.sqrt(2.0 * max(plevel, 1.0))
                if pf > scale:
                    scale = pf
            if scale > 0.0:
                zs = abs(step - mean) / scale
                if zs > z:
                    z = zs
        if tcnt == steps:
            old = stp[thead]
            t1 += step - old
            t2 += step * step - old * old
        else:
            tcnt += 1
            t1 += step
            t2 += step * step
        stp[thead] = step
        thead += 1
        if thead == steps:
            thead = 0
            t1 = 0.0
            t2 = 0.0
            for k in range(steps):
                t1 += stp[k]
                t2 += stp[k] * stp[k]
        r = -math.expm1(-(z * z) / SURPRISE_SCALE)
        r = r ** sharp
        if acnt == average:
            a1 += r - avg[ahead]
        else:
            acnt += 1
            a1 += r
        avg[ahead] = r
        ahead += 1
        if ahead == average:
            ahead = 0
            a1 = 0.0
            for k in range(average):
                a1 += avg[k]
        a = a1 / (n if n < average else average)
        alpha = hist
        if alpha * n < 1.0:
            alpha = 1.0 / n
        if n == 1:
            mm = a
            m = a
            vv = 0.0
        else:
            mm, vv = m, v
            d = a - mm
            m = mm + alpha * d
            v = (1.0 - alpha) * (vv + alpha * d * d)
        zl = a - (mm if mm > MEAN_FLOOR else MEAN_FLOOR)
        if zl > 0.0:
            sd = math.sqrt(vv)
            zl /= sd if sd > STD_FLOOR else STD_FLOOR
        araw[i] = a
        zraw[i] = zl
        if mode == 0:
            zx = w * zc[i]
            if zx > zl:
                zl = zx
        elif mode == 1:
            if np.isfinite(zc[i]):
                zl = zc[i]
        elif mode == 2:
            zl = 0.5 * ((zl if zl > 0.0 else 0.0) + w * zc[i])
        elif np.isfinite(zc[i]):  # 3: Fisher's combination of the two upper-tail probabilities
            pl = 0.5 * math.erfc(zl / math.sqrt(2.0)) + 1e-300
            pc = 0.5 * math.erfc(w * zc[i] / math.sqrt(2.0)) + 1e-300
            pp = pl * pc
            pf = pp * (1.0 - math.log(pp))
            zq = math.sqrt(max(-2.0 * math.log(pf), 0.0))
            for _ in range(40):
                fz = 0.5 * math.erfc(zq / math.sqrt(2.0)) - pf
                dz = -math.exp(-0.5 * zq * zq) / math.sqrt(2.0 * math.pi)
                if dz == 0.0:
                    break
                zq -= fz / dz
            zl = zq
        hit = zl > zred
        strong = zl > zcrit
        if zl <= 0.0:
            score = ordinary
        else:
            score = -math.log10(0.5 * math.erfc(zl / math.sqrt(2.0)) + P_FLOOR) / 10.0
            if score > 1.0:
                score = 1.0
        if pmax >= pmin:
            big = -pmin if -pmin > pmax else pmax
            tl = tol * (pmax - pmin) + RANGE_RESOLUTION * (abs(off) + big)
            if x > pmax + tl or x < pmin - tl:
                score = 1.0
                hit = True
                strong = True
        if hit and n >= min_hist:
            if n - vhit <= 1 or n - vcrit <= refr:
                score = demoted
            vhit = n
            if strong:
                vcrit = n
        out[i] = score if n >= min_hist else 0.0
    return out




def _own_likelihood(sig: F64, rate: float, mute: int) -> F64:
    """The signal's z against its exponentially weighted mean and variance before it (z > 0 only; NaN: no signal
    yet); 0 for the channel's first ``mute`` samples."""
    out = np.zeros(sig.shape[0])
    m = 0.0
    v = 0.0
    k = 0
    for i in range(sig.shape[0]):
        s = sig[i]
        if not np.isfinite(s):
            continue
        k += 1
        if k > 1:
            d = s - m
            if d > 0 and k > mute:
                out[i] = d / max(math.sqrt(v), 1e-12 + 1e-9 * abs(m))
        alpha = rate if rate * k >= 1.0 else 1.0 / k
        if k == 1:
            m = s
        else:
            d = s - m
            m = m + alpha * d
            v = (1.0 - alpha) * (v + alpha * d * d)
    return out


def _volatility(xs: F64, width: int, rate: float, floor_frac: float) -> F64:
    """log((variance of the last ``width`` steps + f^2) / (the steps' running variance before them + f^2)),
    f = floor_frac x the range seen: a rise of the noise level; O(1) a sample."""
    n = xs.shape[0]
    out = np.full(n, np.nan)
    ring = np.zeros(width)
    h = 0
    c = 0
    s2 = 0.0
    lv = 0.0
    vmin, vmax = np.inf, -np.inf
    for i in range(1, n):
        x = xs[i]
        vmin = min(vmin, x, xs[i - 1])
        vmax = max(vmax, x, xs[i - 1])
        d = x - xs[i - 1]
        if c == width:
            s2 += d * d - ring[h] * ring[h]
        else:
            c += 1
            s2 += d * d
        ring[h] = d
        h = (h + 1) % width
        if h == 0:
            s2 = 0.0
            for j in range(c):
                s2 += ring[j] * ring[j]
        fl2 = (floor_frac * (vmax - vmin)) ** 2 + 1e-300
        if c == width and i - 1 > width:  # i - 1 steps in the running variance
            out[i] = math.log((s2 / c + fl2) / (lv + fl2))
        a = rate if rate * i >= 1.0 else 1.0 / i
        lv = (1 - a) * lv + a * d * d
    return out


def _bocpd(xs: F64, ts: F64, runs: int, lam: float, kappa0: float, smooth: int, resid: bool, floor_frac: float
           ) -> F64:
    """Bayesian online changepoint detection: the run-length posterior, truncated at ``runs`` run lengths, a
    Normal-Gamma model per run length (Student-t predictive), hazard 1 / ``lam``; input the values (or their
    residual from the hour's running mean, over ~30 values) as means of ``smooth`` samples; a new run's prior:
    the running mean, ``kappa0``, variance half the running mean squared step (floored at (floor_frac x range)^2).
    Signal: the predictive surprise -log p(x | past), held between means."""
    n = xs.shape[0]
    out = np.full(n, np.nan)
    hz = 1.0 / lam
    p = np.zeros(runs)
    mu = np.zeros(runs)
    ka = np.zeros(runs)
    al = np.zeros(runs)
    be = np.zeros(runs)
    q = np.zeros(runs)
    nmu = np.zeros(runs)
    nka = np.zeros(runs)
    nal = np.zeros(runs)
    nbe = np.zeros(runs)
    pred = np.zeros(runs)
    bmean = np.zeros(24)
    bcnt = np.zeros(24)
    live = 0
    s2 = 0.0
    em = 0.0
    k = 0
    vmin, vmax = np.inf, -np.inf
    prev = 0.0
    acc = 0.0
    count = 0
    for i in range(n):
        x = xs[i]
        vmin = min(vmin, x)
        vmax = max(vmax, x)
        if resid:
            b = int(math.floor(ts[i] / 3600.0) % 24)
            c = bcnt[b]
            raw = x
            x = x - bmean[b] if c >= 3 else 0.0
            bcnt[b] = c + 1
            bmean[b] += (raw - bmean[b]) / min(c + 1, 30.0)
        acc += x
        count += 1
        if count < smooth:
            if i > 0:
                out[i] = out[i - 1]
            continue
        x = acc / smooth
        acc = 0.0
        count = 0
        k += 1
        if k == 1:
            prev = x
            em = x
        d = x - prev
        prev = x
        a = 0.01 if 0.01 * k >= 1.0 else 1.0 / k
        s2 = (1 - a) * s2 + a * d * d
        em = em + a * (x - em)
        fl = floor_frac * (vmax - vmin)
        var0 = max(0.5 * s2, fl * fl, 1e-12)
        if live == 0:
            p[0], mu[0], ka[0], al[0], be[0] = 1.0, x, kappa0, 1.0, var0
            live = 1
            out[i] = 0.0
            continue
        ev = 0.0
        for r in range(live):
            nu = 2.0 * al[r]
            sc2 = be[r] * (ka[r] + 1.0) / (al[r] * ka[r])
            zz = (x - mu[r]) * (x - mu[r]) / (nu * sc2)
            pred[r] = math.exp(math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu)
                               - 0.5 * math.log(nu * math.pi * sc2) - 0.5 * (nu + 1.0) * math.log1p(zz))
            ev += p[r] * pred[r]
        cp = 0.0
        grown = live + 1 if live < runs else runs
        for r in range(live):
            g = p[r] * pred[r]
            cp += g * hz
            if r + 1 < runs:
                q[r + 1] = g * (1.0 - hz)
                nka[r + 1] = ka[r] + 1.0
                nmu[r + 1] = (ka[r] * mu[r] + x) / (ka[r] + 1.0)
                nal[r + 1] = al[r] + 0.5
                nbe[r + 1] = be[r] + ka[r] * (x - mu[r]) * (x - mu[r]) / (2.0 * (ka[r] + 1.0))
        q[0], nmu[0], nka[0], nal[0], nbe[0] = cp, em, kappa0, 1.0, var0
        tot = 0.0
        for r in range(grown):
            tot += q[r]
        if tot <= 0.0 or not np.isfinite(tot):  # every run underflowed: a changepoint
            q[:grown] = 0.0
            q[0] = 1.0
            tot = 1.0
        for r in range(grown):
            p[r], mu[r], ka[r], al[r], be[r] = q[r] / tot, nmu[r], nka[r], nal[r], nbe[r]
        live = grown
        out[i] = -math.log(ev + 1e-300)
    return out


def _autoregressive(xs: F64, order: int, lam: float, mean_of: int) -> F64:
    """The mean of the last ``mean_of`` absolute one-step errors of an AR(``order``) of the values around their
    running mean (rate 0.01), fitted by recursive least squares with forgetting ``lam``; scaled by the first 30
    values' spread; O(order^2) a sample."""
    n = xs.shape[0]
    out = np.full(n, np.nan)
    th = np.zeros(order)
    pm = np.eye(order) * 100.0
    hist = np.zeros(order)
    phi = np.zeros(order)
    ring = np.zeros(mean_of)
    rh = 0
    racc = 0.0
    rc = 0
    m = xs[0] if n else 0.0
    scale = 0.0
    for i in range(n):
        x = xs[i]
        if i < 30:
            scale = max(scale, abs(x - xs[0]))
            m += (x - m) / (i + 1)
            hist[1:] = hist[:-1].copy()
            hist[0] = 0.0
            continue
        y = (x - m) / (scale if scale > 0 else 1.0)
        phi[:] = hist
        e = y - np.dot(th, phi)
        pphi = pm @ phi
        den = lam + np.dot(phi, pphi)
        th += pphi * (e / den)
        pm = (pm - np.outer(pphi, pphi) / den) / lam
        hist[1:] = hist[:-1].copy()
        hist[0] = y
        m += 0.01 * (x - m)
        v = abs(e)
        if rc == mean_of:
            racc += v - ring[rh]
        else:
            rc += 1
            racc += v
        ring[rh] = v
        rh = (rh + 1) % mean_of
        out[i] = racc / rc
    return out


def _half_space_trees(xs: F64, dims: int, trees: int, depth: int, psi: int, seed: int) -> F64:
    """Streaming Half-Space Trees: ``trees`` random trees of ``depth`` over a work space around [0, 1]^dims (each
    node splits a random dimension of its box in half), mass profiles of a reference and a latest window of ``psi``
    samples swapped every ``psi``; features the last ``dims`` values scaled to the range seen; signal -log(1 + the
    sum over trees of r x 2^depth at the first node whose reference mass is under 0.1 psi)."""
    np.random.seed(seed)
    n = xs.shape[0]
    nodes = (1 << (depth + 1)) - 1
    dim = np.zeros((trees, nodes), np.int64)
    val = np.zeros((trees, nodes))
    ref = np.zeros((trees, nodes))
    lat = np.zeros((trees, nodes))
    blo = np.zeros((nodes, dims))
    bhi = np.zeros((nodes, dims))
    for t in range(trees):
        for d in range(dims):
            sq = np.random.random()
            rg = 2.0 * max(sq, 1.0 - sq)
            blo[0, d], bhi[0, d] = sq - rg, sq + rg
        for j in range(nodes):
            d = np.random.randint(dims)
            mid = 0.5 * (blo[j, d] + bhi[j, d])
            dim[t, j], val[t, j] = d, mid
            c1 = 2 * j + 1
            if c1 < nodes:
                blo[c1], bhi[c1], blo[c1 + 1], bhi[c1 + 1] = blo[j], bhi[j], blo[j], bhi[j]
                bhi[c1, d] = mid
                blo[c1 + 1, d] = mid
    out = np.full(n, np.nan)
    raw = np.zeros(dims)
    feat = np.zeros(dims)
    vmin, vmax = np.inf, -np.inf
    seen = 0
    filled = False
    for i in range(n):
        x = xs[i]
        vmin = min(vmin, x)
        vmax = max(vmax, x)
        raw[:-1] = raw[1:].copy()
        raw[-1] = x
        if i + 1 < dims:
            continue
        rng = vmax - vmin
        for d in range(dims):
            feat[d] = (raw[d] - vmin) / rng if rng > 0 else 0.5
        mass = 0.0
        for t in range(trees):
            j = 0
            level = 0
            scored = False
            while True:
                if filled and not scored and (ref[t, j] < 0.1 * psi or 2 * j + 1 >= nodes):
                    mass += ref[t, j] * (1 << level)
                    scored = True
                lat[t, j] += 1.0
                if 2 * j + 1 >= nodes:
                    break
                j = 2 * j + 1 if feat[dim[t, j]] < val[t, j] else 2 * j + 2
                level += 1
        if filled:
            out[i] = -math.log1p(mass)
        seen += 1
        if seen == psi:
            seen = 0
            filled = True
            ref[:] = lat
            lat[:] = 0.0
    return out


_JIT: dict[Any, Any] = {}


def jitted(fn: Any) -> Any:
    """``fn`` compiled by numba (on first use, as the detector's engine does; once per function): the research
    passes' kernels, each module's through its own ``_jit(name)``."""
    if fn not in _JIT:
        import numba  # optional and heavy

        _JIT[fn] = numba.njit(cache=False)(fn)
    return _JIT[fn]


def _jit(name: str) -> Any:
    """The numba-compiled function ``name`` of this module."""
    return jitted(globals()[name])


def detect(values: F64, times: F64, zc: F64 | None = None, w: float = 0.0, cfg: DetectorConfig | None = None
           ) -> F64:
    """Scores of one series (0 during warm-up) with the channel likelihood ``zc`` combined at weight ``w``."""
    cfg = DetectorConfig() if cfg is None else cfg
    z = np.zeros(len(values)) if zc is None else zc
    n = len(values)
    out: F64 = _jit("_kernel")(
        values, times, z, w, 0, 0.0, np.zeros(n), np.zeros(n), cfg.window, cfg.buckets, cfg.period_s, cfg.steps,
        cfg.noise_floor, cfg.sharpness, cfg.average, cfg.history_rate, cfg.min_history, cfg.refractory,
        cfg.spatial_tolerance, cfg.range_rate, red_z(cfg.warning), red_z(cfg.critical), demoted_score(cfg.warning),
        ORDINARY_SCORE)
    return out


# The pass's best setting of each channel (docs/benchmarks.md): a signal of (values, times), and its weight.
BEST: dict[str, tuple[Callable[[F64, F64], F64], float]] = {
    "bocpd R50 lambda300 s4 residual": (lambda x, t: _jit("_bocpd")(x, t, 50, 300.0, 0.1, 4, True, 0.01), 0.5),
    "half-space trees D8 psi250 (start-up)": (lambda x, t: _jit("_half_space_trees")(x, 8, 25, 10, 250, 7), 0.3),
    "autoregressive p6 lambda0.99 mean5": (lambda x, t: _jit("_autoregressive")(x, 6, 0.99, 5), 0.4),
    "volatility W10 r0.01 ff0.01": (lambda x, t: _jit("_volatility")(x, 10, 0.01, 0.01), 0.6),
}


def main() -> int:
    root = DEFAULT_ROOT
    windows = ns.load_windows(root / "labels" / "combined_windows.json")
    corpus = Corpus(root / "data", data_files(root / "data"), windows)
    keys = [k for k in corpus.keys if category(k) in REAL]

    def table(scores: dict[str, F64]) -> dict[str, float]:
        out = {c: corpus.score(scores, (c,), "standard")["standard"]["score"] for c in REAL}
        out["real3"] = corpus.score(scores, REAL, "standard")["standard"]["score"]
        return out

    base = table({k: detect(corpus.values[k], corpus.times[k]) for k in keys})
    print("default", " / ".join(f"{base[c]:.2f}" for c in (*REAL, "real3")))
    for name, (signal, w) in BEST.items():
        like = _jit("_own_likelihood")
        scores = {k: detect(corpus.values[k], corpus.times[k],
                            like(signal(corpus.values[k], corpus.times[k]), 0.003, 0), w) for k in keys}
        got = table(scores)
        paired = sum(got[c] - base[c] for c in REAL) / len(REAL)
        print(f"{name}, w {w}", " / ".join(f"{got[c]:.2f}" for c in (*REAL, "real3")), f"paired {paired:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
