"""The user's own exceptions crossing the waves and the policies: the user gets back what the code would give
without the library, and every span they cross ends ERROR with an ``error.type`` that names the class (fully
qualified, as the semantic conventions ask)."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from _open_spans import OpenSpans
from opentelemetry.trace import StatusCode

from shannon_otel import Fallback, Hook, Pipeline, Retry, Wave
from shannon_otel.testing import InMemoryTelemetry, run_virtual

_ARMED: list[bool] = []  # while the library runs (pytest itself reads the names to report a failure)


class _RaisingMeta(type):
    """A metaclass (a proxy or lazy-import library's) whose ``__getattribute__`` raises on the class's names."""

    def __getattribute__(cls, name: str) -> Any:
        if _ARMED and name in ("__module__", "__qualname__", "__name__"):
            raise RuntimeError(f"no {name} here")
        return super().__getattribute__(name)


class MetaError(Exception, metaclass=_RaisingMeta):
    pass


class NowhereError(Exception):
    pass


NowhereError.__module__ = None  # type: ignore[assignment]  # as a class made at run time may have it


def _raise(error_class: type[Exception]) -> Any:
    async def fail(item: int) -> None:
        await asyncio.sleep(0)
        raise error_class(item)
    return fail


@pytest.mark.parametrize(("error_class", "expected"), [
    (MetaError, f"{__name__}.MetaError"), (NowhereError, "<unknown>.NowhereError"),
], ids=["metaclass-raises", "module-None"])
def test_a_wave_and_the_policies_report_an_error_class_of_unusual_make(
    error_class: type[Exception], expected: str,
) -> None:
    """A metaclass that raised on ``__module__`` made ``Wave.map`` raise an ExceptionGroup of that RuntimeError
    instead of returning the task's error, and left the task span open; ``__module__ = None`` gave
    ``error.type`` ``None.NowhereError`` (a module called None), where ``traceback`` says ``<unknown>``."""
    otel = InMemoryTelemetry()
    opened = OpenSpans()
    otel.tracer_provider.add_span_processor(opened)
    fail = _raise(error_class)

    async def main() -> None:
        result = await Wave("w", **otel.providers).map(fail, [1])
        assert type(result.results[0].error) is error_class
        assert result.results[0].error_type == expected
        async with Wave("s", max_concurrency=1, **otel.providers).stream_map(fail, [2]) as stream:
            streamed = [r async for r in stream]
        assert type(streamed[0].error) is error_class
        with pytest.raises(error_class):
            await Retry(attempts=2, initial=0, name="op", **otel.providers).call(fail, 3)
        async def serve(error: Exception) -> str:
            return f"served {type(error) is error_class}"
        assert await Fallback(serve, name="fb", **otel.providers).call(fail, 4) == "served True"

    _ARMED.append(True)
    try:
        run_virtual(main())
    finally:
        _ARMED.clear()
    assert opened.open == {}
    failed = [otel.span(name) for name in ["task w", "task s", "attempt 2", "op"]] + otel.spans("attempt 1")
    assert len(failed) == 6
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert (span.attributes or {})["error.type"] == expected, span.name
    assert otel.span("fb").status.status_code is StatusCode.UNSET  # served


class DeclinedError(Exception):
    pass


def test_a_fallback_that_re_raises_the_error_it_was_given_lets_it_through_as_it_is() -> None:
    """``async def fb(error): raise error`` (the fallback declines) raised ``FallbackError([error, error])``: the
    same exception twice in one group, a type no ``except DeclinedError`` or outer ``Retry(on=DeclinedError)``
    matched, where without the fallback the caller got the error itself."""
    otel = InMemoryTelemetry()
    raised: list[DeclinedError] = []
    calls = []

    async def fail() -> None:
        calls.append(1)
        error = DeclinedError("no")
        raised.append(error)
        raise error

    async def decline(error: Exception) -> None:
        raise error

    async def main() -> None:
        with pytest.raises(DeclinedError) as caught:
            await Fallback(decline, name="fb", **otel.providers).call(fail)
        assert caught.value is raised[0]
        with warnings.catch_warnings():  # the order warning: the retry acts only when the fallback re-raises
            warnings.simplefilter("ignore")
            retried = Pipeline(Retry(attempts=2, initial=0, on=DeclinedError), Fallback(decline), name="retried",
                               **otel.providers)
        with pytest.raises(DeclinedError) as caught:
            await retried.call(fail)
        assert caught.value is raised[-1]

    run_virtual(main())
    assert len(calls) == 3  # the outer retry saw the error and retried it
    for span in [otel.span("fb"), otel.span("retried"), *otel.spans("fallback fb")]:
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert (span.attributes or {})["error.type"] == f"{__name__}.DeclinedError", span.name



class HandledError(Exception):
    pass


def test_a_fallback_declining_an_error_keeps_the_context_it_was_raised_with() -> None:
    """A declining fallback's ``raise error`` ran in the caller's ``except`` block, so Python set the error's
    ``__context__`` to the caller's handled exception: the ``KeyError`` the operation raised it while handling (its
    traceback's "During handling of the above exception") was replaced, where without the fallback it was kept."""
    otel = InMemoryTelemetry()

    async def fail() -> None:
        users: dict[str, str] = {}
        try:
            users["ada"]
        except KeyError:
            raise DeclinedError("no such user") from None

    async def decline(error: Exception) -> None:
        raise error

    async def caught_in_except(call: Any) -> BaseException:
        try:
            raise HandledError("the caller's")
        except HandledError:
            with pytest.raises(DeclinedError) as caught:
                await call()
        return caught.value

    async def main() -> None:
        without = await caught_in_except(fail)
        with_fallback = await caught_in_except(lambda: Fallback(decline, name="fb", **otel.providers).call(fail))
        for error in (without, with_fallback):
            assert isinstance(error.__context__, KeyError), repr(error.__context__)
            assert error.__suppress_context__ and error.__cause__ is None

    run_virtual(main())
    assert otel.span("fb").status.status_code is StatusCode.ERROR
    assert otel.span("fallback fb").status.status_code is StatusCode.ERROR

def test_a_fallback_declining_while_handling_its_own_error_keeps_the_error_free_of_it() -> None:
    """An error the operation raised with nothing handled (``__context__`` None), declined by a fallback that raises
    it while handling an exception of its own (a cache lookup that missed): Python set the error's ``__context__`` to
    the fallback's ``KeyError``, and it was kept (only a context the operation had set was put back), so the
    traceback said the operation's error happened "during handling of" the fallback's miss. Without the fallback it
    has no context; with it, none either."""

    async def fail() -> None:
        raise DeclinedError("no such user")

    async def decline(error: Exception) -> None:
        cache: dict[str, str] = {}
        try:
            cache["ada"]
        except KeyError:
            raise error  # noqa: B904 - as a user writes it: the error is not caused by the miss

    async def main() -> tuple[BaseException, BaseException]:
        with pytest.raises(DeclinedError) as without:
            await fail()
        with pytest.raises(DeclinedError) as with_fallback:
            await Fallback(decline, name="fb", instrument=False).call(fail)
        return without.value, with_fallback.value

    without, with_fallback = run_virtual(main())
    assert without.__context__ is None
    assert with_fallback.__context__ is None, repr(with_fallback.__context__)


class HugeError(Exception):
    pass


def test_a_huge_error_message_is_cut_in_telemetry_and_kept_whole_for_the_user() -> None:
    """A 10 MB message was copied whole into each failed span (status description, ``exception.message`` and the
    stack trace): an attempt span of 30 MB, past a collector's 4 MB gRPC limit, so its whole batch was dropped."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from shannon_otel._telemetry import MESSAGE_MAX_LENGTH, STACKTRACE_MAX_LENGTH

    otel = InMemoryTelemetry()
    message = "x" * 10_000_000 + "\nand a second line"

    async def fail(item: int) -> None:
        await asyncio.sleep(0)
        raise HugeError(message)

    result = run_virtual(Wave("w", policy=Retry(attempts=2, initial=0), **otel.providers).map(fail, [1]))
    error = result.results[0].error
    assert type(error) is HugeError and str(error) == message  # the user's error is untouched
    for span in [*otel.spans("attempt 1"), *otel.spans("attempt 2"), otel.span("task w")]:
        assert span.status.status_code is StatusCode.ERROR
        description = span.status.description or ""
        assert description.startswith(f"{__name__}.HugeError: xxx"), span.name
        assert description.endswith(f"... [{len(message) - MESSAGE_MAX_LENGTH} characters cut]"), span.name
        assert len(encode_spans([span]).SerializeToString()) < 2 * (MESSAGE_MAX_LENGTH + STACKTRACE_MAX_LENGTH)
    (event,) = otel.span("attempt 1").events
    attributes = event.attributes or {}
    assert str(attributes["exception.message"]).startswith("xxx")
    assert len(str(attributes["exception.message"])) < MESSAGE_MAX_LENGTH + 100
    stacktrace = str(attributes["exception.stacktrace"])
    assert stacktrace.startswith("Traceback (most recent call last):") and "in fail" in stacktrace
    assert len(stacktrace) <= STACKTRACE_MAX_LENGTH


class _OddHook(Hook, metaclass=_RaisingMeta):
    """A hook whose class has the unusual make of ``MetaError``'s, and whose method raises."""

    def wave_started(self, event: Any) -> None:
        raise ValueError("hook bug")


def test_a_raising_hook_of_unusual_make_is_reported_by_name_and_the_wave_returns() -> None:
    """The hook-failure report read ``type(hook).__module__`` directly: a hook class whose metaclass raised on it made
    the report itself raise, out of the wave, in place of its results."""
    otel = InMemoryTelemetry()
    failures: list[str] = []

    class Watch(Hook):
        def hook_failed(self, event: Any) -> None:
            failures.append(event.hook)

    async def ok(item: int) -> int:
        return item

    _ARMED.append(True)
    try:
        result = run_virtual(Wave("w", hooks=[_OddHook(), Watch()], **otel.providers).map(ok, [1, 2]))
    finally:
        _ARMED.clear()
    assert [r.value for r in result.results] == [1, 2]
    assert failures == [f"{__name__}._OddHook"]
