"""The detector's immutable configuration; every instance is validated when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .._telemetry import Severity
from .._validate import builtin_numbers, other_number, shown


def _float_sized(value: float) -> bool:
    """Whether ``value`` (an int or a float) is within the float range the detector computes in
    (``float(10**400)`` raises OverflowError, which escaped instead of an error naming the field)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


_RANGES: dict[str, tuple[float, float, bool]] = {  # name: (low, high, low bound exclusive)
    "window": (3, 100_000, False),
    "buckets": (1, 10_080, False),
    "period_s": (0.0, 1e12, True),  # finite: time % period must place every time in a bucket
    "steps": (3, 100_000, False),
    "noise_floor": (0.0, 1.0, False),
    "sharpness": (0.0, 10.0, True),
    "average": (1, 10_000, False),
    "level": (0, 10_000, False),
    "level_sides": (1, 2, False),
    "level_clip": (0.0, 100.0, True),
    "history_rate": (0.0, 0.5, True),
    "range_rate": (0.0, 0.5, False),
    "min_history": (1, 10**9, False),
    "refractory": (1, 10**9, False),
    "spatial_tolerance": (0.0, math.inf, False),
    "max_series": (1, 10**7, False),
    "warning": (0.0, 1.0, True),
    "critical": (0.0, 1.0, True),
    "weekly_rho": (0.0, 1.0, True),  # or None (off)
}
_INTS = frozenset({"window", "buckets", "steps", "average", "level", "level_sides", "min_history", "refractory",
                   "max_series"})


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """How :class:`AnomalyDetector` scores; one config may serve many detectors.

    The defaults are the single global configuration measured on NAB (``python -m benchmarks
    nab``); none of them is tuned per series.

    * ``window``: values kept per seasonal bucket; their mean and spread are "normal".
    * ``buckets`` / ``period_s``: the period (default one day) is split into this many
      buckets by time of the sample, so a daily pattern is compared hour with hour (a sample at ``time`` is in
      bucket ``floor(time / (period_s / buckets)) mod buckets``: epoch-aligned, UTC for epoch seconds).
      ``buckets=1`` turns the seasonal profile off (a plain sliding window).
    * ``steps``: recent steps (differences between consecutive values) kept per series; a
      step far outside their spread is surprising whatever the level (a jump, a level shift).
    * ``noise_floor``: the spread is never taken as less than this fraction of the range seen,
      so quantized or flat metrics do not turn every step into an infinite z-score. At 0 the spread of a window
      of equal values is its rounding error, which the numpy engine's windowed sums round otherwise than the
      other paths: a different value after such a window may score up to ~1 there and ~0.03 on them.
    * ``range_rate``: how fast the noise floor's range forgets. The floor's range is the range of all values
      seen, capped at 10 x a forgetting range whose ends follow an envelope
      decaying toward the values (max = max(x, (1 - range_rate) x max + range_rate x x), min alike): a single
      outlier of k spreads, which widened the floor for good (and hid every later shift), widens it for about
      ln(k / recent range) / range_rate samples (~3,000 for k = 1e3, ~6,500 for 1e6 at the default 0.002),
      after which the floor is at most ``noise_floor`` x 10 x the recent range (below the spread of noisy
      series, 10x its old value for flat ones); a series' usual range (within 10x its recent one) floors it
      as before; over a long flat stretch the forgetting range shrinks toward 0, but the floor it caps is never
      taken below 1e-9 of the values' magnitude (the series' first value plus the
      range's larger end): rounding is no spread. 0: the range of all values (never forgotten). The range rule
      (``spatial_tolerance``) keeps the range of all values seen.
    * ``sharpness``: the raw surprise of a z-score is (1 - exp(-z^2 / 8)) ** sharpness: above 1,
      small deviations count for less against large ones in the recent mean.
    * ``average``: samples in the recent mean of raw surprise.
    * ``level``: samples in the level window (0 turns it off): each value's deviation from the
      series' long-run (exponentially weighted) mean, in long-run standard deviations clipped to
      +-``level_clip``, is summed over this many samples; a sum beyond what chance gives (sum / sqrt(count),
      scored like the averaged surprise) flags a sustained shift that the per-sample z-scores
      adapt to before it is certain (they are compared with recent values only).
    * ``level_clip``: the most standard deviations one value counts for in the level window (a
      single outlier or a short burst moves the sum by at most this).
    * ``level_sides``: 2 (default) counts a sustained shift either way, 1 only a rise (a sum above
      zero): for signals where only one direction is harmful (latency, error and retry rates), a
      fall is good news, and one-sided the same threshold raises half the false events of noise.
    * ``history_rate``: weight of each sample in the long-run surprise distribution
      (exponential; 0.003 remembers roughly the last 300-1000 samples).
    * ``min_history``: samples a series needs before it is scored (warm-up).
    * ``refractory``: a detection (a score from ``warning`` up, or a value beyond the range) is demoted
      (scores ~0.3, or just below ``warning`` when that is lower: never an anomaly) directly after a detection of
      its series and within this many samples after a critical one (from ``critical`` up, or a value beyond the
      range), so one event reports once; a warning never mutes a later critical detection, nor does a warm-up
      sample any. 1: only directly after one. (A ``warning`` at most ~0.03, the least score, reports every
      sample: only values beyond the range count as detections then, demoted to that least score.)
    * ``spatial_tolerance``: a value beyond the range seen so far by more than this fraction
      of it (plus 1e-9 of the range's larger end, in magnitude: rounding is not a new value) scores 1.0
      (demoted as ``refractory`` says); ``math.inf`` turns this off.
    * ``max_series``: series tracked at once; the least recently updated one is evicted. Their state is
      reserved when the detector is built, 8 x (buckets x (window + 4) + steps + average + max(level, 1) + 26)
      bytes a series (each window keeps 4 numbers beside its values; 7.6 kB with the defaults: 10^5 series take
      ~0.76 GB once fed, 10^7 a MemoryError; 8 x (7 x buckets x (window + 6) + 7) bytes, 48 kB, more with
      ``weekly_rho``). The series' names are kept besides (a name's own size is the caller's).
    * ``warning`` / ``critical``: score thresholds of the two severities an ``Anomaly`` reports (its
      ``severity``, ``"warning"`` or ``"critical"``).
    * ``weekly_rho`` (opt-in, ``None`` = off, the default): a time-of-week profile beside the daily one
      (7 x ``buckets`` buckets of ``window`` values over 7 x ``period_s``); once a series shows a weekly
      cycle, its seasonal z-score is the smaller of the two (a value unusual for the hour of the day but usual
      for the hour of the week, a quiet weekend hour say, is not surprising). The test is causal and per
      series: over the means of the bucket-long slots seen so far (``period_s / buckets`` each), the mean
      squared difference between slots one week apart must be below ``weekly_rho`` x the one between slots one
      day apart, with at least two weeks of week-apart pairs (so never before the series' third week). A number
      in (0, 1]: smaller asks for a stronger weekly cycle. On NAB's three real categories 0.9 scores 70.29
      (69.75 off), but it loses on a held-out category when made the default (docs/benchmarks.md, ninth pass).
      It costs 7x the seasonal state (~8 x 7 x ``buckets`` x (``window`` + 6) bytes more a series: 48 kB with
      the defaults) and a second ring push and z-score per sample: one-sample calls ~20% slower, the numpy engine's
      blocks of one series ~3x slower (the test is sequential in time: its pass runs sample by sample), the numba
      engine's ~20% (one series) to ~45% (ticks of 1,000 series).

    Raises ``ValueError`` naming the parameter and its allowed range.
    """

    window: int = 30
    buckets: int = 24
    period_s: float = 86_400.0
    steps: int = 100
    noise_floor: float = 0.01
    sharpness: float = 2.0
    average: int = 10
    level: int = 0
    level_sides: int = 2
    level_clip: float = 3.0
    history_rate: float = 0.003
    min_history: int = 200
    refractory: int = 10
    spatial_tolerance: float = 0.02
    max_series: int = 1000
    warning: float = 0.5
    critical: float = 0.8
    range_rate: float = 0.002  # last: the fields before it keep their positions
    weekly_rho: float | None = None  # after range_rate, for the same reason


    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "weekly_rho":  # off
                continue
            lo, hi, open_low = _RANGES[f.name]
            if f.name in _INTS:
                ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
                want = f"an int in [{lo}, {hi}]"
            else:
                ok = (
                    isinstance(value, (int, float)) and not isinstance(value, bool)
                    and value == value and (lo < value if open_low else lo <= value) and value <= hi
                    and _float_sized(value)
                )
                want = f"a number in {'(' if open_low else '['}{lo}, {hi}]"
                if f.name == "weekly_rho":
                    want += " or None"
            if not ok:  # a numpy scalar, Decimal or Fraction is said to be one: "got np.float32(0.5)" read as in range
                hint = other_number(value, integer=f.name in _INTS)
                raise ValueError(f"DetectorConfig.{f.name} must be {want}{hint}, got {shown(value)}")
        builtin_numbers(self, *(f.name for f in fields(self)))  # np.float64 computes as a float from here on
        for f in fields(self):  # an int given for a float (spatial_tolerance=10**30): the numba engine types its
            value = getattr(self, f.name)  # arguments, and refused an int beyond int64 (a TypingError per block)
            if f.name not in _INTS and type(value) is int:
                object.__setattr__(self, f.name, float(value))
        if self.critical < self.warning:
            raise ValueError(
                f"DetectorConfig.critical must be >= warning ({self.warning}), got {self.critical!r}"
            )

    def severity(self, score: float) -> Severity | None:
        """The severity band of a score, or ``None`` below ``warning``.

        Raises ``TypeError`` unless ``score`` is a real number, ``ValueError`` outside [0, 1] (NaN included) or
        for a bool.
        """
        try:
            valid = 0.0 <= score <= 1.0  # False for NaN
        except TypeError:
            raise TypeError(f"score must be a number in [0, 1], got {shown(score)}") from None
        except ValueError:  # numpy: "the truth value of an array with more than one element is ambiguous"
            if not isinstance(score, np.ndarray):
                raise
            raise TypeError(f"score must be a number in [0, 1], got {shown(score)}") from None
        except ArithmeticError:  # Decimal("NaN") refuses to be compared (InvalidOperation): a NaN
            valid = False
        # numpy compares its complex numbers and one-item arrays where Python refuses to: no scores either
        if isinstance(score, np.complexfloating) or (isinstance(score, np.ndarray) and score.ndim):
            raise TypeError(f"score must be a number in [0, 1], got {shown(score)}")
        if not valid or isinstance(score, (bool, np.bool_)):
            raise ValueError(f"score must be a number in [0, 1], got {shown(score)}")
        if score >= self.critical:
            return Severity.CRITICAL
        if score >= self.warning:
            return Severity.WARNING
        return None


