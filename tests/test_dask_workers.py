"""What a user ships to Dask workers on a real LocalCluster: callable objects with an async ``__call__``,
functions returning coroutines, futures and large arrays as arguments, and WorkerTelemetry registered again."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
import traceback
import tracemalloc
from collections.abc import Callable
from typing import Any, ClassVar

import _dask_tasks as tasks
import numpy as np
import pytest
from _dask_cluster import DASK_WARNINGS, module_cluster, on_cluster
from distributed import Client, LocalCluster

from shannon_otel import Outcome, Retry, TaskSpec, Wave, WaveResult
from shannon_otel.dask import DaskBackend, WorkerTelemetry
from shannon_otel.testing import InMemoryTelemetry

pytestmark = DASK_WARNINGS


cluster = module_cluster(1)



class AsyncAdder:
    """A callable object whose ``__call__`` is ``async def`` (``inspect.iscoroutinefunction`` says False)."""

    def __init__(self, k: int) -> None:
        self.k = k

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + self.k


def sync_wrapper_of_async(x: int) -> Any:
    """What a careless decorator makes: a plain function returning a coroutine."""
    return tasks.async_double(x)


def describe(a: Any, *, b: Any = None) -> tuple[str, Any, str, Any]:
    return type(a).__name__, a, type(b).__name__, b


@pytest.mark.parametrize("make", [lambda: AsyncAdder(5), lambda: functools.partial(AsyncAdder(5))])
def test_a_callable_object_with_an_async_call_is_awaited_on_the_worker(
    cluster: LocalCluster, make: Callable[[], Any],
) -> None:
    """Bug: an object whose ``__call__`` is ``async def`` went to the worker's plain-function entry: the
    worker called it in a thread and failed to send back the coroutine it got (``Could not serialize
    object of type coroutine``; Python warned that it was never awaited). Now it is awaited, as an async def."""

    async def body(client: Client) -> list[Any]:
        result: WaveResult[Any] = await Wave("w", max_concurrency=2).run(DaskBackend(client).map(make(), [1, 2]))
        return result.values()

    assert on_cluster(cluster, body) == [6, 7]


def test_a_plain_function_returning_a_coroutine_fails_its_task_with_a_clear_error(cluster: LocalCluster) -> None:
    """Bug: the coroutine returned by a sync wrapper was left un-awaited on the worker and the task failed
    with Dask's 'Could not serialize object of type coroutine'. Now the task fails with a TypeError saying
    what to ship instead (and the coroutine is closed)."""

    async def body(client: Client) -> BaseException | None:
        result: WaveResult[Any] = await Wave("w").run(DaskBackend(client).map(sync_wrapper_of_async, [1]))
        assert result.results[0].outcome is Outcome.FAILURE
        return result.results[0].error

    error = on_cluster(cluster, body)
    assert type(error) is TypeError
    assert "returned a coroutine from a plain call" in str(error)


def test_what_a_remote_function_records_counts_for_its_wave_task(cluster: LocalCluster) -> None:
    """Bug: ``record_tokens()`` / ``record_cost()`` / ``record()`` called by the function on the worker
    raised RuntimeError ("must be called from inside a task run by a Wave": the wave task runs on the
    client), so every task of an LLM-calling function shipped to Dask failed. Now they record for the wave
    task on the client, as a local task's calls do: on its span, in the report and the token/cost metrics,
    over every attempt (a failed attempt's tokens were still spent); the user's error comes back as it was
    raised. Called outside a wave task they raise, as on the client."""
    otel = InMemoryTelemetry()

    async def body(client: Client) -> WaveResult[Any]:
        backend = DaskBackend(client)
        work = [*backend.map(tasks.records, [1, 2]), backend.task(tasks.records, 3, fail=True),
                backend.task(tasks.async_records, 4)]
        result: WaveResult[Any] = await Wave(
            "llm", max_concurrency=4, policy=Retry(attempts=2, initial=0, on=ConnectionError), **otel.providers,
        ).run(work)
        with pytest.raises(RuntimeError, match="inside a task run by a Wave"):
            await backend.remote(tasks.records)(5)
        return result

    result = on_cluster(cluster, body)
    assert [r.outcome for r in result.results] == [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE, Outcome.SUCCESS]
    assert [r.value for r in result.results] == [1, 2, None, 4]
    error = result.results[2].error
    assert type(error) is ConnectionError and str(error) == "down 3" and vars(error) == {}
    m = result.report.measurements
    assert m["shannon.task.tokens.input"].total == 10 + 10 + 2 * 10  # the failed task's two attempts
    assert m["shannon.task.tokens.output"].total == 1 + 2 + 2 * 3
    assert m["shannon.task.cost"].total == 0.5 * 4
    assert m["pages"].total == 4
    spans = otel.spans("task records")
    assert sorted(float(dict(s.attributes or {})["shannon.task.tokens.output"]) for s in spans) == [1, 2, 6]  # type: ignore[arg-type]
    assert otel.point("shannon.task.tokens", shannon_token_type="input").sum == 40


def test_what_a_failed_call_recorded_comes_back_with_an_error_class_that_has_its_own_reduce(
    cluster: LocalCluster,
) -> None:
    """Bug: the tokens a failed call recorded on the worker travelled as an attribute of its error, and an error
    class with its own ``__reduce__`` (botocore's ``ClientError``, a throttled LLM call's error) pickles without
    its attributes: the spent tokens were silently dropped from the span, the report and the token metric,
    against the docs' "a failed attempt's tokens were still spent". So were an error's whose message is over
    Dask's 10,000 characters (Dask rebuilt it without its attributes). Now they travel beside the error, whatever
    its pickling, and the user still gets their error, its type, message and traceback unchanged."""
    otel = InMemoryTelemetry()

    async def body(client: Client) -> WaveResult[Any]:
        backend = DaskBackend(client)
        return await Wave(
            "llm", policy=Retry(attempts=2, initial=0, on=tasks.ThrottledError), **otel.providers,
        ).run([*backend.map(tasks.records_then_throttled, [3]), backend.task(tasks.records_then_long_error, 4)])

    result = on_cluster(cluster, body)
    long_error = result.results[1].error
    assert type(long_error) is ValueError and long_error.args == ("x" * 20_000,)
    assert result.results[1].measurements == {"shannon.task.tokens.input": 10, "shannon.task.tokens.output": 4}
    error = result.results[0].error
    assert type(error) is tasks.ThrottledError and error.code == "throttled 3" and error.__context__ is None
    assert "records_then_throttled" in "".join(traceback.format_tb(error.__traceback__))  # the worker's frames
    assert result.results[0].measurements == {  # both attempts' tokens were spent
        "shannon.task.tokens.input": 2 * 10, "shannon.task.tokens.output": 2 * 3}
    assert float(dict(otel.span("task records_then_throttled").attributes or {})["shannon.task.tokens.input"]) == 20  # type: ignore[arg-type]
    assert otel.point("shannon.task.tokens", shannon_token_type="input").sum == 20 + 10


def test_what_a_call_recorded_comes_back_with_a_base_exception_of_the_users_own(cluster: LocalCluster) -> None:
    """Bug: only an Exception carried what the failed call recorded (MeasuredError); a BaseException of the user's own,
    which Dask sends back as any error and which carried it as an attribute before, lost the spent tokens from the
    task span and the token metric. It is carried too (a KeyboardInterrupt / SystemExit / cancellation never is)."""
    otel = InMemoryTelemetry()

    async def body(client: Client) -> BaseExceptionGroup[BaseException]:
        backend = DaskBackend(client)
        try:
            await Wave("own", **otel.providers).run([backend.task(tasks.records_then_abandons, 5)])
        except BaseExceptionGroup as group:
            return group
        raise AssertionError("the wave did not raise")

    group = on_cluster(cluster, body)
    (error,) = group.exceptions
    assert type(error) is tasks.Abandon and str(error) == "abandoned 5"
    attributes = dict(otel.span("task records_then_abandons").attributes or {})
    assert (attributes["shannon.task.tokens.input"], attributes["shannon.task.tokens.output"]) == (10, 5)
    assert otel.point("shannon.task.tokens", shannon_token_type="input").sum == 10


@pytest.mark.parametrize("fn", [tasks.records_then_unpicklable_error, tasks.async_records_then_unpicklable_error],
                         ids=["sync", "async"])
def test_what_a_failed_call_recorded_comes_back_with_an_error_that_does_not_pickle(
    cluster: LocalCluster, fn: Callable[[int], Any],
) -> None:
    """Bug: the tokens a failed call recorded travelled in a MeasuredError beside its error; an error that does not
    pickle (it holds a lock) made the whole carrier fail to pickle, and Dask sent ``Exception(repr(error))`` in its
    place: the spent tokens were lost from the task span, the report and the token metric. Now the worker makes
    that same fallback for the error alone, and what the call recorded still comes back beside it."""
    otel = InMemoryTelemetry()

    async def body(client: Client) -> WaveResult[Any]:
        backend = DaskBackend(client)
        return await Wave("locked", **otel.providers).run(backend.map(fn, [3], name="locked"))

    (outcome,) = on_cluster(cluster, body).results
    assert type(outcome.error) is Exception and outcome.error.args == ("LockedError('locked 3')",)  # Dask's fallback
    assert outcome.measurements == {"shannon.task.tokens.input": 10, "shannon.task.tokens.output": 3}
    attributes = dict(otel.span("task locked").attributes or {})
    assert (attributes["shannon.task.tokens.input"], attributes["shannon.task.tokens.output"]) == (10, 3)
    assert otel.point("shannon.task.tokens", shannon_token_type="input").sum == 10


def test_a_method_calling_super_is_shipped_not_refused_as_a_closure(cluster: LocalCluster) -> None:
    """Bug: a bound method (documented as accepted) whose body calls ``super()`` was refused with
    UnshippableTaskError "is a closure over local state (__class__)": that cell is the compiler's, holding
    the method's class, not local state. Now it is shipped; a real closure is still refused."""

    async def body(client: Client) -> list[Any]:
        backend = DaskBackend(client)
        method = tasks.TenfoldScaler().scaled
        result: WaveResult[Any] = await Wave("w").run([*backend.map(method, [1, 2]), backend.task(method, 3)])
        return result.values()

    assert on_cluster(cluster, body) == [10, 20, 30]


def test_a_dask_future_given_as_an_argument_arrives_as_its_value(cluster: LocalCluster) -> None:
    """Bug: a Future given as an argument (the pattern Dask's own 'large graph' warning recommends:
    scatter the data, pass the future) reached the function as the Future object, not its value as with
    ``client.submit(fn, future)``: the payload hid it from Dask. Now positional and keyword futures are
    replaced by their values on the worker, for map, task and remote alike."""

    async def body(client: Client) -> list[Any]:
        backend = DaskBackend(client)
        [data] = await client.scatter([[1, 2, 3]])  # type: ignore[no-untyped-call]
        computed = client.submit(tasks.square, 7, pure=False)
        work = [
            *backend.map(describe, [data, 4]),
            backend.task(describe, 5, b=computed),
            backend.task(describe, None, b=None),
        ]
        result: WaveResult[Any] = await Wave("w", max_concurrency=4).run(work)
        direct = await backend.remote(describe)(computed, b=data)
        return [*result.values(), direct]

    assert on_cluster(cluster, body) == [
        ("list", [1, 2, 3], "NoneType", None),
        ("int", 4, "NoneType", None),
        ("int", 5, "int", 49),
        ("NoneType", None, "NoneType", None),  # a None argument stays None
        ("int", 49, "list", [1, 2, 3]),
    ]


def test_checking_that_a_large_array_pickles_does_not_copy_it(cluster: LocalCluster) -> None:
    """Bug: the client-side check pickled every argument to bytes: a 64 MB array argument made a 64 MB copy
    (peak memory doubled before Dask even sent it). Now large buffers are checked out of band, uncopied."""
    array = np.ones(8_000_000)  # 64 MB

    async def body(client: Client) -> int:
        backend = DaskBackend(client)
        tracemalloc.start()
        try:
            backend.map(tasks.square, [array])
            backend.task(tasks.square, x=array)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak = on_cluster(cluster, body)
    assert peak < array.nbytes // 4, f"checking arguments allocated {peak / 1e6:.0f} MB for a 64 MB array"


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps every request body (span names are plain UTF-8 in protobuf)."""

    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/traces":
            self.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_worker_telemetry_registered_again_keeps_the_workers_exporting() -> None:
    """Bug: registering WorkerTelemetry again (each run of the app does, as documented) tore down the
    previous plugin, which shut the worker's providers down, and the new one could not configure
    (OTel sets global providers once per process): every later span of that worker was lost, silently."""
    _Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    async def one_run(address: str, label: str) -> list[Any]:
        async with Client(address, asynchronous=True) as client:  # type: ignore[no-untyped-call]
            await client.register_plugin(WorkerTelemetry("probe-worker", exporter="otlp_http", endpoint=endpoint))
            work = DaskBackend(client).map(tasks.square, [1, 2], name=label)
            result: WaveResult[Any] = await Wave("w", max_concurrency=2).run(work)
            await client.unregister_worker_plugin(WorkerTelemetry.name)  # flushes the worker
            return result.values()

    try:
        with LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", host="127.0.0.1",
            silence_logs=40,
        ) as lc:
            assert asyncio.run(asyncio.wait_for(one_run(lc.scheduler_address, "firstrun"), 60)) == [1, 4]
            assert asyncio.run(asyncio.wait_for(one_run(lc.scheduler_address, "secondrun"), 60)) == [1, 4]
    finally:
        server.shutdown()
        server.server_close()
    exported = b"".join(_Receiver.bodies)
    assert b"remote firstrun" in exported
    assert b"remote secondrun" in exported


def test_a_task_keyword_that_fn_also_takes_is_refused_not_dropped(cluster: LocalCluster) -> None:
    """Bug: ``backend.task(greet, "hi", name="Bob")`` (docs: ``backend.task(fn, *args, **kwargs)``) named the task
    "Bob" and called ``greet("hi")``: the task succeeded with "hi, world", the caller's "Bob" silently dropped. Now
    a ``name=`` / ``pool=`` given for an ``fn`` that has a parameter of that name is refused, naming it; bound in a
    ``functools.partial`` it reaches ``fn``, and the task is named as asked."""
    async def body(client: Client) -> WaveResult[Any]:
        backend = DaskBackend(client)
        with pytest.raises(TypeError, match=r"name='Bob' names the task's name .* fn 'greet' has a parameter 'name'"):
            backend.task(tasks.greet, "hi", name="Bob")
        with pytest.raises(TypeError, match=r"pool='api' names the task's pool .* parameter 'pool'"):
            backend.task(takes_pool, 1, pool="api")
        work: list[TaskSpec[Any]] = [
            backend.task(functools.partial(tasks.greet, name="Bob"), "hi", name="greeting"),
            backend.task(tasks.square, 3, name="sq"),  # a function without such a parameter: named as before
        ]
        return await Wave("greetings").run(work)

    result = on_cluster(cluster, body)
    assert result.values() == ["hi, Bob", 9]
    assert [r.name for r in result.results] == ["greeting", "sq"]


def takes_pool(x: int, *, pool: str = "default") -> str:
    return f"{x} from {pool}"


def test_a_partial_is_named_after_the_function_it_binds(cluster: LocalCluster) -> None:
    """Bug: a ``functools.partial`` (what the docs say to ship to bind ``fn``'s own ``name=``) named its tasks,
    spans and ``remote`` callable ``partial``: every such task of every function was "task partial" in Jaeger and
    in the report. Now it is named after the function it binds (nested partials too), as the function would be."""
    otel = InMemoryTelemetry()
    bound = functools.partial(functools.partial(tasks.greet), name="Bob")

    async def body(client: Client) -> WaveResult[Any]:
        backend = DaskBackend(client)
        assert backend.remote(bound).name == "greet"
        return await Wave("greetings", **otel.providers).run(
            [*backend.map(bound, ["hi"]), backend.task(bound, "bye"), *backend.imap(bound, ["yo"])])

    result = on_cluster(cluster, body)
    assert result.values() == ["hi, Bob", "bye, Bob", "yo, Bob"]
    assert [r.name for r in result.results] == ["greet", "greet", "greet"]
    assert len(otel.spans("task greet")) == 3
