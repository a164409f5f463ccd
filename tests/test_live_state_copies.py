"""A breaker, a breaker registry and an anomaly hook hold live state their callers share: never copied.

Bug: ``pickle.dumps`` and ``copy.deepcopy`` of a ``CircuitBreaker``, a ``BreakerRegistry`` or an ``AnomalyHook`` (or
of a ``Pipeline`` / ``Wave`` holding one) raised "cannot pickle '_thread.RLock' object", naming neither the object
nor why; ``copy.copy`` of a breaker forked its state silently (a second breaker of the same name, counting apart,
sharing the first one's lock). Each now refuses every copy with a ``TypeError`` naming the class and saying what to do
instead; what they are built from (a breaker's ``config``, a hook's ``detector``) still pickles.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from shannon_otel import (
    AnomalyHook,
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    Pipeline,
    Retry,
    Wave,
)

COPIES: dict[str, Callable[[Any], Any]] = {
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
}


def _live() -> dict[str, tuple[Any, str]]:
    """Each object, and what its refusal must say."""
    registry = BreakerRegistry(instrument=False)
    registry.get("db")
    return {
        "breaker": (CircuitBreaker("payments", instrument=False), r"^CircuitBreaker 'payments' cannot be pickled or "
                                                                  r"copied: it holds live state .* per process"),
        "registry": (registry, r"^BreakerRegistry cannot be pickled or copied: it holds the live breakers .* per "
                               r"process"),
        "anomaly hook": (AnomalyHook(), r"^AnomalyHook cannot be pickled or copied: it holds the live ticks .* per "
                                        r"process"),
    }


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("what", ["breaker", "registry", "anomaly hook"])
def test_live_state_refuses_a_copy_naming_the_class_and_why(what: str, how: str) -> None:
    obj, says = _live()[what]
    with pytest.raises(TypeError, match=says):
        COPIES[how](obj)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_pipeline_or_wave_holding_a_breaker_names_the_breaker_it_cannot_copy(how: str) -> None:
    breaker = CircuitBreaker("payments", instrument=False)
    for holder in (Pipeline(Retry(attempts=2), breaker, instrument=False), Wave("w", policy=breaker)):
        with pytest.raises(TypeError, match=r"^CircuitBreaker 'payments' cannot be pickled or copied"):
            COPIES[how](holder)
    shallow = copy.copy(Pipeline(Retry(attempts=2), breaker, instrument=False))  # the same parts: nothing copied
    assert shallow.policies[1] is breaker


def test_a_breaker_built_again_from_its_pickled_config_runs() -> None:
    """What the refusal says to do works: the config pickles, and a breaker built from it in the other process
    opens as the first one does (its own state, its own name's)."""
    breaker = CircuitBreaker("payments", failure_threshold=1, min_calls=1, instrument=False)
    config = pickle.loads(pickle.dumps(breaker.config))
    assert isinstance(config, BreakerConfig) and config == breaker.config
    again = CircuitBreaker("payments", config, instrument=False)

    async def down() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await again.call(down)
        with pytest.raises(CircuitOpenError):
            await again.call(down)

    asyncio.run(main())


def test_an_anomaly_hooks_detector_still_pickles() -> None:
    hook = AnomalyHook()
    detector = pickle.loads(pickle.dumps(hook.detector))
    assert type(detector) is type(hook.detector) and detector is not hook.detector
