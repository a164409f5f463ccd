"""NAB fourteenth research pass (docs/benchmarks.md, "Fourteenth pass"): ``python -m benchmarks.nab_fourteenth
[--official]``.

The tenth pass's research kernel (``benchmarks/nab_tenth.py``) split at its demotion stage (:func:`_stage1`: the
score of every sample before demotion, its detection flags, likelihood z and instantaneous z; :func:`_post`: the
demotion), so that rules acting on detections can be tried without copying the kernel again; with nothing switched
on it gives the default's scores to the bit. Tried (none holds under the protocol; the docs have the numbers):

* the likelihood's own short and long windows (``average`` x ``history_rate``, a grid);
* a re-arm rule (an event is reported once until the likelihood z is back to normal);
* range breaks: an instantaneous z needed, a gap since the last break (an excursion reported once), an excursion
  rule (the same event until the value is back inside the old range);
* the seasonal and step z combined other than by max (root mean square, Fisher, chi-squared, Bonferroni), the step z
  capped by the seasonal z, the seasonal z against the neighbouring buckets;
* a quiet-run record (a run of unsurprising samples longer than any before: a stall);
* a daily recurrence gate (a detection at a time of day where a surprising sample came on each of the last days is
  a scheduled event): the one with a gain spread over files and no category losing, which the official ``--cv``
  still does not pick as the default.
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
    demoted_score,
    red_z,
)

from .nab import CANDIDATES
from .nab_eleventh import Bench, fmt, loo
from .nab_tenth import F64, jitted


def _stage1(xs: F64, ts: F64, zc: F64, w: float, mode: int, cfloor: float, araw: F64, zraw: F64, hits: Any,
            zout: F64, rp: F64, window: int, buckets: int, period: float, steps: int,
            floor_frac: float, sharp: float, average: int, hist: float, min_hist: int, refr: int, tol: float,
            rrate: float, zred: float, zcrit: float, demoted: float, ordinary: float) -> F64:
    """The tenth pass's research kernel (``benchmarks/nab_tenth.py``: the detector's scalar algorithm for one series)
    up to the demotion stage: each sample's score before demotion, ``hits`` (1: a detection, 2: a critical one),
    ``zout`` the likelihood z, ``araw`` the instantaneous z (the larger of the seasonal and the step z); ``mode``,
    ``zc``, ``w`` and ``cfloor`` as there. ``rp`` switches this pass's changes (``RP_*``; all 0: the default's
    algorithm, equal to the detector's scores once :func:`_post` has demoted)."""
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
    off = 0.0
    floor = 0.0
    span = period / buckets
    isint = cfloor > 0.0
    lastup = -1e18
    lastdn = -1e18
    exup = False
    exdn = False
    exupl = 0.0
    exdnl = 0.0
    exupn = 0.0
    exdnn = 0.0
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
        zseason = 0.0
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
            if rp[RP_NEIGHBOURS] > 0.0:  # the smaller z against the neighbouring buckets too (jittered time of day)
                for dr in (-1, 1):
                    nr = (row + dr) % buckets
                    nc = scnt[nr]
                    if nc >= SEASON_MIN:
                        nm = ss1[nr] / nc
                        nv = ss2[nr] / nc - nm * nm
                        nsc = floor
                        if nv > nsc * nsc:
                            nsc = math.sqrt(nv)
                        if nsc > 0.0:
                            nz = abs(x - nm) / nsc
                            if nz < z:
                                z = nz
        zseason = z
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
                if rp[RP_STEP_CAP] > 0.0 and cnt >= SEASON_MIN and zs > rp[RP_STEP_CAP] * zseason:
                    zs = rp[RP_STEP_CAP] * zseason
                if rp[RP_COMBINE] == 0.0:
                    if zs > z:
                        z = zs
                elif rp[RP_COMBINE] == 1.0:  # root sum of squares / sqrt(2)
                    z = math.sqrt((z * z + zs * zs) / 2.0)
                elif rp[RP_COMBINE] == 2.0:  # Fisher's combination of the two two-sided p-values, read back two-sided
                    pa = math.erfc(z / math.sqrt(2.0)) + 1e-300
                    pb = math.erfc(zs / math.sqrt(2.0)) + 1e-300
                    pp = pa * pb
                    pf = pp * (1.0 - math.log(pp))
                    zq = math.sqrt(max(-2.0 * math.log(pf), 0.0))
                    for _ in range(40):
                        fz = math.erfc(zq / math.sqrt(2.0)) - pf
                        dz = -2.0 * math.exp(-0.5 * zq * zq) / math.sqrt(2.0 * math.pi)
                        if dz == 0.0:
                            break
                        zq -= fz / dz
                    z = zq if zq > 0.0 else 0.0
                elif rp[RP_COMBINE] == 3.0:  # chi-squared with 2 dof (sum of squares), read back two-sided
                    pf = math.exp(-0.5 * (z * z + zs * zs))
                    zq = math.sqrt(max(-2.0 * math.log(pf + 1e-300), 0.0))
                    for _ in range(40):
                        fz = math.erfc(zq / math.sqrt(2.0)) - pf
                        dz = -2.0 * math.exp(-0.5 * zq * zq) / math.sqrt(2.0 * math.pi)
                        if dz == 0.0:
                            break
                        zq -= fz / dz
                    z = zq if zq > 0.0 else 0.0
                else:  # Bonferroni: the max's p-value doubled
                    zm = zs if zs > z else z
                    pf = min(2.0 * math.erfc(zm / math.sqrt(2.0)), 1.0)
                    zq = zm
                    for _ in range(40):
                        fz = math.erfc(zq / math.sqrt(2.0)) - pf
                        dz = -2.0 * math.exp(-0.5 * zq * zq) / math.sqrt(2.0 * math.pi)
                        if dz == 0.0:
                            break
                        zq -= fz / dz
                    z = zq if zq > 0.0 else 0.0
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
        araw[i] = z
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
        if exup and x + off <= exupl - rp[RP_EXCURSION_MARGIN] * (pmax - pmin):
            exup = False
        if exdn and x + off >= exdnl + rp[RP_EXCURSION_MARGIN] * (pmax - pmin):
            exdn = False
        if pmax >= pmin:
            big = -pmin if -pmin > pmax else pmax
            tl = tol * (pmax - pmin) + RANGE_RESOLUTION * (abs(off) + big)
            up = x > pmax + tl
            dn = x < pmin - tl
            if up or dn:
                last = lastup if (up or rp[RP_SIDE] == 0.0) else lastdn
                if rp[RP_SIDE] == 0.0:
                    last = lastup if lastup > lastdn else lastdn
                same = False
                if rp[RP_EXCURSION] > 0.0:  # an excursion beyond the range is one event until the series is back inside
                    if up and exup and n - exupn <= rp[RP_EXCURSION_SPAN]:
                        same = True
                    if dn and exdn and n - exdnn <= rp[RP_EXCURSION_SPAN]:
                        same = True
                if z >= rp[RP_RANGE_Z] and n - last > rp[RP_GAP] and not same:
                    score = 1.0
                    hit = True
                    strong = True
                    if n >= min_hist:
                        if up:
                            exup = True
                            exupl = pmax + off
                            exupn = n
                        else:
                            exdn = True
                            exdnl = pmin + off
                            exdnn = n
                if n >= min_hist or rp[RP_AFTER_WARMUP] == 0.0:
                    if up:
                        lastup = n
                    else:
                        lastdn = n
        out[i] = score
        hits[i] = (1 if hit else 0) + (2 if strong else 0)
        zout[i] = zl
    return out






