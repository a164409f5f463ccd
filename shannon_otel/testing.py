"""Helpers for tests (ours and users'): in-memory telemetry, a fake clock and a virtual-time loop.

``InMemoryTelemetry`` builds a real SDK TracerProvider and MeterProvider that export to memory,
never touching the global providers; pass ``.tracer_provider`` / ``.meter_provider`` on. With ``logs=True`` it
also records, as OTel log records, what the library logs (``LoggingHook``'s records), as ``configure()`` does.
``run_virtual(main())`` runs a coroutine on :class:`VirtualTimeLoop`, where ``asyncio.sleep`` and
timeouts take no wall time, so tests of timeouts, backoff and rate limits are exact and instant.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import selectors
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor
from types import TracebackType
from typing import Any, TypeVar, TypeVarTuple

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Metric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from ._bridge import _exemplar_mode
from ._fork import release_held
from ._metrics_bridge import BridgedInMemoryReader, MetricsBridge
from ._otel._providers import register_bridge
from ._telemetry import SCOPE_NAME as LOGGER_ROOT  # the logging hook's loggers are its children
from ._validate import check_bool, check_name, check_number, shown
from .recovery._backoff import TESTING

__all__ = ["FakeClock", "InMemoryTelemetry", "VirtualTimeLoop", "is_testing", "run_virtual", "set_testing"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _TestingScope:
    """What :func:`set_testing` returns: used as a context manager, it restores the previous setting.

    Scopes may overlap without nesting (two concurrent tests, in tasks or threads, each in its own
    ``with``): the active ones form a stack, and one that exits while a later one is still active
    changes nothing now and hands its previous setting on to that later one, which restores it when it
    exits. So the setting is always that of the latest active scope, and the one from before them all
    once every scope has exited, in whatever order.
    """

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int | None]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        with _SCOPES_LOCK:
            _SCOPES.append(self)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None,
    ) -> None:
        with _SCOPES_LOCK:
            at = next((k for k in range(len(_SCOPES) - 1, -1, -1) if _SCOPES[k] is self), None)
            if at is not None:
                del _SCOPES[at]
                if at < len(_SCOPES):  # a later scope is still active: it will restore what this one would
                    _SCOPES[at]._previous = self._previous
                    return
            TESTING.on, TESTING.attempts = self._previous


# The set_testing() scopes entered and not yet exited, oldest first.
_SCOPES: list[_TestingScope] = []
_SCOPES_LOCK = threading.Lock()


def _forked() -> None:
    release_held(_SCOPES_LOCK)  # a fork while another thread set or left a scope: the child's set_testing hung


if hasattr(os, "register_at_fork"):  # Windows: no fork
    os.register_at_fork(after_in_child=_forked)


def set_testing(on: bool, *, attempts: int | None = None) -> _TestingScope:
    """Turn backoff waits off (``on=True``) for your own test suite, as stamina's ``set_testing`` does.

    While on, every :class:`~shannon_otel.Retry` retries at once (delay 0, reported as 0) and, when
    ``attempts`` (>= 1) is given, makes at most that many attempts. It applies process-wide from this
    call on; use the return value as a context manager (``with set_testing(True): ...``) to restore
    the previous setting on exit (also when such scopes overlap without nesting, as two concurrent tests
    do: the latest active one wins, and all exited restore what was before them), or call
    ``set_testing(False)``. Successful first attempts never
    consult it. Raises TypeError/ValueError for a non-bool ``on`` or ``attempts`` below 1.
    """
    if not isinstance(on, bool):
        raise TypeError(f"on must be a bool, got {on!r}")
    check_number("attempts", attempts, low=1, integer=True, allow_none=True)
    with _SCOPES_LOCK:
        previous = (TESTING.on, TESTING.attempts)
        TESTING.on, TESTING.attempts = on, attempts if on else None
    return _TestingScope(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` is on."""
    return TESTING.on


