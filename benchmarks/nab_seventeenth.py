"""NAB seventeenth research pass (docs/benchmarks.md, "Seventeenth pass"): ``python -m benchmarks.nab_seventeenth
[--only NAME]... [--official NAME]...`` (~1 min; ``--official`` adds the official ``--cv`` with the change in every
candidate, ~2.5 min a row).

On the fifteenth pass's split kernel (the likelihood z of every sample, then the default's scoring and demotion;
with nothing changed the default's scores to the bit), five causal mechanisms act on the likelihood z:

* **onset decay** (one event, one early report): inside an excursion (the likelihood z above ``z_e`` on every
  sample since its onset) a sample ``age`` samples after the onset has its tail p scaled by 1 + age / tau;
* **discreteness** (a p-value per move on series that mostly repeat a value): the tail p scaled by m^-w, m the
  causal share of nonzero steps, or d^-w, d the causal share of distinct values (priors of 50 samples at 1);
* **two timescales**: the likelihood z at a second ``history_rate``, min- or max-combined with the default's;
* **a time-of-day likelihood**: the likelihood z against its own exponentially weighted mean and variance in the
  sample's seasonal bucket (variance floored at 1), the smaller of that and the global z, once the bucket has been
  seen on ``days`` days (a surprise usual for the hour is not surprising);
* **agreement**: a likelihood z counts as a detection only when the sample's own instantaneous z is >= ``zmin``
  (otherwise capped at 3.5, below ``warning``).

None holds under the protocol (the docs have the numbers).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from shannon_otel.anomaly import DetectorConfig

from .nab import CANDIDATES
from .nab_eleventh import Bench, fmt, loo
from .nab_fifteenth import finish, stage
from .nab_sixteenth import rescale
from .nab_tenth import F64, jitted

Make = Callable[[DetectorConfig], dict[str, F64]]
Mult = Callable[[F64, F64], F64]


def _onset(zl: F64, z_e: float, tau: float) -> F64:
    k = np.ones(zl.shape[0])
    onset = -1
    for i in range(zl.shape[0]):
        if zl[i] > z_e:
            if onset < 0:
                onset = i
            k[i] = 1.0 + (i - onset) / tau
        else:
            onset = -1
    return k


_ONSET = None


def k_onset(z_e: float, tau: float) -> Mult:
    def k(zl: F64, xs: F64) -> F64:
        global _ONSET
        if _ONSET is None:
            _ONSET = jitted(_onset)
        out: F64 = _ONSET(zl, z_e, tau)
        return out
    return k


def k_moves(w: float, prior: float = 50.0) -> Mult:
    def k(zl: F64, xs: F64) -> F64:
        moved = np.concatenate(([0.0, 0.0], np.cumsum(np.diff(xs) != 0)[:-1]))  # steps before this sample
        steps = np.maximum(np.arange(xs.shape[0], dtype=np.float64) - 1.0, 0.0)
        m = (moved + prior) / (steps + prior)
        return np.asarray(m ** -w, dtype=np.float64)
    return k


def k_distinct(w: float, prior: float = 50.0) -> Mult:
    def k(zl: F64, xs: F64) -> F64:
        seen: set[float] = set()
        out = np.ones(xs.shape[0])
        for i in range(xs.shape[0]):
            out[i] = ((len(seen) + prior) / (i + prior)) ** -w
            seen.add(float(xs[i]))
        return out
    return k


def _hourly(zl: F64, ts: F64, span: float, buckets: int, rate: float, days: int, w: float) -> F64:
    mu = np.zeros(buckets)
    var = np.ones(buckets)
    seen = np.zeros(buckets, np.int64)
    last = np.full(buckets, -1, np.int64)
    out = zl.copy()
    for i in range(zl.shape[0]):
        slot = int(np.floor(ts[i] / span))
        r = slot % buckets
        day = slot // buckets
        if seen[r] >= days and zl[i] > 0.0:
            zb = (zl[i] - w * mu[r]) / max(np.sqrt(var[r]), 1.0) if w > 0.0 else zl[i]
            out[i] = min(zl[i], zb)
        d = zl[i] - mu[r]
        mu[r] += rate * d
        var[r] = (1.0 - rate) * (var[r] + rate * d * d)
        if day != last[r]:
            last[r] = day
            seen[r] += 1
    return out


_HOURLY = None


def hourly(zl: F64, ts: F64, cfg: DetectorConfig, rate: float, days: int, w: float) -> F64:
    global _HOURLY
    if _HOURLY is None:
        _HOURLY = jitted(_hourly)
    out: F64 = _HOURLY(zl, ts, cfg.period_s / cfg.buckets, cfg.buckets, rate, days, w)
    return out


def makers(b: Bench) -> dict[str, Make]:
    c = b.corpus

    def with_k(mult: Mult | None) -> Make:
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for key in b.keys:
                st = stage(c.values[key], c.times[key], cfg)
                zl = None if mult is None else rescale(st[2], mult(st[2], c.values[key]))
                res[key] = finish(st, cfg, zl)
            return res
        return make

    def two_rates(rate: float, comb: str) -> Make:  # the likelihood z at a second history rate, min- or max-combined
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for key in b.keys:
                st = stage(c.values[key], c.times[key], cfg)
                z2 = stage(c.values[key], c.times[key], replace(cfg, history_rate=rate))[2]
                zl = np.minimum(st[2], z2) if comb == "min" else np.maximum(st[2], z2)
                res[key] = finish(st, cfg, zl)
            return res
        return make

    def per_hour(rate: float, days: int, w: float) -> Make:  # the likelihood z against its own time-of-day moments
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for key in b.keys:
                st = stage(c.values[key], c.times[key], cfg)
                res[key] = finish(st, cfg, hourly(st[2], c.times[key], cfg, rate, days, w))
            return res
        return make

    def agreeing(zmin: float, cap: float) -> Make:  # a likelihood detection needs the sample's own z >= zmin
        def make(cfg: DetectorConfig) -> dict[str, F64]:
            res = {}
            for key in b.keys:
                st = stage(c.values[key], c.times[key], cfg)
                res[key] = finish(st, cfg, np.where(st[3] >= zmin, st[2], np.minimum(st[2], cap)))
            return res
        return make

    out: dict[str, Make] = {"default (research copy)": with_k(None)}
    for zmin in (2.0, 2.5, 3.0):
        out[f"agreement: own z >= {zmin:g}"] = agreeing(zmin, 3.5)
    for rate in (0.01, 0.03, 0.1):
        for days in (2, 7):
            out[f"time-of-day likelihood: rate {rate:g}, {days} days"] = per_hour(rate, days, 1.0)
    for rate in (0.005, 0.01, 0.02):
        out[f"two timescales: min with rate {rate:g}"] = two_rates(rate, "min")
    for rate in (0.0005, 0.001):
        out[f"two timescales: max with rate {rate:g}"] = two_rates(rate, "max")
    for z_e in (2.0, 3.0):
        for tau in (10.0, 30.0, 100.0):
            out[f"onset decay: z_e {z_e:g}, tau {tau:g}"] = with_k(k_onset(z_e, tau))
    for w in (0.5, 1.0):
        out[f"discreteness: nonzero steps^-{w:g}"] = with_k(k_moves(w))
    for w in (0.25, 0.5):
        out[f"discreteness: distinct values^-{w:g}"] = with_k(k_distinct(w))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    wanted = [args[i + 1] for i, a in enumerate(args) if a == "--official" and i + 1 < len(args)]
    only = [args[i + 1] for i, a in enumerate(args) if a == "--only" and i + 1 < len(args)]
    b = Bench()
    runs = {}
    for name, make in makers(b).items():
        if only and not any(o in name for o in only):
            continue
        scores = make(DetectorConfig())
        runs[name] = scores
        line = f"{name:44s} {fmt(b.table(scores))}"
        if any(w in name for w in wanted):
            cand = {n: make(replace(DetectorConfig(), **over))  # type: ignore[arg-type]
                    for n, over in CANDIDATES.items() if n != "level=20"}
            mean, folds = loo(b.corpus, cand)
            line += f" | official as default {mean:.2f} " + ", ".join(f"{h[4:]}: {ch} {v:.2f}"
                                                                     for h, (ch, v) in folds.items())
        print(line, flush=True)
    if len(runs) > 1:
        mean, folds = loo(b.corpus, runs)
        print(f"LOO over these rows {mean:.2f} " + ", ".join(f"{h[4:]}: {ch} {v:.2f}" for h, (ch, v) in folds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