def _post(score: F64, hits: Any, zl: F64, min_hist: int, refr: int, demoted: float, rearm: float, hold: int,
          every: int) -> F64:
    """The detector's demotion stage, with a re-arm rule: after a critical detection (``every`` 1: any detection),
    later detections are demoted until the likelihood z has fallen to ``rearm`` or below (at most ``hold``
    samples); ``hold`` 0: the default's rule alone."""
    n_all = score.shape[0]
    out = np.zeros(n_all)
    vhit = -1e18
    vcrit = -1e18
    armed = True
    for i in range(n_all):
        n = i + 1
        s = score[i]
        h = hits[i]
        hit = (h & 1) != 0
        strong = (h & 2) != 0
        if not armed and zl[i] <= rearm:
            armed = True
        if hit and n >= min_hist:
            if n - vhit <= 1 or n - vcrit <= refr or (not armed and n - vcrit <= hold):
                s = demoted
            else:
                if strong or every == 1:
                    armed = False
            vhit = n
            if strong:
                vcrit = n
        out[i] = s if n >= min_hist else 0.0
    return out


# rp: the pass's switches in ``_stage1`` (all 0: the default)
RP_RANGE_Z = 0  # a range break counts only when the instantaneous z is at least this
RP_GAP = 1  # ... and when no range break came within this many samples before it
RP_SIDE = 2  # 1: that gap counted per side (a new max after a new max, a new min after a new min)
RP_AFTER_WARMUP = 3  # 1: breaks during the warm-up do not count for the gap
RP_COMBINE = 4  # seasonal and step z: 0 max, 1 root mean square, 2 Fisher, 3 chi-squared (2 dof), 4 Bonferroni
RP_STEP_CAP = 5  # > 0: the step z capped at this x the seasonal z (once the bucket has its values)
RP_NEIGHBOURS = 6  # 1: the seasonal z is the smallest against the bucket and its two neighbours
RP_EXCURSION = 7  # 1: a range break is the same event as the last one on its side until the value is back inside
RP_EXCURSION_SPAN = 8  # ... for at most this many samples
RP_EXCURSION_MARGIN = 9  # ... "back inside": this fraction of the range below the old max (above the old min)
RP_SIZE = 10


