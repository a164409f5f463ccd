"""Circuit breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, with counted and ignored exceptions.

A new breaker is announced to its hooks (``breaker_registered``: name and initial state, so the
state gauge has its series before any call); its transitions are reported to them too: the OTel
hook adds them as span events on the current span (see ``shannon_otel._otel._recovery``). All
state changes happen between awaits, so on one event loop admission and recording are atomic
without locks: under any concurrency exactly ``half_open_probes`` calls are admitted per
HALF_OPEN period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .. import _clock
from .._events import BreakerRegistered, BreakerTransition, CallRejected, CallStarted
from .._hooks import resolve_hooks
from .._telemetry import BreakerState
from .._validate import check_exceptions, check_number
from ._core import END, Chain, CircuitOpenError, Clock, Factory, Policy, _Call, next_step, observed, start_call
from ._window import FAILED, SLOW, CountWindow, TimeWindow

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from ..redis._link import BreakerLink
    from ..redis._store import RedisState
    from opentelemetry.trace import TracerProvider

    from .._events import Hook

T = TypeVar("T")
_log = logging.getLogger(__name__)
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a breaker opens and closes. Validated at construction; immutable.

    Opens (from CLOSED) when, over the rolling window, ``failures >= failure_threshold``, or, once
    the window holds ``min_calls`` calls, ``failures / calls >= failure_rate`` or
    ``slow calls / calls >= slow_call_rate`` (a call is slow when it takes ``>= slow_call_s``).
    The window is the last ``window`` calls, or the last ``window_s`` seconds when that is set.
    After ``reset_timeout`` seconds OPEN admits up to ``half_open_probes`` probe calls (HALF_OPEN);
    ``success_threshold`` successful probes close it, a failed or slow probe re-opens it, and a
    cancelled or ignored probe gives its slot back. Exceptions that are instances of ``count`` and
    not of ``ignore`` count as failures; other errors and cancellation are not counted.
    """

    failure_threshold: int | None = 5
    failure_rate: float | None = None
    window: int = 100
    window_s: float | None = None
    min_calls: int = 10
    slow_call_s: float | None = None
    slow_call_rate: float = 1.0
    half_open_probes: int = 1
    success_threshold: int = 1
    reset_timeout: float = 30.0
    count: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ignore: type[BaseException] | tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        check_number("failure_threshold", self.failure_threshold, low=1, integer=True, allow_none=True)
        check_number("failure_rate", self.failure_rate, low=0, high=1, low_open=True, allow_none=True)
        if self.failure_threshold is None and self.failure_rate is None and self.slow_call_s is None:
            raise ValueError("set at least one of failure_threshold, failure_rate or slow_call_s")
        check_number("window", self.window, low=1, integer=True)
        check_number("window_s", self.window_s, low=0, low_open=True, allow_none=True)
        check_number("min_calls", self.min_calls, low=1, integer=True)
        check_number("slow_call_s", self.slow_call_s, low=0, low_open=True, allow_none=True)
        check_number("slow_call_rate", self.slow_call_rate, low=0, high=1, low_open=True)
        check_number("half_open_probes", self.half_open_probes, low=1, integer=True)
        check_number("success_threshold", self.success_threshold, low=1, high=self.half_open_probes,
                     integer=True)
        check_number("reset_timeout", self.reset_timeout, low=0)
        object.__setattr__(self, "count", check_exceptions("count", self.count))
        object.__setattr__(self, "ignore", check_exceptions("ignore", self.ignore))


