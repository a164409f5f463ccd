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


def cut_off(cancelled: BaseException) -> TimeoutError:
    """What a call's events report when a timeout around it (its wave task's ``task_timeout``, an enclosing
    ``Timeout`` policy) cancelled it: a ``TimeoutError`` caused by that cancellation, never raised (the
    cancellation goes on; the scope that expired raises its own TimeoutError, recorded where it is raised)."""
    error = TimeoutError()
    error.__cause__ = cancelled
    return error


def is_cut_off(error: BaseException) -> bool:
    """Whether ``error`` is a :func:`cut_off` record: a TimeoutError that was never raised (every raised
    exception has a traceback), so no span should record it as an exception of its own."""
    return type(error) is TimeoutError and error.__traceback__ is None
