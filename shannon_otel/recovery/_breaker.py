"""The circuit breaker's state machine: CLOSED -> OPEN -> HALF_OPEN -> CLOSED, with counted and ignored
exceptions (its settings are a :class:`~._breaker_config.BreakerConfig`).

A new breaker is announced to its hooks (``breaker_registered``: name and initial state, so the
state gauge has its series before any call); its transitions are reported to them too: the OTel
hook adds them as span events on the current span (see ``shannon_otel._otel._recovery``). All
state changes happen between awaits, so on one event loop admission and recording are atomic
without locks: under any concurrency exactly ``half_open_probes`` calls are admitted per
HALF_OPEN period. Event loops in several threads may share one breaker (it keeps one state): admission
outside CLOSED holds a lock, so two threads calling when the reset timeout ends are not both admitted
as the one probe (they were: once in 3,000 forced races of four threads). Recording results takes no
lock (four threads x 20,000 calls kept the count window consistent, measured); a transition takes it,
with its delivery to the hooks, and is dropped when another thread changed the state since the result
that decided it: each transition happens once, and hooks see them in the order they happened.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, NoReturn, ParamSpec, SupportsIndex, TypeVar, Unpack, overload

from .. import _clock
from .._events import BreakerRegistered, BreakerTransition, CallRejected, CallStarted
from .._hooks import check_hooks, resolve_hooks
from .._isolation import notify as notify_hooks
from .._reraise import raise_as_is
from .._telemetry import BreakerState
from .._validate import (
    check_not_decorated,
    check_reading,
    check_sync_callable,
    check_telemetry_name,
    empty_or_not_str,
    plain,
)
from ._breaker_config import _COUNT_DEPRECATED, BreakerConfig, BreakerSettings
from ._call import _Call, clock_logged, first_failed, notify, observed, start_call
from ._circuit_open import CircuitOpenError
from ._decorated import (
    DecoratedCall,
    MisuseError,
    not_a_factory,
    not_awaitable,
    not_entered,
    wrong_call,
)
from ._policy import Policy, Scoped, next_step, scoped
from ._types import END, Chain, Clock, Factory
from ._window import FAILED, SLOW, CountWindow, TimeWindow

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._events import Hook
    from ..redis._link import BreakerLink
    from ..redis._store import RedisState

T = TypeVar("T")
P = ParamSpec("P")
_log = logging.getLogger(__name__)
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
# Transitions the hooks may cause from inside one delivery (see _emit): hooks that undo each other's changes
# (one resets on open, another forces open on close) are stopped here rather than looping forever.
_NESTED_TRANSITIONS = 64
# The breakers whose probe (a call admitted in HALF_OPEN) runs around the current code, innermost last. A call
# through one of them from inside its own probe (a protected function calling another protected by the same
# breaker) is part of that probe: rejected as a probe of its own, it failed the probe, and the breaker
# opened again (with one probe, whenever it was tried: it never closed). Each with the generation of its
# HALF_OPEN period: work the probe left running is no part of a later period's probe.
_UNRECORDED = -1  # the generation of a call admitted inside its breaker's own probe: never a current one
_PROBING: ContextVar[tuple[tuple[CircuitBreaker, int], ...]] = ContextVar("shannon_otel_breaker_probing", default=())


def _probe_left(token: Token[tuple[tuple[CircuitBreaker, int], ...]]) -> None:
    """Leave the probe's mark in ``_PROBING``. A probe closed from another context (an abandoned coroutine,
    collected) has none to restore there: its ``reset`` raised ValueError before the probe's end was recorded,
    so its slot was never given back and the breaker rejected every call, half-open for good."""
    try:
        _PROBING.reset(token)
    except ValueError:
        pass


class CircuitBreaker(Policy):
    """A named, stateful breaker; share one instance (or a :class:`BreakerRegistry` name) across call sites.

    ``await breaker.call(fn)`` raises :class:`CircuitOpenError` without calling ``fn`` while the
    breaker rejects. ``@breaker`` decorates an async function. The operation it reports is its name.
    ``name`` is required (TypeError without it): it labels the breaker's metric series and reported
    state, so two breakers must not share one. Give each breaker its own name (or share the instance).
    When to open and close: a :class:`BreakerConfig` as ``config``, or its fields as keywords
    (``failure_threshold=5, reset_timeout=30``), not both (TypeError). ``shared``: a
    ``shannon_otel.redis.RedisState`` whose state every process naming this breaker shares
    (docs/shared-state.md).
    """

    __slots__ = (
        "_admitting",
        "_changed_at",
        "_clean",
        "_clock",
        "_config",
        "_delivering",
        "_failures_count",
        "_forced",
        "_gen",
        "_hooks",
        "_link",
        "_name",
        "_opened_at",
        "_options",
        "_probes_left",
        "_started",
        "_state",
        "_successes",
        "_timed",
        "_window",
    )

    # What the run time takes: a name, and a config or its fields as keywords, not both (the implementation's
    # defaults let it refuse what is missing with a TypeError saying why).
    @overload
    def __init__(
        self, name: str, config: BreakerConfig, *, clock: Clock = ..., hooks: Iterable[Hook] | None = ...,
        tracer_provider: TracerProvider | None = ..., meter_provider: MeterProvider | None = ...,
        instrument: bool = ..., shared: RedisState | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self, name: str, config: None = None, *, clock: Clock = ..., hooks: Iterable[Hook] | None = ...,
        tracer_provider: TracerProvider | None = ..., meter_provider: MeterProvider | None = ...,
        instrument: bool = ..., shared: RedisState | None = ..., **settings: Unpack[BreakerSettings],
    ) -> None: ...
    def __init__(
        self, name: str | None = None, config: BreakerConfig | None = None, *, clock: Clock = _clock.monotonic,
        hooks: Iterable[Hook] | None = None, tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None, instrument: bool = True, shared: RedisState | None = None,
        **settings: Unpack[BreakerSettings],
    ) -> None:
        if name is None:
            raise TypeError(
                "CircuitBreaker needs name= (e.g. CircuitBreaker('payments-api', ...)): the name labels the "
                "breaker's metric series and reported state, and two breakers must not share one"
            )
        check_not_decorated("CircuitBreaker", "name", name, "a non-empty str",
                            "@CircuitBreaker(name), e.g. @CircuitBreaker('payments-api')")
        if not isinstance(name, str) or not name:
            raise empty_or_not_str(name)(f"name must be a non-empty str, got {name!r}")
        check_telemetry_name("name", name)
        name = plain(name)
        if config is not None and settings:
            raise TypeError("pass either config or individual settings, not both")
        if "count" in settings:  # warned here so that the warning points at the caller's line
            warnings.warn(_COUNT_DEPRECATED, DeprecationWarning, stacklevel=2)
            if "on" in settings:
                raise TypeError("pass on only (count is its deprecated old name)")
            settings["on"] = settings.pop("count")  # type: ignore[typeddict-item]  # None: BreakerConfig refuses it
        if config is not None and not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig or None, got {config!r}")
        self._config = config if config is not None else BreakerConfig(**settings)
        check_sync_callable("clock", clock, "a callable returning seconds", takes=0)
        self._name = name
        self._clock = _clock.seconds(clock)
        c = self._config
        self._window: CountWindow | TimeWindow = (
            CountWindow(c.window) if c.window_s is None else TimeWindow(c.window_s)
        )
        self._timed = c.slow_call_s is not None or c.window_s is not None
        self._failures_count: tuple[type[BaseException], ...] = c.on  # type: ignore[assignment]
        self._state = _CLOSED
        self._clean = False  # a success would change nothing (see _update_clean)
        self._gen = 0  # bumped on every transition: results of calls admitted earlier are dropped
        self._opened_at = 0.0
        self._changed_at = 0.0  # the clock's reading at registration (with hooks) or the last transition
        self._probes_left = 0
        self._successes = 0
        self._forced = False
        # Admission outside CLOSED, where event loops in several threads sharing this breaker could both
        # move it to HALF_OPEN and both be admitted as its probes (CLOSED, the hot path, takes no lock).
        # Re-entrant: a transition's hooks may call this breaker again on the same thread.
        self._admitting = threading.RLock()
        # The transitions being handed to the hooks by this thread (see _emit): a thread-local, so a thread
        # started later (in a forked child too) never finds another's.
        self._delivering = threading.local()
        checked = check_hooks(hooks)  # a one-shot iterable is read once, for both uses
        self._hooks = resolve_hooks(checked, tracer_provider, meter_provider, instrument=instrument)
        self._options = (checked, tracer_provider, meter_provider, instrument)
        self._started = CallStarted(name, "breaker")
        self._link: BreakerLink | None = None
        if shared is not None:
            from ..redis._link import BreakerLink
            from ..redis._store import RedisState

            if not isinstance(shared, RedisState):
                raise TypeError(f"shared must be a shannon_otel.redis.RedisState or None, got {shared!r}")
            self._link = BreakerLink(shared, self)
        if self._hooks:
            now = self._clock()
            check_reading("clock", now)  # read here anyway: a NaN or datetime one failed at the first call
            self._changed_at = now
            # a hook's bug never costs the user a breaker; its KeyboardInterrupt is raised once every hook knows it
            registered = BreakerRegistered(name, _CLOSED, now)
            notify_hooks(self._hooks, self._hooks, self._hooks, "breaker_registered", registered)
        if self._link is not None:
            self._link.registered()  # after the hooks know it: a fail-closed outage may open it now

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._name!r}, state={self._state.value!r}, config={self._config!r})"

    def _reporting_to(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
    ) -> Policy | Scoped:
        # Its calls report to the wave's providers; its transitions and state stay on its own hooks
        # (one breaker, one state series, whoever calls it).
        hooks, own_tracer, own_meter, instrument = self._options
        return scoped(self, END, hooks, (own_tracer, own_meter), (tracer_provider, meter_provider),
                      instrument=instrument)

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # Refused, by name: its state (open or closed, the calls counted) is what every call site sharing it relies
        # on. A copy (a pickle sent to another process, copy.copy / deepcopy, a Pipeline or Wave holding it) was a
        # second breaker of the same name counting apart, or (a pickle) refused as "cannot pickle '_thread.RLock'
        # object", naming nothing.
        raise TypeError(
            f"CircuitBreaker {self._name!r} cannot be pickled or copied: it holds live state (open or closed, the "
            "calls it counted) shared by every call site calling it, and a copy would be a second breaker of that "
            "name counting apart. Build one per process (its config pickles: CircuitBreaker(name, breaker.config)), "
            "or share its state across processes with shared=RedisState(...)"
        )

    # Read-only: the name labels the breaker's spans, metric series and registry entry, and the config sized its
    # window, all fixed when it was built; a reassignment took effect in some of them only.
    @property
    def name(self) -> str:
        """The breaker's name: its metric series and reported state (read-only)."""
        return self._name

    @property
    def config(self) -> BreakerConfig:
        """When it opens and closes (read-only)."""
        return self._config

    @property
    def clock(self) -> Clock:
        """The clock of its windows and reset timeout (read-only)."""
        return self._clock

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN turns HALF_OPEN lazily, on the first call after the reset timeout)."""
        return self._state

    # ----------------------------------------------------------------- calling
    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if args or kwargs:
            fn = DecoratedCall(fn, *args, **kwargs)
        hooks = self._hooks
        if hooks:
            try:
                first = hooks[0].call_started(self._started)
            except Exception as exc:
                first = first_failed(hooks, exc)
            if first is not None or len(hooks) > 1:
                call = start_call(hooks, self._started, self._clock, first)
                if call is not None:
                    return await observed(self, END, 0, fn, call)
        if self._clean:  # CLOSED, untimed, window full of successes: one check instead of two
            gen, started = self._gen, 0.0
        else:
            if self._state is _CLOSED:
                gen = self._gen
            else:
                gen = self._admit(None) if self._link is None else await self._link.admit(None)
            started = self._begin(gen) if self._timed else 0.0
        probing = _PROBING.set((*_PROBING.get(), (self, gen))) if self._state is _HALF_OPEN else None
        made: object = self  # what fn() returned, once it has returned
        try:
            made = fn()  # type: ignore[call-arg]
            result = await made
        except BaseException as exc:
            if probing is not None:
                _probe_left(probing)
            if not callable(fn):  # checked on the error path only: the success path is budgeted
                self._uncounted(gen)  # it never ran: not a result of the service
                raise not_a_factory(fn) from None
            if made is not self and not inspect.isawaitable(made):
                self._uncounted(gen)  # a programming error, not a result of the service
                raise not_awaitable(made) from None
            if made is self and type(exc) is TypeError and not_entered(exc):  # fn() itself: its arguments
                self._uncounted(gen)
                raise wrong_call(exc) from exc
            try:
                self._failed(gen, started, exc)
            except BaseException as clock_exc:  # the clock's error: see _unclocked
                self._unclocked(gen, clock_exc)
            raise
        if probing is not None:
            _probe_left(probing)
        if not self._clean:  # else: CLOSED, untimed, window full of successes: nothing changes
            try:
                self._succeeded(gen, started)
            except BaseException as exc:  # the clock's error: see _unclocked
                self._unclocked(gen, exc)
        return result

    async def run(self, chain: Chain, i: int, fn: Factory[T], call: _Call | None) -> T:
        if self._state is _CLOSED:
            gen = self._gen
        else:
            gen = self._admit(call) if self._link is None else await self._link.admit(call)
        if call is not None:
            notify(call, "breaker_admitted", self._name, self._state)
        started = self._begin(gen) if self._timed else 0.0
        probing = _PROBING.set((*_PROBING.get(), (self, gen))) if self._state is _HALF_OPEN else None
        try:
            result = await next_step(chain, i, fn, call)
        except BaseException as exc:
            if probing is not None:
                _probe_left(probing)
            if (call is not None and not self._counted(exc) and not isinstance(exc, asyncio.CancelledError)
                    and not isinstance(exc, MisuseError)):
                call.ignored = exc
            try:
                self._failed(gen, started, exc)
            except BaseException as clock_exc:  # the clock's error: see _unclocked
                self._unclocked(gen, clock_exc, call)
            raise
        if probing is not None:
            _probe_left(probing)
        if not self._clean:
            try:
                self._succeeded(gen, started)
            except BaseException as exc:  # the clock's error: see _unclocked
                self._unclocked(gen, exc, call)
        return result

    def _admit(self, call: _Call | None) -> int:
        """Admit a call outside CLOSED (returns the generation) or raise :class:`CircuitOpenError`."""
        with self._admitting:
            if self._state is _OPEN:
                remaining = self._reset_left(self._clock())
                if self._forced or remaining > 0:
                    self._reject(call, None if self._forced else remaining)
                self._transition(_HALF_OPEN, "reset_timeout")
            # what admits is the state now: a hook of that transition may have changed it again (force_open()
            # let this call through as a probe of a breaker forced open; reset() closes it)
            if self._state is _CLOSED:
                return self._gen
            if self._state is _HALF_OPEN and self._probes_left > 0:
                self._probes_left -= 1
                return self._gen
            if self._state is _HALF_OPEN and (self, self._gen) in _PROBING.get():  # inside its own probe: part of it,
                return _UNRECORDED  # so not recorded (the probe's own result is), nor given back as a probe slot
        self._reject(call, None)
        raise AssertionError  # unreachable: _reject raises

    def _reset_left(self, now: float) -> float:
        """Seconds from ``now`` until the reset timeout of this OPEN breaker ends (<= 0: it has): what
        admits a probe and the ``retry_after_s`` of a rejection, here and in the Redis link.

        Measured to the deadline, ``opened_at + reset_timeout``: as ``reset_timeout - (now - opened_at)``, a
        caller that slept exactly that long (``Retry(wait_retry_after=True)``, a test on virtual time) found
        ``now - opened_at`` rounded just under ``reset_timeout`` about every other time, and was rejected with
        a ``retry_after_s`` below one step of the clock (4e-11 s at 762280 s): a sleep that moved no virtual clock,
        so every later attempt was rejected too. ``deadline - now`` is exact that close to the deadline, and
        sleeping it reaches it."""
        if now < self._opened_at:  # the clock went back (a stepped wall clock): wait reset_timeout from
            self._opened_at = now  # here, not the step too (a day back kept it open for a day)
        return (self._opened_at + self._config.reset_timeout) - now

    def _reject(self, call: _Call | None, retry_after: float | None) -> None:
        state = self._state
        error = CircuitOpenError(self._name, state.value, retry_after)
        if call is not None:
            notify(call, "rejected", CallRejected(call.operation, self._name, state, error))
        raise error

    def _counted(self, error: BaseException) -> bool:
        return (
            isinstance(error, Exception) and isinstance(error, self._failures_count)
            and not isinstance(error, self._config.ignore) and not isinstance(error, MisuseError)
        )

    # ----------------------------------------------------------------- recording
    def _begin(self, gen: int) -> float:
        """The start of an admitted call (a timed breaker's clock reading).

        Here and where a result is recorded, the clock's error (a reading that raised, or was refused: NaN)
        comes before the result changed anything, and gives a probe's slot back, as a call ending uncounted
        does: it left the probe taken and the breaker HALF_OPEN for good, rejecting every call. (A result that
        changed the state started a new generation: nothing is given back then.)"""
        try:
            return self._clock()
        except BaseException:
            self._uncounted(gen)
            raise

    def _succeeded(self, gen: int, started: float) -> None:
        if gen != self._gen:
            return
        window = self._window
        if self._state is _CLOSED:  # untimed, a success can open it only with a failure in the window
            now = self._closed_now(0) if self._timed or window.failures else None
        else:
            now = self._clock() if self._timed else None
        # to the deadline, as the reset timeout (see _reset_left): `now - started` rounded just under slow_call_s
        # about every other time for a call that took exactly that long on virtual time, counted not slow
        slow_s = self._config.slow_call_s
        slow = slow_s is not None and now is not None and now >= started + slow_s
        link = self._link
        if self._state is _CLOSED:
            window.record(SLOW if slow else 0, 0.0 if now is None else now)
            if link is not None:  # sent in batches by the store's flusher
                link.calls += 1
                link.slow += slow
            # a success can complete min_calls: the failure or the slow-call rate may now trip
            if slow or window.failures or window.slow:
                self._evaluate(gen, now)
            self._update_clean()
        elif self._state is _HALF_OPEN:
            if link is not None and link.sharing():  # the shared quota decides
                link.probe_done("slow" if slow else "success")
                return
            if slow:
                self._transition(_OPEN, "slow_calls", gen, now=now)
                return
            self._successes += 1
            if self._successes >= self._config.success_threshold:
                self._transition(_CLOSED, "probe_success", gen, now=now)

    def _failed(self, gen: int, started: float, error: BaseException) -> None:
        if gen != self._gen:
            return
        if not self._counted(error):
            self._uncounted(gen)
            return
        link = self._link
        shared_probe = link is not None and link.sharing() and self._state is _HALF_OPEN
        if shared_probe:
            # Read before the report, the reading the local transition takes: a clock failing here leaves the result
            # uncounted (see _unclocked), and the probe is reported once, given back. Read in the transition, after
            # the report, it failed with the failure in Redis (open everywhere) and gave the slot back too: two
            # reports of one probe, and the result said not counted.
            now: float | None = self._clock()
            link.probe_done("failure")  # type: ignore[union-attr]
            self._transition(_OPEN, "probe_failure", now=now)  # at once here; the others follow the notification
        elif self._state is _HALF_OPEN:
            self._transition(_OPEN, "probe_failure", gen)
        elif self._state is _CLOSED:
            now = self._closed_now(FAILED)
            slow_s = self._config.slow_call_s
            slow = slow_s is not None and now is not None and now >= started + slow_s
            if link is not None:
                link.calls += 1
                link.failures += 1
                link.slow += slow
            self._window.record(FAILED | (SLOW if slow else 0), 0.0 if now is None else now)
            self._evaluate(gen, now)
            self._update_clean()

    def _closed_now(self, failed: int) -> float | None:
        """The clock's reading for a result recorded in CLOSED (``failed``: 1 for a failure, 0 for a success), read
        before the result changes anything, and the time of the transition it may cause: a timed breaker's always;
        an untimed one's only when this result could open it (None when it cannot). A clock failing here leaves the
        result uncounted, as the warning says (see _unclocked). Read in the transition, after the window and the
        shared counts had taken the result, it failed with the result counted: the warning said it was not, and the
        next call, a success too, opened the breaker.

        Untimed, the window is a CountWindow: its counts after this result are at most ``failures + failed`` of
        ``min(calls + 1, size)`` calls, and _evaluate can open on nothing higher."""
        w = self._window
        if self._timed or not isinstance(w, CountWindow):
            return self._clock()
        c = self._config
        failures = w.failures + failed
        threshold = c.failure_threshold
        if threshold is not None and failures >= threshold:
            return self._clock()
        rate = c.failure_rate
        if rate is not None:  # on a success with failures in the window (not clean): no min(), no division mostly
            calls = w.calls if w.calls == w.size else w.calls + 1
            if calls >= c.min_calls and failures / calls >= rate:
                return self._clock()
        return None

    def _unclocked(self, gen: int, error: BaseException, call: _Call | None = None) -> None:
        """The clock failed (raised, or read NaN or an infinity) as a call's result was recorded: the operation has
        run, so its outcome is what the caller gets, and the result, which the clock cannot time, is not counted (a
        probe's slot is given back). Logged; only a KeyboardInterrupt & co propagates. Raised, the clock's error
        replaced the result (lost) or the operation's own error."""
        self._uncounted(gen)
        if not isinstance(error, Exception):
            raise error
        _log.warning("the clock of breaker %r failed as a result was recorded; that result is not counted",
                     self._name, exc_info=error)
        clock_logged(call, self._clock)  # the watched call's own warning is not logged again

    def _uncounted(self, gen: int) -> None:
        """An admitted call ended with a result the breaker does not count (cancelled, ignored, or never
        run): a probe gives its slot back, so HALF_OPEN is never left stuck."""
        if gen != self._gen:
            return
        link = self._link
        if link is not None and link.sharing() and self._state is _HALF_OPEN:
            link.probe_done("giveback")
        elif self._state is _HALF_OPEN:
            self._probes_left += 1

    def _update_clean(self) -> None:
        w = self._window
        self._clean = (
            self._state is _CLOSED and not self._timed and isinstance(w, CountWindow) and w.clean
            and self._link is None  # a shared breaker counts every call for the shared window
        )

    def _evaluate(self, gen: int, now: float | None = None) -> None:
        """Open the breaker if its window says so; ``now``: the reading taken before the result was recorded (see
        _closed_now), the transition's time."""
        c, w = self._config, self._window
        reason = None
        if c.failure_threshold is not None and w.failures >= c.failure_threshold:
            reason = "failure_threshold"
        elif w.calls >= c.min_calls:
            # Divided, not `failures >= rate * calls`: 0.07 * 100 is 7.000000000000001, so 7 failures in 100
            # calls never reached failure_rate=0.07 (nor 7 in 50 at 0.14); failures / calls rounds to the
            # very float the rate was written as whenever the two are equal.
            if c.failure_rate is not None and w.failures / w.calls >= c.failure_rate:
                reason = "failure_rate"
            elif c.slow_call_s is not None and w.slow / w.calls >= c.slow_call_rate:
                reason = "slow_calls"
        if reason is not None and self._transition(_OPEN, reason, gen, now=now) and self._link is not None:
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

    def _transition(self, to: BreakerState, reason: str, gen: int | None = None, *, now: float | None = None) -> bool:
        """Change the state and hand the transition to the hooks; whether it changed. ``gen``: the generation a
        call's result decided it in, the change is dropped if another thread changed the state since. ``now``: the
        clock's reading, taken by a caller that must know it can before it acts (else read here)."""
        # Under the lock, hooks included: event loops in several threads sharing the breaker record results
        # without it, and two of them could each decide on one state (both a closed window's failures: the
        # breaker opened twice, the second 'open -> open'), and deliver their transitions to the hooks in
        # another order than they happened (the OTel state series ended at closed -1, half_open 2).
        with self._admitting:
            if gen is not None and gen != self._gen:
                return False
            before = self._state
            if now is None:
                now = self._clock()
            self._state = to
            self._gen += 1
            self._changed_at = now
            if to is _OPEN:
                self._opened_at = now
            elif to is _HALF_OPEN:
                self._probes_left = self._config.half_open_probes
                self._successes = 0
            self._window.reset()
            self._clean = False
            if self._link is not None:  # counts of the closed period that just ended are not sent later
                self._link.calls = self._link.failures = self._link.slow = 0
            self._emit(before, to, reason, now)
            return True

    def _emit(self, before: BreakerState, to: BreakerState, reason: str, now: float) -> None:
        if not self._hooks:
            return
        event = BreakerTransition(self._name, before, to, reason, now)
        # A hook may change the state from inside its breaker_transition (reset(), force_open()): that
        # transition is handed to every hook after this one, never in the middle of it, or the hooks after the
        # one that changed it saw the two in reverse order (a log's last line said open, the breaker was closed).
        delivering = self._delivering
        queue: list[BreakerTransition] | None = getattr(delivering, "queue", None)
        if queue is not None:
            if len(queue) >= _NESTED_TRANSITIONS:  # raised into the hook that made it: isolated, counted, logged
                raise RuntimeError(
                    f"circuit breaker {self._name!r}: its hooks changed its state {len(queue)} times from inside "
                    "breaker_transition, each change causing another; stopped (the state is now "
                    f"{to.value!r}, this transition is not reported)"
                )
            queue.append(event)
            return
        queue = delivering.queue = [event]
        # The state has changed: a hook's error must not make the call fail. A KeyboardInterrupt (SystemExit) a hook
        # raises is raised once every hook was told every transition: it skipped the hooks after that one, which
        # never learnt the breaker had opened (their state series stuck at closed).
        escaped: BaseException | None = None
        try:
            for event in queue:  # grows while it is read: the transitions the hooks made, in order
                try:
                    notify_hooks(self._hooks, self._hooks, self._hooks, "breaker_transition", event)
                except BaseException as exc:
                    escaped = escaped or exc
        finally:
            delivering.queue = None
        if escaped is not None:
            raise_as_is(escaped)
