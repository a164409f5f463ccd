"""The public API as a typed user meets it: documented patterns checked by ``mypy --strict``.

Each snippet is a user's program; ``assert_type`` pins what mypy infers, and an expected error is written as
``# type: ignore[code]``, which strict mode reports as unused when the error goes away.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parent.parent


def mypy_strict(tmp_path: Path, source: str) -> str:
    program = tmp_path / "user_program.py"
    program.write_text(textwrap.dedent(source), encoding="utf-8")
    (tmp_path / "mypy.ini").write_text("[mypy]\n", encoding="utf-8")  # not the project's configuration
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini", "--cache-dir", os.devnull,
         "--follow-imports=silent", program.name],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    return done.stdout + done.stderr


def test_an_unannotated_wave_type_checks_and_its_results_take_the_tasks_type(tmp_path: Path) -> None:
    """The README's `wave = Wave("ask-all", ...)` failed `mypy --strict` ("Need type annotation for 'wave'"),
    and an annotated wave's results were `Any` unless the user repeated the task's type on the wave."""
    out = mypy_strict(tmp_path, """
        from collections.abc import Awaitable, Callable
        from typing import Any, assert_type
        from shannon_otel import Retry, TaskResult, Wave, WaveResult, task

        async def ask(prompt: str) -> int:
            return len(prompt)

        async def main() -> None:
            wave = Wave("ask-all", max_concurrency=20, policy=Retry(attempts=3))
            result = await wave.map(ask, ["a", "b"])
            assert_type(result, WaveResult[int])
            assert_type(result.values(), list[int | None])
            assert_type(await wave.run([ask("a"), ask("b")]), WaveResult[int])
            factories: list[Callable[[], Awaitable[int]]] = [lambda: ask("c")]
            assert_type(await wave.run(factories), WaveResult[int])
            assert_type(await wave.run([task(lambda: ask("d"), name="d")]), WaveResult[int])
            async with wave.stream_map(ask, ["e"]) as finished:
                async for one in finished:
                    assert_type(one, TaskResult[int])
            await wave.map(ask, [1])  # type: ignore[arg-type]
            # a list mixing kinds of task has no element type to solve for: the wave's parameter, Any unless given
            assert_type(await wave.run([ask("f"), lambda: ask("g"), task(ask("h"), name="h")]), WaveResult[Any])
            typed: Wave[int] = Wave[int]("still-accepted")
            assert_type(await typed.run([ask("f"), lambda: ask("g"), task(ask("h"), name="h")]), WaveResult[int])
    """)
    assert "Success: no issues found" in out, out


def test_decorated_and_called_policies_keep_the_functions_signature(tmp_path: Path) -> None:
    out = mypy_strict(tmp_path, """
        from typing import assert_type
        from shannon_otel import CircuitBreaker, Pipeline, Retry, Timeout, resilient

        @Retry(attempts=3)
        async def fetch(url: str, *, tries: int = 1) -> bytes:
            return url.encode()

        @resilient(Retry(), Timeout(1.0), name="op")
        async def op(n: int) -> list[int]:
            return [n]

        class Client:
            @CircuitBreaker("api")
            async def get(self, key: str) -> str:
                return key

        async def main() -> None:
            assert_type(await fetch("u", tries=2), bytes)
            assert_type(await op(1), list[int])
            assert_type(await Client().get("k"), str)
            assert_type(await Pipeline(Retry(), Timeout(2.0)).call(fetch, "u"), bytes)
            await fetch(1)  # type: ignore[arg-type]
            await fetch("u", tries="2")  # type: ignore[arg-type]
            await Client().get(1)  # type: ignore[arg-type]
            await Retry().call(op, "x")  # type: ignore[arg-type]
    """)
    assert "Success: no issues found" in out, out


def test_hooks_none_is_accepted_by_the_hints_of_every_entry_point_that_accepts_it_at_run_time(tmp_path: Path) -> None:
    """`Wave("w", hooks=None)` ran (no extra hooks, as for every policy) but `mypy --strict` refused it: the
    Wave's hint alone said `Iterable[Hook]`."""
    source = """
        from shannon_otel import BreakerRegistry, CircuitBreaker, Pipeline, Retry, Saga, Timeout, Wave

        entry_points = [
            Wave("w", hooks=None), Retry(hooks=None), Timeout(1.0, hooks=None), CircuitBreaker("b", hooks=None),
            Pipeline(Retry(), hooks=None), Saga("s", hooks=None), BreakerRegistry(hooks=None),
        ]
    """
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(source), namespace)  # the run time accepts each
    assert len(namespace["entry_points"]) == 7  # type: ignore[arg-type]
    out = mypy_strict(tmp_path, source)
    assert "Success: no issues found" in out, out


