"""Run waves on a Dask cluster (``pip install 'shannon-otel[dask]'``).

>>> from shannon_otel.dask import DaskBackend, WorkerTelemetry
>>> async with Client(address, asynchronous=True) as client:
...     await client.register_plugin(WorkerTelemetry("crawler"))
...     backend = DaskBackend(client)
...     result = await Wave("crawl", max_concurrency=64, policy=Retry()).run(backend.map(fetch, urls))

The wave, its policies and its hooks run on the client; each task's function runs on a worker,
inside a span that continues the client's trace. See docs/dask.md.
"""

from __future__ import annotations

try:
    import distributed  # noqa: F401
except ImportError as _missing:  # pragma: no cover - the message is the point (private: a public `exc` is an export)
    raise ImportError("shannon_otel.dask needs Dask: pip install 'shannon-otel[dask]'") from _missing

from ._backend import DaskBackend, RemoteFunction
from ._plugin import WorkerTelemetry
from ._shipping import UnshippableTaskError

__all__ = ["DaskBackend", "RemoteFunction", "UnshippableTaskError", "WorkerTelemetry"]

# Its public home, so a task failed by it has `error.type` shannon_otel.dask.UnshippableTaskError
UnshippableTaskError.__module__ = __name__
