"""``RedisState``: the connection, scripts, notifications and fault policy shared by every object bound to it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from redis.exceptions import RedisError, ResponseError

from .._events._error import error_message, error_type
from .._telemetry import ERROR_TYPE, SHARED_OPERATION
from .._validate import brief, check_provider, check_telemetry_name, shown
from . import _scripts
from ._slots import Slots

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from ._link import BreakerLink

T = TypeVar("T")
OnUnavailable = Literal["local", "reject"]
_log = logging.getLogger("shannon_otel.redis")
_POLL_BATCH = 500  # breakers read per round trip by the poll
_MAX_CONNECTIONS = 100  # per RedisState (redis-py's default); more concurrent commands wait for one
_FIRST_SLOTS = 8  # commands sent at once by a RedisState started or back from an outage (see Slots)


class SharedStateUnavailableError(ConnectionError):
    """Redis could not be reached in time; raised where ``on_unavailable="reject"`` refuses the call."""


class RedisState:
    """Shared state for breakers, rate limits and pools of many processes, kept in one Redis.

    ``async with RedisState("redis://127.0.0.1:6379/0") as shared:`` then
    ``CircuitBreaker("api", shared=shared)``, ``SharedRateLimit(shared, "api", rate=10)``,
    ``SharedPool(shared, "db", limit=5)``. Entering starts two background tasks (a flusher that sends
    batched outcome counts and polls state, and a subscriber to state changes); leaving stops them.

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, credentials included (ACL user/password).
        prefix: first part of every key and channel (one prefix per application/environment).
        timeout_s: bound on every Redis command (connect, script, publish) once it is sent (commands beyond the open
            connections wait their turn first); a slower answer counts as down.
        flush_interval_s: how often outcome counts of CLOSED breakers are sent (the staleness bound of the
            shared window) and how quickly a tripped breaker's counts reach the others.
        poll_interval_s: state is re-read this often in case a notification was missed (the fallback path).
        key_ttl_s: keys expire after this long without use (abandoned breakers and limits clean up); a
            breaker's keys live at least its ``reset_timeout`` + 1 s, and a forced-open breaker's state
            (``force_open()``) until its reset.
        probe_lease_s: a half-open period whose probes are all taken and none of whose outcomes has
            arrived within this long of its admission lost them (their process died, or Redis lost the
            outcome): once the last probe's lease ran out, the next admission starts a new period. Keep it
            above your slowest probe call.
        on_unavailable: ``"local"`` (fail open: each process goes on with its own local state) or
            ``"reject"`` (fail closed: breakers reject calls, rate limits and pools raise
            :class:`SharedStateUnavailableError`) while Redis cannot be reached. Both recover by themselves.
        meter_provider: where ``shannon.shared.*`` metrics go (the global provider when None).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "shannon",
        timeout_s: float = 0.25,
        flush_interval_s: float = 0.05,
        poll_interval_s: float = 1.0,
        key_ttl_s: int = 86_400,
        probe_lease_s: float = 60.0,
        on_unavailable: OnUnavailable = "local",
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {_redacted(str(url))!r}")
        if url.startswith("unix://") and not urlsplit(url).path.startswith("/"):
            # unix://redis.sock: redis-py connects to "" (an outage saying only "Error 22 connecting to .")
            raise ValueError(f"url's socket path must be absolute (unix:///path/to/redis.sock), got {_redacted(url)!r}")
        if not url.startswith("unix://") and not re.fullmatch(r"/?\d*", urlsplit(url).path):
            # redis-py ignores a database it cannot read as a number and uses 0: a typo would share db 0
            raise ValueError(f"url's path must be /<database number>, got {_redacted(url)!r}")
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in " {}|"):
            raise ValueError(f"prefix must be a non-empty string without spaces, braces or '|', got {prefix!r}")
        check_telemetry_name("prefix", prefix)  # in every key (redis-py encodes them as UTF-8) and a metric attribute
        _check_seconds("timeout_s", timeout_s, high=60)
        _check_seconds("flush_interval_s", flush_interval_s, high=60)
        _check_seconds("poll_interval_s", poll_interval_s, high=3600)
        _check_seconds("probe_lease_s", probe_lease_s, high=86_400)
        if isinstance(key_ttl_s, bool) or not isinstance(key_ttl_s, int) or not 1 <= key_ttl_s <= 365 * 86_400:
            raise ValueError(f"key_ttl_s must be an int in [1, 31536000] seconds, got {key_ttl_s!r}")
        check_provider("meter_provider", meter_provider, "MeterProvider", "get_meter")
        # str first: `in` compares, and an array raised numpy's "truth value of an array is ambiguous", naming nothing
        if not isinstance(on_unavailable, str) or on_unavailable not in ("local", "reject"):
            raise ValueError(f"on_unavailable must be 'local' or 'reject', got {brief(on_unavailable)}")
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self.timeout_s: float = float(timeout_s)
        self.flush_interval_s: float = float(flush_interval_s)
        self.poll_interval_s: float = float(poll_interval_s)
        self.key_ttl_s = key_ttl_s
        self.probe_lease_s: float = float(probe_lease_s)
        self.on_unavailable: OnUnavailable = on_unavailable
        self.available: bool = False
        try:
            # A blocking pool: a command waits for a free connection (within timeout_s, as every call).
            # redis-py's default pool raised MaxConnectionsError at once for the 101st concurrent command,
            # and a wave of 300 tasks on a shared rate limit was taken for a Redis outage.
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=_MAX_CONNECTIONS, timeout=None, socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s, retry_on_timeout=False, decode_responses=True,
            )
            self._redis = aioredis.Redis.from_pool(pool)
        except ValueError as exc:  # redis-py's message names neither the parameter nor the URL
            raise ValueError(f"url is not a valid Redis URL ({exc}): {_redacted(url)!r}") from None
        try:
            # Options of the URL's query go to each connection, made at the first command: an unknown one
            # (`?sockettimeout=1`, a typo) failed every connection, and Redis was an outage for good
            pool.connection_class(**pool.connection_kwargs)  # made, not connected
        except (TypeError, ValueError, RedisError) as exc:  # an unknown option; ?protocol=4, ?ssl_cert_reqs=bogus
            raise ValueError(f"url has an option redis-py does not take ({exc}): {_redacted(url)!r}") from None
        if pool.max_connections < 2:
            # ?max_connections=1: the subscriber holds the one connection for good, every command waited for it
            # until timeout_s, and Redis was an outage from the start (logged as a TimeoutError, nothing else)
            raise ValueError("url's max_connections must be at least 2 (the subscriber to state changes holds "
                             f"one connection), got {pool.max_connections}: {_redacted(url)!r}")
        # Commands sent at once, each timed (timeout_s) from when it has a slot (see Slots): the subscriber holds a
        # connection, the outage check's connect another. All sent at once inside timeout_s, a wave of 300 tasks on a
        # SharedRateLimit of a healthy Redis timed out opening ~100 connections at once: an outage (fail-closed: 5,872
        # tasks of 6,000 failed with SharedStateUnavailableError), and again at each recovery.
        self._slots = Slots(_FIRST_SLOTS, max(1, pool.max_connections - 2))
        self._outages = 0  # outages begun: a command that waited for a slot across one's start is not sent
        # Pub/sub ignores the database: without the number in the channel, a breaker opened in database 0
        # opened the breaker of that name and prefix in every other database too (until their poll closed
        # it again). Database 0 keeps the plain names (the ones processes of earlier versions use).
        db = int(pool.connection_kwargs.get("db") or 0)
        suffix = f":db{db}" if db else ""
        self.breaker_channel: str = f"{prefix}:breakers{suffix}"
        self.pool_channel: str = f"{prefix}:pools{suffix}"
        self._scripts = {
            name: self._redis.register_script(getattr(_scripts, name))
            for name in (
                "FLUSH", "ACQUIRE", "GIVEBACK", "PROBE", "TRANSITION", "RATE", "POOL_ACQUIRE", "POOL_RELEASE", "ALIVE",
            )
        }
        self._alive_key = f"{prefix}:{{alive}}"
        self._links: dict[str, BreakerLink] = {}
        # Each pool name's event for its waiters' next wake-up: a wake-up sets it and a new one takes its place, so
        # a waiter that took it before asking Redis sees a release made while its answer was on its way (see
        # _wake_pools). Cleared by each waiter instead, one waiter woken first cleared it under another, which missed
        # the release and waited for the next poll with a slot free.
        self._pool_events: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[Any]] = set()
        self._stopping: set[asyncio.Future[Any]] = set()  # commands given up (see _abandon), not ended yet
        # Admissions whose caller never got the answer (timed out, cancelled): Redis may still run them later (a
        # paused or slow server runs what was already sent), leaving a pool lease nobody releases for lease_s, a
        # half-open probe slot nobody gives back for probe_lease_s. Given back (idempotent scripts: script name,
        # keys, args) on the next poll with Redis available (after anything sent before the outage has run).
        self._lost: list[tuple[str, list[str], list[Any]]] = []
        self._outage_logged = False
        # What the outage under way is (the server's answer: a wrong password, OOM, a read-only replica, a timeout),
        # named by the errors raised during it: "outage under way" alone did not say a password was wrong.
        self._outage_cause = ""
        # Objects whose keys were found unusable (warned once each): the first key of the object (a breaker's state,
        # a bucket, a pool's holders) -> every key of the commands that failed on it. Mended when a command on all
        # of those keys succeeds: the poll reads a breaker's state alone, and with its window key of another type
        # took it as mended at each poll, and the next flush warned again (a warning every poll_interval_s).
        self._bad_keys: dict[str, frozenset[str]] = {}
        self._refused = False  # the outage is a server refusing writes (it answers: only a write ends it)
        self._closing = False
        self._instruments(meter_provider)

    def _instruments(self, meter_provider: MeterProvider | None) -> None:
        from .._otel._providers import provider_state

        # The provider's one set of shared-state instruments: its availability gauge reports every
        # RedisState of the provider (a gauge per state: the SDK kept the first only).
        self._telemetry = provider_state(meter_provider).shared_telemetry(meter_provider)
        self._errors = self._telemetry.errors
        self._duration = self._telemetry.duration

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> RedisState:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (a Redis that is down is not an error: the fault policy applies until it is back)."""
        if self._tasks:
            raise RuntimeError("RedisState is already started")
        if self._closing:  # its background tasks would stop at once: nothing shared, silently
            raise RuntimeError("this RedisState was closed; make a new RedisState (one per event loop)")
        # On the availability gauge while open (a state made and not started, 0, hid its prefix's others: see
        # SharedTelemetry._observe)
        self._telemetry.watch(self)
        with contextlib.suppress(SharedStateUnavailableError):
            await self._check()
            for link in list(self._links.values()):  # force_open() or reset() made before the loop ran
                if not self.available:
                    break
                with contextlib.suppress(SharedStateUnavailableError):  # an unusable key: that breaker's alone
                    await link.started()
            await self._poll()  # breakers made before start: the shared state now, not at the first poll
        # In a context of their own, empty: created in the caller's, they applied every later state change (a breaker
        # opened by another process) with the caller's current span, baggage and context variables of the moment it
        # called start(): its hooks saw them, the OTel hook added the transition to that (unrelated) span.
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="shannon-redis-flush", context=contextvars.Context()),
            asyncio.create_task(self._subscribe_loop(), name="shannon-redis-subscribe", context=contextvars.Context()),
        ]

    async def close(self) -> None:
        """Send what is pending (bounded by ``timeout_s``), stop the background tasks, close the connection;
        ``shannon.shared.available`` stops reporting this state."""
        self._closing = True
        self._telemetry.forget(self)
        self._wake_pools()  # waiters of full pools: nothing would wake them any more (they raise, see SharedPool)
        if self._pending:  # state pushes already under way (a trip, a probe result) finish first, bounded
            await asyncio.wait(list(self._pending), timeout=max(1.0, 4 * self.timeout_s))
        with contextlib.suppress(Exception):
            await self._flush_all()
        if self._lost:
            # Tried even in an outage (bounded: it stops at the first timeout): a process that closed between
            # Redis resuming and its next poll left the slots of its timed-out admissions taken in every other
            # process, a half-open breaker's probe for probe_lease_s (60 s), a pool's lease for lease_s (300 s).
            with contextlib.suppress(Exception):
                await self._give_back_lost()
        tasks = [*self._tasks, *self._pending]
        for task in tasks:
            task.cancel()
        if tasks or self._stopping:  # and the commands given up, cancelled already (see _abandon)
            # Bounded: a client library that swallows a cancellation must not hang the caller's exit.
            _, stuck = await asyncio.wait([*tasks, *self._stopping], timeout=max(1.0, 4 * self.timeout_s))
            for left in stuck:
                name = left.get_name() if isinstance(left, asyncio.Task) else repr(left)
                _log.warning("Redis background task %r did not stop in time; left behind", name)
        self._tasks = []
        with contextlib.suppress(Exception):
            async with asyncio.timeout(max(1.0, 4 * self.timeout_s)):
                await self._redis.aclose()

    # ------------------------------------------------------------------ calling Redis
    async def _run(
        self, operation: str, command: Callable[[], Awaitable[T]], keys: list[str] | None = None, *,
        writes: bool = True,
    ) -> T:
        """Run one command (on ``keys``) within ``timeout_s`` of its slot (see Slots: waiting for one is local, and
        ends at once, unsent, when an outage begins meanwhile); any failure raises
        :class:`SharedStateUnavailableError` and marks Redis unavailable, except a key that holds what the
        scripts cannot use (see _unusable_key). A success of a command that ``writes`` (every script) marks it
        available again. A cancelled caller gets its own CancelledError (its message included), whatever the
        client library does (see below)."""
        outages = self._outages
        await self._slots.acquire()  # local: other commands of this process ahead of it (each bounded by timeout_s)
        try:
            if self._outages != outages and self._in_outage():
                # An outage began while it waited: not sent (it would wait timeout_s too), as a call made now is not
                raise SharedStateUnavailableError(
                    f"Redis unavailable during {operation} (outage under way: {self._outage_cause})")
            result = await self._send(operation, command, keys, writes=writes)
        finally:
            self._slots.release()
        self._slots.answered()
        return result

    async def _send(
        self, operation: str, command: Callable[[], Awaitable[T]], keys: list[str] | None, *, writes: bool,
    ) -> T:
        """``_run``'s command, a connection's worth of it: sent and bounded by ``timeout_s``."""
        start = time.perf_counter()
        # The command runs in a task of its own, waited for (never cancelling the caller): the caller's own
        # cancellation is raised here by asyncio, with its message, whatever redis-py does. Awaited directly within
        # asyncio.timeout, redis-py now and then swallowed it and returned the answer (3.11's wait_for, around its
        # socket writes: 1 cancel in 3 landing mid-call), and the caller got a bare CancelledError raised in its
        # place; a cancel landing with the timeout was the timeout's, bare too (task.cancel("why")'s "why" lost).
        call = asyncio.ensure_future(command())
        try:
            done, _ = await asyncio.wait((call,), timeout=self.timeout_s)
            if not done:
                raise TimeoutError
            result = call.result()
        except (Exception, TimeoutError) as exc:  # redis errors, OSError, timeouts
            self._abandon(call)
            self._errors.add(1, {SHARED_OPERATION: operation, ERROR_TYPE: error_type(exc)})
            if keys and _unusable_key(exc):
                self._bad_key(keys, operation, exc)
                raise SharedStateUnavailableError(
                    f"Redis key {_named(keys)} is unusable during {operation}: {_described(exc)}") from exc
            self._down(exc)
            raise SharedStateUnavailableError(f"Redis unavailable during {operation}: {_described(exc)}") from exc
        except BaseException:  # the caller cancelled: its command stops (redis-py drops the connection)
            self._abandon(call)
            raise
        if self._bad_keys and keys:
            self._mended(keys)
        self._duration.record(time.perf_counter() - start, {SHARED_OPERATION: operation})
        if not self.available and not self._refused and writes:
            # Redis answers again (a refusal ends only with the write check: see _check). A read answered (the poll)
            # ends nothing: a server pausing writes (CLIENT PAUSE WRITE, as a failover does) answers reads and
            # times out every script; ended by the poll, the outage began again at the next script, warned each
            # poll_interval_s, and a fail-closed breaker closed and re-opened with it.
            self._up()
        return result

    def _abandon(self, call: asyncio.Future[Any]) -> None:
        """Stop a command whose caller no longer waits for it (cancelled, timed out); ``close()`` waits for its end.
        One that ended already (its caller cancelled in the step it ended) has its error retrieved: asyncio logged
        it as "never retrieved", an error no caller was told of."""
        if call.done():
            self._stopped(call)
            return
        call.cancel()
        self._stopping.add(call)
        call.add_done_callback(self._stopped)

    def _stopped(self, call: asyncio.Future[Any]) -> None:
        self._stopping.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: the caller was told (its own cancellation, or the timeout)

    async def _check(self) -> None:
        """Find Redis available (and say so) when it runs a script that writes: a server that answers but
        refuses writes (OOM with noeviction, a READONLY replica, an ACL user without EVAL or without the
        channels) is not back, so such an outage ends only here (any other command that succeeds ends one of
        a server that did not answer, see _run)."""
        # Publishing costs every subscriber a message: only when Redis is not known to be available (at start,
        # during an outage), not at the idle poll's check.
        keys = [self._alive_key]
        channels = [] if self.available else [self.breaker_channel, self.pool_channel]
        await self._run("ping", lambda: self._scripts["ALIVE"](keys=keys, args=channels))
        if not self.available:
            self._up()

    async def _connect(self) -> None:
        """Open a connection for the outage check, bounded by ``max(1, 4 * timeout_s)`` rather than ``timeout_s``:
        a new connection's set-up (TCP, ``HELLO``, ``CLIENT SETINFO`` twice) is several round trips, and a call
        that times out drops its connection. Made inside the check's ``timeout_s`` with the script load after a
        restart, it needed ~7 round trips: a Redis 50 ms away with the default 0.25 s was never found available
        again. The connection stays in the pool for the check. Its errors are the check's to report."""
        call = asyncio.ensure_future(self._redis.ping())
        try:
            await asyncio.wait((call,), timeout=max(1.0, 4 * self.timeout_s))
        finally:
            # ended: its error, if any, retrieved (the check that follows meets it and reports it); else stopped, and
            # close() waits for it (cancelled here by close(), it was left running: its error never retrieved)
            self._abandon(call)

    def _script(self, name: str, keys: list[str], args: list[Any], owned: int | None = None) -> Awaitable[Any]:
        """Run script ``name``; a key it finds unusable is blamed on its object's keys (``keys[:owned]``: not the
        key of one admission's token, which no later command names, so the object would never be found mended)."""
        return self._run(name.lower(), lambda: self._scripts[name](keys=keys, args=args), keys[:owned])

    def _lost_admission(self, script: str, keys: list[str], args: list[Any]) -> None:
        """An admission whose answer never came (timed out, cancelled) may have taken (or may still take) a pool
        slot or a probe slot: ``script`` gives it back at the next poll with Redis available."""
        self._lost.append((script, keys, args))

    def _bad_key(self, keys: list[str], operation: str, exc: BaseException) -> None:
        """One key holds what the scripts cannot use (another type, a value that is no number): an
        operator's write, another program on the prefix. Only the breaker, limit or pool of that key applies
        ``on_unavailable``; Redis is not down for the others (a store-wide outage made every breaker reject,
        fail-closed, and flapped twice a second, as the write check succeeded). Warned once per key."""
        known = self._bad_keys.get(keys[0])
        self._bad_keys[keys[0]] = frozenset(keys) | (known or frozenset())
        if known is None:
            for link in self._links.values():
                if link.keys[0] == keys[0] and self.on_unavailable == "local":
                    # Its shared half-open period's probes were Redis's: local ones now (see BreakerLink.unavailable);
                    # with none, it rejected every call while HALF_OPEN, fail-closed, until the key was deleted.
                    link.unavailable()
            _log.warning("Redis key %s holds a value shannon-otel cannot use (%s during %s); %s for its breaker, "
                         "limit or pool until it is deleted", _named(keys), _described(exc), operation,
                         "local state takes over" if self.on_unavailable == "local" else "rejecting calls")

    def _mended(self, keys: list[str]) -> None:
        """A command on ``keys`` succeeded: their object is usable again if they are all the keys that failed
        (deleted, expired, rewritten by a script: warned again if it breaks again)."""
        bad = self._bad_keys.get(keys[0])
        if bad is not None and bad <= set(keys):
            del self._bad_keys[keys[0]]

    def _background(self, operation: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``operation`` without waiting for it (state pushes); its failure is already counted.

        In an empty context, as the background loops: it outlives the call that started it, and the shared state it
        reads back is applied to the breaker (hooks called, the OTel hook adding the transition to the current span)
        when it arrives, not in that call's context (its span, baggage and context variables)."""
        if asyncio.iscoroutine(operation):
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(operation, context=contextvars.Context())
        else:
            task = asyncio.ensure_future(operation)
        self._pending.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: SharedStateUnavailableError was counted and logged

    def _down(self, exc: BaseException) -> None:
        was = self.available
        self.available = False
        if was or not self._outage_logged:
            self._outages += 1
            self._slots.lost()
            self._refused = isinstance(exc, ResponseError)
            self._outage_cause = _described(exc)
            self._outage_logged = True
            _log.warning("Redis at %s unavailable (%s); %s", _redacted(self.url), self._outage_cause,
                         "local state takes over" if self.on_unavailable == "local" else "rejecting calls")
            for link in self._links.values():
                link.unavailable()
            # Waiters of a full shared pool apply on_unavailable now: nothing else wakes them during the
            # outage (the poll that sets these events needs Redis), so they waited for its whole length.
            self._wake_pools()

    def _in_outage(self) -> bool:
        """Redis was found unavailable and has not answered since."""
        return not self.available and self._outage_logged

    def _up(self) -> None:
        self.available = True
        self._outage_logged = False
        _log.info("Redis at %s available", _redacted(self.url))

    # ------------------------------------------------------------------ keys and links
    def _check_open(self) -> None:
        """Raise for a closed state given to a breaker, rate limit or pool: its flusher and subscriber are
        gone, so nothing another process changes would ever arrive (a breaker bound to one shared its own trips,
        silently, and never saw the others')."""
        if self._closing:
            raise ValueError("shared is a closed RedisState; make a new RedisState (one per event loop)")

    def _key(self, kind: str, name: str, part: str) -> str:
        return f"{self.prefix}:{{{kind}:{name}}}:{part}"

    def _bind(self, link: BreakerLink) -> None:
        if link.name in self._links:
            raise ValueError(f"a breaker named {link.name!r} is already bound to this RedisState")
        self._links[link.name] = link

    def _pool_event(self, name: str) -> asyncio.Event:
        """The event the next wake-up of pool ``name``'s waiters sets: taken before asking Redis for a slot."""
        return self._pool_events.setdefault(name, asyncio.Event())

    def _wake_pools(self, name: str | None = None) -> None:
        """Wake the waiters of pool ``name`` (every pool when None): its event is set and let go."""
        if name is None:
            events, self._pool_events = self._pool_events, {}
            for event in events.values():
                event.set()
        elif name in self._pool_events:
            self._pool_events.pop(name).set()

    # ------------------------------------------------------------------ background
    async def _flush_all(self) -> None:
        for link in list(self._links.values()):
            if not self.available:  # down (maybe at the last flush): each other link would wait timeout_s too
                return
            await link.flush()

    async def _flush_loop(self) -> None:
        next_poll = time.monotonic() + self.poll_interval_s
        while not self._closing:
            await asyncio.sleep(self.flush_interval_s if self.available else min(1.0, self.poll_interval_s))
            try:
                if not self.available:
                    await self._connect()
                    await self._check()
                    await self._poll()  # recovered: take the shared state again
                await self._flush_all()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_interval_s
                    await self._poll()
                    if not self._links:  # no breaker state was read: `available` (and its gauge) kept true
                        await self._check()
            except SharedStateUnavailableError:
                continue

    async def _give_back_lost(self) -> None:
        """Give back what admissions whose answer never came may have taken (see ``_lost``); raises
        SharedStateUnavailableError at the first that Redis does not take (the rest are kept for next time)."""
        lost, self._lost = self._lost, []
        for i, (script, keys, args) in enumerate(lost):
            try:
                await self._script(script, keys, args, 1)
            except SharedStateUnavailableError:
                if self.available:
                    continue  # an unusable key (_bad_key): it holds no lease, and would stop every poll
                self._lost.extend(lost[i:])  # down again: the next poll tries again
                raise

    async def _poll(self) -> None:
        await self._give_back_lost()
        links = list(self._links.values())
        for start in range(0, len(links), _POLL_BATCH):
            await self._poll_links(links[start:start + _POLL_BATCH])
        self._wake_pools()  # waiters of shared pools try again (a missed release notification)

    async def _poll_links(self, links: list[BreakerLink]) -> None:
        """Read the state of ``links`` in one round trip (one per breaker made a poll of 2,000
        breakers take ~0.7 s, and the flusher stalled as long)."""

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()
                for link in links:
                    pipe.hmget(link.keys[0], "state", "epoch", "opened_at", "reason")
                # One breaker's unusable key is that breaker's (an error in its place), not every breaker's;
                # any other error is the server's (an outage, as a command's).
                results = list(await pipe.execute(raise_on_error=False))
            for result in results:
                if isinstance(result, Exception) and not _unusable_key(result):
                    raise result
            return results

        held = [link.epoch for link in links]  # before the read is sent: a state taken since is newer than it
        (seconds, micros), *states = await self._run("poll", read, writes=False)
        if not self.available:
            # Found unavailable (before the read, or while it was on its way): on_unavailable holds until the write
            # check ends the outage. Taken, the state read undid it: a fail-closed breaker closed (reason
            # shared_state_available) while every write to Redis timed out.
            return
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        for link, epoch, fields in zip(links, held, states, strict=True):
            try:
                if isinstance(fields, Exception):
                    raise fields
                link.polled(now_ms, fields, epoch)
                if self._bad_keys:
                    self._mended(link.keys[:1])
            except (ResponseError, ValueError, KeyError) as exc:  # another type; a state or epoch no script wrote
                self._errors.add(1, {SHARED_OPERATION: "poll", ERROR_TYPE: error_type(exc)})
                self._bad_key(link.keys[:1], "poll", exc)

    async def _subscribe_loop(self) -> None:
        refused = False
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.breaker_channel, self.pool_channel)
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        try:
                            self._dispatch(str(message["channel"]), str(message["data"]))
                        except (ValueError, KeyError):  # not ours (another writer, another version)
                            _log.debug("ignored a malformed message on %r: %r", message["channel"], message["data"])
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())
                raise
            except Exception as exc:  # connection lost: the poll keeps state current meanwhile
                if isinstance(exc, ResponseError) and self.available and not refused:
                    # Refused, not lost (an ACL user without SUBSCRIBE): said once, as an outage is (whose own
                    # warning says why); at debug level only, breakers opened elsewhere came here at the poll,
                    # silently, not in ms.
                    refused = True
                    _log.warning("Redis at %s refuses the subscription to %r (%s); changes made by other "
                                 "processes arrive only with the poll, every %g s", _redacted(self.url),
                                 self.breaker_channel, _described(exc), self.poll_interval_s)
                _log.debug("Redis subscription lost (%r); resubscribing", exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(min(1.0, self.poll_interval_s))

    def _dispatch(self, channel: str, data: str) -> None:
        if not data:  # the write check's (_check)
            return
        if channel == self.pool_channel:
            self._wake_pools(data)
            return
        name, state, epoch, opened_ms, now_ms, reason = data.rsplit("|", 5)
        link = self._links.get(name)
        if link is not None:
            link.apply(state, int(epoch), int(opened_ms), int(now_ms), reason)


def _check_seconds(name: str, value: object, *, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise ValueError(f"{name} must be a number of seconds in (0, {high:g}], got {shown(value)}")


def _unusable_key(exc: BaseException) -> bool:
    """The server refused a command for what one key holds (``WRONGTYPE``, a hash field that is no integer, or
    a script that could not read a value: a Lua error, ``user_script:<line>: ...``), not for its own state or
    the user's rights (OOM, READONLY, NOPERM, a channel the ACL user may not publish to: all of them arrive
    from inside a script too, as ``<message> script: <sha>, on @user_script:<line>.``)."""
    return type(exc) is ResponseError and str(exc).startswith(("WRONGTYPE", "hash value is not", "user_script:"))


def _named(keys: list[str]) -> str:
    """The keys a script was given (a breaker's state and window: either may be the one at fault)."""
    return " or ".join(repr(key) for key in keys)


def _described(exc: BaseException) -> str:
    """The error's class and the server's message (redis-py's repr, e.g. ``server:OutOfMemoryError``,
    leaves out the message that says what is wrong: "OOM command not allowed...", "NOPERM..."), quoted
    (``repr``): the server's text, in a log line or an exception's message, is one printable line."""
    kind, message = str(error_type(exc)), error_message(exc)
    return f"{kind}: {message!r}" if message else kind


def _redacted(url: str) -> str:
    """The URL without its password, in the user part or the query (never logged)."""
    url = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
