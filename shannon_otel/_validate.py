"""Argument checks shared by every policy: errors name the parameter and its allowed range."""

from __future__ import annotations

from typing import cast


def check_number(name: str, value: object, *, low: float, high: float | None = None,
                 low_open: bool = False, integer: bool = False, allow_none: bool = False) -> None:
    """Raise TypeError/ValueError naming ``name`` and its allowed range unless ``value`` fits."""
    if value is None and allow_none:
        return
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}{' or None' if allow_none else ''}, got {value!r}")
    v = float(cast("float", value))
    left = "(" if low_open else "["
    right = f"{high}]" if high is not None else "inf)"
    if v != v or (v <= low if low_open else v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be in {left}{low}, {right}, got {value!r}")


def check_exceptions(name: str, value: object) -> tuple[type[BaseException], ...]:
    """Normalise an exception type or tuple of types, rejecting anything else."""
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{name} must be an exception type or a tuple of them, got {value!r}")
    return types
