"""The detector's compiled block path (optional): three passes per series, compiled by numba.

``score_rows`` runs the scalar algorithm of ``AnomalyDetector.update`` over each series' samples
(O(1) running window sums, re-added exactly once per lap, as ``Rings.push``) on the same
state arrays the other paths use, so calls on any path may follow one another. It scores with
the interpolation table of the numpy block path. ``score_compiled`` (plain Python) calls it for the
detector, for a large block with ``threads > 1`` once on the caller's thread and once on each of the
detector's ``Workers``, which take its rows a few at a time from one counter (an atomic add; the kernel
releases the GIL; series share no state). Without
numba installed ``load()`` returns ``None`` and the detector keeps its numpy block path; scores
agree across paths to ~1e-9 (less on values far from the series' first value: ``AnomalyDetector``).

Compiled on first use (a few seconds) and cached on disk by numba, so later processes load it.
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._engine_numpy import column_buckets
from ._ring import CANCEL
from ._scoring import (
    MEAN_FLOOR,
    RANGE_RESOLUTION,
    RANGE_SPAN,
    SCORE_DIFF,
    SCORE_TABLE,
    SEASON_MIN,
    STD_FLOOR,
    STEP,
    SURPRISE_SCALE,
    X_LIMIT,
    ZMAX,
    slot_numbers,
)
from ._weekly import MIN_WEEKS

if TYPE_CHECKING:
    from ._detector import AnomalyDetector

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ENGINES = ("auto", "numpy", "numba")
WORK_ROWS = 12  # score_rows' scratch rows per sample (see _surprises)
PARALLEL_MIN = 32_768  # samples in a block before threads > 1 splits it: below, waking threads costs more
# The threads of a split block each call the kernel once and take its rows TAKE_SAMPLES worth at a time (at least
# one row, at most TAKE_ROWS), from a counter they share (an atomic add): a thread slowed by another process (2
# cores shared) takes fewer, and they end within a take of each other (~130 us of work). Runs of rows cut
# beforehand, a kernel call each (~8-15 us for its ~60 arguments), had to be long: the last one kept the other
# thread waiting (half a run of ~370 us on average, 1,000 series x 100 on 2 threads), a thread descheduled inside
# one held the block up to its end. Not a row at a time: neighbouring slots' state (8 to a cache line in each of
# ~25 arrays) is written by two threads where one take ends and the next begins.
TAKE_SAMPLES = 4096
TAKE_ROWS = 64
_loaded: list[Kernel] = []
_WEEKLY = False  # score_rows' weekly pass: False here (Kernel.serial), True in Kernel.weekly's copy of the globals


class Kernel(NamedTuple):
    serial: Callable[..., int]  # score_rows
    max_threads: int  # numba's thread count (NUMBA_NUM_THREADS: the CPUs by default), the cap on threads
    weekly: Callable[..., int]  # score_rows with the weekly profile's pass (DetectorConfig.weekly_rho)


class Workers:
    """The extra threads of one detector's split blocks (``threads > 1``), started at its first such block.

    Not numba's parallel pool: its OpenMP threads spin-wait between and after blocks, so on a machine whose
    cores are shared two threads ran 3x slower than one (measured: 6M against 17M samples/s, load 4 on 2
    cores), and a process must not fork after using them. These threads sleep when idle, end with the
    detector (the pool's own weak reference), and a forked child starts its own (it inherits none).
    """

    __slots__ = ("_count", "_pid", "_pool")

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid = self._count = 0

    def submit(self, count: int, fn: Callable[[], int]) -> list[Future[int]]:
        """``fn`` on ``count`` threads of the pool; ``[]`` when no thread can start (the caller does it all)."""
        if self._pool is None or self._pid != os.getpid() or self._count < count:
            self._pool = ThreadPoolExecutor(count, thread_name_prefix="shannon-otel-detector")
            self._pid, self._count = os.getpid(), count
        try:
            return [self._pool.submit(fn) for _ in range(count)]
        except RuntimeError:  # "can't start new thread", or the interpreter is shutting down
            return []


def load() -> Kernel | None:
    """The compiled kernels, or ``None`` when numba cannot be imported. Compiles lazily, once."""
    if not _loaded:
        try:
            import numba  # optional and heavy: imported on first use only
        except ImportError:
            return None
        # the kernels must call the compiled helpers: numba reads these globals when compiling
        global _resum_c, _surprises_c, _one_minus_exp_neg_c, _z_c, _take_c
        # no fastmath "contract": fused, x * x - old * old of a value pushing out an equal one is the rounding
        # error of x * x, not 0, so the sum of squares of a window of equal values drifted off exactly the mean's
        # square, and with noise_floor 0 a different value was ~1e8 of that "spread" away (scored 1.0 where the
        # other paths give 0.03; no measurable speed difference)
        jit = numba.njit(cache=True, nogil=True, error_model="numpy")
        _one_minus_exp_neg_c, _z_c = jit(one_minus_exp_neg), jit(_z)
        # the re-add inlined into the kernel's loops (numba's IR-level inlining: the same operations): as a call,
        # rare as it is, every xmm register is the callee's, so the loops kept their running values (the forgetting
        # range of pass 1b, say) on the stack, a store and a load on each sample's dependency chain (~5% of a block)
        _resum_c = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(_resum)
        _surprises_c = jit(_surprises)
        _take_c = _atomic_take(numba)
        # NUMBA_NUM_THREADS, not get_num_threads(): that would start numba's thread pool, which is not used
        # the weekly kernel: the same code read with _WEEKLY true (a copy of this module's globals, taken after the
        # compiled helpers were set above); numba's cache keeps both (their signatures differ)
        weekly = types.FunctionType(score_rows.__code__, {**globals(), "_WEEKLY": True}, "score_rows_weekly")
        _loaded.append(Kernel(jit(score_rows), numba.config.NUMBA_NUM_THREADS,  # type: ignore[attr-defined]
                              jit(weekly)))
    return _loaded[0]


def score_compiled(det: AnomalyDetector, kernel: Kernel, slots: I64, vals: F64, ts: F64) -> F64:
    """The numba engine's block path: what ``_engine_numpy.score_block`` computes, for finite or not
    ``vals[i, j]`` of series slot ``slots[i]`` at ``ts[j]``; advances the detector's state."""
    cfg = det.config
    col_bucket = column_buckets(ts, cfg)
    # one compiled specialization serves every call: C order, writeable (a copy otherwise)
    vals = np.require(vals, np.float64, ("C_CONTIGUOUS", "ALIGNED", "WRITEABLE"))
    out: F64 = np.empty(vals.shape)
    season, avg, steps, level = det._season, det._avg, det._steps, det._level
    state: tuple[Any, ...] = (
        det._n, det._offset, det._min, det._max, det._m, det._v, det._hit, det._crit, det._last, det._prev,
        season.buf, season.head, season.count, season.s1, season.s2,
        steps.buf, steps.head, steps.count, steps.s1, steps.s2,
        avg.buf, avg.head, avg.count, avg.s1, avg.s2,
        det._lm, det._lv, level.buf, level.head, level.count, level.s1, level.s2, cfg.level,
        cfg.level_sides, cfg.level_clip,
        cfg.buckets, cfg.noise_floor, cfg.sharpness, cfg.history_rate, cfg.min_history, cfg.spatial_tolerance,
        cfg.refractory, SCORE_TABLE, SCORE_DIFF, STEP, ZMAX, det._z_red, det._z_crit, det._demoted, det._fmin,
        det._fmax, cfg.range_rate,
    )
    run = kernel.serial
    if det._wrho > 0.0:
        week = det._week
        state = (*state, det._wrho, slot_numbers(ts, det._wspan), week.buf,
                 week.head, week.count, week.s1, week.s2, det._wmeans, det._wids, det._wstate)
        run = kernel.weekly
    rows, cols = vals.shape
    threads = min(det._threads, kernel.max_threads, rows) if vals.size >= PARALLEL_MIN else 1
    taken: I64 = np.zeros(1, dtype=np.int64)  # the rows taken so far: the kernel's shared counter
    if threads == 1:
        det._ignored += run(taken, rows, rows, slots, vals, col_bucket, out, np.empty((WORK_ROWS, cols)),
                            np.empty(cols, dtype=np.int64), *state)
        return out
    take = min(TAKE_ROWS, max(1, TAKE_SAMPLES // cols))

    def rows_until_none_left() -> int:
        return run(taken, take, rows, slots, vals, col_bucket, out, np.empty((WORK_ROWS, cols)),
                   np.empty(cols, dtype=np.int64), *state)

    helpers = det._workers.submit(threads - 1, rows_until_none_left)
    try:
        ignored = rows_until_none_left()
    finally:  # the helpers write the state: never return (or raise) before they are done
        wait(helpers)
    det._ignored += ignored + sum(helper.result() for helper in helpers)
    return out


def _take(taken: Any, step: int) -> int:
    """``taken[0]`` before adding ``step`` to it: the plain form of ``_atomic_take``'s."""
    first = int(taken[0])
    taken[0] = first + step
    return first


def _atomic_take(numba: Any) -> Any:
    """``_take`` for compiled code, atomic (one instruction, ``lock xadd``): the threads of a split block share
    ``taken``. numba has no atomics for the CPU, so an intrinsic emits LLVM's ``atomicrmw add``."""
    from numba.extending import intrinsic

    @intrinsic
    def take(typingctx: Any, taken: Any, step: Any) -> Any:
        if not (isinstance(taken, numba.types.Array) and taken.dtype == numba.types.int64
                and isinstance(step, numba.types.Integer)):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            array, by = args
            data = context.make_array(signature.args[0])(context, builder, array).data
            by = context.cast(builder, by, signature.args[1], numba.types.int64)
            return builder.atomic_rmw("add", data, by, "seq_cst")

        return numba.types.int64(taken, step), codegen

    return take


def _resum(buf: Any, row: int) -> tuple[float, float]:
    """Exact sum and sum of squares of ring ``row``, re-added once per lap so rounding never drifts.

    Four interleaved partial sums: independent additions the CPU overlaps (a single running sum
    would serialize ``width`` additions).
    """
    a0 = a1 = a2 = a3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    width = buf.shape[1]
    k = 0
    while k + 4 <= width:
        w0, w1, w2, w3 = buf[row, k], buf[row, k + 1], buf[row, k + 2], buf[row, k + 3]
        a0 += w0
        a1 += w1
        a2 += w2
        a3 += w3
        q0 += w0 * w0
        q1 += w1 * w1
        q2 += w2 * w2
        q3 += w3 * w3
        k += 4
    while k < width:
        w0 = buf[row, k]
        a0 += w0
        q0 += w0 * w0
        k += 1
    return (a0 + a1) + (a2 + a3), (q0 + q1) + (q2 + q3)


_U = np.uint64  # an index known >= 0: numba emits no wraparound for unsigned ones
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact for n < 2**21
_LN2_LO = 1.90821492927058770002e-10
_U_MAX = 40.0  # exp(-40) < 2**-57: 1 - exp(-u) rounds to 1.0 from here on


def one_minus_exp_neg(u: float) -> float:
    """1 - exp(-u) for u >= 0, absolute error below 1e-15 against ``-expm1(-u)``.

    Evaluated here (ln 2 range reduction, degree-13 Taylor polynomial, scaling by a power of two)
    in branch-free arithmetic the compiler vectorizes; a libm call per sample cannot be.
    """
    u = u if u < _U_MAX else _U_MAX
    n = int(u * (1.0 / _LN2_HI) + 0.5)
    t = n * _LN2_LO - (u - n * _LN2_HI)  # -(u - n ln 2), in [-ln2 / 2, ln2 / 2]
    p = 1.0 + t * (1.0 + t * (1.0 / 2 + t * (1.0 / 6 + t * (1.0 / 24 + t * (1.0 / 120 + t * (
        1.0 / 720 + t * (1.0 / 5040 + t * (1.0 / 40320 + t * (1.0 / 362880 + t * (
            1.0 / 3628800 + t * (1.0 / 39916800 + t * (1.0 / 479001600 + t / 6227020800.0))))))))))))
    # times 2**-n, n < 64, bit by bit: exact, and selects vectorize where a table lookup does not
    p *= 0.5 if n & 1 else 1.0
    p *= 0.25 if n & 2 else 1.0
    p *= 0.0625 if n & 4 else 1.0
    p *= 2.0**-8 if n & 8 else 1.0
    p *= 2.0**-16 if n & 16 else 1.0
    p *= 2.0**-32 if n & 32 else 1.0
    return 1.0 - p


def _z(x: float, s1: float, s2: float, cnt_k: float, fl: float) -> float:
    """|x - mean| / max(std, fl) against a window's sum, sum of squares and count; 0 while too short."""
    # the scalar path's two divisions, not one and two multiplications: with noise_floor 0 the spread of a
    # constant window is its rounding, so a last bit of the mean decides whether a different value is 0 or
    # ~1e8 spreads away (a series of +-1 scored 0.03 on the other paths, 0.31 here)
    mean = s1 / cnt_k
    var = s2 / cnt_k - mean * mean
    scale = math.sqrt(var) if var > fl * fl else fl
    ok = (cnt_k >= SEASON_MIN) & (scale > 0.0)
    z = abs(x - mean) / (scale if ok else 1.0)
    return z if ok else 0.0


def _surprises(work: Any, kk: int, noise_floor: float, tolerance: float, sharpness: float, base: float) -> None:
    """Per value x = work[0, k] with its seasonal window's sum, sum of squares and count
    (work[1:4]), the series' range before it (work[4:6]) and its step from the previous value
    with the step window's sum, sum of squares and count (work[6:10]): work[0] = raw surprise
    (1 - exp(-z^2 / 8)) ** sharpness of the larger z-score (each 0 while its window is too short), with the
    spread floored at work[11] (``noise_floor`` x the range including x, all-time or forgetting, as the
    scalar path computes it); work[5] = 1 where x lies beyond that earlier
    range by more than ``tolerance`` of it (plus RANGE_RESOLUTION of base, the series' first value in
    magnitude, and of the range's larger end: the values are offset by the first one), else 0.
    Branch-free and alone in its function, so the compiler vectorizes it."""
    # work[r, k], not views of its rows: each view would cost reference counting per call
    for k in range(kk):
        x, lo, hi = work[0, k], work[4, k], work[5, k]
        # NaN or -inf before the first value: no comparison holds; RANGE_RESOLUTION: rounding is not beyond
        tol = tolerance * (hi - lo) + RANGE_RESOLUTION * (base + max(abs(hi), abs(lo)))
        beyond = (hi >= lo) & ((x > hi + tol) | (x < lo - tol))
        fl = work[11, k]  # noise_floor x the range including x (pass 1; capped by the forgetting one in 1b)
        z = _z_c(x, work[1, k], work[2, k], work[3, k], fl)
        zs = _z_c(work[6, k], work[7, k], work[8, k], work[9, k], fl)
        z = z if z > zs else zs
        work[0, k] = _one_minus_exp_neg_c((z * z) / SURPRISE_SCALE)
        work[5, k] = 1.0 if beyond else 0.0
    if sharpness != 1.0:  # its own loop: a pow call per sample would stop the loop above vectorizing
        for k in range(kk):
            r = work[0, k]
            work[0, k] = r * r if sharpness == 2.0 else r**sharpness


_resum_c = _resum  # the helpers are replaced by their compiled forms in load(): numba reads
_surprises_c = _surprises  # globals when compiling
_take_c = _take
_one_minus_exp_neg_c = one_minus_exp_neg
_z_c = _z


def score_rows(  # one flat call: numba compiles arrays and scalars, not objects
    taken: Any, take: int, hi: int, slots: Any, raw: Any, col_bucket: Any, out: Any, work: Any, cols: Any,
    n_: Any, offset_: Any, mn_: Any, mx_: Any, m_: Any, v_: Any, hit_: Any, crit_: Any, last_: Any, prev_: Any,
    sbuf: Any, shead: Any, scount: Any, ss1: Any, ss2: Any,
    dbuf: Any, dhead: Any, dcount: Any, ds1: Any, ds2: Any,
    abuf: Any, ahead: Any, acount: Any, as1: Any, as2: Any,
    lm_: Any, lv_: Any, lbuf: Any, lhead: Any, lcount: Any, ls1: Any, ls2: Any, level: int, sides: int, clip: float,
    buckets: int, noise_floor: float, sharpness: float, rate: float, min_history: int, tolerance: float,
    refractory: int, table: Any, diff: Any, step: float, zmax: float, z_red: float, z_crit: float,
    demoted: float, fmn_: Any, fmx_: Any, range_rate: float, *week: Any,
) -> int:
    """Score ``raw[i, j]`` of series slot ``slots[i]`` in bucket ``col_bucket[j]`` into ``out``
    for the rows ``i < hi`` from ``taken[0]`` on, ``take`` rows at a time (``taken``, an int64 array of one, counts
    the rows taken: the calls of the threads of a split block share it, each row is scored by one of them).

    ``work`` is a (WORK_ROWS, raw.shape[1]) float64 and ``cols`` a raw.shape[1] int64 scratch array.
    ``week``: nothing, or in ``Kernel.weekly`` (this function compiled with ``_WEEKLY`` true) the weekly
    profile's ``weekly_rho``, each column's slot number and the profile's state arrays
    (``DetectorConfig.weekly_rho``, ``_weekly``). Two compiled functions, not a flag: off, the kernel takes
    no argument more (each costs the call ~0.25 us) and holds no code more.
    Non-finite values score NaN and change nothing; returns how many there were.

    Each row is scored in passes over its samples: the two sequential ones (ring pushes; the
    recent and long-run statistics of surprise) carry only a few additions and multiply-adds
    from sample to sample, and the costly arithmetic in between (divisions, exp) has no
    dependency between samples, so it is vectorized (``_surprises``). The ring pushes are
    ``Rings.push`` written out in place: a compiled helper taking the arrays would pay
    reference counting on each of them per sample.
    """
    ignored = 0
    width = sbuf.shape[1]
    avg_width = abuf.shape[1]
    inv_avg = 1.0 / avg_width
    xs, sums, squares, counts, lows, highs = work[0], work[1], work[2], work[3], work[4], work[5]
    steps, dsums, dsquares, dcounts = work[6], work[7], work[8], work[9]
    values, floors = work[10], work[11]  # x and noise_floor x the range including it (level window)
    lwidth = lbuf.shape[1]
    dwidth = dbuf.shape[1]
    i = end = 0
    while True:
        if i == end:  # the next rows to score, and no other thread's
            i = _take_c(taken, take)
            if i >= hi:
                break
            end = min(hi, i + take)
        s = slots[i]
        iu, su = _U(i), _U(s)  # unsigned indices: no negative-index wraparound code per access
        n0 = n_[s]
        offset, pmin, pmax, prev = offset_[s], mn_[s], mx_[s], prev_[s]
        fmin, fmax = fmn_[s], fmx_[s]  # the forgetting range (range_rate > 0)
        r_keep = 1.0 - range_rate
        d_cnt, d_h, d1, d2 = dcount[s], dhead[s], ds1[s], ds2[s]

        # pass 1, sequential: seasonal window before each value, push it (Rings.push);
        # the current ring row's head, count and sums stay in locals until the bucket changes
        kk = 0
        row = -1
        cnt = h = 0
        w1 = w2 = 0.0
        for j in range(raw.shape[1]):
            value = raw[iu, j]
            if not math.isfinite(value):
                out[i, j] = math.nan
                ignored += 1
                continue
            if n0 + kk == 0:
                offset = value
            x = value - offset
            if not -X_LIMIT <= x <= X_LIMIT:  # as the scalar path
                x = X_LIMIT if x > 0.0 else -X_LIMIT
            ku = _U(kk)
            here = s * buckets + col_bucket[j]
            if here != row:
                if row >= 0:
                    scount[row], shead[row], ss1[row], ss2[row] = cnt, h, w1, w2
                row = here
                cnt, h, w1, w2 = scount[row], shead[row], ss1[row], ss2[row]
            xs[ku], sums[ku], squares[ku], counts[ku] = x, w1, w2, cnt
            cols[ku] = j
            old = 0.0
            if cnt == width:
                old = sbuf[_U(row), _U(h)]
                w1 += x - old
                w2 += x * x - old * old
            else:
                cnt += 1
                w1 += x
                w2 += x * x
            sbuf[_U(row), _U(h)] = x
            h += 1
            if h == width or old * old > CANCEL * w2:  # once per lap, or the eviction cancelled the sums
                h = 0 if h == width else h
                w1, w2 = _resum_c(sbuf, row)
            kk += 1
        if row >= 0:
            scount[row], shead[row], ss1[row], ss2[row] = cnt, h, w1, w2
        n_[s], offset_[s] = n0 + kk, offset

        # pass 1b, sequential: the range before each value and the noise floor, the step from the previous value,
        # with the step window before it, pushed (their own loop: beside the seasonal ring's running sums the
        # registers would run out; the range here, not in pass 1, measured ~4% faster blocks of many series)
        for k in range(kk):
            x = xs[k]
            values[k] = x
            lows[k], highs[k] = pmin, pmax  # the range before x
            if x < pmin:
                pmin = x
            if x > pmax:
                pmax = x
            floor = noise_floor * (pmax - pmin)  # the z-scores' and the level window's
            if range_rate > 0.0:  # the floor's range forgets (capped as the scalar path)
                fmin = r_keep * fmin + range_rate * x
                fmax = r_keep * fmax + range_rate * x
                fmin = x if x < fmin else fmin
                fmax = x if x > fmax else fmax
                span = noise_floor * (RANGE_SPAN * (fmax - fmin))
                least = RANGE_RESOLUTION * (abs(offset) + (-pmin if -pmin > pmax else pmax))
                span = least if span < least else span
                floor = span if span < floor else floor
            floors[k] = floor
            d = x - prev  # the step from the previous value; 0 for the first (x = 0 = prev)
            prev = x
            steps[k], dsums[k], dsquares[k], dcounts[k] = d, d1, d2, d_cnt
            old = 0.0
            if d_cnt == dwidth:
                old = dbuf[su, _U(d_h)]
                d1 += d - old
                d2 += d * d - old * old
            else:
                d_cnt += 1
                d1 += d
                d2 += d * d
            dbuf[su, _U(d_h)] = d
            d_h += 1
            if d_h == dwidth or old * old > CANCEL * d2:
                d_h = 0 if d_h == dwidth else d_h
                d1, d2 = _resum_c(dbuf, s)
        prev_[s], mn_[s], mx_[s] = prev, pmin, pmax
        fmn_[s], fmx_[s] = fmin, fmax
        dcount[s], dhead[s], ds1[s], ds2[s] = d_cnt, d_h, d1, d2

        # pass 1c, sequential, only with the weekly profile (_weekly: AnomalyDetector._weekly_z written out):
        # the weekly test, the time-of-week window before each value, pushed; where the test holds and the
        # weekly z-score is the smaller, the seasonal window's stats (work[1:4]) become the weekly window's
        if _WEEKLY:  # a constant: numba compiles this pass only into Kernel.weekly
            rho, col_slot, wbuf, whead, wcount, ws1, ws2, wmeans, wids, wstate = week
            wwidth = wbuf.shape[1]
            wlen = wmeans.shape[1]
            wday = wlen // 7
            cur, ssum, scnt_ = wstate[s, 0], wstate[s, 1], wstate[s, 2]
            sd, cd, sw, cw = wstate[s, 3], wstate[s, 4], wstate[s, 5], wstate[s, 6]
            on = (cw >= MIN_WEEKS * wlen) and (sw / (cw if cw > 1.0 else 1.0) < rho * sd / (cd if cd > 1.0 else 1.0))
            wrow, qrow = -1, np.nan  # the time-of-week row whose stats are in registers, and its slot
            c_w, w_h, v1, v2 = 0, 0, 0.0, 0.0
            for k in range(kk):
                j = cols[k]
                x = xs[k]
                q = col_slot[j]
                if q > cur:  # a new slot: the open one's mean against those one day and one week before
                    if scnt_ > 0.0:
                        mean = ssum / scnt_
                        back = cur - wday
                        at = int(back % wlen)
                        if wids[s, at] == back:
                            dm = mean - wmeans[s, at]
                            sd += dm * dm
                            cd += 1.0
                        back = cur - wlen
                        at = int(back % wlen)
                        if wids[s, at] == back:
                            dm = mean - wmeans[s, at]
                            sw += dm * dm
                            cw += 1.0
                        at = int(cur % wlen)
                        wmeans[s, at], wids[s, at] = mean, cur
                        on = (cw >= MIN_WEEKS * wlen) and (
                            sw / (cw if cw > 1.0 else 1.0) < rho * sd / (cd if cd > 1.0 else 1.0))
                    cur, ssum, scnt_ = q, 0.0, 0.0
                ssum += x
                scnt_ += 1.0
                if q != qrow:  # the slot's time-of-week row (its number mod 7 x buckets), its stats loaded
                    qrow = q
                    if wrow >= 0:
                        wcount[wrow], whead[wrow], ws1[wrow], ws2[wrow] = c_w, w_h, v1, v2
                    wrow = s * wlen + int(q % wlen)
                    c_w, w_h, v1, v2 = wcount[wrow], whead[wrow], ws1[wrow], ws2[wrow]
                if on and c_w >= SEASON_MIN:
                    fl = floors[k]
                    zd = _z_c(x, sums[k], squares[k], counts[k], fl)
                    zw = _z_c(x, v1, v2, float(c_w), fl)
                    if zw < zd:
                        sums[k], squares[k], counts[k] = v1, v2, c_w
                old = 0.0
                if c_w == wwidth:
                    old = wbuf[_U(wrow), _U(w_h)]
                    v1 += x - old
                    v2 += x * x - old * old
                else:
                    c_w += 1
                    v1 += x
                    v2 += x * x
                wbuf[_U(wrow), _U(w_h)] = x
                w_h += 1
                if w_h == wwidth or old * old > CANCEL * v2:
                    w_h = 0 if w_h == wwidth else w_h
                    v1, v2 = _resum_c(wbuf, wrow)
            if wrow >= 0:
                wcount[wrow], whead[wrow], ws1[wrow], ws2[wrow] = c_w, w_h, v1, v2
            wstate[s, 0], wstate[s, 1], wstate[s, 2] = cur, ssum, scnt_
            wstate[s, 3], wstate[s, 4], wstate[s, 5], wstate[s, 6] = sd, cd, sw, cw

        # pass 2, independent samples: seasonal z-score, then raw surprise
        _surprises_c(work, kk, noise_floor, tolerance, sharpness, abs(offset))

        # pass 3, sequential: recent mean of surprise (the average ring); its level against the
        # long-run mean and variance before it (exponentially weighted), scored; repeats demoted
        a_head, a_count, a_s1 = ahead[s], acount[s], as1[s]
        m, v, hit_n, crit_n, last = m_[s], v_[s], hit_[s], crit_[s], last_[s]
        lm, lv, l_head, l_count, l_s1 = lm_[s], lv_[s], lhead[s], lcount[s], ls1[s]
        inv_step = 1.0 / step
        refr = float(refractory)
        for k in range(kk):
            r = xs[k]
            if a_count == avg_width:
                a_s1 += r - abuf[su, _U(a_head)]
            else:
                a_count += 1
                a_s1 += r
            abuf[su, _U(a_head)] = r
            a_head += 1
            if a_head == avg_width:  # the re-add, in place: a call would cost more than this short window
                a_head = 0
                a_s1 = 0.0
                for q in range(avg_width):
                    a_s1 += abuf[s, q]
            n = n0 + k + 1
            a = a_s1 * inv_avg if n >= avg_width else a_s1 / n
            m_prev = a if n == 1 else m
            sd = math.sqrt(v)
            alpha = rate
            if alpha * n < 1.0:
                alpha = 1.0 / n  # 1 for the first sample: m = a, v = 0
            keep = 1.0 - alpha
            d = a - m
            # keep * m + alpha * a rather than m + alpha * d: a multiply and an add on the chain from
            # sample to sample instead of three operations (equal up to rounding)
            m = keep * m + alpha * a
            v = keep * (v + alpha * d * d)

            up = a - (m_prev if m_prev > MEAN_FLOOR else MEAN_FLOOR)
            zl = (up if up > 0.0 else 0.0) / (sd if sd > STD_FLOOR else STD_FLOOR)
            if level > 0:  # the level window: DetectorConfig.level, as AnomalyDetector.update
                x = values[k]
                e = 0.0
                if n > 1:
                    lsd = math.sqrt(lv)
                    fl = floors[k]
                    lsd = lsd if lsd > fl else fl
                    if lsd > 0.0:
                        e = (x - lm) / lsd
                        e = clip if e > clip else -clip if e < -clip else e
                if l_count == lwidth:
                    l_s1 += e - lbuf[su, _U(l_head)]
                else:
                    l_count += 1
                    l_s1 += e
                lbuf[su, _U(l_head)] = e
                l_head += 1
                if l_head == lwidth:  # re-added once per lap, as Rings.push
                    l_head = 0
                    l_s1 = 0.0
                    for q in range(lwidth):
                        l_s1 += lbuf[s, q]
                dl = x - lm
                lm = keep * lm + alpha * x
                lv = keep * (lv + alpha * dl * dl)
                zv = (abs(l_s1) if sides == 2 else l_s1 if l_s1 > 0.0 else 0.0) / math.sqrt(l_count)
                zl = zl if zl > zv else zv
            pos = (zl if zl < zmax else zmax) * inv_step
            t = int(pos)
            score = table[_U(t)] + (pos - t) * diff[_U(t)]  # _scoring.score_z
            beyond = highs[k] > 0.0  # the value was beyond the range before it
            score = 1.0 if beyond else score
            if ((zl > z_red) | beyond) & (n >= min_history):  # a detection (rare; warm-up samples are none):
                # demoted directly after a detection or within refractory samples after a critical one
                score = demoted if (n - hit_n <= 1.0) | (n - crit_n <= refr) else score
                hit_n = n
                crit_n = n if (zl > z_crit) | beyond else crit_n
            if n < min_history:
                out[iu, _U(cols[k])] = math.nan
            else:
                out[iu, _U(cols[k])] = score
                last = score
        a_s2 = 0.0  # the ring's sum of squares, which scoring never reads: re-added once per row
        for q in range(avg_width):
            a_s2 += abuf[s, q] * abuf[s, q]
        ahead[s], acount[s], as1[s], as2[s] = a_head, a_count, a_s1, a_s2
        m_[s], v_[s], hit_[s], crit_[s], last_[s] = m, v, hit_n, crit_n, last
        if level > 0:
            l_s2 = 0.0  # as the average ring's: never read by scoring, re-added once per row
            for q in range(lwidth):
                l_s2 += lbuf[s, q] * lbuf[s, q]
            lm_[s], lv_[s], lhead[s], lcount[s], ls1[s], ls2[s] = lm, lv, l_head, l_count, l_s1, l_s2
        i += 1
    return ignored
