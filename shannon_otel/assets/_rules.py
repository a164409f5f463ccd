"""Prometheus recording and alerting rules for shannon-otel, following the monitoring-mixin conventions.

CamelCase alert names prefixed ``Shannon``, a ``severity`` label, a ``summary`` and a templated
``description`` annotation, a ``runbook_url`` to the section of docs/runbook.md named like the alert
(lower-cased, GitHub's anchor) and a ``traces_url`` opening the matching traces in Jaeger. Recording
rules are named ``level:metric:operations`` (labels kept : series : what was done to it).

Thresholds fit real workloads: every ratio alert but the error-budget burn has a minimum-count guard (a
wave finishing one task in five minutes says nothing; the budget judges low traffic by its objective), the
stall window can be set per wave, and the unsupervised anomaly detector only warns. Counters are counted
(:func:`events`), not ``rate()``d: a series' first value and each life of a restarted process count.
"""

from __future__ import annotations

import re
from typing import Any

from shannon_otel import _telemetry as t

from . import _promql as q

RUNBOOK_URL = "https://github.com/shannon-otel/shannon-otel/blob/main/docs/runbook.md"
JAEGER_URL = "http://localhost:16686"  # docker-compose.yaml's Jaeger UI; scripts/stack: --jaeger-url
ERROR_RATIO_HIGH = 0.1  # ShannonTaskErrorRateHigh's threshold (the overview's error ratio turns red there)
SLO_TARGET = 0.99  # share of finished tasks that succeed (cancellations excluded from neither side)
STALL_AFTER = "15m"
# (severity, for, pairs of (long window, short window, burn-rate factor)): the SRE workbook's multiwindow,
# multi-burn-rate alerts for a 30-day budget (chapter 5, "Alerting on SLOs", its sixth and recommended
# approach): 2% of it spent in 1h or 5% in 6h pages, 10% in 1d or in 3d opens a ticket. An alert fires when
# either of its pairs burns.
BURN_ALERTS = (
    ("critical", "2m", (("1h", "5m", 14.4), ("6h", "30m", 6.0))),
    ("warning", "15m", (("1d", "2h", 3.0), ("3d", "6h", 1.0))),
)
# Windows up to TILED_AFTER are counted from the counters (a 2h count in 60 s steps); a longer one is the sum of
# consecutive BASE_WINDOW counts, which tile it exactly when the rule evaluation interval divides BASE_WINDOW
# (15s, 30s, 1m: not 2m), and lags the counters by up to BASE_WINDOW (the samples are at its multiples).
BASE_WINDOW = "5m"
TILED_AFTER = "2h"
# Prometheus' duration syntax (units largest first, each at most once: 1h30m, 1w, 90s); > 0 checked apart.
_DURATION = re.compile(r"^(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?$")

Rule = dict[str, Any]
# The step of the rules' event counts (q.events): the default scrape interval of collector-config/prometheus.yml;
# a long window (a stall window of hours) is counted in 120 steps.
EVENT_STEP_S = 15

# Jaeger's service is service.name, which the series carry unchanged as ``service_name`` (the bundled collector's
# resource_to_telemetry_conversion; every alert keeps it beside ``job``, see q.by). ``job`` is "namespace/name" and
# a name may hold "/" itself (``payments/api``): cutting ``job`` at its last "/" is only the fallback for series
# without ``service_name``.
_SERVICE = (f'{{{{ if $labels.{q.SERVICE_NAME} }}}}{{{{ $labels.{q.SERVICE_NAME} | urlquery }}}}'
            f'{{{{ else }}}}{{{{ $labels.{q.JOB} | reReplaceAll "^.*/" "" | urlquery }}}}{{{{ end }}}}')
# A traces_url searches the time before the evaluation that rendered it, and Jaeger matches a span by its start:
# an hour for the spans of a call, a breaker or a task; a day (a long wave's run: WAVE_DURATION_BUCKETS_S) for the
# wave span of a run, which starts with the run however long ago it ended.
LINK_LOOKBACK_S = 3600
WAVE_LINK_LOOKBACK_S = 86400


