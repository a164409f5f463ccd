"""Privacy defaults (issue 11 deliver 5): what telemetry may carry of the user's data.

Metric attributes hold declared names only (wave, operation, breaker, saga, step, outcome, error
type), never task arguments, exception messages or other user strings; exception messages on
spans go through ``configure(redact=...)``; every default endpoint and bind address is loopback.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _user_calls import _ok
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import shannon_otel as so
from shannon_otel import CallObserver, Hook, HookFailed, LoggingHook, Retry, Wave
from shannon_otel._redact import drop_messages
from shannon_otel.testing import InMemoryTelemetry, run_virtual

SECRETS = ("4111-1111-1111-1111", "hunter2-password", "alice@example.com", "sk-live-TOKEN")


async def _workload(providers: dict[str, Any]) -> None:
    """Every entry point, fed secret-looking arguments and failing with secret-looking messages."""
    card, password, email, token = SECRETS

    async def charge(item: str) -> str:
        so.record("amount", 12.5)
        if item.endswith("1"):
            raise ValueError(f"card {item} declined for {email}")
        return item

    wave: so.Wave[Any] = so.Wave("checkout", max_concurrency=4, task_timeout=5.0, **providers)
    await wave.map(charge, [f"{card}-{i}" for i in range(6)])
    await wave.run([so.task(lambda: charge(password + "1"), name="pay")])

    breaker = so.CircuitBreaker("payments", failure_threshold=2, reset_timeout=1.0, **providers)
    policy = so.Pipeline(
        so.Fallback(lambda exc: _value(f"fallback after {exc}")),
        so.Retry(attempts=3, initial=0.01, budget_s=10.0),
        breaker,
        so.Timeout(1.0),
        name="charge-api", **providers,
    )

    async def flaky(secret: str) -> str:
        raise ConnectionError(f"refused: token={secret}")

    for _ in range(3):
        await policy.call(flaky, token)
    hedge = so.Hedge(0.01, name="hedged", **providers)
    await hedge.call(lambda: _value(token))
    degrade = so.Degrade(default="cached", name="degraded", **providers)
    await degrade.call(lambda: _raise(TimeoutError(f"slow for {email}")))

    saga = so.Saga("order", **providers)

    async def undo(value: str) -> None:
        raise OSError(f"cannot refund {value} to {card}")

    try:
        async with saga.begin() as tx:
            await tx.step("reserve", lambda: _value(f"{password}-reservation"), compensate=undo)
            raise RuntimeError(f"boom {token}")
    except so.SagaError:
        pass


async def _value(v: str) -> str:
    await asyncio.sleep(0)
    return v


async def _raise(error: BaseException) -> str:
    raise error


def test_no_metric_point_carries_arguments_messages_or_user_strings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shannon_otel")
    tel = InMemoryTelemetry()
    run_virtual(_workload(tel.providers))
    metrics = tel.metrics()
    assert {"shannon.wave.tasks", "shannon.compensations"} <= set(metrics) or len(metrics) > 5
    scanned = 0
    for name, metric in metrics.items():
        for point in metric.data.data_points:
            for key, value in (point.attributes or {}).items():
                scanned += 1
                for secret in SECRETS:
                    assert secret not in str(key) and secret not in str(value), (name, key, value)
                # a message would show as prose: attribute values are names, outcomes and type names
                assert " " not in str(value) or key == "shannon.anomaly.message", (name, key, value)
    assert scanned > 30  # the workload really produced attributed points
    # The default logging hook logs the failures by type, never with their messages.
    assert caplog.records
    for record in caplog.records:
        for secret in SECRETS:
            assert secret not in record.getMessage()


def _exported(redact: Any) -> list[Any]:
    memory = InMemorySpanExporter()
    tel = so.configure("privacy-test", exporter="none", span_exporters=[memory], set_global=False, redact=redact)
    try:
        async def fail() -> None:
            raise ValueError(f"card {SECRETS[0]} declined")  # from a variable: not in the traceback's source line

        async def main() -> None:
            wave: so.Wave[None] = so.Wave("w", tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
            await wave.run([fail])
            retry = so.Retry(attempts=2, initial=0.0, tracer_provider=tel.tracer_provider,
                             meter_provider=tel.meter_provider, name="r")
            try:
                await retry.call(fail)
            except ValueError:
                pass

        run_virtual(main())
        tel.force_flush(5.0)
    finally:
        tel.shutdown()
    return list(memory.get_finished_spans())


def _texts(spans: list[Any]) -> str:
    parts: list[str] = []
    for s in spans:
        parts.append(s.status.description or "")
        for event in s.events:
            parts.extend(str(v) for v in (event.attributes or {}).values())
    return "\n".join(parts)


def test_exception_messages_on_spans_pass_through_the_redact_hook() -> None:
    kept = _texts(_exported(None))
    assert "card 4111-1111-1111-1111 declined" in kept  # the documented default: messages kept

    dropped = _exported(drop_messages)
    text = _texts(dropped)
    assert "4111" not in text
    events = [e for s in dropped for e in s.events if e.name == "exception"]
    assert events and all(e.attributes["exception.type"] == "ValueError" for e in events)
    assert all("exception.message" not in e.attributes for e in events)
    assert any(s.status.description == "ValueError" for s in dropped)  # the task span keeps the type

    masked = _texts(_exported(lambda type_name, message: message.replace("4111-1111-1111-1111", "****")))
    assert "card **** declined" in masked and "4111" not in masked


def test_a_failing_redact_drops_the_message() -> None:
    def broken(type_name: str, message: str) -> str:
        raise RuntimeError("bug in redact")

    assert "4111" not in _texts(_exported(broken))


def test_every_default_endpoint_and_bind_address_is_loopback() -> None:
    from shannon_otel.cli import _check

    assert inspect.signature(so.MetricsServer).parameters["host"].default == "127.0.0.1"
    assert all(url.startswith("http://127.0.0.1:") for url in _check.DEFAULT_OTLP.values())
    assert _check.DEFAULT_PROMETHEUS.startswith("http://127.0.0.1:")
    # No wildcard bind address anywhere in the package (string constants only, comments aside).
    root = Path(so.__file__).parent
    wildcard = [
        (path.name, node.value) for path in root.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in ("0.0.0.0", "::")
    ]
    assert wildcard == []


def _stacktraces_with(redact: Any, error: Callable[[], BaseException]) -> list[str]:
    from shannon_otel import configure

    memory = InMemorySpanExporter()
    handle = configure("probe", exporter="none", span_exporters=[memory], set_global=False, redact=redact)
    try:
        async def fail() -> None:
            raise error()

        async def main() -> None:
            wave: Wave[None] = Wave("w", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider)
            with contextlib.suppress(BaseExceptionGroup), \
                    handle.tracer_provider.get_tracer("user").start_as_current_span("user"):
                await wave.run([fail], raise_errors=True)  # a WaveError (an ExceptionGroup) through the user span

        run_virtual(main())
        handle.force_flush(5.0)
    finally:
        handle.shutdown()
    return [str(e.attributes["exception.stacktrace"]) for s in memory.get_finished_spans() for e in s.events
            if e.name == "exception" and e.attributes]


def _noted() -> BaseException:
    error = ValueError("login failed")
    error.add_note("password=hunter2")
    return error


@pytest.mark.parametrize("error", [
    lambda: ValueError("login failed\npassword=hunter2"),
    lambda: ValueError("login failed\n  password=hunter2"),
    _noted,
], ids=["multi-line", "indented-line", "note"])
def test_redaction_covers_every_line_of_a_message_and_exception_groups(error: Callable[[], BaseException]) -> None:
    # exception.stacktrace was redacted line by line: the second line of a message, a note, and every
    # sub-exception of an exception group (WaveError, the "  | ValueError: ..." lines) went out as they were.
    traces = _stacktraces_with(drop_messages, error)
    assert len(traces) == 2 and any("| ValueError" in t for t in traces)  # the task span's and the user span's
    assert all("hunter2" not in t and "File " in t for t in traces)
    masked = _stacktraces_with(lambda type_name, message: message.replace("hunter2", "***"), error)
    assert all("hunter2" not in t and "password=***" in t and "login failed" in t for t in masked)



@pytest.mark.parametrize("line", ["| hunter2", "  | hunter2"])
def test_a_message_line_that_looks_like_a_margin_is_redacted(line: str) -> None:
    # A message's line beginning like an exception group's margin was split off the message by that margin; the
    # rest, a bare word such as a key, was read as an exception type and kept: "ValueError: ...\n| hunter2".
    error = lambda: ValueError(f"login failed\n{line}")  # noqa: E731
    traces = _stacktraces_with(drop_messages, error)
    assert len(traces) == 2 and all("File " in t for t in traces)
    assert all("hunter2" not in t and "login failed" not in t for t in traces)
    masked = _stacktraces_with(lambda type_name, message: message.replace("hunter2", "***"), error)
    assert all("hunter2" not in t and "login failed" in t and "| ***" in t for t in masked)

@pytest.mark.parametrize("lines", [
    "+------+\nhunter2\nuser: bob", "+-hunter2", "  +-+---- 1 ----\n    | hunter2", "and 2 more exceptions\nhunter2",
], ids=["table-rule", "rule-prefix", "group-separator", "elision-line"])
def test_a_message_line_that_looks_like_a_group_separator_is_redacted(lines: str) -> None:
    # A message's line beginning like a group's separator ("+-", a table's rule) or elision line ended the message:
    # the lines after it went out unredacted, a bare word ("hunter2") kept as an exception type.
    error = lambda: ValueError(f"login failed\n{lines}")  # noqa: E731
    traces = _stacktraces_with(drop_messages, error)
    assert len(traces) == 2 and all("File " in t for t in traces)
    assert all("hunter2" not in t and "login failed" not in t and "bob" not in t for t in traces)
    masked = _stacktraces_with(lambda type_name, message: message.replace("hunter2", "***"), error)
    assert all("hunter2" not in t and "login failed" in t and "***" in t for t in masked)


_SECRET = "hunter" + "2"  # built, so that no traceback's source line holds it


class _FailingHook(Hook):
    def wave_started(self, event: Any) -> None:
        raise RuntimeError(f"db password={_SECRET} rejected")


def test_redact_applies_to_the_log_records_configure_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    # configure(redact=...) redacted spans only: with the logs signal on, the record of a failing hook (its
    # traceback: exception.message, exception.stacktrace) and LoggingHook(exception_messages=True) records
    # went to the log exporter with the messages redact was set to hide.
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    from shannon_otel import configure

    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    monkeypatch.setattr("shannon_otel._config._log_exporter", lambda *a: memory)
    monkeypatch.setattr("shannon_otel._config._span_exporter", lambda *a: None)
    monkeypatch.setattr("shannon_otel._config._metric_exporter", lambda *a: None)
    handle = configure("probe", exporter="console", logs=True, set_global=False, redact=drop_messages)
    try:
        async def flaky() -> None:
            raise ConnectionError(f"token={_SECRET} refused")

        async def main() -> None:
            wave: Wave[int] = Wave("w", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider,
                                   hooks=(_FailingHook(),))
            await wave.run([_ok()])
            retry = Retry(attempts=2, initial=0.0, name="search", tracer_provider=handle.tracer_provider,
                          meter_provider=handle.meter_provider, hooks=[LoggingHook(exception_messages=True)])
            with contextlib.suppress(ConnectionError):
                await retry.call(flaky)

        run_virtual(main())
        assert handle.force_flush(5.0)
    finally:
        handle.shutdown()
    records = [r.log_record for r in memory.get_finished_logs()]
    hook_failure = [r for r in records if "failed in wave_started" in str(r.body)]
    retried = [r for r in records if str(r.body).startswith("retrying 'search")]
    assert hook_failure and retried
    for record in records:
        assert "hunter2" not in str(record.body) and "hunter2" not in str(dict(record.attributes or {}))
    attributes = dict(hook_failure[0].attributes or {})
    assert attributes["exception.type"] == "RuntimeError" and "wave_started" in str(attributes["exception.stacktrace"])
    assert str(retried[0].body).endswith(": ConnectionError")  # the type stays, the message is gone


@pytest.mark.parametrize("endpoint", ["http://user:s3cr3t@collector:99999", "user:s3cr3t@collector:0",
                                      "https://user:s3cr3t@collector:70000/v1", "ftp://user:s3cr3t@collector"])
def test_a_refused_endpoint_is_quoted_without_its_password(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # configure() refused a malformed endpoint quoting it whole: the password in its userinfo went to the
    # traceback, the terminal and any log collecting it
    with pytest.raises(ValueError, match=r"endpoint must be a URL") as refused:
        so.configure(endpoint=endpoint)
    assert "s3cr3t" not in str(refused.value)
    assert "user:***@collector" in str(refused.value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)  # the variable is checked alike
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_ENDPOINT") as refused:
        so.configure()
    assert "s3cr3t" not in str(refused.value)


def test_a_failing_hooks_record_does_not_carry_the_users_error(caplog: pytest.LogCaptureFixture) -> None:
    """Raised while the user's exception was being handled, the hook's error had it as its context: the record's
    traceback printed it, message and all ("During handling of the above exception..."), though exception messages
    are logged only when asked for. The hook's own chain stays; the user's exception is left as it was."""

    class Listener(Hook):
        def __init__(self) -> None:
            self.errors: list[BaseException] = []

        def hook_failed(self, event: HookFailed) -> None:
            self.errors.append(event.error)

    async def failing() -> None:
        raise ConnectionError(f"token={_SECRET} refused")

    listener = Listener()
    retry = Retry(attempts=1, name="search", hooks=[_HookBugOnFailure(), listener], instrument=False)
    with caplog.at_level(logging.ERROR, logger="shannon_otel"), pytest.raises(ConnectionError) as raised:
        run_virtual(retry.call(failing))
    records = [r for r in caplog.records if "failed in call_finished" in r.getMessage()]
    assert len(records) == 1
    text = logging.Formatter().format(records[0])
    assert "the hook's own bug" in text and "KeyError" in text  # the hook's chain is whole
    assert _SECRET not in text and "ConnectionError" not in text
    assert str(raised.value) == f"token={_SECRET} refused"  # the user's exception, untouched
    (error,) = listener.errors
    assert isinstance(error.__context__, KeyError) and error.__context__.__context__ is raised.value  # chain intact
    assert not error.__context__.__suppress_context__  # hidden for the record only


class _HookBugOnFailure(Hook):
    def call_started(self, event: Any) -> CallObserver:
        class Observer(CallObserver):
            def call_finished(self, event: Any) -> None:
                try:
                    {}[event.outcome]
                except KeyError:
                    raise RuntimeError("the hook's own bug")  # noqa: B904  (the chain a hook makes itself)

        return Observer()


def test_a_hooks_stray_cancelled_errors_record_does_not_carry_the_users_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CancelledError a hook raises is recorded as a RuntimeError caused by it: the user's exception in flight,
    the CancelledError's context, was printed under it."""

    class Cancelling(Hook):
        def call_started(self, event: Any) -> CallObserver:
            class Observer(CallObserver):
                def call_finished(self, event: Any) -> None:
                    done = asyncio.get_running_loop().create_future()
                    done.cancel()
                    done.result()

            return Observer()

    async def failing() -> None:
        raise ConnectionError(f"token={_SECRET} refused")

    retry = Retry(attempts=1, name="search", hooks=[Cancelling()], instrument=False)
    with caplog.at_level(logging.ERROR, logger="shannon_otel"), pytest.raises(ConnectionError):
        run_virtual(retry.call(failing))
    (record,) = [r for r in caplog.records if "failed in call_finished" in r.getMessage()]
    text = logging.Formatter().format(record)
    assert "CancelledError" in text and _SECRET not in text
