"""The telemetry contract: every span, metric and attribute name shannon-otel emits.

Nothing else in the package spells a telemetry name. Dashboards, alert rules, tests and
``docs/architecture.md`` are written against this module; ``tests/test_contract.py`` proves
the bundled assets only reference names listed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

SCOPE_NAME: Final = "shannon_otel"
# The instrumentation scope's schema URL: the semantic conventions release our names (error.type, exception.*, the
# log record's EventName in place of the deprecated event.name attribute) are checked against, so a collector's
# schema transformation knows which release to translate from. Every tracer, meter and logger of ours carries it
# (one scope: the SDK keys a meter by name, version and schema URL, and two would split an instrument's series).
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"

# --------------------------------------------------------------------------- attributes
WAVE_NAME: Final = "shannon.wave.name"
WAVE_SIZE: Final = "shannon.wave.size"
WAVE_CONCURRENCY: Final = "shannon.wave.concurrency"
WAVE_BATCH: Final = "shannon.wave.batch"
WAVE_TASKS_PREFIX: Final = "shannon.wave.tasks."  # + outcome: task counts on the wave span
WAVE_EFFICIENCY_ATTR: Final = "shannon.wave.parallel_efficiency"
TASK_INDEX: Final = "shannon.task.index"
TASK_OUTCOME: Final = "shannon.task.outcome"
TASK_QUEUE_WAIT: Final = "shannon.task.queue_wait"
ERROR_TYPE: Final = "error.type"  # OTel semantic conventions
ERROR_TYPE_OTHER: Final = "_OTHER"  # its fallback value (semantic conventions): a failed wave of several error types
# What the OTel hook sets on a task span itself (a user measurement of the same name is refused by record())
TASK_SPAN_ATTRIBUTES: Final = (WAVE_NAME, TASK_INDEX, TASK_QUEUE_WAIT, TASK_OUTCOME, WAVE_BATCH, ERROR_TYPE)

OPERATION: Final = "shannon.operation"
ATTEMPT: Final = "shannon.attempt"
ATTEMPT_OUTCOME: Final = "shannon.attempt.outcome"
CALL_OUTCOME: Final = "shannon.call.outcome"
RETRY_DELAY: Final = "shannon.retry.delay"
BREAKER_NAME: Final = "shannon.breaker.name"
BREAKER_STATE: Final = "shannon.breaker.state"
BREAKER_FROM: Final = "shannon.breaker.state.from"
BREAKER_TO: Final = "shannon.breaker.state.to"
BREAKER_REASON: Final = "shannon.breaker.reason"
FALLBACK_REASON: Final = "shannon.fallback.reason"
DEGRADE_MODE: Final = "shannon.degrade.mode"
DEGRADE_REASON: Final = "shannon.degrade.reason"
SAGA_NAME: Final = "shannon.saga.name"
SAGA_STEP: Final = "shannon.saga.step"
SAGA_OUTCOME: Final = "shannon.saga.outcome"
COMPENSATION_OUTCOME: Final = "shannon.compensation.outcome"
HEDGE_ATTEMPT: Final = "shannon.hedge.attempt"  # the attempt number of the hedge (`hedge N`) a try belongs to
RETRY_MAX_ATTEMPTS: Final = "shannon.retry.max_attempts"
TIMEOUT_LIMIT: Final = "shannon.timeout.limit"  # seconds the Timeout policy allowed
HOOK_NAME: Final = "shannon.hook.name"  # a failing hook's qualified class name (a small fixed set)
HOOK_METHOD: Final = "shannon.hook.method"  # the hook/observer method that raised

ANOMALY_SERIES: Final = "shannon.anomaly.series"
ANOMALY_SIGNAL: Final = "shannon.anomaly.signal"
ANOMALY_SCORE_ATTR: Final = "shannon.anomaly.score"
ANOMALY_SEVERITY: Final = "shannon.anomaly.severity"
ANOMALY_VALUE: Final = "shannon.anomaly.value"

# Per-task token totals (summed over the task's model calls), so shannon.* names: the GenAI semantic
# conventions' gen_ai.usage.* / gen_ai.client.token.usage are per model call with the operation and
# provider, which only the model client's own instrumentation knows; next to it, ours would count twice.
TOKEN_TYPE: Final = "shannon.token.type"
TASK_INPUT_TOKENS: Final = "shannon.task.tokens.input"
TASK_OUTPUT_TOKENS: Final = "shannon.task.tokens.output"
TASK_COST_ATTR: Final = "shannon.task.cost"
SHARED_OPERATION: Final = "shannon.shared.operation"  # the Redis script/command of a shared-state call
SHARED_PREFIX: Final = "shannon.shared.prefix"  # the RedisState key prefix

TELEMETRY_SIGNAL: Final = "shannon.telemetry.signal"  # "traces", "metrics" or "logs"
TELEMETRY_DROP_REASON: Final = "shannon.telemetry.drop_reason"  # see DropReason
TASK_NAME: Final = "shannon.task.name"  # on remote (worker-side) task spans
DASK_WORKER: Final = "shannon.dask.worker"  # the worker address, on remote spans only (never a metric attribute)

# Reasons (BREAKER_REASON) of the transitions a breaker with shared state makes for Redis (docs/shared-state.md)
SHARED_STATE_UNAVAILABLE: Final = "shared_state_unavailable"  # an outage opened it (on_unavailable="reject")
SHARED_STATE_AVAILABLE: Final = "shared_state_available"  # that outage ended: it takes the shared state again
SHARED_STATE_EXPIRED: Final = "shared_state_expired"  # the shared state was lost (expired, FLUSHALL, a restart)


class _Named(StrEnum):
    """A StrEnum that prints as its value (``'success'``, not ``<Outcome.SUCCESS: 'success'>``), so a
    report's counts read as data; it still equals, hashes and formats as that string."""

    def __repr__(self) -> str:
        return repr(self.value)


