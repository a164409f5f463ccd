"""The ``exception`` span event: written once per exception, on the innermost span of ours it ended.

The OpenTelemetry specification records an exception "as an Event on the span during which it occurred if
and only if it remains unhandled when the span ends" (trace/exceptions.md), and the OTEP on recording errors
(4333) makes it explicit: "It is NOT RECOMMENDED to record the same error as it propagates through the call
stack". The spans it then ends on the way out (operation, task, step...) report it as every failed span does,
with status ERROR, ``error.type`` and the status description (semantic conventions, "Recording errors"), not
a second copy of its stack trace.

So a span that records an exception, or passes on one recorded beneath it, notes it on its *parent* span
object (when its caller knows that parent, it is recording and it is one of ours: the ``shannon_otel``
scope); a span ending with an exception noted on it writes no event. The note follows the spans' real
parents, so the same exception object ending two sibling spans (one future awaited by two tasks) is recorded
on both, and a span of the user's between two of ours breaks the chain (the outer one records it again: a
duplicate, never a loss). The notes live on the parent span object itself (an attribute), the last ``_KEPT``
per span, and every span of ours drops its notes as it ends (``forget``): an exception is held no longer than
the span it ended under is open, and a long task that catches many errors holds a few (a user's span, which
could live as long as the process, gets none; a span type that takes no attribute gets none either: a
duplicate event at worst). On the span, not in a module-level weak dictionary keyed by it (the spans of one
chain come from different hooks and providers, so no one object of ours sees both ends): a note's exception
holds, through its traceback, the frames of the call that owns the span, so such a dictionary's value kept
its own weak key alive. A call left pending when its event loop was closed (a run ended by Ctrl-C) was then
never collected: its spans stayed open, a half-open breaker never got its probe back.

The event has ``exception.type``, ``exception.message`` and ``exception.stacktrace``, no
``exception.escaped``: the semantic conventions deprecate it ("It's no longer recommended to record
exceptions that are handled and do not escape the scope of a span"), and the SDK's ``record_exception``
wrote it as the string ``"False"`` for a boolean attribute, although every exception recorded here escaped.
"""

from __future__ import annotations

import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, TypeGuard

from .. import _telemetry as t
from .._events import error_message, error_type
from .._events._error import cut_stacktrace
from .._telemetry import SCOPE_NAME
from .._validate import utf8_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    from opentelemetry.trace import Span

_EVENT = "exception"
_KEPT = 8  # a span ends with the error its child just passed on: the latest few notes are the ones read
# On a span of ours: the latest exceptions recorded on (or passed on by) its child spans of ours
_NOTES = "_shannon_otel_beneath"


def _notes_of(span: Span) -> dict[str, Any] | None:
    """The attributes of ``span`` (where its notes live), or None for a span type that has none (slotted).
    Read through ``vars``, not ``getattr``: a span class's ``__getattr__`` is never called (one raising other than
    AttributeError would have left the span it was asked about open), and ``dict.pop`` is atomic across threads."""
    try:
        return vars(span)
    except TypeError:
        return None


def _take(span: Span) -> deque[BaseException] | None:
    """The notes on ``span``, removed from it (it ends now)."""
    attributes = _notes_of(span)
    return None if attributes is None else attributes.pop(_NOTES, None)


def _note(parent: Span, errors: Iterable[BaseException]) -> None:
    """Add ``errors`` to the notes on ``parent`` (a span of ours, recording); none on a span type that takes no
    attribute (a duplicate event at worst)."""
    attributes = _notes_of(parent)
    if attributes is not None:
        attributes.setdefault(_NOTES, deque(maxlen=_KEPT)).extend(errors)


def _ours(span: Span | None) -> TypeGuard[Span]:
    if span is None or not span.is_recording():
        return False
    scope = getattr(span, "instrumentation_scope", None)  # the SDK's span has one; the API's does not
    return scope is not None and scope.name == SCOPE_NAME


def record_error(span: Span, error: BaseException, parent: Span | None = None) -> None:
    """Write ``error``'s ``exception`` event on ``span`` unless a child span of ours already has it, and
    note it on ``parent`` (``span``'s parent, when the caller knows it), so that one writes none.

    Called by the OTel hook (and the Dask worker's remote span) as ``span`` ends because of ``error``;
    the caller sets the status and ``error.type`` itself. Never raises: an error whose ``__str__`` raises
    gets a placeholder message.
    """
    if not span.is_recording():
        return
    below = _take(span)  # read once: the span ends now
    if below is None or not _recorded(error, below):
        _add_event(span, error)
    if _ours(parent):
        _note(parent, (error,))


def _recorded(error: BaseException, below: Iterable[BaseException]) -> bool:
    """Whether ``error`` is recorded beneath: one of ``below``, or a group (a wave's task group raising a task's
    ``BaseException``, a wave's around another's) whose every exception is, whose event repeated their stack traces."""
    if any(e is error for e in below):
        return True
    return isinstance(error, BaseExceptionGroup) and all(_recorded(e, below) for e in error.exceptions)


def pass_on(span: Span, parent: Span | None) -> None:
    """Note on ``parent`` every exception recorded beneath ``span`` so far, as ``span`` ends: for a span whose
    children's errors may propagate past it unwrapped though it does not end with them (a saga's compensation
    raising ``KeyboardInterrupt``, or a ``TypeError`` raised as it is, after the saga ended with its step's error:
    the task span around it wrote the compensation span's event again). Call it before :func:`record_error` /
    :func:`forget` read the notes. Never raises."""
    attributes = _notes_of(span)
    below: deque[BaseException] | None = None if attributes is None else attributes.get(_NOTES)
    if below and _ours(parent):
        _note(parent, tuple(below))


def forget(span: Span) -> None:
    """Drop the notes on ``span`` as it ends without :func:`record_error` (a success, or a failure it does
    not record): they are read only by that call, and kept they held the user's exceptions, and through
    their tracebacks every frame and local of the failed calls, for as long as the ended span lived (a
    span exporter's queue, a tail sampler's buffer, a test's in-memory exporter). Never raises.

    What :func:`_take` does, in one call: it runs as every span of ours ends (each traced task)."""
    try:
        attributes = vars(span)
    except TypeError:  # a span type that takes no attribute has no notes
        return
    attributes.pop(_NOTES, None)


def _add_event(span: Span, error: BaseException) -> None:
    try:
        stacktrace = "".join(traceback.format_exception(error))
    except Exception:  # a traceback that cannot be rendered: the type and message still say what failed
        stacktrace = f"{error_type(error)}: {error_message(error)}"
    span.add_event(_EVENT, {
        t.EXCEPTION_TYPE: error_type(error) or type(error).__name__,
        t.EXCEPTION_MESSAGE: error_message(error),
        t.EXCEPTION_STACKTRACE: utf8_text(cut_stacktrace(stacktrace)),
    })
