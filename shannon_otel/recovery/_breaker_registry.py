"""Named breakers shared across call sites: :class:`BreakerRegistry`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn, SupportsIndex, Unpack

from .. import _clock
from .._hooks import check_hooks, resolve_hooks
from .._validate import check_sync_callable, check_telemetry_name, empty_or_not_str
from ._breaker import CircuitBreaker
from ._breaker_config import BreakerConfig, BreakerSettings

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook
    from ._types import Clock


class BreakerRegistry:
    """Named breakers shared across call sites: ``registry.get("db")`` is always the same breaker.

    The hooks, providers and clock given here are used by every breaker it creates. Threads (each with
    its event loop) may share a registry: of several asking for a new name at once, one creates it and
    the others get that same breaker. A breaker is kept for the registry's life (its state is what it
    is for; ~1.3 KB each, more with telemetry): names are a fixed set (a dependency, not a request id).
    """

    __slots__ = ("_breakers", "_clock", "_creating", "_hooks", "_instrument", "_meter_provider", "_tracer_provider")

    def __init__(
        self, *, clock: Clock = _clock.monotonic, hooks: Iterable[Hook] | None = None,
        tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None,
        instrument: bool = True,
    ) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        # Held while a breaker is created (its hooks are told inside): two threads asking for one new name
        # each created a breaker and kept their own (in 181 of 200 forced races of four threads), so the
        # failures were split between them. Re-entrant: a hook may ask this registry for another breaker.
        self._creating = threading.RLock()
        check_sync_callable("clock", clock, "a callable returning seconds", takes=0)
        resolve_hooks(hooks, tracer_provider, meter_provider, instrument=False)  # validates them, now
        if not isinstance(instrument, bool):
            raise TypeError(f"instrument must be a bool, got {instrument!r}")
        self._clock = clock
        self._hooks = check_hooks(hooks)
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._instrument = instrument

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # Refused, by name, as its breakers are (a pickle raised "cannot pickle '_thread.RLock' object", naming nothing)
        raise TypeError(
            "BreakerRegistry cannot be pickled or copied: it holds the live breakers its call sites share, and a "
            "copy would hold breakers of the same names counting apart. Build one per process (or share breaker "
            "state across processes with CircuitBreaker(..., shared=RedisState(...)))"
        )

    def get(
        self, name: str, config: BreakerConfig | None = None, **settings: Unpack[BreakerSettings],
    ) -> CircuitBreaker:
        """The breaker called ``name``, created on first use from ``config`` / ``settings``.

        Raises ValueError when it exists with a different configuration than the one given.
        """
        if not isinstance(name, str) or not name:
            raise empty_or_not_str(name)(f"name must be a non-empty str, got {name!r}")
        check_telemetry_name("name", name)
        if config is not None and not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig or None, got {config!r}")
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._creating:
                breaker = self._breakers.get(name)  # another thread may have created it meanwhile
                if breaker is None:
                    breaker = self._breakers[name] = CircuitBreaker(
                        name, config,  # type: ignore[arg-type]  # given with settings too: the breaker refuses it
                        clock=self._clock, hooks=self._hooks, tracer_provider=self._tracer_provider,
                        meter_provider=self._meter_provider, instrument=self._instrument,
                        **settings,
                    )
                    return breaker
        if config is not None or settings:
            wanted = config if config is not None else BreakerConfig(**settings)
            if wanted != breaker.config:
                raise ValueError(f"breaker {name!r} already exists with another configuration: {breaker.config}")
        return breaker

    def __getitem__(self, name: str) -> CircuitBreaker:
        return self._breakers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __len__(self) -> int:
        return len(self._breakers)

    def names(self) -> tuple[str, ...]:
        """The names of the breakers built so far, in the order they were built."""
        return tuple(self._breakers)

    def reset_all(self) -> None:
        """Close every breaker (tests, or after an incident)."""
        for breaker in self._breakers.values():
            breaker.reset()