class CircuitBreaker(Policy):
    """A named, stateful breaker; share one instance (or a :class:`BreakerRegistry` name) across call sites.

    ``await breaker.call(fn)`` raises :class:`CircuitOpenError` without calling ``fn`` while the
    breaker rejects. ``@breaker`` decorates an async function. The operation it reports is its name.
    """

    __slots__ = (
        "_clean",
        "_failures_count",
        "_forced",
        "_gen",
        "_hooks",
        "_link",
        "_opened_at",
        "_probes_left",
        "_started",
        "_state",
        "_successes",
        "_timed",
        "_window",
        "clock",
        "config",
        "name",
    )

    def __init__(
        self, name: str = "breaker", config: BreakerConfig | None = None, *, clock: Clock = _clock.monotonic,
        hooks: Iterable[Hook] | None = None, tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None, instrument: bool = True, shared: RedisState | None = None,
        **settings: object,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if config is not None and settings:
            raise TypeError("pass either config or individual settings, not both")
        self.config = config if config is not None else BreakerConfig(**settings)  # type: ignore[arg-type]
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}")
        self.name = name
        self.clock = clock
        c = self.config
        self._window: CountWindow | TimeWindow = (
            CountWindow(c.window) if c.window_s is None else TimeWindow(c.window_s)
        )
        self._timed = c.slow_call_s is not None or c.window_s is not None
        self._failures_count: tuple[type[BaseException], ...] = c.count  # type: ignore[assignment]
        self._state = _CLOSED
        self._clean = False  # a success would change nothing (see _update_clean)
        self._gen = 0  # bumped on every transition: results of calls admitted earlier are dropped
        self._opened_at = 0.0
        self._probes_left = 0
        self._successes = 0
        self._forced = False
        self._hooks = resolve_hooks(hooks, tracer_provider, meter_provider, instrument=instrument)
        self._started = CallStarted(name, "breaker")
        self._link: BreakerLink | None = None
        if shared is not None:
            from ..redis._link import BreakerLink
            from ..redis._store import RedisState

            if not isinstance(shared, RedisState):
                raise TypeError(f"shared must be a shannon_otel.redis.RedisState or None, got {shared!r}")
            self._link = BreakerLink(shared, self)
        if self._hooks:
            registered = BreakerRegistered(name, _CLOSED, clock())
            for hook in self._hooks:
                try:
                    hook.breaker_registered(registered)
                except Exception:  # a hook's bug never costs the user a breaker
                    _log.exception("hook %r failed on breaker_registered", type(hook).__name__)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value!r}, config={self.config!r})"

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN turns HALF_OPEN lazily, on the first call after the reset timeout)."""
        return self._state

    # ----------------------------------------------------------------- calling
    async def call(self, fn: Factory[T]) -> T:
        hooks = self._hooks
        if hooks:
            first = hooks[0].call_started(self._started)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, self._started, self.clock, first)
                if call is not None:
                    return await observed(self, END, 0, fn, call)
        if self._state is _CLOSED:
            gen = self._gen
        else:
            gen = self._admit(None) if self._link is None else await self._link.admit(None)
        started = self.clock() if self._timed else 0.0
        try:
            result = await fn()
        except BaseException as exc:
            self._failed(gen, started, exc)
            raise
        if not self._clean:  # else: CLOSED, untimed, window full of successes: nothing changes
            self._succeeded(gen, started)
        return result

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        if self._state is _CLOSED:
            gen = self._gen
        else:
            gen = self._admit(call) if self._link is None else await self._link.admit(call)
        if call is not None:
            for observer in call.observers:
                observer.breaker_admitted(self.name, self._state)
        started = self.clock() if self._timed else 0.0
        try:
            result = await next_step(chain, i, fn, call)
        except BaseException as exc:
            if call is not None and not self._counted(exc) and not isinstance(exc, asyncio.CancelledError):
                call.ignored = exc
            self._failed(gen, started, exc)
            raise
        if not self._clean:
            self._succeeded(gen, started)
        return result

    def _admit(self, call: _Call | None) -> int:
        """Admit a call outside CLOSED (returns the generation) or raise :class:`CircuitOpenError`."""
        if self._state is _OPEN:
            remaining = self.config.reset_timeout - (self.clock() - self._opened_at)
            if self._forced or remaining > 0:
                self._reject(call, None if self._forced else remaining)
            self._transition(_HALF_OPEN, "reset_timeout")
        if self._probes_left > 0:
            self._probes_left -= 1
            return self._gen
        self._reject(call, None)
        raise AssertionError  # unreachable: _reject raises

    def _reject(self, call: _Call | None, retry_after: float | None) -> None:
        state = self._state
        if call is not None:
            event = CallRejected(call.operation, self.name, state)
            for observer in call.observers:
                observer.rejected(event)
        raise CircuitOpenError(self.name, state.value, retry_after)

    def _counted(self, error: BaseException) -> bool:
        return (
            isinstance(error, Exception) and isinstance(error, self._failures_count)
            and not isinstance(error, self.config.ignore)
        )

    # ----------------------------------------------------------------- recording
    def _succeeded(self, gen: int, started: float) -> None:
        if gen != self._gen:
            return
        now = self.clock() if self._timed else 0.0
        slow = self.config.slow_call_s is not None and now - started >= self.config.slow_call_s
        link = self._link
        if self._state is _CLOSED:
            self._window.record(SLOW if slow else 0, now)
            if link is not None:  # sent in batches by the store's flusher
                link.calls += 1
                link.slow += slow
            if slow or self._window.failures:  # a success can complete min_calls: rates may now trip
                self._evaluate()
            self._update_clean()
        elif self._state is _HALF_OPEN:
            if link is not None and link.store.available:  # the shared quota decides
                link.probe_done("slow" if slow else "success")
                return
            if slow:
                self._transition(_OPEN, "slow_calls")
                return
            self._successes += 1
            if self._successes >= self.config.success_threshold:
                self._transition(_CLOSED, "probe_success")

    def _failed(self, gen: int, started: float, error: BaseException) -> None:
        if gen != self._gen:
            return
        link = self._link
        shared_probe = link is not None and link.store.available and self._state is _HALF_OPEN
        if not self._counted(error):
            if shared_probe:
                link.probe_done("giveback")  # type: ignore[union-attr]
            elif self._state is _HALF_OPEN:
                self._probes_left += 1  # a cancelled or ignored probe must not leave HALF_OPEN stuck
            return
        if shared_probe:
            link.probe_done("failure")  # type: ignore[union-attr]
            self._transition(_OPEN, "probe_failure")  # at once here; the others follow the notification
        elif self._state is _HALF_OPEN:
            self._transition(_OPEN, "probe_failure")
        elif self._state is _CLOSED:
            now = self.clock() if self._timed else 0.0
            slow = self.config.slow_call_s is not None and now - started >= self.config.slow_call_s
            if link is not None:
                link.calls += 1
                link.failures += 1
                link.slow += slow
            self._window.record(FAILED | (SLOW if slow else 0), now)
            self._evaluate()
            self._update_clean()

    def _update_clean(self) -> None:
        w = self._window
        self._clean = (
            self._state is _CLOSED and not self._timed and isinstance(w, CountWindow) and w.clean
            and self._link is None  # a shared breaker counts every call for the shared window
        )

    def _evaluate(self) -> None:
        c, w = self.config, self._window
        reason = None
        if c.failure_threshold is not None and w.failures >= c.failure_threshold:
            reason = "failure_threshold"
        elif w.calls >= c.min_calls:
            if c.failure_rate is not None and w.failures >= c.failure_rate * w.calls:
                reason = "failure_rate"
            elif c.slow_call_s is not None and w.slow >= c.slow_call_rate * w.calls:
                reason = "slow_calls"
        if reason is not None:
            self._transition(_OPEN, reason)
            if self._link is not None:
                self._link.tripped(reason)

    # ----------------------------------------------------------------- transitions
    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (the reset timeout does not apply)."""
        self._forced = True
        if self._state is not _OPEN:
            self._transition(_OPEN, "forced_open")
        if self._link is not None:
            self._link.forced()

    def reset(self) -> None:
        """Close the breaker and forget the window (also ends a :meth:`force_open`)."""
        self._forced = False
        if self._state is not _CLOSED:
            self._transition(_CLOSED, "reset")
        else:
            self._window.reset()
            self._clean = False
        if self._link is not None:
            self._link.reset()

    def _transition(self, to: BreakerState, reason: str) -> None:
        before = self._state
        now = self.clock()
        self._state = to
        self._gen += 1
        if to is _OPEN:
            self._opened_at = now
        elif to is _HALF_OPEN:
            self._probes_left = self.config.half_open_probes
            self._successes = 0
        self._window.reset()
        self._clean = False
        self._emit(before, to, reason, now)

    def _emit(self, before: BreakerState, to: BreakerState, reason: str, now: float) -> None:
        if self._hooks:
            event = BreakerTransition(self.name, before, to, reason, now)
            for hook in self._hooks:
                hook.breaker_transition(event)


