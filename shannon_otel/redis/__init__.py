"""Breakers, rate limits and pools shared across processes through Redis (``pip install 'shannon-otel[redis]'``).

>>> async with RedisState("redis://127.0.0.1:6379/0") as shared:
...     breaker = CircuitBreaker("search-api", shared=shared, failure_threshold=5)
...     wave = Wave("crawl", rate_limit=SharedRateLimit(shared, "search-api", rate=10), policy=breaker)

See docs/shared-state.md for the semantics, staleness bounds, fault policy and deployment notes.
"""

from __future__ import annotations

try:
    import redis  # noqa: F401
except ImportError as _missing:  # pragma: no cover - the message is the point (private: a public `exc` is an export)
    raise ImportError("shannon_otel.redis needs the redis client: pip install 'shannon-otel[redis]'") from _missing

from ._limits import SharedPool, SharedRateLimit
from ._store import RedisState, SharedStateUnavailableError

__all__ = ["RedisState", "SharedPool", "SharedRateLimit", "SharedStateUnavailableError"]

# Its public home, so a task failed by it has `error.type` shannon_otel.redis.SharedStateUnavailableError
SharedStateUnavailableError.__module__ = __name__
