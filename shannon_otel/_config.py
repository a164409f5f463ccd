"""``configure()``: the one place that builds SDK providers and may set the global ones.

What it uses lives beside it: the exporters it builds in ``_exporters``, the handle it returns
(``Telemetry``, re-exported here) in ``_telemetry_handle``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
import warnings
from collections.abc import Mapping, Sequence

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics, trace
from opentelemetry._logs import LogRecord
from opentelemetry._logs._internal import ProxyLoggerProvider  # the unset global has no public name
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import DefaultAggregation, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.util.types import Attributes

from . import _telemetry as tel
from ._bridge import _registered, exemplar_mode
from ._delivery import (
    DEFAULT_MAX_QUEUE_SIZE,
    MAX_QUEUE_SIZE,
    CountedLogRecordProcessor,
    CountedMetricExporter,
    CountedSpanProcessor,
    DropCounter,
    env_batch_setting,
    env_int,
    rejections_of,
)
from ._events import error_type
from ._exporters import (
    _EXPORTERS,
    _check_http_url,
    _exemplar_filter,
    _log_exporter,
    _logs_wanted,
    _metric_export_timeout_ms,
    _metric_exporter,
    _metric_interval_s,
    _span_exporter,
)
from ._exporters import ExporterName as ExporterName
from ._exporters import _choose as _choose
from ._metrics_bridge import BridgedExporter, MetricsBridge, histograms_cumulative
from ._otel._instruments import instrument
from ._otel._providers import globals_set, register_bridge, register_drops
from ._otlp_env import warn_odd_variables
from ._redact import Redact, RedactingSpanExporter, redacting_handler
from ._resource_env import env_service_name
from ._said_once import SaidOnce, resource_variables
from ._sdk_env import id_generator, limits, sampler
from ._telemetry import SCOPE_NAME as LOGGER_ROOT  # the logging hook's loggers are its children
from ._telemetry_handle import _MAX_TIMEOUT_S, DEFAULT_SHUTDOWN_TIMEOUT_S, shut_at_exit
from ._telemetry_handle import Telemetry as Telemetry
from ._validate import (
    check_attributes,
    check_bool,
    check_endpoint,
    check_name,
    check_number,
    check_sync_callable,
    shown,
)
from ._version import __version__

_SETTING_GLOBALS = threading.Lock()
# The variables as the SDK's resource detection read them when its logs module was imported (by the imports above,
# at the latest), warning then of what it could not parse.
_DETECTED_AT_IMPORT = resource_variables()


def _check_globals_unset(logs: bool) -> None:
    """The OTel API sets the global providers once; a second attempt would be ignored (only logged)."""
    logs_taken = logs and not isinstance(otel_logs.get_logger_provider(), ProxyLoggerProvider)
    if globals_set() or logs_taken:
        from ._autoconfig import Configurator

        if Configurator._configured is not None:  # the README's app, run as its zero-code section says
            raise RuntimeError(
                "the global OTel providers were already set by opentelemetry-instrument "
                "(OTEL_PYTHON_CONFIGURATOR=shannon_otel, from the OTEL_* variables): under it, leave configure() "
                "out of the program (or call configure(..., set_global=False) for providers of its own)",
            )
        named = [v for v in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER") if os.environ.get(v)]
        if named:  # asking the API for the global loads the provider the variable names and makes it the global
            raise RuntimeError(
                f"{named[0]}={os.environ[named[0]]!r} makes the OTel API set that provider as the global one "
                "(once per process), so configure() cannot: unset the variable, or call "
                "configure(..., set_global=False) and pass tracer_provider=/meter_provider=",
            )
        if not globals_set():  # the user's own logging set-up set the LoggerProvider, nothing else
            raise RuntimeError(
                "the global OTel LoggerProvider is already set (OTel allows that once per process) and the logs "
                "signal was asked for (logs=True, or OTEL_LOGS_EXPORTER): call configure(..., logs=False) to leave "
                "the logs to it, or configure(..., set_global=False)",
            )
        raise RuntimeError(
            "the global OTel providers are already set (OTel allows that once per process); "
            "call configure(..., set_global=False) and pass tracer_provider=/meter_provider= instead",
        )


def _histograms_explicit(exporter: MetricExporter) -> bool:
    """Whether the exporter takes explicit-bucket histograms, what the bridge's store holds: with
    ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=base2_exponential_bucket_histogram`` the task
    histograms stayed explicit-bucket while every other histogram (the wave's, the user's) became exponential;
    without the bridge the SDK records them as asked."""
    preferred = getattr(exporter, "_preferred_aggregation", None) or {}  # kept privately, read so by the SDK
    chosen = preferred.get(HistogramInstrument)
    return chosen is None or isinstance(chosen, DefaultAggregation | ExplicitBucketHistogramAggregation)


class _LogHandler(LoggingHandler):
    """The SDK's handler, flushing nothing once closed (``Telemetry.shutdown`` closes it after shutting its
    provider down).

    At interpreter exit ``logging.shutdown()`` flushes every handler still alive, taken off its logger or
    not, and the SDK's ``flush()`` starts a thread to flush the provider. Python 3.12.0 / 3.12.1 refuse to start
    one then: every program that kept its ``configure(logs=True)`` handle ended with "Exception ignored in atexit
    callback ... can't create new thread at interpreter shutdown", for a provider already shut down.
    """

    _shut = False

    @staticmethod
    def _get_attributes(record: logging.LogRecord) -> Attributes:
        """The SDK's attributes, with ``exception.type`` (a failing hook's record) the qualified class name the
        exception conventions ask for and ``error.type`` carries (``shannon.hook.errors``): the SDK wrote the bare
        ``__name__``, ``HookError`` for ``app.hooks.HookError``."""
        attributes = dict(LoggingHandler._get_attributes(record) or {})
        qualified = error_type(record.exc_info[1]) if record.exc_info else None
        if qualified is not None and tel.EXCEPTION_TYPE in attributes:
            attributes[tel.EXCEPTION_TYPE] = qualified
        return attributes

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        """The SDK's translation, plus the record's ``event.name`` extra (the logging hook's and the executor's
        records) in the log record's own EventName field, which the logs data model gives an event record and the
        semantic conventions name in place of the deprecated ``event.name`` attribute (kept too, for the queries
        written against it). The SDK's handler fills attributes only: every record arrived with EventName empty."""
        translated = super()._translate(record)
        name = record.__dict__.get(tel.LOG_EVENT_NAME)
        if isinstance(name, str) and name:
            translated.event_name = name
        return translated

    def emit(self, record: logging.LogRecord) -> None:
        """The SDK's emit, its logger (one per `logging` logger, all ``shannon_otel.*``: the handler is on that
        logger) carrying the semantic conventions' schema URL as our tracers and meters do: the SDK's asks for
        none, so a collector's schema transformation could not tell which release the records' names follow."""
        logger = otel_logs.get_logger(record.name, logger_provider=self._logger_provider, schema_url=tel.SCHEMA_URL)
        if not isinstance(logger, otel_logs.NoOpLogger):
            logger.emit(self._translate(record))

    def close(self) -> None:
        self._shut = True
        super().close()

    def flush(self) -> None:
        if not self._shut:
            super().flush()