class InMemoryTelemetry:
    """Real SDK providers exporting to memory.

    ``bridged=False`` leaves out the in-process histogram bridge, so the OTel hook uses plain SDK
    calls, as it does with a MeterProvider the user built. ``sampled=False`` samples every trace out.
    Under ``OTEL_SDK_DISABLED=true`` the SDK's providers record nothing; the assertion helpers' errors
    then say so. No exit handler holds it: one dropped without :meth:`shutdown` is freed with its telemetry.

    ``logs=True`` adds a LoggerProvider exporting to memory and, as ``configure(logs=True)`` does, the OTel
    handler on the ``shannon_otel`` logger, so :meth:`log_records` holds what the library logs, each record
    stamped with the trace and span current where it was written (the logger's level applies: INFO records
    need ``logging.getLogger("shannon_otel").setLevel(logging.INFO)``). That handler is the one global change:
    call :meth:`shutdown` (it removes it); two instances alive with ``logs=True`` both receive every record.
    """

    def __init__(
        self, *, bridged: bool = True, sampled: bool = True, service_name: str = "test", logs: bool = False,
    ) -> None:
        check_bool("bridged", bridged)
        check_bool("sampled", sampled)
        check_bool("logs", logs)
        check_name("service_name", service_name)
        # The SDK's own rule, read when its providers are built (as they read it): disabled, they record nothing.
        self._disabled = os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"
        self._shut = False
        resource = Resource.create({"service.name": service_name})
        sampler: Sampler = ALWAYS_ON if sampled else ALWAYS_OFF
        self.span_exporter: InMemorySpanExporter = InMemorySpanExporter()
        # shutdown_on_exit=False: the SDK's atexit handler held each provider (and every span and metric point it
        # recorded) until the process exited, so a suite building one per test and never calling shutdown() grew
        # by all its tests' telemetry; in memory there is nothing to flush at exit.
        self.tracer_provider: TracerProvider = TracerProvider(
            resource=resource, sampler=sampler, shutdown_on_exit=False,
        )
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader: BridgedInMemoryReader = BridgedInMemoryReader()
        self.meter_provider: MeterProvider = MeterProvider(
            resource=resource, metric_readers=[self.metric_reader], shutdown_on_exit=False,
        )
        if bridged:  # as configure() does: the reader merges the bridge, the hooks find it by provider
            # the exemplar filter the provider read (OTEL_METRICS_EXEMPLAR_FILTER), as configure() applies it
            bridge = MetricsBridge(resource, exemplars=_exemplar_mode(self.meter_provider._sdk_config) or "trace_based")
            self.metric_reader.attach_bridge(bridge)
            register_bridge(self.meter_provider, bridge)
        self.log_exporter: InMemoryLogRecordExporter | None = None
        self.logger_provider: LoggerProvider | None = None
        self._log_handler: logging.Handler | None = None
        if logs:
            from ._config import _log_handler  # the handler configure() attaches (loads the exporters' module)

            self.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # untyped in the SDK
            self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
            self._log_handler = _log_handler(self.logger_provider, None)
            logging.getLogger(LOGGER_ROOT).addHandler(self._log_handler)

    @property
    def providers(self) -> dict[str, Any]:
        """``tracer_provider=`` and ``meter_provider=`` keyword arguments for any entry point."""
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    # ------------------------------------------------------------------ spans
    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The finished spans (those called ``name``, when given), in the order they ended."""
        spans = list(self.span_exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name`` (AssertionError if there are none or several)."""
        found = self.spans(name)
        if len(found) != 1:  # raised, not asserted: under python -O an assert vanished and the first of two was taken
            raise AssertionError(
                f"expected one span {name!r}, found {len(found)}: {[s.name for s in self.spans()]}{self._why_none()}"
            )
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The finished spans whose parent is ``parent``."""
        assert parent.context is not None
        span_id = parent.context.span_id
        return [s for s in self.spans() if s.parent is not None and s.parent.span_id == span_id]

    # ------------------------------------------------------------------ logs
    def log_records(self) -> list[ReadableLogRecord]:
        """The OTel log records written so far, in order (``.log_record.body``, ``.trace_id``, ``.span_id``,
        ``.attributes``). RuntimeError for an instance built without ``logs=True`` (it records none)."""
        if self.log_exporter is None:
            raise RuntimeError("this InMemoryTelemetry records no log records; build it with logs=True")
        return list(self.log_exporter.get_finished_logs())

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> dict[str, Metric]:
        """Collect now; every metric by name (all scopes; of two scopes' metrics of one name, the last:
        :meth:`points` keeps every scope's points)."""
        data = self.metric_reader.get_metrics_data()
        found: dict[str, Metric] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name: str) -> Sequence[Any]:
        """Collect now; the data points of every metric called ``name``, of every scope (``[]`` if none)."""
        data = self.metric_reader.get_metrics_data()
        if data is None:
            return []
        # Every scope's: a metric of the same name in two meters (yours and ours, say) keeps all its points.
        return [
            point
            for resource_metrics in data.resource_metrics
            for scope in resource_metrics.scope_metrics
            for metric in scope.metrics if metric.name == name
            for point in metric.data.data_points
        ]

    def point(self, name: str, **attributes: Any) -> Any:
        """The one data point of metric ``name`` whose attributes include ``attributes``.

        Keyword names use ``_`` for ``.`` (``shannon_wave_name="w"``); AssertionError if not exactly one
        (listing the attributes of every point of ``name``, or naming the metrics recorded when none is
        called ``name``).
        """
        wanted = {k.replace("_", "."): v for k, v in attributes.items()}
        points = self.points(name)
        if not points:
            raise AssertionError(
                f"no metric {name!r} was recorded; recorded: {sorted(self.metrics())}{self._why_none()}"
            )
        found = [p for p in points if all(_attr(p.attributes, k) == v for k, v in wanted.items())]
        if len(found) != 1:  # say what was recorded: the count alone left the user guessing which attribute was off
            seen = [dict(p.attributes or {}) for p in points]
            raise AssertionError(
                f"expected one point of {name} with {wanted}, found {len(found)}; its points' attributes: {seen}"
            )
        return found[0]

    def _why_none(self) -> str:
        """Why nothing was recorded, when the environment turned the SDK off (else ``""``): the empty lists
        alone read as if the code under test never made a span or metric."""
        if not self._disabled:
            return ""
        return " (OTEL_SDK_DISABLED=true: the OpenTelemetry SDK records nothing; unset it for these tests)"

    def shutdown(self) -> None:
        """Shut the providers down (and take the log handler off the ``shannon_otel`` logger); once (a fixture's
        teardown after the test's own call changes nothing: the SDK's MeterProvider logged the warning "shutdown can
        only be called once")."""
        if self._shut:
            return
        self._shut = True
        if self._log_handler is not None:
            logging.getLogger(LOGGER_ROOT).removeHandler(self._log_handler)
            self._log_handler.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()


