"""The detector: per-series state in preallocated arrays, a scalar path and a block path.

Per sample of a series (every path computes the same thing; the block path runs compiled by
numba in ``_engine_numba`` when installed, else vectorized over series and time in ``_engine_numpy``):

1. z = |x - mean| / max(std, noise_floor x range) (the range of all values, capped at RANGE_SPAN x a
   forgetting range: ``DetectorConfig.range_rate``, a cap never below RANGE_RESOLUTION x the values' magnitude)
   against the last ``window`` values of the
   same seasonal bucket (time of day by default; with ``DetectorConfig.weekly_rho``, the smaller of that and
   the z-score against the same time-of-week bucket once the series' weekly test holds: ``_weekly``),
   and the same z-score of the step
   x - previous x against the last ``steps`` steps; the larger of the two counts;
2. raw surprise r = (1 - exp(-z^2 / 8)) ** sharpness in [0, 1), averaged over the last ``average`` samples;
3. that average is compared with the series' own long-run (exponentially weighted) mean and
   spread of it; p = Gaussian tail probability, score = -log10(p) / 10 in [0, 1];
   with ``level`` > 0, the level z-score (see ``DetectorConfig.level``) counts when larger;
4. a value outside the range seen so far (by ``spatial_tolerance``) scores 1; a detection (score >=
   ``warning``, or such a value) directly after a detection, or within ``refractory`` samples after a
   critical one (score >= ``critical``, or such a value), is demoted to p = 1e-3 (or just below ``warning``
   when that is lower), so one event reports once.

Thread-safe: updates take turns on a lock (the anomaly hook feeds it from its event loop).
"""

from __future__ import annotations

import math
import operator
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from math import erfc, expm1, isfinite, log10, sqrt
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from .._fork import in_forked_child, release_held
from .._validate import brief, empty_or_not_str, shown
from ._config import DetectorConfig
from ._engine_numba import ENGINES, Kernel, Workers, load, score_compiled
from ._engine_numpy import PIECE, score_block
from ._ring import CANCEL, Rings, Scratch, floats, ints, readd
from ._scoring import (
    MEAN_FLOOR,
    ORDINARY_SCORE,
    P_FLOOR,
    RANGE_RESOLUTION,
    RANGE_SPAN,
    SEASON_MIN,
    SLOT_LIMIT,
    STD_FLOOR,
    SURPRISE_SCALE,
    X_LIMIT,
    demoted_score,
    red_z,
    slot_length,
)
from ._weekly import MIN_WEEKS, WEEK_COLUMNS, WEEK_COUNT, WEEK_DAY, WEEK_SLOT, WEEK_SUM, WEEK_WEEK

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_SQRT2 = math.sqrt(2.0)  # score1(tail1(z)), written out in update(): the same operations, so the same bits
_SCORE_DIV = -math.log10(P_FLOOR)


@dataclass(frozen=True, slots=True)
class DetectorStats:
    series: int  # series tracked now
    ignored: int  # NaN / inf samples skipped
    evicted: int  # series dropped to respect max_series