def _micros(expression: str) -> str:
    """Go template writing the value of the PromQL scalar ``expression`` (seconds, read at the rule's
    evaluation time) in whole microseconds, the unit of Jaeger's ``start``/``end``."""
    return f'{{{{ with query "({expression}) * 1e6" }}}}{{{{ . | first | value | printf "%.0f" }}}}{{{{ end }}}}'


def _time_range(lookback_s: int) -> str:
    """Jaeger's search range: the ``lookback_s`` seconds before the evaluation, as the Jaeger UI writes a
    custom range (``lookback=custom`` with ``start``/``end``). Jaeger's query API reads no ``lookback``
    (only the UI's form does): ``lookback=1h`` alone searched Jaeger's default two days, so the links showed
    failures of the day before beside those the alert is about."""
    return f"&lookback=custom&start={_micros(f'time() - {lookback_s}')}&end={_micros('time()')}"


def _json_text(label: str) -> str:
    """Go template pipeline writing the value of ``label`` as the inside of a JSON string (Jaeger reads ``tags``
    with Go's encoding/json). Not ``printf "%q"``: Go's quoting writes a control character as ``\\x01`` (or
    ``\\a``, ``\\v``), which JSON has not, and Jaeger answered such a link "400 malformed 'tags' parameter".
    ``js`` escapes quotes, backslashes and control characters (``\\u0001``) as JSON does, and ``'`` as ``\\'``,
    which JSON has not: put back. Limit: a character outside the BMP that Go does not print (private use,
    unassigned) gets 5-6 hex digits, so a name holding one is not found."""
    return f"$labels.{label} | js | reReplaceAll `\\\\'` `'`"


def _label_tags(attributes: dict[str, str]) -> str:
    """Jaeger's ``tags`` parameter (a Go template) matching span attributes to alert labels' values.

    ``attributes`` maps an attribute key to the label holding its value. Jaeger matches span
    attributes and span event attributes, all on one span.
    """
    fields = ",".join(f'\\"{a}\\":\\"%s\\"' for a in attributes)
    labels = " ".join(f"({_json_text(label)})" for label in attributes.values())
    return f'&tags={{{{ printf "{{{fields}}}" {labels} | urlquery }}}}'


def _failed_wave(label: str) -> str:
    """Jaeger's ``tags`` parameter matching the failed runs of the wave in ``label``.

    A failed task span carries the wave's name and the outcome ``failure`` (exported when the task ends, so
    a run still going is found), and so does the wave span of a run in which a task failed or timed out
    (exported when the run ends): the search finds the runs of that wave the task error alerts count, not
    every failing wave of the service.
    """
    fields = f'\\"{t.WAVE_NAME}\\":\\"%s\\",\\"{t.TASK_OUTCOME}\\":\\"{t.Outcome.FAILURE.value}\\"'
    return f'&tags={{{{ printf "{{{fields}}}" ({_json_text(label)}) | urlquery }}}}'


def _wave_span(label: str) -> str:
    """Go template producing the wave span name from the contract's SPAN_WAVE pattern."""
    return '{{ printf "' + t.SPAN_WAVE.format(wave="%s") + f'" $labels.{label} | urlquery }}}}'


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str, *, jaeger: str,
           runbook: str, traces: str | None, lookback_s: int = LINK_LOOKBACK_S) -> Rule:
    """An alerting rule; ``traces`` narrows its Jaeger search (of the ``lookback_s`` seconds before the
    evaluation), None for alerts about no service's spans."""
    annotations = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{runbook}#{name.lower()}",
    }
    if traces is not None:
        annotations["traces_url"] = f"{jaeger}/search?service={_SERVICE}{_time_range(lookback_s)}{traces}"
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity}, "annotations": annotations}


