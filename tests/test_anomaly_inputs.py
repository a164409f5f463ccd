"""The detector's inputs as a numpy user gives them: shapes and dtypes (int8 ... uint64, float16/32, bool,
object, lists, views, read-only arrays, numpy scalars, datetimes), numbers beyond any float, complex and
ragged blocks, every engine and chunking on odd series (constant runs then a step, 0 / huge, denormals,
values near the float limits, leading NaNs), threads feeding one detector, and its configuration's numbers."""

from __future__ import annotations

import datetime as dt
import math
import sys
import threading
import warnings
from decimal import Decimal
from fractions import Fraction
from typing import Any, cast

import numpy as np
import pytest
from _anomaly_paths import scalar

import shannon_otel as so
from shannon_otel import AnomalyDetector, DetectorConfig
from shannon_otel._telemetry import Severity

QUICK = DetectorConfig(min_history=5)
STEP = 60.0


# ---------------------------------------------------------------------- bug: block-path error messages
def test_a_refused_block_names_the_first_bad_item_not_the_whole_input() -> None:
    """The message held repr() of the whole input: 37 MB for a list of a million datetimes."""
    det: Any = AnomalyDetector()  # untyped: this passes what the annotations forbid on purpose
    when = [dt.datetime(2026, 1, 1)] * 100_000
    with pytest.raises(TypeError) as info:
        det.update_series("s", [1.0] * len(when), when)
    assert str(info.value) == ("times must be an array of real numbers, got datetime.datetime(2026, 1, 1, 0, 0) "
                               "at index 0 of a list of length 100000")
    with pytest.raises(TypeError, match=r"^values must be an array of real numbers, got None at index 1, 2 of a list"):
        det.update_many(["a", "b"], [[1.0, 2.0, 3.0], [1.0, 2.0, None]], [0.0, 1.0, 2.0])
    # numpy's datetimes and strings: refused by dtype, with what to do for datetimes
    stamps = np.datetime64("2026-01-01T00:00:00") + np.arange(100_000) * np.timedelta64(1, "m")
    with pytest.raises(TypeError) as info:
        det.update_series("s", np.ones(len(stamps)), stamps)
    assert str(info.value) == ("times must be an array of real numbers, got an array of dtype datetime64[s] and "
                               "shape (100000,): convert them to seconds as floats first")
    with pytest.raises(TypeError, match=r"^values must be an array of real numbers, got a list of length 3 \(an array"):
        det.update_series("s", ["1", "2", "3"], [0.0, 1.0, 2.0])
    assert det.stats.series == 0


def test_an_int_beyond_any_float_in_a_block_is_refused_naming_the_parameter() -> None:
    """repr() of a list holding an int over 4,300 digits raised "Exceeds the limit (4300 digits) for integer
    string conversion" in place of the message, a ValueError that named no parameter."""
    det = AnomalyDetector()
    with pytest.raises(ValueError, match=r"^values must be real numbers within the range of a float, got an int of "
                                         r"16610 bits at index 1 of a list of length 2$"):
        det.update_series("s", [1, 10**5000], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"^times must be real numbers within the range of a float, got an int of "
                                         r"16610 bits at index 0 of a list of length 1$"):
        det.update_many(["s"], [[1.0]], [10**5000])
    assert det.stats.series == 0


def test_a_ragged_block_is_refused_naming_the_parameter() -> None:
    """numpy's bare "setting an array element with a sequence..." came out, naming nothing."""
    det = AnomalyDetector()
    with pytest.raises(ValueError, match=r"^values must be a rectangular array of real numbers, got a list of len"):
        det.update_many(["a", "b"], [[1.0, 2.0], [1.0]], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"^times must be a rectangular array"):
        det.update_series("s", [1.0, 2.0], [[0.0, 1.0], [2.0]])
    assert det.stats.series == 0


def test_two_dimensional_times_are_blamed_not_the_values() -> None:
    """The message said "values must have shape ... = (1, 300), got (1, 300)": the values were right."""
    det = AnomalyDetector()
    with pytest.raises(ValueError, match=r"^times must be 1-D, got shape \(1, 3\)$"):
        det.update_series("s", [1.0, 2.0, 3.0], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"^times must be 1-D, got shape \(\)$"):
        det.update_many(["s"], [[1.0]], 0.0)
    assert det.stats.series == 0


