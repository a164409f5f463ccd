"""NAB fifteenth research pass (docs/benchmarks.md, "Fifteenth pass"): ``python -m benchmarks.nab_fifteenth
[--only NAME]... [--official NAME]...``.

The fourteenth pass's split research kernel (``benchmarks/nab_fourteenth.py``), copied without its switches and with
one hook: the instantaneous z of every sample is a combination of the seasonal z, the step z and any number of extra
instantaneous channels (``zx``, computed beforehand, causal), by max (the default's rule) or by a Cauchy combination of
their two-sided p-values (Liu & Xie 2020; with weights summing to one it controls the false-positive rate whatever the
channels' dependence, and for small p-values it is the weighted harmonic mean of them). With no extra channel and max,
it gives the default's scores to the bit. Tried (none holds under the protocol; the docs have the numbers):

* the seasonal and step z combined by Cauchy (equal weights, or unit weights: min-p with a bonus when both agree);
* multi-scale steps (x_t - x_(t-k), k = 2..32, each against its own last 100 lag-k differences) joined to the
  seasonal and step z by max or by Cauchy (multiplicity-corrected);
* calibration: the likelihood z replaced by the z of its causal empirical tail within the file (with a Gaussian prior
  worth ``n0`` samples), so one corpus threshold means one false-positive rate per file;
* persistence: the likelihood z replaced by its minimum (or mean) over the last ``m`` samples, range breaks kept; a
  range break counted only at its ``m``-th sample in a row beyond the old range;
* a second likelihood on a shorter or longer mean of the surprise, by max or Cauchy;
* a trend-adjusted seasonal z (the bucket's mean moved by a robust running slope x the age of the bucket's values);
* a small-sample z: a seasonal (and step) z from a young window read through Student's t with the window's count,
  relative to a full window (the pass's best lead: real-3 70.83, but KnownCause alone -0.58 and, as the default, the
  official ``--cv`` fold holding KnownCause out -4.52).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

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
    red_z,
)

from .nab import CANDIDATES
from .nab_eleventh import Bench, fmt, loo
from .nab_fourteenth import post
from .nab_tenth import F64, jitted

SQRT2 = math.sqrt(2.0)


def _z_of_p2(p: float) -> float:
    """The z whose two-sided Gaussian tail is ``p`` (Newton on erfc)."""
    if p >= 1.0:
        return 0.0
    p = max(p, 1e-300)
    z = math.sqrt(max(-2.0 * math.log(p), 0.0))
    for _ in range(40):
        f = math.erfc(z / SQRT2) - p
        d = -2.0 * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        if d == 0.0:
            break
        step = f / d
        z -= step
        if abs(step) < 1e-12:
            break
    return z if z > 0.0 else 0.0


def _t_tail2(t: float, nu: int) -> float:
    """Two-sided tail P(|T| > t) of Student's t with ``nu`` (integer) degrees of freedom (Abramowitz & Stegun
    26.7.3-4: the closed series in cos^2 theta, theta = atan(t / sqrt(nu)))."""
    th = math.atan(abs(t) / math.sqrt(nu))
    c2 = math.cos(th) ** 2
    if nu % 2 == 1:
        acc = 0.0
        if nu > 1:
            term = 1.0
            acc = 1.0
            for k in range(1, (nu - 1) // 2):
                term *= c2 * (2.0 * k) / (2.0 * k + 1.0)
                acc += term
            acc *= math.sin(th) * math.cos(th)
        a = 2.0 / math.pi * (th + acc)
    else:
        term = 1.0
        acc = 1.0
        for k in range(1, nu // 2):
            term *= c2 * (2.0 * k - 1.0) / (2.0 * k)
            acc += term
        a = math.sin(th) * acc
    p = 1.0 - a
    return p if p > 1e-14 else 1e-14  # 1 - a cancels below ~1e-15; a z of 7.65 or more saturates the surprise anyway


def _t_to_z(z: float, cnt: int) -> float:
    """A seasonal z from ``cnt`` values (spread: their biased standard deviation) read as the predictive Student t
    it is (t = z / sqrt((cnt + 1) / (cnt - 1)), cnt - 1 degrees of freedom) and back as a Gaussian z of the same
    two-sided tail."""
    t = z / math.sqrt((cnt + 1.0) / (cnt - 1.0))
    return _z_of_p2(_t_tail2(t, cnt - 1))


def _cauchy(zs: F64, k: int, unit: bool) -> float:
    """Cauchy combination of the two-sided p-values of ``zs[:k]``: weights 1/k (``unit``: 1 each), read back as a z."""
    t = 0.0
    wt = 1.0 if unit else 1.0 / k
    for j in range(k):
        p = math.erfc(zs[j] / SQRT2)
        if p < 1e-300:
            p = 1e-300
        if p >= 1.0:
            continue  # tan(-pi/2 ... ) -> contributes -inf; a z of 0 carries no evidence: leave it out
        t += wt * (1.0 / math.tan(math.pi * p) if p < 0.5 else math.tan((0.5 - p) * math.pi))
    pc = 0.5 - math.atan(t) / math.pi if t <= 0.0 else math.atan(1.0 / t) / math.pi  # the latter without cancelling
    return _z_of_p2(pc)


def _stage(xs: F64, ts: F64, zx: F64, comb: int, trend: float, a2n: int, comb2: int, tcorr: int, araw: F64,
           hits: Any, zout: F64, brk: Any,
           window: int, buckets: int, period: float, steps: int, floor_frac: float, sharp: float, average: int,
           hist: float, min_hist: int, tol: float, rrate: float, zred: float, zcrit: float, ordinary: float) -> F64:
    """The fourteenth pass's ``_stage1`` without its switches: scores before demotion, ``hits`` (1 detection, 2
    critical), ``zout`` the likelihood z, ``araw`` the instantaneous z, ``brk`` the range breaks. ``zx`` (n x K):
    extra instantaneous z channels; ``comb`` 0: max of all, 1: Cauchy (weights 1/(2+K)), 2: Cauchy (unit weights).
    ``trend`` > 0: the seasonal mean moved by a running slope (rate ``trend``) x the age of the bucket's values.
    ``a2n`` > 0: a second likelihood on the mean surprise of the last ``a2n`` samples, combined with the first by max
    (``comb2`` 0) or by a Cauchy combination of their one-sided p-values, weights 1/2 (``comb2`` 1). ``tcorr`` 1: a
    seasonal z whose spread is its bucket's own (not the floor) read through Student's t with the bucket's count
    (:func:`_t_to_z`); 2: the same, relative to a full bucket (the young bucket's extra uncertainty only); 3: 2 and the
    step z alike (relative to a full step window); 4: the step z alone."""
    n_all = xs.shape[0]
    kx = zx.shape[1]
    buf = np.zeros(2 + kx)
    out = np.zeros(n_all)
    season = np.zeros((buckets, window))
    sage = np.zeros((buckets, window))
    scnt = np.zeros(buckets, np.int64)
    shead = np.zeros(buckets, np.int64)
    ss1 = np.zeros(buckets)
    ss2 = np.zeros(buckets)
    sta = np.zeros(buckets)
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
    off = 0.0
    floor = 0.0
    span = period / buckets
    slope = 0.0
    sdev = 0.0
    avg2 = np.zeros(a2n if a2n > 0 else 1)
    b1 = 0.0
    bcnt = 0
    bhead = 0
    m2 = 0.0
    v2 = 0.0
    buf2 = np.zeros(2)
    for i in range(n_all):
        n = i + 1
        x = xs[i]
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
            if trend > 0.0:  # the bucket's values are on average sta/cnt samples old: move the mean by the slope
                mean += slope * (n - sta[row] / cnt)
            scale = floor
            if var > scale * scale:
                scale = math.sqrt(var)
            if scale > 0.0:
                z = abs(x - mean) / scale
                if (tcorr == 1 or tcorr == 2 or tcorr == 3) and var > floor * floor and z > 0.0:
                    zt = _t_to_z(z, cnt)
                    if tcorr >= 2:
                        zf = _t_to_z(z, window)
                        zt = zt * z / zf if zf > 0.0 else z
                    z = zt
        zseason = z
        h = shead[row]
        if cnt == window:
            old = season[row, h]
            s1 += x - old
            s2 += x * x - old * old
            sta[row] += n - sage[row, h]
        else:
            scnt[row] = cnt + 1
            s1 += x
            s2 += x * x
            sta[row] += n
        season[row, h] = x
        sage[row, h] = n
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
        prev = x
        if trend > 0.0 and n > 1:  # a robust running slope: the step clipped at 3 running mean absolute deviations
            c = 3.0 * sdev if sdev > 0.0 else abs(step)
            cs = step if step < c else c
            cs = cs if cs > -c else -c
            slope += trend * (cs - slope)
            sdev += trend * (abs(step - slope) - sdev)
        zstep = 0.0
        if tcnt >= SEASON_MIN:
            mean = t1 / tcnt
            var = t2 / tcnt - mean * mean
            scale = floor
            if var > scale * scale:
                scale = math.sqrt(var)
            if scale > 0.0:
                zstep = abs(step - mean) / scale
                if tcorr >= 3 and var > floor * floor and zstep > 0.0:  # 3, 4
                    zf = _t_to_z(zstep, steps)
                    if zf > 0.0:
                        zstep = _t_to_z(zstep, tcnt) * zstep / zf
        if comb == 0:
            z = zseason if zseason > zstep else zstep
            for j in range(kx):
                if zx[i, j] > z:
                    z = zx[i, j]
        else:
            buf[0] = zseason
            buf[1] = zstep
            for j in range(kx):
                buf[2 + j] = zx[i, j]
            z = _cauchy(buf, 2 + kx, comb == 2)
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
        if a2n > 0:
            if bcnt == a2n:
                b1 += r - avg2[bhead]
            else:
                bcnt += 1
                b1 += r
            avg2[bhead] = r
            bhead += 1
            if bhead == a2n:
                bhead = 0
                b1 = 0.0
                for k in range(a2n):
                    b1 += avg2[k]
            a2 = b1 / (n if n < a2n else a2n)
            if n == 1:
                mm2 = a2
                m2 = a2
                vv2 = 0.0
            else:
                mm2, vv2 = m2, v2
                d = a2 - mm2
                m2 = mm2 + alpha * d
                v2 = (1.0 - alpha) * (vv2 + alpha * d * d)
            zl2 = a2 - (mm2 if mm2 > MEAN_FLOOR else MEAN_FLOOR)
            if zl2 > 0.0:
                sd = math.sqrt(vv2)
                zl2 /= sd if sd > STD_FLOOR else STD_FLOOR
            if comb2 == 0:
                zl = zl2 if zl2 > zl else zl
            else:  # one-sided p-values as two-sided ones of |z| (z <= 0: no evidence, p >= 1/2 -> left out)
                buf2[0] = zl if zl > 0.0 else 0.0
                buf2[1] = zl2 if zl2 > 0.0 else 0.0
                zl = _cauchy(buf2, 2, False)
        araw[i] = z
        hit = zl > zred
        strong = zl > zcrit
        if zl <= 0.0:
            score = ordinary
        else:
            score = -math.log10(0.5 * math.erfc(zl / SQRT2) + P_FLOOR) / 10.0
            if score > 1.0:
                score = 1.0
        brk[i] = False
        if pmax >= pmin:
            big = -pmin if -pmin > pmax else pmax
            tl = tol * (pmax - pmin) + RANGE_RESOLUTION * (abs(off) + big)
            if x > pmax + tl or x < pmin - tl:
                score = 1.0
                hit = True
                strong = True
                brk[i] = True
        out[i] = score
        hits[i] = (1 if hit else 0) + (2 if strong else 0)
        zout[i] = zl
    return out


def _lag_steps(xs: F64, lags: Any, width: int, floor_frac: float, rrate: float) -> F64:
    """Per sample and lag k: |x_t - x_(t-k) - mean| / spread of the last ``width`` lag-k differences (floored as the
    detector floors its spreads); 0 until the window holds ``SEASON_MIN`` differences."""
    n = xs.shape[0]
    kx = lags.shape[0]
    out = np.zeros((n, kx))
    big = 0
    for j in range(kx):
        if lags[j] > big:
            big = lags[j]
    ring = np.zeros(big + 1)
    dif = np.zeros((kx, width))
    cnt = np.zeros(kx, np.int64)
    head = np.zeros(kx, np.int64)
    s1 = np.zeros(kx)
    s2 = np.zeros(kx)
    vmin, vmax = np.inf, -np.inf
    fmin, fmax = np.inf, -np.inf
    off = xs[0] if n else 0.0
    for i in range(n):
        x = xs[i] - off
        vmin = x if x < vmin else vmin
        vmax = x if x > vmax else vmax
        keep = 1.0 - rrate
        flo = keep * fmin + rrate * x
        fhi = keep * fmax + rrate * x
        fmin = x if x < flo else flo
        fmax = x if x > fhi else fhi
        floor = floor_frac * (vmax - vmin)
        sp = floor_frac * RANGE_SPAN * (fmax - fmin)
        floor = sp if sp < floor else floor
        for j in range(kx):
            k = lags[j]
            if i < k:
                continue
            d = x - ring[(i - k) % (big + 1)]
            c = cnt[j]
            if c >= SEASON_MIN:
                mean = s1[j] / c
                var = s2[j] / c - mean * mean
                sc = floor
                if var > sc * sc:
                    sc = math.sqrt(var)
                if sc > 0.0:
                    out[i, j] = abs(d - mean) / sc
            h = head[j]
            if c == width:
                old = dif[j, h]
                s1[j] += d - old
                s2[j] += d * d - old * old
            else:
                cnt[j] = c + 1
                s1[j] += d
                s2[j] += d * d
            dif[j, h] = d
            head[j] = (h + 1) % width
            if head[j] == 0:
                s1[j] = 0.0
                s2[j] = 0.0
                for q in range(width):
                    s1[j] += dif[j, q]
                    s2[j] += dif[j, q] * dif[j, q]
        ring[i % (big + 1)] = x
    return out


def _calibrate(zl: F64, n0: float, bins: int, zmax: float) -> F64:
    """The likelihood z replaced by the z of its causal empirical upper tail in the file: p = (count of earlier z >=
    this one + n0 x the Gaussian tail) / (earlier samples + n0), counted in ``bins`` bins over [0, ``zmax``] (z above
    ``zmax`` keeps its Gaussian tail scaled alike). 0 stays 0."""
    n = zl.shape[0]
    out = np.zeros(n)
    hist = np.zeros(bins + 1)
    width = zmax / bins
    seen = 0.0
    for i in range(n):
        z = zl[i]
        if z > 0.0:
            b = int(z / width)
            if b > bins:
                b = bins
            above = 0.0
            for q in range(b + 1, bins + 1):
                above += hist[q]
            pg = 0.5 * math.erfc(z / SQRT2)
            p = (above + n0 * pg) / (seen + n0)
            pp = max(2.0 * p, 1e-300)
            out[i] = _z_of_p2(pp) if pp < 1.0 else 0.0
            hist[b] += 1.0
        else:
            hist[0] += 1.0
        seen += 1.0
    return out


def _rolling_min(zl: F64, m: int, strong: float) -> F64:
    """The likelihood z's minimum over the last ``m`` samples; a z above ``strong`` counts at once."""
    n = zl.shape[0]
    out = np.zeros(n)
    for i in range(n):
        lo = zl[i]
        if lo > strong:
            out[i] = lo
            continue
        for k in range(1, m):
            if i - k < 0:
                break
            if zl[i - k] < lo:
                lo = zl[i - k]
        out[i] = lo
    return out


def _rolling_mean(zl: F64, m: int) -> F64:
    """The likelihood z's mean over the last ``m`` samples (fewer at the start)."""
    n = zl.shape[0]
    out = np.zeros(n)
    acc = 0.0
    for i in range(n):
        acc += zl[i]
        if i >= m:
            acc -= zl[i - m]
        out[i] = acc / (m if i + 1 >= m else i + 1)
    return out


def _persistent_breaks(xs: F64, brk: Any, tol: float, m: int) -> Any:
    """Range breaks that persist: a break counts at the ``m``-th sample in a row beyond the range seen before the
    first of them, on the same side (a value back inside ends the run; the break itself is no detection)."""
    n = xs.shape[0]
    out = np.zeros(n, np.bool_)
    vmin, vmax = np.inf, -np.inf
    run = 0
    side = 0
    lo0, hi0 = 0.0, 0.0
    for i in range(n):
        x = xs[i]
        if run > 0:
            if (side > 0 and x > hi0) or (side < 0 and x < lo0):
                run += 1
                if run == m:
                    out[i] = True
            else:
                run = 0
        if run == 0 and brk[i]:
            big = -vmin if -vmin > vmax else vmax
            tl = tol * (vmax - vmin) + RANGE_RESOLUTION * abs(big)
            run = 1
            side = 1 if x > vmax else -1
            hi0, lo0 = vmax + tl, vmin - tl
            if m == 1:
                out[i] = True
        vmin = x if x < vmin else vmin
        vmax = x if x > vmax else vmax
    return out


def _rescore(zl: F64, brk: Any, zred: float, zcrit: float, ordinary: float) -> tuple[F64, Any]:
    """Scores and detection flags from a (new) likelihood z, range breaks kept (score 1.0, critical)."""
    n = zl.shape[0]
    sc = np.zeros(n)
    hits = np.zeros(n, np.int64)
    for i in range(n):
        z = zl[i]
        if brk[i]:
            sc[i] = 1.0
            hits[i] = 3
            continue
        if z <= 0.0:
            sc[i] = ordinary
        else:
            s = -math.log10(0.5 * math.erfc(z / SQRT2) + P_FLOOR) / 10.0
            sc[i] = s if s < 1.0 else 1.0
        hits[i] = (1 if z > zred else 0) + (2 if z > zcrit else 0)
    return sc, hits


_JITTED = ("_z_of_p2", "_cauchy", "_t_tail2", "_t_to_z")


def _jit(name: str) -> Any:
    for helper in _JITTED:  # the helpers the kernels call must be compiled (and bound in globals) first
        if not hasattr(globals()[helper], "py_func"):
            globals()[helper] = jitted(globals()[helper])
    fn = globals()[name]
    return fn if hasattr(fn, "py_func") else jitted(fn)


Stage = tuple[F64, Any, F64, F64, Any]


def stage(values: F64, times: F64, cfg: DetectorConfig | None = None, zx: F64 | None = None, comb: int = 0,
          trend: float = 0.0, a2n: int = 0, comb2: int = 0, tcorr: int = 0) -> Stage:
    """Scores before demotion, detection flags, likelihood z, instantaneous z and range breaks of one series."""
    cfg = DetectorConfig() if cfg is None else cfg
    n = len(values)
    hits = np.zeros(n, np.int64)
    zl = np.zeros(n)
    z = np.zeros(n)
    brk = np.zeros(n, np.bool_)
    sc = _jit("_stage")(
        values, times, np.zeros((n, 0)) if zx is None else zx, comb, trend, a2n, comb2, tcorr, z, hits, zl, brk,
        cfg.window, cfg.buckets, cfg.period_s, cfg.steps, cfg.noise_floor, cfg.sharpness, cfg.average, cfg.history_rate,
        cfg.min_history, cfg.spatial_tolerance, cfg.range_rate, red_z(cfg.warning), red_z(cfg.critical),
        ORDINARY_SCORE)
    return sc, hits, zl, z, brk


def finish(st: Stage, cfg: DetectorConfig, zl_new: F64 | None = None) -> F64:
    """Demotion (the default's rule); with ``zl_new`` the scores and flags are first re-derived from it."""
    sc, hits, zl, z, brk = st
    if zl_new is not None:
        sc, hits = _jit("_rescore")(zl_new, brk, red_z(cfg.warning), red_z(cfg.critical), ORDINARY_SCORE)
        zl = zl_new
    return post((sc, hits, zl, z), cfg)


Make = Callable[[DetectorConfig], dict[str, F64]]


def row(b: Bench, label: str, make: Make, official: bool) -> tuple[dict[str, F64], dict[str, float]]:
    scores = make(DetectorConfig())
    t = b.table(scores)
    line = f"{label:62s} {fmt(t)}"
    if official:
        runs = {name: make(replace(DetectorConfig(), **over))  # type: ignore[arg-type]
                for name, over in CANDIDATES.items() if name != "level=20"}
        mean, folds = loo(b.corpus, runs)
        line += f" | official as default {mean:.2f} " + ", ".join(f"{h[4:]}: {ch} {v:.2f}"
                                                                 for h, (ch, v) in folds.items())
    print(line, flush=True)
    return scores, t


def makers(b: Bench) -> dict[str, Make]:
    """The pass's candidates by name (each a function of the config giving every file's scores)."""
    c = b.corpus
    out: dict[str, Make] = {}

    def combo(lags: tuple[int, ...], comb: int, trend: float = 0.0, a2n: int = 0, comb2: int = 0, tcorr: int = 0
              ) -> Make:
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for k in b.keys:
                zx = None
                if lags:
                    zx = _jit("_lag_steps")(c.values[k], np.array(lags, np.int64), cfg.steps, cfg.noise_floor,
                                            cfg.range_rate)
                res[k] = finish(stage(c.values[k], c.times[k], cfg, zx, comb, trend, a2n, comb2, tcorr), cfg)
            return res
        return make

    def persist_breaks(mm: int) -> Make:
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for k in b.keys:
                st = stage(c.values[k], c.times[k], cfg)
                nb = _jit("_persistent_breaks")(c.values[k], st[4], cfg.spatial_tolerance, mm)
                res[k] = finish((st[0], st[1], st[2], st[3], nb), cfg, st[2])
            return res
        return make

    def transform(kind: str, a: float, bq: int = 0) -> Make:
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for k in b.keys:
                st = stage(c.values[k], c.times[k], cfg)
                zl = st[2]
                if kind == "calibrate":
                    zn = _jit("_calibrate")(zl, a, bq, 12.0)
                elif kind == "calibrate-down":
                    zn = np.minimum(zl, _jit("_calibrate")(zl, a, bq, 12.0))
                elif kind == "smooth":
                    zn = _jit("_rolling_mean")(zl, int(a))
                else:
                    zn = _jit("_rolling_min")(zl, int(a), np.inf if bq == 0 else red_z(cfg.critical))
                res[k] = finish(st, cfg, zn)
            return res
        return make

    out["default (research copy)"] = combo((), 0)
    for comb, name in ((1, "Cauchy, weights 1/K"), (2, "Cauchy, unit weights")):
        out[f"seasonal + step z: {name}"] = combo((), comb)
    for lags in ((4,), (2, 4, 8), (4, 16), (2, 4, 8, 16, 32)):
        for comb, name in ((0, "max"), (1, "Cauchy 1/K"), (2, "Cauchy unit")):
            out[f"lag steps {','.join(map(str, lags))}: {name}"] = combo(lags, comb)
    for n0 in (100.0, 1000.0, 5000.0):
        out[f"calibrated likelihood tail, prior {n0:g}"] = transform("calibrate", n0, 240)
    for n0 in (1000.0, 5000.0):
        out[f"calibrated likelihood tail, prior {n0:g}, demoting only"] = transform("calibrate-down", n0, 240)
    for mm in (2, 3, 5):
        out[f"persistence: min of the likelihood z over {mm}"] = transform("persist", mm)
    for mm in (2, 3):
        out[f"persistence over {mm}, a critical z at once"] = transform("persist", mm, 1)
    for mm in (1, 2, 3):
        out[f"range break counted at sample {mm} of a run beyond the old range"] = persist_breaks(mm)
    for mm in (2, 3):
        out[f"smoothing: mean of the likelihood z over {mm}"] = transform("smooth", mm)
    for a2n in (1, 3, 30):
        for comb2, name in ((0, "max"), (1, "Cauchy 1/2")):
            out[f"second likelihood, mean of {a2n}: {name}"] = combo((), 0, 0.0, a2n, comb2)
    out["seasonal z through Student's t (the bucket's count)"] = combo((), 0, 0.0, 0, 0, 1)
    out["seasonal z through Student's t, relative to a full bucket"] = combo((), 0, 0.0, 0, 0, 2)
    out["seasonal and step z through Student's t, relative to full windows"] = combo((), 0, 0.0, 0, 0, 3)
    out["step z through Student's t, relative to a full window"] = combo((), 0, 0.0, 0, 0, 4)
    for rate in (0.001, 0.003, 0.01, 0.03):
        out[f"trend-adjusted seasonal z, slope rate {rate:g}"] = combo((), 0, rate)
    return out


def main(argv: list[str] | None = None) -> int:
    """Reprints the pass's rows (docs/benchmarks.md, "Fifteenth pass"); ``--official NAME`` (repeatable substring):
    the official ``--cv`` as default for the candidates whose name contains it (~2 s each); ``--only NAME``: only
    the rows whose name contains it."""
    args = sys.argv[1:] if argv is None else argv
    wanted = [args[i + 1] for i, a in enumerate(args) if a == "--official" and i + 1 < len(args)]
    only = [args[i + 1] for i, a in enumerate(args) if a == "--only" and i + 1 < len(args)]
    b = Bench()
    for name, make in makers(b).items():
        if only and not any(o in name for o in only):
            continue
        scores, _ = row(b, name, make, any(w in name for w in wanted))
        if name.startswith("default"):
            worst = max(float(np.max(np.abs(scores[k] - b.base[k]))) for k in b.keys)
            print(f"  max |research copy - tenth pass kernel| = {worst:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
