"""The TimeoutError a Timeout policy raises says what timed out and after how long.

Its type is the builtin ``TimeoutError`` (what users catch); its message reaches the user's traceback
and the operation span's status description. An error the operation raises itself is left untouched.
"""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import StatusCode

from shannon_otel.recovery import Pipeline, Retry, Timeout
from shannon_otel.testing import InMemoryTelemetry, run_virtual


async def hang() -> None:
    await asyncio.Event().wait()


def test_the_message_names_the_operation_and_the_limit_on_the_error_and_the_span() -> None:
    tel = InMemoryTelemetry()
    with pytest.raises(TimeoutError) as caught:
        run_virtual(Timeout(0.25, name="slow-api", **tel.providers).call(hang))
    assert type(caught.value) is TimeoutError
    assert str(caught.value) == "operation 'slow-api' timed out after 0.25 s (Timeout policy)"
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)  # the chain asyncio.timeout makes
    span = tel.span("slow-api")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "TimeoutError: operation 'slow-api' timed out after 0.25 s (Timeout policy)"
    [event] = [e for e in span.events if e.name == "exception"]
    assert (event.attributes or {})["exception.message"] == str(caught.value)
    tel.shutdown()


def test_an_unobserved_timeout_says_the_limit_too() -> None:
    with pytest.raises(TimeoutError, match=r"^timed out after 2\.0 s \(Timeout policy\)$"):
        run_virtual(Timeout(2.0, instrument=False).call(hang))
    with pytest.raises(TimeoutError, match=r"^operation 'db' timed out after 2 s \(Timeout policy\)$"):
        run_virtual(Timeout(2, name="db", instrument=False).call(hang))


def test_in_a_pipeline_the_operation_is_the_pipeline() -> None:
    tel = InMemoryTelemetry()
    pipeline = Pipeline(Timeout(1.5), Retry(attempts=3, initial=0.0, maximum=0.0), name="fetch", **tel.providers)
    with pytest.raises(TimeoutError, match=r"^operation 'fetch' timed out after 1\.5 s \(Timeout policy\)$"):
        run_virtual(pipeline.call(hang))
    assert tel.span("fetch").status.description == (
        "TimeoutError: operation 'fetch' timed out after 1.5 s (Timeout policy)")
    tel.shutdown()


def test_an_inner_timeout_keeps_its_own_message_through_an_outer_one() -> None:
    inner = Timeout(1.0, name="inner", instrument=False)
    outer = Timeout(5.0, name="outer", instrument=False)
    with pytest.raises(TimeoutError, match=r"^operation 'inner' timed out after 1\.0 s"):
        run_virtual(outer.call(lambda: inner.call(hang)))


def test_a_timeout_error_the_operation_raises_is_left_as_it_is() -> None:
    own = TimeoutError()

    async def raises() -> None:
        raise own

    with pytest.raises(TimeoutError) as caught:
        run_virtual(Timeout(1.0, name="x", instrument=False).call(raises))
    assert caught.value is own and caught.value.args == ()


async def own_timeout() -> None:
    raise TimeoutError("the server said 504")


def test_a_wave_task_timeout_names_the_task_the_wave_and_the_limit() -> None:
    """The wave's ``task_timeout`` raised asyncio's bare ``TimeoutError()``: the task's error, the user's
    traceback and the task span's exception event said nothing of what timed out."""
    from shannon_otel import Wave, task

    tel = InMemoryTelemetry()
    wave: Wave[None] = Wave("crawl", task_timeout=0.5, **tel.providers)
    result = run_virtual(wave.run([task(hang, name="fetch"), task(own_timeout, name="mine")]))
    hung, mine = (r.error for r in result.results)
    assert type(hung) is TimeoutError
    assert str(hung) == "task 'fetch' of wave 'crawl' timed out after 0.5 s (task_timeout)"
    assert str(mine) == "the server said 504"  # a TimeoutError the task raised itself is untouched
    span = tel.span("task fetch")
    [event] = [e for e in span.events if e.name == "exception"]
    assert (event.attributes or {})["exception.message"] == str(hung)  # the task span's status says "timeout"
    tel.shutdown()


class _OwnTimeoutError(TimeoutError):
    """A user's own timeout type. (A frozen dataclass one, which refused the message, cannot be used here: on
    Python 3.13 ``asyncio.timeout`` itself sets ``__context__`` on an error raised while it expires.)"""


async def _converts_its_cancellation() -> None:
    # User code turning the cut into its own (bare) timeout type, raised from the cancellation
    try:
        await hang()
    except asyncio.CancelledError as cancel:
        raise _OwnTimeoutError() from cancel


@pytest.mark.parametrize("scope", ["Timeout", "task_timeout", "compensation_timeout_s"])
def test_a_users_own_timeout_error_raised_from_the_cut_is_not_rewritten(scope: str) -> None:
    """Bug: a bare ``TimeoutError`` raised from the scope's cancellation was given the scope's message whatever its
    class: the user's own subclass was rewritten (its ``args`` replaced; a frozen dataclass one refused it, so the
    caller got a ``FrozenInstanceError`` in place of their error). Only the scope's own (exactly ``TimeoutError``)
    is."""
    from shannon_otel import Wave, task
    from shannon_otel.recovery import Saga, SagaError, Step

    if scope == "Timeout":
        with pytest.raises(_OwnTimeoutError) as caught:
            run_virtual(Timeout(1.0, name="x", instrument=False).call(_converts_its_cancellation))
        error: BaseException = caught.value
    elif scope == "task_timeout":
        wave: Wave[None] = Wave("crawl", task_timeout=0.5, instrument=False)
        [result] = run_virtual(wave.run([task(_converts_its_cancellation, name="fetch")])).results
        assert result.error is not None
        error = result.error
    else:
        async def reserve() -> int:
            return 1

        async def undo(value: int) -> None:
            await _converts_its_cancellation()

        async def fail() -> None:
            raise ValueError("pay")

        saga = Saga("order", compensation_timeout_s=0.5, instrument=False)
        with pytest.raises(SagaError) as failed:
            run_virtual(saga.run(Step("reserve", reserve, undo), Step("pay", fail)))
        error = failed.value.result.failed_compensations["reserve"]
    assert type(error) is _OwnTimeoutError and error.args == ()
