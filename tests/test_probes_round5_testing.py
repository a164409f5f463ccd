"""Round-5 probes of what users put in their own test suites (``shannon_otel.testing``) and of the
``LoggingHook``, each a bug found by using them as a user would; every test fails without its fix."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import cast

import pytest

from shannon_otel import LoggingHook, Retry
from shannon_otel._events import Anomaly
from shannon_otel._redact import redacting_handler
from shannon_otel._telemetry import Severity
from shannon_otel.testing import (
    FakeClock,
    InMemoryTelemetry,
    VirtualTimeLoop,
    is_testing,
    run_virtual,
    set_testing,
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def anomaly_records() -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger("shannon_otel.anomaly")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --------------------------------------------------------------------------- run_virtual
def test_run_virtual_inside_a_running_loop_says_so_and_awaits_nothing_half_way() -> None:
    # asyncio.Runner raised "Runner.run() cannot be called from a running event loop", then, closing,
    # "Cannot run the event loop while another loop is running" hid it, and the coroutine given was left
    # never awaited (a RuntimeWarning: an error under filterwarnings=error, blamed on some later test).
    async def inner() -> int:
        return 1

    async def outer() -> str:
        coro = inner()
        with pytest.raises(RuntimeError, match=r"run_virtual\(\) cannot be called from a running event loop"):
            run_virtual(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # closed, so never reported as never awaited
        return "outer goes on"

    assert run_virtual(outer()) == "outer goes on"
    assert run_virtual(inner()) == 1  # and a later call works


# --------------------------------------------------------------------------- InMemoryTelemetry
def test_points_of_a_metric_two_meters_record_are_all_there() -> None:
    # metrics() is a dict by name: a counter of the same name in two meters (the user's and a library's)
    # kept the points of one of them, so points()/point() said the other's were never recorded.
    tel = InMemoryTelemetry()
    tel.meter_provider.get_meter("mine").create_counter("requests").add(2, {"side": "mine"})
    tel.meter_provider.get_meter("theirs").create_counter("requests").add(3, {"side": "theirs"})
    assert sorted(p.value for p in tel.points("requests")) == [2, 3]
    assert tel.point("requests", side="mine").value == 2
    assert tel.point("requests", side="theirs").value == 3
    tel.shutdown()


def test_point_of_a_metric_never_recorded_names_the_ones_that_were() -> None:
    # A misspelt metric name read "expected one point of ... found 0", as if the attributes were wrong.
    tel = InMemoryTelemetry()
    tel.meter_provider.get_meter("mine").create_counter("requests").add(1)
    with pytest.raises(AssertionError, match=r"no metric 'request' was recorded; recorded: \['requests'\]"):
        tel.point("request")
    tel.shutdown()


# --------------------------------------------------------------------------- LoggingHook levels
def test_levels_refuse_a_bool() -> None:
    # True is an int: it was taken as level 1, records named "Level True".
    with pytest.raises(TypeError, match=r"levels\['shannon.retry.scheduled'\] must be a logging level"):
        LoggingHook(levels={"shannon.retry.scheduled": True})


def test_a_critical_anomaly_is_never_logged_below_its_custom_level(
    anomaly_records: list[logging.LogRecord],
) -> None:
    # "One step up" for severity critical was min(level + 10, CRITICAL): at a custom level 60 a critical
    # anomaly went down to 50, below the warnings of the same series.
    hook = LoggingHook(levels={"shannon.anomaly": 60})
    hook.anomaly(Anomaly("a", "latency", 0.6, Severity.WARNING, 1.0, None, None, 0.0))
    hook.anomaly(Anomaly("b", "latency", 0.9, Severity.CRITICAL, 9.0, None, None, 0.0))
    assert [r.levelno for r in anomaly_records] == [60, 60]
    anomaly_records.clear()
    hook = LoggingHook()  # the default: WARNING, and ERROR for critical
    hook.anomaly(Anomaly("a", "latency", 0.6, Severity.WARNING, 1.0, None, None, 0.0))
    hook.anomaly(Anomaly("b", "latency", 0.9, Severity.CRITICAL, 9.0, None, None, 0.0))
    assert [r.levelno for r in anomaly_records] == [logging.WARNING, logging.ERROR]


# --------------------------------------------------------------------------- LoggingHook flood control
def _retried(logger_records: list[logging.LogRecord]) -> list[tuple[str, float | None]]:
    return [(r.getMessage(), getattr(r, "shannon.log.interval", None)) for r in logger_records]


def test_a_clock_stepped_back_neither_silences_the_limiter_nor_reports_negative_seconds() -> None:
    # With a wall clock (clock=time.time) stepped back an hour, every later occurrence fell inside the
    # window (now - start < 0 < interval) and was held back until the clock caught up, an hour later;
    # a flush or an eviction meanwhile reported "in the last -3600 s".
    logger = logging.getLogger("shannon_otel.retry")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    clock = FakeClock()
    hook = LoggingHook(clock=clock, interval_s=10)
    retry = Retry(name="op", attempts=2, initial=0, jitter="none", clock=clock, sleep=clock.sleep, hooks=[hook],
                  instrument=False)

    async def storm(n: int) -> None:
        for _ in range(n):
            await retry.call(_flaky())

    try:
        run_virtual(storm(3))  # the first written, two held back
        clock.now -= 3600.0
        run_virtual(storm(1))  # the clock went back: written now, with the two it stands for
        run_virtual(storm(2))  # a new window: held back
        clock.now -= 3600.0
        hook.flush()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert _retried(handler.records) == [
        ("retrying op in 0.00 s (attempt 2/2): ConnectionError", None),
        ("retried op 3 times in the last 0 s (last: attempt 2/2 in 0.00 s: ConnectionError)", 0.0),
        ("retried op 2 times in the last 0 s (last: attempt 2/2 in 0.00 s: ConnectionError)", 0.0),
    ]


def _flaky() -> Callable[[], Awaitable[str]]:
    failed = False

    async def call() -> str:
        nonlocal failed
        if not failed:
            failed = True
            raise ConnectionError("refused")
        return "ok"

    return call


def test_past_max_keys_the_key_evicted_is_the_quietest_not_the_busiest() -> None:
    # Keys were ordered by when their window opened: an operation retried every 0.1 s was evicted by
    # operations seen once ("the one quiet the longest is evicted first", docs/logging.md), so it wrote
    # a summary and then a fresh record at every eviction: three records in 1.6 s, not one per 10 s.
    logger = logging.getLogger("shannon_otel.retry")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    clock = FakeClock()
    hook = LoggingHook(clock=clock, interval_s=10, max_keys=2)

    def retry(name: str) -> Retry:
        return Retry(name=name, attempts=2, initial=0, jitter="none", clock=clock, sleep=clock.sleep,
                     hooks=[hook], instrument=False)

    hot = retry("hot")

    async def main() -> None:
        await hot.call(_flaky())
        for i in range(3):
            for _ in range(5):
                clock.advance(0.1)
                await hot.call(_flaky())
            await retry(f"cold{i}").call(_flaky())

    try:
        run_virtual(main())
        written = [r.getMessage() for r in handler.records]
        hook.flush()  # the hot key's 15 held-back retries are still told, once
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert written == [
        f"retrying {name} in 0.00 s (attempt 2/2): ConnectionError" for name in ("hot", "cold0", "cold1", "cold2")
    ]
    assert [r.getMessage() for r in handler.records[len(written):]] == [
        "retried hot 15 times in the last 2 s (last: attempt 2/2 in 0.00 s: ConnectionError)"]


# --------------------------------------------------------------------------- set_testing
def test_set_testing_attempts_is_the_maximum_the_retry_records_tell() -> None:
    # Under set_testing(True, attempts=2) a Retry(attempts=5) makes 2 attempts, but its records (and
    # RetryScheduled.max_attempts) said "attempt 2/5" with shannon.retry.max_attempts = 5.
    logger = logging.getLogger("shannon_otel.retry")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    retry = Retry(name="op", attempts=5, initial=3, jitter="none", hooks=[LoggingHook()], instrument=False)
    try:
        with set_testing(True, attempts=2), pytest.raises(ConnectionError):
            run_virtual(retry.call(failing))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert calls == 2
    (record,) = handler.records
    assert record.getMessage() == "retrying op in 0.00 s (attempt 2/2): ConnectionError"
    assert getattr(record, "shannon.retry.max_attempts") == 2
    assert not is_testing()


# --------------------------------------------------------------------------- redaction of log records
@pytest.mark.parametrize(("redact", "operation", "message", "expected"), [
    (lambda kind, message: "<hidden>", "db-primary", "db",
     "retrying db-primary in 0.00 s (attempt 2/2): ValueError: <hidden>"),
    (lambda kind, message: None, "db: primary", "primary",
     "retrying db: primary in 0.00 s (attempt 2/2): ValueError"),
])
def test_redaction_rewrites_the_exception_message_not_an_operation_name_holding_it(
    redact: Callable[[str, str], str | None], operation: str, message: str, expected: str,
) -> None:
    # The message was replaced wherever it occurred in the text: "retrying <hidden>-primary ...",
    # "retrying db in ...": the record named an operation that does not exist.
    handler = redacting_handler(_Records, redact)
    logger = logging.getLogger("shannon_otel.retry")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    async def failing() -> None:
        raise ValueError(message)

    retry = Retry(name=operation, attempts=2, initial=0, hooks=[LoggingHook(exception_messages=True)],
                  instrument=False)
    try:
        with pytest.raises(ValueError, match=message):
            run_virtual(retry.call(failing))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    (record,) = cast("_Records", handler).records
    assert record.getMessage() == expected


# --------------------------------------------------------------------------- VirtualTimeLoop
@pytest.mark.parametrize("seconds", [-5.0, float("nan"), float("inf")])
def test_the_virtual_loop_refuses_to_move_its_clock_back_or_to_nan(seconds: float) -> None:
    # VirtualTimeLoop.advance took anything: -5 moved a monotonic clock back, NaN made every later
    # sleep return at once with loop.time() NaN.
    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        with pytest.raises(ValueError, match=r"seconds must be in \[0, inf\)"):
            loop.advance(seconds)
        loop.advance(2.5)
        await asyncio.sleep(1)
        return loop.time()

    assert run_virtual(main()) == 3.5
