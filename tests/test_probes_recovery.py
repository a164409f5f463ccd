"""Adversarial probes of the recovery policies' public API that found bugs: each test failed before its fix."""

from __future__ import annotations

import asyncio
import math

import pytest
from opentelemetry.trace import StatusCode

from shannon_otel import LoggingHook, Retry, Saga, Step, Wave
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class UnprintableError(Exception):
    """An error whose message cannot be rendered: ``str()`` and ``repr()`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")


async def _unprintable() -> None:
    await asyncio.sleep(0)
    raise UnprintableError


def test_an_error_with_a_broken_str_still_marks_every_span_it_crossed_as_failed() -> None:
    """record_exception() calls str(error): it raised, so the attempt, operation, task, step and saga
    spans of such a failure ended with status UNSET and no exception event, as if nothing had failed."""
    otel = InMemoryTelemetry()
    logs = LoggingHook(exception_messages=True)  # its records carry the message: it raised too

    async def main() -> None:
        with pytest.raises(UnprintableError):
            await Retry(attempts=2, initial=0, name="op", hooks=[logs], **otel.providers).call(_unprintable)
        wave: Wave[None] = Wave("w", **otel.providers)
        result = await wave.run([_unprintable])
        assert result.results[0].error_type == f"{__name__}.UnprintableError"
        with pytest.raises(Exception, match="saga 's' failed"):
            await Saga("s", **otel.providers).run(Step("one", _unprintable))

    run_virtual(main())
    assert logs.hook_errors == {}
    failed = ["attempt 1", "attempt 2", "op", "task w", "step one", "saga s"]
    for name in failed:
        span = otel.span(name)
        assert span.status.status_code is StatusCode.ERROR, name
    for name in failed[:-1]:  # the saga span carries no exception event of its own
        events = [e for e in otel.span(name).events if e.name == "exception"]
        assert len(events) == 1, name
        attributes = events[0].attributes or {}
        assert attributes["exception.type"] == f"{__name__}.UnprintableError", name
        assert "UnprintableError" in str(attributes["exception.stacktrace"]), name


@pytest.mark.parametrize(("param", "settings"), [
    ("initial", {"initial": math.inf, "maximum": math.inf}),
    ("maximum", {"maximum": math.inf}),
    ("multiplier", {"multiplier": math.inf}),
])
def test_a_retry_refuses_non_finite_backoff_settings_naming_the_parameter(
    param: str, settings: dict[str, float],
) -> None:
    """They were accepted: maximum=inf let a backoff (or an inf Retry-After, which maximum is documented to
    cap) sleep forever, and initial=0 with multiplier=inf waited ``maximum`` (0 x inf is NaN) instead of 0."""
    with pytest.raises(ValueError, match=f"^{param} must be finite"):
        Retry(**settings)  # type: ignore[arg-type]
