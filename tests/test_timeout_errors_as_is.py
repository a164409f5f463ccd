"""An error the user's code raises out of an expired timeout (it swallowed the cancellation) reaches the caller as
it was raised, on every Python.

From Python 3.13 (CPython gh-96037) ``asyncio.timeout`` walks such an error's ``__context__`` chain to put a
``TimeoutError`` in it: the ``Timeout`` policy, the wave's ``task_timeout`` and a saga's ``compensation_timeout_s``
inherited it. A frozen dataclass exception refused the assignment and the caller got ``FrozenInstanceError`` (the
user's error lost); an error whose chain is cyclic looped for good in that walk (the event loop held); any other
error had the ``CancelledError`` it was raised while handling replaced by a ``TimeoutError`` (not so on 3.11 /
3.12). Each test here fails on 3.13 without the fix; the cyclic ones run in a subprocess, so a hang fails one test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from _metric_total import metric_total
from _span_attrs import attrs
from _virtual_time import watched

from shannon_otel import Saga, SagaError, Step, Timeout, Wave
from shannon_otel.testing import InMemoryTelemetry


@dataclasses.dataclass(frozen=True)
class _FrozenError(Exception):
    code: int = 1


def _in_place(error: BaseException) -> Callable[[], Awaitable[None]]:
    async def operation() -> None:
        try:
            await asyncio.sleep(5.0)
        except asyncio.CancelledError:
            raise error  # noqa: B904 (raised in place of the timeout's cancellation, as user code does)

    return operation


@pytest.mark.parametrize(
    ("error", "kind"), [(_FrozenError(), f"{__name__}._FrozenError"), (ValueError("mine"), "ValueError")],
    ids=["frozen", "plain"],
)
def test_timeout_policy_gives_the_operations_own_error_unchanged(error: Exception, kind: str) -> None:
    tel = InMemoryTelemetry()
    policy = Timeout(1.0, name="op", **tel.providers)

    async def main() -> BaseException:
        with pytest.raises(type(error)) as caught:
            await policy.call(_in_place(error))
        return caught.value

    raised = watched(main)
    assert raised is error
    # the CancelledError it was raised while handling, not a TimeoutError asyncio 3.13 put there
    assert type(error.__context__) is asyncio.CancelledError
    operation = attrs(tel.span("op"))
    assert (operation["shannon.call.outcome"], operation["error.type"]) == ("failure", kind)
    assert attrs(tel.span("attempt 1"))["shannon.attempt.outcome"] == "failure"
    assert metric_total(tel, "shannon.timeouts") == 0


def test_a_wave_task_timeout_gives_the_tasks_own_error_unchanged() -> None:
    tel = InMemoryTelemetry()
    frozen, plain = _FrozenError(2), ValueError("mine")
    wave: Wave[None] = Wave("w", task_timeout=1.0, **tel.providers)

    async def main() -> list[BaseException | None]:
        result = await wave.run([_in_place(frozen), _in_place(plain)])
        return [r.error for r in result.results]

    errors = watched(main)
    assert errors[0] is frozen and errors[1] is plain
    assert type(frozen.__context__) is asyncio.CancelledError and type(plain.__context__) is asyncio.CancelledError
    outcomes = sorted((a["shannon.task.outcome"], a["error.type"]) for a in map(attrs, tel.spans("task w")))
    assert outcomes == [("failure", "ValueError"), ("failure", f"{__name__}._FrozenError")]


def test_a_compensation_timeout_gives_the_compensations_own_error_unchanged() -> None:
    frozen = _FrozenError(3)
    saga = Saga("order", compensation_timeout_s=1.0, instrument=False)

    async def done() -> int:
        return 1

    async def fails() -> None:
        raise KeyError("pay")

    async def undo(value: int) -> None:
        await _in_place(frozen)()

    async def main() -> SagaError:
        with pytest.raises(SagaError) as caught:
            await saga.run(Step("reserve", done, undo), Step("pay", fails))
        return caught.value

    error = watched(main)
    assert error.result.failed_compensations["reserve"] is frozen
    assert type(frozen.__context__) is asyncio.CancelledError


_CYCLIC = textwrap.dedent("""
    import asyncio, sys
    from shannon_otel import Saga, SagaError, Step, Timeout, Wave
    from shannon_otel.testing import run_virtual

    def cyclic():
        a, b = ValueError("a"), ValueError("b")
        a.__context__, b.__context__ = b, a
        return a

    async def late(*_):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            pass  # swallowed; it then fails with an error whose context chain is a cycle
        raise cyclic()

    async def one():
        return 1

    async def fails():
        raise KeyError("pay")

    async def main(where):
        if where == "timeout":
            try:
                await Timeout(1.0, instrument=False).call(late)
            except ValueError as exc:
                return exc
        if where == "task_timeout":
            result = await Wave("w", task_timeout=1.0, instrument=False).run([late])
            return result.results[0].error
        try:
            await Saga("s", compensation_timeout_s=1.0, instrument=False).run(Step("a", one, late), Step("b", fails))
        except SagaError as exc:
            return exc.result.failed_compensations["a"]

    error = run_virtual(main(sys.argv[1]))
    print(type(error).__name__, error, type(error.__context__).__name__, error.__context__)
