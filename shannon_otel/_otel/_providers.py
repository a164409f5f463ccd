"""Per-provider state, and whether a provider (given, or the current global) records anything.

:class:`ProviderState` is the one place shannon-otel keeps state per MeterProvider: the in-process
histogram bridge that ``configure()`` / ``testing`` register for the providers they build, the
metric state the OTel hooks of every tracer provider share on it (the executor's instruments and
live counters, the reported breaker states, the anomaly gauge and counter: the SDK keeps only the
first observable instrument of a name on a meter and drops later callbacks), and the shared OTel
hook of each tracer provider used with it (one hook per provider pair, so every policy feeds the
same live counters). The TracerProvider that ``configure()`` builds has a state too, holding only
that configuration's drop counter (:func:`register_drops` / :func:`drops_for`: a wave reads it at
its start and end to report the spans dropped meanwhile). One registry, weakly keyed: a provider's
state dies with it, and nothing here keeps a provider alive.

:class:`Recording` is the one "does this provider pair record?" check (built on
:func:`tracing_enabled` / :func:`metrics_enabled`), asked once per wave / protected call by the
OTel hook: with no SDK installed the hooks return no observer, so the work pays nothing for
telemetry. The globals can be set later (``configure()``, or one after the other): each is watched until set.

:func:`provider_failed` is where a provider that raised making shannon-otel's tracer or instruments is logged,
once per provider (its state's ``failed``); the caller goes on with a no-op provider in its place.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from opentelemetry import metrics, trace

# The API hands out this proxy until a global MeterProvider is set; it has no public name.
from opentelemetry.metrics._internal import _ProxyMeterProvider

from .._validate import brief
from ._series import SeriesWatch

if TYPE_CHECKING:
    from .._delivery import DropCounter
    from .._metrics_bridge import MetricsBridge
    from .._telemetry import BreakerState
    from . import OTelHook
    from ._anomaly import AnomalyTelemetry
    from ._executor import ExecutorMeters
    from ._shared import SharedTelemetry

__all__ = ["NO_METRICS", "ProviderState", "Recording", "bridge_for", "drops_for", "given", "globals_set",
           "metrics_enabled", "provider_failed", "provider_state", "register_bridge", "register_drops",
           "tracing_enabled", "weak_provider"]

_log = logging.getLogger("shannon_otel")

_NOOP_TRACER_PROVIDERS = (trace.NoOpTracerProvider, trace.ProxyTracerProvider)
_NOOP_METER_PROVIDERS = (metrics.NoOpMeterProvider, _ProxyMeterProvider)
_PROXIES = (trace.ProxyTracerProvider, _ProxyMeterProvider)

P = TypeVar("P")
T = TypeVar("T")
# What a MeterProvider whose get_meter() or instrument constructors raised is replaced by: its users go on
# without metrics from it (a constant, so the weak references to it held by the hooks never die).
NO_METRICS: Final = metrics.NoOpMeterProvider()


def given(provider: P | None) -> P | None:
    """``provider`` as an entry point takes it: ``None`` (the global one) for the API's proxy of the global.

    ``trace.get_tracer_provider()`` / ``metrics.get_meter_provider()`` called before a global is set return
    a proxy that delegates to the global once it is set: passed on as ``tracer_provider=`` it stands for the
    global, whichever it turns out to be. Taken as a provider of its own, it read as "no SDK" for good, and
    a wave built before ``configure()`` recorded nothing after it.
    """
    return None if isinstance(provider, _PROXIES) else provider


def tracing_enabled(provider: trace.TracerProvider | None) -> bool:
    resolved = provider if provider is not None else trace.get_tracer_provider()
    return not isinstance(resolved, _NOOP_TRACER_PROVIDERS)


def metrics_enabled(provider: metrics.MeterProvider | None) -> bool:
    resolved = provider if provider is not None else metrics.get_meter_provider()
    return not isinstance(resolved, _NOOP_METER_PROVIDERS)


def globals_set() -> bool:
    """Whether a global TracerProvider or MeterProvider has been set (they can be set only once)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) or not isinstance(
        metrics.get_meter_provider(), _ProxyMeterProvider,
    )


# Where the API keeps the global providers. The API's getters cost ~1 us (an os.environ lookup
# each time) and the policies ask on every call; reading the slot is O(1). The globals can be
# set only once, so once set they are resolved a single time. (Should a future API move the
# slot, the stand-in makes the global be resolved on the first call instead.)
class _Slots:
    _TRACER_PROVIDER: object = True
    _METER_PROVIDER: object = True