class AnomalyDetector:
    """Scores many series online. State is per detector; the config is shared and immutable.
    Thread-safe: updates from several threads take turns (each call is atomic). A pickle or a copy
    (``copy.copy`` too) is a detector of its own with the state of this one at that moment: fed the same
    samples, it gives the same scores."""

    def __init__(
        self, config: DetectorConfig | None = None, *, engine: str = "auto", threads: SupportsIndex = 1
    ) -> None:
        """``engine`` runs :meth:`update_many` / :meth:`update_series`: ``"numba"`` a compiled
        loop (the ``fast`` extra, several times faster), ``"numpy"`` vectorized passes, ``"auto"``
        numba when installed. Scores agree across engines to ~1e-9 (with ``noise_floor=0`` not always:
        ``DetectorConfig.noise_floor``), less on values that drift far from their series' first value compared
        with their spread (a window's variance is its mean square less its squared mean, which each engine rounds
        otherwise: a ramp rising 1 per sample with noise of sd 1 differs by ~1.5e-8 after 5e5 samples, ~1e-6
        after 4e6). ``threads`` (numba engine
        only; ignored when ``"auto"`` finds no numba) splits large blocks (>= 32,768 samples) of
        several series across that many threads, at most numba's thread count (``NUMBA_NUM_THREADS``,
        the CPUs by default): the caller's and ``threads - 1`` of the detector's own, started at its
        first such block, idle (asleep) between blocks and ended with the detector; the default 1
        keeps every call on the caller's thread.

        Raises ``ValueError`` for another engine or a ``threads`` outside [1, 1024] (or above 1
        with ``engine="numpy"``), ``ImportError`` for ``"numba"`` without numba.
        """
        if config is not None and not isinstance(config, DetectorConfig):
            raise TypeError(f"config must be a DetectorConfig or None, got {brief(config)}")
        if not isinstance(engine, str) or engine not in ENGINES:  # `in` compares: an array raised numpy's "truth
            # value of an array is ambiguous", naming nothing
            raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {brief(engine)}")
        try:
            count = -1 if isinstance(threads, bool) else operator.index(threads)
        except TypeError:
            count = -1
        if not 1 <= count <= 1024:
            raise ValueError(f"threads must be an int in [1, 1024], got {shown(threads)}")
        if count > 1 and engine == "numpy":
            raise ValueError(f"threads must be 1 with engine='numpy' (it runs on the caller's thread), got {count}")
        # "auto" imports numba (~0.4 s) at the first block, not here: the anomaly hook only
        # ever calls update() and should not pay for it
        self._kernel: Kernel | bool | None = False if engine == "auto" else None if engine == "numpy" else load()
        if engine == "numba" and self._kernel is None:
            raise ImportError("engine='numba' needs numba: pip install 'shannon-otel[fast]'")
        self._threads = count
        self._engine_arg = engine  # what a copy asks for (numba must still be there for "numba")
        cfg = self._config = config if config is not None else DetectorConfig()
        self._z_red, self._z_crit = red_z(cfg.warning), red_z(cfg.critical)
        self._demoted = demoted_score(cfg.warning)
        cap = cfg.max_series
        self._season = Rings(cap * cfg.buckets, cfg.window)
        self._avg = Rings(cap, cfg.average)
        self._steps = Rings(cap, cfg.steps)
        self._level = Rings(cap, max(cfg.level, 1))
        self._n: I64 = np.zeros(cap, dtype=np.int64)
        self._offset: F64 = np.zeros(cap)
        self._min: F64 = np.full(cap, np.inf)
        self._max: F64 = np.full(cap, -np.inf)
        # the forgetting range of the noise floor (DetectorConfig.range_rate > 0; unused at 0)
        self._fmin: F64 = np.full(cap, np.inf)
        self._fmax: F64 = np.full(cap, -np.inf)
        self._m: F64 = np.zeros(cap)
        self._v: F64 = np.zeros(cap)
        self._hit: F64 = np.full(cap, -np.inf)  # the sample number (n) of the series' last detection
        self._crit: F64 = np.full(cap, -np.inf)  # ... and of its last critical one (or value beyond the range)
        self._last: F64 = np.full(cap, np.nan)
        self._prev: F64 = np.zeros(cap)  # the previous value (minus offset): 0 before the first
        self._lm: F64 = np.zeros(cap)  # long-run mean and variance of the values (level window)
        self._lv: F64 = np.zeros(cap)
        self._vn = ints(self._n)
        self._voff, self._vmin, self._vmax, self._vm, self._vv, self._vhit, self._vlast, self._vprev = (
            floats(a) for a in (self._offset, self._min, self._max, self._m, self._v, self._hit, self._last,
                                self._prev)
        )
        self._vlm, self._vlv, self._vcrit = floats(self._lm), floats(self._lv), floats(self._crit)
        self._vfmin, self._vfmax = floats(self._fmin), floats(self._fmax)
        # what update() reads on every call, in one unpacking each (attribute loads add up at ~4 us a call)
        self._scalar_cfg = (cfg.buckets, slot_length(cfg.period_s, cfg.buckets), cfg.range_rate, cfg.noise_floor,
                            cfg.sharpness, cfg.history_rate, cfg.spatial_tolerance, cfg.min_history, cfg.refractory,
                            cfg.level, cfg.level_clip, cfg.level_sides == 1, cfg.weekly_rho is not None)
        self._season_views = self._season.views()
        self._steps_views = self._steps.views()
        self._avg_views = self._avg.views()
        self._level_views = self._level.views()
        self._init_weekly(cfg)
        # One update at a time: two threads feeding one detector put two series in one slot, silently
        # (measured: 4 threads, max_series 50 -> 52 series, shared slots). Uncontended: ~0.1 us a call.
        self._lock = threading.Lock()
        # a child forked while another thread fed it would wait on the dead thread's lock for good (the hook
        # freed it for its own detector; a detector fed by the user's threads hung the child's first update)
        in_forked_child(self._forked)
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._ignored = 0
        self._evicted = 0
        self._scratch = Scratch()  # the block path's work buffers
        self._level_scratch = Scratch()  # those of its level window
        self._last_key: tuple[str, ...] | None = None  # series of the last block, if still the most recent
        self._last_slots: I64 = np.zeros(0, dtype=np.int64)
        self._workers = Workers()  # the threads of split blocks (threads > 1), started at the first one

    def _init_weekly(self, cfg: DetectorConfig) -> None:
        """The weekly profile's state (``DetectorConfig.weekly_rho``): placeholders of one row when it is off.

        Per series: a ring per time-of-week bucket (7 x ``buckets`` of them, ``window`` wide); the means of
        the last 7 x ``buckets`` bucket-long slots, with the slot number each holds (NaN: none) at slot
        number mod 7 x ``buckets``; and ``_wstate``'s columns (WEEK_* in ``_weekly``): the open slot's number,
        sum and count, the sum and count of squared differences of slot means one day apart, one week apart.
        """
        on = cfg.weekly_rho is not None
        cap, width = (cfg.max_series, 7 * cfg.buckets) if on else (1, 1)
        self._wrho = float(cfg.weekly_rho) if cfg.weekly_rho is not None else -1.0  # -1: off (the kernel's flag)
        self._wspan = slot_length(cfg.period_s, cfg.buckets)  # a slot: one daily bucket long
        self._week = Rings(cap * width, cfg.window if on else 1)
        self._wmeans: F64 = np.zeros((cap, width))
        self._wids: F64 = np.full((cap, width), np.nan)
        self._wstate: F64 = np.zeros((cap, WEEK_COLUMNS))
        self._wstate[:, WEEK_SLOT] = -np.inf
        self._week_cfg = (width, self._wspan, self._wrho, floats(self._wstate), floats(self._wmeans),
                          floats(self._wids))

    def _forked(self) -> None:
        """In a forked child: free the lock a thread of the parent held at the fork (see ``_fork``)."""
        release_held(self._lock)

    # ------------------------------------------------------------------ copies
    def __getstate__(self) -> dict[str, Any]:
        """What a pickle or a copy keeps: the config, the engine asked for, and a snapshot of every series'
        state (its arrays, the series' slots in LRU order, the counts), taken under the lock.

        The arrays are reached through memoryviews (the scalar path's) and guarded by a lock, which pickle
        refuses: ``pickle.dumps(detector)``, ``copy.deepcopy`` and ``copy.copy`` raised "cannot pickle
        memoryview objects", so a detector could not be checkpointed nor copied mid-stream.
        """
        with self._lock:
            arrays = {name: value.copy() for name, value in vars(self).items()
                      if isinstance(value, np.ndarray) and name != "_last_slots"}
            rings = {name: (value.buf.copy(), value.head.copy(), value.count.copy(), value.s1.copy(),
                            value.s2.copy()) for name, value in vars(self).items() if isinstance(value, Rings)}
            return {"config": self._config, "engine": self._engine_arg, "threads": self._threads,
                    "arrays": arrays, "rings": rings, "slots": list(self._slots.items()),
                    "ignored": self._ignored, "evicted": self._evicted}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A detector built afresh from the config, then given the snapshot's state: the copy scores the
        next samples as the original would, and the two share nothing (the engine is loaded again; raises
        ``ImportError`` for ``engine="numba"`` where numba is missing, as the constructor does)."""
        self.__init__(state["config"], engine=state["engine"], threads=state["threads"])  # type: ignore[misc]
        for name, array in state["arrays"].items():
            np.copyto(getattr(self, name), array)  # in place: the memoryviews read these buffers
        for name, (buf, head, count, s1, s2) in state["rings"].items():
            ring = getattr(self, name)
            for target, source in ((ring.buf, buf), (ring.head, head), (ring.count, count), (ring.s1, s1),
                                   (ring.s2, s2)):
                np.copyto(target, source)
        self._slots.update(state["slots"])
        self._ignored, self._evicted = state["ignored"], state["evicted"]

    # ------------------------------------------------------------------ series registry
    @property
    def config(self) -> DetectorConfig:
        """How it scores (read-only: the config sized every ring when the detector was built)."""
        return self._config

    @property
    def engine(self) -> str:
        """The engine scoring blocks: ``"numba"`` or ``"numpy"``."""
        return "numpy" if self._compiled_kernel() is None else "numba"

    def _compiled_kernel(self) -> Kernel | None:
        if self._kernel is False:
            self._kernel = load()
        return self._kernel if isinstance(self._kernel, Kernel) else None

    @property
    def stats(self) -> DetectorStats:
        """Series tracked, NaN/inf samples ignored, series evicted past ``max_series``."""
        return DetectorStats(len(self._slots), self._ignored, self._evicted)

    def series(self) -> list[str]:
        """Tracked series, least recently updated first."""
        return list(self._slots)

    def last_score(self, series: str) -> float | None:
        """The latest score of ``series``; ``None`` if unknown or still warming up.

        Raises ``TypeError`` unless ``series`` is a str, ``ValueError`` if it is empty.
        """
        _check_series(series)
        slot = self._slots.get(series)
        if slot is None:
            return None
        value = self._vlast[slot]
        return None if math.isnan(value) else value

    def _victim(self, series: str) -> str | None:
        """The series an update of ``series`` would evict (the least recently updated one, when ``series`` is new
        and ``max_series`` are tracked), or ``None``: O(1), for the anomaly hook's eviction bookkeeping."""
        slots = self._slots
        if series in slots or len(slots) < self._config.max_series:
            return None
        return next(iter(slots), None)

    def _tracks(self, series: str) -> bool:
        """Whether ``series`` is tracked now (O(1))."""
        return series in self._slots

    def _slot(self, series: str) -> int:
        slot = self._slots.get(series)
        if slot is not None:
            self._slots.move_to_end(series)
            return slot
        if len(self._slots) < self._config.max_series:
            slot = len(self._slots)
        else:
            _, slot = self._slots.popitem(last=False)
            self._evicted += 1
            self._reset(slot)
        self._slots[series] = slot
        return slot

    def _reset(self, slot: int) -> None:
        b = self._config.buckets
        self._season.clear(slice(slot * b, (slot + 1) * b))
        self._avg.clear(slice(slot, slot + 1))
        self._steps.clear(slice(slot, slot + 1))
        self._level.clear(slice(slot, slot + 1))
        self._lm[slot] = self._lv[slot] = 0.0
        self._n[slot] = 0
        self._offset[slot] = self._m[slot] = self._v[slot] = self._prev[slot] = 0.0
        self._min[slot], self._max[slot], self._last[slot] = np.inf, -np.inf, np.nan
        self._fmin[slot], self._fmax[slot] = np.inf, -np.inf
        self._hit[slot] = self._crit[slot] = -np.inf
        if self._wrho > 0.0:
            width = 7 * b
            self._week.clear(slice(slot * width, (slot + 1) * width))
            self._wmeans[slot], self._wids[slot], self._wstate[slot] = 0.0, np.nan, 0.0
            self._wstate[slot, WEEK_SLOT] = -np.inf

    # ------------------------------------------------------------------ scalar path
    def update(self, series: str, value: float, time: float) -> float | None:
        """Feed one sample of ``series`` taken at ``time`` (seconds, e.g. epoch) and score it.

        Returns the score in [0, 1], or ``None`` while the series warms up or when ``value``
        is NaN/inf (such values are counted in :attr:`stats` and change nothing else). A finite
        value more than 1e100 from the series' first value is scored and
        kept as if it were that far (its square, or its difference from the previous value, may not
        be a float): clamped, it still lies beyond the range seen so far (a range break by
        ``spatial_tolerance``), and the statistics stay finite; every path clamps alike. Thread-safe
        (calls take turns).
        Raises, before changing any state, ``TypeError`` for a ``series`` that is not a str (``ValueError`` for an
        empty one; checked when the series is new) or a ``value`` / ``time`` that is not a real number (nor is a
        signaling NaN, ``Decimal("sNaN")``, which ``float()`` refuses),
        ``ValueError`` for a non-finite ``time`` (with a finite ``value``) or a number no float holds (``2**1100``,
        ``Decimal("1e400")``, a numpy longdouble: not an infinity, so not a missing sample); O(1).
        """
        # One body, no calls but for the rare re-add of a window: each call (a ring push, a z-score)
        # cost ~0.1-0.2 us of the ~4 us. The ring pushes are Rings.push written out on its memoryviews.
        with self._lock:
            try:  # free unless raised: the hot path pays no check of its own for the types
                slot = self._slots.get(series)
                if type(value) is not float or type(time) is not float:
                    if isinstance(value, _COMPLEX) or isinstance(time, _COMPLEX):
                        raise TypeError  # isfinite() would take numpy's by their real part, with a ComplexWarning
                    finite = value is not _MASKED and isfinite(value)  # numpy's masked constant: missing, as
                    timely = time is not _MASKED and isfinite(time)  # NaN (float() of it warns)
                    plain = False
                else:
                    finite = isfinite(value)
                    timely = isfinite(time)
                    plain = True  # both exact floats: float() of them below would be the same object, for a call
            except (TypeError, OverflowError, ValueError):  # ValueError: Decimal("sNaN") refuses float()
                raise _update_error(series, value, time) from None
            if slot is None:  # a new series (or a bad name): the dict lookup above missed anyway
                _check_series(series)
            if not finite:
                if _beyond_float(value):  # not NaN/inf: a Decimal or numpy longdouble no float holds, as 2**1100
                    raise ValueError(f"value must be a real number within the range of a float, got {brief(value)}")
                self._ignored += 1
                if slot is not None:  # a known series is still refreshed, as update_many does
                    self._last_key = None
                    self._slots.move_to_end(series)
                return None  # checked before allocating: a new series must not evict a tracked one for it
            if not timely:  # before a new series takes a slot (it could evict a tracked one)
                raise ValueError(f"time must be a finite number of seconds, got {shown(time)}")
            self._last_key = None  # the LRU order changes
            if slot is None:
                slot = self._slot(series)
            else:
                self._slots.move_to_end(series)
            (buckets, span, rate, noise_floor, sharpness, history_rate, tolerance, min_history, refractory,
             level, clip, one_sided, weekly) = self._scalar_cfg
            n = self._vn[slot] + 1
            self._vn[slot] = n
            x = value if plain else float(value)  # float(): a numpy float32 would compute in float32
            if n == 1:
                off = x
                self._voff[slot] = x
            else:
                off = self._voff[slot]
            x -= off
            if not -X_LIMIT <= x <= X_LIMIT:  # rare; inf for 1e308 - -1e308
                x = X_LIMIT if x > 0.0 else -X_LIMIT
            vmin, vmax = self._vmin, self._vmax
            pmin, pmax = vmin[slot], vmax[slot]
            lo = x if x < pmin else pmin
            hi = x if x > pmax else pmax
            vmin[slot], vmax[slot] = lo, hi
            row = slot * buckets
            if buckets > 1:  # column_buckets' arithmetic (slot_numbers, mod buckets)
                q = (time if plain else float(time)) / span
                if not -SLOT_LIMIT <= q <= SLOT_LIMIT:
                    q = SLOT_LIMIT if q > 0.0 else -SLOT_LIMIT
                row += math.floor(q) % buckets  # math.floor() of a float is an int: no int() call
            if rate:  # the floor's range forgets: an envelope decaying toward the values
                keep = 1.0 - rate
                flo = keep * self._vfmin[slot] + rate * x
                fhi = keep * self._vfmax[slot] + rate * x
                flo = x if x < flo else flo
                fhi = x if x > fhi else fhi
                self._vfmin[slot], self._vfmax[slot] = flo, fhi
                floor = noise_floor * (hi - lo)
                span = noise_floor * (RANGE_SPAN * (fhi - flo))  # min(floor, max(span, least)): as both engines
                least = RANGE_RESOLUTION * (abs(off) + (-lo if -lo > hi else hi))  # (_scoring.RANGE_RESOLUTION)
                span = least if span < least else span
                floor = span if span < floor else floor
            else:
                floor = noise_floor * (hi - lo)

            # the seasonal window: z-score of x against it (_deviation), then x pushed (Rings.push)
            buf, head_, count_, s1_, s2_, width = self._season_views
            cnt, s1, s2 = count_[row], s1_[row], s2_[row]
            z = 0.0
            if cnt >= SEASON_MIN:
                mean = s1 / cnt
                var = s2 / cnt - mean * mean
                scale = floor
                if var > scale * scale:
                    scale = sqrt(var)
                if scale > 0.0:
                    z = abs(x - mean) / scale
            head = head_[row]
            at = row * width + head
            lost = False
            if cnt == width:
                old = buf[at]
                s1 += x - old
                squared = old * old
                s2 += x * x - squared
                lost = squared > CANCEL * s2
            else:
                count_[row] = cnt + 1
                s1 += x
                s2 += x * x
            buf[at] = x
            head += 1
            if head == width or lost:
                head = 0 if head == width else head
                s1, s2 = readd(self._season.buf, row)
            head_[row], s1_[row], s2_[row] = head, s1, s2
            if weekly:  # DetectorConfig.weekly_rho
                z = self._weekly_z(slot, x, float(time), z, floor)

            # the step from the previous value (0 for the first: x = 0 = prev), alike in its window
            step = x - self._vprev[slot]
            self._vprev[slot] = x
            buf, head_, count_, s1_, s2_, width = self._steps_views
            cnt, s1, s2 = count_[slot], s1_[slot], s2_[slot]
            if cnt >= SEASON_MIN:
                mean = s1 / cnt
                var = s2 / cnt - mean * mean
                scale = floor
                if var > scale * scale:
                    scale = sqrt(var)
                if scale > 0.0:
                    zs = abs(step - mean) / scale
                    if zs > z:
                        z = zs
            head = head_[slot]
            at = slot * width + head
            lost = False
            if cnt == width:
                old = buf[at]
                s1 += step - old
                squared = old * old
                s2 += step * step - squared
                lost = squared > CANCEL * s2
            else:
                count_[slot] = cnt + 1
                s1 += step
                s2 += step * step
            buf[at] = step
            head += 1
            if head == width or lost:
                head = 0 if head == width else head
                s1, s2 = readd(self._steps.buf, slot)
            head_[slot], s1_[slot], s2_[slot] = head, s1, s2

            # raw surprise, averaged over the last `average` values (its ring, alike)
            r = -expm1(-(z * z) / SURPRISE_SCALE)
            if sharpness != 1.0:
                r = r * r if sharpness == 2.0 else r**sharpness
            buf, head_, count_, s1_, s2_, width = self._avg_views
            cnt, s1, s2 = count_[slot], s1_[slot], s2_[slot]
            head = head_[slot]
            at = slot * width + head
            lost = False
            if cnt == width:
                old = buf[at]
                s1 += r - old
                squared = old * old
                s2 += r * r - squared
                lost = squared > CANCEL * s2
            else:
                count_[slot] = cnt + 1
                s1 += r
                s2 += r * r
            buf[at] = r
            head += 1
            if head == width or lost:
                head = 0 if head == width else head
                s1, s2 = readd(self._avg.buf, slot)
            head_[slot], s1_[slot], s2_[slot] = head, s1, s2
            a = s1 / (n if n < width else width)

            alpha = history_rate
            if alpha * n < 1.0:
                alpha = 1.0 / n
            if n == 1:
                m = a
                self._vm[slot] = a
                v = 0.0
            else:
                vm, vv = self._vm, self._vv
                m, v = vm[slot], vv[slot]
                d = a - m
                vm[slot] = m + alpha * d
                vv[slot] = (1.0 - alpha) * (v + alpha * d * d)
            zl = a - (m if m > MEAN_FLOOR else MEAN_FLOOR)
            if zl > 0.0:
                sd = sqrt(v)
                zl /= sd if sd > STD_FLOOR else STD_FLOOR
            if level:  # the level z-score: the window's sum of clipped level deviations, per sqrt(its count)
                vlm, vlv = self._vlm, self._vlv
                lm, lv = vlm[slot], vlv[slot]
                e = 0.0
                if n > 1:
                    scale = sqrt(lv)
                    if scale < floor:
                        scale = floor
                    if scale > 0.0:
                        e = (x - lm) / scale
                        e = clip if e > clip else -clip if e < -clip else e
                if n == 1:
                    vlm[slot], vlv[slot] = x, 0.0
                else:
                    d = x - lm
                    vlm[slot] = lm + alpha * d
                    vlv[slot] = (1.0 - alpha) * (lv + alpha * d * d)
                buf, head_, count_, s1_, s2_, width = self._level_views
                cnt, s1, s2 = count_[slot], s1_[slot], s2_[slot]
                head = head_[slot]
                at = slot * width + head
                lost = False
                if cnt == width:
                    old = buf[at]
                    s1 += e - old
                    squared = old * old
                    s2 += e * e - squared
                    lost = squared > CANCEL * s2
                else:
                    count_[slot] = cnt + 1
                    s1 += e
                    s2 += e * e
                buf[at] = e
                head += 1
                if head == width or lost:
                    head = 0 if head == width else head
                    s1, s2 = readd(self._level.buf, slot)
                head_[slot], s1_[slot], s2_[slot] = head, s1, s2
                if one_sided:  # only a rise is evidence
                    zv = (s1 if s1 > 0.0 else 0.0) / sqrt(n if n < width else width)
                else:
                    zv = abs(s1) / sqrt(n if n < width else width)
                if zv > zl:
                    zl = zv
            hit = zl > self._z_red
            strong = zl > self._z_crit
            if zl <= 0.0:
                score = ORDINARY_SCORE
            else:  # score1(tail1(zl)), written out
                score = -log10(0.5 * erfc(zl / _SQRT2) + P_FLOOR) / _SCORE_DIV
                if score > 1.0:
                    score = 1.0
            if pmax >= pmin:  # not the first value
                # the values are offset by the series' first one: rounding is relative to the values themselves
                big = -pmin if -pmin > pmax else pmax  # max(|pmax|, |pmin|), given pmin <= pmax
                tol = tolerance * (pmax - pmin) + RANGE_RESOLUTION * (abs(off) + big)
                if x > pmax + tol or x < pmin - tol:
                    score = 1.0
                    hit = strong = True
            if hit and n >= min_history:  # (a warm-up sample, not reported, is no detection)
                # demoted directly after a detection, or within refractory samples after a critical one
                if n - self._vhit[slot] <= 1 or n - self._vcrit[slot] <= refractory:
                    score = self._demoted
                self._vhit[slot] = n
                if strong:
                    self._vcrit[slot] = n
            if n < min_history:
                return None
            self._vlast[slot] = score
            return score

    def _weekly_z(self, slot: int, x: float, time: float, z: float, floor: float) -> float:
        """The seasonal z-score ``z`` of ``x``, or its weekly one when smaller and the series' weekly test
        holds (``DetectorConfig.weekly_rho``); advances the weekly state. The scalar form of
        ``_weekly.weekly_tick`` and of the numba kernel's pass 1c: the same operations in the same order (an
        opt-in path: the ring's own ``stats`` and ``push``, not written out as ``update``'s are)."""
        width, span, rho, st, means, ids = self._week_cfg
        base = slot * WEEK_COLUMNS
        q = time / span  # slot_numbers' arithmetic
        q = float(math.floor(q if -SLOT_LIMIT <= q <= SLOT_LIMIT else SLOT_LIMIT if q > 0.0 else -SLOT_LIMIT))
        cur = st[base + WEEK_SLOT]
        if q > cur:  # a new slot: the open one's mean against those one day and one week before it
            count = st[base + WEEK_COUNT]
            if count > 0.0:
                mean = st[base + WEEK_SUM] / count
                row = slot * width
                for lag, col in ((width // 7, WEEK_DAY), (width, WEEK_WEEK)):
                    back = cur - lag
                    at = row + int(back % width)
                    if ids[at] == back:
                        dm = mean - means[at]
                        st[base + col] += dm * dm
                        st[base + col + 1] += 1.0
                at = row + int(cur % width)
                means[at], ids[at] = mean, cur
            st[base + WEEK_SLOT], st[base + WEEK_SUM], st[base + WEEK_COUNT] = q, 0.0, 0.0
        st[base + WEEK_SUM] += x
        st[base + WEEK_COUNT] += 1.0
        row = slot * width + int(q % width)  # the time-of-week bucket: the slot's number mod 7 x buckets
        cnt, s1, s2 = self._week.stats(row)
        pairs = st[base + WEEK_WEEK + 1]
        if pairs >= MIN_WEEKS * width and cnt >= SEASON_MIN:
            days = st[base + WEEK_DAY + 1]
            if st[base + WEEK_WEEK] / (pairs if pairs > 1.0 else 1.0) < rho * st[base + WEEK_DAY] / (
                    days if days > 1.0 else 1.0):
                mean = s1 / cnt
                var = s2 / cnt - mean * mean
                scale = floor
                if var > scale * scale:
                    scale = sqrt(var)
                zw = abs(x - mean) / scale if scale > 0.0 else 0.0
                if zw < z:
                    z = zw
        self._week.push(row, x)
        return z

    # ------------------------------------------------------------------ block path
    def update_series(self, series: str, values: npt.ArrayLike, times: npt.ArrayLike) -> F64:
        """Feed many samples of one series, in time order; scores as :meth:`update` would give.

        Returns an array like ``values`` with NaN where :meth:`update` returns ``None``. Raises
        ``TypeError`` / ``ValueError`` as :meth:`update_many` does (``ValueError`` naming both lengths when
        ``values`` and ``times`` differ in length).
        """
        _check_series(series)
        vals = _floats("values", values)
        if vals.ndim != 1:
            raise ValueError(f"values must be 1-D, got shape {vals.shape}")
        ts = _floats("times", times)
        if ts.ndim == 1 and ts.size != vals.size:  # update_many's message would name shapes not given here
            raise ValueError(f"values and times must have the same length, got {vals.size} values and {ts.size} times")
        out: F64 = self.update_many([series], vals[None, :], ts)[0]
        return out

    def update_many(self, series: Sequence[str], values: npt.ArrayLike, times: npt.ArrayLike) -> F64:
        """Feed a block: ``values[i, j]`` is the sample of ``series[i]`` at ``times[j]``.

        Vectorized over series and time; equivalent to calling :meth:`update` column by column (the same state; scores
        to ~1e-6, as the block engines interpolate the score function from a table where :meth:`update` evaluates it).
        ``series`` must be distinct and at most ``config.max_series`` (more could not all be tracked at once). Returns
        scores shaped like ``values`` (NaN for warm-up and NaN/inf inputs; the masked items of a numpy masked array
        count as NaN). Raises, before changing any state, ``TypeError`` unless ``series`` is a sequence of str
        (an empty one a ``ValueError``; names new to the detector are checked) and ``values`` / ``times`` are arrays
        of real numbers (strings and None refused, as :meth:`update` refuses them), ``ValueError`` on mismatched
        shapes, numbers beyond any float, non-finite times or too many series. Thread-safe (calls take turns).
        """
        with self._lock:
            return self._update_many(series, values, times)

    def _update_many(self, series: Sequence[str], values: npt.ArrayLike, times: npt.ArrayLike) -> F64:
        """:meth:`update_many` under the lock."""
        if (isinstance(series, (str, bytes)) or not isinstance(series, (Sequence, np.ndarray))
                or getattr(series, "ndim", None) == 0):  # a 0-d array has no len(): "len() of unsized object"
            raise TypeError(f"series must be a sequence of series names (non-empty str), got {brief(series)}")
        vals = _floats("values", values)
        ts = _floats("times", times)
        if ts.ndim != 1:  # (the shape message below would blame the values)
            raise ValueError(f"times must be 1-D, got shape {ts.shape}")
        if vals.ndim != 2 or vals.shape[0] != len(series) or ts.shape != (vals.shape[1],):
            raise ValueError(
                f"values must have shape (len(series), len(times)) = ({len(series)}, {ts.size}),"
                f" got {vals.shape}"
            )
        if not np.isfinite(ts).all():
            raise ValueError("times must be finite numbers of seconds")
        if len(series) > self._config.max_series:  # they would evict each other within the block
            raise ValueError(f"{len(series)} series in one update_many call, more than max_series "
                             f"({self._config.max_series})")
        if vals.size == 0:
            for name in series:
                _check_series(name)
            _distinct(series)
            empty: F64 = np.full(vals.shape, np.nan)
            return empty
        key = series if isinstance(series, tuple) else tuple(series)
        dead = self._new_without_values(key, vals)
        if dead is not None:  # as update(): a new series with nothing but NaN/inf takes no slot
            _distinct(key)
            self._ignored += int(dead.sum()) * vals.shape[1]
            out: F64 = np.full(vals.shape, np.nan)
            live = ~dead
            if live.any():
                out[live] = self._update_many([name for name, d in zip(key, dead, strict=True) if not d],
                                             vals[live], ts)
            return out
        slots = self._slots_of(key, vals)
        if slots.size and slots.min() < 0:  # rare: a series of the block that update() would not track (_slots_of)
            live = slots >= 0
            self._ignored += int((~live).sum()) * vals.shape[1]
            out = np.full(vals.shape, np.nan)
            if live.any():
                out[live] = self._score(slots[live], vals[live], ts)
            return out
        return self._score(slots, vals, ts)

    def _score(self, slots: I64, vals: F64, ts: F64) -> F64:
        """Score ``vals`` (rows of series ``slots``) at ``ts`` on the block engine; the numpy engine takes a block
        longer than ``_engine_numpy.PIECE`` columns as consecutive calls of that many (the same scores)."""
        kernel = self._compiled_kernel()
        if kernel is not None:
            return score_compiled(self, kernel, slots, vals, ts)
        if vals.shape[1] <= PIECE:
            return self._score_piece(slots, vals, ts)
        out = np.empty(vals.shape)
        for lo in range(0, vals.shape[1], PIECE):
            out[:, lo : lo + PIECE] = self._score_piece(slots, vals[:, lo : lo + PIECE], ts[lo : lo + PIECE])
        return out

    def _score_piece(self, slots: I64, vals: F64, ts: F64) -> F64:
        """:meth:`_score` on the numpy engine, for at most ``PIECE`` columns."""
        finite = np.isfinite(vals)
        clean = finite.all(axis=1)
        if clean.all():
            return score_block(self, slots, vals, ts)
        out = np.full(vals.shape, np.nan)
        if clean.any():
            out[clean] = score_block(self, slots[clean], vals[clean], ts)
        for i in np.flatnonzero(~clean):  # rare: compress each row on its own
            keep = finite[i]
            self._ignored += int(keep.size - keep.sum())
            if keep.any():
                out[i, keep] = score_block(self, slots[i : i + 1], vals[i : i + 1, keep], ts[keep])[0]
        return out

    def _new_without_values(self, series: tuple[str, ...], vals: F64) -> npt.NDArray[np.bool_] | None:
        """Rows of untracked series with no finite value, or ``None`` if there are none."""
        if series == self._last_key:  # the previous block's series: all tracked
            return None
        known = self._slots
        try:
            new = [i for i, name in enumerate(series) if name not in known]
        except TypeError:  # an unhashable name
            new = list(range(len(series)))
        if not new:
            return None
        for i in new:  # before any state changes: _slots_of allocates them
            _check_series(series[i])
        dead = np.zeros(len(series), dtype=bool)
        dead[new] = ~np.isfinite(vals[new]).any(axis=1)
        return dead if dead.any() else None

    def _slots_of(self, key: tuple[str, ...], vals: F64) -> I64:
        """:meth:`_slot` of each series in ``key`` (rows of ``vals``), after checking they are distinct, taken
        in the order :meth:`update` column by column takes them: a known series and a new one with a first value
        in row order, then each new series whose first value is missing at its first finite one (taken at the
        start, such a series evicted a tracked series of the block that update() refreshes before it takes one).

        When all are known this is one C-level pass, and ascending slots prove distinctness;
        repeating the previous block's series costs one tuple comparison.
        """
        if key == self._last_key:  # the previous block's series, and no other touched since:
            return self._last_slots  # they are already the most recent, in this order
        known = self._slots
        try:
            slots = np.fromiter(map(known.__getitem__, key), dtype=np.int64, count=len(key))
        except KeyError:
            _distinct(key)
            present = np.isfinite(vals[:, 0])
            if present.all():  # the usual case: every series takes its slot in row order, in one C-level pass
                slots = np.fromiter(map(self._slot, key), dtype=np.int64, count=len(key))
            else:
                slots = self._slots_missing_first(key, vals, present)
                if slots.min() < 0:
                    self._last_key = None
                    return slots
        else:
            if len(slots) > 1 and not (slots[1:] > slots[:-1]).all():
                _distinct(key)
            deque(map(known.move_to_end, key), maxlen=0)  # the same LRU order as _slot
        self._last_key = key
        self._last_slots = slots
        return slots


    def _slots_missing_first(self, key: tuple[str, ...], vals: F64, present: npt.NDArray[np.bool_]) -> I64:
        """:meth:`_slots_of` of a block some of whose first values are missing (``present`` false): a series that
        is tracked when its row is reached, or has a first value, takes its slot in row order; each other one at
        its first finite value, as :meth:`update` column by column would, or none (-1) without any: a tracked
        series a new one before it evicted, which update() leaves untracked."""
        known = self._slots
        slots = np.empty(len(key), dtype=np.int64)
        late = []
        for i, name in enumerate(key):
            if present[i] or name in known:
                slots[i] = self._slot(name)
            else:
                late.append(i)
        if late:
            finite = np.isfinite(vals[late])
            first = np.where(finite.any(axis=1), finite.argmax(axis=1), vals.shape[1])
            for i in np.asarray(late)[np.argsort(first, kind="stable")].tolist():
                slots[i] = self._slot(key[i]) if np.isfinite(vals[i]).any() else -1
            deque(map(known.move_to_end, [name for name in key if name in known]), maxlen=0)  # the rows' order
        return slots

def _check_series(series: object) -> None:
    if not isinstance(series, str) or not series:
        raise empty_or_not_str(series)(f"series must be a non-empty str, got {brief(series)}")


# A Python complex, or numpy's (np.complex64 is no subclass of complex): update() refuses both.
_COMPLEX = (complex, np.complexfloating)
_MASKED: object = np.ma.masked  # a singleton: every masked item of a masked array


def _update_error(series: object, value: object, time: object) -> Exception:
    """The error of an :meth:`AnomalyDetector.update` whose arguments Python itself refused."""
    try:
        hash(series)
    except TypeError:
        return TypeError(f"series must be a non-empty str, got {brief(series)}")
    for name, x in (("value", value), ("time", time)):
        if isinstance(x, _COMPLEX):
            return TypeError(f"{name} must be a real number (float), got {shown(x)}")
        try:
            isfinite(x)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # ValueError: a signaling NaN (Decimal("sNaN")), which float() refuses
            return TypeError(f"{name} must be a real number (float), got {shown(x)}")
        except OverflowError:
            return ValueError(f"{name} must be a real number within the range of a float, got {shown(x)}")
    return TypeError(  # pragma: no cover
        f"bad arguments: series={brief(series)}, value={brief(value)}, time={brief(time)}")


def _floats(name: str, values: npt.ArrayLike) -> F64:
    """``values`` as a float64 array; TypeError naming ``name`` when they are not real numbers (as
    :meth:`AnomalyDetector.update` refuses them: numpy would parse ``"1.5"``, make ``None`` NaN and drop an
    imaginary part with only a warning), ValueError for a ragged nesting or a number beyond any float.
    A message shows the first refused item, never all of them: a list of a million datetimes made a 37 MB
    message, and an int over 4,300 digits made repr() raise in place of the message."""
    try:
        raw = np.asarray(values)
    except ValueError as exc:  # a ragged nesting: "setting an array element with a sequence"
        raise ValueError(f"{name} must be a rectangular array of real numbers, got {_brief(values)}") from exc
    kind = raw.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be an array of real numbers, got complex values ({_brief(values)})")
    if kind == "O":
        refused = next((at for at, x in enumerate(raw.flat) if not _real(x)), None)
        if refused is not None:
            raise TypeError(f"{name} must be an array of real numbers, got {_item(values, raw, refused)}")
    elif kind not in "biuf":  # strings, bytes, datetimes...
        what = _brief(values) if isinstance(values, np.ndarray) else f"{_brief(values)} (an array of {raw.dtype})"
        hint = ": convert them to seconds as floats first" if kind in "Mm" else ""
        raise TypeError(f"{name} must be an array of real numbers, got {what}{hint}")
    try:
        if kind in "biu" or raw.dtype.itemsize <= 8:  # cannot overflow (float64 itself: no copy); errstate costs ~2 us
            out: F64 = raw.astype(np.float64, copy=False)
        else:
            with np.errstate(over="ignore"):  # a longdouble beyond any float: inf, refused below
                out = raw.astype(np.float64, copy=False)
    except OverflowError:  # an int beyond any float
        at = next((at for at, x in enumerate(raw.flat) if _overflows(x)), 0)
        raise ValueError(
            f"{name} must be real numbers within the range of a float, got {_item(values, raw, at)}") from None
    except (TypeError, ValueError) as exc:  # an object whose __float__ fails
        raise TypeError(f"{name} must be an array of real numbers, got {_brief(values)}") from exc
    if isinstance(values, np.ma.MaskedArray) and np.ma.is_masked(values):  # np.asarray() keeps what is masked
        out = np.where(np.ma.getmaskarray(values), np.nan, out)  # missing: NaN, as update() takes np.ma.masked
    if kind == "O" or (kind == "f" and raw.dtype.itemsize > 8):  # items a float may not hold: Decimal, longdouble
        beyond = next((int(at) for at in np.flatnonzero(np.isinf(out)) if _beyond_float(raw.flat[at])), None)
        if beyond is not None:  # not an infinity: taken as one, it was skipped as missing where update() refuses it
            raise ValueError(
                f"{name} must be real numbers within the range of a float, got {_item(values, raw, beyond)}")
    return out


def _beyond_float(x: object) -> bool:
    """Whether ``x``, a number ``math.isfinite`` read as not finite, is finite in its own type (a Decimal, a numpy
    longdouble) but beyond any float: float() makes it an infinity. NaN, the infinities and numpy's masked
    constant are not."""
    try:
        return bool(x == x) and abs(x) != math.inf  # type: ignore[arg-type]
    except (TypeError, ValueError, ArithmeticError):
        return False


def _overflows(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
    except OverflowError:
        return True
    except (TypeError, ValueError):
        return False
    return False


def _item(values: object, raw: npt.NDArray[np.generic], at: int) -> str:
    """Flat item ``at`` of ``raw`` (``values`` as an array) and where it is, for an error message."""
    if raw.size == 0:
        return _brief(values)
    text = shown(raw.flat[at])
    text = text if len(text) <= 80 else f"{text[:77]}..."
    if raw.ndim == 0:
        return text
    where = ", ".join(str(int(i)) for i in np.unravel_index(at, raw.shape))
    return f"{text} at index {where} of {_brief(values)}"


def _brief(values: object) -> str:
    """What ``values`` is in a few words (type, dtype and shape, or length), for an error message."""
    if isinstance(values, np.ndarray):
        return f"an array of dtype {values.dtype} and shape {values.shape}"
    try:
        return f"a {type(values).__name__} of length {len(values)}"  # type: ignore[arg-type]
    except TypeError:
        return f"a {type(values).__name__}"


def _real(x: object) -> bool:
    """A number :meth:`AnomalyDetector.update` takes (``math.isfinite`` accepts it), not a str, None or
    complex (numpy's complex scalars convert to float with only a warning, dropping the imaginary part)."""
    if isinstance(x, (str, bytes, complex, np.complexfloating)):
        return False
    try:
        isfinite(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # ValueError: a signaling NaN (Decimal("sNaN")), which float() refuses
        return False
    except OverflowError:  # an int beyond any float: refused by astype, as update refuses it
        return True
    return True


def _distinct(series: Sequence[str]) -> None:
    if len(set(series)) != len(series):
        raise ValueError("series must be distinct within one update_many call")


def _deviation(x: float, cnt: float, s1: float, s2: float, floor: float) -> float:
    """|x - mean| in standard deviations of a ring's running sums (the deviation never below ``floor``);
    0 until the ring holds SEASON_MIN values. The seasonal and the step channel share it."""
    if cnt < SEASON_MIN:
        return 0.0
    mean = s1 / cnt
    var = s2 / cnt - mean * mean
    scale = floor
    if var > scale * scale:
        scale = sqrt(var)
    return abs(x - mean) / scale if scale > 0.0 else 0.0
