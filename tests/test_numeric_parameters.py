"""Numbers as users pass them to the policies and the executor: numpy scalars, int subclasses, counts
beyond the float range, long retries. Each works exactly as the equivalent builtin float/int, or is refused
at construction naming the parameter; nothing numeric goes wrong later, inside a call."""

from __future__ import annotations

import asyncio
import enum
import math
import re
import warnings
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import shannon_otel as so
from shannon_otel.testing import run_virtual


async def _fail() -> None:
    raise ValueError("down")


async def _one() -> int:
    return 1


def _delays(**settings: Any) -> list[float]:
    """The waits of a retry that fails every attempt, as its sleep was asked for them."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    retry = so.Retry(jitter="none", sleep=sleep, instrument=False, **settings)
    with pytest.raises(ValueError, match="down"):
        run_virtual(retry.call(_fail))
    return waits


def test_a_retry_without_initial_delay_never_waits_however_many_attempts() -> None:
    """``initial=0`` waited ``maximum`` from attempt 1025 on: ``2.0 ** 1024`` overflows, and the overflow
    was taken for "the backoff reached its cap" although 0 x anything is 0."""
    waits = _delays(attempts=1100, initial=0.0, maximum=10.0)
    assert len(waits) == 1099 and set(waits) == {0.0}


def test_a_long_retry_still_reaches_its_cap_past_the_float_range() -> None:
    waits = _delays(attempts=1100, initial=0.001, maximum=10.0)
    assert waits[0] == 0.001 and waits[-1] == 10.0 and max(waits) == 10.0


def test_numpy_float64_backoff_settings_compute_as_floats_without_numpy_warnings() -> None:
    """``np.float64`` is a float subclass, so it was accepted, and kept: past attempt 1025 its power
    overflowed with numpy's RuntimeWarning (an error under ``-W error``, raised from the retry in place of
    the user's error), and the waits and the events carried numpy scalars."""
    expected = _delays(attempts=1100, initial=0.001, maximum=10.0, multiplier=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        waits = _delays(attempts=1100, initial=np.float64(0.001), maximum=np.float64(10.0),
                        multiplier=np.float64(2.0))
    assert waits == expected
    assert {type(w) for w in waits} == {float}


def test_a_numpy_rate_limit_too_small_to_invert_limits_without_a_numpy_warning() -> None:
    """``rate_limit=np.float64(1e-320)``: ``1 / rate`` raised numpy's overflow RuntimeWarning in the run."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wave: so.Wave[int] = so.Wave("w", rate_limit=np.float64(1e-320), instrument=False)
        result = run_virtual(wave.run([_one]))
    assert result.results[0].value == 1


class _Count(enum.IntEnum):
    THREE = 3


@pytest.mark.parametrize(("build", "fields"), [
    (lambda: so.Retry(attempts=_Count.THREE, initial=np.float64(0.5), maximum=np.float64(2.0),
                      multiplier=np.float64(3.0), budget_s=np.float64(9.0)),
     {"attempts": 3, "initial": 0.5, "maximum": 2.0, "multiplier": 3.0, "budget_s": 9.0}),
    (lambda: so.Hedge(np.float64(0.25), attempts=_Count.THREE), {"delay": 0.25, "attempts": 3}),
    (lambda: so.Timeout(np.float64(1.5)), {"seconds": 1.5}),
    (lambda: so.BreakerConfig(failure_rate=np.float64(0.5), reset_timeout=np.float64(5.0), window=_Count.THREE,
                              min_calls=_Count.THREE, failure_threshold=None),
     {"failure_rate": 0.5, "reset_timeout": 5.0, "window": 3, "min_calls": 3}),
    (lambda: so.Degrade(last_good=True, max_age=np.float64(60.0), max_keys=_Count.THREE),
     {"max_age": 60.0, "max_keys": 3}),
    (lambda: so.Saga("s", compensation_timeout_s=np.float64(2.0)), {"compensation_timeout_s": 2.0}),
    (lambda: so.Wave("w", rate_limit=np.float64(5.0), task_timeout=np.float64(1.0), burst=_Count.THREE,
                     max_concurrency=_Count.THREE, progress_interval=np.float64(0.5)),
     {"rate_limit": 5.0, "task_timeout": 1.0, "burst": 3, "max_concurrency": 3, "progress_interval": 0.5}),
], ids=["Retry", "Hedge", "Timeout", "BreakerConfig", "Degrade", "Saga", "Wave"])
def test_number_subclasses_are_kept_as_the_builtin_numbers_they_equal(build: Any, fields: dict[str, Any]) -> None:
    built = build()
    for name, value in fields.items():
        kept = getattr(built, name)
        assert kept == value and type(kept) is type(value), (name, kept)


def test_a_burst_beyond_the_float_range_is_no_limit_rather_than_an_overflow_at_run() -> None:
    """``burst=10**400`` (a valid count: counts compare exactly) raised OverflowError "int too large to
    convert to float" from the rate limiter when the wave ran."""
    started: list[float] = []

    async def work() -> None:
        started.append(asyncio.get_running_loop().time())

    async def main() -> None:
        wave: so.Wave[None] = so.Wave("w", rate_limit=1.0, burst=10**400, clock=asyncio.get_running_loop().time,
                                      instrument=False)
        result = await wave.run([work] * 5)
        assert [r.outcome for r in result.results] == [so.Outcome.SUCCESS] * 5

    run_virtual(main())
    assert started == [0.0] * 5  # a burst that large lets every task start at once


def test_a_retry_limit_beyond_int64_is_reported_as_no_limit_so_its_log_records_encode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``attempts=10**400`` (valid: unbounded) was handed on as ``RetryScheduled.max_attempts`` and the
    ``shannon.retry.max_attempts`` field of every retry's log record, which OTLP cannot encode (int64):
    the exporter logged a traceback per record and lost the field. The event says None (no limit)."""
    scheduled: list[so.RetryScheduled] = []

    class Calls(so.CallObserver):
        def retry_scheduled(self, event: so.RetryScheduled) -> None:
            scheduled.append(event)

    class Hook(so.Hook):
        def call_started(self, event: so.CallStarted) -> so.CallObserver:
            return Calls()

    async def sleep(seconds: float) -> None:
        return None

    for attempts, expected in ((2**63 - 1, 2**63 - 1), (2**63, None), (10**400, None)):
        scheduled.clear()
        caplog.clear()
        calls: list[int] = []

        async def twice(calls: list[int] = calls) -> int:
            calls.append(1)
            if len(calls) < 2:
                raise ValueError("once")
            return 1

        retry = so.Retry(attempts=attempts, sleep=sleep, hooks=[Hook(), so.LoggingHook()], instrument=False)
        with caplog.at_level("INFO", logger="shannon_otel"):
            assert run_virtual(retry.call(twice)) == 1
        assert [e.max_attempts for e in scheduled] == [expected]
        (record,) = [r for r in caplog.records if r.name == "shannon_otel.retry"]
        fields = {k: v for k, v in vars(record).items() if k.startswith("shannon.")}
        assert fields and all(-(2**63) <= v < 2**63 for v in fields.values() if isinstance(v, int)), fields


@pytest.mark.parametrize(("limit", "reported"), [(2**63 - 1, 2**63 - 1), (2**63, None), (10**400, None)])
def test_a_wave_concurrency_beyond_int64_is_reported_as_unbounded(limit: int, reported: int | None) -> None:
    """``max_concurrency=10**400`` (valid: unbounded) became the wave span's ``shannon.wave.concurrency``,
    which OTLP cannot encode (the attribute lost, a traceback logged by the exporter)."""
    from shannon_otel.testing import InMemoryTelemetry

    seen: list[int | None] = []

    class Hook(so.Hook):
        def wave_started(self, event: so.WaveStarted) -> None:
            seen.append(event.concurrency)

    tel = InMemoryTelemetry()
    wave: so.Wave[int] = so.Wave("w", max_concurrency=limit, hooks=[Hook()], **tel.providers)
    assert [r.value for r in run_virtual(wave.run([_one] * 2)).results] == [1, 1]
    assert seen == [reported]
    assert (tel.span("wave w").attributes or {}).get("shannon.wave.concurrency") == reported


@pytest.mark.parametrize(("value", "hint"), [
    (np.float32(0.5), r"\(a Python int or float; numpy.float32 is not one: pass float\(value\)\)"),
    (np.int64(3), r"\(a Python int or float; numpy.int64 is not one: pass float\(value\)\)"),
    (Decimal("0.5"), r"\(a Python int or float; decimal.Decimal is not one: pass float\(value\)\)"),
    (Fraction(1, 2), r"\(a Python int or float; fractions.Fraction is not one: pass float\(value\)\)"),
], ids=["np.float32", "np.int64", "Decimal", "Fraction"])
def test_a_number_of_another_type_is_refused_saying_which_type_is_meant(value: Any, hint: str) -> None:
    """"initial must be a number, got np.float32(0.5)" read as a contradiction (and DetectorConfig said
    "must be a number in (0.0, 1.0], got np.float32(0.5)", of a value in that range)."""
    with pytest.raises(TypeError, match=rf"^initial must be a number in \[0, inf\) {hint}, got "):
        so.Retry(initial=value)
    with pytest.raises(ValueError, match=rf"^DetectorConfig.warning must be a number in \(0.0, 1.0\] {hint}, got "):
        so.DetectorConfig(warning=value)
    # "tick_s must be a number of seconds in (0, inf), got np.float32(1.0)" said no more
    with pytest.raises(TypeError, match=rf"^tick_s must be a number of seconds in \(0, inf\) {hint}, got "):
        so.AnomalyHook(tick_s=value)

    async def work() -> None:
        so.record_cost(value)

    wave: so.Wave[None] = so.Wave("w", instrument=False)
    error = run_virtual(wave.run([work])).results[0].error
    assert isinstance(error, TypeError)
    assert re.match(rf"^record_cost\(\): amount must be a finite number >= 0 {hint}", str(error)), error


def test_an_integer_of_another_type_is_refused_saying_to_pass_int() -> None:
    # the value as numpy shows it: np.int64(3) from numpy 2, 3 before (the lowest allowed numpy is 1.26)
    with pytest.raises(TypeError, match=r"^attempts must be an int in \[1, inf\) \(a Python int; numpy.int64 is not "
                                        r"one: pass "
                                        rf"int\(value\)\), got {re.escape(repr(np.int64(3)))}$"):
        so.Retry(attempts=np.int64(3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^attempts must be an int in \[1, inf\) \(a Python int; numpy.float32 is not "
                                        r"one\), got"):
        so.Retry(attempts=np.float32(3.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^ResourcePool limit must be an int >= 1 \(a Python int; numpy.int64 is not "
                                        rf"one: pass int\(value\)\), got {re.escape(repr(np.int64(2)))}"):
        so.ResourcePool("p", np.int64(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^DetectorConfig.window must be an int in \[3, 100000\] \(a Python int; "
                                         r"numpy.int64 is not one: pass int\(value\)\)"):
        so.DetectorConfig(window=np.int64(30))  # type: ignore[arg-type]


def test_a_detector_config_keeps_numpy_settings_as_builtin_numbers() -> None:
    config = so.DetectorConfig(warning=np.float64(0.6), window=_Count.THREE)
    assert type(config.warning) is float and type(config.window) is int and (config.warning, config.window) == (0.6, 3)


def _waits_with(**settings: Any) -> tuple[list[Any], list[Any]]:
    """What a two-attempt retry slept and reported (RetryScheduled.delay_s) with these settings."""
    slept: list[Any] = []
    reported: list[Any] = []

    class Calls(so.CallObserver):
        def retry_scheduled(self, event: so.RetryScheduled) -> None:
            reported.append(event.delay_s)

    class Hook(so.Hook):
        def call_started(self, event: so.CallStarted) -> so.CallObserver:
            return Calls()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    retry = so.Retry(attempts=2, sleep=sleep, hooks=[Hook()], instrument=False, **settings)
    with pytest.raises(ValueError, match="down"):
        run_virtual(retry.call(_fail))
    return slept, reported


@pytest.mark.parametrize("returned", [np.float64(2.0), np.float32(2.0), np.int64(2), Fraction(2)],
                         ids=["np.float64", "np.float32", "np.int64", "Fraction"])
def test_a_next_delay_of_any_real_number_is_slept_and_reported_as_a_float(returned: Any) -> None:
    """np.int64 and Fraction were refused ("must return seconds (a number)"), np.float32/64 slept and
    reported as numpy scalars."""
    slept, reported = _waits_with(next_delay=lambda error, attempt: returned)
    assert slept == reported == [2.0]
    assert type(slept[0]) is float and type(reported[0]) is float


def test_a_next_delay_beyond_the_float_range_is_capped_at_maximum() -> None:
    slept, _ = _waits_with(next_delay=lambda error, attempt: 10**400, maximum=7.0)
    assert slept == [7.0]


@pytest.mark.parametrize("returned", [10**400, math.inf, 1e300], ids=["10**400", "inf", "1e300"])
def test_a_next_delay_capped_at_an_int_maximum_is_slept_and_reported_as_a_float(returned: Any) -> None:
    """``maximum=60`` (an int) was what a capped Retry-After slept and reported: the span event's
    ``shannon.retry.delay`` an OTLP int, a double for every other retry."""
    slept, reported = _waits_with(next_delay=lambda error, attempt: returned, maximum=60)
    assert slept == reported == [60.0]
    assert type(slept[0]) is float and type(reported[0]) is float


@pytest.mark.parametrize(("retry_after", "error", "message"), [
    (-1.0, ValueError, r"seconds >= 0 or None, got -1\.0"), (math.nan, ValueError, r"seconds >= 0 or None, got nan"),
    ("5", TypeError, r"seconds \(a real number\) or None, got '5'"),
], ids=["negative", "nan", "str"])
def test_a_rejections_retry_after_that_is_no_wait_is_refused_naming_it(
    retry_after: Any, error: type[Exception], message: str,
) -> None:
    """A ``CircuitOpenError`` of the user's own (or one unpickled from elsewhere) whose ``retry_after_s`` cannot be
    waited was refused saying "next_delay must return ...", a parameter the retry did not have."""

    async def rejected() -> None:
        raise so.CircuitOpenError("remote", "open", retry_after)

    retry = so.Retry(attempts=2, wait_retry_after=True, instrument=False)
    with pytest.raises(error, match=r"^wait_retry_after needs the CircuitOpenError's retry_after_s in " + message):
        run_virtual(retry.call(rejected))


@pytest.mark.parametrize("returned", [Decimal("2"), "2", True], ids=["Decimal", "str", "bool"])
def test_a_next_delay_of_no_real_number_is_refused_naming_it(returned: Any) -> None:
    with pytest.raises(TypeError, match=r"^next_delay must return seconds \(a real number\) or None"):
        _waits_with(next_delay=lambda error, attempt: returned)


@pytest.mark.parametrize("returned", ["0.5", None, True], ids=["str", "None", "bool"])
def test_a_random_source_returning_no_number_is_refused_naming_it(returned: Any) -> None:
    """A str or None raised Python's bare "'<=' not supported between instances of 'float' and 'str'" in
    place of the user's error."""
    with pytest.raises(TypeError, match=r"^random \(the jitter source\) must return a number in \[0, 1\]"):
        _waits_with(random=lambda: returned)


def test_a_numpy_random_source_is_slept_and_reported_as_floats() -> None:
    slept, reported = _waits_with(random=lambda: np.float32(0.5), initial=1.0)
    assert slept == reported == [0.5] and type(slept[0]) is float and type(reported[0]) is float


@pytest.mark.parametrize("value", [1j, np.complex128(1.0)], ids=["complex", "np.complex128"])
def test_a_complex_number_is_refused_without_advice_that_cannot_work(value: Any) -> None:
    """``float(1j)`` raises TypeError: "pass float(value)" would send the user from one error to another."""
    with pytest.raises(TypeError, match=r"^initial must be a number in \[0, inf\) \(a real Python int or float; \S+ is "
                                        r"not one\), got "):
        so.Retry(initial=value)


# ------------------------------------------------------------------ ranges that take inf
def test_a_range_that_takes_inf_is_printed_closed_and_one_that_refuses_it_open() -> None:
    """``Wave(task_timeout=0)`` said "must be in (0, inf)", which reads as refusing ``inf``, which it takes (as
    ``rate_limit``, ``Retry(budget_s=)``, ``CircuitBreaker(reset_timeout=)``, ``Degrade(max_age=)`` do): such a range
    is printed ``(0, inf]``. A parameter that refuses ``inf`` (an int's, ``Timeout(seconds)``) keeps ``inf)``."""
    from shannon_otel import CircuitBreaker, Degrade, Retry, Timeout, Wave

    takes_inf: dict[str, tuple[Callable[[float], object], str]] = {
        "task_timeout": (lambda v: Wave("w", task_timeout=v), "(0, inf]"),
        "rate_limit": (lambda v: Wave("w", rate_limit=v), "(0, inf]"),
        "budget_s": (lambda v: Retry(budget_s=v), "(0, inf]"),
        "reset_timeout": (lambda v: CircuitBreaker("b", reset_timeout=v), "[0, inf]"),
        "max_age": (lambda v: Degrade(last_good=True, max_age=v), "(0, inf]"),
    }
    for name, (make, shown_range) in takes_inf.items():
        make(math.inf)  # taken, as the range says
        with pytest.raises(ValueError, match=rf"^{name} must be in {re.escape(shown_range)}, got -1$"):
            make(-1)
    refuses_inf: dict[str, tuple[Callable[[float], object], str]] = {
        "seconds": (lambda v: Timeout(v), "(0, inf)"),
        "max_concurrency": (lambda v: Wave("w", max_concurrency=v), "(0, inf)"),  # type: ignore[arg-type]
        "initial": (lambda v: Retry(initial=v), "[0, inf)"),
    }
    for name, (make, shown_range) in refuses_inf.items():
        with pytest.raises(ValueError, match=rf"^{name} must be in {re.escape(shown_range)}, got -1$"):
            make(-1)
        with pytest.raises((TypeError, ValueError)):
            make(math.inf)


# Bug: a NaN was refused with the range alone, `Timeout(float("nan"))` saying "seconds must be in (0, inf), got nan",
# which reads as if the value fell outside that range (or as if inf were the trouble). The message now says that NaN
# is what is not allowed, for every parameter the shared check guards.
@pytest.mark.parametrize(("build", "name"), [
    (lambda: so.Timeout(math.nan), "seconds"),
    (lambda: so.Retry(initial=math.nan), "initial"),
    (lambda: so.Retry(budget_s=math.nan), "budget_s"),
    (lambda: so.Wave("w", task_timeout=math.nan), "task_timeout"),
    (lambda: so.Hedge(math.nan), "delay"),
], ids=["timeout", "retry-initial", "retry-budget", "wave-task-timeout", "hedge-delay"])
def test_a_nan_is_refused_saying_nan_is_not_allowed(build: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be in .*, got nan: NaN is not allowed$"):
        build()