TRACE_API: Any = trace if hasattr(trace, "_TRACER_PROVIDER") else _Slots
METRICS_API: Any = metrics._internal if hasattr(metrics._internal, "_METER_PROVIDER") else _Slots


class Recording:
    """Whether a (tracer provider, meter provider) pair records now: the one check every OTel hook part uses.

    Explicit providers are resolved once, at construction, and never referenced again (a cached
    hook must not keep its providers alive). ``None`` (a global provider) is watched in O(1) until
    the global is set, then resolved once. ``tracing_on`` / ``metrics_on`` are the answers so far;
    :meth:`enabled` brings them up to date.
    """

    __slots__ = ("_metrics_env", "_trace_env", "_watch_metrics", "_watch_tracing", "_watching", "metrics_on",
                 "tracing_on")

    def __init__(self, tracer_provider: trace.TracerProvider | None,
                 meter_provider: metrics.MeterProvider | None) -> None:
        tracer_provider, meter_provider = given(tracer_provider), given(meter_provider)
        self.tracing_on = tracer_provider is not None and tracing_enabled(tracer_provider)
        self.metrics_on = meter_provider is not None and metrics_enabled(meter_provider)
        self._watch_tracing = tracer_provider is None
        self._watch_metrics = meter_provider is None
        self._watching = self._watch_tracing or self._watch_metrics  # either global still to be resolved
        # A provider named by environment variable is loaded by the first getter call.
        self._trace_env = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        self._metrics_env = "OTEL_PYTHON_METER_PROVIDER" in os.environ

    def enabled(self) -> bool:
        """Whether tracing or metrics record anything now; O(1).

        A global still unset is watched even while the other one records: an application setting its global
        MeterProvider, running a wave, then setting its TracerProvider got no span from that hook for good.
        """
        if self._watching:
            return self._resolve_globals()
        return self.tracing_on or self.metrics_on

    def _resolve_globals(self) -> bool:
        if self._watch_tracing and (self._trace_env or TRACE_API._TRACER_PROVIDER is not None):
            self._watch_tracing = False
            self.tracing_on = tracing_enabled(None)
        if self._watch_metrics and (self._metrics_env or METRICS_API._METER_PROVIDER is not None):
            self._watch_metrics = False
            self.metrics_on = metrics_enabled(None)
        self._watching = self._watch_tracing or self._watch_metrics
        return self.tracing_on or self.metrics_on


class _Global:
    """Stands for "the global provider" (None) as a weak registry key."""


_GLOBAL = _Global()
_GLOBAL_TRACER = _Global()  # the global TracerProvider, as the key of its failure (provider_failed)