class Outcome(_Named):
    """How a task, attempt or call ended. Cancellation is an outcome, never an error."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CANCELLATION = "cancellation"


class CallOutcome(_Named):
    """How a call through a circuit breaker ended, as the breaker counts it."""

    SUCCESS = "success"
    FAILURE = "failure"
    REJECTED = "rejected"
    IGNORED = "ignored"
    CANCELLATION = "cancellation"  # the caller was cancelled: never counted as a failure


class BreakerState(_Named):
    """A circuit breaker's state (``shannon.breaker.state``): closed lets calls through, open rejects them,
    half_open lets probes through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class DropReason(_Named):
    """Why telemetry was not delivered (``shannon.telemetry.dropped``)."""

    QUEUE_FULL = "queue_full"  # the span queue was full: the exporter is slower than the work
    EXPORT_FAILED = "export_failed"  # the exporter gave up (backend down, refused, timed out)
    SHUTDOWN = "shutdown"  # ended after shutdown, or still queued when the shutdown budget ran out
    REJECTED = "rejected"  # the backend answered success but rejected these items (OTLP partial success)


class Severity(StrEnum):
    """Anomaly severity bands of the detector score (see docs/architecture.md)."""

    WARNING = "warning"
    CRITICAL = "critical"


# --------------------------------------------------------------------------- spans
SPAN_WAVE: Final = "wave {wave}"
SPAN_TASK: Final = "task {task}"
SPAN_OPERATION: Final = "{operation}"
SPAN_ATTEMPT: Final = "attempt {attempt}"
SPAN_REJECTED: Final = "rejected {operation}"
SPAN_HEDGE: Final = "hedge {attempt}"
SPAN_FALLBACK: Final = "fallback {operation}"
SPAN_SAGA: Final = "saga {saga}"
SPAN_SAGA_STEP: Final = "step {step}"
SPAN_COMPENSATION: Final = "compensate {step}"
SPAN_REMOTE: Final = "remote {task}"  # a wave task's function running on a Dask worker

