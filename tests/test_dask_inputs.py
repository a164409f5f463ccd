"""What DaskBackend and WorkerTelemetry refuse on the client, before anything is shipped to a worker: wrapped
closures and generator functions, and the export settings configure() refuses."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest


@pytest.mark.parametrize("timeout", [7200, 1e9, True])
def test_worker_telemetry_refuses_on_the_client_an_export_timeout_configure_refuses(timeout: Any) -> None:
    """``WorkerTelemetry(export_timeout_s=7200)`` (or True) was built, then configure() raised in every
    worker's setup: the error showed up in the workers' logs, not at the line that made the plugin."""
    from shannon_otel.dask import WorkerTelemetry

    with pytest.raises((TypeError, ValueError), match="export_timeout_s"):
        WorkerTelemetry("svc", exporter="none", export_timeout_s=timeout)
    WorkerTelemetry("svc", exporter="none", export_timeout_s=3600)  # configure's upper bound still passes


def _make_closure() -> Callable[[int], int]:
    seen: list[int] = []

    def count(x: int) -> int:
        seen.append(x)
        return len(seen)

    return count


def _make_counter() -> Any:
    seen: list[int] = []

    class Counter:
        def __call__(self, x: int) -> int:
            seen.append(x)
            return len(seen)

        def count(self, x: int) -> int:
            seen.append(x)
            return len(seen)

    return Counter()


async def _agen(x: int) -> AsyncIterator[int]:
    yield x


def _gen(x: int) -> Iterator[int]:
    yield x


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # Dask's own shutdown, not the code under test
@pytest.mark.parametrize(("fn", "match"), [
    (functools.partial(_make_closure(), 1), "'_make_closure.<locals>.count' is a closure over local state"),
    # Bug: a callable object of a class made in a function, its __call__ closing over that function's list, was
    # shipped: each worker appended to its own copy, and the caller's list stayed empty, silently (a bound
    # method of it was refused already).
    (_make_counter(), "'Counter' is a closure over local state (seen)"),
    (_make_counter().count, "'_make_counter.<locals>.Counter.count' is a closure over local state (seen)"),
    (_agen, "'_agen' is a generator function"),
    (_gen, "'_gen' is a generator function"),
])
def test_dask_refuses_a_wrapped_closure_and_generator_functions_before_submitting(fn: Any, match: str) -> None:
    """``partial(closure)`` (and a callable object whose ``__call__`` closes over local state) passed the
    closure check (the worker's copy of its state never came back), and a
    (async) generator function ran on a worker and then failed to send back its generator (``Could not
    serialize object of type generator``), its side effects done."""
    import psutil  # type: ignore[import-untyped]  # comes with distributed; no stubs installed
    from distributed import Client, LocalCluster

    from shannon_otel.dask import DaskBackend, UnshippableTaskError

    async def main() -> None:
        async with (
            # threads in this process (inproc://): the refusal comes before anything reaches it. Their HTTP
            # servers still listen: on 127.0.0.1 only (dashboard_address=None meant 0.0.0.0:8787 and :: )
            LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0",  # type: ignore[no-untyped-call]
                         worker_dashboard_address="127.0.0.1:0", silence_logs=40, asynchronous=True) as cluster,
            Client(cluster, asynchronous=True) as client,  # type: ignore[no-untyped-call]
        ):
            listening = {c.laddr.ip for c in psutil.Process().net_connections() if c.status == psutil.CONN_LISTEN}
            assert listening <= {"127.0.0.1"}, listening
            backend = DaskBackend(client)
            with pytest.raises(UnshippableTaskError, match=re.escape(match)):
                backend.map(fn, [1])
            with pytest.raises(UnshippableTaskError, match=re.escape(match)):
                backend.task(fn, 1)

    asyncio.run(main())


def test_a_worker_plugin_refuses_on_the_client_an_http_endpoint_without_a_scheme() -> None:
    """Before: accepted on the client; every worker's configure() then refused it (or, before that
    check, dropped every export)."""
    import shannon_otel.dask as sod

    with pytest.raises(ValueError, match=r"^endpoint must be an http:// or https:// URL"):
        sod.WorkerTelemetry("crawler", exporter="otlp_http", endpoint="localhost:4318")
    sod.WorkerTelemetry("crawler", exporter="otlp_grpc", endpoint="localhost:4317")  # a gRPC target as before
    sod.WorkerTelemetry("crawler", exporter="console,otlp_http", endpoint="https://collector:4318")


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (3, TypeError), (b"svc", TypeError)])
def test_worker_telemetry_refuses_a_service_name_of_the_wrong_type_with_a_type_error(
    name: object, error: type[Exception],
) -> None:
    """A service name of the wrong type was a ValueError here, a TypeError in configure() itself."""
    from shannon_otel.dask import WorkerTelemetry

    with pytest.raises(error, match="service_name must be a non-empty string or None"):
        WorkerTelemetry(name, exporter="none")  # type: ignore[arg-type]


def _long_named() -> Callable[[int], int]:
    namespace: dict[str, Any] = {}
    exec("def " + "f" * 300 + "(x):\n    return x\n", namespace)  # a function with a 300-character name
    fn: Callable[[int], int] = namespace["f" * 300]
    return fn


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # Dask's own shutdown, not the code under test
def test_dask_says_a_too_long_qualified_name_is_the_functions_and_to_pass_name() -> None:
    """``remote(fn)`` named it after its qualified name, unchecked: one over 256 characters was refused only
    later, by ``task()``/``map()``, as "name must be at most 256 characters", a ``name`` the user never gave. Now
    ``remote()`` (and so ``task()``, ``map()``) says it is the function's qualified name, and to pass name=."""
    from distributed import Client, LocalCluster

    from shannon_otel.dask import DaskBackend

    fn = _long_named()

    async def main() -> None:
        async with (
            LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0",  # type: ignore[no-untyped-call]
                         worker_dashboard_address="127.0.0.1:0", silence_logs=40, asynchronous=True) as cluster,
            Client(cluster, asynchronous=True) as client,  # type: ignore[no-untyped-call]
        ):
            backend = DaskBackend(client)
            for make in (lambda: backend.remote(fn), lambda: backend.task(fn, 1), lambda: backend.map(fn, [1])):
                with pytest.raises(ValueError, match=r"^fn's qualified name .* is 300 characters.*shorter name="):
                    make()
            assert await backend.remote(fn, name="short")(2) == 2  # the remedy works

    asyncio.run(main())


def _logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


class _Decorated:
    @_logged
    def __call__(self, x: int) -> int:
        return x

    @_logged
    def method(self, x: int) -> int:
        return x


def test_a_callable_object_or_method_under_a_wrapping_decorator_is_not_taken_for_a_closure() -> None:
    """A decorator's wrapper (``functools.wraps``) closes over the function it wraps, not over local state:
    unwrapped, as a decorated module-level function is, so checking callable objects' ``__call__`` for
    closures refuses none of these."""
    from shannon_otel.dask._shipping import check_function

    for fn in (_Decorated(), _Decorated().method, _logged(abs)):
        check_function(fn)
