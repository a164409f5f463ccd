"""What runs on the Dask worker: the task inside a span that continues the caller's trace.

The client injects the W3C trace context of the span current when it submits (the wave's task
span, or the attempt span under a policy) into a plain dict that travels with the task; here it is
extracted and a ``remote {task}`` span is made current around the user's function, so the spans
the function opens on the worker nest under it, in the same trace. Without a tracer provider on
the worker (no :class:`WorkerTelemetry`) the span is a no-op, and the context still propagates.

The span is a CONSUMER span: the OTel specification's SpanKind for "the initial consumer of an asynchronous
request" (the client submits and gets a future back; the scheduler queues the task), as Ray's remote
functions and the Celery instrumentation's worker spans are; not INTERNAL, which the specification keeps
for operations "as opposed to an operation with remote parents or children". It ends as a local task
span does: a failure is ERROR with ``error.type``, the status description and one ``exception`` event;
a cancellation is no error (UNSET).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from distributed import Future
from opentelemetry import context, propagate, trace

from .._events import error_type
from .._otel._exception import forget, record_error
from .._otel._providers import tracing_enabled
from .._otel._scope import failed
from .._telemetry import DASK_WORKER, ERROR_TYPE, SCOPE_NAME, SPAN_REMOTE, TASK_NAME
from .._version import __version__

T = TypeVar("T")


@contextlib.contextmanager
def _remote_span(name: str, carrier: Mapping[str, str]) -> Iterator[None]:
    # The caller's context is attached first and on its own: with no SDK on the worker the API's
    # no-op span would otherwise replace it, and the user's own spans would lose their parent.
    token = context.attach(propagate.extract(carrier))
    try:
        if not tracing_enabled(None):
            yield
            return
        attributes = {TASK_NAME: name}
        worker = _worker_address()
        if worker is not None:
            attributes[DASK_WORKER] = worker
        tracer = trace.get_tracer(SCOPE_NAME, __version__)
        # The SDK's own handling would record a cancellation as an error, without error.type
        with tracer.start_as_current_span(SPAN_REMOTE.format(task=name), kind=trace.SpanKind.CONSUMER,
                                          attributes=attributes, record_exception=False,
                                          set_status_on_exception=False) as span:
            try:
                yield
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                forget(span)  # the errors its child spans noted on it: not kept past its end
    finally:
        context.detach(token)


def _failed(span: trace.Span, error: BaseException) -> None:
    """Mark the remote span failed by ``error``, as the OTel hook marks a failed task span; never raises."""
    try:
        etype = error_type(error) or type(error).__name__
        span.set_attribute(ERROR_TYPE, etype)
        span.set_status(failed(etype, error))
        record_error(span, error)
    except Exception:  # a broken telemetry pipeline must not replace the task's own error
        pass


def _worker_address() -> str | None:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not inside a worker (a LocalCluster of threads runs tasks in the client process)
        return None


class Payload:
    """One task as it travels to the worker: opaque to Dask, which never looks inside its arguments
    (a tuple argument starting with a callable would otherwise be read as a task of its graph).

    A Dask ``Future`` given as an argument (positional or keyword, not nested) is taken out into
    ``deps`` ({position or keyword: future}), which the backend hands Dask beside the payload: Dask
    replaces it by the future's value on the worker, as ``client.submit(fn, future)`` does (inside
    the opaque payload the function got the Future itself).
    """

    __slots__ = ("args", "carrier", "deps", "fn", "kwargs", "name")

    def __init__(
        self, fn: Callable[..., Any], name: str, carrier: Mapping[str, str], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.fn = fn
        self.name = name
        self.carrier = carrier
        self.deps: dict[int | str, Any] = {i: a for i, a in enumerate(args) if isinstance(a, Future)}
        self.deps.update((k, v) for k, v in kwargs.items() if isinstance(v, Future))
        if self.deps:
            args = tuple(None if i in self.deps else a for i, a in enumerate(args))
            kwargs = {k: None if k in self.deps else v for k, v in kwargs.items()}
        self.args = args
        self.kwargs = kwargs

    def call(self, values: Mapping[int | str, Any] | None) -> Any:
        """``fn`` called with the arguments, the futures' ``values`` (resolved by Dask) put back."""
        args, kwargs = self.args, self.kwargs
        if values:
            args = tuple(values.get(i, a) for i, a in enumerate(args))
            kwargs = {k: values.get(k, v) for k, v in kwargs.items()}
        return self.fn(*args, **kwargs)

    def __getstate__(self) -> tuple[Any, ...]:  # deps travel beside the payload, resolved by Dask
        return self.fn, self.name, self.carrier, self.args, self.kwargs

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.fn, self.name, self.carrier, self.args, self.kwargs = state
        self.deps = {}


def run_sync(payload: Payload, values: Mapping[int | str, Any] | None = None) -> Any:
    """Worker-side entry of a plain function (run in a worker thread)."""
    with _remote_span(payload.name, payload.carrier):
        result = payload.call(values)
        if inspect.iscoroutine(result):  # a sync wrapper of an async function: nothing here can await it
            result.close()  # never awaited: closed, so Python does not warn about it on the worker
            raise TypeError(
                f"fn {payload.name!r} returned a coroutine from a plain call; ship the async function itself "
                "(an async def, or an object whose __call__ is async def) so that the worker awaits it",
            )
        return result


async def run_async(payload: Payload, values: Mapping[int | str, Any] | None = None) -> Any:
    """Worker-side entry of an ``async def`` function (run on the worker's event loop)."""
    with _remote_span(payload.name, payload.carrier):
        return await payload.call(values)