EVENT_RETRY_SCHEDULED: Final = "shannon.retry.scheduled"
EVENT_BREAKER_TRANSITION: Final = "shannon.breaker.transition"
EVENT_DEGRADED: Final = "shannon.degraded"
EVENT_ANOMALY: Final = "shannon.anomaly"

# --------------------------------------------------------------------------- log records
# The logging hook's records: one logger per area, ``event.name`` (OTel semantic conventions) names
# what happened; the other fields are the attribute names above. See docs/logging.md.
LOGGER_RETRY: Final = "shannon_otel.retry"
LOGGER_BREAKER: Final = "shannon_otel.breaker"
LOGGER_TIMEOUT: Final = "shannon_otel.timeout"
LOGGER_FALLBACK: Final = "shannon_otel.fallback"
LOGGER_DEGRADE: Final = "shannon_otel.degrade"
LOGGER_SAGA: Final = "shannon_otel.saga"
LOGGER_ANOMALY: Final = "shannon_otel.anomaly"
LOGGER_HOOKS: Final = "shannon_otel"  # hook errors (the executor's guarded hook calls)
LOG_EVENT_NAME: Final = "event.name"  # a `logging` extra; semconv now deprecates the attribute (docs/logging.md)
LOG_EVENT_REJECTED: Final = "shannon.call.rejected"
LOG_EVENT_OPENED: Final = "shannon.breaker.opened"
LOG_EVENT_HALF_OPENED: Final = "shannon.breaker.half_opened"
LOG_EVENT_CLOSED: Final = "shannon.breaker.closed"
LOG_EVENT_TIMED_OUT: Final = "shannon.timed_out"
LOG_EVENT_FALLBACK: Final = "shannon.fallback"
LOG_EVENT_COMPENSATED: Final = "shannon.saga.compensated"
LOG_EVENT_COMPENSATION_FAILED: Final = "shannon.saga.compensation_failed"
# the executor's own record (not the hook's): tasks a streamed list gained after its wave had taken its last one
LOG_EVENT_LATE_TASKS: Final = "shannon.wave.tasks_not_run"
LATE_COUNT: Final = "shannon.wave.tasks_not_run.count"
LOG_EVENT_INPUT_CUT: Final = "shannon.wave.input_cut"
INPUT_CUT_INDEX: Final = "shannon.wave.input_cut.index"  # the tasks the wave had taken from its list then
LOG_REPEATS: Final = "shannon.log.repeats"  # occurrences one summarised record stands for
LOG_INTERVAL: Final = "shannon.log.interval"  # seconds the summarised record covers
EXCEPTION_MESSAGE: Final = "exception.message"  # OTel semantic conventions; opt-in only
# The rest of the OTel `exception` span event, which the OTel hook writes itself (_otel/_exception.py): once
# per exception, without `exception.escaped` (deprecated by the semantic conventions)
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
# What the library writes of an exception is cut to these many characters (the message wherever it goes: status
# descriptions, `exception.message`, log fields; each line of `exception.stacktrace`, and the whole of it): a
# 10 MB message made each attempt span 30 MB, past a collector's 4 MB gRPC limit, so its batch was dropped whole
MESSAGE_MAX_LENGTH: Final = 4096
STACKTRACE_MAX_LENGTH: Final = 32768

# --------------------------------------------------------------------------- metrics
# Seconds-unit histograms need explicit boundaries: the SDK defaults are millisecond-scale. Up to an hour, as
# the wave's: a task of an agent or a training step runs for many minutes (docs/runbook.md's 25-minute tasks), and
# queue waits of a long wave too; past the last boundary every quantile reads that boundary.
DURATION_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)
# A wave of such tasks runs for hours (a 40-minute stall window per wave is the runbook's example)
WAVE_DURATION_BUCKETS_S: Final = (
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 7200.0, 21600.0, 86400.0,
)
ATTEMPT_BUCKETS: Final = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)
# The GenAI semantic conventions' bucket advice for token counts (gen_ai.client.token.usage), all 14 of it:
# a task sums many model calls, so one past 4194304 tokens is no rarity (its quantiles read 4194304 without these).
TOKEN_BUCKETS: Final = (
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
)

