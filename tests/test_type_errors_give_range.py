"""A number of the wrong type is refused naming the parameter *and its allowed range*, as a value out of range is.

Found by the round-28 probe: ``Retry(attempts=2.5)`` said "attempts must be an int, got 2.5" and
``Wave(max_concurrency=True)`` "max_concurrency must be an int or None, got True", leaving the user to guess
whether 0 (or None, or a negative delay) would do, while ``Retry(attempts=0)`` said "must be in [1, inf)". Every
parameter checked by ``_validate.check_number`` now gives the range in its TypeError too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import shannon_otel as so
from shannon_otel.testing import run_virtual

CASES: list[tuple[Callable[[], Any], str]] = [
    (lambda: so.Retry(attempts=2.5), r"attempts must be an int in [1, inf), got 2.5"),  # type: ignore[arg-type]
    (lambda: so.Retry(attempts=True), r"attempts must be an int in [1, inf) (not a bool), got True"),
    (lambda: so.Retry(initial="1"), r"initial must be a number in [0, inf), got '1'"),  # type: ignore[arg-type]
    (lambda: so.Hedge(0.1, attempts=None), r"attempts must be an int in [1, inf), got None"),  # type: ignore[arg-type]
    (lambda: so.Wave("w", max_concurrency=True),
     r"max_concurrency must be an int in (0, inf) or None (not a bool), got True"),
    (lambda: so.Wave("w", batch_size=1.0), r"batch_size must be an int in [1, 9223372036854775807] or None, got 1.0"),  # type: ignore[arg-type]
    (lambda: so.Wave("w", task_timeout="1"), r"task_timeout must be a number in (0, inf] or None, got '1'"),  # type: ignore[arg-type]
    (lambda: so.BreakerConfig(failure_rate=True),
     r"failure_rate must be a number in (0, 1] or None (not a bool), got True"),
    (lambda: so.Saga("s", compensation_timeout_s=True),
     r"compensation_timeout_s must be a number in (0, inf) or None (not a bool), got True"),
]


@pytest.mark.parametrize(("build", "message"), CASES, ids=[m.split(" ")[0] + str(i) for i, (_, m) in enumerate(CASES)])
def test_a_number_of_the_wrong_type_is_refused_with_its_range(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        build()


def test_the_range_in_the_type_error_is_the_one_the_value_error_gives() -> None:
    """One parameter, one range: the wrong type and the wrong value are refused with the same bounds."""
    with pytest.raises(ValueError, match=re.escape("attempts must be in [1, inf), got 0")):
        so.Retry(attempts=0)
    with pytest.raises(TypeError, match=re.escape("attempts must be an int in [1, inf), got 0.0")):
        so.Retry(attempts=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("record", "message"), [
    (lambda: so.record_tokens(input=1.5), "record_tokens(): input must be an int >= 0, got 1.5"),  # type: ignore[arg-type]
    (lambda: so.record_tokens(output=True), "record_tokens(): output must be an int >= 0 (not a bool), got True"),
    (lambda: so.record_cost("1"), "record_cost(): amount must be a finite number >= 0, got '1'"),  # type: ignore[arg-type]
    (lambda: so.record("m", None), "record(): value must be a finite number, got None"),  # type: ignore[arg-type]
], ids=["tokens-input", "tokens-output", "cost", "record"])
def test_a_measurement_of_the_wrong_type_is_refused_with_its_range(record: Callable[[], None], message: str) -> None:
    """The task records it, so the TypeError is the task's error, as a wave reports it."""

    async def work() -> None:
        record()

    error = run_virtual(so.Wave("w", instrument=False).run([work])).results[0].error
    assert isinstance(error, TypeError)
    assert str(error) == message


@pytest.mark.parametrize(("build", "message"), [
    (lambda: so.Retry(attempts=True), "attempts must be an int in [1, inf) (not a bool), got True"),
    (lambda: so.Hedge(False), "delay must be a number in [0, inf] (not a bool), got False"),
    (lambda: so.ResourcePool("db", True), "ResourcePool limit must be an int >= 1 (not a bool), got True"),
], ids=["int", "float", "pool"])
def test_a_bool_is_refused_saying_it_is_one(build: Callable[[], Any], message: str) -> None:
    """Bug: "attempts must be an int in [1, inf), got True" read as a contradiction: to Python a bool is an int and
    True is 1, inside the range printed. The message says what is refused: a bool."""
    with pytest.raises(TypeError) as caught:
        build()
    assert str(caught.value) == message


def test_a_rate_limit_of_the_wrong_type_is_told_a_limiter_object_would_do() -> None:
    """Bug: ``Wave(rate_limit="10")`` said "rate_limit must be a number in (0, inf] or None", while an object with an
    async ``acquire()`` (a ``SharedRateLimit``) is taken too."""
    with pytest.raises(TypeError) as caught:
        so.Wave("w", rate_limit="10")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "rate_limit must be starts per second in (0, inf], None, or a rate limiter with an async acquire() "
        "(e.g. shannon_otel.redis.SharedRateLimit), got '10'")