# The anomaly hook's defaults (``AnomalyHook``): it watches per-tick aggregates of one process, not
# NAB's curated series, and its events page people. Chosen with ``python -m benchmarks alarms``
# (simulated services: lognormal latency, daily drift, short bursts, single slow tasks):
# * no daily profile (buckets=1: a 30-tick sliding window adapts to slow changes), a short warm-up;
# * the level window (6 ticks) against a long-run mean that follows the daily drift (history_rate
#   0.01: about 100 ticks) finds sustained shifts (latency x2, error rate 1% -> 10%, retry rate x3)
#   within about 5 ticks, where the per-tick z-scores adapt before they are sure;
# * warning at 0.8 (p = 1e-8 per tick) and the range rule only for values beyond twice the range
#   seen: at NAB's 0.5 and 2% the hook raised ~2 false events per series-day, here 0-0.02;
# * sharpness 1: NAB's 2 sharpens the likelihood of noisy tick aggregates into ~1.6 false events a day;
# * average 20: a 1-3 tick burst of traffic moves the recent mean of surprise half as much as with 10 (the
#   false events left were such bursts on throughput); sustained shifts are the level window's to find;
# * the level window one-sided (level_sides=1: the hook feeds every signal so that harm is a rise, throughput
#   negated) with each tick counting up to 4.5 standard deviations (level_clip): a retry rate x3 (~4.5 sd a
#   tick at 100 calls) is found within 6 ticks in 97.5% of runs (clip 3: 77.5%, it needs 5 ticks at the clip);
#   two-sided, a clip of 4 flagged 2x traffic bursts on throughput (0.26 false events per series-day, seed 1),
#   one-sided they are good news; with the hook's winsorized tick mean of latency (_ticks) 0.0-0.03 remain
#   over three seeds, and every shift is found within 6 ticks in >= 95% of runs.
# * refractory as the detector's default (10): repeats within 10 ticks of a critical event are demoted (measured
#   with it: 0.0 false events per series-day and 100% of shifts within 6 ticks, --quick).
HOOK_DEFAULTS = DetectorConfig(buckets=1, min_history=30, spatial_tolerance=2.0, level=6, level_sides=1,
                               level_clip=4.5, history_rate=0.01, sharpness=1.0, average=20, warning=0.8,
                               critical=0.95)
