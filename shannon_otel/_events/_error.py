"""The ``error.type`` value every event with an error reports, and an error's message that never raises."""

from __future__ import annotations

from .._validate import utf8_text


def error_type(error: BaseException | None) -> str | None:
    """The ``error.type`` value for an exception: its fully qualified class name for non-builtins (a lone
    surrogate in it, a class made at run time, as U+FFFD: a metric attribute OTLP cannot encode failed every
    metric export of the process)."""
    if error is None:
        return None
    cls = type(error)
    module = cls.__module__
    return utf8_text(cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}")


def error_message(error: BaseException) -> str:
    """``str(error)``, or a placeholder when the error's ``__str__`` raises (as ``traceback`` shows it);
    a lone surrogate in it (a path decoded with ``surrogateescape``) as U+FFFD: a message that cannot be
    encoded as UTF-8 failed the export of every span or log record batched with it."""
    try:
        return utf8_text(str(error))
    except Exception:
        return f"<{type(error).__qualname__}: str() failed>"