def _attr(attributes: Any, dotted: str) -> Any:
    """Look an attribute up by its dotted name, where ``_`` in the query may have been a ``_``."""
    if dotted in attributes:
        return attributes[dotted]
    for key, value in attributes.items():
        if key.replace("_", ".") == dotted:
            return value
    return None


class FakeClock:
    """Virtual time for deterministic tests: ``sleep`` advances the clock instead of waiting.

    ``clock()`` reads the time; ``await sleep(d)`` moves it forward by ``d`` and yields once to
    the event loop. Concurrent sleepers each advance it, so use it where the order of sleeps is
    explicit; ``sleeps`` records every requested delay.
    """

    def __init__(self, start: float = 1000.0) -> None:
        if isinstance(start, float) and not math.isfinite(start):  # NaN too, which check_number puts out of [-inf, inf]
            raise ValueError(f"start must be a finite number, got {start!r}")
        check_number("start", start, low=-math.inf)
        self.now: float = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back: it stands for a monotonic clock)."""
        check_number("seconds", seconds, low=0, finite=True)  # inf: every later duration would be inf - inf = NaN
        self.now = self._later(seconds)

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (negative: zero, as ``asyncio.sleep``) and yield once.
        ``inf`` sleeps until cancelled, as ``asyncio.sleep(inf)`` does, leaving the clock as it is (it
        moved the clock to inf, and every later duration read on it was inf - inf = NaN: a
        ``Hedge(delay=inf)``, which never hedges, broke the clock of the whole test)."""
        if isinstance(seconds, float) and seconds != seconds:  # check_number's range does not say what inf does
            raise ValueError(f"seconds must be in [-inf, inf] (inf: until cancelled), got {seconds!r}")
        check_number("seconds", seconds, low=-math.inf)
        self.sleeps.append(seconds)
        if seconds == math.inf:
            await asyncio.get_running_loop().create_future()  # never set: only cancellation ends it
        self.now = self._later(max(0.0, seconds))
        await asyncio.sleep(0)

    def _later(self, seconds: float) -> float:
        """The clock ``seconds`` on; ValueError naming ``seconds`` if no float holds it: two finite steps (1e308
        twice) made the clock inf, and every later duration read on it inf - inf = NaN, as an infinite one did."""
        later = self.now + seconds
        if not math.isfinite(later):
            raise ValueError(f"seconds must keep the clock within the float range, got {shown(seconds)} with the "
                             f"clock at {self.now!r}")
        return later