def _anomaly(jaeger: str, runbook: str) -> Rule:
    grouping = q.by(q.JOB, t.ANOMALY_SERIES, t.ANOMALY_SIGNAL)
    # Fires on the first event and stays firing for 15 minutes after the last one. Not `for: 10m` of
    # events in every window: a sustained shift is reported once or twice (the detector demotes repeats
    # and adapts), so such a rule never left "pending" for the shifts it exists for. The detector's own
    # false-event rate (docs/runbook.md: <= 0.05 per series-day) is what keeps this rule quiet.
    # q.events, not increase(): the counter series appears with the first anomaly, whose increment
    # increase() cannot see.
    expr = f"sum by ({grouping}) (\n  {events(q.sel(t.ANOMALY_EVENTS), '15m')}\n) > 0"
    series, signal = q.label(t.ANOMALY_SERIES), q.label(t.ANOMALY_SIGNAL)
    return _alert(
        "ShannonAnomalyDetected", expr, "0m", "warning",
        "shannon-otel detected an anomaly in one series.",
        f"Signal {{{{ $labels.{signal} }}}} of series {{{{ $labels.{series} }}}} (job {{{{ $labels.job }}}}) "
        f"reported {{{{ $value | humanize }}}} anomaly event(s) in the last 15 minutes. A {t.EVENT_ANOMALY} span "
        f"event marks each in its trace: on the culprit's span (slowest, failed or retried task or call) if it was "
        f"still open when the tick closed, else on the task or call that closed it.",
        jaeger=jaeger, runbook=runbook, traces=_label_tags({t.ANOMALY_SERIES: series, t.ANOMALY_SIGNAL: signal}),
    )


def _breaker(jaeger: str, runbook: str) -> Rule:
    name = q.label(t.BREAKER_NAME)
    not_closed = q.sel(t.BREAKER_STATE_METRIC, q.ne(t.BREAKER_STATE, t.BreakerState.CLOSED))
    return _alert(
        "ShannonCircuitBreakerOpenTooLong",
        f"max by ({q.by(q.JOB, q.INSTANCE, t.BREAKER_NAME)}) ({not_closed}) > 0", "5m", "warning",
        "A circuit breaker has not closed for 5 minutes.",
        f"Circuit breaker {{{{ $labels.{name} }}}} of job {{{{ $labels.job }}}} (instance "
        f"{{{{ $labels.instance }}}}) has been open or half-open for more than 5 minutes: its calls are "
        f"rejected and its probes keep failing, or no call has come to move it on (a breaker goes half-open "
        f"only at its first call after reset_timeout).",
        # The operation spans it guards, their attempt and rejection spans and its transition events all
        # carry the breaker's name; their shannon.operation is the policy's name, which may differ.
        jaeger=jaeger, runbook=runbook, traces=_label_tags({t.BREAKER_NAME: name}),
    )


# ----------------------------------------------------------------------------- recording rules
WAVE = (q.JOB, t.WAVE_NAME)
OPERATION = (q.JOB, t.OPERATION)
ERRORS = q.any_of(t.TASK_OUTCOME, (t.Outcome.FAILURE, t.Outcome.TIMEOUT))


def recorded(level: tuple[str, ...], metric: str, operations: str) -> str:
    """A recording rule name ``level:metric:operations`` (``job_shannon_wave_name:...:rate5m``)."""
    return f"{'_'.join(q.label(a) for a in level)}:{metric}:{operations}"


