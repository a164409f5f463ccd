"""NAB benchmark: ``python -m benchmarks nab [--quick] [--categories A,B] [--cv] [--explain CANDIDATE]
[--data-dir DIR] [--labels FILE] [--out DIR]``.

Runs :class:`shannon_otel.anomaly.AnomalyDetector` (default config, one instance per file, one
causal pass) over every NAB-layout data file, optionally writes NAB-format results, and scores
them with our own scorer (``benchmarks/_nabscore.py``). The scorer is first checked against the
reference detectors' results shipped in ``../shared/nab/results``.

Every category is also scored as a corpus of its own (its own optimized thresholds, as NAB does
for any corpus). ``--categories`` restricts the run, and the headline score, to those categories.
``--cv`` adds leave-one-category-out cross-validation over the real-world categories: for each
one, the candidate configuration (:data:`CANDIDATES`) with the best standard score on the other
real categories (scored together) is chosen, then scored on the held-out one; the mean of the
held-out scores predicts what a configuration chosen this way scores on real data it was not
chosen on. ``--explain CANDIDATE`` shows what a candidate's difference from the default is made of:
per real category, the files whose score moves and the detections it adds and drops. Last line: one
JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shannon_otel.anomaly import AnomalyDetector, DetectorConfig

from . import _nabscore as ns

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "nab"
# Official normalized scores on the shared 41-file subset (its README).
REFERENCE = {
    "numenta": {"standard": 68.5781778137, "reward_low_FP_rate": 62.2055900198,
                "reward_low_FN_rate": 72.7719253057},
    "windowedGaussian": {"standard": 29.0575486114, "reward_low_FP_rate": 14.7887055169,
                         "reward_low_FN_rate": 35.7968198472},
}
TOLERANCE = 0.5
REAL = ("realAWSCloudwatch", "realAdExchange", "realKnownCause")  # the real-world categories of the subset
# Candidate configurations the cross-validation chooses among (overrides of the defaults).
# "default" must stay first: it is what the headline run scores.
CANDIDATES: dict[str, dict[str, float]] = {
    "default": {},
    "steps=30": {"steps": 30},
    "steps=300": {"steps": 300},
    "window=60": {"window": 60},
    "buckets=12": {"buckets": 12},
    "average=15": {"average": 15},
    "history=0.002": {"history_rate": 0.002},
    "noise_floor=0.02": {"noise_floor": 0.02},
    "level=20": {"level": 20},
    "sharpness=1": {"sharpness": 1.0},
    "sharpness=1.5": {"sharpness": 1.5},
    "sharpness=3": {"sharpness": 3.0},
    "refractory=1": {"refractory": 1},
    "refractory=5": {"refractory": 5},
    "refractory=20": {"refractory": 20},
    "range_rate=0": {"range_rate": 0.0},
    "range_rate=0.001": {"range_rate": 0.001},
    "range_rate=0.003": {"range_rate": 0.003},
    "range_rate=0.01": {"range_rate": 0.01},
}


def data_files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))


def category(key: str) -> str:
    return key.split("/")[0]


def quick_subset(keys: list[str]) -> list[str]:
    """The first two files of every category: a few files, every kind of data."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        cat = category(key)
        if seen.get(cat, 0) < 2:
            seen[cat] = seen.get(cat, 0) + 1
            out.append(key)
    return out


def scorer_check(root: Path) -> dict[str, object]:
    """Score the reference results and compare with the official numbers."""
    windows = ns.load_windows(root / "labels" / "combined_windows.json")
    files = []
    for key in sorted(windows):
        stamps, _ = ns.read_timestamps_values(root / "data" / key)
        files.append(ns.label_file(key, stamps, windows[key]))
    out: dict[str, object] = {}
    worst = 0.0
    for detector, expected in REFERENCE.items():
        scores = {}
        for f in files:
            cat, name = f.key.split("/")
            path = root / "results" / detector / cat / f"{detector}_{name}"
            with path.open(newline="") as fh:
                scores[f.key] = np.array([float(r["anomaly_score"]) for r in csv.DictReader(fh)])
        got = ns.normalized(files, scores)
        out[detector] = {p: round(v["score"], 4) for p, v in got.items()}
        worst = max(worst, *(abs(got[p]["score"] - expected[p]) for p in expected))
    out["max_abs_error"] = worst
    out["ok"] = worst <= TOLERANCE
    return out