def _log_handler(provider: LoggerProvider, redact: Redact | None) -> logging.Handler:
    with warnings.catch_warnings():
        # The SDK's handler is deprecated in favour of opentelemetry-instrumentation-logging's (same
        # behaviour); this one ships with the SDK we already depend on, so no new dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        if redact is not None:  # log records carry exception messages too (a failing hook's traceback)
            return redacting_handler(_LogHandler, redact, logger_provider=provider)
        return _LogHandler(logger_provider=provider)


def check_setup(
    service_name: object, exporter: object, endpoint: object, resource_attributes: object,
) -> None:
    """The checks ``configure`` and the Dask worker plugin share: errors name the parameter."""
    check_name("service_name", service_name, allow_none=True)
    if exporter is not None and not isinstance(exporter, str):
        raise TypeError(f"exporter must be a str ({', '.join(_EXPORTERS)}, comma-separated) or None, got {exporter!r}")
    if isinstance(exporter, str):
        _choose("TRACES", exporter)  # raises ValueError naming exporter for an unknown name
    check_endpoint("endpoint", endpoint)
    if isinstance(endpoint, str) and isinstance(exporter, str) and "otlp_http" in exporter.replace(" ", "").split(","):
        _check_http_url("endpoint", endpoint)  # also on a Dask client: every worker's setup would refuse it
    check_attributes("resource_attributes", resource_attributes)


def _check_sequence(name: str, value: object, kind: type) -> None:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of {kind.__name__}, got {value!r}")
    for item in value:
        if not isinstance(item, kind):
            raise TypeError(f"{name} must hold {kind.__name__} objects, got {item!r}")


