"""The overview dashboard: throughput, latency, outcomes, concurrency, efficiency, tokens and cost."""

from __future__ import annotations

from shannon_otel import _telemetry as t

from . import _grafana as g
from . import _panels as p
from . import _promql as q
from ._rules import ERROR_RATIO_HIGH, SLO_TARGET

UID = "shannon-otel-overview"

JOB = 'job=~"$job"'
WAVE = q.match(t.WAVE_NAME, "$wave")
ERRORS = q.any_of(t.TASK_OUTCOME, (t.Outcome.FAILURE, t.Outcome.TIMEOUT))
OUTCOME_COLORS = {
    t.Outcome.SUCCESS.value: "green", t.Outcome.FAILURE.value: "red", t.Outcome.TIMEOUT.value: "orange",
    t.Outcome.CANCELLATION.value: "text",
}


def _over_range(spec: t.MetricSpec, *matchers: str, suffix: str = "") -> str:
    return f"sum({q.events(q.sel(spec, JOB, WAVE, *matchers, suffix=suffix), '$__range')})"


def _summary() -> list[p.Json]:
    finished = _over_range(t.TASK_OUTCOMES)
    return [
        p.row("Summary (selected time range)"),
        p.stat("Tasks finished", "Tasks that reached an outcome in the selected time range.", "short",
               finished),
        # "> 0": a range in which no task finished shows no value, not 0 / 0 = NaN.
        p.stat("Task error ratio", "Share of finished tasks that failed or timed out (cancellations are "
               "not errors) in the selected time range: orange above the default success objective's error "
               "budget (1%), red from ShannonTaskErrorRateHigh's threshold (10%).", "percentunit",
               f"({_over_range(t.TASK_OUTCOMES, ERRORS)} or vector(0))\n/\n({finished} > 0)",
               thresholds={round(1 - SLO_TARGET, 6): "orange", ERROR_RATIO_HIGH: "red"}),
        p.stat("Tokens", "Tokens the tasks recorded (all token types) in the selected time range.",
               "short", _over_range(t.TASK_TOKENS, suffix="_sum")),
        p.stat("Task cost", "Cost the tasks recorded in the selected time range.", "currencyUSD",
               _over_range(t.TASK_COST)),
    ]


def _p99_over_range(spec: t.MetricSpec) -> str:
    return q.quantile(0.99, spec, JOB, WAVE, by_=(q.JOB, t.WAVE_NAME), window="$__range")


def _latency(spec: t.MetricSpec, title: str, description: str, quantiles: tuple[float, ...]) -> p.Json:
    """Percentiles per wave: one p50 over a 50 ms wave and a 30 s wave would describe neither."""
    wave = q.label(t.WAVE_NAME)
    targets = [
        p.target(q.quantile(pct, spec, JOB, WAVE, by_=(q.JOB, t.WAVE_NAME)),
                 f"p{round(pct * 100)} {p.JOB_LEGEND}{{{{{wave}}}}}", exemplar=True)
        for pct in quantiles
    ]
    return p.timeseries(title, description, "s", targets, link=True)