def _task_counts(windows: tuple[str, ...]) -> list[Rule]:
    """Per wave: finished tasks and errors over each window, and the error ratio.

    Counts (:func:`events`), not ``rate()``: a counter series appears with its first export, which
    ``rate()`` cannot see, so a batch process exporting once or twice (every run a new
    ``service.instance.id``, a new series) had no rate at all, however many of its tasks failed. Windows
    up to :data:`TILED_AFTER` (the page's 1h, the short windows) are counted from the counters, with no lag;
    a longer one sums the base counts a base window apart, which tile it: a 3-day window costs 864 samples
    of one series per wave, not a subquery over every counter.
    """
    rules: list[Rule] = []
    base = {what: recorded(WAVE, f"shannon_task_{what}", f"increase{BASE_WINDOW}") for what in ("outcomes", "errors")}
    for window in windows:
        tasks = recorded(WAVE, "shannon_task_outcomes", f"increase{window}")
        errors = recorded(WAVE, "shannon_task_errors", f"increase{window}")
        if _seconds(window) <= _seconds(TILED_AFTER):
            counted = [q.sum_by(WAVE, events(q.sel(t.TASK_OUTCOMES), window)),
                       q.sum_by(WAVE, events(q.sel(t.TASK_OUTCOMES, ERRORS), window))]
        else:
            counted = [_tiled(base["outcomes"], window), _tiled(base["errors"], window)]
        rules += [
            {"record": tasks, "expr": counted[0]},
            {"record": errors, "expr": counted[1]},
            # no value, not 0 / 0 = NaN, for a wave that finished nothing in the window
            {"record": recorded(WAVE, "shannon_task_error", f"ratio_increase{window}"),
             "expr": f"({errors} or {tasks} * 0)\n/\n({tasks} > 0)"},
        ]
    return rules


def _tiled(base: str, window: str) -> str:
    """The sum of recorded base-window counts ``base`` over ``window``: one sample every base window.

    The samples are at multiples of the base window and each is the count up to its evaluation, so
    consecutive ones cover consecutive base windows when the evaluation interval divides the base window.
    The count lags up to one base window behind the counters: only windows longer than :data:`TILED_AFTER`
    (6h, 1d, 3d) are tiled, and their pairs' short windows are counted directly.
    """
    return f"sum_over_time({base}[{_just_under(window)}:{BASE_WINDOW}])"


def recording_rules() -> list[Rule]:
    """Task counts and error ratios per wave, call and retry rates per operation, duration percentiles."""
    windows = tuple(sorted({w for _, _, pairs in BURN_ALERTS for pair in pairs for w in pair[:2]} | {BASE_WINDOW},
                           key=_seconds))
    rules = _task_counts(windows)
    seconds = _seconds(BASE_WINDOW)
    rules += [
        # per second over the window: growth (:func:`events`, which sees a new series' first value) / seconds
        {"record": recorded(OPERATION, "shannon_calls", f"rate{BASE_WINDOW}"),
         "expr": f"{q.sum_by(OPERATION, events(q.sel(t.CALLS), BASE_WINDOW))}\n/ {seconds}"},
        {"record": recorded(OPERATION, "shannon_retries", f"rate{BASE_WINDOW}"),
         "expr": f"{q.sum_by(OPERATION, events(q.sel(t.RETRY_DELAY_DURATION, suffix='_count'), BASE_WINDOW))}"
                 f"\n/ {seconds}"},
    ]
    buckets = q.sum_by(("le", *WAVE), events(q.sel(t.TASK_DURATION, suffix="_bucket"), BASE_WINDOW))
    for pct in (0.5, 0.99):
        rules.append({
            "record": recorded(WAVE, "shannon_task_duration_seconds", f"p{round(pct * 100)}_increase{BASE_WINDOW}"),
            # no value, not NaN, for a wave that finished nothing in the window
            "expr": f"histogram_quantile({pct}, {buckets}) >= 0",
        })
    return rules