class BreakerRegistry:
    """Named breakers shared across call sites: ``registry.get("db")`` is always the same breaker.

    The hooks, providers and clock given here are used by every breaker it creates.
    """

    __slots__ = ("_breakers", "_clock", "_hooks", "_instrument", "_meter_provider", "_tracer_provider")

    def __init__(
        self, *, clock: Clock = _clock.monotonic, hooks: Iterable[Hook] | None = None,
        tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None,
        instrument: bool = True,
    ) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._clock = clock
        self._hooks = tuple(hooks or ())
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._instrument = instrument

    def get(self, name: str, config: BreakerConfig | None = None, **settings: object) -> CircuitBreaker:
        """The breaker called ``name``, created on first use from ``config`` / ``settings``.

        Raises ValueError when it exists with a different configuration than the one given.
        """
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(
                name, config, clock=self._clock, hooks=self._hooks, tracer_provider=self._tracer_provider,
                meter_provider=self._meter_provider, instrument=self._instrument, **settings,
            )
            self._breakers[name] = breaker
        elif config is not None or settings:
            wanted = config if config is not None else BreakerConfig(**settings)  # type: ignore[arg-type]
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
        return tuple(self._breakers)

    def reset_all(self) -> None:
        """Close every breaker (tests, or after an incident)."""
        for breaker in self._breakers.values():
            breaker.reset()
