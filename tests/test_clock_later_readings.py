"""A clock that fails once user code has run never costs what that code gave: the readings past the first.

tests/test_clock_after_the_call.py holds the rule for one policy call; these are the readings it did not cover. A
retry with ``budget_s`` reading its clock between attempts raised the clock's error in place of the operation's
own; a wave timing a task (or itself, or the start of a batch, or a streamed task's queue wait) delivered the
task's result and then raised the clock's error, so ``run()`` lost every result. Now the operation's outcome is
what the caller gets, durations the clock could not time are 0, and the clock's error is logged (warning).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _failing_clock import BAD_READINGS, FailingClock

import shannon_otel as so
from shannon_otel.testing import InMemoryTelemetry, run_virtual


def _clock_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "shannon_otel" and r.levelno == logging.WARNING and "clock" in r.getMessage()]


@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_retry_budget_whose_clock_fails_between_attempts_raises_the_operations_error(
    bad: float | str, watched: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """The clock's ValueError/RuntimeError was raised in place of the attempt's KeyError. Now the retrying stops
    (a budget it cannot check is never overrun) and the attempt's error is raised."""
    clock = FailingClock()
    tel = InMemoryTelemetry()
    retry = so.Retry(attempts=5, budget_s=60.0, initial=0.0, clock=clock,
                     **(tel.providers if watched else {"instrument": False}))
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        clock.bad = bad
        raise KeyError("down")

    with caplog.at_level(logging.WARNING, logger="shannon_otel"), pytest.raises(KeyError, match="down"):
        run_virtual(retry.call(operation))
    assert runs == [1]
    assert _clock_warnings(caplog)
    assert all(s.end_time is not None for s in tel.spans())


def test_a_retry_budget_whose_clock_recovers_is_not_affected() -> None:
    """Control: a clock that reads throughout retries within the budget as before."""
    clock = FailingClock()
    runs: list[int] = []

    async def operation() -> int:
        runs.append(1)
        if len(runs) < 3:
            raise KeyError("down")
        return 42

    retry = so.Retry(attempts=5, budget_s=60.0, initial=0.0, clock=clock, instrument=False)
    assert run_virtual(retry.call(operation)) == 42
    assert runs == [1, 1, 1]


async def _value(n: int) -> int:
    return n


def _wave(clock: FailingClock, watched: bool, tel: InMemoryTelemetry, **kw: Any) -> so.Wave[int]:
    return so.Wave("w", clock=clock, **(tel.providers if watched else {"instrument": False}), **kw)


@pytest.mark.parametrize("watched", [False, True], ids=["unwatched", "watched"])
@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_wave_keeps_every_result_when_its_clock_fails_as_a_task_runs(
    bad: float | str, watched: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """The wave delivered the task's result, then raised the clock's error: run() raised it, every result lost."""
    clock = FailingClock()
    tel = InMemoryTelemetry()

    async def breaks() -> int:
        clock.bad = bad
        return 7

    wave = _wave(clock, watched, tel, max_concurrency=1)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        done = run_virtual(wave.run([lambda: _value(1), breaks, lambda: _value(2)]))
    first, second, third = done.results
    assert (first.value, second.value) == (1, 7)
    assert (first.outcome, second.outcome) == (so.Outcome.SUCCESS, so.Outcome.SUCCESS)
    assert second.duration_s == 0.0
    # the next task started after the clock broke: refused at its start reading, naming clock (nothing ran)
    assert third.outcome is so.Outcome.FAILURE and "clock" in str(third.error)
    assert done.report.duration_s == 0.0
    assert len(_clock_warnings(caplog)) == 1  # once per run
    assert all(s.end_time is not None for s in tel.spans())


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_batched_wave_with_progress_keeps_its_results_when_its_clock_fails(bad: float | str) -> None:
    """Progress reports (read after each task) and the next batch's start (its queue waits) read the clock too."""
    clock = FailingClock()
    reports: list[Any] = []

    async def breaks() -> int:
        clock.bad = bad
        return 7

    wave = _wave(clock, False, InMemoryTelemetry(), batch_size=1, on_progress=reports.append)
    done = run_virtual(wave.run([lambda: _value(1), breaks, lambda: _value(2)]))
    assert [r.value for r in done.results[:2]] == [1, 7]
    assert done.results[2].outcome is so.Outcome.FAILURE and "clock" in str(done.results[2].error)


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_streamed_wave_keeps_its_results_when_its_clock_fails(bad: float | str) -> None:
    """A stream reads the clock as it takes each task (its queue wait): raised there, the task taken was lost."""
    clock = FailingClock()

    async def breaks() -> int:
        clock.bad = bad
        return 7

    async def main() -> list[Any]:
        wave = _wave(clock, False, InMemoryTelemetry(), max_concurrency=1)
        async with wave.stream([lambda: _value(1), breaks, lambda: _value(2)], buffer=1) as results:
            return [r async for r in results]

    got = sorted(run_virtual(main()), key=lambda r: r.index)
    assert [r.value for r in got[:2]] == [1, 7]
    assert got[2].outcome is so.Outcome.FAILURE and "clock" in str(got[2].error)


@pytest.mark.parametrize("bad", BAD_READINGS, ids=str)
def test_a_saga_whose_clock_fails_during_its_rollback_raises_its_saga_error(
    bad: float | str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The clock times the compensations only: its error was raised after the rollback in place of the SagaError,
    the caller left without the result saying what was compensated."""
    clock = FailingClock()
    undone: list[str] = []
    tel = InMemoryTelemetry()

    async def book() -> str:
        return "booked"

    async def undo(value: str) -> None:
        clock.bad = bad
        undone.append(value)

    async def pay() -> None:
        raise KeyError("declined")

    saga = so.Saga("trip", clock=clock, **tel.providers)
    with caplog.at_level(logging.WARNING, logger="shannon_otel"), pytest.raises(so.SagaError) as raised:
        run_virtual(saga.run(so.Step("book", book, compensate=undo), so.Step("pay", pay)))
    assert undone == ["booked"]
    assert raised.value.result.compensated == ("book",)
    assert isinstance(raised.value.__cause__, KeyError)
    assert _clock_warnings(caplog)
    assert all(s.end_time is not None for s in tel.spans())
