"""The ``error.type`` value every event with an error reports."""

from __future__ import annotations


def error_type(error: BaseException | None) -> str | None:
    """The ``error.type`` value for an exception: its fully qualified class name for non-builtins."""
    if error is None:
        return None
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
