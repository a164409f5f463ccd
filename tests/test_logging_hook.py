"""The LoggingHook as users configure it: its levels, the flood limiter (held-back repeats written as one
summary, at shutdown and at interpreter exit; keys evicted; clocks stepped back) and what redaction rewrites."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from _log_records import Records, capturing

from shannon_otel import CircuitBreaker, CircuitOpenError, LoggingHook, Pipeline, Retry, Timeout, configure
from shannon_otel import _telemetry as tel
from shannon_otel._events import Anomaly
from shannon_otel._redact import redacting_handler
from shannon_otel._telemetry import Severity
from shannon_otel.testing import FakeClock, is_testing, run_virtual, set_testing


@pytest.fixture
def anomaly_records() -> Iterator[list[logging.LogRecord]]:
    with capturing("shannon_otel.anomaly", Records()) as handler:
        yield handler.records


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


def test_a_critical_anomaly_right_after_a_warning_of_its_series_is_written_at_once(
    anomaly_records: list[logging.LogRecord],
) -> None:
    # The limiter's key was (series, signal): the warning opened a 10 s window and the critical anomaly of the
    # same series 2 s later was only counted, written as a summary after the window or at exit.
    clock = FakeClock()
    hook = LoggingHook(clock=clock, interval_s=10)
    hook.anomaly(Anomaly("a", "latency", 0.6, Severity.WARNING, 1.0, None, None, 0.0))
    clock.advance(2.0)
    hook.anomaly(Anomaly("a", "latency", 0.99, Severity.CRITICAL, 9.0, None, None, 0.0))
    clock.advance(2.0)
    hook.anomaly(Anomaly("a", "latency", 0.99, Severity.CRITICAL, 9.5, None, None, 0.0))  # a repeat: held back
    assert [(r.levelno, r.getMessage()) for r in anomaly_records] == [
        (logging.WARNING, "warning latency anomaly on 'a': latency = 1 (score 0.600)"),
        (logging.ERROR, "critical latency anomaly on 'a': latency = 9 (score 0.990)"),
    ]


# --------------------------------------------------------------------------- LoggingHook flood control
def _retried(logger_records: list[logging.LogRecord]) -> list[tuple[str, float | None]]:
    return [(r.getMessage(), getattr(r, "shannon.log.interval", None)) for r in logger_records]


def _storm_of_retries(
    clock: FakeClock, step_s: float,
) -> tuple[LoggingHook, Callable[[int], Coroutine[Any, Any, None]]]:
    """A LoggingHook (10 s windows) on ``clock``, and ``storm(n)``: n calls of a Retry named "op" through it, each
    retried once (its first attempt fails), the clock moved ``step_s`` on after each."""
    hook = LoggingHook(clock=clock, interval_s=10)
    retry = Retry(name="op", attempts=2, initial=0, jitter="none", clock=clock, sleep=clock.sleep, hooks=[hook],
                  instrument=False)

    async def storm(n: int) -> None:
        for _ in range(n):
            await retry.call(_flaky())
            clock.now += step_s

    return hook, storm


def test_a_clock_stepped_back_neither_silences_the_limiter_nor_reports_negative_seconds() -> None:
    # With a wall clock (clock=time.time) stepped back an hour, every later occurrence fell inside the
    # window (now - start < 0 < interval) and was held back until the clock caught up, an hour later;
    # a flush or an eviction meanwhile reported "in the last -3600 s".
    clock = FakeClock()
    hook, storm = _storm_of_retries(clock, step_s=0.0)

    with capturing("shannon_otel.retry", Records()) as handler:
        run_virtual(storm(3))  # the first written, two held back
        clock.now -= 3600.0
        run_virtual(storm(1))  # the clock went back: written now, with the two it stands for
        run_virtual(storm(2))  # a new window: held back
        clock.now -= 3600.0
        hook.flush()
    assert _retried(handler.records) == [
        ("retrying 'op' after 0.00 s (attempt 2/2): ConnectionError", None),
        ("retried 'op' 3 times in the last 0 s (last: attempt 2/2 after 0.00 s: ConnectionError)", 0.0),
        ("retried 'op' 2 times in the last 0 s (last: attempt 2/2 after 0.00 s: ConnectionError)", 0.0),
    ]


def test_a_timeout_summary_gives_the_limit_of_the_last_timeout_not_of_all() -> None:
    # A pipeline's total and per-attempt Timeouts are both named after it, so one summary counts both: it said
    # "(limit 1.00 s)" for two timeouts of which one had a 0.5 s limit.
    clock = FakeClock()
    hook = LoggingHook(clock=clock, interval_s=10)
    pipeline = Pipeline(Timeout(1), Retry(attempts=2, initial=0, jitter="none"), Timeout(0.5), name="op",
                        hooks=[hook], instrument=False)

    async def hang() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(TimeoutError):  # attempt 1 cut at 0.5 s, attempt 2 by the total at 1 s
                await pipeline.call(hang)

    with capturing("shannon_otel.timeout", Records()) as handler:
        run_virtual(main())
        clock.now += 60.0
        hook.flush()
    assert [r.getMessage() for r in handler.records] == [
        "'op' timed out after 0.50 s", "'op' timed out 3 times in the last 60 s (last: limit 1.00 s)",
    ]


def test_a_summary_of_a_flood_under_a_second_does_not_say_it_spanned_0_s() -> None:
    # A flood within a few milliseconds read "retried op 2 times in the last 0 s": an interval of zero, which a
    # summary of several occurrences cannot have (the library shows no delay or limit as zero: as_seconds).
    clock = FakeClock()
    hook, storm = _storm_of_retries(clock, step_s=0.001)

    with capturing("shannon_otel.retry", Records()) as handler:
        run_virtual(storm(3))  # the first written, two held back
        hook.flush()
    assert [(r.getMessage().split(" (")[0], getattr(r, "shannon.log.interval", None)) for r in handler.records] == [
        ("retrying 'op' after 0.00 s", None), ("retried 'op' 2 times in the last 0.003 s", pytest.approx(0.003)),
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

    with capturing("shannon_otel.retry", Records()) as handler:
        run_virtual(main())
        written = [r.getMessage() for r in handler.records]
        hook.flush()  # the hot key's 15 held-back retries are still told, once
    assert written == [
        f"retrying {name!r} after 0.00 s (attempt 2/2): ConnectionError" for name in ("hot", "cold0", "cold1", "cold2")
    ]
    assert [r.getMessage() for r in handler.records[len(written):]] == [
        "retried 'hot' 15 times in the last 2 s (last: attempt 2/2 after 0.00 s: ConnectionError)"]


# --------------------------------------------------------------------------- set_testing
def test_set_testing_attempts_is_the_maximum_the_retry_records_tell() -> None:
    # Under set_testing(True, attempts=2) a Retry(attempts=5) makes 2 attempts, but its records (and
    # RetryScheduled.max_attempts) said "attempt 2/5" with shannon.retry.max_attempts = 5.
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    retry = Retry(name="op", attempts=5, initial=3, jitter="none", hooks=[LoggingHook()], instrument=False)
    with capturing("shannon_otel.retry", Records()) as handler, set_testing(True, attempts=2), \
            pytest.raises(ConnectionError):
        run_virtual(retry.call(failing))
    assert calls == 2
    (record,) = handler.records
    assert record.getMessage() == "retrying 'op' after 0.00 s (attempt 2/2): ConnectionError"
    assert getattr(record, "shannon.retry.max_attempts") == 2
    assert not is_testing()


# --------------------------------------------------------------------------- redaction of log records
@pytest.mark.parametrize(("redact", "operation", "message", "expected"), [
    (lambda kind, message: "<hidden>", "db-primary", "db",
     "retrying 'db-primary' after 0.00 s (attempt 2/2): ValueError: '<hidden>'"),
    (lambda kind, message: None, "db: primary", "primary",
     "retrying 'db: primary' after 0.00 s (attempt 2/2): ValueError"),
])
def test_redaction_rewrites_the_exception_message_not_an_operation_name_holding_it(
    redact: Callable[[str, str], str | None], operation: str, message: str, expected: str,
) -> None:
    # The message was replaced wherever it occurred in the text: "retrying <hidden>-primary ...",
    # "retrying db in ...": the record named an operation that does not exist.
    async def failing() -> None:
        raise ValueError(message)

    retry = Retry(name=operation, attempts=2, initial=0, hooks=[LoggingHook(exception_messages=True)],
                  instrument=False)
    with capturing("shannon_otel.retry", redacting_handler(Records, redact)) as handler, \
            pytest.raises(ValueError, match=message):
        run_virtual(retry.call(failing))
    (record,) = cast("Records", handler).records
    assert record.getMessage() == expected


@pytest.mark.parametrize(("operation", "message"), [("GET /users/{id}", "plain"), ("quotes", "bad json {'a': 1}")])
def test_a_summary_of_repeats_is_written_whatever_braces_names_and_messages_hold(
        operation: str, message: str, caplog: pytest.LogCaptureFixture) -> None:
    # The summary was built with str.format over text holding the operation name and (opted in) the
    # exception message: a route template or a dict in a message raised inside the hook, and the summary
    # of every held-back retry was lost (only counted in hook.errors).
    hook = LoggingHook(exception_messages=True)
    retry = Retry(attempts=5, initial=0.0, name=operation, hooks=[hook])

    async def fail() -> None:
        raise ValueError(message)

    async def main() -> None:
        for _ in range(3):
            with contextlib.suppress(ValueError):
                await retry.call(fail)

    caplog.set_level(logging.WARNING, logger="shannon_otel")
    with set_testing(True):
        run_virtual(main())
    hook.flush()
    texts = [r.getMessage() for r in caplog.records if r.name == "shannon_otel.retry"]
    assert hook.errors == 0
    seconds = r"(0\.\d+|[1-9]\d*)"  # never "0 s"
    shown = re.escape(repr(operation))
    assert len(texts) == 2 and re.match(rf"retried {shown} 11 times in the last {seconds} s ", texts[1])
    assert texts[1].endswith(f"ValueError: {message!r})")
    assert caplog.records[-1].__dict__["shannon.log.repeats"] == 11


async def _down() -> None:
    raise ConnectionError("down")


async def _reject_many(breaker: CircuitBreaker, calls: int) -> None:
    for _ in range(calls):
        with contextlib.suppress(ConnectionError, CircuitOpenError):
            await breaker.call(_down)


def test_shutdown_writes_the_repeats_the_default_logging_hook_held_back(caplog: pytest.LogCaptureFixture) -> None:
    """A breaker rejecting 99 calls within the flood window logged the first rejection only; the other 98
    waited for a summary nobody asked for (the default hook is the library's: the user cannot flush() it),
    so the logs (and the logs signal configure() exports) never told them."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    handle = configure("svc", exporter="none", set_global=False)
    breaker = CircuitBreaker(name, failure_threshold=1, reset_timeout=60, tracer_provider=handle.tracer_provider,
                             meter_provider=handle.meter_provider)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        asyncio.run(_reject_many(breaker, 100))
        handle.shutdown()
    rejected = [r for r in caplog.records if getattr(r, tel.BREAKER_NAME, None) == name
                and r.__dict__.get("event.name") == tel.LOG_EVENT_REJECTED]
    assert [r.__dict__.get(tel.LOG_REPEATS, 1) for r in rejected] == [1, 98]


def test_the_default_logging_hook_writes_its_held_back_repeats_at_interpreter_exit(tmp_path: Path) -> None:
    """Without configure() (the user's own providers and logging set-up) the 98 were never logged."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import asyncio, logging
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from shannon_otel import CircuitBreaker
        trace.set_tracer_provider(TracerProvider())
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        async def down(): raise ConnectionError("down")
        async def main():
            breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout=60)
            for _ in range(100):
                try:
                    await breaker.call(down)
                except Exception:
                    pass
        asyncio.run(main())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONPATH": "."})
    assert "rejected a call to 'api'" in out.stderr
    assert "rejected 98 calls to 'api'" in out.stderr


def test_the_exit_summary_reaches_a_logger_provider_the_application_built_after_the_default_hook(
    tmp_path: Path,
) -> None:
    """A policy decorating at import builds the default hook before the application's own OTel logs set-up; that
    LoggerProvider's atexit shutdown, registered later, ran before the hook's exit flush: the summary of the held-back
    retries reached a provider already shut down and was lost, with nothing printed anywhere."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import asyncio, logging, sys
        from shannon_otel import Retry

        calls = [0]

        @Retry(attempts=3, initial=0, maximum=0, name="op")  # the default logging hook is built now
        async def flaky():
            calls[0] += 1
            if calls[0] % 2:
                raise ConnectionError
            return 1

        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor

        class Stdout(LogRecordExporter):
            def export(self, batch):
                for data in batch:
                    print("exported:", getattr(data, "log_record", data).body, flush=True)
                return LogRecordExportResult.SUCCESS

            def shutdown(self):
                print("shut down", flush=True)

            def force_flush(self, timeout_millis=0):
                return True

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())  # with an SDK, every call the policies make is logged
        provider = LoggerProvider()  # shuts itself down at exit (shutdown_on_exit=True)
        provider.add_log_record_processor(SimpleLogRecordProcessor(Stdout()))
        logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))

        async def main():
            for _ in range(5):
                await flaky()

        asyncio.run(main())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONPATH": "."})
    lines = out.stdout.splitlines()
    assert lines[0] == "exported: retrying 'op' after 0.00 s (attempt 2/3): ConnectionError", out
    assert lines[1].startswith("exported: retried 'op' 4 times in the last"), out
    assert lines[2:] == ["shut down"], out