@pytest.mark.parametrize("number", [np.complex128(1 + 2j), np.complex64(3 + 0j)], ids=["complex128", "complex64"])
def test_numpy_complex_items_of_an_object_array_are_refused_like_python_complex(number: Any) -> None:
    """They were scored by their real part with only a ComplexWarning (an error under this suite's filters);
    a Python complex in the same place was refused (TypeError), as update() refuses one."""
    det = AnomalyDetector()
    values = np.array([1.0, number, 2.0], dtype=object)
    # the item's repr: np.complex128((1+2j)) on numpy 2, (1+2j) on numpy 1.26 (the lowest pyproject allows)
    item = r"(np\.complex\d+\(.*\)|\(.*j\))"
    refused = rf"^values must be an array of real numbers, got {item} at index 1 "
    with pytest.raises(TypeError, match=refused):
        det.update_series("s", values, [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match=rf"^times must be an array of real numbers, got {item}"):
        det.update_series("s", [1.0, 2.0], np.array([0.0, number], dtype=object))
    assert det.stats.series == 0


# bug: numpy's own complex scalars were converted to float with a ComplexWarning, dropping the imaginary
# part, inside math.isfinite on update()'s hot path; now refused like a Python complex (a type check only
# for a value or time that is not a float: ~40 ns of the ~3-5 us call).
@pytest.mark.parametrize("number", [1 + 2j, np.complex128(1 + 2j), np.complex64(1 + 2j), np.complex128(1.0)],
                         ids=["complex", "np.complex128", "np.complex64", "np.complex128-real"])
def test_update_refuses_a_numpy_complex_scalar_like_a_python_complex(number: Any) -> None:
    det, twin = AnomalyDetector(), AnomalyDetector()
    det.update("s", 1.0, 0.0)
    twin.update("s", 1.0, 0.0)
    with pytest.raises(TypeError, match=r"^value must be a real number \(float\), got "):
        det.update("s", number, 1.0)
    with pytest.raises(TypeError, match=r"^time must be a real number \(float\), got "):
        det.update("s", 1.0, number)
    with pytest.raises(TypeError, match=r"^value must be a real number \(float\), got "):
        det.update("new", number, 1.0)
    assert det.stats.series == 1  # the refused new series took no slot
    # nothing else changed either: fed the same real samples after (numpy's reals among them), both score alike
    samples: list[tuple[Any, Any]] = [(np.float32(2.0), np.int64(1)), *((float(k % 5), float(k)) for k in range(2, 80))]
    assert [det.update("s", v, t) for v, t in samples] == [twin.update("s", v, t) for v, t in samples]


# ---------------------------------------------------------------------- bug: severity() of numpy values
@pytest.mark.parametrize(
    ("score", "error"),
    [
        (np.True_, ValueError),  # a Python True was refused already
        (np.array([0.9]), TypeError),  # was critical: one score in an array is no number
        (np.array([0.9, 0.1]), TypeError),  # was numpy's "truth value of an array ... is ambiguous"
        (np.complex128(0.9), TypeError),  # was critical: numpy orders complex numbers; 0.9 + 0j refused
    ],
    ids=["np.bool_", "one-item-array", "array", "np.complex128"],
)
def test_severity_refuses_numpy_values_that_are_no_score(score: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^score must be a number in \[0, 1\], got "):
        DetectorConfig().severity(score)


def test_severity_takes_numpy_real_scores() -> None:
    config: Any = DetectorConfig()
    assert config.severity(np.float32(0.9)) is Severity.CRITICAL
    assert config.severity(np.array(0.6)) is Severity.WARNING  # a 0-d array goes through float() elsewhere too
    assert config.severity(np.int8(1)) is Severity.CRITICAL
    assert config.severity(np.float64(0.1)) is None


# ---------------------------------------------------------------------- checked: dtypes, views, the caller's arrays
def _noise(n: int = 300, seed: int = 0) -> np.ndarray:
    xs = np.random.default_rng(seed).normal(10.0, 1.0, n)
    xs[200] = 40.0
    return xs


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_equivalent_inputs_give_the_same_scores_and_the_callers_arrays_are_left_alone(engine: str) -> None:
    xs, ts = _noise(), np.arange(300) * STEP

    def run(values: Any, times: Any = ts) -> np.ndarray:
        return AnomalyDetector(QUICK, engine=engine).update_series("s", values, times)

    expected = run(xs)
    wide = np.repeat(xs, 2)
    frozen = xs.copy()
    frozen.flags.writeable = False
    for same in (wide[::2], frozen, xs.tolist(), xs.astype(object), xs.astype(np.longdouble)):
        assert np.array_equal(run(same), expected, equal_nan=True)
    assert np.array_equal(run(xs, ts.astype(np.int64)), expected, equal_nan=True)  # int seconds
    assert np.array_equal(run(xs, ts[::-1]), run(xs, ts[::-1].copy()), equal_nan=True)  # backwards times too
    # a float32 series is its float64 values: the same scores as those, and close to the unrounded ones
    single = xs.astype(np.float32)
    assert np.array_equal(run(single), run(single.astype(np.float64)), equal_nan=True)
    assert np.nanmax(np.abs(run(single) - expected)) < 1e-5
    counts = np.round(xs * 10).astype(np.int64)
    for dtype in (np.int8, np.int16, np.uint8, np.uint64):
        info = np.iinfo(dtype)
        cast = np.clip(counts, info.min, info.max).astype(dtype)
        assert np.array_equal(run(cast), run(cast.astype(np.float64)), equal_nan=True), dtype
    # the caller's arrays, also those with NaN rows and values beyond the clamp, come back untouched
    block = np.stack([xs, xs.copy(), np.full(300, np.nan)])
    block[1, [5, 6]] = [1e308, -1e308]
    times = np.random.default_rng(1).permutation(300) * STEP
    block0, times0 = block.copy(), times.copy()
    AnomalyDetector(QUICK, engine=engine).update_many(["a", "b", "c"], block, times)
    det = AnomalyDetector(QUICK, engine=engine)
    for j in range(300):
        det.update_many(["a", "b", "c"], block[:, j : j + 1], times[j : j + 1])
    assert np.array_equal(block, block0, equal_nan=True) and np.array_equal(times, times0)


def test_empty_and_one_sample_blocks() -> None:
    det = AnomalyDetector(QUICK)
    assert det.update_series("s", [], []).shape == (0,)
    assert det.update_many([], np.zeros((0, 4)), np.arange(4.0)).shape == (0, 4)
    assert det.stats.series == 0  # no sample: no series
    one = det.update_series("s", [1.0], [0.0])
    assert one.shape == (1,) and np.isnan(one[0])  # warming up
    with pytest.raises(ValueError, match=r"^values must be 1-D, got shape \(\)$"):
        det.update_series("s", np.float64(1.0), np.float64(0.0))


# ---------------------------------------------------------------------- checked: engines on odd series
def _odd_block(n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(3)
    rows = {
        "constant-then-step": np.r_[np.full(n - 100, 5.0), np.full(100, 6.0)],
        "zero-and-huge": np.resize([0.0, 1e300], n),
        "denormals": np.resize([1e-310, 2e-310, 0.0], n),
        "denormal-noise": rng.normal(0.0, 1.0, n) * 1e-310,
        "near-the-limits": np.resize([1e308, -1e308, 1.7e308, -1.7e308], n),
        "the-limit-then-noise": np.r_[[1.79e308], rng.normal(0.0, 1.0, n - 1)],
        "leading-nan": np.r_[np.full(n // 2, np.nan), rng.normal(10.0, 1.0, n - n // 2)],
        "leading-inf": np.r_[np.full(50, np.inf), np.full(50, -np.inf), rng.normal(10.0, 1.0, n - 100)],
        "signed-zeros": np.resize([0.0, -0.0], n),
        "quarters-on-1e15": 1e15 + np.arange(n) * 0.25,
        "step-beyond-the-clamp": np.r_[rng.normal(0.0, 1.0, n // 2), rng.normal(0.0, 1.0, n - n // 2) + 1e250],
    }
    return list(rows), np.stack(list(rows.values()))


@pytest.mark.parametrize("config", [QUICK, DetectorConfig(min_history=5, noise_floor=0.0, range_rate=0.0),
                                    DetectorConfig(buckets=1, min_history=5, level=6, level_sides=1, average=20)],
                         ids=["default", "no-floor", "level-window"])
@pytest.mark.parametrize("times", ["sorted", "shuffled", "epoch-quarter-seconds", "all-equal"])
def test_every_path_and_chunking_agrees_on_odd_series(config: DetectorConfig, times: str) -> None:
    n = 400
    names, block = _odd_block(n)
    ts = {"sorted": np.arange(n) * STEP, "shuffled": np.random.default_rng(4).permutation(n) * 97.0,
          "epoch-quarter-seconds": 1.7e9 + np.arange(n) * 0.25, "all-equal": np.zeros(n)}[times]
    streamed = AnomalyDetector(config)
    one = scalar(streamed, names, block, ts)
    assert ((one[~np.isnan(one)] >= 0.0) & (one[~np.isnan(one)] <= 1.0)).all()
    for engine in ("numpy", "numba"):
        paths: dict[str, np.ndarray] = {
            "block": AnomalyDetector(config, engine=engine).update_many(names, block, ts),
            "series": np.stack([AnomalyDetector(config, engine=engine).update_series(name, block[i], ts)
                                for i, name in enumerate(names)]),
        }
        for k in (1, 7, 150):
            det = AnomalyDetector(config, engine=engine)
            paths[f"chunks of {k}"] = np.concatenate([det.update_many(names, block[:, j : j + k], ts[j : j + k])
                                                      for j in range(0, n, k)], axis=1)
            assert det.stats == streamed.stats and det.series() == streamed.series()  # NaN/inf counted alike
        for path, got in paths.items():
            assert np.array_equal(np.isnan(got), np.isnan(one)), (engine, path)
            assert np.nanmax(np.abs(got - one)) < 1e-6, (engine, path)
    assert one[0, n - 100] == 1.0  # the step out of a constant run is beyond the range seen


@pytest.mark.parametrize("bad", [["1.5", "2"], [None, 1.0], [b"1", b"2"]])
def test_update_many_refuses_what_update_refuses(bad: list[Any]) -> None:
    """numpy parsed strings as numbers and made None NaN: ``update_series("s", ["1.5", ...])`` scored
    where ``update("s", "1.5", t)`` raises TypeError (the docs: "equivalent to calling update")."""
    det = AnomalyDetector(DetectorConfig(min_history=3))
    with pytest.raises(TypeError, match="values must be an array of real numbers"):
        det.update_series("s", bad, [0.0, 1.0])
    with pytest.raises(TypeError, match="times must be an array of real numbers"):
        det.update_series("s", [1.0, 2.0], bad)
    with pytest.raises(TypeError, match="value must be a real number"):
        det.update("s", bad[0], 0.0)
    assert det.stats.series == 0


def test_update_many_names_the_parameter_of_a_number_beyond_any_float() -> None:
    """It raised Python's bare ``OverflowError: int too large to convert to float``."""
    det = AnomalyDetector()
    with pytest.raises(ValueError, match="values must be real numbers within the range of a float"):
        det.update_series("s", [1, 10**400], [0.0, 1.0])
    with pytest.raises(ValueError, match="times must be real numbers within the range of a float"):
        det.update_many(["s"], [[1.0]], [10**400])
    # numbers update takes still pass: bools, numpy scalars, ints, Fractions
    numbers: list[Any] = [True, np.float32(2.5), 3, Fraction(1, 3)]
    scores = det.update_series("t", numbers, [0.0, 1.0, 2.0, 3.0])
    assert scores.shape == (4,)


@pytest.mark.parametrize("path", ["scalar", "numpy", "numba", "numpy-columns"])
def test_a_constant_series_one_ulp_off_is_not_an_anomaly(path: str) -> None:
    """A series constant at 0.1 for 300 samples, then 0.09999999999999999 (the same mean summed in another
    order, as the hook's tick means are) scored 1.0, critical: its range is zero, so the range rule's
    tolerance (spatial_tolerance x range) was zero too. The range rule now has a resolution floor
    (RANGE_RESOLUTION of the range's larger end) on every path; a real change still scores 1.0."""
    for later, anomalous in ((float(np.nextafter(0.1, 0.0)), False), (0.1 * (1 + 1e-12), False), (0.1001, True)):
        xs = np.array([0.1] * 300 + [later])
        ts = np.arange(301.0)
        if path == "scalar":
            det = AnomalyDetector()
            for t in range(300):
                det.update("s", 0.1, float(t))
            score = det.update("s", later, 300.0)
        elif path == "numpy-columns":  # one column per call after a block: the per-tick block path
            det = AnomalyDetector(engine="numpy")
            det.update_many(["s"], xs[None, :300], ts[:300])
            score = float(det.update_many(["s"], xs[None, 300:], ts[300:])[0, 0])
        else:
            score = float(AnomalyDetector(engine=path).update_series("s", xs, ts)[-1])
        assert score is not None
        assert (score >= DetectorConfig().critical) is anomalous, (later, score)


@pytest.mark.parametrize("path", ["scalar", "numpy", "numba", "numpy-columns"])
def test_a_one_ulp_step_after_a_long_flat_stretch_is_not_an_anomaly(path: str) -> None:
    """Noise, then 20,000 samples flat at 1234.5, then one ulp more for 3 samples. Before: the forgetting range of
    the noise floor (range_rate) shrank to ~0 over the flat stretch, so the ulp step was a z-score of ~1e10: 1.0,
    critical, on every path (the range rule already takes rounding for no new value). The floor's forgetting cap
    now stops at RANGE_RESOLUTION of the values' magnitude; a real change (0.1) still scores 1.0."""
    flat = 20_000
    for later, anomalous in ((float(np.nextafter(1234.5, 2000.0)), False), (1234.6, True)):
        noise = np.random.default_rng(0).normal(1234.5, 0.3, 500)
        xs = np.concatenate([noise, np.full(flat, 1234.5), [later] * 3])
        ts = np.arange(xs.size) * 60.0
        if path == "scalar":
            scores = scalar(AnomalyDetector(), ["s"], xs[None, :], ts)[0, -3:]
        elif path == "numpy-columns":  # one column per call after a block: the per-tick block path
            det = AnomalyDetector(engine="numpy")
            det.update_series("s", xs[:-3], ts[:-3])
            last = range(xs.size - 3, xs.size)
            scores = np.array([det.update_many(["s"], xs[None, j : j + 1], ts[j : j + 1])[0, 0] for j in last])
        else:
            scores = AnomalyDetector(engine=path).update_series("s", xs, ts)[-3:]
        assert bool(scores.max() >= DetectorConfig().critical) is anomalous, (later, scores)


def test_threads_feeding_one_detector_never_share_a_slot() -> None:
    """Updates from four threads interleaved inside the series registry: two series ended up in one slot
    (each scoring against the other's history from then on) and the detector tracked more than
    ``max_series`` (52 of 50 measured), all silently."""
    det = AnomalyDetector(DetectorConfig(max_series=20, min_history=5), engine="numpy")
    errors: list[BaseException] = []

    def feed(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            for i in range(500):
                names = list(dict.fromkeys(f"s{(i * 5 + j + k * 13) % 90}" for j in range(5)))
                if i % 2:
                    det.update_many(names, rng.normal(size=(len(names), 3)), np.arange(3.0) + i)
                else:
                    det.update(names[0], float(rng.normal()), float(i))
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: the race shows every run
    try:
        threads = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    slots = list(det._slots.values())
    assert len(slots) == len(set(slots)) <= 20


_DETECTOR_FLOATS = ["period_s", "noise_floor", "sharpness", "level_clip", "history_rate", "spatial_tolerance",
                    "warning", "critical", "range_rate", "weekly_rho"]


@pytest.mark.parametrize("field", _DETECTOR_FLOATS)
@pytest.mark.parametrize("huge", [10**400, 10**5000], ids=["1e400", "1e5000"])
def test_an_int_beyond_the_float_range_is_refused_by_detector_config_naming_the_field(field: str, huge: int) -> None:
    """Before: OverflowError "int too large to convert to float" (10**5000: str() of it raised too)."""
    with pytest.raises(ValueError, match=rf"^DetectorConfig\.{field} must be a number in .* got an int of \d+ bits"):
        so.DetectorConfig(**{field: huge})


def test_an_int_beyond_the_float_range_is_refused_as_a_tick_naming_tick_s() -> None:
    with pytest.raises(ValueError, match=r"^tick_s must be a number in \(0, inf\), got an int of \d+ bits"):
        so.AnomalyHook(tick_s=10**400)
    assert so.AnomalyHook(tick_s=10**6).tick_s == 1e6  # a big int the float range holds is still a tick


@pytest.mark.parametrize(("name", "value"), [("tick_s", "10"), ("min_tick_tasks", 0), ("signals", {"nope"})])
def test_the_hook_settings_checked_at_construction_cannot_be_reassigned_unchecked(name: str, value: Any) -> None:
    """Before: ``hook.tick_s = "10"`` was taken, and every tick afterwards failed inside the hook (only logged)."""
    hook = so.AnomalyHook()
    before = getattr(hook, name)
    with pytest.raises(AttributeError):
        setattr(hook, name, value)
    assert getattr(hook, name) == before


def test_enabled_may_be_switched_at_run_time_but_only_to_a_bool() -> None:
    hook = so.AnomalyHook()
    with pytest.raises(TypeError, match=r"^enabled must be"):
        hook.enabled = "no"  # type: ignore[assignment]  # a truthy string would have kept it on
    assert hook.enabled is True
    hook.enabled = False
    assert hook.wave_started(so.WaveStarted("w", None, None, 0.0)) is None  # off: zero cost


def test_a_decimal_nan_score_is_a_value_error_like_a_float_nan() -> None:
    """Before: decimal.InvalidOperation escaped (a Decimal NaN refuses to be compared)."""
    config = so.DetectorConfig()
    nans: list[Any] = [math.nan, Decimal("NaN"), Decimal("sNaN")]
    for nan in nans:
        with pytest.raises(ValueError, match=r"^score must be a number in"):
            config.severity(nan)
    assert config.severity(Decimal("0.9")) is not None  # type: ignore[arg-type]  # a real Decimal in range is scored


# ---------------------------------------------------------------------- bug: times over a tiny bucket length
@pytest.mark.parametrize(("period_s", "time"), [(5e-324, 1.0), (1e-300, 1.7e9), (1e-9, 1e300), (1e-9, -1e300)],
                         ids=["bucket-length-underflows", "tiny-period", "huge-time", "huge-negative-time"])
@pytest.mark.parametrize("weekly_rho", [None, 0.9])
def test_a_time_whose_slot_number_is_beyond_any_float_is_scored_by_every_path(
        period_s: float, time: float, weekly_rho: float | None) -> None:
    """A finite time over a valid ``period_s``: update() raised ZeroDivisionError (5e-324 / 24 buckets is a
    bucket of 0 s) or OverflowError ("cannot convert float infinity to integer": time / bucket length beyond
    any float), so did the numpy engine, and numba put the sample in whatever bucket int(inf) gave. Such a time
    is in the last slot of its sign on every path."""
    config = DetectorConfig(period_s=period_s, min_history=3, weekly_rho=weekly_rho)
    values = np.array([[1.0, 2.0, 1.0, 2.0, 1.0, 9.0]])
    ts = time + np.arange(values.shape[1], dtype=float)
    one = scalar(AnomalyDetector(config), ["s"], values, ts)
    assert np.isnan(one[0, :2]).all() and ((one[0, 2:] >= 0.0) & (one[0, 2:] <= 1.0)).all()
    for engine in ("numpy", "numba"):
        block = AnomalyDetector(config, engine=engine)
        np.testing.assert_allclose(block.update_many(["s"], values, ts), one, atol=1e-9)
        ticks = AnomalyDetector(config, engine=engine)  # one sample a call: the numpy engine's tick path
        got = np.concatenate([ticks.update_many(["s"], values[:, j : j + 1], ts[j : j + 1])
                              for j in range(values.shape[1])], axis=1)
        np.testing.assert_allclose(got, one, atol=1e-9)


def test_a_signaling_nan_is_refused_naming_the_parameter_on_every_path() -> None:
    """``Decimal("sNaN")`` (which float() refuses) escaped every path as ValueError "cannot convert signaling NaN
    to float", naming no parameter; it is now refused as no real number, as update() refuses a str, and nothing
    changes."""
    det = AnomalyDetector(QUICK)
    snan: Any = Decimal("sNaN")
    with pytest.raises(TypeError, match=r"^value must be a real number \(float\), got Decimal\('sNaN'\)$"):
        det.update("s", snan, 0.0)
    with pytest.raises(TypeError, match=r"^time must be a real number \(float\), got Decimal\('sNaN'\)$"):
        det.update("s", 1.0, snan)
    refused = r"must be an array of real numbers, got Decimal\('sNaN'\) at index"
    with pytest.raises(TypeError, match=rf"^values {refused} 0, 1"):
        det.update_many(["s"], [[1.0, snan]], [0.0, 1.0])
    with pytest.raises(TypeError, match=rf"^times {refused} 1"):
        det.update_series("s", [1.0, 2.0], [0.0, snan])
    assert (det.stats.series, det.stats.ignored, det.series()) == (0, 0, [])


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_the_masked_items_of_a_masked_array_are_missing_samples(engine: str) -> None:
    """np.asarray() of a masked array keeps the data under its mask: a masked (missing) 1e6 was scored, 1.0, and
    became part of the series' range and windows. Masked items now count as NaN (ignored and counted), as
    update() takes ``np.ma.masked``; a masked time is refused like a NaN one."""
    rng = np.random.default_rng(5)
    block = rng.normal(10.0, 1.0, (2, 60))
    mask = np.zeros(block.shape, dtype=bool)
    mask[0, 30] = mask[1, 40:45] = True
    hidden = np.where(mask, 1e6, block)
    ts = np.arange(60) * STEP
    want = AnomalyDetector(QUICK, engine=engine)
    expected = want.update_many(["a", "b"], np.where(mask, np.nan, block), ts)
    got = AnomalyDetector(QUICK, engine=engine)
    np.testing.assert_array_equal(got.update_many(["a", "b"], np.ma.masked_array(hidden, mask=mask), ts), expected)
    assert got.stats == want.stats and got.stats.ignored == 6
    with pytest.raises(ValueError, match=r"^times must be finite numbers of seconds$"):
        got.update_series("a", [1.0, 2.0], np.ma.masked_array([1e6, 1e6 + STEP], mask=[False, True]))


def test_update_takes_numpys_masked_constant_as_missing_without_a_warning() -> None:
    """update() read ``np.ma.masked`` with isfinite(), whose float() warned "converting a masked element to nan"
    from inside the library (an error under ``-W error``); it is a missing sample, silently."""
    det, masked = AnomalyDetector(QUICK), cast("Any", np.ma.masked)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert det.update("s", masked, 0.0) is None  # a new series: takes no slot
        assert det.update("s", np.ma.masked_array([1.0], mask=[True])[0], 0.0) is None
        for i in range(3):
            det.update("s", float(i), i * STEP)
        assert det.update("s", masked, 3 * STEP) is None
        assert det.update("s", masked, masked) is None  # a missing value needs no time
        with pytest.raises(ValueError, match=r"^time must be a finite number of seconds, got masked$"):
            det.update("s", 1.0, masked)
    assert (det.stats.series, det.stats.ignored) == (1, 4)


# Bug: a series name, config, engine or hook argument of the wrong type was printed whole in its error: an int over
# 4,300 digits made repr() raise ValueError ("Exceeds the limit ... for integer string conversion") in place of the
# TypeError naming the parameter, and a list of a million items made an 8 MB message.
HUGE_INT, LONG_LIST = 10**5000, list(range(100_000))


@pytest.mark.parametrize("call", [
    lambda bad: AnomalyDetector().update(bad, 1.0, 1.0),
    lambda bad: AnomalyDetector().update_series(bad, [1.0], [1.0]),
    lambda bad: AnomalyDetector().update_many([bad], [[1.0]], [1.0]),
    lambda bad: AnomalyDetector().last_score(bad),
    lambda bad: AnomalyDetector(config=bad),
    lambda bad: so.AnomalyHook(config=bad),
    lambda bad: so.AnomalyHook(tick_s=[bad]),  # type: ignore[arg-type]  # (a huge int itself: ValueError)
    lambda bad: so.AnomalyHook(meter_provider=bad),
], ids=["update", "update_series", "update_many", "last_score", "detector-config", "hook-config", "tick_s",
        "meter_provider"])
@pytest.mark.parametrize("bad", [HUGE_INT, LONG_LIST], ids=["huge-int", "long-list"])
def test_a_wrong_argument_is_a_type_error_with_a_short_message(call: Any, bad: Any) -> None:
    with pytest.raises(TypeError) as caught:
        call(bad)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("bad", [HUGE_INT, LONG_LIST], ids=["huge-int", "long-list"])
def test_a_wrong_engine_or_series_sequence_has_a_short_message(bad: Any) -> None:
    with pytest.raises(ValueError, match="engine must be one of") as caught:
        AnomalyDetector(engine=bad)
    assert len(str(caught.value)) < 300
    with pytest.raises(TypeError, match="series must be a sequence") as refused:
        AnomalyDetector().update_many({bad} if isinstance(bad, int) else set(bad), [[1.0]], [1.0])  # type: ignore[arg-type]
    assert len(str(refused.value)) < 300
    with pytest.raises((TypeError, ValueError)) as signals:
        so.AnomalyHook(signals=[str(i) for i in range(100_000)] if isinstance(bad, list) else bad)
    assert len(str(signals.value)) < 300


# Bug: a Decimal or numpy longdouble beyond any float (Decimal("1e400"), np.longdouble("1e400")) was read as an
# infinity and skipped as a missing sample (the block path also warned "overflow encountered in cast"), while the
# same number as an int (10**400) was refused as the docstrings say: "numbers beyond any float" are a ValueError.
BEYOND = [Decimal("1e400"), Decimal("-1e400"), np.longdouble("1e400"), np.longdouble("-1e400")]


@pytest.mark.parametrize("number", BEYOND, ids=["decimal", "-decimal", "longdouble", "-longdouble"])
def test_a_number_beyond_any_float_of_any_type_is_refused_on_every_path(number: Any) -> None:
    det = AnomalyDetector(QUICK)
    with pytest.raises(ValueError, match="value must be a real number within the range of a float"):
        det.update("a", number, 1.0)
    array = np.array([1.0, number], dtype=object if isinstance(number, Decimal) else np.longdouble)
    for engine in ("numpy", "numba"):
        det = AnomalyDetector(QUICK, engine=engine)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "overflow encountered in cast" either
            with pytest.raises(ValueError, match="values must be real numbers within the range of a float"):
                det.update_series("a", array, [1.0, 2.0])
        assert (det.stats.series, det.stats.ignored) == (0, 0)  # refused before any state changed


@pytest.mark.parametrize("missing", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), np.longdouble("nan"),
                                     np.longdouble("inf"), np.longdouble("-inf")])
def test_the_nans_and_infinities_of_other_types_are_still_missing_samples(missing: Any) -> None:
    det = AnomalyDetector(QUICK)
    assert det.update("a", missing, 1.0) is None
    array = np.array([missing], dtype=object if isinstance(missing, Decimal) else np.longdouble)
    assert np.isnan(det.update_series("a", array, [2.0])).all()
    assert det.stats.ignored == 2


def test_update_series_with_more_values_than_times_names_both_lengths() -> None:
    """update_series() takes two 1-D sequences: a length mismatch is said in their terms, not in update_many's
    "values must have shape (len(series), len(times)) = (1, 1), got (1, 2)", naming shapes the caller never gave."""
    det = AnomalyDetector()
    with pytest.raises(ValueError, match=r"^values and times must have the same length, got 2 values and 1 times$"):
        det.update_series("s", [1.0, 2.0], [0.0])
    assert det.stats.series == 0
