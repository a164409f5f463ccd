"""A Degrade's ``cheaper`` that fails as it is called, before it has returned an awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from test_recovery_support import Telemetry, run

from shannon_otel.recovery import Degrade, Served

CACHE: dict[str, str] = {}


def from_cache() -> Awaitable[str]:
    """A cheaper written as a lambda would be: it reads the cache before it builds its awaitable."""
    return asyncio.sleep(0, CACHE["summary"])  # KeyError: the cache is empty


async def timed_out() -> str:
    raise TimeoutError("slow backend")


def test_a_cheaper_raising_as_it_is_called_serves_the_declared_default() -> None:
    """``await cheaper()`` failing serves the declared default, whether the error comes from the awaitable or from
    the call that makes it. The call was made outside the ``try``: a cheaper raising there (a KeyError reading a
    cache) reached the caller in place of the default it had declared."""
    tel = Telemetry()
    degrade = Degrade(default="static", cheaper=from_cache, name="summary", **tel.kw)
    served = run(degrade.call(timed_out))
    assert (served.value, served.degraded, served.mode, served.reason) == ("static", True, "static", "timeout")
    assert isinstance(served.error, TimeoutError)
    op = tel.span("summary")
    assert op.attributes is not None and op.attributes["shannon.degrade.mode"] == "static"


def test_a_flagged_degrade_whose_cheaper_raises_as_it_is_called_runs_the_operation() -> None:
    """Flagged, with the cheaper down and no default, the operation runs (as for a cheaper whose awaitable fails).
    A cheaper raising as it was called failed every call while the flag was set, the operation never tried."""
    calls = 0

    async def expensive() -> str:
        nonlocal calls
        calls += 1
        return "full"

    degrade = Degrade(cheaper=from_cache, instrument=False)
    degrade.flag("anomaly")
    assert run(degrade.call(expensive)) == Served("full")
    assert calls == 1


def test_a_cheaper_raising_as_it_is_called_with_nothing_else_to_serve_raises_its_error() -> None:
    """Not flagged, no default: the cheaper's error propagates, as for one whose awaitable fails."""
    degrade = Degrade(cheaper=from_cache, instrument=False)
    with pytest.raises(KeyError, match="summary"):
        run(degrade.call(timed_out))
