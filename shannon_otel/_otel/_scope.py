"""A started span as a scope the policies enter around the work, and how a span of theirs ends."""

from __future__ import annotations

from asyncio import _get_running_loop, current_task
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import _telemetry as t
from .._events import error_message, is_cut_off
from .._telemetry import Outcome
from ._end import end
from ._exception import forget, record_error

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._recovery import RecoveryTelemetry

_ERROR = Status(StatusCode.ERROR)
_TIMEOUT = Status(StatusCode.ERROR, "timeout")
_INTERNAL = trace.SpanKind.INTERNAL


class _Current:
    """A started span as a scope: ``__enter__`` makes it current, ``__exit__`` detaches it.

    The policies enter it around the work and exit it after the matching ``*_finished``; a
    subclass (the call and saga observers) is entered around the whole call or saga.

    Exited off the event loop or task it was entered in, it ends without detaching: the call was left
    pending, and the garbage collector closes its coroutine (GeneratorExit) in another context (no loop,
    the next ``asyncio.run``'s, or, for a task dropped pending while its loop runs, whichever task
    triggered the collection), where the token cannot be reset. The OTel API then logged "Failed to
    detach context" with two tracebacks per pending call; the context the span was current in is the
    dead task's own, which nothing runs in again.
    """

    __slots__ = ("_token", "_where", "span")

    def __init__(self, span: Span | None) -> None:
        self.span = span
        self._token: object = None
        self._where: tuple[object, object] | None = None

    def __enter__(self) -> None:
        if self.span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self.span))
            self._where = _running()

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        where, self._where = self._where, None
        if token is not None and where == _running():
            otel_context.detach(token)  # type: ignore[arg-type]


def _running() -> tuple[object, object]:
    """The running event loop and task (None, None outside one): a coroutine's steps all run in one task."""
    loop = _get_running_loop()
    return loop, None if loop is None else current_task(loop)


def _start(tel: RecoveryTelemetry, name: str, attributes: dict[str, Any]) -> _Current:
    return _Current(tel.tracer.start_span(name, kind=_INTERNAL, attributes=attributes))


def _end(
    span: Span, outcome: str, error: BaseException | None, outcome_key: str, parent: Span | None = None,
) -> None:
    """End ``span`` with ``outcome``; a failure or timeout sets ERROR and ``error.type`` and records ``error``
    (once: see ``_exception.py``; ``parent`` is the span it then ends under, when known)."""
    try:
        span.set_attribute(outcome_key, outcome)
        if outcome == Outcome.TIMEOUT or (error is not None and is_cut_off(error)):
            # A span cut off by a timeout (an attempt, or a call whose outcome counts it a failure) carries no
            # exception of its own (the TimeoutError is raised, and recorded, by the scope around it), yet it
            # failed: ERROR, described like a timed-out task span.
            span.set_attribute(t.ERROR_TYPE, _error_type(error) if error is not None else TimeoutError.__name__)
            span.set_status(_TIMEOUT)
            if error is not None and not is_cut_off(error):
                record_error(span, error, parent)
        elif error is not None and outcome != Outcome.CANCELLATION:
            error_type = _error_type(error)
            span.set_attribute(t.ERROR_TYPE, error_type)
            span.set_status(failed(error_type, error))
            record_error(span, error, parent)
    finally:
        forget(span)
        end(span)


def failed(error_type: str, error: BaseException) -> Status:
    """The ERROR status of a span ``error`` ended: described ``"<error.type>: <message>"`` (the semantic
    conventions' status description, e.g. an exception message; the type alone for an empty message),
    so Jaeger shows why on the span itself; ``configure(redact=...)`` rewrites the message on export."""
    message = error_message(error)
    return Status(StatusCode.ERROR, f"{error_type}: {message}" if message else error_type)


def _error_type(error: BaseException) -> str:
    from .._events import error_type

    return error_type(error) or type(error).__name__
