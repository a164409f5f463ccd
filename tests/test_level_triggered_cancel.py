"""Level-triggered cancellation, as anyio's cancel scopes deliver it (FastAPI / Starlette run on anyio's
asyncio backend): while the scope is cancelled, the task is cancelled again at every loop step until it
leaves the scope. Emulated here with plain asyncio (no anyio in the test extra): :class:`LevelTriggered`
re-cancels the caller at each step, skipping it while a cancellation is already pending or its awaited
future has completed, and takes its requests back when switched off, as anyio's scope does on exit.

What must hold under it (docs/reliability.md, "Under anyio / FastAPI"): every policy, wave and stream lets the
cancellation through as it came (its message kept, nothing swallowed or turned into another error), no task
is left running, no span open; a saga's compensations run to their end in their own tasks (the re-delivered
cancellations land on the caller, never on the compensation) and the cancellation is raised after the rollback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _open_spans import OpenSpans

from shannon_otel import (
    CircuitBreaker,
    Degrade,
    Fallback,
    Hedge,
    Pipeline,
    ResourcePool,
    Retry,
    Saga,
    Step,
    TaskSpec,
    Timeout,
    Wave,
)
from shannon_otel.testing import InMemoryTelemetry

MSG = "Cancelled via cancel scope emulated"


class LevelTriggered:
    """Cancel ``task`` at every loop step while on (anyio's ``CancelScope._deliver_cancellation``)."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.on = False
        self.requests = 0
        self.delivered = 0  # every request made, kept after stop(): more than one is a re-delivery

    def start(self) -> None:
        self.on = True
        self._deliver()

    def _deliver(self) -> None:
        task = self.task
        if not self.on or task.done():
            return
        waiter = task._fut_waiter  # type: ignore[attr-defined]
        if task is not asyncio.current_task() and not task._must_cancel and (  # type: ignore[attr-defined]
                waiter is None or not waiter.done()):
            task.cancel(MSG)
            self.requests += 1
            self.delivered += 1
        asyncio.get_running_loop().call_soon(self._deliver)

    def stop(self) -> None:
        self.on = False
        for _ in range(self.requests):
            self.task.uncancel()
        self.requests = 0


async def _cancelled_at_start(lt: LevelTriggered, value: Any = "v") -> Any:
    """A user's operation: the scope is cancelled as it starts waiting."""
    asyncio.get_running_loop().call_soon(lt.start)
    await asyncio.Event().wait()
    return value


def _workloads(tel: InMemoryTelemetry, lt: LevelTriggered) -> dict[str, Callable[[], Awaitable[Any]]]:
    p = tel.providers

    def op() -> Awaitable[Any]:
        return _cancelled_at_start(lt)

    async def stream() -> None:
        async with Wave("ws", max_concurrency=2, **p).stream_map(lambda i: _cancelled_at_start(lt, i),
                                                               range(4)) as results:
            async for _ in results:
                pass

    pool = ResourcePool("db", 1)
    return {
        "retry": lambda: Retry(attempts=3, **p).call(op),
        "timeout": lambda: Timeout(30, **p).call(op),
        "hedge": lambda: Hedge(delay=0.0, attempts=3, **p).call(op),
        "breaker": lambda: CircuitBreaker("br", **p).call(op),
        "fallback": lambda: Fallback(lambda e: asyncio.sleep(0, result="fb"), **p).call(op),
        "degrade": lambda: Degrade(default="d", on=Exception, **p).call(op),
        "pipeline": lambda: Pipeline(Retry(attempts=2), Timeout(30), **p).call(op),
        "wave": lambda: Wave("w", max_concurrency=2, rate_limit=1000.0, **p).map(
            lambda i: _cancelled_at_start(lt, i), range(4)),
        "wave_pool": lambda: Wave("wp", pools=[pool], **p).run(
            [TaskSpec(lambda: _cancelled_at_start(lt), pool=pool) for _ in range(3)]),
        "stream": stream,
    }


@pytest.mark.parametrize("name", ["retry", "timeout", "hedge", "breaker", "fallback", "degrade", "pipeline", "wave",
                                  "wave_pool", "stream"])
def test_level_triggered_cancellation_propagates_as_it_came(name: str) -> None:
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)

    async def main() -> tuple[str, list[asyncio.Task[Any]], int]:
        task = asyncio.current_task()
        assert task is not None
        lt = LevelTriggered(task)
        try:
            await _workloads(tel, lt)[name]()
            got = "returned"
        except asyncio.CancelledError as exc:
            got = str(exc.args[0]) if exc.args else "CancelledError()"
        finally:
            lt.stop()
        left = [t for t in asyncio.all_tasks() if t is not task]
        assert task.cancelling() == 0
        return got, left, lt.delivered

    got, left, delivered = asyncio.run(main())
    assert delivered >= 1
    assert got == MSG  # the scope's own CancelledError: anyio's move_on_after recognises it and exits normally
    assert left == []
    assert spans.open == {}


def test_saga_rollback_under_level_triggered_cancellation_runs_every_compensation() -> None:
    """The compensations run in tasks of their own, never cancelled by the re-delivered cancellations
    (the caller waits and is re-raised after the rollback): each completes, the saga's cancellation is
    the scope's (its message), its spans are ended, and the compensation's outcome is success."""
    tel = InMemoryTelemetry()
    spans = OpenSpans()
    tel.tracer_provider.add_span_processor(spans)
    log: list[str] = []

    async def main() -> str:
        task = asyncio.current_task()
        assert task is not None
        lt = LevelTriggered(task)

        async def act() -> str:
            return "a-id"

        def undo(name: str) -> Callable[[str], Awaitable[None]]:
            async def compensate(value: str) -> None:
                log.append(f"undo {name} start")
                try:
                    for _ in range(50):  # many loop steps, each one re-cancelling the caller
                        await asyncio.sleep(0)
                except asyncio.CancelledError:
                    log.append(f"undo {name} cancelled")
                    raise
                log.append(f"undo {name} end")
            return compensate

        saga = Saga("order", compensation_timeout_s=30.0, **tel.providers)
        delivered.append(lt)
        try:
            await saga.run(Step("a", act, undo("a")), Step("b", act, undo("b")),
                           Step("c", lambda: _cancelled_at_start(lt)))
            got = "returned"
        except asyncio.CancelledError as exc:
            got = str(exc.args[0]) if exc.args else "CancelledError()"
        finally:
            lt.stop()
        assert task.cancelling() == 0
        assert [t for t in asyncio.all_tasks() if t is not task] == []
        return got

    delivered: list[LevelTriggered] = []
    assert asyncio.run(main()) == MSG
    assert delivered[0].delivered > 50  # the caller was cancelled again at each step of the rollback
    assert log == ["undo b start", "undo b end", "undo a start", "undo a end"]
    assert spans.open == {}
    outcomes = [(s.attributes or {}).get("shannon.compensation.outcome") for s in tel.spans()
                if s.name.startswith("compensate")]
    assert outcomes == ["success", "success"]
    assert (tel.span("saga order").attributes or {}).get("shannon.saga.outcome") == "cancellation"
