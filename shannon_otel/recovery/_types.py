"""The shapes every policy module shares: the call factory, the clock, the policy chain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from ._policy import Policy

T = TypeVar("T")
Factory = Callable[[], Awaitable[T]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Chain = tuple["Policy", ...]

END: Final[Chain] = ()
