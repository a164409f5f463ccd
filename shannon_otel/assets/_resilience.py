"""The resilience dashboard: calls, retries, circuit breakers, timeouts, fallbacks, degradations,
hedges and saga compensations."""

from __future__ import annotations

from shannon_otel import _telemetry as t

from . import _grafana as g
from . import _panels as p
from . import _promql as q

UID = "shannon-otel-resilience"

JOB = 'job=~"$job"'
OPERATION = q.match(t.OPERATION, "$operation")
BREAKER = q.match(t.BREAKER_NAME, "$breaker")
OP = q.label(t.OPERATION)
# One color per outcome, cancellation as on the overview's task outcomes: a series without one got the
# palette's next color (green, red...), which a reader took for successes or failures.
CALL_COLORS = {
    t.CallOutcome.SUCCESS.value: "green", t.CallOutcome.FAILURE.value: "red",
    t.CallOutcome.REJECTED.value: "purple", t.CallOutcome.IGNORED.value: "blue",
    t.CallOutcome.CANCELLATION.value: "text",
}
# Value shown by the state timeline for each breaker state, in this order.
BREAKER_STATES = (
    (t.BreakerState.CLOSED, "green"), (t.BreakerState.HALF_OPEN, "yellow"), (t.BreakerState.OPEN, "red"),
)


def _per_op(spec: t.MetricSpec, *matchers: str, suffix: str = "", by_: tuple[str, ...] = ()) -> str:
    return q.sum_by((q.JOB, t.OPERATION, *by_), q.events(q.sel(spec, JOB, OPERATION, *matchers, suffix=suffix)))


def _events_per_op(spec: t.MetricSpec, window: str, *matchers: str, suffix: str = "") -> str:
    """Events of a rare-event counter in ``window`` (a rate would hide a series' first events)."""
    selector = q.sel(spec, JOB, OPERATION, *matchers, suffix=suffix)
    return q.sum_by((q.JOB, t.OPERATION), q.events(selector, window))


def _bars_per_op(spec: t.MetricSpec, *matchers: str, suffix: str = "", by_: tuple[str, ...] = ()) -> str:
    """Events of a counter in each bar's own interval (:func:`q.step_events`): the bars sum to the range's."""
    selector = q.sel(spec, JOB, OPERATION, *matchers, suffix=suffix)
    return q.sum_by((q.JOB, t.OPERATION, *by_), q.step_events(selector))


def breaker_state_expr() -> str:
    """One series per breaker whose value is the index of its current state in BREAKER_STATES.

    The state series are combined with ``or`` (their label sets differ by state) so a breaker shows
    up even when some of its state series were never created.
    """
    parts = [
        f"{q.sel(t.BREAKER_STATE_METRIC, JOB, BREAKER, q.eq(t.BREAKER_STATE, state))} * {index}"
        for index, (state, _) in enumerate(BREAKER_STATES)
    ]
    return f"max by ({q.by(q.JOB, t.BREAKER_NAME)}) (\n  " + "\n  or\n  ".join(parts) + "\n)"


def _calls() -> list[p.Json]:
    calls = q.sel(t.CALLS, JOB, OPERATION)
    failed = _per_op(t.CALLS, q.eq(t.CALL_OUTCOME, t.CallOutcome.FAILURE))
    decided = _per_op(t.CALLS, q.ne(t.CALL_OUTCOME, t.CallOutcome.REJECTED))
    return [
        p.row("Calls"),
        p.timeseries("Calls by outcome", "Calls through protected operations per second, by outcome as the "
                     "breaker counts it (success, failure, rejected, ignored, cancellation).", "ops",
                     [p.target(q.per_second(q.sum_by((t.CALL_OUTCOME,), q.events(calls))),
                               f"{{{{{q.label(t.CALL_OUTCOME)}}}}}")], stack=True, colors=CALL_COLORS,
                     width=8),
        p.timeseries("Call failure ratio by operation", "Failed calls / calls that ran (rejections "
                     "excluded), per operation.", "percentunit",
                     [p.target(f"({failed}\nor\n{decided} * 0)\n/\n({decided} > 0)", f"{p.JOB_LEGEND}{{{{{OP}}}}}")],
                     min_=0, max_=1, width=8,
                     link=True),
        p.timeseries("Rejected calls by operation", "Calls an open circuit breaker rejected without "
                     "running them, in each interval (each bar counts its own).", "short",
                     [p.target(_bars_per_op(t.CALLS, q.eq(t.CALL_OUTCOME, t.CallOutcome.REJECTED)),
                               f"{p.JOB_LEGEND}{{{{{OP}}}}}")], bars=True, width=8, link=True),
    ]