class _JumpingSelector:
    """Wraps the loop's selector: a wait for a timer becomes a jump of the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop, selector: selectors.BaseSelector) -> None:
        self._loop = loop
        self._selector = selector

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        scheduled = self._loop._scheduled  # type: ignore[attr-defined]  # asyncio's timer heap, soonest first
        # asyncio caps ``timeout`` at a day: the clock crept a day per turn, the CPU spun, and a timer due in
        # 1e300 s (or ``asyncio.sleep(inf)`` alone, which never ends) was never reached. Jump to the timer itself;
        # one due at inf never is: with only such timers the loop waits (I/O, a thread, a signal) as a real one does.
        deadline = scheduled[0].when() if timeout and scheduled else None
        if deadline == math.inf:
            timeout = None
        if timeout is None:
            return self._selector.select(None)
        if self._loop._threads and timeout > 0:
            # A job runs in an executor thread (asyncio.to_thread, run_in_executor, getaddrinfo): it takes
            # real time, which the loop cannot skip; wait for it (its result wakes the selector) and let
            # the clock follow the real time waited, so a timer due meanwhile fires, one due later does not.
            started = time.monotonic()
            events = self._selector.select(timeout)
            self._loop._now += timeout if not events else min(time.monotonic() - started, timeout)
            return events
        events = self._selector.select(0)
        if not events and timeout > 0:
            self._loop._now = max(self._loop._now + timeout, deadline if deadline is not None else 0.0)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time, for tests whose outcome must not race the wall clock.

    ``loop.time()`` starts at 0 and jumps to the next timer whenever nothing is ready, so
    ``asyncio.sleep``, ``asyncio.timeout`` and ``call_later`` follow their deadlines exactly and
    instantly, however slow or loaded the machine is. I/O still works (it is polled without waiting
    while timers are pending); with no timer pending the loop waits for I/O as usual. So a timer beats
    real I/O that takes real time: a socket whose peer answers in 50 ms, or a subprocess, under a 5 s
    timeout times out at once (do such I/O in a thread, or test it on a real loop). Work in executor
    threads (``asyncio.to_thread``, ``run_in_executor``, name resolution) takes real time: while any
    runs, the clock follows the real time waited, so a 50 ms thread under a 5 s timeout finishes. A thread the
    loop did not start (``asyncio.wrap_future(pool.submit(f))``, your own ``threading.Thread``) is unseen, like
    real I/O: under a timeout it times out at once; hand such work to ``loop.run_in_executor(pool, f)``. A timer
    due at inf (``asyncio.sleep(inf)``) is never reached: a coroutine waiting for what never comes waits for
    good, as under ``asyncio.run`` (no deadlock is detected; put such a test under ``asyncio.timeout``). Pass
    ``clock=asyncio.get_running_loop().time`` to a Wave or policy to put it on the same time: its reports
    and duration metrics then read virtual seconds (span start and end times stay the SDK's wall clock).
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        self._threads = 0  # executor jobs running: while any does, time passes as it really does
        self._selector: Any = _JumpingSelector(self, self._selector)

    def run_in_executor(self, executor: Executor | None, func: Callable[[*Ts], T],
                        *args: *Ts) -> asyncio.Future[T]:
        """As asyncio's; while the thread works, the virtual clock follows real time."""
        future = super().run_in_executor(executor, func, *args)
        self._threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, future: asyncio.Future[Any]) -> None:
        self._threads -= 1

    async def shutdown_default_executor(self, *args: Any) -> None:
        # Joining the executor's threads is thread work too: on Python 3.12+ asyncio.run gives it a
        # 300 s timeout, which virtual time would otherwise reach at once (a RuntimeWarning, an error
        # under filterwarnings=error).
        self._threads += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._threads -= 1

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[*Ts], object], *args: *Ts,
                context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        # A deadline of another number type (``asyncio.sleep(np.float32(0.1))`` is due at a float32) is kept a
        # float: compared in float32, ``time() + 1 ns`` rounded back to the deadline the clock jumped to, the
        # timer never ran, and the loop spun for good.
        return super().call_at(when if type(when) is float else float(when), callback, *args, context=context)

    # asyncio runs the timers due before ``time() + _clock_resolution`` (1 ns). Real time moves on, virtual
    # time stands at the deadline it jumped to: past ~1e7 s, where a float's step exceeds 2 ns, time() + 1 ns
    # rounded back to time(), the timer due exactly then never ran, and the loop spun for good
    # (``asyncio.sleep(3e7)``, a simulated quarter of ticks). One step of the clock's float is the least.
    @property
    def _clock_resolution(self) -> float:
        return max(self._resolution, math.ulp(self._now))

    @_clock_resolution.setter
    def _clock_resolution(self, seconds: float) -> None:  # set by asyncio's BaseEventLoop.__init__
        self._resolution = seconds

    def advance(self, seconds: float) -> None:
        """Move the loop's clock forward by ``seconds`` (finite, >= 0; ValueError otherwise: it stands
        for a monotonic clock, and a NaN time made every timer due at once)."""
        check_number("seconds", seconds, low=0, finite=True)
        self._now += seconds


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a :class:`VirtualTimeLoop`. Raises RuntimeError when called from a running
    event loop (a nested call: ``await`` the coroutine instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # asyncio.Runner raised its own error here and then, closing, "Cannot run the event loop while
        # another loop is running", hiding it; the coroutine was left never awaited (a RuntimeWarning).
        if asyncio.iscoroutine(coro):  # anything else is refused by asyncio.Runner as it always was
            coro.close()
        raise RuntimeError("run_virtual() cannot be called from a running event loop; await the coroutine")
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)