# ----------------------------------------------------------------------------- task alerts
def _error_rate(jaeger: str, runbook: str, min_tasks: int) -> Rule:
    # Counts (q.events), not rate(): a counter series appears with its first export, which rate() cannot
    # see; a batch process exporting once or twice (a wave of a few minutes) had both rates 0, or its
    # failure series' first failures missing, and never fired however many of its tasks failed.
    errors = q.sum_by(WAVE, events(q.sel(t.TASK_OUTCOMES, ERRORS), "10m"))
    finished = q.sum_by(WAVE, events(q.sel(t.TASK_OUTCOMES), "10m"))
    expr = f"{errors}\n/\n{finished}\n> {ERROR_RATIO_HIGH}\nand on ({q.by(*WAVE)})\n{finished} >= {min_tasks}"
    wave = q.label(t.WAVE_NAME)
    return _alert(
        "ShannonTaskErrorRateHigh", expr, "5m", "warning",
        "More than 10% of the tasks of a wave fail or time out.",
        f"{{{{ $value | humanizePercentage }}}} of the tasks of wave {{{{ $labels.{wave} }}}} of job "
        f"{{{{ $labels.job }}}} failed or timed out over the last 10 minutes (cancellations not counted; "
        f"waves finishing fewer than {min_tasks} tasks in 10 minutes are left to the error budget alerts).",
        jaeger=jaeger, runbook=runbook, traces=_failed_wave(wave), lookback_s=WAVE_LINK_LOOKBACK_S,
    )


def _burn_rate(jaeger: str, runbook: str, slo_target: float, severity: str, for_: str,
               pairs: tuple[tuple[str, str, float], ...]) -> Rule:
    """The SRE workbook's multiwindow, multi-burn-rate alert: any pair of (long, short) windows whose error
    ratios both exceed ``factor`` times the error budget."""
    budget = 1 - slo_target
    parts = []
    for long, short, factor in pairs:
        # An error ratio is at most 1: below a target of 1 - 1/factor the pair asked for more and could never
        # fire (--slo-target 0.8 made the page impossible, a wave failing every task paged nobody). Such a pair
        # fires on the fastest burn there is, every finished task failing.
        condition = f"> {factor * budget:.6g}" if factor * budget < 1 else ">= 1"
        ratio = [recorded(WAVE, "shannon_task_error", f"ratio_increase{w}") for w in (long, short)]
        parts.append(f"(\n  {ratio[0]} {condition}\n  and\n  {ratio[1]} {condition}\n)")
    wave = q.label(t.WAVE_NAME)
    spent = " or ".join(f"{100 * min(factor, 1 / budget) * _seconds(long) / (30 * 86400):.3g}% of it in {long}"
                        for long, _, factor in pairs)
    burns = " or ".join(f"{factor:g}x the budget over {long} and {short}" if factor * budget < 1
                        else f"every task failing over {long} and {short}" for long, short, factor in pairs)
    return _alert(
        "ShannonTaskErrorBudgetBurn", "\nor\n".join(parts), for_, severity,
        f"A wave spends its 30-day task error budget too fast: {spent}.",
        f"Wave {{{{ $labels.{wave} }}}} of job {{{{ $labels.job }}}}: {{{{ $value | humanizePercentage }}}} "
        f"of its tasks failed or timed out over the long window that fired, against a {slo_target:.4g} "
        f"success objective ({burns}).",
        jaeger=jaeger, runbook=runbook, traces=_failed_wave(wave),
        # the failures the alert counts: over its longest window (a slow burn's are spread over days)
        lookback_s=max(WAVE_LINK_LOOKBACK_S, *(_seconds(long) for long, _, _ in pairs)),
    )


def _in_flight(window: str, *matchers: str) -> str:
    """Waves with tasks active (or pending) now and ``window`` ago."""
    parts = []
    for spec in (t.TASKS_ACTIVE, t.TASKS_PENDING):
        selector = q.sel(spec, *matchers)
        parts.append(f"  {q.sum_by(WAVE, selector)} > 0\n  and on ({q.by(*WAVE)})\n"
                     f"  {q.sum_by(WAVE, f'{selector} offset {window}')} > 0")
    return "\n  or\n".join(parts)


