"""``SharedRateLimit``'s settings: read-only, and a mistyped one is a TypeError (no Redis server needed).

Bug 1: ``rate`` and ``burst`` were plain attributes. ``limit.rate = 100`` was accepted and shown by the repr,
while the Redis script's arguments, computed once, kept every wave sharing the object at the old rate.
Bug 2: a rate or burst of the wrong type (a str, None, a bool) raised ValueError, where ``Wave(rate_limit=)``
and every other setting raise TypeError for a value of the wrong type.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("redis")

from shannon_otel.redis import RedisState, SharedRateLimit


def _state() -> RedisState:
    return RedisState("redis://127.0.0.1:1/0")  # never connected: construction alone is probed


@pytest.mark.parametrize("attribute", ["rate", "burst", "name", "shared", "sleep"])
def test_a_settings_change_is_refused_not_shown_and_ignored(attribute: str) -> None:
    limit = SharedRateLimit(_state(), "api", rate=10, burst=2)
    before = repr(limit)
    with pytest.raises(AttributeError):
        setattr(limit, attribute, getattr(limit, attribute))
    assert repr(limit) == before
    assert (limit.rate, limit.burst, limit.name) == (10.0, 2, "api")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": "5"}, r"rate must be a number of starts per second in \[1e-09, 1e6\], got '5'"),
        ({"rate": None}, r"rate must be a number"),
        ({"rate": True}, r"rate must be a number"),
        ({"rate": 1, "burst": 2.0}, r"burst must be an int in \[1, 1000000\], got 2\.0"),
        ({"rate": 1, "burst": True}, r"burst must be an int"),
    ],
)
def test_a_setting_of_the_wrong_type_is_a_type_error_naming_it(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        SharedRateLimit(_state(), "api", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rate": 0}, r"rate must be"), ({"rate": float("nan")}, r"rate must be"), ({"rate": 2e6}, r"rate must be"),
     ({"rate": 1, "burst": 0}, r"burst must be")],
)
def test_a_setting_out_of_range_is_still_a_value_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SharedRateLimit(_state(), "api", **kwargs)
