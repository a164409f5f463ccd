"""The library's errors survive pickle and copy with their attributes (Dask ships them between processes)."""

from __future__ import annotations

import copy
import pickle
from types import MappingProxyType
from typing import Any

import pytest

from shannon_otel import CircuitOpenError, Outcome, Saga, SagaError, Step
from shannon_otel.testing import run_virtual


# ------------------------------------------------------------------ errors that cross process boundaries
def _round_trips(error: BaseException) -> list[Any]:
    return [pickle.loads(pickle.dumps(error)), copy.deepcopy(error), copy.copy(error)]


def test_a_circuit_open_error_pickles_and_copies_with_its_attributes() -> None:
    """``pickle`` / ``copy`` rebuilt it from its message alone: TypeError (missing ``state``), so a breaker
    rejection in a Dask worker or a process pool could not be shipped back."""
    error = CircuitOpenError("payments", "open", 1.5)
    error.add_note("while paying")
    for copied in _round_trips(error):
        assert type(copied) is CircuitOpenError
        assert (copied.breaker, copied.state, copied.retry_after_s) == ("payments", "open", 1.5)
        assert str(copied) == str(error) and copied.__notes__ == ["while paying"]


def test_a_saga_error_pickles_and_copies_with_its_result() -> None:
    """``SagaError`` rebuilt from its message (AttributeError) and its result's mappingproxy (TypeError:
    cannot pickle 'mappingproxy')."""
    async def reserve() -> str:
        return "seat"

    async def release(value: str) -> None:
        raise ConnectionError("release failed")

    async def pay() -> None:
        raise ValueError("card declined")

    with pytest.raises(SagaError) as caught:
        run_virtual(Saga("order", instrument=False).run(Step("reserve", reserve, compensate=release), Step("pay", pay)))
    for copied in _round_trips(caught.value):
        assert type(copied) is SagaError and str(copied) == str(caught.value)
        result = copied.result
        assert (result.saga, result.outcome, result.completed, result.values) == (
            "order", Outcome.FAILURE, ("reserve",), ("seat",))
        assert result.uncompensated == ("reserve",)
        assert isinstance(result.failed_compensations["reserve"], ConnectionError)
        assert isinstance(result.failed_compensations, MappingProxyType)  # still read-only
        assert isinstance(result.error, ValueError)
