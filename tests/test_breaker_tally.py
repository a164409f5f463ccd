"""What the run report and the CLI say of a breaker, against the transitions a real breaker made (virtual
time, its dependency down for a known time, one call a second). Each test failed before its fix."""

from __future__ import annotations

import asyncio
import io

import pytest

from shannon_otel import BreakerState, BreakerTransition, CircuitBreaker, CircuitOpenError, RunRecorder, RunReport
from shannon_otel.cli._summary import Out, resilience_section
from shannon_otel.testing import FakeClock, run_virtual

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class DownError(Exception):
    pass


def flapping(calls: int, down_s: float, reset_timeout: float) -> RunRecorder:
    """A breaker opened by one failure whose dependency fails for its first ``down_s`` seconds, called once a second."""
    recorder = RunRecorder()

    async def main() -> None:
        clock = asyncio.get_running_loop().time
        start = clock()
        breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout=reset_timeout, clock=clock,
                                 hooks=[recorder], instrument=False)

        async def dependency() -> int:
            if clock() - start < down_s:
                raise DownError
            return 1

        for _ in range(calls):
            try:
                await breaker.call(dependency)
            except (DownError, CircuitOpenError):  # the breaker's counts are the point
                pass
            await asyncio.sleep(1.0)

    run_virtual(main())
    return recorder


def test_a_breaker_that_changed_state_more_often_than_the_recorder_keeps_is_counted_in_full() -> None:
    # Down all along, reset_timeout 1 s: call 0 opens the breaker, each of calls 1..699 is a probe that fails
    # (open -> half_open -> open): 1 + 2 * 699 = 1,399 transitions, 700 openings, 699 failed probes, one outage
    # 699 s old at the last transition. Counted from the newest 1,000 transitions kept, the advice said
    # "opened 500 times, 500 of them re-opened ... over a 499.0 s outage" and the CLI "dep: 1000 transitions".
    recorder = flapping(700, down_s=1e9, reset_timeout=1.0)
    run = recorder.report()
    assert len(run.transitions) == 1000  # what is kept stays bounded
    [advice] = run.recommendations()
    assert advice.kind == "breaker_flapping"
    assert (advice.evidence["opens"], advice.evidence["reopens"]) == (700, 699)
    assert advice.evidence["outage_s"] == pytest.approx(699.0)
    assert "opened 700 times, 699 of them re-opened by a failed probe after ~1000.0 ms open" in advice.message
    out = io.StringIO()
    resilience_section(Out(stream=out), recorder, run)
    assert ("breaker dep: 1399 transitions (closed->open x1, open->half_open x699, half_open->open x699); now open"
            in out.getvalue())


def test_an_outage_still_open_at_the_end_is_not_reported_as_one_that_lasted_that_long() -> None:
    # Down for the whole run: the breaker never closed again, so its outage is only known to have lasted at least
    # the 14 s to its last transition. The advice said "over a 14.0 s outage ... raise reset_timeout towards
    # 14.0 s", as of an outage that ended.
    [advice] = flapping(15, down_s=1e9, reset_timeout=2.0).report().recommendations()
    assert "over an outage not over after 14.0 s." in advice.message
    assert "raise reset_timeout towards 14.0 s or more" in advice.message
    assert advice.evidence["open_at_end"] == 1.0 and advice.evidence["outage_s"] == pytest.approx(14.0)


def test_an_outage_that_ended_is_quoted_with_its_length_alone() -> None:
    # Down for 10 s, probes every 2 s: closed again at 10 s, a 10 s outage, 4 failed probes. The message was right
    # already; the evidence had no open_at_end.
    [advice] = flapping(15, down_s=10.0, reset_timeout=2.0).report().recommendations()
    assert "opened 5 times, 4 of them re-opened by a failed probe after ~2000.0 ms open, over a 10.0 s outage." in (
        advice.message)
    assert "raise reset_timeout towards 10.0 s (or add" in advice.message
    assert advice.evidence["open_at_end"] == 0.0