def _check_readers_free(readers: Sequence[MetricReader]) -> None:
    """An SDK MetricReader serves one MeterProvider for good (shutting that provider down does not free it):
    the SDK refused a reused one with a bare ``Exception`` from ``MeterProvider()``, naming no parameter, after
    this reader was handed the new configuration's bridge (the first configuration's page lost its task
    histograms) and the span processors' threads had started. So it is refused here, before anything starts."""
    seen: list[MetricReader] = []
    for index, reader in enumerate(readers):
        inner = getattr(reader, "inner", None)  # a bridged() reader: its wrapped one counts too
        taken = [each for each in (reader, inner) if isinstance(each, MetricReader)]
        if any(each in seen or each in _registered() or getattr(each, "_collect", None) is not None for each in taken):
            raise ValueError(
                f"metric_readers[{index}] ({type(reader).__name__}) is registered with a MeterProvider already "
                "(an earlier configure(), or given twice): an SDK MetricReader serves one provider for good, "
                "even after that one's shutdown; give each configure() a new reader",
            )
        seen.extend(taken)


def _check_arguments(
    export_timeout_s: float | None, shutdown_timeout_s: float, max_queue_size: int | None,
    max_export_batch_size: int | None,
) -> None:
    check_number("export_timeout_s", export_timeout_s, low=0, low_open=True, high=_MAX_TIMEOUT_S, allow_none=True)
    check_number("shutdown_timeout_s", shutdown_timeout_s, low=0, low_open=True, high=_MAX_TIMEOUT_S)
    check_number("max_queue_size", max_queue_size, low=1, high=MAX_QUEUE_SIZE, integer=True, allow_none=True)
    check_number("max_export_batch_size", max_export_batch_size, low=1, integer=True, allow_none=True)


