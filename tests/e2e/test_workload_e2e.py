"""The library's real telemetry through the real stack: Jaeger traces, Prometheus series, dashboards, alerts.

One workload (waves with failures, timeouts, retries, an opening breaker, degradation, a fallback, a
hedge, a saga rollback, token usage and cost, a failing user hook, and an injected latency anomaly)
runs through the collector (collector-config/otelcol.yaml run by the Jaeger binary) into Jaeger and
Prometheus, and a smaller one straight into Jaeger; a clean run (same shape, no injected fault, a span
queue too small for its spans) checks the anomaly alert stays quiet. Then every dashboard query and
alert rule is checked against what Prometheus really holds.

The waves run on virtual time (shannon_otel.testing.VirtualTimeLoop; the waves, policies and the
anomaly hook read the loop's clock): the simulated latencies, timeouts, breaker resets and anomaly
ticks are exact however loaded the machine is, so the detector sees the same series every run (on
wall time a scheduling stall of the test machine was itself a latency anomaly, and the injected one
was sometimes scored against a range already widened by such stalls). Export stays on wall time.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from _prometheus import alerts_of, bar_totals, bars_of, dashboard_query
from _stack import get_json, wait_until
from opentelemetry import trace as otel_trace

from shannon_otel import (
    AnomalyHook,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    Hedge,
    Hook,
    Pipeline,
    Retry,
    Saga,
    Step,
    Timeout,
    Wave,
    configure,
    record_cost,
    record_tokens,
)
from shannon_otel import _telemetry as tel
from shannon_otel.anomaly import LATENCY
from shannon_otel.assets import alert_rules, dashboards, panel_queries, referenced_metrics, rule_queries
from shannon_otel.redis import RedisState, SharedRateLimit
from shannon_otel.testing import run_virtual

if TYPE_CHECKING:
    from _redis_server import RedisServer
    from _stack import Collector, Jaeger, Prometheus

pytestmark = pytest.mark.e2e
RUN = uuid.uuid4().hex[:8]
ROUNDS, TASKS = 60, 12
ANOMALY_ROUNDS = (52, 53, 54)  # late: the detector has warmed up on ~80 ticks by then
# Task latency x15-20 in those rounds (every model call times out and falls back): the first slow tick's
# mean lies beyond twice the range seen, which HOOK_DEFAULTS (spatial_tolerance=2) scores 1.0, a margin
# the averaged surprise alone (~0.88 at x25 against warning 0.8) does not give.
SLOW_FACTOR = 40.0


class UnavailableError(Exception):
    """The simulated search API is down."""


@dataclass
class World:
    """Simulated dependencies with switches for the injected faults. Seeded: the same run each time."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    search_down: bool = False
    slow_factor: float = 1.0
    round_traces: dict[int, int] = field(default_factory=dict)  # trace id of each round's wave -> round

    async def pause(self, base: float) -> None:
        await asyncio.sleep(base * self.slow_factor * self.rng.uniform(0.8, 1.2))

    async def model(self, size: str) -> str:
        await self.pause(0.002)
        if size == "large" and self.rng.random() < 0.05:
            await asyncio.sleep(0.2)  # cut by the Timeout -> fallback to the small model
        return size

    async def search(self) -> list[str]:
        await self.pause(0.001)
        if self.search_down:
            raise UnavailableError("search: 503")
        return ["doc"]

    async def cache(self) -> str:
        await asyncio.sleep(0.03 if self.rng.random() < 0.3 else 0.0005)  # slow tail -> hedged
        return "hit"


class BrokenHook(Hook):
    """A user hook with a bug: the library isolates it and counts it (shannon.hook.errors)."""

    def breaker_transition(self, event: Any) -> None:
        raise ValueError("user hook bug")