class Corpus:
    """The data files, read once: stamps, values, epoch seconds and labelled windows per key."""

    def __init__(self, data_dir: Path, keys: Sequence[str], windows: Mapping[str, list[list[str]]] | None) -> None:
        self.keys = list(keys)
        self.stamps: dict[str, list[str]] = {}
        self.values: dict[str, ns.F64] = {}
        self.times: dict[str, ns.F64] = {}
        self.files: dict[str, ns.LabelledFile] = {}
        for key in self.keys:
            stamps, values = ns.read_timestamps_values(data_dir / key)
            self.stamps[key], self.values[key] = stamps, values
            self.times[key] = np.array(stamps, dtype="datetime64[s]").astype(np.int64).astype(np.float64)
            self.files[key] = ns.label_file(key, stamps, windows.get(key, []) if windows is not None else [])

    def detect(self, config: DetectorConfig, engine: str = "auto", keys: Sequence[str] | None = None
               ) -> tuple[dict[str, ns.F64], float]:
        """Scores per file (one fresh detector each, warm-up rows score 0) and the seconds spent."""
        AnomalyDetector(config, engine=engine).update_series("warm-up", np.zeros(4), np.arange(4.0))  # compile
        scores, spent = {}, 0.0
        for key in self.keys if keys is None else keys:
            start = time.perf_counter()
            detector = AnomalyDetector(config, engine=engine)
            scores[key] = np.nan_to_num(detector.update_series(key, self.values[key], self.times[key]), nan=0.0)
            spent += time.perf_counter() - start
        return scores, spent

    def score(self, scores: Mapping[str, ns.F64], cats: Sequence[str] | None = None,
              profile: str | None = None) -> dict[str, dict[str, float]]:
        """NAB scores of the files of ``cats`` (all by default) scored as one corpus."""
        files = [self.files[k] for k in self.keys if cats is None or category(k) in cats]
        return ns.normalized(files, scores, profiles=None if profile is None else (profile,))


def per_category(corpus: Corpus, scores: Mapping[str, ns.F64]) -> dict[str, float]:
    """Standard score of every category as a corpus of its own (categories without windows skipped),
    and of the real-world categories present scored together (``"real"``)."""
    cats = sorted({category(k) for k in corpus.keys})
    out = {}
    for cat in cats:
        if any(corpus.files[k].windows for k in corpus.keys if category(k) == cat):
            out[cat] = corpus.score(scores, (cat,), "standard")["standard"]["score"]
    real = [c for c in cats if c in REAL]
    if len(real) > 1:
        out["real"] = corpus.score(scores, real, "standard")["standard"]["score"]
    return out


def cross_validate(corpus: Corpus, candidates: Mapping[str, DetectorConfig], engine: str = "auto"
                   ) -> dict[str, object]:
    """Leave one real category out: choose the candidate best on the others (scored together),
    score it on the held-out category (as a corpus of its own). Returns folds and their mean."""
    real = [c for c in REAL if any(category(k) == c for k in corpus.keys)]
    keys = [k for k in corpus.keys if category(k) in real]
    runs = {name: corpus.detect(cfg, engine, keys)[0] for name, cfg in candidates.items()}
    folds: dict[str, dict[str, object]] = {}
    for held in real:
        others = [c for c in real if c != held]
        train = {name: corpus.score(s, others, "standard")["standard"]["score"] for name, s in runs.items()}
        best = max(train, key=lambda name: train[name])  # first of equals: the earlier candidate
        folds[held] = {"chosen": best, "train": round(train[best], 2),
                       "held_out": round(corpus.score(runs[best], (held,), "standard")["standard"]["score"], 2)}
    held_scores = [float(f["held_out"]) for f in folds.values()]  # type: ignore[arg-type]
    table = {name: {c: round(corpus.score(s, (c,), "standard")["standard"]["score"], 2) for c in real}
             | {"real": round(corpus.score(s, real, "standard")["standard"]["score"], 2)}
             for name, s in runs.items()}
    first = next(iter(candidates))
    fixed = sum(table[first][c] for c in real) / len(real)
    # Paired, per candidate: its mean gain over the default on each real category as a corpus of its own.
    # A change is worth making when it gains on categories it was not chosen on, not just on their union.
    gain = {name: round(sum(t[c] - table[first][c] for c in real) / len(real), 2) for name, t in table.items()}
    return {"folds": folds, "mean": round(sum(held_scores) / len(held_scores), 2),
            "fixed_" + first + "_mean": round(fixed, 2), "mean_gain_over_default": gain, "candidates": table}


