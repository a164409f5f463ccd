"""``Telemetry``: the handle ``configure()`` returns; bounded flush and shutdown, ``dropped``."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from ._delivery import (
    CountedLogRecordProcessor,
    CountedMetricExporter,
    CountedSpanProcessor,
    DropCounter,
    OneAtATime,
    Spares,
    cancel_requested_from_now,
    in_parallel,
)
from ._logs._joined import _Default
from ._said_once import SDK_LOGGERS
from ._telemetry import SCOPE_NAME as LOGGER_ROOT  # the logging hook's loggers are its children
from ._telemetry import DropReason
from ._validate import check_number

_log = logging.getLogger("shannon_otel")
DEFAULT_SHUTDOWN_TIMEOUT_S = 3.0
_MAX_TIMEOUT_S = 3600.0


class Telemetry:
    """The providers ``configure()`` built. ``shutdown()`` flushes and stops them within one budget.

    Use as a context manager to shut down on exit; an un-shut handle is shut down (same budget) at
    interpreter exit. Export failures never raise here: the SDK logs them, ``dropped`` counts what
    was not delivered, and the user's work and results are unaffected. Built by hand, it refuses a provider
    without ``shutdown()`` (TypeError) or a ``shutdown_timeout_s`` outside (0, 3600] (ValueError), naming it.
    ``sdk_log_filter``: the filter ``configure()`` put on the SDK's resource and attribute loggers (each repeated
    warning said once while the handle lives); the shutdown takes it off them.
    """

    def __init__(
        self, tracer_provider: TracerProvider, meter_provider: MeterProvider,
        logger_provider: LoggerProvider | None = None, log_handler: logging.Handler | None = None, *,
        shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S, drops: DropCounter | None = None,
        span_processors: Sequence[CountedSpanProcessor] = (),
        log_processors: Sequence[CountedLogRecordProcessor] = (),
        metric_exporters: Sequence[CountedMetricExporter] = (),
        sdk_log_filter: logging.Filter | None = None,
    ) -> None:
        # Checked here: a provider without shutdown() (None, the API's proxy of an unset global) failed
        # only in shutdown(), with an AttributeError, after the handle was marked shut and its telemetry counted lost.
        for name, provider, required in (("tracer_provider", tracer_provider, True),
                                         ("meter_provider", meter_provider, True),
                                         ("logger_provider", logger_provider, False)):
            if (required or provider is not None) and not callable(getattr(provider, "shutdown", None)):
                raise TypeError(f"{name} must be an SDK provider (with shutdown())"
                                f"{'' if required else ' or None'}, got {provider!r}")
        check_number("shutdown_timeout_s", shutdown_timeout_s, low=0, low_open=True, high=_MAX_TIMEOUT_S)
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.logger_provider = logger_provider  # None unless the logs signal was asked for
        self._log_handler = log_handler
        self._sdk_log_filter = sdk_log_filter  # configure()'s on the SDK's loggers (_said_once), taken off by shutdown
        self.shutdown_timeout_s = shutdown_timeout_s
        self._drops = drops or DropCounter()
        self._processors = tuple(span_processors)
        self._log_processors = tuple(log_processors)
        self._metric_exporters = tuple(metric_exporters)
        self._shut = False
        # "by": the first shutdown() call, (its thread, a token of its own); set once, never given back
        self._claim: dict[str, tuple[int, object]] = {}
        self._stopped = threading.Event()  # set when the first shutdown() returns (or raises)
        self._stop_result = True  # what it returned
        self._finalizer: Any = None  # a multiprocessing finalizer, in a multiprocessing child only
        self._spares: Spares | None = None  # threads for an exit shutdown, started by shut_at_exit
        # one flush at a time of each provider (traces, metrics, logs); the processors keep their own
        self._flushes = (OneAtATime(), OneAtATime(), OneAtATime())

    @property
    def dropped(self) -> dict[str, int]:
        """Spans (``"traces"``), metric points (``"metrics"``) and log records (``"logs"``) not
        delivered so far, all reasons together; ``shannon.telemetry.dropped`` has them by reason."""
        return {signal: self._drops.total(signal) for signal in ("traces", "metrics", "logs")}

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export what is buffered; returns within ``timeout_s`` whatever the backend does. Each span and log
        processor, the metrics and each provider (for processors a user added) flush at once, in threads of
        their own: a silent backend does not keep the others' data from being exported. While an earlier flush
        of one of them is still stuck, no second one starts: this call waits for it within ``timeout_s``.

        Called from an asyncio task (it blocks the loop's thread), it also returns, False, once that task is asked to
        cancel (a Ctrl-C under ``asyncio.run``); :meth:`shutdown` too, counting what it leaves as interrupted.

        True means every processor and reader finished in time; it does not mean the backend
        accepted the data (failed exports are counted in ``dropped``). Once :meth:`shutdown` was called there is
        nothing left to flush: it returns that call's result (as a second ``shutdown()`` does).
        """
        check_number("timeout_s", timeout_s, low=0, high=_MAX_TIMEOUT_S)
        if self._shut:  # nothing is buffered once shut down: what was not exported is counted as dropped
            return self._after_shutdown(timeout_s)
        millis = int(timeout_s * 1000)

        def flush(gate: OneAtATime, provider_flush: Callable[[int], bool]) -> Callable[[], bool]:
            # the SDK's providers flush their processors one after the other against one deadline
            return lambda: gate.run(lambda left: left > 0 and bool(provider_flush(int(left * 1000))), timeout_s)

        # The providers' flush runs each processor's in turn (and the SDK's batch flush ignores its timeout):
        # an exporter stuck on a silent OTLP endpoint kept every other exporter's spans waiting past the budget.
        jobs: dict[str, Callable[[], bool]] = {}
        for i, span_processor in enumerate(self._processors):
            jobs[f"span flush ({i + 1})"] = partial(span_processor.force_flush, millis)
        for i, log_processor in enumerate(self._log_processors):
            jobs[f"log flush ({i + 1})"] = partial(log_processor.force_flush, millis)
        # processors a user added, without ours (flushed above)
        spans = _others_flush(self.tracer_provider, "_active_span_processor", "_span_processors", self._processors)
        jobs["span flush"] = flush(self._flushes[0], spans)
        jobs["metric flush"] = flush(self._flushes[1], self.meter_provider.force_flush)
        if self.logger_provider is not None:
            logs = _others_flush(self.logger_provider, "_multi_log_record_processor", "_log_record_processors",
                                 self._log_processors)
            jobs["log flush"] = flush(self._flushes[2], logs)
        return all(finished and bool(ok) for finished, ok in in_parallel(jobs, timeout_s,
                                                                         stop=cancel_requested_from_now()))

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and stop both providers, returning within ``timeout_s`` (default: the
        ``shutdown_timeout_s`` given to ``configure()``) whatever the backend does.

        True when every export ended and the providers stopped in time. As for ``force_flush``, True does
        not mean the backend accepted the data: an export that failed (a refused connection fails at once)
        counts its items in ``dropped``, and the one warning gives the totals. Otherwise (False) the spans
        and log records still queued and the metric points of an export still running are counted as
        dropped (reason ``shutdown``), a warning is logged, and the stuck export is left to a daemon
        thread. Idempotent: a later call (and a :meth:`force_flush`, which has nothing left to do) returns the
        first call's result, at once once it has returned; made while the first runs, it waits for that within
        its own budget (False if it does not come in time), except from the thread running it (a signal handler):
        False at once.
        """
        budget = self.shutdown_timeout_s if timeout_s is None else timeout_s
        check_number("timeout_s", budget, low=0, high=_MAX_TIMEOUT_S)  # a second call's NaN is refused too
        call = (threading.get_ident(), object())
        try:
            # The claim is one C call (atomic) that also records who took it, inside the try: a Ctrl-C is handled
            # on the return of a C call, and one handled on a lock's acquire(), a line above the try, left the
            # handle claimed by nobody who would count or finish (every later call waited on it).
            if self._claim.setdefault("by", call) is not call:
                return self._after_shutdown(budget)
            self._stop_result = False  # unless it finishes: what a concurrent call returns
            self._shut = True
            self._stop_result = finished = self._stop_and_count(budget, cancel_requested_from_now())
        except BaseException:
            # A second Ctrl-C (or another BaseException) anywhere from the claim on: leaving now is what was asked,
            # but what is still unsent must be counted, not lost silently (every later call is a no-op, so nobody
            # else would); then it goes on up. Caught here, not inside _stop_and_count: one landing on that call's
            # own entry left everything uncounted (the CLI's "telemetry dropped: 0 spans", 1 CI run in ~40).
            if self._claim.get("by") is call:
                self._stop_result = False
                self._give_up("was interrupted")
            raise
        finally:
            if self._claim.get("by") is call:
                self._stopped.set()
        return finished

    def _after_shutdown(self, timeout_s: float) -> bool:
        """A call once :meth:`shutdown` was called: its result, waiting for it within ``timeout_s`` (False if it
        does not come). A concurrent call returned True at once, while the first was still stuck on a silent
        backend, then gave up and counted the telemetry it lost; a flush after it collected the metrics again
        into the stopped exporters, and counted them as dropped after the shutdown had given the totals.

        A call from the thread running the first (a signal handler, or a log handler, run while it waits) does not
        wait: the first cannot return before it does, so it waited out its whole budget for nothing, and held the
        first past its own (False: not finished yet)."""
        first = self._claim.get("by")
        if first is not None and first[0] == threading.get_ident() and not self._stopped.is_set():
            return False
        return self._stopped.wait(timeout_s) and self._stop_result

    def _stop_and_count(self, budget: float, stop: Callable[[], bool] | None) -> bool:
        """Stop within ``budget``, or until ``stop()`` (the asyncio task running it asked to cancel: a Ctrl-C
        under ``asyncio.run``, which waited out the whole budget before its KeyboardInterrupt), and say so."""
        results = self._stop(budget, stop)
        finished = all(done for done, _ in results)
        if not finished and stop is not None and stop():
            self._give_up("was interrupted (the asyncio task running it was cancelled: a Ctrl-C under asyncio.run)")
        elif not finished:
            short = "" if budget >= 1 else ", or the budget too short"
            self._give_up(f"did not finish within {budget:.1f} s (backend down or not answering{short})")
        elif any(p.gave_up for p in self._processors) or any(p.gave_up for p in self._log_processors):
            # in time, but an SDK batch processor stopped waiting for its export first (30 s at most) and left its
            # queue behind, counted as dropped by our processor: not everything was exported
            finished = False
            self._report("gave up on an export still running after 30 s (the SDK's batch processors wait no longer)",
                         always=True)
        else:
            self._report("finished")
        return finished

    def _shutdown_at_exit(self) -> None:
        """:meth:`shutdown` at interpreter exit; when it gave up, the SDK's loggers are silenced from then on.

        The exports it gave up on go on in daemon threads, retrying and logging each failure. A daemon thread
        is frozen where it stands once the interpreter finalizes: frozen inside a log call, it held the logging
        handler's lock for good, and the main thread's next log call hung the exit forever (asyncio logging
        "Task was destroyed but it is pending!" from the garbage collector: 1 exit in ~50 after ``sys.exit()``
        in a wave task, with the collector down; the SDK's exports end their own deadline, and log it, at the
        very moment this one gives up). What they would say is already counted in the one warning. A log call
        already under way is let finish first: each handler's lock is taken and given back (0.5 s at most each).

        A Ctrl-C while it waits ends the wait, as :meth:`_shutdown_leaving` says; so does one in the wait for the
        handlers' locks after it (a second Ctrl-C, up to 0.5 s per handler): it printed the library's traceback,
        "Exception ignored in atexit callback", after the one warning.
        """
        if self._shutdown_leaving():
            return
        try:
            _quiet_daemon_logging()
        except (KeyboardInterrupt, SystemExit):
            return  # asked to leave now: what was lost is counted and said already

    def _shutdown_leaving(self) -> bool:
        """:meth:`shutdown` as the process leaves (its exit handler, a multiprocessing child's finalizer).

        A Ctrl-C while it waits (a user not waiting for a silent backend), or a signal handler's ``sys.exit()`` (a
        second SIGTERM), ends the wait: ``shutdown()`` has counted and said what was lost, and the exports it left go
        on in daemon threads, as when it gave up (False). The exception goes no further: Python ignores what an exit
        handler raises (the exit status stays the program's), but printed it as "Exception ignored in atexit
        callback" with the library's traceback, after the one warning; out of a child's finalizer it printed the
        same traceback, made the child's exit code 1 and skipped the finalizers after it.
        """
        try:
            return self.shutdown()
        except (KeyboardInterrupt, SystemExit):
            return False

    def _stop(self, budget: float, stop: Callable[[], bool] | None = None) -> list[tuple[bool, object]]:
        """Write what the logging hook holds back, then stop every provider at once against one deadline
        (a stuck trace export must not starve the metrics): ``(finished, result)`` per provider."""
        # configure() registered this for interpreter exit: once shut, the handle (and its providers)
        # need not live until then (a process that configures repeatedly would keep every one).
        atexit.unregister(self._shutdown_at_exit)
        _UNSHUT.discard(self)
        if self._finalizer is not None:
            self._finalizer.cancel()
        # The default logging hook's held-back repeats ("rejected 9,874 calls ...") are written while
        # the logs signal's handler is still there to export them.
        _Default.flush()
        if self._log_handler is not None:
            logging.getLogger(LOGGER_ROOT).removeHandler(self._log_handler)
            self._log_handler.close()  # its provider is shut down below: nothing left for it to flush (at exit)
        if self._sdk_log_filter is not None:
            for name in SDK_LOGGERS:
                logging.getLogger(name).removeFilter(self._sdk_log_filter)
        # Each span and log processor in a thread of its own: a provider's shutdown stops its processors one after
        # the other, so an exporter stuck on a dead or silent backend kept every other exporter's spans (log records:
        # OTEL_LOGS_EXPORTER=otlp,console) from being sent.
        jobs: dict[str, Callable[[], object]] = {
            f"span shutdown ({i + 1})": processor.shutdown for i, processor in enumerate(self._processors)
        }
        for i, log_processor in enumerate(self._log_processors):
            jobs[f"log shutdown ({i + 1})"] = log_processor.shutdown
        jobs["span shutdown"] = self.tracer_provider.shutdown  # processors a user added; ours return at once
        jobs["metric shutdown"] = lambda: self.meter_provider.shutdown(timeout_millis=budget * 1000)
        if self.logger_provider is not None:
            jobs["log shutdown"] = self.logger_provider.shutdown  # ours return at once
        return in_parallel(jobs, budget, self._spares, stop)

    def _give_up(self, why: str) -> None:
        """Count everything accepted and not yet delivered as dropped (``shutdown``), and say so."""
        self._drops.add("traces", DropReason.SHUTDOWN, sum(p.abandon() for p in self._processors))
        self._drops.add("logs", DropReason.SHUTDOWN, sum(p.abandon() for p in self._log_processors))
        self._drops.add("metrics", DropReason.SHUTDOWN, sum(e.abandon() for e in self._metric_exporters))
        self._report(why, always=True)

    def _report(self, why: str, *, always: bool = False) -> None:
        """The one warning of a shutdown that lost telemetry: everything not delivered over the whole run,
        every signal (the SDK's exporters log each failed attempt; this is the sum)."""
        lost = self.dropped
        if always or any(lost.values()):
            _log.warning("telemetry shutdown %s; not delivered over the run: %d spans, %d metric points, "
                         "%d log records (Telemetry.dropped, metric shannon.telemetry.dropped)", why,
                         lost["traces"], lost["metrics"], lost["logs"])

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def _quiet_daemon_logging() -> None:
    """Silence the SDK's loggers, then wait for a log call under way on any handler to end (see
    :meth:`Telemetry._shutdown_at_exit`). A Ctrl-C landing on a lock's ``acquire()`` as it returns leaves no lock
    held: the exception goes on up with the lock given back."""
    handlers: set[logging.Handler] = set(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
            if name.split(".", 1)[0] == "opentelemetry":
                logger.disabled = True
    time.sleep(0.01)  # a call already past its logger's check reaches its handler meanwhile
    for handler in handlers:
        lock = handler.lock
        if lock is None:
            continue
        try:
            if lock.acquire(timeout=0.5):  # waits for an emit under way to end
                lock.release()
        except BaseException:
            owned = getattr(lock, "_is_owned", None)  # an RLock's (logging's own): this thread holds it
            if callable(owned) and owned():
                lock.release()
            raise


def _others_flush(provider: Any, multi: str, processors: str, ours: Sequence[object]) -> Callable[[int], bool]:
    """The provider's ``force_flush`` without ``ours``: each of the others in turn against one deadline, as the SDK
    flushes them. Its flush ran ours again after their own (a second export pass, and a stuck one of ours held the
    others past the budget). A provider holding none of ours, or whose list (private in the SDK) is not there, is
    flushed whole."""
    found = getattr(getattr(provider, multi, None), processors, None)
    if found is None or not any(p in ours for p in found):
        return provider.force_flush  # type: ignore[no-any-return]
    others = [p for p in found if p not in ours]

    def in_turn(millis: int) -> bool:
        deadline = time.monotonic() + millis / 1000
        flushed = True
        for processor in others:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            flushed = processor.force_flush(int(left * 1000)) is not False and flushed
        return flushed

    return in_turn


# configure()'s handles not shut down yet. atexit's registration holds each too, but Python 3.13's
# multiprocessing clears atexit in a forked child before it runs the after-fork hooks: a handle nothing else
# held was gone by then, its child finalizer never registered, and the child's spans were lost uncounted.
_UNSHUT: set[Telemetry] = set()


def shut_at_exit(handle: Telemetry) -> None:
    """Shut ``handle`` down (its budget) when the process leaves: at interpreter exit, and when a
    multiprocessing child ends.

    A multiprocessing child (a ``Process``, a ``Pool`` or ``ProcessPoolExecutor`` worker) leaves by
    ``os._exit`` after its multiprocessing finalizers, never running ``atexit``: the spans its waves
    ended were lost without a count. So a handle configured in such a child, or inherited by one
    forked after ``configure()``, is also shut down by a finalizer there. (A worker ended by
    ``terminate()``, as a ``Pool`` used as a context manager ends its workers, is killed: nothing runs.)
    Called once by ``configure()``; ``shutdown()`` unregisters both.
    """
    import multiprocessing
    import multiprocessing.util

    # one per job of the shutdown (_stop): each provider, span and log processor; an exit handler may not start
    # threads (Python 3.12), and a job left without one ran on the exit handler's thread, unbounded
    handle._spares = Spares(3 + len(handle._processors) + len(handle._log_processors))
    _UNSHUT.add(handle)  # held until shut down, also where atexit's hold is cleared (a forked child, 3.13)
    atexit.register(handle._shutdown_at_exit)
    if multiprocessing.parent_process() is not None:
        _finalize_in_child(handle)
    # Runs in a child forked by multiprocessing after it cleared the finalizers it inherited; holds the
    # handle weakly (a shut-down handle is not kept alive by it).
    multiprocessing.util.register_after_fork(handle, _finalize_in_child)


def _finalize_in_child(handle: Telemetry) -> None:
    import multiprocessing.util

    if not handle._shut:
        handle._finalizer = multiprocessing.util.Finalize(handle, handle._shutdown_leaving, exitpriority=0)
