"""Names the telemetry carries are code-path names, at most 256 characters.

A name is copied into span names (``task <wave>``, ``attempt``'s operation, ``saga step``), span and metric
attributes and log records: a wave named with 1 MB of text (a request body, a file's content passed by
mistake) made each of its task spans over 1 MB, so a batch of them went past a collector's default 4 MB gRPC
message limit and was dropped whole, the other waves' spans with it. Such a name is refused where it is given,
naming the parameter and the limit, at every entry point that takes one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from _name_entry_points import ENTRY_POINTS
from _name_entry_points import work as _work

from shannon_otel import Pipeline, Retry, Saga, Timeout, Wave
from shannon_otel._validate import NAME_MAX_LENGTH

LONGEST = "n" * NAME_MAX_LENGTH
TOO_LONG = "n" * (NAME_MAX_LENGTH + 1)


@pytest.mark.parametrize(("where", "parameter", "build"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_a_name_over_the_limit_is_refused_naming_the_parameter_and_the_limit(
    where: str, parameter: str, build: Callable[[str], Any],
) -> None:
    with pytest.raises(ValueError, match=rf"^{parameter} must be at most {NAME_MAX_LENGTH} characters .*code paths.*"
                                         rf"got a str of {NAME_MAX_LENGTH + 1} characters, 'nnn"):
        build(TOO_LONG)
    build(LONGEST)  # the limit itself is accepted


def test_a_megabyte_name_is_refused_before_anything_is_traced() -> None:
    from shannon_otel.testing import InMemoryTelemetry

    tel = InMemoryTelemetry()
    with pytest.raises(ValueError, match=r"^name must be at most 256 characters"):
        Wave[int]("w" * 1_000_000, **tel.providers)
    assert tel.spans() == []
    tel.shutdown()


def test_a_step_name_over_the_limit_is_not_retried_by_a_retry_around_the_saga() -> None:
    """Refused inside the transaction, the name's ValueError became a SagaError, which a Retry around the saga
    retried: every step before it ran again on each try. It is raised as it is after the rollback (a programming
    error, as a step's TypeError is), still a ValueError."""
    runs: list[str] = []

    async def reserve() -> int:
        runs.append("reserve")
        return 1

    async def checkout() -> None:
        async with Saga("checkout").begin() as tx:
            await tx.step("reserve", reserve)
            await tx.step(TOO_LONG, _work)

    async def no_sleep(seconds: float) -> None:
        return None

    with pytest.raises(ValueError, match=rf"^name must be at most {NAME_MAX_LENGTH} characters"):
        asyncio.run(Retry(attempts=3, sleep=no_sleep)(checkout)())
    assert runs == ["reserve"]


@pytest.mark.parametrize("make", [lambda **kw: Retry(attempts=2, instrument=False, **kw),
                                  lambda **kw: Pipeline(Retry(attempts=2), Timeout(5), instrument=False, **kw)])
def test_a_decorated_function_whose_qualified_name_is_too_long_is_refused_saying_so(make: Callable[..., Any]) -> None:
    """A policy without ``name`` decorating a function whose qualified name is over 256 characters was refused as
    "name must be at most 256 characters", a ``name`` the user never gave. The error now says it is the
    function's qualified name, and to give the policy a shorter ``name=`` (which works)."""
    namespace: dict[str, Any] = {}
    exec("async def " + "f" * 300 + "():\n    return 1\n", namespace)  # a 300-character name
    fn = namespace["f" * 300]
    with pytest.raises(ValueError, match=r"^func's qualified name .* is 300 characters.*shorter name="):
        make()(fn)
    assert asyncio.run(make(name="short")(fn)()) == 1
