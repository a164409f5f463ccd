"""The detector's engines: the compiled (numba) block path against the scalar and numpy paths,
its threads, its exp, and the choice of engine."""

from __future__ import annotations

import math
import multiprocessing
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import numpy as np
import pytest
from _anomaly_paths import scalar

from shannon_otel.anomaly import AnomalyDetector, DetectorConfig, _engine_numpy
from shannon_otel.anomaly import _engine_numba as _kernel
from shannon_otel.anomaly._engine_numba import PARALLEL_MIN

STEP = 300.0


def dirty_block(rows: int, cols: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = rng.normal(10.0, 1.0, (rows, cols)) * rng.uniform(0.5, 3.0, (rows, 1))
    block[1, cols // 2] = 60.0  # a spike
    block[2, cols // 3 :] += 5.0  # a level shift
    block[3, [5, 17]] = [np.nan, -np.inf]
    block[4, :] = 7.0  # constant
    return block


def test_numba_scores_equal_the_scalar_and_numpy_paths() -> None:
    names = [f"s{i}" for i in range(6)]
    block = dirty_block(6, 900)
    ts = np.arange(900) * STEP  # crosses seasonal buckets (default 24 per day)
    one = scalar(AnomalyDetector(), names, block, ts)
    fast_det, slow_det = AnomalyDetector(engine="numba"), AnomalyDetector(engine="numpy")
    fast, slow = fast_det.update_many(names, block, ts), slow_det.update_many(names, block, ts)
    assert np.array_equal(np.isnan(fast), np.isnan(one))
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.nanmax(np.abs(fast - one)) < 1e-6  # the scalar path interpolates no table
    assert np.nanmax(np.abs(fast - slow)) < 1e-9
    assert fast_det.stats == slow_det.stats
    assert (fast[1, 450] >= 0.5) and (fast[2, 300:306] >= 0.5).any()


def test_numba_chunked_calls_equal_one_call_bit_for_bit() -> None:
    names = ["a", "b", "c", "d", "e"]
    block = dirty_block(5, 1000)
    ts = np.arange(1000) * STEP
    whole = AnomalyDetector(engine="numba").update_many(names, block, ts)
    det = AnomalyDetector(engine="numba")
    parts = [det.update_many(names, block[:, i : i + 97], ts[i : i + 97]) for i in range(0, 1000, 97)]
    assert np.array_equal(np.concatenate(parts, axis=1), whole, equal_nan=True)


def test_paths_can_follow_one_another_on_one_detector() -> None:
    names = ["a", "b"]
    block = dirty_block(5, 600)[:2]
    ts = np.arange(600) * STEP
    mixed = AnomalyDetector(engine="numba")
    parts = [
        mixed.update_many(names, block[:, :250], ts[:250]),
        scalar(mixed, names, block[:, 250:300], ts[250:300]),
        mixed.update_many(names, block[:, 300:], ts[300:]),
    ]
    reference = scalar(AnomalyDetector(), names, block, ts)
    got = np.concatenate(parts, axis=1)
    assert np.array_equal(np.isnan(got), np.isnan(reference))
    assert np.nanmax(np.abs(got - reference)) < 1e-6


@pytest.mark.parametrize("rows", [64, 600])  # 600 x 60: several rows a take (TAKE_ROWS)
def test_threads_split_a_large_block_and_give_the_same_scores(rows: int) -> None:
    cols = PARALLEL_MIN // rows + 10
    names = [f"s{i}" for i in range(rows)]
    block = dirty_block(rows, cols)
    ts = np.arange(cols) * STEP
    serial = AnomalyDetector(engine="numba")
    expected = serial.update_many(names, block, ts)
    kernel = _kernel.load()
    assert kernel is not None
    for threads in (2, 3):
        threaded = AnomalyDetector(engine="numba", threads=threads)
        # as if numba's pool had this many threads, so the rows are split even on a 1-CPU machine
        threaded._kernel = kernel._replace(max_threads=threads)
        assert np.array_equal(threaded.update_many(names, block, ts), expected, equal_nan=True)
        assert threaded.stats == serial.stats
    follow = block[:, :10] + 1.0  # a small block after a large one: the serial kernel on the same state
    assert np.array_equal(threaded.update_many(names, follow, ts[:10] + cols * STEP),
                          serial.update_many(names, follow, ts[:10] + cols * STEP), equal_nan=True)



def test_the_threads_of_a_split_block_take_each_row_once() -> None:
    """The kernel's shared row counter (``_take_c``, an atomic add): three threads taking from it all at once get
    every number below the end exactly once. A plain read-then-write would hand one row to two threads, which
    would both push its samples into the series' state."""
    import numba

    kernel = _kernel.load()
    assert kernel is not None

    @numba.njit(nogil=True)
    def takes(taken: np.ndarray, got: np.ndarray, by: int) -> None:
        while True:
            i = _kernel._take_c(taken, by)
            if i >= got.size:
                break
            for k in range(i, min(got.size, i + by)):
                got[k] += 1

    for by in (1, 3):
        taken, got = np.zeros(1, dtype=np.int64), np.zeros(3_000_000, dtype=np.int64)
        takes(taken, got[:0], by)  # compiled before the threads start, so that they take at the same time
        taken[0] = 0
        with ThreadPoolExecutor(3) as pool:
            for done in [pool.submit(takes, taken, got, by) for _ in range(3)]:
                done.result()
        assert (got == 1).all()


def _threaded(threads: int) -> AnomalyDetector:
    """A numba detector splitting large blocks across ``threads`` threads, even on a 1-CPU machine."""
    kernel = _kernel.load()
    assert kernel is not None
    det = AnomalyDetector(engine="numba", threads=threads)
    det._kernel = kernel._replace(max_threads=threads)
    return det


def test_a_threaded_block_is_scored_on_the_callers_thread_when_no_helper_can_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper thread that cannot start ("can't start new thread", or an interpreter shutting down) leaves
    every run of rows to the caller: the same scores, no error, nothing left waiting."""
    rows, cols = 64, PARALLEL_MIN // 64 + 10
    names = [f"s{i}" for i in range(rows)]
    block = dirty_block(rows, cols)
    ts = np.arange(cols) * STEP
    expected = AnomalyDetector(engine="numba").update_many(names, block, ts)

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(ThreadPoolExecutor, "submit", refuse)
    assert np.array_equal(_threaded(2).update_many(names, block, ts), expected, equal_nan=True)


def _score_in_child(det: AnomalyDetector, names: list[str], block: np.ndarray, ts: np.ndarray, send: Any) -> None:
    send.send(det.update_many(names, block, ts))


def test_a_child_forked_after_a_threaded_block_scores_its_own_threaded_blocks() -> None:
    """The split block's threads are the detector's own: a forked child (which inherits none of them) starts
    its own and gets the parent's scores. On numba's OpenMP pool a child hung in its first split block."""
    rows, cols = 64, PARALLEL_MIN // 64 + 10
    names = [f"s{i}" for i in range(rows)]
    block = dirty_block(rows, cols)
    ts = np.arange(cols) * STEP
    det = _threaded(2)
    det.update_many(names, block, ts)
    later = ts + cols * STEP
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_score_in_child,
                                                         args=(det, names, block + 1.0, later, send))
    child.start()
    try:
        assert receive.poll(60.0), "the child's threaded block never finished"
        got = receive.recv()
    finally:
        child.join(10.0)
        if child.is_alive():
            child.kill()
    assert np.array_equal(got, det.update_many(names, block + 1.0, later), equal_nan=True)


@pytest.mark.parametrize(
    "cfg",
    [
        DetectorConfig(buckets=1),
        DetectorConfig(window=3, average=1, min_history=1),
        DetectorConfig(noise_floor=0.0, spatial_tolerance=float("inf"), history_rate=0.5),
        DetectorConfig(buckets=7, period_s=3600.0),
        DetectorConfig(buckets=1, level=6, warning=0.8, critical=0.9, steps=3),
        DetectorConfig(level=1, window=3, average=1, min_history=1, history_rate=0.5, steps=7),
        DetectorConfig(buckets=1, level=6, level_sides=1, level_clip=5.0, warning=0.8, critical=0.9, steps=3),
        DetectorConfig(refractory=5, warning=0.3, critical=0.9),
        DetectorConfig(range_rate=0.0),
        DetectorConfig(range_rate=0.01),
        DetectorConfig(buckets=1, level=6, steps=3, range_rate=0.5, noise_floor=0.5),
        DetectorConfig(weekly_rho=0.9),
        DetectorConfig(weekly_rho=1.0, buckets=1, period_s=600.0, window=3, min_history=1),
    ],
    ids=["one-bucket", "shortest-windows", "no-floors", "many-buckets", "level-window", "shortest-level",
         "rise-only-level", "refractory", "all-time-range", "forgetting-range", "fastest-forgetting-range",
         "weekly", "weekly-in-ten-minute-days"],
)
def test_engines_agree_across_configs_and_unsorted_times(cfg: DetectorConfig) -> None:
    names = [f"s{i}" for i in range(6)]
    block = dirty_block(6, 700, seed=9)
    ts = np.random.default_rng(9).permutation(700) * 97.0  # out of order, across many buckets
    fast = AnomalyDetector(cfg, engine="numba").update_many(names, block, ts)
    slow = AnomalyDetector(cfg, engine="numpy").update_many(names, block, ts)
    one = scalar(AnomalyDetector(cfg), names, block, ts)
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.array_equal(np.isnan(fast), np.isnan(one))
    assert np.nanmax(np.abs(fast - slow)) < 1e-9
    assert np.nanmax(np.abs(fast - one)) < 1e-6


def test_engines_agree_on_a_long_rising_series_in_one_call() -> None:
    """The numpy engine derives window sums from cumulative sums over "window + block": over a whole long block
    their rounding grew with it (a rising series of 5e5 samples differed from the numba engine by 2e-7, of 4e6
    by 1.4e-4). It scores long blocks in pieces of ``PIECE`` columns (1.5e-8 here: both engines take a window's
    variance as mean square - squared mean, which loses digits on values far above their spread)."""
    n = 500_000
    xs = np.arange(n) + np.random.default_rng(0).normal(0.0, 1.0, n)
    ts = np.arange(n) * 60.0
    fast = AnomalyDetector(engine="numba").update_series("s", xs, ts)
    slow = AnomalyDetector(engine="numpy").update_series("s", xs, ts)
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.nanmax(np.abs(fast - slow)) < 5e-8


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_engines_agree_on_a_series_far_above_its_first_value(engine: str) -> None:
    """A gauge whose first reading is 0 and then stays at 1e6 with a spread of 1 (memory in bytes, a queue that
    fills at start-up): the numpy engine took each window's sums as differences of one cumulative sum over the
    block, rounded by every value before the window (~1e12 each), so its variance was off by ~1, the spread
    itself: scores off the other paths' by up to 0.55, ten samples of 20,000 on the other side of ``warning``.
    Its sums now restart every window length, as the other paths re-add theirs."""
    n = 20_000
    xs = 1e6 + np.random.default_rng(0).normal(0.0, 1.0, n)
    xs[0] = 0.0
    ts = np.arange(n) * 60.0
    cfg = DetectorConfig(buckets=1, min_history=1)
    one = scalar(AnomalyDetector(cfg), ["s"], xs[None, :], ts)[0]
    block = AnomalyDetector(cfg, engine=engine).update_series("s", xs, ts)
    assert np.array_equal(np.isnan(block), np.isnan(one))
    # The raw sums' own rounding (~1e-4 of the variance here) moves scores by ~1e-3 at most, but for a few samples
    # where it puts one path's score just above ``warning`` right after a detection (demoted: 0.3) and the other's
    # just below (kept): 6 of 20,000 on the numba engine. The numpy engine's were 5,606, and 17 flips of the
    # ``warning`` decision.
    assert (np.abs(block - one) > 1e-3).sum() < 20
    assert np.array_equal(block >= cfg.warning, one >= cfg.warning)


def test_numpy_engine_scores_a_long_block_as_calls_of_one_piece_each() -> None:
    piece = _engine_numpy.PIECE
    cols = 3 * piece + 1  # the last piece is one column: the engine's tick path
    block = dirty_block(5, cols, seed=8)
    ts = np.arange(cols) * STEP
    whole = AnomalyDetector(engine="numpy").update_many(list("abcde"), block, ts)
    det = AnomalyDetector(engine="numpy")
    parts = [det.update_many(list("abcde"), block[:, lo : lo + piece], ts[lo : lo + piece])
             for lo in range(0, cols, piece)]
    assert np.array_equal(whole, np.concatenate(parts, axis=1), equal_nan=True)


@pytest.mark.parametrize("scale", [1e-170, 1e150])
def test_engines_agree_on_tiny_and_huge_values(scale: float) -> None:
    xs = np.random.default_rng(2).normal(0.0, 1.0, 3000)
    xs[2500:2510] += 6.0
    cfg = DetectorConfig(buckets=1, spatial_tolerance=float("inf"))
    ts = np.arange(3000) * STEP
    fast = AnomalyDetector(cfg, engine="numba").update_series("s", xs * scale, ts)
    slow = AnomalyDetector(cfg, engine="numpy").update_series("s", xs * scale, ts)
    assert np.array_equal(np.isnan(fast), np.isnan(slow))
    assert np.nanmax(np.abs(fast - slow)) < 1e-9  # squares under/overflow alike on both engines
    assert np.isfinite(fast[2500:]).all()


def extreme_block(cols: int) -> np.ndarray:
    """Finite values whose differences or squares overflow a float, beside normal series."""
    rng = np.random.default_rng(4)
    block = rng.normal(10.0, 1.0, (6, cols))
    block[0] = np.resize([1e308, -1e308], cols)  # every step is beyond the largest float
    block[1, cols // 3] = 1e200  # one spike whose square overflows
    block[2, 0] = -1.7e308  # the first value (the offset) at the limit, then normal values
    block[3, ::37] = 1e250 * np.sign(rng.normal(size=len(block[3, ::37])))
    block[4] = np.cumsum(rng.normal(size=cols)) * 1e120  # a walk beyond the limit
    block[5, 7::50] = np.inf  # non-finite beside huge: still ignored and counted
    block[5, 11::41] = 1e300
    return block


@pytest.mark.parametrize(
    "cfg",
    [
        DetectorConfig(),
        DetectorConfig(buckets=1, level=6, steps=3, history_rate=0.5),
        DetectorConfig(buckets=1, level=6, level_sides=1, spatial_tolerance=1e300, window=3, average=1),
        DetectorConfig(buckets=1, level=6, range_rate=0.0),
    ],
    ids=["default", "level-window", "huge-tolerance", "all-time-range"],
)
def test_engines_agree_on_values_whose_squares_or_differences_overflow(cfg: DetectorConfig) -> None:
    # before the clamp to X_LIMIT: NaN scores from update(), overflow warnings (errors here) from the
    # numpy engine, and scores differing by up to 0.54 between the engines
    cfg = DetectorConfig(**{**{f: getattr(cfg, f) for f in cfg.__slots__}, "min_history": 5})
    names = [f"s{i}" for i in range(6)]
    block = extreme_block(400)
    ts = np.arange(400) * STEP
    one = scalar(AnomalyDetector(cfg), names, block, ts)
    fast_det, slow_det = AnomalyDetector(cfg, engine="numba"), AnomalyDetector(cfg, engine="numpy")
    fast, slow = fast_det.update_many(names, block, ts), slow_det.update_many(names, block, ts)
    ticks = AnomalyDetector(cfg, engine="numpy")  # one column per call: the numpy engine's tick path
    tick = np.concatenate([ticks.update_many(names, block[:, j : j + 1], ts[j : j + 1]) for j in range(400)], axis=1)
    for got in (fast, slow, tick):
        assert np.array_equal(np.isnan(got), np.isnan(one))
        assert np.nanmax(np.abs(got - one)) < 1e-6
    assert ((one[~np.isnan(one)] >= 0.0) & (one[~np.isnan(one)] <= 1.0)).all()
    assert fast_det.stats == slow_det.stats == ticks.stats
    assert fast_det.stats.ignored == np.isinf(block).sum()
    assert one[1, 400 // 3] == 1.0 or cfg.spatial_tolerance > 1.0  # the spike: beyond the range seen


@pytest.mark.parametrize("spike", [1e8, 1e20, 1e200])
def test_engines_agree_after_a_spike_leaves_the_windows_without_a_noise_floor(spike: float) -> None:
    # no floor hides rounding noise here: running sums that subtracted the spike again kept noise of the
    # size of its rounding until their lap ended (numba vs scalar up to 0.02), and the numpy engine's
    # cumulative sums for the rest of the block (up to 0.74); now re-added when an eviction cancels them
    cfg = DetectorConfig(noise_floor=0.0, spatial_tolerance=float("inf"), history_rate=0.5, min_history=5)
    xs = np.random.default_rng(0).normal(10.0, 1.0, (1, 400))
    xs[0, 100] = spike
    ts = np.arange(400) * STEP
    one = scalar(AnomalyDetector(cfg), ["s"], xs, ts)
    fast = AnomalyDetector(cfg, engine="numba").update_many(["s"], xs, ts)
    slow = AnomalyDetector(cfg, engine="numpy").update_many(["s"], xs, ts)
    ticks = AnomalyDetector(cfg, engine="numpy")
    tick = np.concatenate([ticks.update_many(["s"], xs[:, j : j + 1], ts[j : j + 1]) for j in range(400)], axis=1)
    for got in (fast, slow, tick):
        assert np.array_equal(np.isnan(got), np.isnan(one))
        assert np.nanmax(np.abs(got - one)) < 1e-6


def test_read_only_and_strided_inputs_give_the_same_scores() -> None:
    block = dirty_block(5, 1200)[:4]
    ts = np.arange(600) * STEP
    strided = block[:, ::2]  # not contiguous
    expected = AnomalyDetector(engine="numba").update_many(list("abcd"), np.ascontiguousarray(strided), ts)
    frozen = np.ascontiguousarray(strided)
    frozen.flags.writeable = False
    assert np.array_equal(AnomalyDetector(engine="numba").update_many(list("abcd"), strided, ts), expected,
                          equal_nan=True)
    assert np.array_equal(AnomalyDetector(engine="numba").update_many(list("abcd"), frozen, ts), expected,
                          equal_nan=True)


def test_eviction_and_series_order_with_the_numba_engine() -> None:
    cfg = DetectorConfig(max_series=3, min_history=1)
    det = AnomalyDetector(cfg, engine="numba")
    det.update_many(["a", "b", "c"], np.ones((3, 4)), np.arange(4.0))
    det.update_many(["d", "c"], np.full((2, 2), 5.0), [4.0, 5.0])  # "d" evicts "a", the least recent
    assert det.series() == ["b", "d", "c"]
    assert det.stats.evicted == 1
    fresh = det.update_many(["a"], [[2.0, 2.0]], [6.0, 7.0])  # evicts "b"; "a" starts over as a new series
    assert det.stats.evicted == 2
    assert fresh[0, 0] == AnomalyDetector(cfg).update("x", 2.0, 6.0)


def test_compiled_surprise_matches_expm1() -> None:
    kernel = _kernel.load()
    assert kernel is not None, "numba is part of the test install (the fast extra)"
    z = np.concatenate([np.linspace(0.0, 25.0, 100_001), np.geomspace(1e-12, 1e-2, 1000), [1e150]])
    work = np.zeros((_kernel.WORK_ROWS, len(z)))
    work[0] = z  # values against a window of mean 0, variance 1: z-scores z
    work[2], work[3] = 100.0, 100.0
    work[4], work[5] = -1e300, 1e300  # a range so wide that nothing is beyond it
    squared = work.copy()
    _kernel._surprises_c(work, len(z), 0.0, 0.02, 1.0, 0.0)  # no steps yet (rows 6-9 zero): no step z-score
    expected = -np.expm1(-(z * z) / 8.0)
    assert np.max(np.abs(work[0] - expected)) < 1e-15
    _kernel._surprises_c(squared, len(z), 0.0, 0.02, 2.0, 0.0)
    assert np.max(np.abs(squared[0] - expected**2)) < 1e-15
    assert work[0, 0] == 0.0
    assert work[0, -1] == 1.0
    assert not work[5].any()
    work[0, :4], work[3, :4] = [1.01, 1.05, -0.05, 0.5], 2.0  # too short a window: no surprise
    work[4, :4], work[5, :4] = 0.0, 1.0  # range [0, 1] so far; 2 % tolerance
    _kernel._surprises_c(work, 4, 0.01, 0.02, 1.0, 0.0)
    assert (work[0, :4] == 0.0).all()
    assert work[5, :4].tolist() == [0.0, 1.0, 1.0, 0.0]


def test_engine_choice_and_bad_engine_arguments() -> None:
    assert AnomalyDetector(engine="numpy").engine == "numpy"
    assert AnomalyDetector(engine="numba").engine == "numba"
    assert AnomalyDetector().engine == "numba"  # auto, numba installed
    with pytest.raises(ValueError, match=r"engine must be one of 'auto', 'numpy', 'numba', got 'fast'"):
        AnomalyDetector(engine="fast")
    with pytest.raises(ValueError, match=r"threads must be an int in \[1, 1024\], got 0"):
        AnomalyDetector(threads=0)
    with pytest.raises(ValueError, match=r"threads must be an int in \[1, 1024\], got 2.0"):
        AnomalyDetector(threads=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"threads must be 1 with engine='numpy'"):
        AnomalyDetector(engine="numpy", threads=2)
    assert AnomalyDetector(threads=np.int64(2))._threads == 2  # numpy integers are ints too


def test_without_numba_auto_falls_back_and_numba_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kernel, "_loaded", [])
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    assert AnomalyDetector().engine == "numpy"
    assert AnomalyDetector(threads=4).engine == "numpy"
    with pytest.raises(ImportError, match=r"engine='numba' needs numba: pip install 'shannon-otel\[fast\]'"):
        AnomalyDetector(engine="numba")


@pytest.mark.parametrize(("sides", "refractory"), [(1, 1), (2, 1), (2, 4)])
def test_one_sample_blocks_follow_the_level_sides_as_the_other_paths(sides: int, refractory: int) -> None:
    # the numpy engine scores one-column blocks on its own O(1) path (_score_tick)
    cfg = DetectorConfig(buckets=1, level=6, level_sides=sides, level_clip=4.5, warning=0.8, critical=0.9,
                         min_history=20, refractory=refractory)
    names = [f"s{i}" for i in range(6)]
    block = dirty_block(6, 400, seed=4)
    block[0, 250:] -= 4.0  # a sustained fall
    ts = np.arange(400) * STEP
    tick = AnomalyDetector(cfg, engine="numpy")
    ticks = np.concatenate([tick.update_many(names, block[:, j : j + 1], ts[j : j + 1]) for j in range(400)], axis=1)
    one = scalar(AnomalyDetector(cfg), names, block, ts)
    fast = AnomalyDetector(cfg, engine="numba").update_many(names, block, ts)
    assert np.array_equal(np.isnan(ticks), np.isnan(one))
    assert np.nanmax(np.abs(ticks - one)) < 1e-6
    assert np.nanmax(np.abs(ticks - fast)) < 1e-6


def test_a_rise_only_level_window_ignores_a_sustained_fall_and_finds_a_rise() -> None:
    rng = np.random.default_rng(8)
    xs = rng.normal(0.0, 1.0, 3000)
    fall, rise = xs.copy(), xs.copy()
    fall[2000:] -= 2.0  # +-2 sd for good: the level window's to find (see test_anomaly_detector)
    rise[2000:] += 2.0
    ts = np.arange(3000) * STEP
    cfg = DetectorConfig(buckets=1, spatial_tolerance=float("inf"), level=8, warning=0.8, critical=0.9)
    both = AnomalyDetector(cfg, engine="numba").update_series("s", fall, ts)
    up = DetectorConfig(buckets=1, spatial_tolerance=float("inf"), level=8, level_sides=1, warning=0.8,
                        critical=0.9)
    rise_only_fall = AnomalyDetector(up, engine="numba").update_series("s", fall, ts)
    rise_only_rise = AnomalyDetector(up, engine="numba").update_series("s", rise, ts)
    assert (both[2000:2100] >= 0.8).any()
    assert not (rise_only_fall[2000:2100] >= 0.8).any()
    assert (rise_only_rise[2000:2100] >= 0.8).any()


@pytest.mark.parametrize("window", [5, 10, 13])
def test_engines_agree_on_a_constant_window_without_a_noise_floor(window: int) -> None:
    """With ``noise_floor=0`` the spread of a window of equal values is its rounding, so the last bit of its
    mean decides how far away a different value is: the numba engine took the mean as sum x (1 / count), not
    sum / count as the other paths, and scored the -1 after a window of ones 0.78 where they gave 0.75."""
    cfg = DetectorConfig(noise_floor=0.0, buckets=1, window=window, min_history=1, spatial_tolerance=math.inf)
    values = np.array([0.0] + [1.0] * (window + 1) + [-1.0])
    ts = np.arange(values.size, dtype=float)
    one = scalar(AnomalyDetector(cfg), ["s"], values[None, :], ts)[0]
    for engine in ("numba", "numpy"):
        got = AnomalyDetector(cfg, engine=engine).update_series("s", values, ts)
        assert np.abs(got - one).max() < 1e-6, engine


def test_numpy_engine_scores_a_z_score_whose_square_overflows_without_a_warning() -> None:
    """With ``noise_floor=0`` a window of spread 1e-150 puts 1e100 at z ~ 1e250, whose square is no float: the
    numpy engine's blocks and one-column ticks warned "overflow encountered in multiply" (an error under
    ``-W error``, raised half-way through the update); the surprise is 1, as on the other paths."""
    cfg = DetectorConfig(noise_floor=0.0, buckets=1, min_history=1)
    values = np.array([0.0, 1e-150, 2e-150, 1e-150, 2e-150, 1e-150, 1e100, 1.0, 2.0])
    ts = np.arange(values.size, dtype=float)
    one = scalar(AnomalyDetector(cfg), ["s"], values[None, :], ts)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        block = AnomalyDetector(cfg, engine="numpy").update_series("s", values, ts)
        ticker = AnomalyDetector(cfg, engine="numpy")
        ticks = np.array([ticker.update_series("s", values[j : j + 1], ts[j : j + 1])[0] for j in range(values.size)])
    assert np.abs(block - one).max() < 1e-6
    assert np.abs(ticks - one).max() < 1e-6


def test_numpy_blocks_count_a_critical_score_only_as_a_detection() -> None:
    """With a ``warning`` below the least score no likelihood is a detection (only values beyond the range are),
    but a score can still reach ``critical``: the numpy engine's blocks after the warm-up recorded that sample as
    a critical detection and demoted the value beyond the range right after it (0.03 where the other paths and
    the same samples in one block give 1.0)."""
    cfg = DetectorConfig(warning=0.01, critical=0.11, buckets=1, min_history=10)
    values = np.array([-0.05, 2.97, 1.27, 0.07, 0.63, -0.9, 1.99, 0.1, 2.87, -0.94, 50.15])
    ts = np.arange(values.size, dtype=float)
    one = scalar(AnomalyDetector(cfg), ["s"], values[None, :], ts)[0]
    assert one[9] >= cfg.critical and one[10] == 1.0
    for engine in ("numba", "numpy"):
        det = AnomalyDetector(cfg, engine=engine)
        det.update_series("s", values[:9], ts[:9])  # warm-up: no scores
        got = det.update_series("s", values[9:], ts[9:])
        assert np.abs(got - one[9:]).max() < 1e-6, engine


@pytest.mark.parametrize("value", [6.41, 0.26, 0.13])
def test_engines_agree_on_a_full_window_of_equal_values_without_a_noise_floor(value: float) -> None:
    """A value pushing an equal one out of a full window leaves its sum of squares as it was: compiled with
    multiply-adds, the numba engine added the rounding error of value**2 instead, and with ``noise_floor=0`` the
    window of equal values got that for its spread: the next different value scored 1.0, not 0.03."""
    cfg = DetectorConfig(noise_floor=0.0, buckets=1, window=3, steps=3, min_history=1, spatial_tolerance=math.inf)
    values = np.array([0.0, value, value, value, value, -value])
    ts = np.arange(values.size, dtype=float)
    one = scalar(AnomalyDetector(cfg), ["s"], values[None, :], ts)[0]
    for engine in ("numba", "numpy"):
        got = AnomalyDetector(cfg, engine=engine).update_series("s", values, ts)
        assert np.abs(got - one).max() < 1e-6, engine


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_an_int_given_for_a_float_setting_is_a_float_and_scores_on_every_engine(engine: str) -> None:
    """Before: spatial_tolerance=10**30 (valid: [0, inf]) was kept as an int, and the numba engine, which types its
    arguments, raised a numba TypingError ("non-precise type pyobject") on every block."""
    cfg = DetectorConfig(spatial_tolerance=10**30, noise_floor=0, min_history=3)
    values = dirty_block(5, 50)
    names = ["a", "b", "c", "d", "e"]
    times = np.arange(50) * STEP
    got = AnomalyDetector(cfg, engine=engine).update_many(names, values, times)
    reference = DetectorConfig(spatial_tolerance=1e30, noise_floor=0.0, min_history=3)
    assert np.array_equal(got, AnomalyDetector(reference, engine=engine).update_many(names, values, times),
                          equal_nan=True)
    assert type(cfg.spatial_tolerance) is float and type(cfg.noise_floor) is float
    assert cfg == reference


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_a_long_flat_stretch_is_no_anomaly_on_any_engine_with_the_default_config(engine: str) -> None:
    """A metric flat for ~2 weeks of minutes between noisy stretches. Before: the forgetting range
    (range_rate) shrank to ~0 over the flat stretch, so did the noise floor, and the numpy engine's windowed
    sums (differences of cumulative sums) left a rounding spread that made the flat value score up to 0.99994 (a
    critical anomaly, on the engine of installs without numba) where update() and numba scored 0.03; it then
    missed the anomaly where the noise came back. The floor now never forgets below RANGE_RESOLUTION (1e-9) of
    the values' magnitude, as the range rule: rounding is no spread."""
    rng = np.random.default_rng(0)
    flat = 20_000
    values = np.concatenate([rng.normal(5.0, 0.3, 500), np.full(flat, 5.0), rng.normal(5.0, 0.3, 300)])
    times = np.arange(values.size) * 60.0
    one = scalar(AnomalyDetector(), ["a"], values[None, :], times)[0]
    got = AnomalyDetector(engine=engine).update_series("a", values, times)
    assert np.nanmax(np.abs(got - one)) < 1e-6
    assert np.nanmax(got[600 : 500 + flat]) < 0.1  # the flat stretch: ordinary
    assert (got[500 + flat :] >= 0.5).sum() == (one[500 + flat :] >= 0.5).sum() == 1  # the noise coming back
