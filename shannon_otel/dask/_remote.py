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
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from distributed import Future
from opentelemetry import context, propagate, trace

from .._events import error_type
from .._otel._end import end
from .._otel._exception import forget, record_error
from .._otel._providers import tracing_enabled
from .._otel._scope import failed
from .._telemetry import DASK_WORKER, ERROR_TYPE, SCHEMA_URL, SCOPE_NAME, SPAN_REMOTE, TASK_NAME
from .._version import __version__
from ..executor._task import CURRENT_TASK, end_measurements, measuring

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
        tracer = trace.get_tracer(SCOPE_NAME, __version__, schema_url=SCHEMA_URL)
        # The SDK's own handling would record a cancellation as an error, without error.type; and its end would be
        # the wall clock's now, before its start after a step back (ended here as the local spans are: _otel._end)
        with tracer.start_as_current_span(SPAN_REMOTE.format(task=name), kind=trace.SpanKind.CONSUMER,
                                          attributes=attributes, record_exception=False,
                                          set_status_on_exception=False, end_on_exit=False) as span:
            try:
                yield
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                forget(span)  # the errors its child spans noted on it: not kept past its end
                end(span)
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

    ``measured``: the caller runs in a wave task, so ``record()`` / ``record_tokens()`` / ``record_cost()``
    called by ``fn`` on the worker record for that task (sent back with the outcome, see :class:`Measured`);
    outside one they raise, as they do on the client.
    """

    __slots__ = ("args", "carrier", "deps", "fn", "key", "kwargs", "measured", "name")

    def __init__(
        self, fn: Callable[..., Any], name: str, carrier: Mapping[str, str], args: tuple[Any, ...],
        kwargs: dict[str, Any], measured: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name
        self.carrier = carrier
        self.measured = measured
        self.key: str | None = None  # the Dask key it runs under, set by the backend as it submits
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
        return self.fn, self.name, self.carrier, self.args, self.kwargs, self.measured, self.key

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.fn, self.name, self.carrier, self.args, self.kwargs, self.measured, self.key = state
        self.deps = {}


class Measured:
    """A remote call's value with what ``record()`` & co. wrote on the worker, unwrapped on the client.
    Only sent when something was recorded: a call that records nothing sends its value alone."""

    __slots__ = ("measurements", "value")

    def __init__(self, value: Any, measurements: dict[str, float]) -> None:
        self.value = value
        self.measurements = measurements

    def __reduce__(self) -> tuple[Any, ...]:
        return Measured, (self.value, self.measurements)


class MeasuredError(Exception):
    """A failed call's error with what ``record()`` & co. wrote on the worker before it failed (tokens spent on a
    call that then failed were still spent), unwrapped on the client: the user gets ``error`` itself. Only sent
    when something was recorded. The measurements travel beside the error, not as an attribute of it: an error
    class with its own ``__reduce__`` (botocore's ``ClientError``) pickles without its attributes, and they were
    lost. Its ``repr`` is the error's, which Dask logs on the worker and falls back to (a plain ``Exception``
    holding the repr) for an error that does not pickle. Its ``str`` is short and never calls the error's: Dask
    rebuilds an error whose ``str`` is long as ``type(e)("Long error message", ...)``, which would make this a
    carrier of a string; the user's error arrives whole."""

    def __init__(self, error: BaseException, measurements: dict[str, float]) -> None:
        super().__init__(error, measurements)
        self.error = error
        self.measurements = measurements

    def __reduce__(self) -> tuple[Any, ...]:
        return MeasuredError, (self.error, self.measurements)

    def __repr__(self) -> str:
        return repr(self.error)

    def __str__(self) -> str:
        return f"{type(self.error).__name__}, with what the call recorded"


@contextlib.contextmanager
def _measuring(payload: Payload) -> Iterator[list[dict[str, float] | None]]:
    """A wave task's slot current on the worker while ``fn`` runs (only when the caller runs in one); yields a
    box that holds, once the block is left (by a return or an error), what was recorded (None: nothing)."""
    box: list[dict[str, float] | None] = [None]
    if not payload.measured:
        yield box
        return
    slot, token = measuring()
    try:
        yield box
    finally:
        box[0] = end_measurements(slot)
        CURRENT_TASK.reset(token)


def sent(value: Any, box: list[dict[str, float] | None]) -> Any:
    return Measured(value, box[0]) if box[0] else value