class ProviderState:
    """What shannon-otel keeps for one MeterProvider (or for "the global one"), or for a TracerProvider
    built by ``configure()`` (then only ``drops``).

    Holds no strong reference to the provider itself. Built on any thread (policies may be constructed
    anywhere); the lock guards only the lazily built members.
    """

    __slots__ = ("_anomaly", "_executor", "_hooks", "_lock", "_shared", "breaker_states", "bridge",
                 "bridge_probed", "drops", "failed", "reader_count", "readers", "recovery_series", "registered",
                 "registered_bridge")

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        self.bridge: MetricsBridge | None = None  # set by configure() / testing for the providers they build
        self.drops: DropCounter | None = None  # set by configure() for the tracer provider it builds
        self.bridge_probed = False  # whether ``bridge`` was found for the readers below (registered or bridged())
        self.readers: Any = None  # the SDK's reader collection they were checked in (_bridge.reader_set)
        self.reader_count = 0  # and its length then
        # configure() / testing's bridge and the readers that merge it (register_bridge): it serves while no
        # other reader is added (``bridge`` is then None until they are back to a subset of these)
        self.registered_bridge: MetricsBridge | None = None
        self.registered: weakref.WeakSet[Any] = weakref.WeakSet()
        self.failed = False  # whether the provider raised making shannon-otel's tracer or instruments (logged)
        self._anomaly: AnomalyTelemetry | None = None
        self._shared: SharedTelemetry | None = None
        self._executor: ExecutorMeters | None = None
        # breaker name -> the state reported as 1 on the breaker state UpDownCounter of this provider
        self.breaker_states: dict[str, BreakerState] = {}
        # the attribute sets of the recovery instruments of this provider, watched for the SDK's limit
        self.recovery_series = SeriesWatch(meter_provider)  # holds it weakly
        self._hooks: weakref.WeakKeyDictionary[object, OTelHook] = weakref.WeakKeyDictionary()
        self._lock = threading.RLock()

    def otel_hook(
        self, tracer_provider: trace.TracerProvider | None, meter_provider: metrics.MeterProvider | None,
    ) -> OTelHook:
        """The OTel hook of this meter provider with ``tracer_provider`` (``None`` = the global one)."""
        from . import OTelHook

        tracer_provider, meter_provider = given(tracer_provider), given(meter_provider)
        key = tracer_provider if tracer_provider is not None else _GLOBAL
        with self._lock:
            hook = self._hooks.get(key)
            if hook is None:
                hook = self._hooks[key] = OTelHook(tracer_provider=tracer_provider, meter_provider=meter_provider)
        return hook

    def executor_meters(self, meter: metrics.Meter) -> ExecutorMeters:
        """The executor's instruments and live counters on this provider's meter, made on first use."""
        from ._executor import ExecutorMeters

        with self._lock:
            if self._executor is None:
                self._executor = ExecutorMeters(meter)
            return self._executor

    def anomaly_telemetry(self, meter_provider: metrics.MeterProvider | None) -> AnomalyTelemetry:
        """The anomaly score gauge and events counter of this provider, made on first use."""
        from ._anomaly import AnomalyTelemetry

        with self._lock:
            if self._anomaly is None:
                self._anomaly = _made(AnomalyTelemetry, meter_provider)
            return self._anomaly

    def shared_telemetry(self, meter_provider: metrics.MeterProvider | None) -> SharedTelemetry:
        """The shared-state (Redis) instruments of this provider, made on first use."""
        from ._shared import SharedTelemetry

        with self._lock:
            if self._shared is None:
                self._shared = _made(SharedTelemetry, meter_provider)
            return self._shared


def _made(make: Callable[[metrics.MeterProvider | None], T], meter_provider: metrics.MeterProvider | None) -> T:
    """``make(meter_provider)``; made on :data:`NO_METRICS` instead when the provider raises (logged once)."""
    try:
        return make(meter_provider)
    except Exception as exc:
        provider_failed("meter_provider", meter_provider, exc)
        return make(NO_METRICS)


_STATES: weakref.WeakKeyDictionary[object, ProviderState] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def provider_state(meter_provider: metrics.MeterProvider | None) -> ProviderState:
    """The state of ``meter_provider`` (``None``: the global provider, whichever it turns out to be)."""
    meter_provider = given(meter_provider)
    key = meter_provider if meter_provider is not None else _GLOBAL
    state = _STATES.get(key)
    if state is None:
        with _LOCK:
            state = _STATES.get(key)
            if state is None:
                state = _STATES[key] = ProviderState(meter_provider)
    return state


def provider_failed(parameter: str, provider: object | None, error: Exception) -> None:
    """Log that ``provider`` (``None``: the global one), given as ``parameter`` (``tracer_provider`` or
    ``meter_provider``), raised ``error`` making shannon-otel's tracer or instruments; once per provider.

    Called where the tracer and instruments are made (the OTel hook's construction, a provider's anomaly and
    shared-state instruments), which then go on with a no-op provider: a broken provider costs its users the
    telemetry it would have recorded, never their wave, policy or saga (its error raised out of their
    construction). Never raises an ``Exception``.
    """
    provider = given(provider)
    tracing = parameter == "tracer_provider"
    try:
        if not tracing:
            state = provider_state(cast("metrics.MeterProvider | None", provider))
        else:
            key = provider if provider is not None else _GLOBAL_TRACER
            with _LOCK:
                state = _STATES.get(key) or _STATES.setdefault(key, ProviderState())
        with state._lock:
            first, state.failed = not state.failed, True
    except TypeError:  # a provider that cannot be weakly referenced has no state: said each time
        first = True
    if first:
        shown = brief(provider) if provider is not None else (
            f"None (the global {'TracerProvider' if tracing else 'MeterProvider'})")
        _log.error(
            "%s %s raised %s making shannon-otel's %s; what was built with it (waves, policies, sagas, shared "
            "states) goes on without %s from it (not logged again for this provider)", parameter, shown,
            type(error).__name__, "tracer" if tracing else "instruments", "spans" if tracing else "metrics",
            exc_info=error,
        )