async def workload(providers: dict[str, Any], make_hook: Callable[[Callable[[], float]], AnomalyHook], *,
                   inject: bool) -> World:
    world = World()
    clock = asyncio.get_running_loop().time  # virtual: see the module docstring
    anomaly_hook = make_hook(clock)
    options: dict[str, Any] = dict(providers, clock=clock)
    breaker = CircuitBreaker("search-api", failure_threshold=3, reset_timeout=0.05, **options)

    async def small(error: Exception) -> str:
        return await world.model("small")

    jitter = random.Random(11)
    llm = Pipeline(Fallback(small, on=TimeoutError), Retry(attempts=2, initial=0.001, random=jitter),
                   Timeout(0.05), name="llm.chat", **options)
    search = Pipeline(Degrade(default=[]), Retry(attempts=3, initial=0.001, maximum=0.002, random=jitter), breaker,
                      Timeout(0.05), name="search-api", **options)
    cache = Hedge(0.005, name="cache.get", **options)
    # No degradation here: its failures and rejections reach the caller (who shrugs them off).
    inventory = CircuitBreaker("inventory", failure_threshold=2, reset_timeout=0.05, hooks=(BrokenHook(),),
                               **options)
    saga = Saga("publish", **options)

    round_no = 0

    async def agent(index: int) -> str:
        world.round_traces[otel_trace.get_current_span().get_span_context().trace_id] = round_no
        answer = await llm.call(lambda: world.model("large"))
        record_tokens(input=500 + index, output=50)
        record_cost(0.001)
        await search.call(world.search)
        await cache.call(world.cache)
        try:
            await inventory.call(world.search)
        except (UnavailableError, CircuitOpenError):
            pass
        if index % 7 == 3:
            await saga.run(
                Step("reserve", lambda: world.pause(0.001), compensate=lambda _: world.pause(0.001)),
                Step("notify", _fail),
            )
        if round_no == 5 and index == 5:
            await asyncio.sleep(1.0)  # exceeds the wave's per-task timeout
        return answer

    wave: Wave[str] = Wave("agents", max_concurrency=5, task_timeout=0.3, hooks=(anomaly_hook,), **options)
    for round_no in range(ROUNDS):
        world.search_down = inject and 12 <= round_no < 16
        world.slow_factor = SLOW_FACTOR if inject and round_no in ANOMALY_ROUNDS else 1.0
        await wave.run([functools.partial(agent, i) for i in range(TASKS)])
    return world


async def _fail() -> None:
    raise RuntimeError("notify: 500")


def _anomaly_hook(clock: Callable[[], float]) -> AnomalyHook:
    # The hook's default detector; only the tick is short, for a run of a few (virtual) seconds. Latency
    # is the injected fault; the rates of a run this short are too few ticks to judge. Its telemetry
    # goes to the providers of the waves whose hooks= hold it.
    return AnomalyHook(tick_s=0.01, signals=(LATENCY,), clock=clock)


@dataclass(frozen=True)
class Run:
    service: str
    started: float
    ended: float
    round_traces: dict[int, int]  # trace id -> round of the wave


async def _shared_state(url: str, meter_provider: Any) -> None:
    """A breaker shared through the real redis-server, and a RedisState whose Redis is down: the
    shannon.shared.* series (latency, availability, errors) of the resilience dashboard."""
    async with RedisState(url, meter_provider=meter_provider, timeout_s=0.5) as shared:
        breaker = CircuitBreaker(f"shared-{RUN}", shared=shared, instrument=False)
        limit = SharedRateLimit(shared, f"limit-{RUN}", rate=1000)
        for _ in range(20):
            await limit.acquire()
            await breaker.call(world_ok)
        # shannon.shared.available reports open states only: a collection while this one is open
        await asyncio.to_thread(meter_provider.force_flush, 10_000)
    async with RedisState("redis://127.0.0.1:1/0", meter_provider=meter_provider, timeout_s=0.1) as down:
        await SharedRateLimit(down, f"down-{RUN}", rate=1000).acquire()  # fails open: counted as an error
        await asyncio.to_thread(meter_provider.force_flush, 10_000)


async def world_ok() -> str:
    return "ok"