# Raised as they are, never carried: Dask's own handling of them (a KeyboardInterrupt / SystemExit ends the worker;
# a cancelled async task is Dask's cancellation) must see them.
_NOT_CARRIED = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)


def _carrying(error: BaseException, box: list[dict[str, float] | None]) -> MeasuredError | None:
    """What the worker raises for ``error`` when the call recorded something: a :class:`MeasuredError` carrying
    both (its traceback the error's, so Dask sends the user's frames); None when it recorded nothing, or for an
    error of ``_NOT_CARRIED`` (``error`` goes as is). A BaseException of the user's own is carried too: Dask sends
    it as any error, and what the call recorded came with it (an attribute of it) before MeasuredError."""
    if not box[0] or isinstance(error, _NOT_CARRIED):
        return None
    sendable = _sendable(error)
    carrier = MeasuredError(sendable, box[0]).with_traceback(error.__traceback__)
    # Its context the error Dask is to send (raised outside the handler, Python keeps it): Dask pickles the context
    # too, so an error that does not pickle failed the carrier as its context, not only as its error.
    carrier.__context__, carrier.__suppress_context__ = sendable, True
    return carrier


def _sendable(error: BaseException) -> BaseException:
    """``error``, or Dask's stand-in for an error that does not pickle (or unpickle) on the worker:
    ``Exception(repr(error))``, as ``distributed.core.error_message`` makes. Made here for the error alone: it failed
    the whole MeasuredError, which Dask then replaced, and what the call recorded was lost with it."""
    from distributed.protocol import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        try:
            text = repr(error)
        except Exception:  # a repr that raises: the error's type and address still say what it was
            text = object.__repr__(error)
        return Exception(text).with_traceback(error.__traceback__)
    return error


WATCH_S = 0.25  # how often a running async task looks whether Dask cancelled its key


async def _until_cancelled(call: Awaitable[T], key: str | None) -> T:
    """Await ``call`` on the worker's loop, cancelling it once the worker cancels ``key`` (the client cancelled the
    future: a task timeout, the wave cancelled, a hedge's losing attempt, fail-fast). Dask only drops the result of
    a running task; an ``async def`` one went on running, holding one of the worker's task slots and its ``remote``
    span open until it ended: one that never ended (a wait for an event, a stuck connection) held them for ever,
    and the worker's later tasks waited for its slots. A plain function in its thread cannot be interrupted."""
    from distributed import get_worker

    try:
        tasks = get_worker().state.tasks
    except ValueError:  # not run by a Dask worker (called directly): no key to watch
        tasks = None
    if key is None or tasks is None:
        return await call
    running = asyncio.ensure_future(call)  # a task of its own: cancelling it leaves Dask's own task alone
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle

    def look() -> None:
        nonlocal timer
        state = tasks.get(key)
        if state is None or state.state == "cancelled":
            running.cancel()
        else:
            timer = loop.call_later(WATCH_S, look)

    timer = loop.call_later(WATCH_S, look)
    try:
        return await running
    finally:
        timer.cancel()


def run_sync(payload: Payload, values: Mapping[int | str, Any] | None = None) -> Any:
    """Worker-side entry of a plain function (run in a worker thread)."""
    box: list[dict[str, float] | None] = [None]
    try:
        with _remote_span(payload.name, payload.carrier), _measuring(payload) as box:
            result = payload.call(values)
            if inspect.iscoroutine(result):  # a sync wrapper of an async function: nothing here can await it
                result.close()  # never awaited: closed, so Python does not warn about it on the worker
                raise TypeError(
                    f"fn {payload.name!r} returned a coroutine from a plain call; ship the async function itself "
                    "(an async def, or an object whose __call__ is async def) so that the worker awaits it",
                )
    except BaseException as exc:
        carrier = _carrying(exc, box)
        if carrier is None:
            raise
    else:
        return sent(result, box)
    raise carrier  # its context the error (_carrying): Dask then pickles the error's traceback with it


async def run_async(payload: Payload, values: Mapping[int | str, Any] | None = None) -> Any:
    """Worker-side entry of an ``async def`` function (run on the worker's event loop)."""
    box: list[dict[str, float] | None] = [None]
    try:
        with _remote_span(payload.name, payload.carrier), _measuring(payload) as box:
            result = await _until_cancelled(payload.call(values), payload.key)
    except BaseException as exc:
        carrier = _carrying(exc, box)
        if carrier is None:
            raise
    else:
        return sent(result, box)
    raise carrier  # its context the error (_carrying): Dask then pickles the error's traceback with it