def _throughput() -> list[p.Json]:
    outcomes = q.sel(t.TASK_OUTCOMES, JOB, WAVE)
    wave = q.label(t.WAVE_NAME)
    return [
        p.row("Throughput and latency"),
        p.timeseries("Task throughput by wave", "Tasks finished per second, any outcome.", "ops",
                     [p.target(q.per_second(q.sum_by((q.JOB, t.WAVE_NAME), q.events(outcomes))),
                               f"{p.JOB_LEGEND}{{{{{wave}}}}}")],
                     link=True),
        p.timeseries("Task outcomes", "Tasks finished per second by outcome. Cancellation is its own "
                     "outcome, never an error.", "ops",
                     [p.target(q.per_second(q.sum_by((t.TASK_OUTCOME,), q.events(outcomes))),
                               f"{{{{{q.label(t.TASK_OUTCOME)}}}}}")],
                     stack=True, colors=OUTCOME_COLORS),
        _latency(t.TASK_DURATION, "Task duration percentiles by wave",
                 "Task run time (queue wait excluded) per wave, from the duration histogram. Exemplar dots "
                 "link to the task's trace in Jaeger.", (0.5, 0.9, 0.99)),
        p.heatmap("Task duration heatmap", "How many tasks finished in each duration bucket in each "
                  "interval (each column counts its own), all selected waves. Exemplar dots link to a "
                  "task's trace in Jaeger.", "s",
                  # q.step_events, not increase(): a bucket series appears with its first export, which increase()
                  # cannot see (a batch process exporting once was missing from the heatmap)
                  q.sum_by(("le",), q.step_events(q.sel(t.TASK_DURATION, JOB, WAVE, suffix="_bucket")))),
        p.table("Slowest waves (p99 task duration)", "The ten waves with the highest p99 task duration in "
                "the selected time range.", "s",
                # ">= 0" drops the NaN of a wave without tasks in the range (topk kept it as a row)
                f"topk(10, {_p99_over_range(t.TASK_DURATION)} >= 0)", link=True),
        _latency(t.TASK_QUEUE_WAIT_DURATION, "Task queue wait percentiles by wave",
                 "Time tasks of each wave waited for a concurrency slot, resource pool or rate limit before "
                 "starting.",
                 (0.5, 0.99)),
        p.timeseries("Task errors by type", "Failed or timed-out tasks in each interval (each bar counts its "
                     "own), by exception type (error.type).", "short",
                     [p.target(q.sum_by((t.ERROR_TYPE,), q.step_events(q.sel(t.TASK_OUTCOMES, JOB, WAVE,
                                                                      q.ne(t.ERROR_TYPE, "")))),
                               f"{{{{{q.label(t.ERROR_TYPE)}}}}}")], stack=True, bars=True),
        p.timeseries("Wave duration by wave (p50, p99)", "Wall time of whole waves. Waves are rare "
                     "events, so points appear only around their ends.", "s",
                     [p.target(q.quantile(pct, t.WAVE_DURATION, JOB, WAVE, by_=(q.JOB, t.WAVE_NAME)),
                               f"p{round(pct * 100)} {p.JOB_LEGEND}{{{{{wave}}}}}", exemplar=True)
                      for pct in (0.5, 0.99)],
                     link=True),
    ]


def _concurrency() -> list[p.Json]:
    wave = q.label(t.WAVE_NAME)
    return [
        p.row("Concurrency and efficiency"),
        p.timeseries("Active and pending tasks", "Tasks running now and tasks of running waves not "
                     "started yet.", "short",
                     [p.target(q.sum_by((q.JOB, t.WAVE_NAME), q.sel(t.TASKS_ACTIVE, JOB, WAVE)),
                               f"active {p.JOB_LEGEND}{{{{{wave}}}}}"),
                      p.target(q.sum_by((q.JOB, t.WAVE_NAME), q.sel(t.TASKS_PENDING, JOB, WAVE)),
                               f"pending {p.JOB_LEGEND}{{{{{wave}}}}}")], link=True),
        p.timeseries("Parallel efficiency", "Busy task time / (wave wall time x the slots the wave could use: "
                     "max_concurrency capped by its task count, batch_size and a stream's buffer) of the "
                     "last finished wave: 100% means every slot was busy all the time.", "percentunit",
                     [p.target(f"max by ({q.by(q.JOB, t.WAVE_NAME)}) ({q.sel(t.WAVE_EFFICIENCY, JOB, WAVE)})",
                               f"{p.JOB_LEGEND}{{{{{wave}}}}}")], min_=0, max_=1, link=True),
        p.timeseries("Telemetry dropped", "Spans, metric points and log records configure()'s exporters did not "
                     "deliver in each interval (each bar counts its own), by signal (traces, metrics, logs) and reason "
                     f"({', '.join(reason.value for reason in t.DropReason)}: see docs/reliability.md). Should be 0.",
                     "short",
                     [p.target(q.sum_by((t.TELEMETRY_SIGNAL, t.TELEMETRY_DROP_REASON),
                                        q.step_events(q.sel(t.TELEMETRY_DROPPED, JOB))),
                               f"{{{{{q.label(t.TELEMETRY_SIGNAL)}}}}} {{{{{q.label(t.TELEMETRY_DROP_REASON)}}}}}")],
                     stack=True, bars=True),
    ]