def _detections(f: ns.LabelledFile, scores: ns.F64, theta: float) -> dict[int, int | None]:
    """Rows after the probation scoring ``theta`` or more, each with the window it falls in (``None``: none)."""
    rows = np.flatnonzero(scores[f.probation :] >= theta) + f.probation
    return {int(i): next((w for w, (lo, hi) in enumerate(f.windows) if lo <= i <= hi), None) for i in rows}


def explain(corpus: Corpus, base: Mapping[str, ns.F64], other: Mapping[str, ns.F64]) -> dict[str, dict[str, Any]]:
    """Where ``other``'s standard score differs from ``base``'s, per real category as a corpus of its own.

    Every file whose raw score moves (each run at its own optimized threshold), with the detections it adds
    and drops (row, and window or ``None`` for a false positive), and the share of the category's movement
    carried by its largest file. What a gain is made of decides whether it can hold on unseen series: one
    file or one window, or detections right after the probation (a young statistic firing there), is no
    mechanism (docs/benchmarks.md, NAB passes).
    """
    out: dict[str, dict[str, Any]] = {}
    for cat in [c for c in REAL if any(category(k) == c for k in corpus.keys)]:
        b, o = (corpus.score(s, (cat,), "standard")["standard"] for s in (base, other))
        files: dict[str, dict[str, Any]] = {}
        moves: list[float] = []  # unrounded: a move under 0.0005 rounds to 0 and every move may be that small
        for key in (k for k in corpus.keys if category(k) == cat):
            f = corpus.files[key]
            raw_b = ns.score_at([f], base, "standard", b["threshold"])
            raw_o = ns.score_at([f], other, "standard", o["threshold"])
            if abs(raw_o - raw_b) < 1e-9:
                continue
            moves.append(abs(raw_o - raw_b))
            det_b, det_o = _detections(f, base[key], b["threshold"]), _detections(f, other[key], o["threshold"])
            files[key] = {"raw": [round(raw_b, 3), round(raw_o, 3)],
                          "added": [[i, det_o[i]] for i in sorted(set(det_o) - set(det_b))],
                          "dropped": [[i, det_b[i]] for i in sorted(set(det_b) - set(det_o))]}
        out[cat] = {"standard": [round(b["score"], 2), round(o["score"], 2)],
                    "threshold": [b["threshold"], o["threshold"]], "files": files,
                    "largest_file_share": round(max(moves) / sum(moves), 2) if moves else None}
    return out


def write_result(path: Path, stamps: list[str], values: ns.F64, score: ns.F64, f: ns.LabelledFile) -> None:
    label = np.zeros(len(stamps), dtype=np.int64)
    for lo, hi in f.windows:
        label[lo : hi + 1] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for row in zip(stamps, values.tolist(), score.tolist(), label.tolist(), strict=True):
            w.writerow(row)


