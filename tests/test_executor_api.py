"""The common case is easy: ``Wave.map``, pools passed as objects, one meaning per parameter name."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any, cast

import pytest

from shannon_otel import Outcome, ResourcePool, Retry, TaskSpec, Wave, task
from shannon_otel.testing import run_virtual


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_map_runs_fn_on_every_item_in_input_order() -> None:
    wave: Wave[int] = Wave("map", max_concurrency=3, instrument=False)
    result = run_virtual(wave.map(double, range(10)))
    assert result.values() == [2 * x for x in range(10)]


def test_map_tasks_are_factories_so_a_policy_retries_them() -> None:
    calls: dict[int, int] = {}

    async def flaky(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if calls[x] == 1:
            raise ConnectionError("first try fails")
        return x

    wave: Wave[int] = Wave("retried", policy=Retry(attempts=2, initial=0.01, instrument=False), instrument=False)
    result = run_virtual(wave.map(flaky, [1, 2, 3]))
    assert result.values() == [1, 2, 3]
    assert calls == {1: 2, 2: 2, 3: 2}


def test_map_raise_errors_is_passed_on() -> None:
    async def fail(x: int) -> int:
        raise ValueError(x)

    wave: Wave[int] = Wave("errors", instrument=False)
    with pytest.raises(ExceptionGroup):
        run_virtual(wave.map(fail, [1], raise_errors=True))


@pytest.mark.parametrize("lazy", [False, True])
def test_stream_map_streams_fn_over_items_lazy_or_not(lazy: bool) -> None:
    wave: Wave[int] = Wave("smap", max_concurrency=2, instrument=False)
    items: Any = (x for x in range(7)) if lazy else list(range(7))

    async def main() -> list[int]:
        async with wave.stream_map(double, items) as results:
            return sorted([r.value async for r in results if r.value is not None])

    assert run_virtual(main()) == [2 * x for x in range(7)]


def test_a_pool_passed_as_an_object_limits_its_tasks_without_being_listed_on_the_wave() -> None:
    pool = ResourcePool("api", 2)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1

    wave: Wave[None] = Wave("pooled", max_concurrency=10, instrument=False)
    result = run_virtual(wave.run([task(work, pool=pool) for _ in range(8)]))
    assert result.report.counts[Outcome.SUCCESS] == 8
    assert peak == 2
    assert pool.in_use == 0


def test_a_pool_name_still_works_for_one_release_with_a_deprecation_warning() -> None:
    pool = ResourcePool("db", 1)

    async def one() -> int:
        return 1

    with pytest.warns(DeprecationWarning, match=r"pool='db'.*pass the ResourcePool itself") as warned:
        spec = task(one, pool="db")
    with pytest.warns(DeprecationWarning, match=r"pool='db'") as warned_spec:
        TaskSpec(one, pool="db")
    assert warned[0].filename == warned_spec[0].filename == __file__  # points at the caller's line
    wave: Wave[int] = Wave("named", pools=(pool,), instrument=False)
    assert run_virtual(wave.run([spec])).values() == [1]


def test_a_pool_of_the_wrong_type_is_refused_at_construction() -> None:
    async def one() -> int:
        return 1

    with pytest.raises(TypeError, match="pool must be a ResourcePool or None, got int"):
        task(one, pool=3)  # type: ignore[arg-type]


def test_task_timeout_is_the_per_task_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    wave: Wave[None] = Wave("t", task_timeout=1, instrument=False)
    result = run_virtual(wave.run([slow]))
    assert result.results[0].outcome is Outcome.TIMEOUT


def test_timeout_is_a_deprecated_alias_of_task_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    with pytest.warns(DeprecationWarning, match=r"Wave\(timeout=\) is deprecated; use task_timeout=") as warned:
        wave: Wave[None] = Wave("old", timeout=1, instrument=False)
    assert warned[0].filename == __file__
    assert wave.task_timeout == 1
    assert run_virtual(wave.run([slow])).results[0].outcome is Outcome.TIMEOUT
    copy = dataclasses.replace(wave, name="copy")  # no second warning, no conflict
    assert copy.task_timeout == 1
    with pytest.raises(ValueError, match="task_timeout= only"), pytest.warns(DeprecationWarning, match="timeout"):
        Wave("both", timeout=1, task_timeout=2, instrument=False)


def test_report_counts_print_as_plain_strings_and_still_match_the_enum() -> None:
    async def one() -> int:
        return 1

    wave: Wave[int] = Wave("print", instrument=False)
    report = run_virtual(wave.run([one])).report
    assert repr(report.counts) == "{'success': 1, 'failure': 0, 'timeout': 0, 'cancellation': 0}"
    assert report.counts[Outcome.SUCCESS] == cast("Mapping[str, int]", report.counts)["success"] == 1
    assert f"{report.outcome}" == "success"
