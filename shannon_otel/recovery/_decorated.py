"""What a decorator or ``call(fn, *args)`` hands a policy: the call with its arguments."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any


class DecoratedCall(functools.partial):  # type: ignore[type-arg]
    """The factory of one call with its arguments (``func``, ``args`` and ``keywords``, as on any
    ``functools.partial``): what ``call(fn, *args, **kwargs)`` builds, and what a decorator passes
    when a policy keys state by the call's arguments (a plain ``partial`` otherwise)."""

    __slots__ = ()


def takes_parameters(func: Callable[..., Any]) -> bool:
    """Whether ``func`` accepts any argument (True when its signature cannot be read)."""
    try:
        return bool(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return True