def test_configure_accepts_in_its_hints_the_comma_separated_exporters_it_runs(tmp_path: Path) -> None:
    """`configure(exporter="otlp_http,console")` ran with both exporters (its TypeError says "comma-separated"),
    but `mypy --strict` refused it: the hint was the Literal of single names."""
    source = """
        from shannon_otel import configure

        telemetry = configure("svc", exporter="console,none", set_global=False, shutdown_timeout_s=0.5)
        telemetry.shutdown()
    """
    exec(textwrap.dedent(source), {})  # the run time accepts it
    out = mypy_strict(tmp_path, source)
    assert "Success: no issues found" in out, out


def test_a_saga_transaction_is_known_not_to_swallow_the_blocks_exception(tmp_path: Path) -> None:
    """`Transaction.__aexit__` was annotated `-> bool` though it never swallows the block's exception (it
    returns False or raises), so a type checker took the code after `async with saga.begin()` as reachable
    after a `return` or raise inside: a function returning from inside the block failed `mypy --strict`
    ("Missing return statement")."""
    out = mypy_strict(tmp_path, """
        from shannon_otel import Saga

        async def reserve() -> int:
            return 1

        async def release(seat: int) -> None:
            pass

        async def book(saga: Saga) -> int:
            async with saga.begin() as tx:
                return await tx.step("reserve", reserve, compensate=release)
    """)
    assert "Success: no issues found" in out, out


def test_a_fallbacks_result_type_includes_what_the_fallback_serves(tmp_path: Path) -> None:
    """A `Fallback` call (and a function it decorates) was typed as returning the operation's type alone, though
    it returns the fallback's value when the operation fails: `fallback: Callable[[Exception], Awaitable[Any]]`.
    A fallback serving `None` (or a str for an int operation) type-checked as the operation's type, and the
    user's `result.attribute` failed at run time only."""
    out = mypy_strict(tmp_path, """
        from typing import assert_type
        from shannon_otel import Fallback

        async def fetch(url: str) -> bytes:
            return url.encode()

        async def nothing(error: Exception) -> None:
            return None

        async def cached(error: Exception) -> bytes:
            return b"cached"

        @Fallback(nothing)
        async def get(url: str) -> bytes:
            return url.encode()

        async def main() -> None:
            assert_type(await Fallback(nothing).call(fetch, "u"), bytes | None)
            assert_type(await Fallback(cached).call(fetch, "u"), bytes)
            assert_type(await Fallback(cached).call(lambda: fetch("u")), bytes)
            assert_type(await get("u"), bytes | None)
            await get(1)  # type: ignore[arg-type]
            typed: Fallback[bytes] = Fallback[bytes](cached)  # the run time accepts the subscript too
            assert_type(await typed.call(fetch, "u"), bytes)
    """)
    assert "Success: no issues found" in out, out


def test_dask_tasks_keep_the_functions_result_type(tmp_path: Path) -> None:
    """`DaskBackend.remote/task/map/imap` returned `RemoteFunction[Any]` / `TaskSpec[Any]`, so the results of a
    wave running them (`wave.run(backend.map(fetch, urls))`, the documented use) were `Any`; `pool` was `Any`."""
    pytest.importorskip("distributed")
    out = mypy_strict(tmp_path, """
        from collections.abc import Iterator
        from typing import assert_type
        from shannon_otel import TaskSpec, Wave, WaveResult
        from shannon_otel.dask import DaskBackend, RemoteFunction

        async def fetch(url: str) -> bytes:
            return url.encode()

        def square(x: int) -> int:
            return x * x

        async def main(backend: DaskBackend) -> None:
            assert_type(backend.remote(fetch), RemoteFunction[bytes])
            assert_type(backend.remote(square, name="sq"), RemoteFunction[int])
            assert_type(await backend.remote(fetch)("u"), bytes)
            assert_type(backend.task(square, 3), TaskSpec[int])
            assert_type(backend.map(fetch, ["u"]), list[TaskSpec[bytes]])
            assert_type(backend.imap(square, [1]), Iterator[TaskSpec[int]])
            assert_type(await Wave("w").run(backend.map(fetch, ["u"])), WaveResult[bytes])
            assert_type(await Wave("w").run([backend.task(square, 2)]), WaveResult[int])
            backend.map(square, [1], pool=3)  # type: ignore[call-overload]
    """)
    assert "Success: no issues found" in out, out


