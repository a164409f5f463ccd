"""Prometheus alerting rules for shannon-otel, following the monitoring-mixin conventions.

CamelCase alert names prefixed ``Shannon``, a ``severity`` label, a ``summary`` and a templated
``description`` annotation, a ``runbook_url`` to the section of docs/runbook.md named like the alert
(lower-cased, GitHub's anchor) and a ``traces_url`` opening the matching traces in Jaeger.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from shannon_otel import _telemetry as t

from . import _promql as q

RUNBOOK_URL = "https://github.com/shannon-otel/shannon-otel/blob/main/docs/runbook.md"
JAEGER_URL = "http://localhost:16686"

Rule = dict[str, Any]

# Jaeger's service is service.name; ``job`` is "namespace/name" when service.namespace is set.
_SERVICE = '{{ $labels.job | reReplaceAll "^.*/" "" | urlquery }}'


def _tags(attributes: dict[str, str]) -> str:
    """Jaeger's ``tags`` search parameter (JSON, URL-encoded) for fixed attribute values."""
    return "&tags=" + quote(json.dumps(attributes, separators=(",", ":")), safe="")


def _label_tags(attributes: dict[str, str]) -> str:
    """Jaeger's ``tags`` parameter (a Go template) matching span attributes to alert labels' values.

    ``attributes`` maps an attribute key to the label holding its value. Jaeger matches span
    attributes and span event attributes, all on one span.
    """
    fields = ",".join(f'\\"{a}\\":%q' for a in attributes)
    labels = " ".join(f"$labels.{label}" for label in attributes.values())
    return f'&tags={{{{ printf "{{{fields}}}" {labels} | urlquery }}}}'


def _wave_span(label: str) -> str:
    """Go template producing the wave span name from the contract's SPAN_WAVE pattern."""
    return '{{ printf "' + t.SPAN_WAVE.format(wave="%s") + f'" $labels.{label} | urlquery }}}}'


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str, *, jaeger: str,
           runbook: str, traces: str) -> Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{runbook}#{name.lower()}",
            "traces_url": f"{jaeger}/search?service={_SERVICE}&lookback=1h{traces}",
        },
    }


def _anomaly(severity: t.Severity, jaeger: str, runbook: str) -> Rule:
    grouping = q.by(q.JOB, t.ANOMALY_SERIES, t.ANOMALY_SIGNAL)
    events = q.sel(t.ANOMALY_EVENTS, q.eq(t.ANOMALY_SEVERITY, severity))
    # q.events, not increase(): the counter series appears with the first anomaly, whose increment
    # increase() cannot see.
    expr = f"sum by ({grouping}) (\n  {q.events(events, '5m')}\n) > 0"
    series, signal = q.label(t.ANOMALY_SERIES), q.label(t.ANOMALY_SIGNAL)
    return _alert(
        "ShannonAnomalyDetected", expr, "0s", severity.value,
        f"shannon-otel detected a {severity.value} anomaly.",
        f"Signal {{{{ $labels.{signal} }}}} of series {{{{ $labels.{series} }}}} (job {{{{ $labels.job }}}}) "
        f"is anomalous: {{{{ $value | humanize }}}} {severity.value} anomaly event(s) in the last 5 minutes. "
        f"The offending task spans carry a {t.EVENT_ANOMALY} span event.",
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
        f"rejected and its probes keep failing.",
        # The operation spans it guards, their attempt and rejection spans and its transition events all
        # carry the breaker's name; their shannon.operation is the policy's name, which may differ.
        jaeger=jaeger, runbook=runbook, traces=_label_tags({t.BREAKER_NAME: name}),
    )