def _run(service: str, endpoint: str, *, inject: bool, redis_url: str | None = None) -> Run:
    started = time.time()
    # The clean run's span queue holds 16 spans: it overflows, and the drops are counted
    # (shannon.telemetry.dropped), not silent. The faulty run keeps every span for the trace checks.
    queue = None if inject else 16
    with configure(service, exporter="otlp_grpc", endpoint=endpoint, metric_interval_s=0.5,
                   set_global=False, max_queue_size=queue, max_export_batch_size=queue) as telemetry:
        providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
        world = run_virtual(workload(providers, _anomaly_hook, inject=inject))
        if redis_url is not None:
            asyncio.run(_shared_state(redis_url, telemetry.meter_provider))
        flushed = telemetry.force_flush(10)
        assert flushed or not inject, "the faulty run delivers everything"
    return Run(service, started, time.time(), world.round_traces)


@pytest.fixture(scope="module")
def runs(collector: Collector, prometheus: Prometheus, redis_server: RedisServer) -> dict[str, Run]:
    """The faulty and the clean run, both through the collector, scraped by Prometheus."""
    done = {
        "faulty": _run(f"e2e-faulty-{RUN}", collector.otlp_grpc_endpoint, inject=True, redis_url=redis_server.url),
        "clean": _run(f"e2e-clean-{RUN}", collector.otlp_grpc_endpoint, inject=False),
    }
    for run in done.values():  # both runs' final points scraped
        prometheus.wait_for(f'{tel.TASK_OUTCOMES.prometheus}{{job="{run.service}"}}', timeout=30)
    time.sleep(3 * prometheus.scrape_interval)
    return done


