"""Our NAB scorer (benchmarks/_nabscore.py) against hand-made cases and NAB's official numbers."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest

from benchmarks import _nabscore as ns  # importable through pytest's pythonpath = ["."]
from benchmarks.nab import DEFAULT_ROOT, REFERENCE


def test_scaled_sigmoid() -> None:
    got = ns.sigmoid(np.array([-1.0, 0.0, 1.0, 3.0, 3.0001]))
    assert np.allclose(got, [0.98661, 0.0, -0.98661, 2 / (1 + math.exp(15)) - 1, -1.0], atol=1e-5)


def toy() -> ns.LabelledFile:
    # 20 rows: probation floor(0.15 * 20) = 3; one window of rows 10..13.
    return ns.LabelledFile("cat/toy.csv", 20, ((10, 13),))


def test_row_values_follow_the_profile() -> None:
    v, win = ns.row_values(toy(), 1.0, 0.11)
    assert v[5] == pytest.approx(-0.11)  # before any window
    assert v[10] == pytest.approx(1.0)  # the window's first row earns A_TP
    assert 0.0 < v[13] < v[12] < v[11] < 1.0
    assert -0.11 < v[14] < 0.0  # right after the window: nearly free
    assert v[19] == pytest.approx(0.11 * float(ns.sigmoid(np.array([6 / 3]))[0]))
    assert list(win[9:15]) == [-1, 0, 0, 0, 0, -1]


def test_earliest_detection_counts_and_false_positives_cost() -> None:
    f = toy()
    scores = np.zeros(20)
    scores[[1, 5, 11, 12]] = [0.9, 0.6, 0.7, 0.8]  # row 1 is probationary: ignored
    v, _ = ns.row_values(f, 1.0, 0.11)
    theta, raw = ns.optimize([f], {f.key: scores}, "standard")
    # theta = 0.7 detects rows 11 (earliest in the window) and 12; 0.6 would add a false positive.
    assert theta == 0.7
    assert raw == pytest.approx(v[11])
    assert ns.score_at([f], {f.key: scores}, "standard", 0.6) == pytest.approx(v[11] + v[5])
    assert ns.score_at([f], {f.key: scores}, "standard", 1.1) == -1.0


def test_ties_go_to_the_largest_threshold_and_no_detection_wins_ties() -> None:
    f = ns.LabelledFile("cat/empty.csv", 20, ())
    theta, raw = ns.optimize([f], {f.key: np.full(20, 0.5)}, "standard")
    assert (theta, raw) == (1.1, 0.0)


# Outside CI a checkout without ../shared/nab skips these; in CI (CI=true) they run and fail loudly.
needs_nab = pytest.mark.skipif(
    not (DEFAULT_ROOT / "results").is_dir() and not os.environ.get("CI"), reason="../shared/nab not present",
)


def load(detector: str) -> tuple[list[ns.LabelledFile], dict[str, ns.F64], dict[str, dict[str, float]]]:
    windows = ns.load_windows(DEFAULT_ROOT / "labels" / "combined_windows.json")
    files, scores, columns = [], {}, {}
    for key in sorted(windows):
        stamps, _ = ns.read_timestamps_values(DEFAULT_ROOT / "data" / key)
        files.append(ns.label_file(key, stamps, windows[key]))
        cat, name = key.split("/")
        with (DEFAULT_ROOT / "results" / detector / cat / f"{detector}_{name}").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        scores[key] = np.array([float(r["anomaly_score"]) for r in rows])
        columns[key] = {p: sum(float(r[f"S(t)_{p}"]) for r in rows) for p in ns.PROFILES}
    return files, scores, columns


@needs_nab
@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian"])
def test_reproduces_the_official_normalized_scores(detector: str) -> None:
    files, scores, _ = load(detector)
    got = ns.normalized(files, scores)
    for profile, expected in REFERENCE[detector].items():
        assert got[profile]["score"] == pytest.approx(expected, abs=1e-6)


@needs_nab
def test_reproduces_the_official_thresholds_and_raw_scores() -> None:
    files, scores, _ = load("numenta")
    got = ns.normalized(files, scores)
    assert got["standard"]["threshold"] == 0.544449877418
    assert got["reward_low_FP_rate"]["threshold"] == 0.602095149663
    assert got["standard"]["raw"] == pytest.approx(25.6378853829, abs=1e-9)
    assert got["reward_low_FP_rate"]["raw"] == pytest.approx(16.8437142274, abs=1e-9)


@needs_nab
@pytest.mark.parametrize(("detector", "thresholds"), [
    ("numenta", {"standard": 0.5421876907348634, "reward_low_FP_rate": 0.5751955032348636,
                 "reward_low_FN_rate": 0.5421876907348634}),
    ("windowedGaussian", dict.fromkeys(ns.PROFILES, 1.0)),
])
def test_per_file_scores_match_the_published_columns(detector: str, thresholds: dict[str, float]) -> None:
    files, scores, columns = load(detector)
    for f in files:
        for profile, theta in thresholds.items():
            mine = ns.score_at([f], {f.key: scores[f.key]}, profile, theta)
            assert mine == pytest.approx(columns[f.key][profile], abs=1e-6), (f.key, profile)


@needs_nab
def test_categories_score_as_their_own_corpus_and_cv_scores_held_out_categories() -> None:
    from benchmarks import nab
    from shannon_otel.anomaly import DetectorConfig

    keys = [k for k in nab.data_files(DEFAULT_ROOT / "data") if nab.category(k) in ("realAdExchange", "realKnownCause")]
    corpus = nab.Corpus(DEFAULT_ROOT / "data", keys, ns.load_windows(DEFAULT_ROOT / "labels" / "combined_windows.json"))
    candidates = {"a": DetectorConfig(), "b": DetectorConfig(window=60, sharpness=1.0)}
    runs = {name: corpus.detect(cfg, "numba")[0] for name, cfg in candidates.items()}
    own = nab.per_category(corpus, runs["a"])
    # a category alone is optimized on its own files: its score differs from its share of the joint corpus
    files = [corpus.files[k] for k in keys if nab.category(k) == "realAdExchange"]
    assert own["realAdExchange"] == pytest.approx(ns.normalized(files, runs["a"])["standard"]["score"])
    assert own["real"] == pytest.approx(corpus.score(runs["a"])["standard"]["score"])
    cv = nab.cross_validate(corpus, candidates, "numba")
    folds = cv["folds"]
    assert isinstance(folds, dict) and set(folds) == {"realAdExchange", "realKnownCause"}
    for held, fold in folds.items():
        other = next(c for c in folds if c != held)
        train = {n: corpus.score(s, (other,), "standard")["standard"]["score"] for n, s in runs.items()}
        assert fold["chosen"] == max(train, key=lambda n: train[n])  # chosen on the other category only
        assert fold["held_out"] == round(nab.per_category(corpus, runs[fold["chosen"]])[held], 2)
    assert cv["mean"] == round(sum(f["held_out"] for f in folds.values()) / 2, 2)


@needs_nab
def test_explain_lists_every_file_that_moves_and_what_its_detections_became() -> None:
    from benchmarks import nab
    from shannon_otel.anomaly import DetectorConfig

    keys = [k for k in nab.data_files(DEFAULT_ROOT / "data") if nab.category(k) in ("realAdExchange", "realKnownCause")]
    corpus = nab.Corpus(DEFAULT_ROOT / "data", keys, ns.load_windows(DEFAULT_ROOT / "labels" / "combined_windows.json"))
    base = corpus.detect(DetectorConfig(), "numba")[0]
    other = corpus.detect(DetectorConfig(window=60, sharpness=1.0), "numba")[0]
    same = nab.explain(corpus, base, base)
    assert {cat: part["files"] for cat, part in same.items()} == {"realAdExchange": {}, "realKnownCause": {}}
    why = nab.explain(corpus, base, other)
    for cat, part in why.items():
        b, o = (corpus.score(s, (cat,), "standard")["standard"] for s in (base, other))
        assert part["standard"] == [round(b["score"], 2), round(o["score"], 2)]
        files = part["files"]
        assert files, cat  # these two configurations differ on every category
        # the files listed carry the whole movement of the category's raw score
        assert sum(v["raw"][1] - v["raw"][0] for v in files.values()) == pytest.approx(o["raw"] - b["raw"], abs=0.01)
        for key, moved in files.items():
            f = corpus.files[key]
            for (row, window), scores, theta in ((r, other, o["threshold"]) for r in moved["added"]):
                assert row >= f.probation and scores[key][row] >= theta and base[key][row] < b["threshold"]
                assert window is None or f.windows[window][0] <= row <= f.windows[window][1]
            for row, _ in moved["dropped"]:
                assert base[key][row] >= b["threshold"] and other[key][row] < o["threshold"]
        shares = [abs(v["raw"][1] - v["raw"][0]) for v in files.values()]
        assert part["largest_file_share"] == round(max(shares) / sum(shares), 2)


@needs_nab
def test_explain_survives_a_file_whose_only_move_rounds_to_zero() -> None:
    # Moving machine_temperature's first detection in its second window one row later changes the file's raw
    # score by under 0.0005; the share of the largest file was computed from the rounded raw scores (0 / 0).
    from benchmarks import nab
    from shannon_otel.anomaly import DetectorConfig

    keys = [k for k in nab.data_files(DEFAULT_ROOT / "data") if nab.category(k) == "realKnownCause"]
    corpus = nab.Corpus(DEFAULT_ROOT / "data", keys, ns.load_windows(DEFAULT_ROOT / "labels" / "combined_windows.json"))
    base = corpus.detect(DetectorConfig(), "numba")[0]
    key = "realKnownCause/machine_temperature_system_failure.csv"
    theta = corpus.score(base, ("realKnownCause",), "standard")["standard"]["threshold"]
    lo, hi = corpus.files[key].windows[1]
    first = lo + int(np.flatnonzero(base[key][lo:hi + 1] >= theta)[0])
    moved = base[key].copy()
    moved[first], moved[first + 1] = 0.0, base[key][first]
    why = nab.explain(corpus, base, dict(base) | {key: moved})["realKnownCause"]
    assert list(why["files"]) == [key]
    assert why["files"][key]["added"] == [[first + 1, 1]] and why["files"][key]["dropped"] == [[first, 1]]
    assert why["largest_file_share"] == 1.0