def _wave_stalled(jaeger: str, runbook: str, default: str, per_wave: dict[str, str]) -> Rule:
    """Waves in flight now and a window ago with no task finished in between: ``per_wave`` sets the
    window of some waves, the rest get ``default`` (a wave whose tasks legitimately take 25 minutes
    gets, say, ``40m``). A wave younger than its window never fires."""
    grouping = q.by(*WAVE)

    def stalled(window: str, *matchers: str) -> str:
        finished = q.sum_by(WAVE, events(q.sel(t.TASK_OUTCOMES, *matchers), window))
        return f"(\n{_in_flight(window, *matchers)}\n)\nunless on ({grouping})\n{finished} > 0"

    parts = [stalled(default, *([f'{q.label(t.WAVE_NAME)}!~"{_alternation(per_wave)}"'] if per_wave else []))]
    parts += [stalled(window, q.eq(t.WAVE_NAME, name)) for name, window in sorted(per_wave.items())]
    wave = q.label(t.WAVE_NAME)
    return _alert(
        "ShannonWaveStalled", "\nor\n".join(f"(\n{_indent(part)}\n)" for part in parts) if per_wave else parts[0],
        "5m", "warning", "A wave has tasks in flight but none finished in its stall window.",
        f"Wave {{{{ $labels.{wave} }}}} of job {{{{ $labels.job }}}} has had active or pending tasks for "
        f"its whole stall window ({default} unless set per wave) and 5 minutes more, and no task of it "
        f"finished in that time.",
        jaeger=jaeger, runbook=runbook, traces=f"&operation={_wave_span(wave)}",
        # the stuck run's wave span ends (and is exported) only when it does: the runs before its stall window
        lookback_s=max(_seconds(w) for w in (default, *per_wave.values())) + WAVE_LINK_LOOKBACK_S,
    )


