"""The Dask backend on a real LocalCluster with worker processes: results, policies, worker loss,
trace context across processes, cancellation and bad input."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import _dask_tasks as tasks
import pytest
from _dask_cluster import DASK_WARNINGS, module_cluster, on_cluster
from distributed import Client, Future, LocalCluster

from shannon_otel import Outcome, Retry, Wave
from shannon_otel.dask import DaskBackend, UnshippableTaskError
from shannon_otel.testing import InMemoryTelemetry

T = TypeVar("T")

pytestmark = DASK_WARNINGS


cluster = module_cluster(2)



async def scheduler_tasks(client: Client) -> int:
    n: int = await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
    return n


async def wait_until_empty(client: Client, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (n := await scheduler_tasks(client)) and time.monotonic() < deadline:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.05)
    return n


def test_results_in_input_order_with_the_report(cluster: LocalCluster) -> None:
    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        return await Wave("squares", max_concurrency=4).run(backend.map(tasks.square, range(20)))

    result = on_cluster(cluster, body)
    assert result.values() == [x * x for x in range(20)]
    assert result.report.counts[Outcome.SUCCESS] == 20


def test_async_functions_and_failures_are_task_outcomes(cluster: LocalCluster) -> None:
    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        work = [backend.task(tasks.async_double, 1), backend.task(tasks.fails, 2), backend.task(tasks.square, 3)]
        return await Wave("mixed", max_concurrency=3).run(work)

    result = on_cluster(cluster, body)
    assert [r.outcome for r in result.results] == [Outcome.SUCCESS, Outcome.FAILURE, Outcome.SUCCESS]
    assert result.results[0].value == 2 and result.results[2].value == 9
    assert isinstance(result.results[1].error, ValueError) and str(result.results[1].error) == "bad 2"


def test_trace_context_reaches_the_worker_process(cluster: LocalCluster) -> None:
    otel = InMemoryTelemetry()

    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        return await Wave("ctx", max_concurrency=2, **otel.providers).run(backend.map(tasks.current_parent, range(3)))

    result = on_cluster(cluster, body)
    task_spans = {s.context.span_id: s for s in otel.spans("task current_parent") if s.context is not None}
    assert len(task_spans) == 3
    for trace_id, span_id in result.values():
        # No SDK on these workers: the current span there is the client's task span itself.
        assert span_id in task_spans
        assert task_spans[span_id].context.trace_id == trace_id


def test_under_a_retry_the_worker_sees_the_attempt_span(cluster: LocalCluster, tmp_path: Path) -> None:
    otel = InMemoryTelemetry()

    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        policy = Retry(attempts=3, initial=0, name="remote", **otel.providers)
        remote = backend.remote(tasks.current_parent)
        return await policy.call(remote.bind(0))

    trace_id, span_id = on_cluster(cluster, body)
    attempt = otel.span("attempt 1")
    assert attempt.context is not None
    assert (attempt.context.trace_id, attempt.context.span_id) == (trace_id, span_id)


def test_a_failing_attempt_is_retried_on_the_cluster(cluster: LocalCluster, tmp_path: Path) -> None:
    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        wave: Wave[Any] = Wave("retry", policy=Retry(attempts=3, initial=0, on=ConnectionError, name="flaky"))
        return await wave.run([backend.task(tasks.fail_first, str(tmp_path / "m"))])

    result = on_cluster(cluster, body)
    assert result.values() == ["ok"]


def test_a_killed_worker_is_an_attempt_failure_that_the_retry_recovers(
    cluster: LocalCluster, tmp_path: Path,
) -> None:
    otel = InMemoryTelemetry()

    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        policy = Retry(attempts=3, initial=0, name="fragile", **otel.providers)
        wave: Wave[Any] = Wave("loss", policy=policy, **otel.providers)
        return await wave.run([backend.task(tasks.die_first, str(tmp_path / "m"))])

    result = on_cluster(cluster, body)
    assert result.results[0].outcome is Outcome.SUCCESS
    dead_pid = int((tmp_path / "m").read_text())
    assert result.values()[0] != dead_pid  # it ran again, in another (or a restarted) worker process
    first = otel.span("attempt 1")
    assert first.attributes is not None
    assert first.attributes["error.type"] == "distributed.scheduler.KilledWorker"
    assert otel.span("attempt 2").attributes["shannon.attempt.outcome"] == "success"  # type: ignore[index]


def test_dask_does_not_rerun_what_our_retry_reruns(cluster: LocalCluster, tmp_path: Path) -> None:
    """allowed-failures=0: each worker death is one attempt of ours, never multiplied by Dask."""
    marker = tmp_path / "runs"

    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        wave: Wave[Any] = Wave("always-dies", policy=Retry(attempts=2, initial=0, name="doomed"))
        return await wave.run([backend.task(tasks.die_always, str(marker))])

    result = on_cluster(cluster, body)
    assert result.results[0].outcome is Outcome.FAILURE
    assert result.results[0].error_type == "distributed.scheduler.KilledWorker"
    assert marker.read_text() == "xx"  # two attempts, two runs: no hidden Dask re-run


def test_a_task_assigned_to_a_lost_worker_but_not_started_fails_with_killed_worker(
    cluster: LocalCluster, tmp_path: Path,
) -> None:
    """docs/dask.md said a worker lost *mid-task* fails that task with KilledWorker; Dask counts every task
    assigned to the lost worker, started or not, so with allowed-failures=0 one that never ran fails so too (an
    attempt failure of ours although nothing ran: a Retry runs it then). The docs now say so; this pins it."""

    async def body(client: Client) -> Any:
        backend = DaskBackend(client)
        work = [backend.task(tasks.die_holding_a_queued_task, str(tmp_path), 0, name="gate")]
        work += [backend.task(tasks.gate, str(tmp_path), x, name="gate") for x in range(1, 12)]
        return await Wave("lost", max_concurrency=12).run(work)

    result = on_cluster(cluster, body)
    killed = [r.index for r in result.results if r.error_type == "distributed.scheduler.KilledWorker"]
    ran = {int(p.name.split("-")[1]) for p in tmp_path.glob("ran-*")}
    assert 0 in killed and all(r.outcome is Outcome.SUCCESS for r in result.results if r.index not in killed)
    assert [x for x in killed if x != 0 and x not in ran]  # assigned to the dead worker, never started, failed


def test_cancelling_a_wave_cancels_its_futures_on_the_cluster(cluster: LocalCluster) -> None:
    async def body(client: Client) -> tuple[int, int]:
        backend = DaskBackend(client)
        wave: Wave[Any] = Wave("cancelled", max_concurrency=8)
        run = asyncio.ensure_future(wave.run(backend.map(tasks.slow, [1.0] * 16)))
        while await scheduler_tasks(client) < 4:  # noqa: ASYNC110 - polling the scheduler process
            await asyncio.sleep(0.02)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return await wait_until_empty(client), len(client.futures)

    left_on_scheduler, left_on_client = on_cluster(cluster, body)
    assert (left_on_scheduler, left_on_client) == (0, 0)


def test_a_task_timeout_cancels_the_future(cluster: LocalCluster) -> None:
    async def body(client: Client) -> tuple[Any, int]:
        backend = DaskBackend(client)
        result: Any = await Wave("timeouts", task_timeout=0.5).run(backend.map(tasks.slow, [3.0]))
        return result, await wait_until_empty(client)

    result, left = on_cluster(cluster, body)
    assert [r.outcome for r in result.results] == [Outcome.TIMEOUT]
    assert left == 0


def test_a_future_cancelled_on_the_cluster_by_someone_else_fails_its_task(cluster: LocalCluster) -> None:
    """A cancellation made elsewhere (another ``client.cancel``) wakes the task, which fails with Dask's
    cancellation error, the one plain ``await future`` / ``client.gather`` raise (``FutureCancelledError``,
    a ``concurrent.futures.CancelledError``: an ``Exception``, not the asyncio cancellation; before the
    backend waited with ``Future.exception()`` it was ``distributed.wait``'s ``FuturesCancelledError``):
    its result is gone, never a silent loss, never a hang."""
    from distributed.client import FutureCancelledError

    async def body(client: Client) -> tuple[Any, int]:
        backend = DaskBackend(client)
        wave: Wave[Any] = Wave("cancelled-elsewhere")
        run = asyncio.ensure_future(wave.run(backend.map(tasks.slow, [30.0, 30.0])))
        while len(client.futures) < 2:  # noqa: ASYNC110 - waiting for the submission
            await asyncio.sleep(0.01)
        await client.cancel([Future(key, client) for key in list(client.futures)])
        async with asyncio.timeout(10):  # the tasks sleep 30 s on the workers: only the cancellation ends them
            result = await run
        return result, await wait_until_empty(client)

    result, left = on_cluster(cluster, body)
    assert [r.outcome for r in result.results] == [Outcome.FAILURE] * 2
    assert all(type(r.error) is FutureCancelledError for r in result.results), [r.error for r in result.results]
    assert left == 0


# --------------------------------------------------------------------------- bad input
def _local_closure() -> Callable[[int], int]:
    offset = 3

    def add(x: int) -> int:
        return x + offset

    return add


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda b: b.task(tasks.async_double(1)), "coroutine object"),
        (lambda b: b.map(_local_closure(), [1]), "closure over local state"),
        (lambda b: b.map(tasks.square, [1, threading.Lock()]), "argument 0 .*cannot be pickled"),
        (lambda b: b.task(tasks.square, x=threading.Lock()), "keyword argument 'x'"),
        (lambda b: b.remote(42), "fn must be a callable"),
    ],
)
def test_unshippable_tasks_are_refused_before_anything_is_submitted(
    cluster: LocalCluster, make: Callable[[DaskBackend], Any], match: str,
) -> None:
    async def body(client: Client) -> int:
        backend = DaskBackend(client)
        with pytest.raises(UnshippableTaskError, match=match):
            make(backend)
        return await scheduler_tasks(client)

    assert on_cluster(cluster, body) == 0


def test_a_closed_or_synchronous_client_is_refused(cluster: LocalCluster) -> None:
    async def closed() -> None:
        client = await Client(cluster.scheduler_address, asynchronous=True)
        backend = DaskBackend(client)
        factory = backend.task(tasks.square, 2).work
        await client.close()
        with pytest.raises(RuntimeError, match="the Dask client is closed"):
            await factory()  # type: ignore[operator]
        with pytest.raises(RuntimeError, match="closed"):
            DaskBackend(client)

    asyncio.run(closed())
    with Client(cluster.scheduler_address) as sync_client, pytest.raises(ValueError, match="asynchronous=True"):
        DaskBackend(sync_client)
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        DaskBackend("tcp://127.0.0.1:8786")  # type: ignore[arg-type]


def test_streaming_a_lazy_input_holds_only_the_concurrency(cluster: LocalCluster) -> None:
    pulled: list[int] = []

    def items() -> Any:
        for i in range(30):
            pulled.append(i)
            yield i

    async def body(client: Client) -> list[int]:
        backend = DaskBackend(client)
        seen: list[int] = []
        wave: Wave[int] = Wave("stream", max_concurrency=3)
        async with wave.stream(backend.imap(tasks.square, items()), buffer=3) as results:
            async for r in results:
                # never more than concurrency + buffer (+1 being pulled) inputs ahead of what we consumed
                assert len(pulled) - len(seen) <= 3 + 3 + 1
                assert r.value is not None
                seen.append(r.value)
        return seen

    assert sorted(on_cluster(cluster, body)) == [x * x for x in range(30)]


def test_wave_map_rate_limit_batches_and_hooks_see_every_outcome(cluster: LocalCluster) -> None:
    from shannon_otel import Hook, TaskFinished, WaveObserver, WaveStarted

    finished: list[TaskFinished] = []

    class Watch(WaveObserver):
        def task_finished(self, token: Any, event: TaskFinished) -> None:
            finished.append(event)

    class Watcher(Hook):
        def wave_started(self, event: WaveStarted) -> WaveObserver:
            return Watch()

    async def body(client: Client) -> Any:
        remote = DaskBackend(client).remote(tasks.square)
        wave: Wave[int] = Wave("mapped", max_concurrency=4, rate_limit=200, batch_size=5, hooks=(Watcher(),))
        return await wave.map(remote, range(12))

    result = on_cluster(cluster, body)
    assert result.values() == [x * x for x in range(12)]
    assert sorted(e.index for e in finished) == list(range(12))
    assert {e.outcome for e in finished} == {Outcome.SUCCESS}
    assert {e.batch for e in finished} == {0, 1, 2}


# --------------------------------------------------------------------------- fetching results
def count_gathers(client: Client) -> list[int]:
    """Spy on ``client.gather``: the number of futures each call fetched."""
    sizes: list[int] = []
    gather = client.gather

    def counting(futures: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(futures))
        return gather(futures, *args, **kwargs)

    client.gather = counting  # type: ignore[method-assign]
    return sizes


def test_results_of_a_busy_cluster_share_gathers(cluster: LocalCluster) -> None:
    """Each gather costs the cluster a scheduler round trip and a worker fetch: while the cluster
    is busy with our tasks, results finishing close together are fetched together."""

    async def body(client: Client) -> tuple[Any, list[int]]:
        sizes = count_gathers(client)
        backend = DaskBackend(client, gather_window_s=0.5)
        result: Any = await Wave("many", max_concurrency=None).run(backend.map(tasks.nap, [0.01] * 80))
        return result, sizes

    result, sizes = on_cluster(cluster, body)
    assert result.values() == [0.01] * 80
    assert sum(sizes) == 80
    assert len(sizes) <= 80 // 4  # one gather per loop turn fetched one result almost every time


def test_a_free_thread_never_waits_for_the_gather_window(cluster: LocalCluster) -> None:
    """One task at a time (the cluster has free threads): each result is fetched at once, so a
    long window does not make a sequential wave wait for it (here 1 s per task, 8 s in all)."""

    async def body(client: Client) -> tuple[Any, list[int]]:
        sizes = count_gathers(client)
        backend = DaskBackend(client, gather_window_s=1.0)
        async with asyncio.timeout(5):  # the window would take 8 s; the work takes well under 1 s
            result: Any = await Wave("sequential", max_concurrency=1).run(backend.map(tasks.square, range(8)))
        return result, sizes

    result, sizes = on_cluster(cluster, body)
    assert result.values() == [x * x for x in range(8)]
    assert sizes == [1] * 8


def test_cancelling_while_results_wait_for_a_gather_leaves_nothing_behind(cluster: LocalCluster) -> None:
    async def body(client: Client) -> tuple[int, int, int]:
        sizes = count_gathers(client)
        backend = DaskBackend(client, gather_window_s=1.0)
        wave: Wave[Any] = Wave("waiting", max_concurrency=None)
        run = asyncio.ensure_future(wave.run(backend.map(tasks.nap, [0.01] * 8 + [30.0] * 8)))
        # the 8 short ones finish; 8 long ones keep the cluster's 4 threads busy: their results wait
        while sum(state.status == "finished" for state in client.futures.values()) < 8:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert not run.done()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await asyncio.sleep(1.5)  # past the window: a gather of cancelled tasks would start now
        return await wait_until_empty(client), len(client.futures), len(sizes)

    left_on_scheduler, left_on_client, gathers = on_cluster(cluster, body)
    assert (left_on_scheduler, left_on_client) == (0, 0)
    assert gathers == 0  # nothing fetched for tasks that no longer want their result


def test_a_task_cancelled_as_its_submission_fails_is_cancelled_not_that_error(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bug: a task cancelled (its wave cancelled, fail-fast, a per-task timeout) in the turn of the event loop
    where its submission failed (``client.map`` raised: the client closing, say) read the failed submission
    in its cancellation handler, which raised that error in place of the ``CancelledError``: the caller's
    cancellation was swallowed. Cancellation is always re-raised."""

    async def body(client: Client) -> tuple[bool, BaseException | None]:
        remote = DaskBackend(client).remote(tasks.square)
        call: asyncio.Future[Any] | None = None

        def map_failing(*args: Any, **kwargs: Any) -> Any:
            assert call is not None
            # The cancellation arrives after the error is set on the task's waiter, before the task wakes up
            asyncio.get_running_loop().call_soon(call.cancel)
            raise RuntimeError("the submission failed")

        monkeypatch.setattr(client, "map", map_failing)
        call = asyncio.ensure_future(remote(3))
        try:
            await call
        except BaseException as exc:  # which one is the point
            return call.cancelled(), exc
        return call.cancelled(), None

    cancelled, error = on_cluster(cluster, body)
    assert cancelled, error
    assert isinstance(error, asyncio.CancelledError)


class _LockedInt(int):
    """An int whose instance holds a lock: it does not pickle, though every plain int does."""

    def __init__(self, value: int) -> None:
        self.lock = threading.Lock()


def test_only_exact_builtin_types_skip_the_pickle_check() -> None:
    from shannon_otel.dask._shipping import check_arguments

    check_arguments((1, 2.5, "s", b"b", None, True, 1j), {"k": 3})  # checked without pickling
    with pytest.raises(UnshippableTaskError, match=r"argument 0 .*cannot be pickled"):
        check_arguments((_LockedInt(1),), {})


@pytest.mark.parametrize("where", ["positional", "keyword"])
def test_a_coroutine_given_as_an_argument_is_refused_by_name_and_closed(cluster: LocalCluster, where: str) -> None:
    """Bug: a coroutine argument was refused but left unclosed (Python warned 'never awaited' later, an
    error under -W error); as a keyword argument it was reported as merely unpicklable."""

    async def body(client: Client) -> tuple[str, str]:
        backend = DaskBackend(client)
        coro = tasks.async_double(1)
        args: tuple[Any, ...] = (coro,) if where == "positional" else (1,)
        kwargs: dict[str, Any] = {} if where == "positional" else {"extra": coro}
        with pytest.raises(UnshippableTaskError) as caught:
            backend.task(tasks.square, *args, **kwargs)
        return str(caught.value), inspect.getcoroutinestate(coro)

    message, state = on_cluster(cluster, body)
    assert "is a coroutine object" in message
    assert ("argument 0" if where == "positional" else "keyword argument 'extra'") in message
    assert state == inspect.CORO_CLOSED


class _LostThenRecomputed:
    """A Dask future as the client sees it when its result is lost (the worker holding it died just after the
    task finished) between the wake-up of ``exception()`` and the status check: status ``lost``, then the
    await waits for Dask to compute it again, and returns its value."""

    status = "lost"
    key = "lost-0"

    async def exception(self) -> None:
        return None

    def __await__(self) -> Any:
        return self._value().__await__()

    async def _value(self) -> int:
        await asyncio.sleep(0)
        return 42


def test_a_result_lost_and_recomputed_after_its_task_finished_is_returned() -> None:
    """Bug: a future whose status was not ``finished`` once awaited was taken as failed, and its error
    re-raised; when the await returned a value instead (the result lost with its worker and computed again,
    or the key retried), the task failed with UnboundLocalError ("error" referenced before assignment)."""
    from shannon_otel.dask._gather import Gatherer

    async def main() -> Any:
        return await Gatherer(None, 0.05).result(_LostThenRecomputed())  # type: ignore[arg-type]

    assert asyncio.run(main()) == 42
