"""The logging hook: every event's record (logger, level, message, fields, trace ids), floods, switches."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _virtual_time import run_virtual
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan
from test_recovery_support import FakeClock, Telemetry, run

from shannon_otel import (
    Anomaly,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    LoggingHook,
    Retry,
    Saga,
    SagaError,
    Step,
    Timeout,
)
from shannon_otel import _telemetry as t
from shannon_otel._hooks import resolve_hooks
from shannon_otel._logs._joined import _Default, _Joined
from shannon_otel._logs._limit import Limiter
from shannon_otel._telemetry import Severity

FIELDS = {
    t.OPERATION, t.ATTEMPT, t.RETRY_DELAY, t.RETRY_MAX_ATTEMPTS, t.ERROR_TYPE, t.BREAKER_NAME, t.BREAKER_STATE,
    t.BREAKER_FROM, t.BREAKER_TO, t.BREAKER_REASON, t.TIMEOUT_LIMIT, t.FALLBACK_REASON, t.DEGRADE_MODE,
    t.DEGRADE_REASON, t.SAGA_NAME, t.SAGA_STEP, t.COMPENSATION_OUTCOME, t.ANOMALY_SERIES, t.ANOMALY_SIGNAL,
    t.ANOMALY_SCORE_ATTR, t.ANOMALY_SEVERITY, t.ANOMALY_VALUE, t.LOG_EVENT_NAME, t.LOG_REPEATS, t.LOG_INTERVAL,
    t.EXCEPTION_MESSAGE,
}


@pytest.fixture(autouse=True)
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SHANNON_OTEL_LOGS", raising=False)
    _Default.reset()  # the process default's flood windows must not leak between tests
    yield
    _Default.reset()


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="shannon_otel")
    return caplog


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("shannon_otel.")]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k in FIELDS}


def summary(record: logging.LogRecord) -> tuple[str, int, str, dict[str, Any]]:
    return record.name, record.levelno, record.getMessage(), fields(record)


class OTelLogs:
    """An SDK LoggerProvider exporting in memory, its handler on the ``shannon_otel`` logger."""

    def __init__(self) -> None:
        self.exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        with warnings.catch_warnings():  # the SDK handler is deprecated for the contrib one (same API)
            warnings.simplefilter("ignore", DeprecationWarning)
            self.handler = LoggingHandler(logger_provider=self.provider)

    def ids(self) -> list[tuple[str, int, int]]:
        """(body, trace id, span id) of every exported record."""
        return [(str(r.log_record.body), r.log_record.trace_id or 0, r.log_record.span_id or 0)
                for r in self.exporter.get_finished_logs()]


@pytest.fixture
def otel_logs() -> Iterator[OTelLogs]:
    logs = OTelLogs()
    logger = logging.getLogger("shannon_otel")
    logger.addHandler(logs.handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield logs
    logger.removeHandler(logs.handler)
    logger.setLevel(old)
    logs.provider.shutdown()


def ids_of(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def flaky(failures: int, error: type[Exception] = ConnectionError) -> Any:
    left = [failures]

    async def fn() -> str:
        if left[0]:
            left[0] -= 1
            raise error("secret-token-123")
        return "ok"

    return fn


# --------------------------------------------------------------------------- each event's record
def test_a_scheduled_retry_is_a_warning_with_the_span_fields_under_the_operation_span(
    caplog_all: pytest.LogCaptureFixture, otel_logs: OTelLogs,
) -> None:
    tel, clock = Telemetry(), FakeClock()
    policy = Retry(name="search-api", attempts=3, initial=0.42, jitter="none", clock=clock, sleep=clock.sleep,
                   **tel.kw)
    assert run(policy.call(flaky(2))) == "ok"
    assert _Default.hook is not None
    _Default.hook.flush()  # the second retry of search-api came within the flood interval: held back until now
    assert [summary(r) for r in ours(caplog_all)] == [
        ("shannon_otel.retry", logging.WARNING, "retrying 'search-api' after 0.42 s (attempt 2/3): ConnectionError", {
            t.LOG_EVENT_NAME: "shannon.retry.scheduled", t.OPERATION: "search-api", t.ATTEMPT: 1,
            t.RETRY_DELAY: 0.42, t.RETRY_MAX_ATTEMPTS: 3, t.ERROR_TYPE: "ConnectionError"}),
        ("shannon_otel.retry", logging.WARNING, "retrying 'search-api' after 0.84 s (attempt 3/3): ConnectionError", {
            t.LOG_EVENT_NAME: "shannon.retry.scheduled", t.OPERATION: "search-api", t.ATTEMPT: 2,
            t.RETRY_DELAY: 0.84, t.RETRY_MAX_ATTEMPTS: 3, t.ERROR_TYPE: "ConnectionError"}),
    ]
    assert "secret-token-123" not in caplog_all.text  # no exception message unless asked for
    # Trace correlation: the SDK's LoggingHandler stamps the operation span's ids on the record written
    # during the call; the held-back one, flushed outside any span, has none.
    operation = tel.span("search-api")
    assert [(trace_id, span_id) for _, trace_id, span_id in otel_logs.ids()] == [ids_of(operation), (0, 0)]


def test_breaker_transitions_and_a_rejection_carry_their_levels_and_the_calling_span(
    caplog_all: pytest.LogCaptureFixture, otel_logs: OTelLogs,
) -> None:
    tel, clock = Telemetry(), FakeClock()
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=5, clock=clock, **tel.kw)

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(flaky(1))
        with pytest.raises(CircuitOpenError):
            await breaker.call(flaky(0))
        clock.now += 5
        assert await breaker.call(flaky(0)) == "ok"

    run(main())
    opened = {t.BREAKER_NAME: "db", t.BREAKER_FROM: "closed", t.BREAKER_TO: "open"}
    assert [summary(r) for r in ours(caplog_all)] == [
        ("shannon_otel.breaker", logging.ERROR, "circuit breaker 'db' is open (was closed): failure_threshold", {
            t.LOG_EVENT_NAME: "shannon.breaker.opened", **opened, t.BREAKER_REASON: "failure_threshold"}),
        ("shannon_otel.breaker", logging.WARNING, "rejected a call to 'db': circuit breaker 'db' is open", {
            t.LOG_EVENT_NAME: "shannon.call.rejected", t.OPERATION: "db", t.BREAKER_NAME: "db",
            t.BREAKER_STATE: "open"}),
        ("shannon_otel.breaker", logging.WARNING,
         "circuit breaker 'db' is half_open (was open): reset_timeout", {
             t.LOG_EVENT_NAME: "shannon.breaker.half_opened", t.BREAKER_NAME: "db", t.BREAKER_FROM: "open",
             t.BREAKER_TO: "half_open", t.BREAKER_REASON: "reset_timeout"}),
        ("shannon_otel.breaker", logging.INFO, "circuit breaker 'db' is closed (was half_open): probe_success", {
            t.LOG_EVENT_NAME: "shannon.breaker.closed", t.BREAKER_NAME: "db", t.BREAKER_FROM: "half_open",
            t.BREAKER_TO: "closed", t.BREAKER_REASON: "probe_success"}),
    ]
    calls = [s for s in tel.spans() if s.name == "db"]
    assert len(calls) == 3
    # Each record carries the span of the call that caused it (transitions: the attempt under it).
    got = otel_logs.ids()
    assert got[1][1:] == ids_of(calls[1])
    for (_, trace_id, span_id), call in zip([got[0], got[2], got[3]], [calls[0], calls[2], calls[2]], strict=True):
        assert trace_id == ids_of(call)[0]
        assert span_id in {ids_of(call)[1], *(ids_of(c)[1] for c in tel.children(call))}


def test_a_timeout_is_an_error_record(caplog_all: pytest.LogCaptureFixture, otel_logs: OTelLogs) -> None:
    tel = Telemetry()
    policy = Timeout(0.25, name="slow-api", **tel.kw)

    async def hang() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await policy.call(hang)

    run_virtual(main())
    assert [summary(r) for r in ours(caplog_all)] == [
        ("shannon_otel.timeout", logging.ERROR, "'slow-api' timed out after 0.25 s", {
            t.LOG_EVENT_NAME: "shannon.timed_out", t.OPERATION: "slow-api", t.TIMEOUT_LIMIT: 0.25}),
    ]
    assert [(tr, sp) for _, tr, sp in otel_logs.ids()] == [ids_of(tel.span("slow-api"))]


def test_a_limit_or_delay_under_5_ms_is_logged_as_it_is_not_as_zero(caplog_all: pytest.LogCaptureFixture) -> None:
    # "%.2f" logged a Timeout(0.001) as "timed out after 0.00 s" (a limit no Timeout can have) and a 1 ms
    # backoff as "retrying in 0.00 s". The fields always had the exact numbers; the messages now say them too.
    tel = Telemetry()
    timeout = Timeout(0.001, name="cache", **tel.kw)
    retry = Retry(attempts=2, initial=0.002, maximum=0.002, jitter="none", name="db", **tel.kw)

    async def hang() -> None:
        await asyncio.sleep(10)

    async def fail() -> None:
        raise ConnectionError

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await timeout.call(hang)
        with pytest.raises(ConnectionError):
            await retry.call(fail)

    run_virtual(main())
    assert [r.getMessage() for r in ours(caplog_all)] == [
        "'cache' timed out after 0.001 s", "retrying 'db' after 0.002 s (attempt 2/2): ConnectionError",
    ]


def test_a_fallback_and_a_degradation_are_warnings(
    caplog_all: pytest.LogCaptureFixture, otel_logs: OTelLogs,
) -> None:
    tel = Telemetry()

    async def spare(error: Exception) -> str:
        return "spare"

    fallback = Fallback(spare, name="quotes", **tel.kw)
    degrade = Degrade(name="prices", default="stale", on=ConnectionError, **tel.kw)

    async def main() -> None:
        assert await fallback.call(flaky(1)) == "spare"
        served = await degrade.call(flaky(1))
        assert served.value == "stale"

    run(main())
    assert [summary(r) for r in ours(caplog_all)] == [
        ("shannon_otel.fallback", logging.WARNING, "falling back for 'quotes' (failure): ConnectionError", {
            t.LOG_EVENT_NAME: "shannon.fallback", t.OPERATION: "quotes", t.FALLBACK_REASON: "failure",
            t.ERROR_TYPE: "ConnectionError"}),
        ("shannon_otel.degrade", logging.WARNING,
         "serving a degraded result for 'prices' (static, failure): ConnectionError", {
             t.LOG_EVENT_NAME: "shannon.degraded", t.OPERATION: "prices", t.DEGRADE_MODE: "static",
             t.DEGRADE_REASON: "failure", t.ERROR_TYPE: "ConnectionError"}),
    ]
    # Both under their operation's span (the fallback's record is written before the fallback span starts).
    assert [(tr, sp) for _, tr, sp in otel_logs.ids()] == [ids_of(tel.span("quotes")), ids_of(tel.span("prices"))]


def test_compensations_that_ran_and_failed(caplog_all: pytest.LogCaptureFixture, otel_logs: OTelLogs) -> None:
    tel = Telemetry()
    saga = Saga("order", **tel.kw)

    async def ok() -> str:
        return "done"

    async def undo(value: object) -> None:
        return None

    async def broken_undo(value: object) -> None:
        raise ValueError("card 4242")

    async def main() -> None:
        with pytest.raises(SagaError):
            await saga.run(Step("reserve", ok, undo), Step("charge", ok, broken_undo), Step("ship", flaky(1)))

    run(main())
    assert [summary(r) for r in ours(caplog_all)] == [
        ("shannon_otel.saga", logging.ERROR, "compensation of step 'charge' of saga 'order': failure: ValueError", {
            t.LOG_EVENT_NAME: "shannon.saga.compensation_failed", t.SAGA_NAME: "order", t.SAGA_STEP: "charge",
            t.COMPENSATION_OUTCOME: "failure", t.ERROR_TYPE: "ValueError"}),
        ("shannon_otel.saga", logging.WARNING, "compensated step 'reserve' of saga 'order'", {
            t.LOG_EVENT_NAME: "shannon.saga.compensated", t.SAGA_NAME: "order", t.SAGA_STEP: "reserve",
            t.COMPENSATION_OUTCOME: "success"}),
    ]
    assert "4242" not in caplog_all.text
    # Written while the compensation's own span is current.
    spans = [tel.span("compensate charge"), tel.span("compensate reserve")]
    assert [(tr, sp) for _, tr, sp in otel_logs.ids()] == [ids_of(s) for s in spans]


def test_anomaly_events_from_warning_up_through_the_default_hook(
    caplog_all: pytest.LogCaptureFixture, otel_logs: OTelLogs,
) -> None:
    tel = Telemetry()
    (joined,) = resolve_hooks(None, tel.tracer_provider, tel.meter_provider)
    assert isinstance(joined, _Joined)
    tracer = tel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("culprit") as span:
        pass
    context = span.get_span_context()
    culprit = format(context.trace_id, "032x"), format(context.span_id, "016x")
    with tracer.start_as_current_span("scoring"):  # the hook protocol calls anomaly() in the work's context
        joined.anomaly(Anomaly("checkout", "latency", 0.2, None, 1.0, None, None, 0.5))  # a plain score: no record
        joined.anomaly(Anomaly("checkout", "latency", 0.991, Severity.WARNING, 2.5, *culprit, 1.0))
        joined.anomaly(Anomaly("checkout", "error_rate", 0.9999, Severity.CRITICAL, 0.4, None, None, 2.0))
    base = {t.LOG_EVENT_NAME: "shannon.anomaly", t.ANOMALY_SERIES: "checkout"}
    assert [summary(r) for r in ours(caplog_all)] == [
        ("shannon_otel.anomaly", logging.WARNING, "warning latency anomaly on 'checkout': latency = 2.5 (score 0.991)",
         {**base, t.ANOMALY_SIGNAL: "latency", t.ANOMALY_SCORE_ATTR: 0.991, t.ANOMALY_SEVERITY: "warning",
          t.ANOMALY_VALUE: 2.5}),
        ("shannon_otel.anomaly", logging.ERROR,
         "critical error_rate anomaly on 'checkout': error_rate = 0.4 (score 1.000)",
         {**base, t.ANOMALY_SIGNAL: "error_rate", t.ANOMALY_SCORE_ATTR: 0.9999, t.ANOMALY_SEVERITY: "critical",
          t.ANOMALY_VALUE: 0.4}),
    ]
    # the culprit's ids, not the scoring span's; none for an anomaly naming none (tests/test_log_trace_context.py)
    assert [(tr, sp) for _, tr, sp in otel_logs.ids()] == [(context.trace_id, context.span_id), (0, 0)]


def test_exception_messages_only_when_asked_for(caplog_all: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    hook = LoggingHook(exception_messages=True)
    policy = Retry(name="op", attempts=2, initial=1, jitter="none", clock=clock, sleep=clock.sleep, hooks=[hook],
                   instrument=False)
    assert run(policy.call(flaky(1))) == "ok"
    (record,) = ours(caplog_all)
    assert record.getMessage() == "retrying 'op' after 1.00 s (attempt 2/2): ConnectionError: 'secret-token-123'"
    assert fields(record)[t.EXCEPTION_MESSAGE] == "secret-token-123"


# --------------------------------------------------------------------------- floods
def test_an_open_breaker_rejecting_a_storm_writes_one_line_per_interval(caplog_all: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    hook = LoggingHook(clock=clock)
    breaker = CircuitBreaker("search", clock=clock, hooks=[hook], instrument=False)
    breaker.force_open()

    async def main() -> None:
        for i in range(25_000):  # 1,000 rejections per second for 25 s
            clock.now = 1000.0 + i / 1000
            with pytest.raises(CircuitOpenError):
                await breaker.call(flaky(0))

    run(main())
    hook.flush()
    records = [r for r in ours(caplog_all) if getattr(r, t.LOG_EVENT_NAME) == t.LOG_EVENT_REJECTED]
    messages = [r.getMessage() for r in records]
    assert messages[0] == "rejected a call to 'search': circuit breaker 'search' is open"  # the first at once
    assert messages[1] == "rejected 10,000 calls to 'search' in the last 10 s: circuit breaker 'search' is open"
    assert len(records) == 4  # first, two summaries, the flushed rest
    assert sum(getattr(r, t.LOG_REPEATS, 1) for r in records) == 25_000  # every rejection accounted for
    assert all(getattr(r, t.LOG_INTERVAL, 0) <= 10.0 + 1e-6 for r in records)


def test_summaries_of_a_retry_storm_and_the_memory_bound(caplog_all: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    hook = LoggingHook(clock=clock, max_keys=2, interval_s=10)
    policies = [Retry(name=f"op{i}", attempts=2, initial=0, jitter="none", clock=clock, sleep=clock.sleep,
                      hooks=[hook], instrument=False) for i in range(3)]

    async def main() -> None:
        for policy in policies[:2]:
            for _ in range(5):
                await policy.call(flaky(1))
        await policies[2].call(flaky(1))  # a third key evicts op0, whose 4 held-back retries are told

    run(main())
    messages = [r.getMessage() for r in ours(caplog_all)]
    assert messages == [
        "retrying 'op0' after 0.00 s (attempt 2/2): ConnectionError",
        "retrying 'op1' after 0.00 s (attempt 2/2): ConnectionError",
        "retried 'op0' 4 times in the last 0 s (last: attempt 2/2 after 0.00 s: ConnectionError)",
        "retrying 'op2' after 0.00 s (attempt 2/2): ConnectionError",
    ]
    assert len(hook._limiter._windows) == 2


def test_a_raising_handler_never_costs_the_result(caplog_all: pytest.LogCaptureFixture) -> None:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler down")

    broken = Broken()
    logger = logging.getLogger("shannon_otel.retry")
    logger.addHandler(broken)
    try:
        clock = FakeClock()
        hook = LoggingHook()
        policy = Retry(name="op", attempts=3, clock=clock, sleep=clock.sleep, hooks=[hook], instrument=False)
        assert run(policy.call(flaky(2))) == "ok"
    finally:
        logger.removeHandler(broken)
    assert hook.errors >= 1


# --------------------------------------------------------------------------- switches and wiring
def test_the_default_rides_on_the_otel_hook_and_costs_an_unwatched_call_nothing() -> None:
    (first,) = resolve_hooks(None, None, None)  # global providers unset: the OTel hook watches nothing
    assert isinstance(first, _Joined)
    from shannon_otel._events import CallStarted

    assert first.call_started(CallStarted("op", "retry")) is None  # so the policy takes its fast path
    explicit = LoggingHook()
    hooks = resolve_hooks([explicit], None, None)
    assert not isinstance(hooks[0], _Joined) and hooks[1] is explicit  # an explicit hook replaces the default
    assert resolve_hooks(None, None, None, instrument=False) == ()


def test_a_failing_otel_hook_is_logged_once_under_its_own_name(caplog_all: pytest.LogCaptureFixture) -> None:
    """The default logging hook is joined to the OTel hook anew for each entry point: a failing OTel hook (here a
    broken TracerProvider) was logged, traceback and all, once per wave or policy built, as the private
    ``shannon_otel._logs._joined._Joined``. Now it is the OTel hook's failure: logged once, counted on it."""
    from opentelemetry.sdk.trace import TracerProvider

    class Broken(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            tracer = super().get_tracer(*args, **kwargs)

            class Tracer:
                def __getattr__(self, name: str) -> Any:
                    return getattr(tracer, name)

                def start_span(self, *args: Any, **kwargs: Any) -> Any:
                    raise RuntimeError("start_span failed")

            return Tracer()

    tel, clock = Telemetry(), FakeClock()
    broken = Broken()

    async def one() -> str:
        return "ok"

    for _ in range(3):
        policy = Retry(name="op", clock=clock, sleep=clock.sleep, tracer_provider=broken,
                       meter_provider=tel.meter_provider)
        assert run(policy.call(one)) == "ok"
    failed = [r.getMessage() for r in caplog_all.records if "failed in call_started" in r.getMessage()]
    assert len(failed) == 1 and failed[0].startswith("hook shannon_otel._otel.OTelHook failed"), failed
    (joined,) = resolve_hooks(None, broken, tel.meter_provider)
    assert joined.__wrapped__.hook_errors == {"call_started": 3}  # type: ignore[attr-defined]


def test_off_by_environment_variable(monkeypatch: pytest.MonkeyPatch, caplog_all: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SHANNON_OTEL_LOGS", "off")
    tel, clock = Telemetry(), FakeClock()
    (first,) = resolve_hooks(None, tel.tracer_provider, tel.meter_provider)
    assert not isinstance(first, _Joined)
    policy = Retry(name="op", attempts=3, clock=clock, sleep=clock.sleep, **tel.kw)
    assert run(policy.call(flaky(2))) == "ok"
    assert ours(caplog_all) == []


def test_an_unknown_environment_value_is_read_as_on_with_one_warning_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog_all: pytest.LogCaptureFixture,
) -> None:
    # Before: SHANNON_OTEL_LOGS=of (a typo of off) left the default hook on without a word.
    monkeypatch.setenv("SHANNON_OTEL_LOGS", "of")
    tel = Telemetry()
    for _ in range(3):  # every entry point asks: one warning, not one each
        (first,) = resolve_hooks(None, tel.tracer_provider, tel.meter_provider)
        assert isinstance(first, _Joined)
    warned = [r.getMessage() for r in caplog_all.records if "SHANNON_OTEL_LOGS" in r.getMessage()]
    assert warned == ["SHANNON_OTEL_LOGS='of' is not on or off (off: 0, false, no, none, off); read as on"]
    assert [r.levelno for r in caplog_all.records if "SHANNON_OTEL_LOGS" in r.getMessage()] == [logging.WARNING]
    caplog_all.clear()
    for value in ("on", "ON", "1", "yes", "true", " "):
        monkeypatch.setenv("SHANNON_OTEL_LOGS", value)
        resolve_hooks(None, tel.tracer_provider, tel.meter_provider)
    assert not [r for r in caplog_all.records if "SHANNON_OTEL_LOGS" in r.getMessage()]


def test_levels_and_the_off_argument(caplog_all: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()

    def retried(hook: LoggingHook) -> list[logging.LogRecord]:
        caplog_all.clear()
        policy = Retry(name="op", attempts=2, clock=clock, sleep=clock.sleep, hooks=[hook], instrument=False)
        assert run(policy.call(flaky(1))) == "ok"
        return ours(caplog_all)

    assert [r.levelno for r in retried(LoggingHook(levels={t.EVENT_RETRY_SCHEDULED: logging.INFO}))] == [
        logging.INFO]
    assert retried(LoggingHook(levels={t.EVENT_RETRY_SCHEDULED: None})) == []
    assert retried(LoggingHook(enabled=False)) == []
    logging.getLogger("shannon_otel.retry").setLevel(logging.ERROR)  # plain logging configuration works too
    try:
        assert retried(LoggingHook()) == []
    finally:
        logging.getLogger("shannon_otel.retry").setLevel(logging.NOTSET)
    with pytest.raises(ValueError, match="levels: unknown event 'retry'"):
        LoggingHook(levels={"retry": logging.INFO})
    with pytest.raises(ValueError, match="interval_s"):
        LoggingHook(interval_s=-1)
    with pytest.raises(ValueError, match="max_keys"):
        LoggingHook(max_keys=0)


@pytest.mark.parametrize("level", [0, -5])
def test_a_level_of_notset_or_below_is_refused_naming_the_event(level: int) -> None:
    # It was taken, and the event never logged (no logger with a level enables 0 or below): "0 = off"
    # silenced it without a word, where None is the documented switch.
    with pytest.raises(ValueError, match=r"levels\['shannon.retry.scheduled'\] must be a logging level in \[1, inf\)"):
        LoggingHook(levels={t.EVENT_RETRY_SCHEDULED: level})
    assert LoggingHook(levels={t.EVENT_RETRY_SCHEDULED: 1}).enabled  # the lowest real level is fine


def test_breaker_transitions_are_logged_without_an_sdk(caplog_all: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("cache", failure_threshold=1, clock=clock)  # global providers: none set

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(flaky(1))

    run(main())
    assert [r.getMessage() for r in ours(caplog_all)] == [
        "circuit breaker 'cache' is open (was closed): failure_threshold"]


def test_structlog_stdlib_integration_sees_the_same_fields() -> None:
    structlog = pytest.importorskip("structlog")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
    ))
    logger = logging.getLogger("shannon_otel")
    logger.addHandler(handler)
    try:
        clock = FakeClock()
        policy = Retry(name="op", attempts=2, initial=1, jitter="none", clock=clock, sleep=clock.sleep,
                       hooks=[LoggingHook()], instrument=False)
        assert run(policy.call(flaky(1))) == "ok"
    finally:
        logger.removeHandler(handler)
    (line,) = lines
    assert json.loads(line) == {
        "event": "retrying 'op' after 1.00 s (attempt 2/2): ConnectionError", "level": "warning",
        t.LOG_EVENT_NAME: "shannon.retry.scheduled", t.OPERATION: "op", t.ATTEMPT: 1, t.RETRY_DELAY: 1.0,
        t.RETRY_MAX_ATTEMPTS: 2, t.ERROR_TYPE: "ConnectionError",
    }


# --------------------------------------------------------------------------- the limiter as a state machine
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 7)), max_size=200), st.integers(1, 8))
def test_the_limiter_accounts_for_every_occurrence_and_writes_at_most_one_record_per_key_per_interval(
    steps: list[tuple[int, float]], max_keys: int,
) -> None:
    now = [0.0]
    limiter: Limiter[int] = Limiter(10.0, max_keys, lambda: now[0])
    accounted = 0
    written: dict[int, list[float]] = {}
    for key, advance in steps:
        now[0] += advance
        n, _, evicted = limiter.admit(key, key)
        for _, count, _ in evicted:
            accounted += count
        if n:
            accounted += n
            written.setdefault(key, []).append(now[0])
        assert len(limiter._windows) <= max_keys  # bounded memory
    accounted += sum(count for _, count, _ in limiter.drain())
    assert accounted == len(steps)  # nothing lost, nothing counted twice
    if max_keys > 5:  # no eviction: windows never restart early
        for times in written.values():
            assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))
