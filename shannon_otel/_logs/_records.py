"""Events -> log records: the logger, level, message and fields of each record, and nothing else.

Pure functions of an event, so the plumbing that delivers events (observers today, other event
types tomorrow) can change without touching what a record says. The fields use the attribute names
of the spans (``_telemetry``); exception messages only when the hook was asked for them.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _telemetry as t
from .._events import error_message, error_type
from .._telemetry import BreakerState, Outcome

if TYPE_CHECKING:
    from .._events import (
        BreakerTransition,
        CallRejected,
        CompensationFinished,
        Degraded,
        FallbackStarted,
        RetryScheduled,
        TimedOut,
    )

# Levels a reader of Polly's (v8 telemetry severities) and stamina's logs expects; docs/logging.md.
DEFAULT_LEVELS: dict[str, int] = {
    t.EVENT_RETRY_SCHEDULED: logging.WARNING,
    t.LOG_EVENT_REJECTED: logging.WARNING,
    t.LOG_EVENT_OPENED: logging.ERROR,
    t.LOG_EVENT_HALF_OPENED: logging.WARNING,
    t.LOG_EVENT_CLOSED: logging.INFO,
    t.LOG_EVENT_TIMED_OUT: logging.ERROR,
    t.LOG_EVENT_FALLBACK: logging.WARNING,
    t.EVENT_DEGRADED: logging.WARNING,
    t.LOG_EVENT_COMPENSATED: logging.WARNING,
    t.LOG_EVENT_COMPENSATION_FAILED: logging.ERROR,
    t.EVENT_ANOMALY: logging.WARNING,  # severity "critical" is one step up: ERROR
}
TRANSITION_EVENTS = {
    BreakerState.OPEN: t.LOG_EVENT_OPENED,
    BreakerState.HALF_OPEN: t.LOG_EVENT_HALF_OPENED,
    BreakerState.CLOSED: t.LOG_EVENT_CLOSED,
}


# Where a summary's count and seconds go: markers no name or message holds, replaced (not str.format:
# an operation "GET /users/{id}" or a message "bad json {'a': 1}" would make the summary raise and be lost).
N, S = "\x00n\x00", "\x00s\x00"


def as_seconds(value: float) -> str:
    """Seconds as a message shows them: two decimals (``0.25``), except where two decimals would say another
    number. A ``Timeout(0.001)`` logged "timed out after 0.00 s" (an ERROR record naming a limit of zero, which no
    Timeout can have) and a 1 ms backoff "retrying in 0.00 s": under 5 ms, two significant digits, still written
    out (``0.001``, ``0.000045``: no exponent for a reader or a pattern matching digits and a point to trip on).
    From a million seconds (a ``maximum=1e300`` backoff printed 300 digits), three significant digits. The
    record's fields keep the exact number."""
    size = abs(value)
    if value == 0 or 0.005 <= size < 1e6:
        return f"{value:.2f}"
    if size >= 1e6:
        return f"{value:.3g}"
    shown = f"{value:.{min(12, 1 - math.floor(math.log10(size)))}f}".rstrip("0")
    return shown if not shown.endswith(".") else f"{value:.2g}"  # under a picosecond: an exponent after all


def word(value: str) -> str:
    """A value of a fixed vocabulary (a reason, a mode, a signal) as a message shows it: as it is, or quoted like a
    name (``%r``) when it holds a character that is not printable. Names and exception messages are always quoted
    (``%r``): a name "a\nFAKE LOG LINE" wrote a second, forged line into a plain-text log, and an ESC sequence
    recoloured the terminal; a reason comes from the library or from shared state in Redis, which others write."""
    return value if value.isprintable() else repr(value)


def summary_text(summary: str, n: int, seconds: float) -> str:
    """A summary's message for ``n`` occurrences in the last ``seconds``: whole seconds from 1 s on, under that
    as :func:`as_seconds` shows them (44 rejections within 3 ms read "in the last 0 s", an interval of zero)."""
    shown = f"{seconds:.0f}" if seconds >= 1 or seconds <= 0 else as_seconds(seconds)
    return summary.replace(N, f"{n:,}").replace(S, shown)


class Record(NamedTuple):
    """One record to emit. ``summary`` is the message of a record standing for ``N`` occurrences
    in the last ``S`` seconds (see :func:`summary_text`).

    Built only when a record is written (each builder takes the event and whether exception messages
    are wanted), or when the flood limiter holds back an occurrence with an error, which it keeps as its
    record rather than the error and its traceback (a rejection, an error-free flood, costs no building).
    """

    logger: str
    event: str
    message: str
    args: tuple[Any, ...]
    fields: dict[str, Any]
    summary: str


def _error(fields: dict[str, Any], error: BaseException | None, messages: bool) -> str:
    """Add ``error.type`` (and the message when opted in) to ``fields``; the text for the message."""
    kind = error_type(error)
    if kind is None:
        return ""
    fields[t.ERROR_TYPE] = kind
    message = error_message(error) if messages and error is not None else ""
    if message:
        fields[t.EXCEPTION_MESSAGE] = message
        return f": {kind}: {message!r}"
    return f": {kind}"