def test_resilient_types_its_keywords_as_pipeline_does(tmp_path: Path) -> None:
    """`resilient(*policies, **options: Any)` let any keyword through the type checker (a misspelt `nmae=`, a
    `name=3`), which the run time refused (TypeError): its keywords are now Pipeline's, typed."""
    source = """
        from shannon_otel import Retry, Timeout, resilient

        ok = resilient(Retry(), Timeout(1.0), name="op", hooks=None, instrument=False)
    """
    exec(textwrap.dedent(source), {})  # the run time accepts it
    for wrong in ('nmae="op"', "name=3"):
        with pytest.raises(TypeError):
            exec(textwrap.dedent(source).replace('name="op"', wrong), {})  # and refuses these
    out = mypy_strict(tmp_path, source + """
        misspelt = resilient(Retry(), nmae="op")  # type: ignore[call-arg]
        not_a_name = resilient(Retry(), name=3)  # type: ignore[arg-type]
    """)
    assert "Success: no issues found" in out, out


def test_a_breakers_settings_are_typed_as_its_config_fields(tmp_path: Path) -> None:
    """`CircuitBreaker(name, **settings: object)` and `BreakerRegistry.get(name, **settings: object)` let any
    keyword of any type through the type checker (`failure_treshold=5`, `reset_timeout="30"`), which the run
    time refused (TypeError): the settings are typed as BreakerConfig's fields."""
    import dataclasses

    from shannon_otel import BreakerConfig
    from shannon_otel.recovery._breaker_config import BreakerSettings

    assert set(BreakerSettings.__annotations__) == {f.name for f in dataclasses.fields(BreakerConfig) if f.init}
    source = """
        from shannon_otel import BreakerRegistry, CircuitBreaker

        breaker = CircuitBreaker("api", failure_threshold=5, failure_rate=0.5, window_s=10, reset_timeout=1,
                                 on=(ValueError, KeyError), ignore=KeyboardInterrupt)
        same = BreakerRegistry().get("api", failure_threshold=3, reset_timeout=2.5)
    """
    exec(textwrap.dedent(source), {})  # the run time accepts it
    for wrong in ("failure_treshold=5", 'min_calls="10"'):
        with pytest.raises(TypeError):
            exec(textwrap.dedent(source).replace("failure_threshold=5", wrong), {})  # and refuses these
    out = mypy_strict(tmp_path, source + """
        misspelt = CircuitBreaker("b", failure_treshold=5)  # type: ignore[call-overload]
        wrong_type = CircuitBreaker("c", reset_timeout="30")  # type: ignore[call-overload]
        in_registry = BreakerRegistry().get("d", window="100")  # type: ignore[arg-type]
    """)
    assert "Success: no issues found" in out, out


def test_a_saga_steps_compensation_is_typed_by_its_actions_result(tmp_path: Path) -> None:
    """`Step(name, action, compensate)` typed `compensate` as taking `Any`, so a compensation expecting another
    type than the action returns (it receives that result) type-checked, where `tx.step(...)` refused it."""
    source = """
        from typing import assert_type
        from shannon_otel import Saga, Step

        async def reserve() -> int:
            return 7

        async def release(seat: int) -> None:
            pass

        async def refund(receipt: str) -> None:
            pass

        steps = [Step("reserve", reserve, release), Step[int]("again", reserve)]
        assert_type(Step("reserve", reserve, release), Step[int])

        async def book() -> None:
            await Saga("s").run(*steps, Step("other", reserve))
    """
    exec(textwrap.dedent(source), {})  # the run time accepts it (Step[int](...) too)
    out = mypy_strict(tmp_path, source + """
        wrong = Step("reserve", reserve, refund)  # type: ignore[misc]  # "Cannot infer value of type parameter"
    """)
    assert "Success: no issues found" in out, out


def test_a_breakers_hints_refuse_what_its_constructor_refuses(tmp_path: Path) -> None:
    """`CircuitBreaker(name: str | None = None, config=None, **settings)`: `CircuitBreaker()` and a config given
    with settings type-checked, and each raised TypeError at run time (no name; "either config or individual
    settings, not both")."""
    source = """
        from shannon_otel import BreakerConfig, CircuitBreaker

        fine = [CircuitBreaker("a"), CircuitBreaker("b", BreakerConfig(window=10)),
                CircuitBreaker("c", None, window=10), CircuitBreaker("d", config=BreakerConfig(), shared=None),
                CircuitBreaker("e", reset_timeout=2)]
    """
    exec(textwrap.dedent(source), {})  # the run time accepts these
    refused = ["CircuitBreaker()", "CircuitBreaker(None)", "CircuitBreaker('f', BreakerConfig(), window=10)"]
    for call in refused:
        with pytest.raises(TypeError):
            exec(textwrap.dedent(source) + call, {})  # and refuses these
    ignored = "".join(f"{call}  # type: ignore[call-overload]\n" for call in refused)
    out = mypy_strict(tmp_path, textwrap.dedent(source) + ignored)
    assert "Success: no issues found" in out, out


