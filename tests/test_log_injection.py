"""Names in log messages cannot forge lines or terminal escapes (CWE-117).

Names come from users and from data (task names built from URLs, series, breaker, wave, saga step names, the
reason given to ``Degrade.flag``, exception messages). A wave named "a\\nFAKE LOG LINE" wrote a second, forged line
into a plain-text log, "\\r" overwrote the line on a terminal and "\\x1b[31m" recoloured it: the messages of the
``LoggingHook`` and the executor's own warnings embedded names as they were (``%s``). Now every such name is quoted
as ``%r`` does (newlines, control characters and ESC escaped), while the record's fields (``extra``, the OTel log
attributes) keep the raw value: those are not parsed as lines.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _failing_clock import FailingClock
from _log_records import Records, capturing

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
    Wave,
)
from shannon_otel import _telemetry as t
from shannon_otel._telemetry import Severity
from shannon_otel.testing import FakeClock, run_virtual

NAMES = ["a\nFAKE LOG LINE", "a\rFAKE", "a\x1b[31mRED", "a\u2028FAKE"]


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    with capturing("shannon_otel", Records()) as handler:
        yield handler.records


def _down(message: str = "down") -> Callable[[], Any]:
    async def operation() -> None:
        raise ConnectionError(message)

    return operation


async def _slow() -> None:
    await asyncio.sleep(1.0)


def _retry(name: str) -> None:
    clock = FakeClock()
    retry = Retry(name=name, attempts=2, jitter="none", clock=clock, sleep=clock.sleep, hooks=[LoggingHook()])
    with pytest.raises(ConnectionError):
        run_virtual(retry.call(_down()))


def _exception_message(name: str) -> None:
    clock = FakeClock()
    hook = LoggingHook(exception_messages=True)
    retry = Retry(name="fetch", attempts=2, jitter="none", clock=clock, sleep=clock.sleep, hooks=[hook])
    with pytest.raises(ConnectionError):
        run_virtual(retry.call(_down(name)))


def _breaker(name: str) -> None:  # opened (a transition), then a call rejected
    breaker = CircuitBreaker(name, failure_threshold=1, hooks=[LoggingHook()])
    with pytest.raises(ConnectionError):
        run_virtual(breaker.call(_down()))
    with pytest.raises(CircuitOpenError):
        run_virtual(breaker.call(_down()))


def _rejections_summarised(name: str) -> None:
    clock = FakeClock()
    hook = LoggingHook(clock=clock)
    breaker = CircuitBreaker(name, failure_threshold=1, hooks=[hook])
    with pytest.raises(ConnectionError):
        run_virtual(breaker.call(_down()))
    for _ in range(3):  # the first rejection written, the two others held back
        with pytest.raises(CircuitOpenError):
            run_virtual(breaker.call(_down()))
    hook.flush()  # and written as one summary


def _timeout(name: str) -> None:
    with pytest.raises(TimeoutError):
        run_virtual(Timeout(0.5, name=name, hooks=[LoggingHook()]).call(_slow))


def _fallback(name: str) -> None:
    async def spare(error: Exception) -> str:
        return "spare"

    assert run_virtual(Fallback(spare, name=name, hooks=[LoggingHook()]).call(_down())) == "spare"


def _degrade(name: str) -> None:
    degrade = Degrade(name=name, default="stale", hooks=[LoggingHook()])
    degrade.flag(name)  # the reason is the user's too
    assert run_virtual(degrade.call(_down())).value == "stale"


def _saga(name: str) -> None:
    async def ok() -> str:
        return "done"

    async def undo(value: object) -> None:
        return None

    with pytest.raises(SagaError):
        run_virtual(Saga(name, hooks=[LoggingHook()]).run(Step(name, ok, undo), Step("ship", _down())))


def _anomaly(name: str) -> None:
    LoggingHook().anomaly(Anomaly(name, "latency", 0.9, Severity.WARNING, 2.5, None, None, 0.0))


def _breaker_clock(name: str) -> None:
    clock = FailingClock()

    async def operation() -> None:
        clock.bad = "raise"
        raise ConnectionError("down")

    breaker = CircuitBreaker(name, failure_threshold=1, clock=clock, instrument=False)
    with pytest.raises(ConnectionError):
        run_virtual(breaker.call(operation))


async def _fetch(page: str) -> str:
    await asyncio.sleep(0.1)
    return page


def _wave_input_cut(name: str) -> None:
    tasks: list[Any] = [functools.partial(_fetch, page) for page in ("/c", "/e", "/")]

    async def main() -> None:
        async with Wave[str](name, max_concurrency=1, instrument=False).stream(tasks) as results:
            async for result in results:
                if result.index == 0:
                    tasks.pop(0)

    run_virtual(asyncio.wait_for(main(), 60))


SITES: dict[str, Callable[[str], None]] = {
    "retry scheduled": _retry, "exception message": _exception_message, "breaker transition and rejection": _breaker,
    "summary": _rejections_summarised, "timeout": _timeout, "fallback": _fallback, "degrade": _degrade,
    "saga compensation": _saga, "anomaly": _anomaly, "breaker clock": _breaker_clock,
    "wave input cut": _wave_input_cut,
}


@pytest.mark.parametrize("name", NAMES, ids=["newline", "carriage-return", "escape", "line-separator"])
@pytest.mark.parametrize("site", list(SITES))
def test_a_name_with_control_characters_is_one_escaped_line(
    site: str, name: str, records: list[logging.LogRecord],
) -> None:
    SITES[site](name)
    messages = [r.getMessage() for r in records]
    assert any(repr(name) in m for m in messages), messages  # the site logged, naming the name, quoted
    if site == "summary":
        assert f"rejected 2 calls to {name!r} in the last 0 s: circuit breaker {name!r} is open" in messages
    for record in records:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"  # a traceback (exc_info) follows on lines
        assert len(line.splitlines()) == 1, line
        assert line.isprintable(), line  # no raw newline, CR, ESC, nor any other control character


def test_the_fields_keep_the_raw_name(records: list[logging.LogRecord]) -> None:
    """Structured fields are not parsed as lines: they carry the true value, as spans and metrics do."""
    name = NAMES[0]
    _retry(name)
    _wave_input_cut(name)
    assert [r.__dict__.get(t.OPERATION) for r in records if r.name == "shannon_otel.retry"] == [name]
    assert [r.__dict__.get(t.WAVE_NAME) for r in records if r.__dict__.get(t.LOG_EVENT_NAME) == "shannon.wave.input_cut"
            ] == [name]