# ---------------------------------------------------------------- traces
def _spans_by_name(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        found.setdefault(span["operationName"], []).append(span)
    return found


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def _parent(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
    return by_id.get(refs[0]["spanID"]) if refs else None


def test_jaeger_holds_the_whole_trace_shape_through_the_collector(jaeger: Jaeger, runs: dict[str, Run]) -> None:
    service = runs["faulty"].service
    traces = jaeger.wait_for_traces(service, min_spans=ROUNDS * TASKS, timeout=60, limit=1000)
    assert len(traces) == ROUNDS, "one trace per wave"
    trace = max(traces, key=lambda t: len(t["spans"]))
    by_id = {s["spanID"]: s for s in trace["spans"]}
    process = trace["processes"][trace["spans"][0]["processID"]]
    assert process["serviceName"] == service

    names = _spans_by_name(trace)
    assert len(names["wave agents"]) == 1
    assert len(names["task agents"]) == 12
    assert {"llm.chat", "search-api", "cache.get", "attempt 1"} <= set(names)
    for attempt in names["attempt 1"]:
        operation = _parent(attempt, by_id)
        assert operation is not None
        assert operation["operationName"] in {"llm.chat", "search-api", "cache.get", "inventory"}
        task = _parent(operation, by_id)
        assert task is not None and task["operationName"] == "task agents"
        assert _parent(task, by_id) is names["wave agents"][0]
        assert _tags(attempt)[tel.ATTEMPT] == 1

    all_spans = [s for t in traces for s in t["spans"]]
    tasks = [s for s in all_spans if s["operationName"] == "task agents"]
    timed_out = [s for s in tasks if _tags(s).get(tel.TASK_OUTCOME) == "timeout"]
    assert timed_out, "the slow tasks are recorded as timeouts"
    assert all(_tags(s)["otel.status_code"] == "ERROR" for s in timed_out)
    rollbacks = [s for s in all_spans if s["operationName"] == "compensate reserve"]
    assert rollbacks, "the saga rolled back"
    rejected = [s for s in all_spans if s["operationName"] == "rejected search-api"]
    assert rejected, "the open breaker rejected calls"
    transitions = [log for s in all_spans for log in s["logs"]
                   if any(f["key"] == "event" and f["value"] == tel.EVENT_BREAKER_TRANSITION for f in log["fields"])]
    assert transitions, "breaker transitions are span events"
    tokens = [s for s in names["task agents"] if tel.TASK_INPUT_TOKENS in _tags(s)]
    assert tokens


def test_the_anomaly_event_is_on_the_offending_task_span(jaeger: Jaeger, runs: dict[str, Run]) -> None:
    traces = jaeger.wait_for_traces(runs["faulty"].service, min_spans=ROUNDS * TASKS, timeout=60, limit=1000)
    with_anomaly = []
    for trace in traces:
        for span in trace["spans"]:
            for log in span["logs"]:
                fields = {f["key"]: f["value"] for f in log["fields"]}
                if fields.get("event") == tel.EVENT_ANOMALY:
                    with_anomaly.append((span, fields))
    assert with_anomaly, "the injected latency anomaly is attached to a span"
    span, fields = with_anomaly[0]
    assert span["operationName"] == "task agents"
    assert fields[tel.ANOMALY_SIGNAL] == "latency"
    assert fields[tel.ANOMALY_SERIES] == "agents"
    assert float(fields[tel.ANOMALY_SCORE_ATTR]) >= 0.8, "the hook's warning threshold (HOOK_DEFAULTS)"
    # The first event sits on a task of a slowed-down round. A tick straddling the last slow round and
    # the next one is still slow on average; its event sits on the task that closed it (the slowest
    # task's span has ended by then), so events may also land on the round right after.
    rounds = runs["faulty"].round_traces
    by_time = sorted(with_anomaly, key=lambda pair: int(pair[0]["startTime"]))
    assert rounds[int(by_time[0][0]["traceID"], 16)] in ANOMALY_ROUNDS
    assert {rounds[int(span["traceID"], 16)] for span, _ in with_anomaly} <= {*ANOMALY_ROUNDS, max(ANOMALY_ROUNDS) + 1}


def test_the_anomaly_panels_count_the_anomaly_events_the_traces_hold(
    jaeger: Jaeger, prometheus: Prometheus, runs: dict[str, Run],
) -> None:
    """The anomaly dashboard's counts over the run are the anomaly events on the spans in Jaeger (each
    event is both a span event and one shannon.anomaly.events increment), by severity and by series."""
    run = runs["faulty"]
    traces = jaeger.wait_for_traces(run.service, min_spans=ROUNDS * TASKS, timeout=60, limit=1000)
    events = [{f["key"]: f["value"] for f in log["fields"]} for t in traces for span in t["spans"]
              for log in span["logs"]]
    events = [e for e in events if e.get("event") == tel.EVENT_ANOMALY]
    assert events
    window = {"job": run.service, "__range": f"{int(time.time() - run.started) + 5}s"}

    def panel(title: str) -> list[dict[str, Any]]:
        (expr,) = [t["expr"] for m in dashboards().values() for p in m["panels"] if p["title"] == title
                   for t in p["targets"]]
        return prometheus.query(dashboard_query(prometheus, expr, window))

    assert [float(s["value"][1]) for s in panel("Anomalies detected")] == [len(events)]
    critical = sum(e.get(tel.ANOMALY_SEVERITY) == "critical" for e in events)
    assert [float(s["value"][1]) for s in panel("Critical anomalies")] == [critical]
    series, severity = (key.replace(".", "_") for key in (tel.ANOMALY_SERIES, tel.ANOMALY_SEVERITY))
    by_series = {(s["metric"][series], s["metric"][severity]): float(s["value"][1])
                 for s in panel("Anomaly events by series")}
    expected: dict[tuple[str, str], float] = {}
    for e in events:
        key = (e[tel.ANOMALY_SERIES], e[tel.ANOMALY_SEVERITY])
        expected[key] = expected.get(key, 0) + 1
    assert by_series == expected


def test_the_hook_error_and_transition_panels_count_the_transitions_the_traces_hold(
    jaeger: Jaeger, prometheus: Prometheus, runs: dict[str, Run],
) -> None:
    """BrokenHook raises at every transition of breaker "inventory": the "Hook errors" panel over the run,
    the "Breaker transitions" panel's inventory rows and the transition span events in Jaeger agree."""
    run = runs["faulty"]
    traces = jaeger.wait_for_traces(run.service, min_spans=ROUNDS * TASKS, timeout=60, limit=1000)
    events = [{f["key"]: f["value"] for f in log["fields"]} for t in traces for span in t["spans"]
              for log in span["logs"]]
    transitions = [e for e in events if e.get("event") == tel.EVENT_BREAKER_TRANSITION
                   and e.get(tel.BREAKER_NAME) == "inventory"]
    assert transitions
    end = time.time()

    def total(title: str, **labels: str) -> float:
        """What the bars of panel ``title`` drawn over the run (at a 2-scrape step) add up to."""
        (expr,) = [t["expr"] for m in dashboards().values() for p in m["panels"] if p["title"] == title
                   for t in p["targets"]]
        shown = bars_of(prometheus, expr, run.started, end, 2 * prometheus.scrape_interval, {"job": run.service})
        return sum(v for k, v in bar_totals(shown).items() if labels.items() <= k)

    assert total("Breaker transitions", shannon_breaker_name="inventory") == len(transitions)
    assert total("Hook errors", shannon_hook_method="breaker_transition") == len(transitions)


def test_exporting_straight_to_jaeger_gives_the_same_nesting(jaeger: Jaeger) -> None:
    service = f"e2e-direct-{RUN}"
    with configure(service, exporter="otlp_grpc", endpoint=jaeger.otlp_grpc_endpoint, set_global=False) as t:
        retry = Retry(attempts=3, initial=0.001, name="flaky", tracer_provider=t.tracer_provider,
                      meter_provider=t.meter_provider)
        calls = {"n": 0}

        async def flaky() -> int:
            calls["n"] += 1
            if calls["n"] % 2:
                raise ConnectionError("reset")
            return calls["n"]

        wave: Wave[int] = Wave("direct", tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
        asyncio.run(wave.run([lambda: retry.call(flaky)]))
        t.tracer_provider.force_flush()
    trace = jaeger.wait_for_traces(service, min_spans=5, timeout=30)[0]
    names = {s["operationName"] for s in trace["spans"]}
    assert names == {"wave direct", "task direct", "flaky", "attempt 1", "attempt 2"}
    first = next(s for s in trace["spans"] if s["operationName"] == "attempt 1")
    assert _tags(first)[tel.ERROR_TYPE] == "ConnectionError"
    assert _tags(first)["otel.status_code"] == "ERROR"


# ---------------------------------------------------------------- metrics, dashboards, rules
def test_every_metric_the_assets_reference_is_in_the_contract_and_was_emitted(
    prometheus: Prometheus, runs: dict[str, Run],
) -> None:
    contract = set()
    for spec in tel.METRICS:
        suffixes = ("_bucket", "_sum", "_count") if spec.kind == "histogram" else ("",)
        contract |= {spec.prometheus + s for s in suffixes}
    referenced = referenced_metrics()
    assert referenced <= contract, f"not in the contract: {sorted(referenced - contract)}"
    emitted = prometheus.metric_names()
    assert referenced <= emitted, f"never emitted: {sorted(referenced - emitted)}"
    every = {spec.prometheus + ("_count" if spec.kind == "histogram" else "") for spec in tel.METRICS}
    assert every <= emitted, f"contract metrics the workload did not produce: {sorted(every - emitted)}"


def test_every_dashboard_query_parses_and_returns_data(prometheus: Prometheus, runs: dict[str, Run]) -> None:
    start, end = runs["faulty"].started, time.time()
    empty = []
    for dashboard, title, expr in panel_queries():
        query = dashboard_query(prometheus, expr)
        prometheus.check_expr(query)
        if not any(series.get("values") for series in prometheus.query_range(query, start, end, step=1)):
            # A ratio's "> 0" guard, a percentile table's ">= 0" (no value rather than 0 / 0 = NaN) empty it
            # where nothing grew in the window (this run's series appear with most of their values); the
            # query without its guard must have data.
            unguarded = query.replace(") > 0)", "))").replace(" >= 0)", ")")
            if unguarded == query or not prometheus.query_range(unguarded, start, end, step=1):
                empty.append(f"{dashboard} / {title}: {query}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_trace_links_name_a_service_jaeger_knows(
    jaeger: Jaeger, prometheus: Prometheus, runs: dict[str, Run],
) -> None:
    # Every linked panel's series carries the `service` label its Jaeger link opens; its values are
    # services Jaeger holds traces of (job without the namespace).
    known = set(jaeger.services())
    faulty = runs["faulty"].service
    seen: set[str] = set()
    for name, model in dashboards().items():
        for panel in model["panels"]:
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("links"):
                continue
            for target in panel["targets"]:
                for series in prometheus.query(dashboard_query(prometheus, target["expr"], {"job": faulty})):
                    assert "service" in series["metric"], (name, panel["title"])
                    seen.add(series["metric"]["service"])
    assert seen == {faulty}
    assert faulty in known


def test_span_metrics_keep_attempts_of_different_operations_apart(
    prometheus: Prometheus, runs: dict[str, Run],
) -> None:
    # "attempt 1" is the span name of every operation's first attempt; the spanmetrics connector's
    # shannon.operation dimension keeps them in one series per operation.
    selector = f'traces_span_metrics_calls_total{{service_name="{runs["faulty"].service}", span_name="attempt 1"}}'
    series = wait_until(lambda: prometheus.query(selector), timeout=60, what="span metrics of attempt spans")
    operations = {s["metric"].get(tel.OPERATION.replace(".", "_")) for s in series}
    assert None not in operations
    assert {"llm.chat", "search-api", "cache.get"} <= operations


def test_every_recording_rule_records_the_workload(prometheus: Prometheus, runs: dict[str, Run]) -> None:
    rules = [rule for group in alert_rules()["groups"] for rule in group["rules"] if "record" in rule]
    # The error-budget windows over 2h sum the 5-minute counts at multiples of 5 minutes: they hold this
    # run from the next such mark on (the promtool cases check their counts); here they must evaluate.
    tiled = {rule["record"] for rule in rules if rule["record"].endswith(("increase6h", "increase1d", "increase3d"))}
    assert all(r["expr"].startswith("sum_over_time(job_") for r in rules
               if r["record"] in tiled and ":ratio_" not in r["record"])
    recorded = [rule["record"] for rule in rules if rule["record"] not in tiled]
    assert recorded
    assert len(tiled) == 9
    job = runs["faulty"].service

    left = list(recorded)

    def done() -> bool:
        left[:] = [name for name in left if not prometheus.query(f'{name}{{job="{job}"}}')]
        return not left

    try:
        wait_until(done, timeout=60, what="every recording rule evaluated for the faulty run")
    except AssertionError as exc:
        raise AssertionError(f"not recorded for {job}: {left}") from exc
    health = {rule["name"]: (rule["health"], rule.get("lastError", "")) for group in prometheus.rule_groups()
              for rule in group["rules"] if rule["name"] in tiled}
    assert health == dict.fromkeys(tiled, ("ok", "")), health


def test_every_alert_rule_query_parses(prometheus: Prometheus) -> None:
    for _alert, expr in rule_queries():
        prometheus.check_expr(expr)


def test_the_anomaly_alert_fires_for_the_injected_anomaly_and_not_for_the_clean_run(
    jaeger: Jaeger, prometheus: Prometheus, runs: dict[str, Run],
) -> None:
    def firing(service: str) -> list[dict[str, Any]]:
        return alerts_of(prometheus, service, name="ShannonAnomalyDetected")

    # Firing, not only pending: with `for: 10m` of events in every window the alert stayed pending for
    # good, as the detector reports a sustained shift once or twice (benchmarks/alarms.py's services).
    alerts = wait_until(lambda: [a for a in firing(runs["faulty"].service) if a["state"] == "firing"],
                        timeout=60, what="ShannonAnomalyDetected firing")
    assert alerts[0]["labels"]["severity"] == "warning"
    # Its link opens this stack's Jaeger (scripts/stack generated the rules for it) on the offending
    # traces: the UI's /search?<query> is /api/traces?<same query> in the query API.
    url = alerts[0]["annotations"]["traces_url"]
    assert url.startswith(f"{jaeger.query_url}/search?service={runs['faulty'].service}&"), url
    linked = get_json(f"{jaeger.query_url}/api/traces?{url.split('?', 1)[1]}")["data"] or []
    rounds = runs["faulty"].round_traces
    assert linked, url
    assert {rounds[int(t["traceID"], 16)] for t in linked} <= {*ANOMALY_ROUNDS, max(ANOMALY_ROUNDS) + 1}
    assert firing(runs["clean"].service) == []
    clean_events = prometheus.query(f'{tel.ANOMALY_EVENTS.prometheus}{{job="{runs["clean"].service}"}}')
    assert clean_events == [], "the clean run produced no anomaly events"