def events(selector: str, window: str) -> str:
    """:func:`q.events` over ``window`` in the rules' steps. The subquery range is ``window`` less 1 ms:
    its steps are multiples of the step, and a range of ``window`` holds one step more than it should
    when the evaluation falls on a multiple (it includes its left end), while ``window`` less a step (the
    range before) held one step less otherwise, as real Prometheus evaluates rule groups at an offset: a
    10-minute count covered 9m45s. Window less 1 ms holds window / step steps at any evaluation time."""
    window_s = max(_seconds(window), 2)
    step_s = min(max(EVENT_STEP_S, -(-window_s // 120)), window_s // 2)
    return q.events(selector, _just_under(f"{window_s}s"), f"{step_s}s")


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    # ms parts (a stall window of 1h30m500ms) round down: the windows that matter are minutes and more
    return sum(int(n) * units[unit] for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", duration) if unit != "ms")


def _just_under(duration: str) -> str:
    """``duration`` less 1 ms, in Prometheus' syntax (``10m`` -> ``9m59s999ms``)."""
    ms, out = _seconds(duration) * 1000 - 1, ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


def _alternation(per_wave: dict[str, str]) -> str:
    return "|".join(q.string(re.escape(name)) for name in sorted(per_wave))


# ----------------------------------------------------------------------------- resilience alerts
def _retry_storm(jaeger: str, runbook: str, min_retries: int) -> Rule:
    # One retry delay is recorded per retry, one attempts observation per call: their ratio is the
    # extra load retries put on the dependency, whatever the call rate (0.3 calls/s of an LLM
    # operation failing every attempt counts as much as 100/s). Retry(attempts=2) failing every
    # time makes 1 retry per call; healthy jitter stays far below 0.5.
    def counted(spec: t.MetricSpec, *matchers: str) -> str:
        return q.sum_by(OPERATION, events(q.sel(spec, *matchers, suffix="_count"), "15m"))

    retries, calls = counted(t.RETRY_DELAY_DURATION), counted(t.RETRY_ATTEMPTS)
    grouping, op = q.by(*OPERATION), q.label(t.OPERATION)
    # An operation retrying with no call finished in the window (long backoffs, calls that never end) is the
    # worst storm, not a ratio: retries / 0 calls made the description read "+Inf times per call", and with no
    # attempts series at all (no call ever finished) the ratio had no value and the alert stayed quiet. Such
    # an operation's value is its retry count; the description tells the two apart by the same count of calls.
    ratio = f"(\n{_indent(retries)}\n/\n(\n{_indent(calls)} > 0\n)\n) >= 0.5"
    stuck = f"{retries}\nunless on ({grouping})\n{calls} > 0"
    expr = f"(\n{_indent(ratio)}\n  or\n{_indent(stuck)}\n)\nand on ({grouping})\n{retries} >= {min_retries}"
    # printf's %[1]q, %[2]q: the job and operation, quoted as PromQL strings, wherever the selector repeats
    finished = " ".join(counted(t.RETRY_ATTEMPTS, "job=%[1]q", f"{op}=%[2]q").split()) + " > 0"
    per_call = (f"Calls of operation {{{{ $labels.{op} }}}} of job {{{{ $labels.job }}}} were retried "
                f"{{{{ $value | humanize }}}} times per call over the last 15 minutes (at least {min_retries} "
                f"retries)")
    no_call = (f"Operation {{{{ $labels.{op} }}}} of job {{{{ $labels.job }}}} scheduled {{{{ $value | humanize }}}} "
               f"retries over the last 15 minutes and none of its calls finished in that window (long backoffs, "
               f"or calls that never end)")
    return _alert(
        "ShannonRetryStorm", expr,
        "5m", "warning", "Retries add at least half again the load of an operation.",
        f"{{{{ if query (printf `{finished}` $labels.job $labels.{op}) }}}}{per_call}{{{{ else }}}}{no_call}"
        f"{{{{ end }}}}: retries amplify the load on a dependency that is already failing.",
        jaeger=jaeger, runbook=runbook, traces=f"&operation={{{{ $labels.{op} | urlquery }}}}",
    )


# ----------------------------------------------------------------------------- the pipeline itself
# The collector's per-signal counters (``otelcol_<component>_<what>_<signal>_total``) of receivers and exporters.
COLLECTOR_SIGNALS = ("spans", "metric_points", "log_records")


def per_signal(metric: str, component: str, window: str = "5m") -> str:
    """``metric`` (``{signal}`` in it) summed by collector job and ``component`` over every signal.

    A plain ``or`` of the per-signal rates lost signals: a rate drops the metric name, so the rates of one
    receiver's spans and metric points have the same labels and ``or`` kept the first (an ``otlp``
    receiver refusing only metric points, or an exporter of two pipelines failing only one, never
    fired). Each rate is tagged with its signal first.
    """
    rates = [
        f'label_replace(rate({metric.format(signal=signal)}[{window}]), "signal", "{signal}", "", "")'
        for signal in COLLECTOR_SIGNALS
    ]
    return f"sum by (job, {component}) (\n  " + "\n  or\n  ".join(rates) + "\n)"


def _collector_alerts(jaeger: str, runbook: str) -> list[Rule]:
    """The collector's own telemetry (job ``otel-collector-self`` in collector-config/prometheus.yml)."""
    failed = per_signal("otelcol_exporter_send_failed_{signal}_total", "exporter")
    refused = per_signal("otelcol_receiver_refused_{signal}_total", "receiver")
    return [
        _alert("ShannonCollectorDown", 'up{job=~"otel-collector.*"} == 0', "5m", "critical",
               "Prometheus cannot scrape the OpenTelemetry Collector.",
               "Target {{ $labels.instance }} of scrape job {{ $labels.job }} is down: no shannon-otel "
               "metrics, span metrics or traces pass through it.",
               jaeger=jaeger, runbook=runbook, traces=None),
        _alert("ShannonCollectorExportFailing", f"{failed} > 0", "10m", "warning",
               "The OpenTelemetry Collector fails to export telemetry.",
               "Exporter {{ $labels.exporter }} of {{ $labels.job }} fails {{ $value | humanize }} spans, "
               "metric points or log records per second: telemetry is being lost.",
               jaeger=jaeger, runbook=runbook, traces=None),
        _alert("ShannonCollectorRefusingData", f"{refused} > 0", "10m", "warning",
               "The OpenTelemetry Collector refuses incoming telemetry.",
               "Receiver {{ $labels.receiver }} of {{ $labels.job }} refuses {{ $value | humanize }} spans, "
               "metric points or log records per second (memory_limiter back-pressure): the SDKs retry, then "
               "drop.",
               jaeger=jaeger, runbook=runbook, traces=None),
    ]


# PromQL durations are Go time.Durations (int64 nanoseconds): 292y passes `promtool check rules`, 300y is
# "duration out of range", a rule file Prometheus refuses to load
_MAX_DURATION_MS = (2**63 - 1) // 1_000_000
_UNIT_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000,
            "ms": 1}


def _duration_ms(value: str) -> int:
    """Milliseconds of a duration :data:`_DURATION` matched."""
    return sum(int(n) * _UNIT_MS[unit] for n, unit in re.findall(r"([0-9]+)(ms|[ywdhms])", value))


def _check(slo_target: float, stall_after: str, per_wave: dict[str, str]) -> None:
    if not 0 < slo_target < 1:
        raise ValueError(f"slo_target must be in (0, 1), got {slo_target!r}")
    for what, value in (("stall_after", stall_after), *((f"stall_after_wave[{k!r}]", v) for k, v in per_wave.items())):
        if not (value and _DURATION.match(value) and re.search("[1-9]", value)):
            raise ValueError(f"{what} must be a Prometheus duration > 0 such as 15m, 2h or 1h30m, got {value!r}")
        if _duration_ms(value) > _MAX_DURATION_MS:
            raise ValueError(f"{what} must be at most {_MAX_DURATION_MS // 1000}s (about 292y, what Prometheus "
                             f"parses), got {value!r}")


def alert_rules(*, jaeger_url: str = JAEGER_URL, runbook_url: str = RUNBOOK_URL, slo_target: float = SLO_TARGET,
                stall_after: str = STALL_AFTER, stall_after_wave: dict[str, str] | None = None,
                min_tasks: int = 20, min_retries: int = 20) -> dict[str, Any]:
    """The rule groups (Prometheus rule-file structure) with links to ``jaeger_url`` and ``runbook_url``.

    ``slo_target`` is the task success objective of the burn-rate alerts, ``stall_after`` the default
    stall window of a wave and ``stall_after_wave`` per-wave windows (wave name -> duration);
    ``min_tasks``/``min_retries`` are the minimum counts before a ratio may alert. Raises ValueError
    for a target outside (0, 1) or a malformed duration.
    """
    per_wave = dict(stall_after_wave or {})
    _check(slo_target, stall_after, per_wave)
    if min_tasks < 1 or min_retries < 1:
        raise ValueError(f"min_tasks and min_retries must be >= 1, got {min_tasks!r}, {min_retries!r}")
    j, r = jaeger_url.rstrip("/"), runbook_url  # "http://jaeger:16686/" + "/search" would be "//search"
    return {
        "groups": [
            {"name": "shannon-otel-recording", "rules": recording_rules()},
            {"name": "shannon-otel-tasks", "rules": [
                _error_rate(j, r, min_tasks), _wave_stalled(j, r, stall_after, per_wave),
                *(_burn_rate(j, r, slo_target, *alert) for alert in BURN_ALERTS),
            ]},
            {"name": "shannon-otel-resilience", "rules": [_retry_storm(j, r, min_retries), _breaker(j, r)]},
            {"name": "shannon-otel-anomalies", "rules": [_anomaly(j, r)]},
            {"name": "shannon-otel-pipeline", "rules": _collector_alerts(j, r)},
        ],
    }
