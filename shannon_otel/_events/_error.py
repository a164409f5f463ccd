"""The ``error.type`` value every event with an error reports, and an error's message (and stack trace) as telemetry
writes them: never raising, bounded in size."""

from __future__ import annotations

from .._telemetry import MESSAGE_MAX_LENGTH, STACKTRACE_MAX_LENGTH
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
    encoded as UTF-8 failed the export of every span or log record batched with it; cut to
    ``MESSAGE_MAX_LENGTH`` characters (:func:`cut_text`)."""
    try:
        return utf8_text(cut_text(str(error), MESSAGE_MAX_LENGTH))
    except Exception:
        return f"<{_QUALNAME.__get__(type(error))}: str() failed>"


def cut_text(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a note of how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} characters cut]"


def cut_stacktrace(text: str) -> str:
    """A formatted traceback within ``STACKTRACE_MAX_LENGTH`` characters: each line cut as a message is, then, if
    still too long, lines from its middle left out (its head says where it began, its tail what was raised)."""
    lines = [cut_text(line, MESSAGE_MAX_LENGTH) for line in text.split("\n")]
    total = sum(len(line) + 1 for line in lines)
    if total <= STACKTRACE_MAX_LENGTH:
        return "\n".join(lines)
    head: list[str] = []
    tail: list[str] = []
    room = (STACKTRACE_MAX_LENGTH - 32) // 2  # 32: the note of the lines cut
    for line in lines:
        if len(line) + 1 > room:
            break
        head.append(line)
        room -= len(line) + 1
    room = (STACKTRACE_MAX_LENGTH - 32) // 2  # 32: the note of the lines cut
    for line in reversed(lines[len(head):]):
        if len(line) + 1 > room:
            break
        tail.append(line)
        room -= len(line) + 1
    cut = len(lines) - len(head) - len(tail)
    return "\n".join([*head, f"[{cut} lines cut]", *reversed(tail)])


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
