"""NAB benchmark: ``python -m benchmarks nab [--quick] [--data-dir DIR] [--labels FILE] [--out DIR]``.

Runs :class:`shannon_otel.anomaly.AnomalyDetector` (default config, one instance per file, one
causal pass) over every NAB-layout data file, optionally writes NAB-format results, and scores
them with our own scorer (``benchmarks/_nabscore.py``). The scorer is first checked against the
reference detectors' results shipped in ``../shared/nab/results``. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

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


def data_files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))


def quick_subset(keys: list[str]) -> list[str]:
    """The first two files of every category: a few files, every kind of data."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        cat = key.split("/")[0]
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


def run(data_dir: Path, keys: list[str], out_dir: Path | None,
        windows: dict[str, list[list[str]]] | None, config: DetectorConfig, engine: str = "auto"
        ) -> tuple[list[ns.LabelledFile], dict[str, ns.F64], int, float]:
    files, scores, rows, spent = [], {}, 0, 0.0
    AnomalyDetector(config, engine=engine).update_series("warm-up", np.zeros(4), np.arange(4.0))  # load/compile
    for key in keys:
        stamps, values = ns.read_timestamps_values(data_dir / key)
        times = np.array(stamps, dtype="datetime64[s]").astype(np.int64).astype(np.float64)
        start = time.perf_counter()
        detector = AnomalyDetector(config, engine=engine)
        score = np.nan_to_num(detector.update_series(key, values, times), nan=0.0)
        spent += time.perf_counter() - start
        rows += len(values)
        labelled = ns.label_file(key, stamps, windows.get(key, []) if windows is not None else [])
        files.append(labelled)
        scores[key] = score
        if out_dir is not None:
            write_result(out_dir / key, stamps, values, score, labelled)
    return files, scores, rows, spent


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks nab")
    parser.add_argument("--quick", action="store_true", help="a few files only (< 60 s)")
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
    if args.quick:
        keys = quick_subset(keys)
    files, scores, rows, spent = run(data_dir, keys, args.out, windows, DetectorConfig(), args.engine)

    engine = AnomalyDetector(engine=args.engine).engine
    result: dict[str, object] = {"suite": "nab", "scorer_check": check, "engine": engine, "files": len(keys),
                                 "rows": rows}
    if windows is not None:
        table = ns.normalized(files, scores)
        for profile, v in table.items():
            print(f"{profile:20s} score {v['score']:7.2f}  raw {v['raw']:9.4f}  theta {v['threshold']:.6f}",
                  file=sys.stderr)
        result["scores"] = {p: round(v["score"], 2) for p, v in table.items()}
        result["thresholds"] = {p: v["threshold"] for p, v in table.items()}
    else:
        result["scores"] = None
    result["points_per_s"] = round(rows / spent) if spent > 0 else None
    print(json.dumps(result))
    return 0 if check["ok"] else 1