def rp_of(**over: float) -> F64:
    """An ``rp`` vector: ``rp_of(RP_GAP=50)``."""
    out = np.zeros(RP_SIZE)
    for name, value in over.items():
        out[globals()[name]] = value
    return out


def _recurrent(z: F64, t: F64, zq: float, period: float, jitter: float, days: int) -> Any:
    """Per sample: whether a sample with instantaneous z >= ``zq`` came within +-``jitter`` seconds of this one's time
    minus d x ``period``, for every d in 1..``days`` (causal: only earlier samples)."""
    n = z.shape[0]
    seen = np.empty(n)
    m = 0
    out = np.zeros(n, np.bool_)
    for i in range(n):
        ok = m > 0
        for d in range(1, days + 1):
            if not ok:
                break
            target = t[i] - d * period
            lo, hi = 0, m
            while lo < hi:
                mid = (lo + hi) // 2
                if seen[mid] < target - jitter:
                    lo = mid + 1
                else:
                    hi = mid
            ok = lo < m and seen[lo] <= target + jitter
        out[i] = ok
        if z[i] >= zq:
            seen[m] = t[i]
            m += 1
    return out


def _quiet_record(z: F64, q: float, c: float, runs_min: int, run_min: int, min_hist: int) -> Any:
    """Per sample: the first sample of a quiet run (instantaneous z < ``q``) longer than ``c`` x the longest quiet run
    ended before it, once ``runs_min`` runs have ended and the longest is at least ``run_min``."""
    n = z.shape[0]
    fire = np.zeros(n, np.bool_)
    run = 0
    best = 0
    runs = 0
    fired = False
    for i in range(n):
        if z[i] < q:
            run += 1
            if i + 1 >= min_hist and runs >= runs_min and best >= run_min and not fired and run > c * best:
                fire[i] = True
                fired = True
        else:
            if run > 0:
                runs += 1
            if run > best:
                best = run
            run = 0
            fired = False
    return fire


def _jit(name: str) -> Any:
    return jitted(globals()[name])


Stage = tuple[F64, Any, F64, F64]


def stage1(values: F64, times: F64, cfg: DetectorConfig | None = None, rp: F64 | None = None) -> Stage:
    """Scores before demotion, detection flags, likelihood z and instantaneous z of one series."""
    cfg = DetectorConfig() if cfg is None else cfg
    n = len(values)
    hits = np.zeros(n, np.int64)
    zl = np.zeros(n)
    z = np.zeros(n)
    sc = _jit("_stage1")(
        values, times, np.zeros(n), 0.0, 0, 0.0, z, np.zeros(n), hits, zl, np.zeros(RP_SIZE) if rp is None else rp,
        cfg.window, cfg.buckets, cfg.period_s, cfg.steps, cfg.noise_floor, cfg.sharpness, cfg.average,
        cfg.history_rate, cfg.min_history, cfg.refractory, cfg.spatial_tolerance, cfg.range_rate, red_z(cfg.warning),
        red_z(cfg.critical), demoted_score(cfg.warning), ORDINARY_SCORE)
    return sc, hits, zl, z


def post(st: Stage, cfg: DetectorConfig | None = None, rearm: float = 0.0, hold: int = 0, every: int = 0) -> F64:
    """The demotion stage (``hold`` 0: the default's; else the re-arm rule of :func:`_post`)."""
    cfg = DetectorConfig() if cfg is None else cfg
    sc, hits, zl, _ = st
    out: F64 = _jit("_post")(sc, hits, zl, cfg.min_history, cfg.refractory, demoted_score(cfg.warning), rearm, hold,
                             every)
    return out


def recurrence_gate(st: Stage, times: F64, cfg: DetectorConfig, zq: float, jitter: float, days: int) -> Stage:
    """Detections from the likelihood (not range breaks) at a time of day where a sample of z >= ``zq`` came on each
    of the last ``days`` days (+-``jitter`` s) are no detections (a scheduled event: cron, backup, batch)."""
    sc, hits, zl, z = st
    rec = _jit("_recurrent")(z, times, zq, cfg.period_s, jitter, days)
    gate = rec & ((hits & 1) != 0) & ~((sc == 1.0) & (zl < 8.0))  # zl >= 8 scores 1.0 by the likelihood alone
    sc2, h2 = sc.copy(), hits.copy()
    sc2[gate] = demoted_score(cfg.warning)
    h2[gate] = 0
    return sc2, h2, zl, z