def retry_scheduled(event: RetryScheduled, messages: bool) -> Record:
    fields: dict[str, Any] = {t.OPERATION: event.operation, t.ATTEMPT: event.attempt,
                              t.RETRY_DELAY: event.delay_s}
    if event.max_attempts is not None:
        fields[t.RETRY_MAX_ATTEMPTS] = event.max_attempts
    cause = _error(fields, event.error, messages)
    of = f"/{event.max_attempts}" if event.max_attempts is not None else ""
    return Record(
        t.LOGGER_RETRY, t.EVENT_RETRY_SCHEDULED,
        "retrying %r after %s s (attempt %d%s)%s",
        (event.operation, as_seconds(event.delay_s), event.attempt + 1, of, cause),
        fields, f"retried {event.operation!r} {N} times in the last {S} s (last: attempt "
        f"{event.attempt + 1}{of} after {as_seconds(event.delay_s)} s{cause})",
    )


def rejected(event: CallRejected, messages: bool) -> Record:
    fields = {t.OPERATION: event.operation, t.BREAKER_NAME: event.breaker, t.BREAKER_STATE: event.state.value}
    why = f"circuit breaker {event.breaker!r} is {event.state.value}"
    return Record(
        t.LOGGER_BREAKER, t.LOG_EVENT_REJECTED, "rejected a call to %r: %s",
        (event.operation, why), fields, f"rejected {N} calls to {event.operation!r} in the last {S} s: {why}",
    )


def transition(event: BreakerTransition, messages: bool) -> Record:
    fields = {t.BREAKER_NAME: event.breaker, t.BREAKER_FROM: event.from_state.value,
              t.BREAKER_TO: event.to_state.value, t.BREAKER_REASON: event.reason}
    name = TRANSITION_EVENTS[event.to_state]
    return Record(  # never summarised: every state change is told, in order
        t.LOGGER_BREAKER, name, "circuit breaker %r is %s (was %s): %s",
        (event.breaker, event.to_state.value, event.from_state.value, word(event.reason)), fields, "",
    )


def timed_out(event: TimedOut, messages: bool) -> Record:
    fields = {t.OPERATION: event.operation, t.TIMEOUT_LIMIT: event.timeout_s}
    return Record(
        t.LOGGER_TIMEOUT, t.LOG_EVENT_TIMED_OUT, "%r timed out after %s s",
        (event.operation, as_seconds(event.timeout_s)), fields,
        # "last": a pipeline's Timeouts (the total and the per-attempt one) share its name, so one summary
        # counts both; "(limit 1.00 s)" said each of its N timeouts had that limit
        f"{event.operation!r} timed out {N} times in the last {S} s (last: limit {as_seconds(event.timeout_s)} s)",
    )


def fallback(event: FallbackStarted, messages: bool) -> Record:
    fields: dict[str, Any] = {t.OPERATION: event.operation, t.FALLBACK_REASON: event.reason}
    cause = _error(fields, event.error, messages)
    return Record(
        t.LOGGER_FALLBACK, t.LOG_EVENT_FALLBACK, "falling back for %r (%s)%s",
        (event.operation, word(event.reason), cause), fields,
        f"fell back for {event.operation!r} {N} times in the last {S} s (last: {word(event.reason)}{cause})",
    )


def degraded(event: Degraded, messages: bool) -> Record:
    fields: dict[str, Any] = {t.OPERATION: event.operation, t.DEGRADE_MODE: event.mode,
                              t.DEGRADE_REASON: event.reason}
    cause = _error(fields, event.error, messages)
    return Record(
        t.LOGGER_DEGRADE, t.EVENT_DEGRADED, "serving a degraded result for %r (%s, %s)%s",
        (event.operation, word(event.mode), word(event.reason), cause), fields,
        f"served {N} degraded results for {event.operation!r} in the last {S} s "
        f"(last: {word(event.mode)}, {word(event.reason)}{cause})",
    )


def compensation(event: CompensationFinished, messages: bool) -> Record:
    fields: dict[str, Any] = {t.SAGA_NAME: event.saga, t.SAGA_STEP: event.step,
                              t.COMPENSATION_OUTCOME: event.outcome.value}
    if event.outcome is Outcome.SUCCESS:
        return Record(
            t.LOGGER_SAGA, t.LOG_EVENT_COMPENSATED, "compensated step %r of saga %r",
            (event.step, event.saga), fields,
            f"compensated step {event.step!r} of saga {event.saga!r} {N} times in the last {S} s",
        )
    cause = _error(fields, event.error, messages)
    return Record(
        t.LOGGER_SAGA, t.LOG_EVENT_COMPENSATION_FAILED, "compensation of step %r of saga %r: %s%s",
        (event.step, event.saga, event.outcome.value, cause), fields,
        f"compensation of step {event.step!r} of saga {event.saga!r} did not succeed {N} times in the last "
        f"{S} s (last: {event.outcome.value}{cause})",
    )