def _retries() -> list[p.Json]:
    return [
        p.row("Retries"),
        p.timeseries("Retries by operation", "Retries run in each interval (each bar counts its own; one backoff "
                     "delay is recorded per retry, as it starts: one whose wait was cut short is not counted).",
                     "short",
                     [p.target(_bars_per_op(t.RETRY_DELAY_DURATION, suffix="_count"), f"{p.JOB_LEGEND}{{{{{OP}}}}}")],
                     bars=True, width=8, link=True),
        p.timeseries("Attempts per call", "Attempts one protected call took: mean and p99 (in whole attempts) by "
                     "operation (1 = no retry).", "short",
                     [p.target(q.mean(t.RETRY_ATTEMPTS, JOB, OPERATION, by_=(q.JOB, t.OPERATION)),
                               f"mean {p.JOB_LEGEND}{{{{{OP}}}}}"),
                      p.target(q.whole_quantile(0.99, t.RETRY_ATTEMPTS, JOB, OPERATION, by_=(q.JOB, t.OPERATION)),
                               f"p99 {p.JOB_LEGEND}{{{{{OP}}}}}")], width=8, link=True),
        p.timeseries("Retry delay percentiles", "Backoff delay waited before a retry (p50, p99). "
                     "Exemplar dots link to the retried call's trace.", "s",
                     [p.target(q.quantile(pct, t.RETRY_DELAY_DURATION, JOB, OPERATION, by_=(q.JOB,)),
                               f"p{round(pct * 100)} {{{{job}}}}", exemplar=True) for pct in (0.5, 0.99)],
                     width=8, link=True),
        p.table("Most retried operations", "The ten operations with the most retries per call in the selected "
                "time range (0.5 = one call in two retried once; the retry storm alert starts there), and the ten "
                "with the most retries of those that finished no call in it (long backoffs, calls that never "
                "end): their retries per call are empty, their calls finished 0.", "short",
                most_retried(), width=24, link=True),
    ]


def most_retried() -> dict[str, str]:
    """Column -> query of the most retried operations over the dashboard's time range.

    Retries per call alone (``/ (calls > 0)``) left out the worst case, an operation retrying with no
    call finished in the range; dividing by its 0 calls would read +Inf. Such operations are listed too,
    with their retries and 0 calls finished and no ratio.
    """
    retries = _events_per_op(t.RETRY_DELAY_DURATION, "$__range", suffix="_count")
    calls = _events_per_op(t.RETRY_ATTEMPTS, "$__range", suffix="_count")
    grouping = q.by(q.JOB, t.OPERATION)
    per_call = f"topk(10,\n{retries}\n/\n({calls} > 0)\n)"
    no_call = f"topk(10,\n({retries} > 0)\nunless on ({grouping})\n({calls} > 0)\n)"
    shown = f"and on ({grouping})\n(\n{per_call}\nor\n{no_call}\n)"
    return {
        "Retries per call": per_call,
        "Retries": f"{retries}\n{shown}",
        "Calls finished": f"({calls}\nor\n{retries} * 0)\n{shown}",
    }


def _breakers() -> list[p.Json]:
    to = q.label(t.BREAKER_TO)
    name = q.label(t.BREAKER_NAME)
    open_ = q.sel(t.BREAKER_STATE_METRIC, JOB, BREAKER, q.eq(t.BREAKER_STATE, t.BreakerState.OPEN))
    transitions = q.step_events(q.sel(t.BREAKER_TRANSITIONS, JOB, BREAKER))
    return [
        p.row("Circuit breakers"),
        p.state_timeline("Breaker state", "Current state of each circuit breaker: closed (calls flow), "
                         "half-open (probing), open (calls rejected).", breaker_state_expr(),
                         f"{p.JOB_LEGEND}{{{{{name}}}}}", [(str(state), color) for state, color in BREAKER_STATES],
                         width=16, link=True),
        # One per breaker row of the state timeline: summed per instance, a breaker open in two replicas
        # (or in a restarted process and, until its series expire, the process before) counted twice.
        p.stat("Open breakers", "Circuit breakers (per job and name, as the state timeline shows them) open "
               "now in any instance (half-open ones are probing and not counted).",
               "short", f"count(max by ({q.by(q.JOB, t.BREAKER_NAME)}) ({open_}) > 0) or vector(0)", width=8,
               height=8, thresholds={1: "red"}),
        p.timeseries("Breaker transitions", "Circuit breaker state changes in each interval (each bar counts its "
                     "own), by breaker and new state.", "short",
                     [p.target(q.sum_by((q.JOB, t.BREAKER_NAME, t.BREAKER_TO), transitions),
                               f"{p.JOB_LEGEND}{{{{{name}}}}} -> {{{{{to}}}}}")], bars=True, width=24, link=True),
    ]