""")


@pytest.mark.parametrize("where", ["timeout", "task_timeout", "compensation_timeout_s"])
def test_an_error_with_a_cyclic_context_chain_never_hangs_a_timeout(tmp_path: Path, where: str) -> None:
    script = tmp_path / "cyclic.py"
    script.write_text(_CYCLIC)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, str(script), where], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"an error with a cyclic __context__ chain hung the exit of the {where} scope")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ValueError a ValueError b\n"


class _OwnCancel(asyncio.CancelledError):
    """A cancellation of the user's own kind (as aiorpcX's ``TaskTimeout`` is one)."""


@pytest.mark.parametrize("where", ["timeout", "task_timeout", "compensation_timeout_s"])
def test_a_cancelled_error_subclass_out_of_an_expired_scope_is_its_timeout_on_every_python(where: str) -> None:
    # The scope of 3.13 takes a CancelledError subclass for the cancellation it is (CPython gh-113848) and raises
    # its TimeoutError from it; those of 3.11 / 3.12 took only the class itself: the subclass reached a caller nobody
    # had cancelled, and the operation or wave task was recorded as a cancellation. Now the same on every Python.
    tel = InMemoryTelemetry()
    own = _OwnCancel("mine")
    operation = _in_place(own)

    async def one() -> int:
        return 1

    async def fails() -> None:
        raise KeyError("pay")

    async def undo(value: int) -> None:
        await operation()

    async def main() -> BaseException | None:
        if where == "timeout":
            with pytest.raises(TimeoutError) as caught:
                await Timeout(1.0, name="op", **tel.providers).call(operation)
            return caught.value
        if where == "task_timeout":
            result = await Wave("w", task_timeout=1.0, **tel.providers).run([operation])
            return result.results[0].error
        with pytest.raises(SagaError) as failed:
            await Saga("s", compensation_timeout_s=1.0, instrument=False).run(Step("a", one, undo), Step("b", fails))
        return failed.value.result.failed_compensations["a"]

    caller = watched(main)
    assert type(caller) is TimeoutError and caller.__cause__ is own
    assert "timed out after 1.0 s" in str(caller)
    if where == "timeout":
        assert attrs(tel.span("op"))["shannon.call.outcome"] == "failure"
        assert attrs(tel.span("attempt 1"))["shannon.attempt.outcome"] == "timeout"
        assert metric_total(tel, "shannon.timeouts") == 1
    if where == "task_timeout":
        assert attrs(tel.span("task w"))["shannon.task.outcome"] == "timeout"