def candidate_configs() -> dict[str, DetectorConfig]:
    base = DetectorConfig()
    return {name: replace(base, **over) for name, over in CANDIDATES.items()}  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks nab")
    parser.add_argument("--quick", action="store_true", help="a few files only (< 60 s)")
    parser.add_argument("--categories", help="comma-separated categories scored as a corpus of their own")
    parser.add_argument("--cv", action="store_true",
                        help="leave-one-category-out cross-validation over the real categories (CANDIDATES)")
    parser.add_argument("--explain", metavar="CANDIDATE", choices=list(CANDIDATES)[1:],
                        help="per real category, the files and detections where CANDIDATE differs from the default")
    parser.add_argument("--data-dir", type=Path, help="NAB-layout data folder (default: ../shared/nab/data)")
    parser.add_argument("--labels", type=Path, help="combined_windows.json for --data-dir")
    parser.add_argument("--out", type=Path, help="keep NAB-format results in DIR/<category>/<file>.csv")
    parser.add_argument("--reference", type=Path, default=DEFAULT_ROOT, help="NAB subset with results/")
    parser.add_argument("--engine", choices=("auto", "numpy", "numba"), default="auto",
                        help="AnomalyDetector engine (default: numba when installed)")
    args = parser.parse_args(argv)

    check = scorer_check(args.reference)
    print(f"scorer check: {json.dumps(check)}", file=sys.stderr)
    data_dir = args.data_dir or args.reference / "data"
    labels = args.labels if (args.data_dir or args.labels) else args.reference / "labels" / "combined_windows.json"
    windows = ns.load_windows(labels) if labels is not None else None
    keys = data_files(data_dir)
    if args.categories:
        wanted = [c.strip() for c in args.categories.split(",") if c.strip()]
        unknown = sorted(set(wanted) - {category(k) for k in keys})
        if unknown:
            parser.error(f"--categories: no data for {', '.join(unknown)} in {data_dir}")
        keys = [k for k in keys if category(k) in wanted]
    if args.quick:
        keys = quick_subset(keys)
    corpus = Corpus(data_dir, keys, windows)
    scores, spent = corpus.detect(DetectorConfig(), args.engine)
    rows = sum(len(v) for v in corpus.values.values())
    if args.out is not None:
        for key in keys:
            write_result(args.out / key, corpus.stamps[key], corpus.values[key], scores[key], corpus.files[key])

    engine = AnomalyDetector(engine=args.engine).engine
    result: dict[str, object] = {"suite": "nab", "scorer_check": check, "engine": engine, "files": len(keys),
                                 "rows": rows}
    if windows is not None:
        table = corpus.score(scores)
        for profile, v in table.items():
            print(f"{profile:20s} score {v['score']:7.2f}  raw {v['raw']:9.4f}  theta {v['threshold']:.6f}",
                  file=sys.stderr)
        result["scores"] = {p: round(v["score"], 2) for p, v in table.items()}
        result["thresholds"] = {p: v["threshold"] for p, v in table.items()}
        cats = per_category(corpus, scores)
        for cat, value in cats.items():
            print(f"  standard, {cat} as its own corpus: {value:7.2f}", file=sys.stderr)
        result["per_category_standard"] = {c: round(v, 2) for c, v in cats.items()}
        if args.cv:
            cv = cross_validate(corpus, candidate_configs(), args.engine)
            for held, fold in cv["folds"].items():  # type: ignore[attr-defined]
                print(f"  cv: held out {held:18s} chose {fold['chosen']:16s} train {fold['train']:6.2f}"
                      f"  held-out {fold['held_out']:6.2f}", file=sys.stderr)
            print(f"  cv mean (held-out standard): {cv['mean']:.2f}; the default's mean over the real categories"
                  f" (each its own corpus): {cv['fixed_default_mean']:.2f}", file=sys.stderr)
            print(f"  mean gain over the default per real category: {cv['mean_gain_over_default']}", file=sys.stderr)
            result["cv"] = cv
        if args.explain:
            other, _ = corpus.detect(candidate_configs()[args.explain], args.engine)
            why = explain(corpus, scores, other)
            for cat, part in why.items():
                print(f"  explain {args.explain}, {cat}: standard {part['standard'][0]:.2f} -> "
                      f"{part['standard'][1]:.2f}, largest file share {part['largest_file_share']}", file=sys.stderr)
                for key, moved in part["files"].items():
                    print(f"    {key}: raw {moved['raw'][0]:+.3f} -> {moved['raw'][1]:+.3f}  added {moved['added']}"
                          f"  dropped {moved['dropped']}", file=sys.stderr)
            result["explain"] = {args.explain: why}
    else:
        result["scores"] = None
    result["points_per_s"] = round(rows / spent) if spent > 0 else None
    print(json.dumps(result))
    return 0 if check["ok"] else 1
