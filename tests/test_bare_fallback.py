"""A bare ``@Fallback`` above a function: the error of the call says what happened.

``@Retry`` and ``@Degrade`` bare are refused at once (keyword arguments only), ``@Timeout``, ``@Hedge`` and
``@CircuitBreaker`` bare by their first parameter's check, saying so (``check_not_decorated``); ``Fallback(fetch)``
is a valid Fallback whose fallback is ``fetch``, so a bare ``@Fallback`` is taken, and ``fetch("u")`` then called
the Fallback, which said only "func must be an async function (a policy awaits each call of it), got 'u'": nothing
of the decorator, nor of ``fetch``.
"""

from __future__ import annotations

import asyncio

import pytest

from shannon_otel import Fallback


def test_a_function_under_a_bare_fallback_called_says_it_became_the_fallback() -> None:
    @Fallback  # type: ignore[arg-type]
    async def fetch(url: str) -> str:
        return url

    became = r"got 'u': .*@Fallback\(fallback\).*bare @Fallback, '.*fetch' became the fallback"
    with pytest.raises(TypeError, match=became):
        fetch("u")  # type: ignore[arg-type]


def test_a_fallback_decorating_a_function_still_serves_its_failures() -> None:
    async def served(error: Exception) -> str:
        return f"served {error}"

    @Fallback(served)
    async def fetch(url: str) -> str:
        raise ValueError(url)

    assert asyncio.run(fetch("u")) == "served u"
