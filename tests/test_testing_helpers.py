"""What users put in their own test suites (``shannon_otel.testing``): the virtual-time loop, the fake clock,
the in-memory telemetry's metric points, and set_testing scopes."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import shannon_otel as so
import shannon_otel.testing as sot
from shannon_otel import Wave
from shannon_otel.testing import FakeClock, InMemoryTelemetry, VirtualTimeLoop, run_virtual


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


def test_point_not_found_by_its_attributes_lists_the_attributes_recorded() -> None:
    # A wrong attribute value read "expected one point of requests with {'route': '/c'}, found 0": the user
    # could not see what was recorded instead (a typo, another value, an extra label).
    tel = InMemoryTelemetry()
    counter = tel.meter_provider.get_meter("mine").create_counter("requests")
    counter.add(1, {"route": "/a"})
    counter.add(1, {"route": "/b", "code": 500})
    with pytest.raises(AssertionError, match=r"found 0; its points' attributes: .*'/a'.*'/b'"):
        tel.point("requests", route="/c")
    with pytest.raises(AssertionError, match=r"found 2; its points' attributes: .*'route': '/a'.*'code': 500"):
        tel.point("requests")
    tel.shutdown()


def test_span_and_point_refuse_several_matches_under_python_optimise() -> None:
    # Both checked with assert, which python -O (or PYTHONOPTIMIZE, as some CI images set) strips: span("s")
    # silently returned the first of two spans and point() the first of two points, so a test that should
    # fail passed.
    script = textwrap.dedent("""
        from shannon_otel.testing import InMemoryTelemetry
        tel = InMemoryTelemetry()
        tracer = tel.tracer_provider.get_tracer("mine")
        for _ in range(2):
            with tracer.start_as_current_span("s"):
                pass
        counter = tel.meter_provider.get_meter("mine").create_counter("requests")
        counter.add(1, {"route": "/a"})
        counter.add(1, {"route": "/b"})
        for check in (lambda: tel.span("s"), lambda: tel.point("requests")):
            try:
                check()
            except AssertionError as error:
                print("refused:", error)
            else:
                print("accepted")
    """)
    root = str(Path(__file__).resolve().parents[1])  # this checkout's package, not an installed one
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "refused: expected one span 's', found 2: ['s', 's']"
    assert lines[1].startswith("refused: expected one point of requests with {}, found 2")


def test_telemetry_under_otel_sdk_disabled_says_why_nothing_was_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    # With OTEL_SDK_DISABLED=true (set in CI to keep an application's telemetry off) the SDK providers record
    # nothing: a user's test read "expected one span 'x', found 0: []" and "no metric ... recorded: []", as
    # if the code under test had never made them.
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tel = InMemoryTelemetry()

    async def ok() -> int:
        return 1

    assert asyncio.run(so.Retry(name="x", **tel.providers).call(ok)) == 1
    why = r"\(OTEL_SDK_DISABLED=true: the OpenTelemetry SDK records nothing; unset it for these tests\)"
    with pytest.raises(AssertionError, match=r"expected one span 'x', found 0: \[\] " + why):
        tel.span("x")
    with pytest.raises(AssertionError, match=r"no metric 'shannon.calls' was recorded; recorded: \[\] " + why):
        tel.point("shannon.calls")
    tel.shutdown()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    enabled = InMemoryTelemetry()  # and, the SDK on, the errors say nothing of it
    with pytest.raises(AssertionError, match=r"found 0: \[\]$"):
        enabled.span("x")
    enabled.shutdown()


def test_telemetry_shut_down_twice_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # A test's own tel.shutdown() and then its fixture's teardown: the SDK's MeterProvider logged the warning
    # "shutdown can only be called once" (a failure for suites asserting that nothing was logged).
    tel = InMemoryTelemetry()
    tel.meter_provider.get_meter("mine").create_counter("requests").add(1)
    tel.shutdown()
    with caplog.at_level(logging.DEBUG):
        tel.shutdown()
    assert caplog.records == []
    assert tel.point("requests").value == 1  # what was recorded stays readable


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


def test_run_virtual_lets_executor_threads_finish_before_a_later_timer() -> None:
    # VirtualTimeLoop jumped to the next timer whenever no I/O was ready, also while a thread worked: a 20 ms
    # asyncio.to_thread call under a 5 s timeout (a wave's task_timeout) always "timed out" under run_virtual.
    def work() -> str:
        time.sleep(0.02)
        return "done"

    async def main() -> tuple[str, dict[str, int]]:
        loop = asyncio.get_running_loop()
        done = await asyncio.wait_for(asyncio.to_thread(work), timeout=5)
        wave: Wave[None] = Wave("threads", task_timeout=5, clock=loop.time)
        result = await wave.map(lambda _: asyncio.to_thread(time.sleep, 0.02), range(2))
        return done, {str(k): v for k, v in result.report.counts.items()}

    done, counts = run_virtual(main())
    assert done == "done" and counts["success"] == 2 and counts["timeout"] == 0


def test_a_fake_clock_refuses_infinite_time() -> None:
    # FakeClock(math.inf) and advance(math.inf) were accepted although the error names [0, inf): every
    # duration measured on the clock afterwards was inf - inf = NaN.
    with pytest.raises(ValueError, match=r"start must be a finite number"):
        FakeClock(math.inf)
    clock = FakeClock()
    with pytest.raises(ValueError, match=r"^seconds must be in \[0, inf\), got inf$"):
        clock.advance(math.inf)
    with pytest.raises(ValueError, match=r"^seconds must be in \[0, inf\), got -1$"):  # inf is not in the range
        clock.advance(-1)
    assert clock() == 1000.0


def test_a_fake_clock_refusing_nan_names_the_range_it_takes() -> None:
    # NaN read "start must be in [-inf, inf)" although -inf is refused too, and a sleep of NaN "seconds must be
    # in [-inf, inf)" although sleep(inf) is taken (it sleeps until cancelled).
    with pytest.raises(ValueError, match=r"^start must be a finite number, got nan$"):
        FakeClock(math.nan)
    clock = FakeClock()
    with pytest.raises(ValueError, match=r"^seconds must be in \[-inf, inf\] \(inf: until cancelled\), got nan$"):
        asyncio.run(clock.sleep(math.nan))
    assert (clock(), clock.sleeps) == (1000.0, [])


def test_set_testing_scopes_nest_and_restore() -> None:
    from shannon_otel.testing import is_testing

    assert not is_testing()
    with sot.set_testing(True):
        with sot.set_testing(False):
            assert not is_testing()
        assert is_testing()
    assert not is_testing()


def test_a_fake_clock_sleeping_forever_waits_until_cancelled_and_keeps_its_time() -> None:
    """Before: ``FakeClock.sleep(inf)`` moved the clock to inf (``advance(inf)`` is refused for that
    reason): a ``Hedge(delay=inf)`` (it never hedges) left the test's clock at inf, and every later
    duration read on it was NaN. Now it sleeps until cancelled, as ``asyncio.sleep(inf)`` does."""
    clock = sot.FakeClock()

    async def slow() -> int:
        await clock.sleep(2.0)
        return 1

    async def main() -> tuple[int, float, bool]:
        value = await so.Hedge(delay=math.inf, sleep=clock.sleep, clock=clock, instrument=False).call(slow)
        forever = asyncio.ensure_future(clock.sleep(math.inf))
        await asyncio.sleep(0)
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        return value, clock(), forever.cancelled()

    assert sot.run_virtual(main()) == (1, 1002.0, True)
    assert sorted(clock.sleeps) == [2.0, math.inf, math.inf]  # the hedge timer and the cancelled sleep


# --------------------------------------------------------------------------- repeated use
def test_in_memory_telemetry_never_shut_down_is_freed_with_its_last_reference() -> None:
    # The SDK's providers registered an atexit handler holding them (and every span and point recorded) until
    # the process exited: a suite building one per test without calling shutdown() kept all its tests' telemetry.
    import gc
    import weakref

    tel = InMemoryTelemetry()

    async def work() -> int:
        return 1

    assert run_virtual(so.Retry(**tel.providers).call(work)) == 1
    assert tel.span("retry") is not None
    tracer_provider, meter_provider = weakref.ref(tel.tracer_provider), weakref.ref(tel.meter_provider)
    del tel
    gc.collect()
    assert (tracer_provider(), meter_provider()) == (None, None)


def test_virtual_time_jumps_to_a_far_timer_at_once() -> None:
    # asyncio caps a selector wait at one day: the clock crept a day per loop turn, so a timer due in 1e300 s
    # (a "forever" sleep) was never reached and the loop spun for good. Run apart so the old spin cannot hang the suite.
    script = textwrap.dedent("""
        import asyncio
        from shannon_otel.testing import run_virtual

        async def main():
            await asyncio.sleep(1e300)
            return asyncio.get_running_loop().time()

        print(run_virtual(main()))
    """)
    root = str(Path(__file__).resolve().parents[1])  # this checkout's package, not an installed one
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert (out.returncode, out.stdout.strip()) == (0, "1e+300"), out.stderr


def test_sleep_inf_alone_waits_as_a_real_loop_does_without_moving_the_clock() -> None:
    # A timer due at inf (asyncio.sleep(inf)) was jumped toward a day per turn: the loop spun at full CPU while
    # it waited for a thread, and the clock read days later when the thread's result came.
    async def main() -> float:
        loop = asyncio.get_running_loop()
        forever = asyncio.ensure_future(asyncio.sleep(math.inf))
        woken = loop.create_future()

        def later() -> None:
            time.sleep(0.2)  # not a race: with the fix the clock stands still however long this takes
            loop.call_soon_threadsafe(woken.set_result, None)

        threading.Thread(target=later).start()
        await woken
        forever.cancel()
        return loop.time()

    assert run_virtual(main()) == 0.0


def test_in_memory_telemetry_with_logs_records_the_librarys_log_records_in_their_spans() -> None:
    # Before: InMemoryTelemetry had no logger provider; a user testing the log records had to build the SDK's
    # LoggerProvider, exporter and handler on the shannon_otel logger by hand (as our own tests did).
    before = list(logging.getLogger("shannon_otel").handlers)
    tel = InMemoryTelemetry(logs=True)
    assert len(logging.getLogger("shannon_otel").handlers) == len(before) + 1
    clock = FakeClock()
    calls = [0]

    async def flaky() -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise ConnectionError("refused")
        return 42

    # No jitter: a full-jitter delay under 5 ms is written with two significant digits ("0.0047 s"), which the
    # expected message's two decimals missed (1 run in ~16 failed).
    retry = so.Retry(name="search", attempts=2, jitter="none", hooks=[so.LoggingHook()], clock=clock,
                     sleep=clock.sleep, **tel.providers)
    try:
        assert run_virtual(retry.call(flaky)) == 42
        operation = tel.span("search")
        records = tel.log_records()
        assert [str(r.log_record.body) for r in records] == [
            "retrying 'search' after 0.10 s (attempt 2/2): ConnectionError"]
        assert clock.sleeps == [0.1]
        assert operation.context is not None
        assert (records[0].log_record.trace_id, records[0].log_record.span_id) == (
            operation.context.trace_id, operation.context.span_id)
        assert (records[0].log_record.attributes or {})["event.name"] == "shannon.retry.scheduled"
    finally:
        tel.shutdown()
    assert logging.getLogger("shannon_otel").handlers == before  # its handler is off the logger again


def test_in_memory_telemetry_without_logs_says_it_records_none() -> None:
    tel = InMemoryTelemetry()
    with pytest.raises(RuntimeError, match="logs=True"):
        tel.log_records()
    with pytest.raises(TypeError, match="logs"):
        InMemoryTelemetry(logs="yes")  # type: ignore[arg-type]
    tel.shutdown()