def test_ended_and_unfinished_outages_are_told_apart() -> None:
    moves = [(CLOSED, OPEN, 0.0), (OPEN, HALF, 1.0), (HALF, OPEN, 1.0), (OPEN, HALF, 2.0), (HALF, CLOSED, 2.0),
             (CLOSED, OPEN, 60.0), (OPEN, HALF, 61.0), (HALF, OPEN, 61.0), (OPEN, HALF, 62.0), (HALF, OPEN, 62.0)]
    run = RunReport(transitions=[BreakerTransition("db", a, b, "r", t) for a, b, t in moves])
    [advice] = run.recommendations()
    assert "opened 5 times, 3 of them re-opened" in advice.message
    assert "over a 2000.0 ms outage and an outage not over after 2000.0 ms." in advice.message
    assert "towards 2000.0 ms or more" in advice.message
    assert advice.evidence["outages"] == 2.0


def test_the_median_outage_of_many_says_which_outages_it_is_taken_over() -> None:
    # 150 outages, each with two failed probes: the first 50 last 10 s, the newest 100 last 2 s. The median is kept
    # over the newest 100 (bounded memory), and the advice says so.
    moves, t = [], 0.0
    for i in range(150):
        length = 10.0 if i < 50 else 2.0
        moves += [(CLOSED, OPEN, t), (OPEN, HALF, t + 0.5), (HALF, OPEN, t + 0.5), (OPEN, HALF, t + 1.0),
                  (HALF, OPEN, t + 1.0), (OPEN, HALF, t + length), (HALF, CLOSED, t + length)]
        t += 100.0
    recorder = RunRecorder()
    for a, b, at in moves:
        recorder.breaker_transition(BreakerTransition("db", a, b, "r", at))
    [advice] = recorder.report().recommendations()
    assert "opened 450 times, 300 of them re-opened" in advice.message
    assert "over 150 outages (median 2000.0 ms of the newest 100, longest 10.0 s)" in advice.message


def test_an_outage_across_a_step_back_of_the_breakers_clock_is_never_negative() -> None:
    # A breaker on an injected wall clock stepped back an hour (NTP, an operator) while a probe ran: the outage was
    # counted as "closed time - opened time", -3565 s, and the one still open after a second step back read
    # open_for_s -3570 s. Now the outage's start moves back with the clock: the 30 s up to the probe count, the probe's
    # 5 s across the step do not, and nothing is negative.
    clock = FakeClock(start=10_000.0)
    recorder = RunRecorder()
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout=30.0, clock=clock, hooks=[recorder],
                             instrument=False)

    async def down() -> int:
        raise DownError

    async def probe_across_a_step() -> int:
        clock.advance(5.0)
        clock.now -= 3600.0  # FakeClock.advance never goes back: the step is set by hand
        return 1

    async def main() -> None:
        with pytest.raises(DownError):
            await breaker.call(down)  # open at 10,000
        clock.advance(30.0)
        assert await breaker.call(probe_across_a_step) == 1  # half_open at 10,030, closed at 6,435
        with pytest.raises(DownError):
            await breaker.call(down)  # open again at 6,435
        clock.now -= 3600.0
        with pytest.raises(CircuitOpenError):  # the reset timeout counts from the step's first reading, 2,835
            await breaker.call(down)
        clock.advance(30.0)
        with pytest.raises(DownError):
            await breaker.call(down)  # a failed probe: half_open and open again at 2,865

    asyncio.run(main())
    [tally] = recorder.report().tallies().values()
    assert (tally.outages, tally.longest_s, tally.median_s) == (1, 30.0, 30.0)
    assert tally.open_for_s == 0.0
    # a report rebuilt from the kept transitions alone counts them the same
    assert RunReport(transitions=list(recorder.transitions)).tallies()["dep"] == tally