# The OTLP -> Prometheus unit translation of the collector's exporter (UCUM units to Prometheus base-unit
# words; "/x" becomes "per_x"; annotations in braces are dropped; an unknown unit is kept, cleaned to letters,
# digits and "_").
_UNIT_WORDS: Final = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "%": "percent", "1": "",
}
_PER_UNIT_WORDS: Final = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month",
                          "y": "year"}


_BRACES: Final = frozenset("{}")


def _unit_word(word: str) -> str:
    """A unit word cleaned as the collector cleans it: the runs of letters and digits joined by ``_``
    (``s.`` -> ``s``, ``_total`` -> ``total``, ``.`` -> nothing). Appended as written, such a unit left a
    trailing or doubled ``_`` in the name (``x_s_``, ``x__total_total``)."""
    return "_".join(t for t in re.split(r"[^a-zA-Z0-9]", word) if t)


def _holds(tokens: list[str], word: str) -> bool:
    """Whether the name's tokens hold the unit word's, in a row: the specification appends a unit "unless the
    metric name already contains" it (``x.m.s`` of unit ``m.s`` stays ``x_m_s``; the collector, comparing
    ``m_s`` with single tokens, writes ``x_m_s_m_s``)."""
    parts = word.split("_")
    return any(tokens[i:i + len(parts)] == parts for i in range(len(tokens) - len(parts) + 1))


def _series_tokens(name: str, unit: str, kind: str) -> list[str]:
    """The collector's name translation (its exporter's ``_total``, ``_ratio`` and unit rules), as tokens:
    the name split at every character that is not a letter, digit or ``:`` (``_`` and ``.`` included),
    the unit's words appended unless the name holds them already, counters ending in one ``total`` and
    unit-``1`` gauges in one ``ratio`` (``http.requests_total`` -> ``http_requests_total``)."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]", name) if t]
    # The micro prefix written as the micro sign or Greek mu (not UCUM, which spells it "u"): cleaned to ASCII
    # letters it left "s", read as seconds (x_s for "\u00b5s").
    main, _, per = (part.strip().replace("\u00b5", "u").replace("\u03bc", "u") for part in unit.partition("/"))
    if not _BRACES & set(main) and (word := _unit_word(_UNIT_WORDS.get(main, main))) and not _holds(tokens, word):
        tokens.append(word)
    if not _BRACES & set(per) and (word := _unit_word(_PER_UNIT_WORDS.get(per, per))) and not _holds(tokens, word):
        tokens += ["per", word]
    if kind == "counter":
        tokens = [*(t for t in tokens if t != "total"), "total"]
    elif kind == "gauge" and unit == "1":
        tokens = [*(t for t in tokens if t != "ratio"), "ratio"]
    return tokens


Kind = Literal["histogram", "counter", "updowncounter", "gauge"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One instrument of the contract; ``prometheus`` is its name after OTLP->Prometheus translation."""

    name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...]
    buckets: tuple[float, ...] | None = None

    @property
    def prometheus(self) -> str:
        """The series name Prometheus shows (OTLP -> Prometheus translation with unit suffixes on).

        Histograms add ``_bucket``/``_sum``/``_count`` to this name.
        """
        name = "_".join(_series_tokens(self.name, self.unit, self.kind))
        return "_" + name if name[:1].isdigit() else name