def _policies() -> list[p.Json]:
    mode, reason = q.label(t.DEGRADE_MODE), q.label(t.DEGRADE_REASON)
    saga, outcome = q.label(t.SAGA_NAME), q.label(t.COMPENSATION_OUTCOME)
    compensations = q.step_events(q.sel(t.COMPENSATIONS, JOB))
    return [
        p.row("Timeouts, fallbacks, degradations, hedges, compensations"),
        p.timeseries("Timeouts by operation", "Operations cut off by a timeout policy, in each "
                     "interval (each bar counts its own).", "short",
                     [p.target(_bars_per_op(t.TIMEOUTS), f"{p.JOB_LEGEND}{{{{{OP}}}}}")], bars=True, width=8,
                     link=True),
        p.timeseries("Fallbacks by operation", "Fallbacks run after the primary failed (one that failed too "
                     "included), in each interval (each bar counts its own), by operation and error type.", "short",
                     [p.target(_bars_per_op(t.FALLBACKS, by_=(t.ERROR_TYPE,)),
                               f"{p.JOB_LEGEND}{{{{{OP}}}}} {{{{{q.label(t.ERROR_TYPE)}}}}}")], bars=True, width=8,
                     link=True),
        p.timeseries("Degradations", "Degraded results served in each interval (each bar counts its own), "
                     "by operation, mode and reason.", "short",
                     [p.target(_bars_per_op(t.DEGRADATIONS, by_=(t.DEGRADE_MODE, t.DEGRADE_REASON)),
                               f"{p.JOB_LEGEND}{{{{{OP}}}}} {{{{{mode}}}}} ({{{{{reason}}}}})")], bars=True, width=8,
                     link=True),
        p.timeseries("Hedged attempts by operation", "Extra (hedged) attempts started in each interval (each bar "
                     "counts its own).", "short",
                     [p.target(_bars_per_op(t.HEDGES), f"{p.JOB_LEGEND}{{{{{OP}}}}}")], bars=True, width=12,
                     link=True),
        p.timeseries("Saga compensations", "Compensation steps run in each interval (each bar counts its own) "
                     "when a saga rolled back, by saga and outcome.", "short",
                     [p.target(q.sum_by((q.JOB, t.SAGA_NAME, t.COMPENSATION_OUTCOME), compensations),
                               f"{p.JOB_LEGEND}{{{{{saga}}}}} {{{{{outcome}}}}}")], bars=True, width=12, link=True),
        p.timeseries("Hook errors", "Exceptions raised by hooks (user callbacks, the anomaly hook) in each "
                     "interval (each bar counts its own), by hook and method: isolated, never raised into "
                     "the user's calls; each hook logs its first one per method.", "short",
                     [p.target(q.sum_by((t.HOOK_NAME, t.HOOK_METHOD), q.step_events(q.sel(t.HOOK_ERRORS, JOB))),
                               f"{{{{{q.label(t.HOOK_NAME)}}}}} {{{{{q.label(t.HOOK_METHOD)}}}}}")],
                     bars=True, width=24),
        # min, not max: one instance cut off from Redis (the others reaching it) applies the fault policy.
        p.timeseries("Shared state (Redis) available", "1 while the shared breakers, rate limits and pools "
                     "of every instance reach Redis; 0 while the fault policy (local state, or rejection) "
                     "applies in any instance.", "short",
                     [p.target(f"min by ({q.by(q.JOB, t.SHARED_PREFIX)}) ({q.sel(t.SHARED_AVAILABLE, JOB)})",
                               f"{{{{{q.label(t.SHARED_PREFIX)}}}}} ({{{{job}}}})")], width=8),
        p.timeseries("Shared state errors", "Redis calls that failed or timed out in each interval (each bar "
                     "counts its own), by operation; each one fell back to the configured fault policy.", "short",
                     [p.target(q.sum_by((t.SHARED_OPERATION,), q.step_events(q.sel(t.SHARED_ERRORS, JOB))),
                               f"{{{{{q.label(t.SHARED_OPERATION)}}}}}")], bars=True, width=8),
        p.timeseries("Shared state latency p99", "Latency of successful Redis calls (scripts, polls), by "
                     "operation.", "s",
                     [p.target(q.quantile(0.99, t.SHARED_DURATION, JOB, by_=(t.SHARED_OPERATION,)),
                               f"{{{{{q.label(t.SHARED_OPERATION)}}}}}", exemplar=True)], width=8),
    ]


def resilience() -> p.Json:
    """The resilience dashboard model."""
    variables = [
        g.query_variable("job", "Job (service)", q.sel(t.CALLS), q.JOB),
        g.query_variable("operation", "Operation", q.sel(t.CALLS, JOB), t.OPERATION),
        g.query_variable("breaker", "Breaker", q.sel(t.BREAKER_STATE_METRIC, JOB), t.BREAKER_NAME),
    ]
    return g.dashboard(
        UID, "Shannon OTel / Resilience",
        "Recovery policies of shannon-otel: retries, circuit breakers, timeouts, fallbacks, degradations, "
        "hedges and saga compensations.",
        [*_calls(), *_retries(), *_breakers(), *_policies()], variables,
    )