def _tokens() -> list[p.Json]:
    token_type = q.label(t.TOKEN_TYPE)
    wave = q.label(t.WAVE_NAME)
    return [
        p.row("Token usage and cost"),
        p.timeseries("Token usage rate", "Tokens per second the tasks recorded, by token type (shannon.task.tokens).",
                     "short",
                     [p.target(q.per_second(q.sum_by((t.TOKEN_TYPE,),
                                                     q.events(q.sel(t.TASK_TOKENS, JOB, WAVE, suffix="_sum")))),
                               f"{{{{{token_type}}}}}")], width=8),
        p.timeseries("Tokens per task (p50, p99)", "Tokens one task used, by token type.", "short",
                     [p.target(q.quantile(pct, t.TASK_TOKENS, JOB, WAVE, by_=(t.TOKEN_TYPE,)),
                               f"p{round(pct * 100)} {{{{{token_type}}}}}") for pct in (0.5, 0.99)], width=8),
        p.timeseries("Cost per hour", "Cost the tasks record, as USD per hour at the current rate.",
                     "currencyUSD",
                     [p.target(q.per_second(q.sum_by((q.JOB, t.WAVE_NAME), q.events(q.sel(t.TASK_COST, JOB, WAVE))))
                               + " * 3600",
                               f"{p.JOB_LEGEND}{{{{{wave}}}}}")], width=8, link=True),
    ]


def _pipeline() -> list[p.Json]:
    """The collector's own telemetry (scrape job otel-collector-self): is the pipeline keeping up?"""
    return [
        p.row("Collector pipeline"),
        p.timeseries("Collector: data accepted and refused", "Spans and metric points the collector's "
                     "receivers accepted and refused (memory_limiter back-pressure) per second.", "ops",
                     [p.target("sum by (receiver) (rate(otelcol_receiver_accepted_spans_total[$__rate_interval]))",
                               "spans accepted {{receiver}}"),
                      p.target("sum by (receiver) (rate(otelcol_receiver_accepted_metric_points_total"
                               "[$__rate_interval]))", "metric points accepted {{receiver}}"),
                      p.target("sum by (receiver) (rate(otelcol_receiver_refused_spans_total[$__rate_interval]))",
                               "spans refused {{receiver}}"),
                      p.target("sum by (receiver) (rate(otelcol_receiver_refused_metric_points_total"
                               "[$__rate_interval]))", "metric points refused {{receiver}}")]),
        p.timeseries("Collector: export queue", "Batches waiting in each exporter's queue, and its capacity: a "
                     "queue staying full loses data.", "short",
                     [p.target("max by (exporter) (otelcol_exporter_queue_size)", "queued {{exporter}}"),
                      p.target("max by (exporter) (otelcol_exporter_queue_capacity)", "capacity {{exporter}}")]),
    ]


def overview(anomaly_annotation: p.Json) -> p.Json:
    """The overview dashboard model; ``anomaly_annotation`` overlays detected anomalies."""
    variables = [
        g.query_variable("job", "Job (service)", q.sel(t.TASK_OUTCOMES), q.JOB),
        g.query_variable("wave", "Wave", q.sel(t.TASK_OUTCOMES, JOB), t.WAVE_NAME),
    ]
    return g.dashboard(
        UID, "Shannon OTel / Overview",
        "Waves and tasks run by shannon-otel: throughput, latency, outcomes, concurrency, tokens and cost.",
        [*_summary(), *_throughput(), *_concurrency(), *_tokens(), *_pipeline()], variables, (anomaly_annotation,),
    )