TASK_DURATION: Final = MetricSpec(
    "shannon.task.duration", "histogram", "s",
    "Wall time of one task of a wave, from start of execution to outcome (queue wait excluded).",
    (WAVE_NAME, TASK_OUTCOME, ERROR_TYPE), DURATION_BUCKETS_S,
)
TASK_QUEUE_WAIT_DURATION: Final = MetricSpec(
    "shannon.task.queue_wait.duration", "histogram", "s",
    "Time a task waited for a concurrency slot, resource pool or rate limit before it started.",
    (WAVE_NAME,), DURATION_BUCKETS_S,
)
TASK_OUTCOMES: Final = MetricSpec(
    "shannon.task.outcomes", "counter", "{task}",
    "Tasks finished, by outcome (success, failure, timeout, cancellation).",
    (WAVE_NAME, TASK_OUTCOME, ERROR_TYPE),
)
TASKS_ACTIVE: Final = MetricSpec(
    "shannon.task.active", "updowncounter", "{task}", "Tasks running now.", (WAVE_NAME,),
)
TASKS_PENDING: Final = MetricSpec(
    "shannon.task.pending", "updowncounter", "{task}",
    "Tasks of running waves not started yet: of a sized input, every task waiting for a slot, pool or rate "
    "limit or not yet dispatched; of a lazy input (and past a sized input's length at the start: a list extended "
    "while streamed), the tasks taken from it that wait for a pool or rate limit.",
    (WAVE_NAME,),
)
WAVE_DURATION: Final = MetricSpec(
    "shannon.wave.duration", "histogram", "s",
    "Wall time of one wave; error.type as on its span when it ended in error (its own error's, its failed tasks' "
    "one type, else _OTHER).",
    (WAVE_NAME, TASK_OUTCOME, ERROR_TYPE), WAVE_DURATION_BUCKETS_S,
)
WAVE_EFFICIENCY: Final = MetricSpec(
    "shannon.wave.parallel_efficiency", "gauge", "1",
    "Busy task time / (wave wall time x the slots the wave could use: max_concurrency capped by its task count, "
    "batch_size and a stream's buffer) of the last finished wave, in [0, 1].",
    (WAVE_NAME,),
)
TASK_TOKENS: Final = MetricSpec(
    "shannon.task.tokens", "histogram", "{token}",
    "Tokens one task recorded (all its model calls), by token type (input, output).",
    (WAVE_NAME, TOKEN_TYPE), TOKEN_BUCKETS,
)
# "USD" is no UCUM unit (UCUM has no currencies): a UCUM annotation, as the semantic conventions write a
# non-unit ({request}, {token}). The Prometheus translation drops annotations: shannon_task_cost_total, not
# shannon_task_cost_USD_total (an upper-case unit word that breaks Prometheus' snake_case naming).
TASK_COST: Final = MetricSpec(
    "shannon.task.cost", "counter", "{USD}", "Cost the tasks recorded, in US dollars, summed.", (WAVE_NAME,),
)

RETRY_ATTEMPTS: Final = MetricSpec(
    "shannon.retry.attempts", "histogram", "{attempt}", "Attempts one protected call took.",
    (OPERATION, CALL_OUTCOME), ATTEMPT_BUCKETS,
)
RETRY_DELAY_DURATION: Final = MetricSpec(
    "shannon.retry.delay", "histogram", "s",
    "Backoff delay waited before a retry, recorded as the retry starts (a wait cut short: none).",
    (OPERATION,), DURATION_BUCKETS_S,
)
CALLS: Final = MetricSpec(
    "shannon.calls", "counter", "{call}",
    "Calls through a protected operation or breaker, by outcome (success, failure, rejected, ignored, "
    "cancellation).",
    (OPERATION, CALL_OUTCOME, ERROR_TYPE),
)
BREAKER_STATE_METRIC: Final = MetricSpec(
    "shannon.breaker.state", "updowncounter", "1",
    "1 for the breaker's current state, 0 for the others (one series per state).",
    (BREAKER_NAME, BREAKER_STATE),
)
BREAKER_TRANSITIONS: Final = MetricSpec(
    "shannon.breaker.transitions", "counter", "{transition}", "Circuit breaker state changes.",
    (BREAKER_NAME, BREAKER_FROM, BREAKER_TO),
)
TIMEOUTS: Final = MetricSpec(
    "shannon.timeouts", "counter", "{timeout}", "Operations cut off by a timeout policy.", (OPERATION,),
)
FALLBACKS: Final = MetricSpec(
    "shannon.fallbacks", "counter", "{fallback}",
    "Fallbacks run after the primary failed, by the primary's error type (one that failed too is counted).",
    (OPERATION, ERROR_TYPE),
)
DEGRADATIONS: Final = MetricSpec(
    "shannon.degradations", "counter", "{degradation}", "Degraded results served, by mode and reason.",
    (OPERATION, DEGRADE_MODE, DEGRADE_REASON),
)
COMPENSATIONS: Final = MetricSpec(
    "shannon.compensations", "counter", "{compensation}", "Saga compensations run, by outcome.",
    (SAGA_NAME, COMPENSATION_OUTCOME),
)
HEDGES: Final = MetricSpec(
    "shannon.hedges", "counter", "{attempt}",
    "Hedged (extra) attempts a Hedge launched, counted when each starts (a retry inside one is not another).",
    (OPERATION,),
)

