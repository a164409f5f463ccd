"""Test helpers shared by the probe and cancellation suites: which spans are still open, and hooks
whose observers raise a BaseException from one chosen method."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor


class OpenSpans(SpanProcessor):
    """Spans started and not (yet) ended."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        assert span.context is not None
        self.open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        self.open.pop(span.context.span_id, None)


class HookInterruptError(BaseException):
    """What a hook may raise that is not its error to isolate (as KeyboardInterrupt): it propagates."""


class RaisingOn:
    """Mixin for an observer: its method named ``method`` raises :class:`HookInterruptError`."""

    def __init__(self, method: str) -> None:
        self.method = method

    def __getattribute__(self, name: str) -> Any:
        if name == object.__getattribute__(self, "method"):
            def raising(*args: Any) -> None:
                raise HookInterruptError(name)
            return raising
        return object.__getattribute__(self, name)
