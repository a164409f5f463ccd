"""The ``error.type`` value every event with an error reports, and an error's message that never raises."""

from __future__ import annotations

from .._validate import utf8_text


# The class's own values, read past its metaclass: a metaclass whose ``__getattribute__`` raised on
# ``__module__`` made every wave that met such an error raise out of ``map()`` and leave its task span open.
_MODULE = type.__dict__["__module__"]
_QUALNAME = type.__dict__["__qualname__"]


def error_type(error: BaseException | None) -> str | None:
    """The ``error.type`` value for an exception: :func:`class_name` of its class."""
    return None if error is None else class_name(type(error))


def class_name(cls: type) -> str:
    """A class's fully qualified name (the bare name for builtins), never raising: read past the metaclass;
    a ``__module__`` that is not a str (``None``, set on a class made at run time) as ``<unknown>``, as
    ``traceback`` shows it, not ``None.E``; a lone surrogate (a class made at run time) as U+FFFD: a metric
    attribute OTLP cannot encode failed every metric export of the process."""
    qualname: str = _QUALNAME.__get__(cls)
    try:
        module = _MODULE.__get__(cls)
    except AttributeError:  # a class whose namespace has no __module__ left
        module = None
    if not isinstance(module, str):
        module = "<unknown>"
    elif module == "builtins":
        return utf8_text(qualname)
    return utf8_text(f"{module}.{qualname}")


def error_message(error: BaseException) -> str:
    """``str(error)``, or a placeholder when the error's ``__str__`` raises (as ``traceback`` shows it);
    a lone surrogate in it (a path decoded with ``surrogateescape``) as U+FFFD: a message that cannot be
    encoded as UTF-8 failed the export of every span or log record batched with it."""
    try:
        return utf8_text(str(error))
    except Exception:
        return f"<{_QUALNAME.__get__(type(error))}: str() failed>"


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