def configure(
    service_name: str | None = None,
    *,
    exporter: ExporterName | str | None = None,  # or several, comma-separated: "otlp,console"
    endpoint: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    metric_interval_s: float | None = None,
    export_timeout_s: float | None = None,
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    metric_readers: Sequence[MetricReader] = (),
    span_exporters: Sequence[SpanExporter] = (),
    set_global: bool = True,
    logs: bool | None = None,
    redact: Redact | None = None,
) -> Telemetry:
    """Build a TracerProvider and a MeterProvider and (by default) make them the global ones.

    ``service_name`` (else ``OTEL_SERVICE_NAME``, else the ``service.name`` of ``OTEL_RESOURCE_ATTRIBUTES``,
    else ``shannon-otel``; blank is unset) and ``resource_attributes`` (merged over ``OTEL_RESOURCE_ATTRIBUTES``:
    the given values win) make the resource.

    Exporters come from ``exporter`` or, when it is None, the standard variables
    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (comma-separated ``otlp``, ``console``,
    ``none``: each named exporter is used) and ``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL``
    (``grpc`` or ``http/protobuf``). ``endpoint`` overrides ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the
    per-signal ``..._TRACES_ENDPOINT``/``..._METRICS_ENDPOINT``, which are read when it is None (blank:
    unset; not a URL: ValueError naming the variable). ``export_timeout_s`` (one export attempt with its
    retries, in (0, 3600]) overrides ``OTEL_EXPORTER_OTLP[_<signal>]_TIMEOUT`` /
    ``OTEL_METRIC_EXPORT_TIMEOUT``; with None those are used (a timeout variable that is not a number
    in (0, 3600] is ignored with a logged warning as if unset: the general variable, else 10 s, used;
    ``OTEL_METRIC_EXPORT_TIMEOUT`` is in milliseconds, 30 s used). ``metric_interval_s`` (in (0, 86400])
    overrides ``OTEL_METRIC_EXPORT_INTERVAL`` (integer milliseconds; an unparsable value, or one above a
    day, is ignored with a logged warning); the default is 10 s. docs/reliability.md lists them all.

    ``OTEL_TRACES_SAMPLER`` (with ``OTEL_TRACES_SAMPLER_ARG``) and ``OTEL_PYTHON_ID_GENERATOR`` are read as the SDK's
    own configurator reads them, a sampler or id generator of an installed package (entry point) included; an
    unknown or failing one is ignored with a warning naming the variable.

    Spans are batched by the SDK's BatchSpanProcessor (``OTEL_BSP_SCHEDULE_DELAY`` honoured;
    ``OTEL_BSP_EXPORT_TIMEOUT`` is checked, but the SDK's processor does not use it: ``export_timeout_s``
    bounds an export); ``max_queue_size`` (default
    ``OTEL_BSP_MAX_QUEUE_SIZE``, else 16,384 spans, ~45 MB at most) and ``max_export_batch_size``
    (default ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, else 512) size it. A span that finds the queue full
    is dropped and counted (``shannon.telemetry.dropped``, ``Telemetry.dropped``), never silently.

    ``shutdown_timeout_s`` (default 3 s) is the one budget of leaving: ``Telemetry.shutdown()``, the
    ``with`` block's exit and the interpreter-exit handler return within it whatever the backend
    does (down, refusing, accepting and never answering).

    Extra ``metric_readers`` and ``span_exporters`` are added as given; a reader with an
    ``attach_bridge(bridge)`` method merges the in-process task histograms itself (:func:`bridged` wraps any SDK
    reader so), any other reader makes the task metrics fall back to plain SDK calls. Raises ValueError/TypeError
    naming the parameter for an unknown exporter, an out-of-range number, or a metric reader registered with
    a MeterProvider already (an earlier ``configure()``'s, shut down or not: an SDK reader serves one provider).

    Without a ``service.instance.id`` (or with a blank one) from the user, the environment or the SDK
    the resource gets a random one, so replicas never share series.

    The logs signal is set up when ``logs=True`` or, with ``logs=None``, when ``OTEL_LOGS_EXPORTER``
    is set (``otlp``, ``console``; ``none`` or unset: off): a LoggerProvider with a batching
    exporter (made the global one with ``set_global``), and an OTel handler on the ``shannon_otel``
    logger, so the logging hook's records (docs/logging.md) reach the collector, stamped with the
    trace and span ids of the span current when they were written. ``shutdown()`` removes the handler.

    ``redact(type_name, message) -> str | None`` passes every exception message on an exported span
    (the ``exception`` event's message and stack trace lines, a task span's status description),
    and every one in the log records of the logs signal (a logged error's ``exception.message`` and
    ``exception.stacktrace``, the logging hook's ``exception.message``), through the callable: return
    the text to keep or ``None`` to keep the type only (``redact=lambda type_name, message: None``).
    Default ``None``: messages are kept, as OTel's ``record_exception`` does (spans go to your own
    backend; metrics never carry messages).
    """
    check_setup(service_name, exporter, endpoint, resource_attributes)
    check_bool("set_global", set_global)  # None would quietly mean False
    if logs is not None:
        check_bool("logs", logs)
    _check_sequence("metric_readers", metric_readers, MetricReader)
    _check_readers_free(metric_readers)
    _check_sequence("span_exporters", span_exporters, SpanExporter)
    # Called in the export path without await: an async redact dropped every message, its coroutines never awaited.
    check_sync_callable("redact", redact, "a callable (type_name, message) -> str | None", allow_none=True,
                        takes=2)
    interval_s = _metric_interval_s(metric_interval_s)
    _check_arguments(export_timeout_s, shutdown_timeout_s, max_queue_size, max_export_batch_size)
    # the variable bounded as the argument is (it was taken at any size: 10**11 spans held in memory)
    env_queue = None if max_queue_size else env_int("OTEL_BSP_MAX_QUEUE_SIZE", MAX_QUEUE_SIZE)
    queue_size = max_queue_size or env_queue or DEFAULT_MAX_QUEUE_SIZE
    batch_size = max_export_batch_size or env_batch_setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, queue_size)
    if batch_size > queue_size:  # the queue named where it came from (the variable: the user never passed it)
        queue_from = "OTEL_BSP_MAX_QUEUE_SIZE" if env_queue else "max_queue_size"
        raise ValueError(f"max_export_batch_size must be <= {queue_from} ({queue_size}), got {shown(batch_size)}")
    trace_names, metric_names = _choose("TRACES", exporter), _choose("METRICS", exporter)
    log_names = _logs_wanted(logs, exporter)
    signals = (("TRACES", trace_names), ("METRICS", metric_names), ("LOGS", log_names or ()))
    warn_odd_variables(tuple(kind for kind, names in signals if any(n.startswith("otlp") for n in names)),
                       tuple(kind for kind, names in signals if "otlp_grpc" in names))
    if set_global:
        _check_globals_unset(log_names is not None)
    attributes: dict[str, str] = dict(resource_attributes or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    once = SaidOnce()  # on the SDK's loggers while the handle lives: its repeated warnings said once
    once.told = resource_variables() == _DETECTED_AT_IMPORT  # so its warnings were said already (the import's)
    once.install()
    try:
        resource = Resource.create(attributes)  # merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    finally:
        once.told = False
        once.remove()  # until the handle exists to take it off again
    named = str(resource.attributes.get(SERVICE_NAME, ""))
    if named.startswith("unknown_service") or not named.strip():  # OTEL_SERVICE_NAME="  ": blank is unset
        resource = resource.merge(Resource({SERVICE_NAME: env_service_name() or "shannon-otel"}))
    if not str(resource.attributes.get(SERVICE_INSTANCE_ID, "")).strip():
        # SDKs before 1.43 set none: replicas of one service would then write the same series
        # (job/instance alike) and each scrape would flip between their values. A blank one is none
        # (``service.instance.id=$(POD_NAME)`` with the variable unset gave every replica "").
        resource = resource.merge(Resource({SERVICE_INSTANCE_ID: str(uuid.uuid4())}))

    drops = DropCounter()
    # shutdown_on_exit=False: the SDK's own exit handlers wait unbounded; Telemetry registers a bounded one.
    span_limits, log_record_limits = limits(log_names is not None)
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False, sampler=sampler(),
                                     id_generator=id_generator(), span_limits=span_limits)
    logger_provider = None if log_names is None else LoggerProvider(
        resource=resource, shutdown_on_exit=False, log_record_limits=log_record_limits)
    # Every exporter is built (its endpoint variable checked) before any processor or reader starts a thread:
    # a malformed OTEL_EXPORTER_OTLP_METRICS_ENDPOINT used to leave a span processor's thread running per call.
    exporters = [e for name in trace_names if (e := _span_exporter(name, endpoint, export_timeout_s))]
    metric_exporters = [m for name in metric_names if (m := _metric_exporter(name, endpoint, export_timeout_s))]
    log_exporters = [x for name in log_names or () if (x := _log_exporter(name, endpoint, export_timeout_s))]
    processors = [
        CountedSpanProcessor(
            each if redact is None else RedactingSpanExporter(each, redact), drops, max_queue_size=queue_size,
            max_export_batch_size=batch_size, rejections=rejections_of(each),
        )
        for each in (*exporters, *span_exporters)
    ]
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    register_drops(tracer_provider, drops)  # waves on this provider report the spans dropped while they ran

    exemplar_filter = _exemplar_filter()
    bridge = MetricsBridge(resource, exemplars=exemplar_mode(exemplar_filter) or "trace_based")
    readers = list(metric_readers)
    metric_timeout_ms = _metric_export_timeout_ms() if metric_exporters and export_timeout_s is None else None
    # The bridge may serve only if every reader of the provider merges it (``attach_bridge``).
    bridged = all(hasattr(r, "attach_bridge") for r in readers) and all(
        histograms_cumulative(e) and _histograms_explicit(e) for e in metric_exporters
    )
    if bridged:
        for reader in readers:
            reader.attach_bridge(bridge)  # type: ignore[attr-defined]
    counted_metrics: list[CountedMetricExporter] = []
    for metric_exporter in metric_exporters:
        counted = CountedMetricExporter(metric_exporter, drops)
        counted_metrics.append(counted)
        readers.append(PeriodicExportingMetricReader(
            BridgedExporter(counted, bridge) if bridged else counted,
            export_interval_millis=interval_s * 1000,
            export_timeout_millis=metric_timeout_ms if export_timeout_s is None else export_timeout_s * 1000,
        ))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False,
                                   exemplar_filter=exemplar_filter)
    meter = meter_provider.get_meter(tel.SCOPE_NAME, __version__, tel.SCHEMA_URL)
    instrument(meter, tel.TELEMETRY_DROPPED, [drops.observe])
    if bridged:
        register_bridge(meter_provider, bridge)
    handler: logging.Handler | None = None
    log_processors: list[CountedLogRecordProcessor] = []
    if logger_provider is not None:
        for log_exporter in log_exporters:
            log_processor = CountedLogRecordProcessor(log_exporter, drops, export_timeout_s=export_timeout_s)
            logger_provider.add_log_record_processor(log_processor)
            log_processors.append(log_processor)
        handler = _log_handler(logger_provider, redact)
        logging.getLogger(LOGGER_ROOT).addHandler(handler)
    handle = Telemetry(
        tracer_provider, meter_provider, logger_provider, handler, shutdown_timeout_s=shutdown_timeout_s,
        drops=drops, span_processors=processors, log_processors=log_processors, metric_exporters=counted_metrics,
        sdk_log_filter=once,
    )
    once.install()
    if set_global:
        with _SETTING_GLOBALS:
            try:
                # Again, under the lock: two configure() racing in two threads both passed the first check,
                # both returned, and the globals were one's tracer provider and, maybe, the other's meter provider.
                _check_globals_unset(logger_provider is not None)
            except RuntimeError:
                handle.shutdown()  # its threads and its handler on the shannon_otel logger go (nothing was sent)
                raise
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(meter_provider)
            if logger_provider is not None:
                otel_logs.set_logger_provider(logger_provider)
    shut_at_exit(handle)
    return handle
