"""``BreakerLink``: one breaker's side of the shared state (its local copy, counts to send, probe admission).

The breaker keeps running its own state machine; the link keeps it in step with Redis:

- CLOSED success path: the breaker adds to ``calls``/``failures``/``slow`` (three integer adds, no
  Redis round trip); the store's flusher sends them every ``flush_interval_s`` with one script that
  adds them to the shared rolling window and opens the breaker for everyone when it trips.
- A breaker whose own window trips opens at once locally and tells Redis (``trip``).
- Outside CLOSED, admission asks Redis (the half-open probe quota is cluster-wide), except while the
  local copy of OPEN is still inside its reset timeout (rejected locally, no round trip).
- Every shared change is published; :meth:`apply` moves the local breaker to it (and reports the
  transition to the breaker's hooks, as a local one). A missed message is caught by the poll.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

from .._telemetry import SHARED_STATE_AVAILABLE, SHARED_STATE_EXPIRED, SHARED_STATE_UNAVAILABLE, BreakerState
from ._store import SharedStateUnavailableError

if TYPE_CHECKING:
    from ..recovery._breaker import CircuitBreaker
    from ..recovery._breaker_config import BreakerConfig
    from ..recovery._call import _Call
    from ._store import RedisState

_log = logging.getLogger("shannon_otel.redis")
_STATES = {s.value: s for s in BreakerState}
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
# A process rejected while HALF_OPEN's quota is taken asks Redis again after this long, not per call.
_HALF_OPEN_RECHECK_S = 0.05
_MAX_TTL_S = 365 * 86_400  # key_ttl_s's own bound
# Durations go to the scripts in ms, at most this (~285,000 years: never, for a breaker; an integer the scripts'
# doubles hold exactly). A reset_timeout or window_s of inf or over ~1.8e305 s (both accepted, as locally) was an
# int(inf): OverflowError out of the user's call (or the breaker's construction) instead of a breaker that never
# resets by time (never drops a call from its window), as the local one does.
_MAX_MS = 2**53


class BreakerLink:
    __slots__ = (
        "breaker", "calls", "deferred", "epoch", "failures", "flush_keys", "keys", "mismatch_told", "name",
        "outage_gen", "pushes", "rejected_at", "sending", "settings", "slow", "store", "ttl_s", "unclocked", "unsent",
        "window",
    )

    def __init__(self, store: RedisState, breaker: CircuitBreaker) -> None:
        store._check_open()
        c = breaker.config
        self.store = store
        self.breaker = breaker
        self.name = breaker.name
        self.keys = [store._key("breaker", breaker.name, "state"), store._key("breaker", breaker.name, "window")]
        self.epoch = 0
        self.calls = self.failures = self.slow = 0  # counted locally, not yet sent
        self.rejected_at = -math.inf  # when Redis last said no while HALF_OPEN (the breaker's clock)
        # Changes made here (a trip, a probe's outcome, force_open, reset) not answered by Redis yet: until
        # then a poll, a flush or a message of the epoch already held is older than the local state.
        self.sending = 0
        # Those changes' sends, still running: an admission waits for them (each bounded by timeout_s). Asked
        # first, Redis answered from the state of before them: a call made right after a successful probe (or an
        # ignored or cancelled one, which gives its slot back) was rejected, the probe's outcome not yet there.
        self.pushes: set[asyncio.Future[Any]] = set()
        # The newest shared state that came while changes made here were on their way (see ``apply``): taken after
        # the last one's answer, if newer than it.
        self.deferred: tuple[str, int, int, int | None, str] | None = None
        # The last transition made here (a trip, force_open, reset) that Redis did not take (down, or timed out):
        # sent again when Redis is back, instead of taking the shared state of before it. A trip made while
        # Redis was away was undone by the first poll after it came back: the shared CLOSED (or no state) of
        # before the trip closed a breaker whose dependency was failing, long before its reset timeout.
        self.unsent: tuple[str, str] | None = None
        # The breaker's generation when an outage opened it (on_unavailable="reject"): while it is still that OPEN,
        # no shared state holds it open, and the first one taken when Redis answers again ends it because Redis is
        # reachable (shared_state_available). Before, it closed as `shared_state_expired` (nothing had expired) or
        # with the reason of the state from before the outage (a `reset` or `probe_success` nobody made then).
        self.outage_gen: int | None = None
        # The clock's error as an admission's answer was taken (see _admitted): raised by the admission.
        self.unclocked: Exception | None = None
        # The shared window is time-based: 10 slices over window_s (default: 10 s when the breaker counts
        # calls): "the last N calls" of many processes has no order without a round trip per call.
        window_s = c.window_s if c.window_s is not None else 10.0
        slices = 10
        self.window = [
            max(1, round(min(window_s * 1000 / slices, _MAX_MS))), slices,
            -1 if c.failure_threshold is None else c.failure_threshold,
            -1 if c.failure_rate is None else c.failure_rate,
            c.min_calls,
            -1 if c.slow_call_s is None else c.slow_call_rate,
        ]
        # The keys live at least as long as the state needs them: an OPEN breaker is rejected locally, with no
        # write, for its whole reset timeout; with key_ttl_s shorter, its state expired meanwhile and the next
        # poll closed it everywhere (shared_state_expired), long before its reset timeout.
        needed = min(c.reset_timeout, _MAX_TTL_S)
        self.ttl_s = max(store.key_ttl_s, math.ceil(needed) + 1)
        # What this process judges the shared breaker by, sent with each flush (its own key): a process of the same
        # name and other settings is warned once (each judges the shared window by its own thresholds; nothing said
        # so before, and a process with a lower failure_threshold opened the breaker for all, unexplained).
        self.settings = settings_text(c, window_s)
        self.flush_keys = [*self.keys, store._key("breaker", breaker.name, "settings")]
        self.mismatch_told = False
        store._bind(self)

    def _args(self, *args: Any) -> list[Any]:
        return [self.ttl_s, self.store.breaker_channel, self.name, *args]

    def sharing(self) -> bool:
        """Redis decides for this breaker: it is available, and this breaker's state key is usable (a key
        holding what no script wrote fails this breaker alone, see ``RedisState._bad_key``: its local state
        machine takes over, as in an outage, until its keys are found usable again)."""
        return self.store.available and self.keys[0] not in self.store._bad_keys

    # ------------------------------------------------------------------ from the breaker
    async def admit(self, call: _Call | None) -> int:
        """Admit a call outside CLOSED (returns the breaker generation) or raise CircuitOpenError."""
        b = self.breaker
        if not self.sharing():
            if self.store.on_unavailable == "reject":
                b._reject(call, None)
            return b._admit(call)  # local state takes over
        now = b.clock()
        if b._state is _OPEN:
            remaining = b._reset_left(now)  # as the local breaker measures it (the clock going back too)
            if b._forced or remaining > 0:
                b._reject(call, None if b._forced else remaining)
        elif b._state is _HALF_OPEN and 0.0 <= now - self.rejected_at < _HALF_OPEN_RECHECK_S:
            # told no less than the recheck interval ago: not asked again yet. Told no "later" than now, the clock
            # went back (an injected one stepped): asked now, or every call was rejected here for the whole step (a
            # day back: a day). Measured from the reading, not to a stored `reading + 0.05`: `recheck_at - now` of
            # the same reading rounded above 0.05 at most readings, and every call of that instant asked Redis.
            b._reject(call, None)
        if self.pushes:
            await asyncio.wait(set(self.pushes))  # never cancels them; each is bounded by timeout_s
            if b._state is _CLOSED and self.sharing():  # a probe's success sent just before closed it
                return b._gen
        # This admission's own key: a probe slot it took is recorded there, so a caller that never got the answer
        # gives that slot back (GIVEBACK), even when the ACQUIRE runs only after the give-back.
        keys = [self.keys[0], self.store._key("breaker", self.name, f"admission:{uuid.uuid4().hex}")]
        lease_ms = int(self.store.probe_lease_s * 1000)
        reset_ms = int(min(b.config.reset_timeout * 1000, _MAX_MS))
        try:
            verdict, epoch, remaining_ms, now_ms, opened_ms, why = await self.store._script(
                "ACQUIRE", keys, self._args(reset_ms, b.config.half_open_probes, lease_ms), 1,
            )
        except asyncio.CancelledError:  # answered or not, the script may have run (or still run): its slot comes back
            self.store._lost_admission("GIVEBACK", keys, self._args(lease_ms))
            self.store._background(self.store._script("GIVEBACK", keys, self._args(lease_ms), 1))
            raise
        except SharedStateUnavailableError as exc:
            if exc.__cause__ is not None:  # sent (timed out, connection lost): it may still run later
                self.store._lost_admission("GIVEBACK", keys, self._args(lease_ms))
            if self.store.on_unavailable == "reject":
                b._reject(call, None)
            return b._admit(call)
        epoch = int(epoch)
        if verdict == "closed":  # closed elsewhere (a probe's success, a reset), the notification not here yet
            return self._admitted("closed", epoch, int(opened_ms), int(now_ms), str(why), probe=False)
        if verdict == "probe":
            return self._admitted("half_open", epoch, int(opened_ms), int(now_ms), str(why) or "reset_timeout",
                                  probe=True)
        # Rejected with no time left: a half-open period's probes all taken, or forced open (elsewhere, its
        # notification missed or on its way: taken as half-open, the breaker stayed HALF_OPEN, not forced, and asked
        # Redis again at every recheck).
        state = "open" if int(remaining_ms) > 0 or b._state is _OPEN or why == "forced_open" else "half_open"
        self._admitted(state, epoch, int(opened_ms), int(now_ms), str(why), probe=False)
        if b._state is _HALF_OPEN:
            self.rejected_at = b.clock()
        b._reject(call, int(remaining_ms) / 1000 if int(remaining_ms) > 0 else None)
        raise AssertionError  # unreachable: _reject raises

    def _admitted(self, state: str, epoch: int, opened_ms: int, now_ms: int, why: str, *, probe: bool) -> int:
        """Take the shared state Redis answered an admission with (``probe``: it admitted this call as a probe);
        returns the breaker's generation.

        The breaker's clock failing as the state is taken (raises, reads NaN or an infinity) fails before the user's
        call runs: the state is taken all the same (timed at the breaker's last reading, see ``_now``), a probe slot
        the call took is given back, and the call is refused with the clock's error, as the local breaker refuses a
        call whose admission cannot read its clock. The error was logged and the call admitted: its result, read on
        the same failing clock, logged a second warning in the same call (or was refused then, the first warning
        saying the state was taken)."""
        b = self.breaker
        self.unclocked = None
        self.apply(state, epoch, opened_ms, now_ms, why, admission=True)
        error, self.unclocked = self.unclocked, None
        if error is not None:
            if probe:
                b._uncounted(b._gen)  # the slot Redis gave this call comes back
            raise error
        return b._gen

    def probe_done(self, outcome: str) -> None:
        """A half-open probe ended: ``success``, ``slow``, ``failure`` or ``giveback`` (cancelled/ignored)."""
        if self.sharing():
            self._push("PROBE", outcome, self.epoch, self.breaker.config.success_threshold)

    def tripped(self, reason: str) -> None:
        """This process's own window opened the breaker: open it for everyone."""
        self._push("TRANSITION", "trip", reason)

    def forced(self) -> None:
        self._push("TRANSITION", "force", "forced_open")

    def reset(self) -> None:
        self.calls = self.failures = self.slow = 0
        self._push("TRANSITION", "reset", "reset")

    def _push(self, script: str, *args: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # force_open() or reset() before the loop runs (at import): a task made now belonged to a loop that
            # never ran it (a coroutine never awaited; the state's close waited for it, then said it was "left
            # behind"), and the shared state read at start undid the transition. Sent by the state's start.
            if script == "TRANSITION":
                self.unsent = (str(args[0]), str(args[1]))
            return
        self.sending += 1
        # Sent after this breaker's earlier sends (each bounded by timeout_s), so they reach Redis in the order
        # they were made: sent at once, on two connections, force_open(); reset() could run there reset first,
        # and leave the breaker open everywhere that the user had just closed.
        push = self.store._background(self._send(script, *args, after=set(self.pushes)))
        self.pushes.add(push)
        push.add_done_callback(self.pushes.discard)

    async def started(self) -> None:
        """The state starts (before it reads the shared state): a transition made here before the loop ran is
        sent now; it is newer than anything this process read."""
        if self.unsent is not None:
            self.sending += 1
            await self._send("TRANSITION", *self.unsent)

    async def _send(self, script: str, *args: Any, after: set[asyncio.Future[Any]] | None = None) -> None:
        try:
            if after:
                await asyncio.wait(after)  # never cancels them; each is bounded by timeout_s
            state, epoch, opened_ms, now_ms, why = await self.store._script(script, self.keys, self._args(*args))
        except SharedStateUnavailableError:
            if script == "TRANSITION":
                self.unsent = (str(args[0]), str(args[1]))
            raise
        finally:
            self.sending -= 1
            deferred = None
            if not self.sending:
                # Not taken when this send failed: older than a change made here that Redis has not taken (unsent)
                deferred, self.deferred = self.deferred, None
        if script == "TRANSITION":
            self.unsent = None  # taken (this one, or a later one, which supersedes it)
        self.apply(str(state), int(epoch), int(opened_ms), int(now_ms), str(why))
        if deferred is not None:
            self.apply(*deferred)

    # ------------------------------------------------------------------ from the store
    async def flush(self) -> None:
        """Send the counts gathered since the last flush (the store's flusher calls this)."""
        if not (self.calls or self.failures or self.slow):
            return
        calls, failures, slow = self.calls, self.failures, self.slow
        self.calls = self.failures = self.slow = 0
        try:
            state, epoch, opened_ms, now_ms, why, theirs = await self.store._script(
                "FLUSH", self.flush_keys, self._args(calls, failures, slow, *self.window, self.settings),
            )
        except SharedStateUnavailableError:
            return  # dropped: the window is an estimate, and Redis being down is counted and logged
        if theirs and theirs != self.settings and not self.mismatch_told:
            self.mismatch_told = True
            _log.warning(
                "shared breaker %r (prefix %r) is also used by a process with other settings (%s); each applies its "
                "own to the shared state (docs/shared-state.md, Deployment, says how): give every process one "
                "configuration",
                self.name, self.store.prefix, settings_difference(self.settings, str(theirs)))
        self.apply(str(state), int(epoch), int(opened_ms), int(now_ms), str(why))

    async def poll(self) -> None:
        """Read the shared state (missed notifications, recovery after an outage)."""
        await self.store._poll_links([self])

    def polled(self, now_ms: int, fields: list[Any], held: int) -> None:
        """Apply the shared state read by a poll: ``fields`` = HMGET state, epoch, opened_at, reason; ``held``: the
        epoch this process held when the poll was sent."""
        state, epoch, opened, reason = fields
        if state is None:  # never written, or expired: CLOSED with an empty window
            if self.epoch != held:
                # A shared state was taken here since the poll was sent (the answer to this process's trip, another
                # process's notification): the poll read Redis before that state was written, and "no state" is
                # older than it (it has no epoch to say so). Closed, a breaker that had just opened everywhere stayed
                # closed here until the next poll, and a call it admitted meanwhile ran on as if it were closed.
                return
            if self.breaker._forced:
                # Forced here, lost there (FLUSHALL, a restart without persistence, a key written with a TTL
                # before forced keys stopped expiring): written again, else a process started now saw CLOSED
                # what this one holds open until a reset.
                self.forced()
            elif self._resend():
                return
            elif self.breaker._state is not _CLOSED and not self.sending:  # not a state made here, not sent yet
                self.tripped_back_to_closed()
            return
        self.apply(state, int(epoch), int(opened or 0), now_ms, reason or "")

    def _resend(self) -> bool:
        """The last transition made here that Redis never took, the breaker still in its state: sent again
        (True); the shared state read now is older than it."""
        if self.unsent is None:
            return False
        mode, reason = self.unsent
        if self.breaker._state is not (_CLOSED if mode == "reset" else _OPEN):  # moved on here since (local probes)
            self.unsent = None
            return False
        if not self.sending:
            self._push("TRANSITION", mode, reason)
        return True

    def tripped_back_to_closed(self) -> None:
        """No shared state (lost, expired, or never written) is CLOSED: the breaker closes."""
        self.epoch = 0
        reason = SHARED_STATE_AVAILABLE if self._outage_ends() else SHARED_STATE_EXPIRED
        self.breaker._transition(_CLOSED, reason, now=self._now("closed"))

    def _outage_ends(self) -> bool:
        """A shared state is taken: whether the breaker is still the OPEN an outage made (see ``outage_gen``)."""
        held, self.outage_gen = self.outage_gen, None
        return held == self.breaker._gen

    def unavailable(self) -> None:
        """Redis just became unreachable: with ``on_unavailable="reject"`` the breaker rejects everything;
        with ``"local"`` its local state machine takes over, with probes of its own when HALF_OPEN (Redis
        admitted the shared period's probes: the local copy has none, and would reject every call until
        Redis is back)."""
        b = self.breaker
        if self.store.on_unavailable == "reject":
            if b._state is not _OPEN:
                b._transition(_OPEN, SHARED_STATE_UNAVAILABLE, now=self._now("open"))
                self.outage_gen = b._gen
        elif b._state is _HALF_OPEN and b._probes_left == 0:
            b._probes_left = b.config.half_open_probes

    def registered(self) -> None:
        """The breaker is set up and known to its hooks: an outage already under way applies to it
        too (the store told only the links bound when the outage began). Otherwise, with the store
        started, the shared state is read now (one round trip, in the background): a breaker made
        while the others have it open must not wait for the next poll (``poll_interval_s``) to know."""
        if self.store._in_outage():
            self.unavailable()
            return
        if not self.store._tasks:
            return  # not started: start() reads every bound breaker's state
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # made outside the loop: the next poll reads it
        self.store._background(self.poll())

    def apply(
        self, state: str, epoch: int, opened_ms: int, now_ms: int | None, reason: str, *, admission: bool = False,
    ) -> None:
        """Move the local breaker to the shared state of ``epoch`` (ignored when not newer; deferred while changes
        made here are on their way, unless it answers an ``admission``)."""
        if epoch < self.epoch:
            return
        b = self.breaker
        target = _STATES[state]
        newer = epoch > self.epoch
        if self.sending and not (newer and admission):
            # A change made here has not reached Redis yet: this state may be older than it (a poll or a flush in
            # flight when the breaker tripped here; the answer to, or the notification of, an earlier change
            # made here, such as force_open() before a reset()). Applied, it undid the local change for a round
            # trip: calls admitted (rejected), the hooks shown open -> closed -> open -> closed. A newer one is
            # taken after the last send's answer (which has every state Redis held before it), if newer than it.
            if newer and (self.deferred is None or epoch > self.deferred[1]):
                self.deferred = (state, epoch, opened_ms, now_ms, reason)
            return
        if not newer and self._resend():
            return  # the shared state of before this process's last transition (Redis was away when it was sent)
        self.epoch = epoch
        outage = self._outage_ends()
        if newer:
            self.unsent = None  # a later shared state (another process's, or this trip taken late) decides
        if target is _OPEN and reason:
            # Forced open by another process (force_open() there): held here too, until a reset. Without it
            # this copy, past its reset timeout, asked Redis at every call (each one rejected there), and
            # with Redis down (fail-open) its own state machine probed a breaker the operator had forced.
            # Every answer carries the state's reason (a script's of no state: shared_state_expired, not forced).
            b._forced = reason == "forced_open"
        if not newer and b._state is target:
            return
        if target is _CLOSED:
            if b._state is not _CLOSED:
                b._forced = False
                b._transition(_CLOSED, SHARED_STATE_AVAILABLE if outage else reason or "shared",
                              now=self._now(state, admission))
        elif target is _OPEN:
            now = self._now(state, admission)
            if b._state is not _OPEN:
                b._transition(_OPEN, reason or "shared", now=now)
            age_s = 0.0 if now_ms is None else max(0, now_ms - opened_ms) / 1000
            b._opened_at = now - age_s
        elif b._state is not _HALF_OPEN:
            b._transition(_HALF_OPEN, SHARED_STATE_AVAILABLE if outage else reason or "reset_timeout",
                          now=self._now(state, admission))
            b._probes_left = 0  # probes are admitted by Redis, not from a local quota
        elif newer:
            # A new half-open period (the last one's probes outlived probe_lease_s): probes admitted here in the
            # earlier one are stale, as Redis holds them. Their outcomes went with this newer epoch: a late failure
            # re-opened the breaker for everyone, a late success counted towards closing the new period.
            with b._admitting:
                b._gen += 1

    def _now(self, state: str, admission: bool = False) -> float:
        """The breaker's clock, read as it takes a shared state (a notification, a poll, a send's answer, an
        outage): the transition's time, and where an OPEN state's age is measured from.

        A clock that fails (raises, reads NaN or an infinity) is logged, and the state is taken all the same, timed
        at the breaker's last reading (its registration or its last transition): an OPEN one seems older than it is,
        so its reset timeout ends here early, and admission asks Redis, which holds it. Raised, the clock's error
        left the shared state untaken: read from a notification, it was logged at debug as a malformed message (a
        NaN) or dropped the subscription; from a poll, it marked the breaker's key unusable (its state local until
        the key changed) or ended the flusher, so nothing was flushed or polled again."""
        b = self.breaker
        try:
            return b.clock()
        except Exception as exc:
            if admission:  # raised by the admission once the state is taken (see _admitted), not logged
                self.unclocked = exc
                return b._changed_at
            _log.warning("the clock of breaker %r failed as it took the shared state %r; taken, timed at its last "
                         "reading", self.name, state, exc_info=exc)
            return b._changed_at


def settings_text(config: BreakerConfig, window_s: float) -> str:
    """The settings a process judges a shared breaker by, as ``name=value`` pairs (what it sends with a flush)."""
    def seconds(value: float | None) -> float | None:  # 30 and 30.0 are one setting
        return None if value is None else float(value)

    values = {
        "failure_threshold": config.failure_threshold, "failure_rate": seconds(config.failure_rate),
        "min_calls": config.min_calls, "window_s": seconds(window_s), "slow_call_s": seconds(config.slow_call_s),
        "slow_call_rate": seconds(config.slow_call_rate) if config.slow_call_s is not None else None,
        "reset_timeout": seconds(config.reset_timeout), "half_open_probes": config.half_open_probes,
        "success_threshold": config.success_threshold,
    }
    return " ".join(f"{name}={value!r}" for name, value in values.items())


def settings_difference(ours: str, theirs: str) -> str:
    """The settings that differ, ``name: ours X, theirs Y``; ``theirs`` is what Redis held (another program, another
    version may have written anything there): shown as read, cut short, when it is not such pairs."""
    mine = dict(pair.split("=", 1) for pair in ours.split(" "))
    try:
        other = dict(pair.split("=", 1) for pair in theirs.split(" "))
    except ValueError:
        other = {}
    differ = [f"{name}: ours {value}, theirs {_printable(other[name][:40])}" for name, value in mine.items()
              if name in other and other[name] != value]
    return "; ".join(differ) if differ else f"theirs {theirs[:200]!r}, ours {ours!r}"


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)