def register_bridge(meter_provider: metrics.MeterProvider, bridge: MetricsBridge) -> None:
    """Called by ``configure()`` / ``testing`` for a provider whose every reader merges ``bridge``.

    The readers it has now are the ones that merge it: a reader added later (``add_metric_reader``)
    does not, so while one is there the bridge stands aside and the SDK records the task histograms
    for every reader (the registered readers' merge sums the bridge's earlier points with the SDK's).
    """
    from .._bridge import reader_set

    state = provider_state(meter_provider)
    with state._lock:
        readers = reader_set(meter_provider)
        state.registered_bridge, state.registered = bridge, weakref.WeakSet(readers)
        state.bridge, state.bridge_probed = bridge, True
        state.readers, state.reader_count = readers, len(readers)


def bridge_for(meter_provider: metrics.MeterProvider) -> MetricsBridge | None:
    """The bridge of ``meter_provider`` (a concrete provider, not ``None``), if any: registered by
    ``configure()`` / ``testing`` (while every reader is one they built), or made when every reader is
    ``bridged()``: at first use, and again once the provider's readers changed (``add_metric_reader`` /
    ``remove_metric_reader``; checked by identity and length of the SDK's reader collection, once per wave).

    None for an SDK provider built under ``OTEL_SDK_DISABLED=true``, whose meters are no-op ones (it keeps that
    answer privately): the bridge records beside the meters, and the task histograms were still served (a
    Prometheus page of ``shannon_task_duration_seconds`` alone, every other series gone) with the SDK off. The
    hooks still run (the default logging hook rides on them): only the bridge is left out."""
    if getattr(meter_provider, "_disabled", False) is True:
        return None
    state = _STATES.get(meter_provider)
    if state is not None and state.bridge_probed:
        readers = state.readers
        if readers is _reader_set(meter_provider) and len(readers) == state.reader_count:
            return state.bridge
    if not metrics_enabled(meter_provider):
        return None
    from .._bridge import discover, reader_set

    state = provider_state(meter_provider)
    with state._lock:
        readers = reader_set(meter_provider)
        if not state.bridge_probed or state.readers is not readers or len(readers) != state.reader_count:
            if state.registered_bridge is not None:
                registered = state.registered
                state.bridge = state.registered_bridge if all(r in registered for r in readers) else None
            else:
                state.bridge = discover(meter_provider)
            # Noted after the bridge: a wave on another thread meanwhile sees the old collection and waits here.
            state.readers, state.reader_count = readers, len(readers)
            state.bridge_probed = True
    return state.bridge


def weak_provider(provider: metrics.MeterProvider) -> Callable[[], metrics.MeterProvider | None]:
    """A weak reference to ``provider`` (a strong one if it cannot be weakly referenced)."""
    try:
        return weakref.ref(provider)
    except TypeError:
        return lambda: provider


def _reader_set(meter_provider: metrics.MeterProvider) -> Any:
    """_bridge.reader_set, its common case inline (asked once per wave)."""
    storages = getattr(getattr(meter_provider, "_measurement_consumer", None), "_reader_storages", None)
    if storages is not None:
        return storages
    from .._bridge import reader_set

    return reader_set(meter_provider)


def register_drops(tracer_provider: trace.TracerProvider, drops: DropCounter) -> None:
    """Called by ``configure()`` for the tracer provider it builds, whose every span processor counts into ``drops``."""
    key: object = tracer_provider
    with _LOCK:
        state = _STATES.get(key)
        if state is None:
            state = _STATES[key] = ProviderState()
    state.drops = drops


def drops_for(tracer_provider: trace.TracerProvider | None) -> DropCounter | None:
    """The drop counter of ``tracer_provider`` (``None``: the current global one), if ``configure()``
    built it; else None. O(1) and never raises; asked once per wave, never per task."""
    tracer_provider = given(tracer_provider)
    key: object = tracer_provider if tracer_provider is not None else TRACE_API._TRACER_PROVIDER
    if key is None:
        return None  # no global set: configure() has not set one
    if key is True:  # the slot's stand-in (the API moved it)
        key = trace.get_tracer_provider()
    try:
        state = _STATES.get(key)
    except TypeError:  # a user's provider that cannot be weakly referenced was never registered
        return None
    return state.drops if state is not None else None