def test_a_retrys_jitter_is_typed_as_the_names_it_accepts(tmp_path: Path) -> None:
    """`Retry(jitter=...)` was hinted `Jitter | str`: a misspelt `jitter="ful"` type-checked, and the constructor
    refused it (ValueError). The names it takes are now a Literal, kept equal to Jitter's values."""
    from typing import get_args

    from shannon_otel import Jitter
    from shannon_otel.recovery._backoff import JitterName

    assert set(get_args(JitterName)) == {j.value for j in Jitter}
    source = """
        from shannon_otel import Jitter, Retry, retry

        fine = [Retry(jitter="none"), Retry(jitter="decorrelated"), Retry(jitter=Jitter.EQUAL), retry(jitter="full")]
    """
    exec(textwrap.dedent(source), {})  # the run time accepts these
    with pytest.raises(ValueError, match="jitter"):
        exec(textwrap.dedent(source).replace('"none"', '"ful"'), {})  # and refuses this
    out = mypy_strict(tmp_path, source + """
        misspelt = Retry(jitter="ful")  # type: ignore[arg-type]
    """)
    assert "Success: no issues found" in out, out


def test_a_degrades_result_type_includes_what_its_default_or_cheaper_serves(tmp_path: Path) -> None:
    """`Degrade(default=..., cheaper=...)` was not generic (`default: Any`, `cheaper: Callable[[], Awaitable[Any]]`),
    so its calls were typed `Served[T]` with T the operation's type alone: `Degrade(default=None)` on a function
    returning bytes type-checked as `Served[bytes]`, and `served.value.decode()` failed at run time only when the
    default was served. `.default` was `Any`."""
    source = """
        from typing import Any, assert_type
        from shannon_otel import Degrade, Served

        async def fetch(url: str) -> bytes:
            return url.encode()

        async def cheap() -> str:
            return "cheap"

        @Degrade(default=None)
        async def get(url: str) -> bytes:
            return url.encode()

        async def main() -> None:
            assert_type(await Degrade(default=None).call(fetch, "u"), Served[bytes | None])
            assert_type(await get("u"), Served[bytes | None])
            assert_type(await Degrade(default=b"").call(fetch, "u"), Served[bytes])
            assert_type(await Degrade(cheaper=cheap).call(lambda: fetch("u")), Served[bytes | str])
            assert_type(Degrade(default=0).default, int)
            assert_type(await Degrade[bytes](default=b"").call(fetch, "u"), Served[bytes])
            wider: Degrade[bytes | None] = Degrade(default=None)
            bare: Degrade = Degrade(default="s")  # a bare annotation is Degrade[Any], as before it was generic
            await get(1)  # type: ignore[arg-type]
            Degrade[int](default="x")  # type: ignore[arg-type]
    """
    exec(textwrap.dedent(source), {})  # the run time accepts it (Degrade[bytes](...) too)
    out = mypy_strict(tmp_path, source)
    assert "Success: no issues found" in out, out



def test_a_misspelled_public_name_is_an_error_and_the_lazy_names_keep_their_types(tmp_path: Path) -> None:
    """The package's module-level ``__getattr__`` (its lazy imports) was visible to mypy, so every attribute of
    ``shannon_otel`` existed, typed ``Any``: ``from shannon_otel import Wavee`` and ``shannon_otel.Retyr(...)``
    passed ``mypy --strict`` and failed only at run time. The run time still imports the lazy names on first use."""
    out = mypy_strict(tmp_path, """
        from typing import assert_type
        import shannon_otel
        from shannon_otel import RunRecorder, Telemetry, configure
        from shannon_otel import Wavee  # type: ignore[attr-defined]

        shannon_otel.Retyr(attempts=2)  # type: ignore[attr-defined]
        assert_type(RunRecorder().report().recommendations(), list[shannon_otel.Recommendation])
        telemetry: Telemetry = configure("svc", exporter="none")
        assert_type(telemetry.dropped, dict[str, int])
    """)
    assert "Success: no issues found" in out, out
    lazy = subprocess.run(
        [sys.executable, "-c", "import shannon_otel; print(shannon_otel.RunRecorder.__name__, "
         "hasattr(shannon_otel, 'Wavee'))"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert lazy.stdout.split() == ["RunRecorder", "False"], lazy.stderr