HOOK_ERRORS: Final = MetricSpec(
    "shannon.hook.errors", "counter", "{error}",
    "Exceptions raised by hooks and observers (and a wave's on_progress: method on_progress), isolated (never "
    "raised into the user's call), by hook and method.",
    (HOOK_NAME, HOOK_METHOD, ERROR_TYPE),
)

ANOMALY_SCORE: Final = MetricSpec(
    "shannon.anomaly.score", "gauge", "1",
    "Latest anomaly score in [0, 1] of one watched series (signal x wave/operation); a series the detector "
    "evicted (max_series) leaves the gauge.",
    (ANOMALY_SERIES, ANOMALY_SIGNAL),
)
ANOMALY_EVENTS: Final = MetricSpec(
    "shannon.anomaly.events", "counter", "{anomaly}", "Anomalies detected, by signal and severity.",
    (ANOMALY_SERIES, ANOMALY_SIGNAL, ANOMALY_SEVERITY),
)

TELEMETRY_DROPPED: Final = MetricSpec(
    "shannon.telemetry.dropped", "counter", "{item}",
    "Spans, metric points or log records that configure()'s exporters did not deliver, by signal and reason.",
    (TELEMETRY_SIGNAL, TELEMETRY_DROP_REASON),
)

SHARED_ERRORS: Final = MetricSpec(
    "shannon.shared.errors", "counter", "{error}",
    "Shared-state (Redis) calls that failed or timed out, by operation; the fault policy applied instead.",
    (SHARED_OPERATION, ERROR_TYPE),
)
SHARED_DURATION: Final = MetricSpec(
    "shannon.shared.duration", "histogram", "s",
    "Latency of successful shared-state (Redis) calls, by operation.",
    (SHARED_OPERATION,), DURATION_BUCKETS_S,
)
SHARED_AVAILABLE: Final = MetricSpec(
    "shannon.shared.available", "gauge", "1",
    "1 while the shared state (Redis) answers, 0 while the fault policy (local state or rejection) applies.",
    (SHARED_PREFIX,),
)
METRICS: Final[tuple[MetricSpec, ...]] = (
    TASK_DURATION, TASK_QUEUE_WAIT_DURATION, TASK_OUTCOMES, TASKS_ACTIVE, TASKS_PENDING, WAVE_DURATION,
    WAVE_EFFICIENCY, TASK_TOKENS, TASK_COST, RETRY_ATTEMPTS, RETRY_DELAY_DURATION, CALLS,
    BREAKER_STATE_METRIC, BREAKER_TRANSITIONS, TIMEOUTS, FALLBACKS, DEGRADATIONS, COMPENSATIONS, HEDGES,
    HOOK_ERRORS, ANOMALY_SCORE, ANOMALY_EVENTS, TELEMETRY_DROPPED,
    SHARED_ERRORS, SHARED_DURATION, SHARED_AVAILABLE,
)