def _error_rate(jaeger: str, runbook: str) -> Rule:
    grouping = (q.JOB, t.WAVE_NAME)
    errors = q.sel(t.TASK_OUTCOMES, q.any_of(t.TASK_OUTCOME, (t.Outcome.FAILURE, t.Outcome.TIMEOUT)))
    expr = (
        f"{q.sum_by(grouping, q.rate(errors, '5m'))}\n/\n"
        f"{q.sum_by(grouping, q.rate(q.sel(t.TASK_OUTCOMES), '5m'))}\n> 0.1"
    )
    wave = q.label(t.WAVE_NAME)
    return _alert(
        "ShannonTaskErrorRateHigh", expr, "5m", "warning",
        "More than 10% of the tasks of a wave fail or time out.",
        f"{{{{ $value | humanizePercentage }}}} of the tasks of wave {{{{ $labels.{wave} }}}} of job "
        f"{{{{ $labels.job }}}} failed or timed out over the last 5 minutes (cancellations not counted).",
        jaeger=jaeger, runbook=runbook, traces=_tags({t.TASK_OUTCOME: t.Outcome.FAILURE.value}),
    )


def _retry_storm(jaeger: str, runbook: str) -> Rule:
    grouping = (q.JOB, t.OPERATION)
    per_call = q.mean(t.RETRY_ATTEMPTS, by_=grouping, window="5m")
    retries = q.sum_by(grouping, q.rate(q.sel(t.RETRY_DELAY_DURATION, suffix="_count"), "5m"))
    op = q.label(t.OPERATION)
    return _alert(
        "ShannonRetryStorm", f"(\n{_indent(per_call)}\n) > 2\nand on ({q.by(*grouping)})\n{retries} > 1", "5m",
        "warning", "Retries multiply the load of an operation by more than 2.",
        f"Calls of operation {{{{ $labels.{op} }}}} of job {{{{ $labels.job }}}} take "
        f"{{{{ $value | humanize }}}} attempts on average over the last 5 minutes, with more than one retry "
        f"per second: retries amplify the load on a dependency that is already failing.",
        jaeger=jaeger, runbook=runbook, traces=f"&operation={{{{ $labels.{op} | urlquery }}}}",
    )


def _wave_stalled(jaeger: str, runbook: str) -> Rule:
    grouping = (q.JOB, t.WAVE_NAME)
    in_flight = (
        f"  {q.sum_by(grouping, q.sel(t.TASKS_ACTIVE))} > 0\n"
        f"  or\n"
        f"  {q.sum_by(grouping, q.sel(t.TASKS_PENDING))} > 0"
    )
    finished = q.sum_by(grouping, q.events(q.sel(t.TASK_OUTCOMES), "10m"))
    wave = q.label(t.WAVE_NAME)
    return _alert(
        "ShannonWaveStalled", f"(\n{in_flight}\n)\nunless on ({q.by(*grouping)})\n{finished} > 0", "10m",
        "warning", "A wave has tasks in flight but none finished for 10 minutes.",
        f"Wave {{{{ $labels.{wave} }}}} of job {{{{ $labels.job }}}} has active or pending tasks, but no "
        f"task of it finished for at least 10 minutes.",
        jaeger=jaeger, runbook=runbook, traces=f"&operation={_wave_span(wave)}",
    )


def alert_rules(*, jaeger_url: str = JAEGER_URL, runbook_url: str = RUNBOOK_URL) -> dict[str, Any]:
    """The rule groups (Prometheus rule-file structure) with links to ``jaeger_url`` and ``runbook_url``."""
    return {
        "groups": [
            {"name": "shannon-otel-tasks", "rules": [
                _error_rate(jaeger_url, runbook_url), _wave_stalled(jaeger_url, runbook_url),
            ]},
            {"name": "shannon-otel-resilience", "rules": [
                _retry_storm(jaeger_url, runbook_url), _breaker(jaeger_url, runbook_url),
            ]},
            {"name": "shannon-otel-anomalies", "rules": [
                _anomaly(t.Severity.WARNING, jaeger_url, runbook_url),
                _anomaly(t.Severity.CRITICAL, jaeger_url, runbook_url),
            ]},
        ],
    }