def quiet_gate(st: Stage, q: float, c: float, runs_min: int, run_min: int, min_hist: int) -> Stage:
    """A quiet run longer than any before (:func:`_quiet_record`) is a critical detection scoring 1.0."""
    sc, hits, zl, z = st
    fire = _jit("_quiet_record")(z, q, c, runs_min, run_min, min_hist)
    sc2, h2 = sc.copy(), hits.copy()
    sc2[fire] = 1.0
    h2[fire] |= 3
    return sc2, h2, zl, z


def _table_rows(b: Bench, label: str, make: Callable[[DetectorConfig], dict[str, F64]], official: bool
                ) -> dict[str, F64]:
    scores = make(DetectorConfig())
    line = f"{label:58s} {fmt(b.table(scores))}"
    if official:
        runs = {name: make(replace(DetectorConfig(), **over))  # type: ignore[arg-type]
                for name, over in CANDIDATES.items() if name != "level=20"}
        mean, folds = loo(b.corpus, runs)
        line += f" | official as default {mean:.2f} " + ", ".join(f"{h[4:]}: {ch} {v:.2f}"
                                                                 for h, (ch, v) in folds.items())
    print(line, flush=True)
    return scores


def main(argv: list[str] | None = None) -> int:
    """Reprints the pass's key rows (docs/benchmarks.md, "Fourteenth pass"); ``--official``: with the official
    ``--cv`` as default (every candidate with the change; ~1 min a row)."""
    official = "--official" in (sys.argv[1:] if argv is None else argv)
    b = Bench()
    c = b.corpus

    def plain(rp: F64 | None = None, **kw: Any) -> Callable[[DetectorConfig], dict[str, F64]]:
        return lambda cfg: {k: post(stage1(c.values[k], c.times[k], cfg, rp), cfg, **kw) for k in b.keys}

    def recur(zq: float, jitter: float, days: int) -> Callable[[DetectorConfig], dict[str, F64]]:
        return lambda cfg: {k: post(recurrence_gate(stage1(c.values[k], c.times[k], cfg), c.times[k], cfg, zq, jitter,
                                                    days), cfg) for k in b.keys}

    def quiet(q: float, cq: float, runs_min: int, run_min: int) -> Callable[[DetectorConfig], dict[str, F64]]:
        return lambda cfg: {k: post(quiet_gate(stage1(c.values[k], c.times[k], cfg), q, cq, runs_min, run_min,
                                               cfg.min_history), cfg) for k in b.keys}

    base = _table_rows(b, "default (research copy)", plain(), official)
    worst = max(float(np.max(np.abs(base[k] - b.base[k]))) for k in b.keys)
    print(f"  max |research copy - tenth pass kernel| = {worst:.1e}")
    _table_rows(b, "re-arm after a critical detection (z <= 0, hold 300)", plain(rearm=0.0, hold=300), official)
    _table_rows(b, "re-arm after any detection (z <= 0, hold 300)", plain(rearm=0.0, hold=300, every=1), False)
    for gap, side in ((50, 0), (100, 0), (100, 1), (200, 1)):
        _table_rows(b, f"range break gap {gap}{' per side' if side else ''}, after warm-up",
                    plain(rp_of(RP_GAP=gap, RP_SIDE=side, RP_AFTER_WARMUP=1)), official and gap == 100 and side == 1)
    _table_rows(b, "range break needs instantaneous z >= 3", plain(rp_of(RP_RANGE_Z=3.0)), False)
    _table_rows(b, "excursion rule (span 1000, margin 0.05)",
                plain(rp_of(RP_EXCURSION=1, RP_EXCURSION_SPAN=1000, RP_EXCURSION_MARGIN=0.05)), False)
    for mode, name in ((1, "root mean square"), (2, "Fisher"), (3, "chi-squared"), (4, "Bonferroni")):
        _table_rows(b, f"seasonal and step z combined: {name}", plain(rp_of(RP_COMBINE=mode)), official and mode == 3)
    _table_rows(b, "step z capped at 3 x the seasonal z", plain(rp_of(RP_STEP_CAP=3.0)), False)
    _table_rows(b, "seasonal z: min over the neighbouring buckets", plain(rp_of(RP_NEIGHBOURS=1)), False)
    _table_rows(b, "quiet-run record (z < 0.5, c 1, 30 runs, >= 30)", quiet(0.5, 1.0, 30, 30), False)
    for zq, jitter, days in ((3.0, 3600.0, 2), (5.0, 3600.0, 2), (3.0, 1800.0, 2), (3.0, 3600.0, 1), (3.0, 7200.0, 2)):
        _table_rows(b, f"daily recurrence gate z >= {zq:g}, +-{jitter / 60:g} min, {days} day(s)",
                    recur(zq, jitter, days), official and days == 2 and jitter == 3600.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
