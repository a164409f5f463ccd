"""Run a wave's tasks on a Dask cluster: each task becomes a factory that submits one future.

The wave itself (concurrency, per-task timeout, rate limit, batches, pools, fail-fast, ordering,
streaming, progress, the report, hooks) stays on the client and is the ordinary :class:`Wave`;
policies wrap the factory on the client too, so one breaker sees every worker's outcome and a retry
submits a new future. Only the user's function and its arguments travel.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, overload

from opentelemetry import propagate

from .._reraise import raise_as_is
from .._validate import check_default_name, check_iterable, check_number, check_telemetry_name
from ..executor import ResourcePool, TaskSpec, task
from ..executor._task import add_measurements, in_task
from ._gather import Gatherer
from ._remote import Measured, MeasuredError, Payload, run_async, run_sync
from ._shipping import check_arguments, check_function, is_async_callable, qualified_name

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")
R = TypeVar("R")
_Pool: TypeAlias = "ResourcePool | str | None"  # as task() takes it
_log = logging.getLogger("shannon_otel.dask")


class RemoteFunction(Generic[T]):
    """``fn`` bound to a backend: calling it returns a coroutine that runs ``fn(*args)`` on a worker.

    Usable wherever an async function is: ``await remote(x)``, ``Wave.map(remote, items)``, inside
    a policy. Arguments are checked (they must pickle) when called, before anything is submitted.
    Two remote functions of one backend, ``fn`` and name are equal (and hash alike), as ``fn`` is
    to itself: a policy keeping state per function (``Degrade(last_good=True)``) keeps it across
    waves that each call ``backend.map(fn, ...)``.
    """

    __slots__ = ("_backend", "_entry", "_identity", "_submission", "fn", "name")

    def __init__(self, backend: DaskBackend, fn: Callable[..., Any], name: str) -> None:
        self._backend = backend
        self.fn: Callable[..., Any] = fn
        self.name: str = name
        self._entry = run_async if is_async_callable(fn) else run_sync
        try:
            hash(fn)
            self._identity: tuple[Any, ...] = (backend, fn, name)
        except TypeError:  # an unhashable callable object: equal to itself only
            self._identity = (self,)
        self._submission = _Submission(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, T]:
        check_arguments(args, kwargs)
        return self._backend._submit(self._entry, self.fn, self.name, args, kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> Callable[[], Awaitable[T]]:
        """A zero-argument factory of one call (what a wave and a retry need), arguments checked now.

        A ``functools.partial`` holding the arguments, as ``Wave.map`` builds: a policy that keys
        state by the call's arguments (``Degrade(last_good=True, key=...)``) reads them there.
        """
        check_arguments(args, kwargs)
        return functools.partial(self._submission, *args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteFunction) and self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity) if self._identity[0] is not self else id(self)

    def __repr__(self) -> str:
        return f"RemoteFunction({self.name!r})"


class _Submission:
    """What a bound factory calls: submits without checking the arguments again (``bind`` did).
    Equal to another when their remote functions are (a policy's per-function state, above)."""

    __slots__ = ("remote",)

    def __init__(self, remote: RemoteFunction[Any]) -> None:
        self.remote = remote

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        r = self.remote
        return r._backend._submit(r._entry, r.fn, r.name, args, kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Submission) and self.remote == other.remote

    def __hash__(self) -> int:
        return hash(self.remote) ^ 1

    def __repr__(self) -> str:
        return f"RemoteFunction({self.remote.name!r})"


class DaskBackend:
    """Submits wave tasks to a ``distributed.Client`` created with ``asynchronous=True``.

    >>> backend = DaskBackend(client)
    >>> result = await Wave("crawl", max_concurrency=50, policy=Retry()).run(backend.map(fetch, urls))

    ``fn`` must be a module-level function (sync or ``async def``) or another picklable callable;
    coroutine objects and closures over local state are refused with :class:`UnshippableTaskError`
    before anything is submitted. Every submission is ``pure=False`` (two equal calls are two tasks)
    with ``retries=0``: retries are the client-side policy's job. Dask's scheduler also re-runs a task
    whose worker died, up to ``distributed.scheduler.allowed-failures`` times (default 3) before it
    raises ``KilledWorker``; set it to 0 on the scheduler to let the policy alone decide (see docs).
    Cancelling a task (wave cancelled, fail-fast, per-task timeout) cancels its future on the
    cluster; an ``async def`` function already running on the worker's loop is cancelled there, a plain
    function already running in a worker thread cannot be: it finishes there, its result dropped.

    Results are fetched many per gather (a gather costs the cluster far more than the results it
    carries): while the cluster is busy with at least as many of this backend's tasks as it has
    threads, a finished task's result waits up to ``gather_window_s`` (0 to 1 s, default 0.05) to
    share a gather with others; with a thread free, it is fetched at once. The per-task timeout
    covers that wait too.
    """

    __slots__ = ("_cancels", "_queue", "_results", "client")

    def __init__(self, client: Client, *, gather_window_s: float = 0.05) -> None:
        from distributed import Client

        check_number("gather_window_s", gather_window_s, low=0, high=1.0)
        if not isinstance(client, Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        if not client.asynchronous:
            raise ValueError("client must be asynchronous: create it with Client(..., asynchronous=True)")
        _check_open(client)
        self.client: Client = client
        self._results = Gatherer(client, float(gather_window_s))
        self._cancels: set[asyncio.Future[Any]] = set()
        self._queue: list[tuple[Callable[..., Any], str, Payload, asyncio.Future[Future[Any]]]] = []

    # The result type is the function's (an async function's: what it returns awaited), so a wave's results keep it.
    @overload
    def remote(self, fn: Callable[..., Awaitable[R]], *, name: str | None = None) -> RemoteFunction[R]: ...
    @overload
    def remote(self, fn: Callable[..., R], *, name: str | None = None) -> RemoteFunction[R]: ...
    def remote(self, fn: Callable[..., Any], *, name: str | None = None) -> RemoteFunction[Any]:
        """``fn`` as an async callable that runs on the cluster; ``name`` names its spans (default: qualname)."""
        check_function(fn)
        if name is not None and (not isinstance(name, str) or not name):  # a wrong type: TypeError
            raise (ValueError if isinstance(name, str) else TypeError)(
                f"name must be a non-empty string or None, got {name!r}")
        check_telemetry_name("name", name)
        if name is None:
            name = qualified_name(fn)
            check_default_name("fn's qualified name (the default name of its tasks and spans)", name,
                               "pass a shorter name=")
        return RemoteFunction(self, fn, name)

    @overload
    def task(
        self, fn: Callable[..., Awaitable[R]], /, *args: Any, name: str | None = None, pool: _Pool = None,
        **kwargs: Any,
    ) -> TaskSpec[R]: ...
    @overload
    def task(
        self, fn: Callable[..., R], /, *args: Any, name: str | None = None, pool: _Pool = None, **kwargs: Any,
    ) -> TaskSpec[R]: ...
    def task(
        self, fn: Callable[..., Any], /, *args: Any, name: str | None = None, pool: _Pool = None, **kwargs: Any,
    ) -> TaskSpec[Any]:
        """One wave task running ``fn(*args, **kwargs)`` on a worker (a factory: retries resubmit).

        ``name`` and ``pool`` are the task's, never passed to ``fn``: given for an ``fn`` that has a parameter of that
        name, the call is refused (``TypeError``) rather than run without the argument the caller meant for ``fn``.
        """
        if name is not None or pool is not None:
            _check_not_fns("name", name, fn)
            _check_not_fns("pool", pool, fn)
        remote = self.remote(fn, name=name)
        return task(remote.bind(*args, **kwargs), name=remote.name, pool=pool)

    @overload
    def map(
        self, fn: Callable[..., Awaitable[R]], items: Iterable[Any], *, name: str | None = None, pool: _Pool = None,
    ) -> list[TaskSpec[R]]: ...
    @overload
    def map(
        self, fn: Callable[..., R], items: Iterable[Any], *, name: str | None = None, pool: _Pool = None,
    ) -> list[TaskSpec[R]]: ...
    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], *, name: str | None = None, pool: _Pool = None,
    ) -> list[TaskSpec[Any]]:
        """One task per item (``fn(item)``), every item checked before the list is returned."""
        _check_items(items)
        remote = self.remote(fn, name=name)
        return [task(remote.bind(item), name=remote.name, pool=pool) for item in items]

    @overload
    def imap(
        self, fn: Callable[..., Awaitable[R]], items: Iterable[Any], *, name: str | None = None, pool: _Pool = None,
    ) -> Iterator[TaskSpec[R]]: ...
    @overload
    def imap(
        self, fn: Callable[..., R], items: Iterable[Any], *, name: str | None = None, pool: _Pool = None,
    ) -> Iterator[TaskSpec[R]]: ...
    def imap(
        self, fn: Callable[..., Any], items: Iterable[Any], *, name: str | None = None, pool: _Pool = None,
    ) -> Iterator[TaskSpec[Any]]:
        """Like :meth:`map`, lazily (for ``Wave.stream`` over long or endless inputs)."""
        _check_items(items)
        if pool is not None:
            task(_never, pool=pool)  # checks pool now, not at the first item
        remote = self.remote(fn, name=name)
        return (task(remote.bind(item), name=remote.name, pool=pool) for item in items)

    async def _submit(
        self, entry: Callable[..., Any], fn: Callable[..., Any], name: str, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        client = self.client
        _check_open(client)
        if client.status != "running":  # created without await: its start may still be running, or have failed
            await _started(client)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the span current now: the task span, or the attempt under a policy
        waiter: asyncio.Future[Future[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, name, Payload(fn, name, carrier, args, kwargs, in_task()), waiter))
        if len(self._queue) == 1:
            # Everything submitted during this turn of the loop goes in one message (client.map):
            # the scheduler's cost is per message far more than per task.
            asyncio.get_running_loop().call_soon(self._flush)
        future = None
        failed = None
        try:
            future = await waiter
            value = await self._results.result(future)
        except asyncio.CancelledError:
            # A submission that failed (its error on the waiter) has nothing to cancel; reading its result here
            # raised that error in place of the cancellation, which the caller then never saw.
            if future is None and waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                future = waiter.result()
            if future is not None:
                self._cancel(future)
            raise
        except BaseException as exc:
            # The error goes to the caller with this frame in its traceback: the frame must not hold the
            # Future (nor the waiter holding it), or Dask, which keeps that error, never releases the key.
            del future, waiter
            if type(exc) is not MeasuredError:
                raise
            failed = exc
        if failed is not None:
            # The call failed after recording (tokens spent are spent): what it recorded, then its error, raised
            # here, out of the handler, so its context stays what it was raised with on the worker.
            add_measurements(failed.measurements)
            error = failed.error
            del failed
            raise_as_is(error)
        if type(value) is Measured:  # what the call recorded on the worker: the task's, as if recorded here
            add_measurements(value.measurements)
            return value.value
        return value

    def _flush(self) -> None:
        """Submit the queued tasks, one ``client.map`` per entry function and task name.

        Dask names the keys ``{name}-{uuid of the map}-{i}`` (``pure=False``): one UUID per map,
        not one per task.
        """
        queue, self._queue = self._queue, []
        groups: dict[tuple[Callable[..., Any], str], list[tuple[Payload, asyncio.Future[Future[Any]]]]] = {}
        for entry, name, payload, waiter in queue:
            groups.setdefault((entry, name), []).append((payload, waiter))
        for (entry, name), group in groups.items():
            payloads = [p for p, _ in group]
            # Futures given as arguments go beside the payloads, where Dask sees them (and sends their values)
            deps = [[p.deps for p in payloads]] if any(p.deps for p in payloads) else []
            # Dask's own keys for pure=False, made here so each payload knows the key it runs under (an async
            # function on the worker stops when its key is cancelled, _remote._until_cancelled)
            uid = uuid.uuid4()
            keys = [f"{name}-{uid}-{i}" for i in range(len(payloads))]
            for payload, key in zip(payloads, keys, strict=True):
                payload.key = key
            try:
                futures = self.client.map(entry, payloads, *deps, key=keys, pure=False, retries=0)
            except Exception as exc:
                for _, waiter in group:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for (_, waiter), future in zip(group, futures, strict=True):
                if waiter.done():  # its task was cancelled before the flush: drop it on the cluster too
                    self._cancel(future)
                else:
                    waiter.set_result(future)

    def _cancel(self, future: Future[Any]) -> None:
        """Tell the scheduler to drop ``future`` without awaiting it (we are being cancelled)."""
        try:
            pending = asyncio.ensure_future(self.client.cancel([future]))
        except Exception:  # the client is closing: nothing left to cancel on
            _log.debug("could not cancel %r", future.key, exc_info=True)
            return
        self._cancels.add(pending)
        pending.add_done_callback(self._cancelled)

    def _cancelled(self, done: asyncio.Future[Any]) -> None:
        self._cancels.discard(done)
        if not done.cancelled() and done.exception() is not None:
            _log.debug("cancelling a future failed", exc_info=done.exception())


def _check_open(client: Client) -> None:
    if client.status in ("closing", "closed"):
        raise RuntimeError(f"the Dask client is {client.status}; open a new Client(..., asynchronous=True)")


async def _started(client: Client) -> None:
    """Wait for a client created without ``await`` (``Client(..., asynchronous=True)`` connects in the background)
    to have connected; raise ``RuntimeError`` naming the cause if it could not. Before, its tasks were submitted at
    once: with its scheduler unreachable they failed with Dask's ``FutureCancelledError`` "cancelled for reason:
    unknown" (the cause left unretrieved in Dask's start task), and with an address Dask refuses (``ValueError``) the
    client stayed "connecting" for ever and so did the wave. A client that started and is reconnecting (its
    scheduler lost) returns at once: its tasks wait for the reconnection, as Dask's do."""
    try:
        # shielded: cancelling this task (a timeout, the wave cancelled) must not cancel the client's own start
        await asyncio.shield(asyncio.ensure_future(client))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise RuntimeError(
            f"the Dask client could not connect to its scheduler ({type(exc).__name__}: {exc}); open a new "
            "client with await Client(..., asynchronous=True)",
        ) from exc


def _check_not_fns(keyword: str, value: object, fn: Callable[..., Any]) -> None:
    """Refuse ``backend.task(fn, ..., name=x)`` (or ``pool=``) when ``fn`` has a parameter ``name`` it could take by
    keyword (one a ``functools.partial`` bound already excepted): ``name=`` names the task and never reaches ``fn``,
    so ``fn`` ran without it, on its default if it has one (the caller's value silently lost)."""
    if value is None or (isinstance(fn, functools.partial) and keyword in fn.keywords):
        return
    try:
        parameter = inspect.signature(fn).parameters.get(keyword)
    except (TypeError, ValueError):  # no signature to read (some builtins): nothing to compare
        return
    if parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
        raise TypeError(
            f"{keyword}={value!r} names the task's {keyword} and is not passed to fn, but fn {qualified_name(fn)!r} "
            f"has a parameter {keyword!r}: bind it first, backend.task(functools.partial(fn, {keyword}=...), ...), "
            f"and give the task's {keyword}= beside it",
        )


def _check_items(items: object) -> None:
    check_iterable("items", items)


async def _never() -> None:  # pragma: no cover - only its spec is built, to check a pool
    return None
