"""Every public parameter refuses bad input with a clear error naming it (issue 11, deliver 2).

The table lives in ``benchmarks/_bad_inputs.py`` (the reliability benchmark reports the same
totals). ``discover()`` finds every parameter of the public API by introspection; one without
declared bad values (or an exemption with a reason) fails here, so a new public parameter needs a
case. Each case must raise TypeError/ValueError (RuntimeError for state misuse such as
``tx.step`` outside ``async with``) naming the parameter, before any user work runs.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from benchmarks import _bad_inputs as table


def test_every_public_parameter_has_declared_bad_values_or_a_reason() -> None:
    found = table.discover()
    assert len(found) > 200  # the introspection really walks the API
    undeclared = [(t, p) for t, p in found if table.bad_values(t, p) is None]
    assert undeclared == [], f"declare bad values (or an exemption with a reason) for {undeclared}"


def test_the_table_names_only_real_parameters() -> None:
    found = set(table.discover())
    stale = [key for key in (*table.BAD_FOR, *table.EXEMPT_PARAMS, *table.KNOWN_OPEN, *table.ACCEPTED_VALUES)
             if key not in found and key[1] != "<outside async with>"]
    assert stale == []


CASES = table.cases()


@pytest.mark.parametrize(("target", "param", "value"), CASES,
                         ids=[f"{t}-{p}-{i}" for i, (t, p, _) in enumerate(CASES)])
def test_bad_input_is_refused_clearly(target: str, param: str, value: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)
    outcome = table.run_case(target, param, value)
    if outcome.kind != "clear" and (target, param) in table.KNOWN_OPEN:
        pytest.xfail(table.KNOWN_OPEN[(target, param)])
    assert outcome.kind == "clear", f"{target}({param}={outcome.value}): {outcome.kind}: {outcome.detail}"


ACCEPTED = [(t, p, v) for (t, p), (values, _) in table.ACCEPTED_VALUES.items() for v in values]


@pytest.mark.parametrize(("target", "param", "value"), ACCEPTED,
                         ids=[f"{t}-{p}-{i}" for i, (t, p, _) in enumerate(ACCEPTED)])
def test_values_valid_by_contract_are_accepted(target: str, param: str, value: Any) -> None:
    assert table.run_case(target, param, value).kind == "silent", table.ACCEPTED_VALUES[(target, param)][1]


def test_the_examples_of_the_issue_are_clear() -> None:
    for target, param, value in [
        ("configure", "service_name", 5), ("configure", "endpoint", "not a url"), ("RunRecorder", "max_waves", -5),
        ("AdviceThresholds", "low_efficiency", -1), ("Transaction.step", "<outside async with>", None),
        ("Fallback", "fallback", table._sync_fn), ("Degrade", "cheaper", table._sync_fn),
        ("Saga.run", "steps", "not a step"), ("configure", "metric_interval_s", "10"),
    ]:
        assert table.run_case(target, param, value).kind == "clear", (target, param, value)
