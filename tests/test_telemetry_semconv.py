"""Round-6 probes: does what the library shows mean what a reader of Jaeger, Grafana, Prometheus and the
OTel semantic conventions expects? Run through the public API with the real SDK in memory (virtual time);
each named test failed before its fix.

Semantic conventions read (docs/general/recording-errors.md): a failed operation's span is ERROR with
``error.type``, and "for a given error, the same value is used as the ``error.type`` attribute on spans
and metrics".
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import parse_qs

import pytest
from opentelemetry.trace import StatusCode

from shannon_otel import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    FallbackError,
    Pipeline,
    Retry,
    Saga,
    SagaError,
    Step,
    Wave,
)
from shannon_otel._telemetry import DropReason
from shannon_otel.assets import alert_rules, dashboards
from shannon_otel.testing import InMemoryTelemetry, run_virtual


class RefusedError(Exception):
    """An error the breaker is told to ignore (a caller's mistake, not the dependency's)."""


async def _refuse() -> None:
    raise RefusedError("bad request")


def _calls_error_types(tel: InMemoryTelemetry) -> set[Any]:
    return {p.attributes.get("error.type") for p in tel.points("shannon.calls")}


@pytest.mark.parametrize("with_retry", [False, True])
def test_a_call_ending_in_an_error_the_breaker_ignores_is_an_error_on_its_operation_span(with_retry: bool) -> None:
    # The breaker does not count RefusedError (BreakerConfig(ignore=...)), so the call's outcome is `ignored`;
    # yet the error reached the caller. The operation span read UNSET without error.type (a green span in
    # Jaeger over a red attempt) while shannon.calls counted the same call with error.type RefusedError.
    tel = InMemoryTelemetry()
    config = BreakerConfig(ignore=RefusedError)
    policy: Any = (
        Pipeline(Retry(attempts=2, on=TimeoutError), CircuitBreaker("payments", config), **tel.providers)
        if with_retry else CircuitBreaker("payments", config, **tel.providers)
    )

    async def main() -> None:
        with pytest.raises(RefusedError):
            await policy.call(_refuse)

    run_virtual(main())
    operation = next(s for s in tel.spans() if s.attributes and s.attributes.get("shannon.call.outcome") == "ignored")
    assert operation.status.status_code is StatusCode.ERROR
    error_type = f"{__name__}.RefusedError"
    assert operation.attributes is not None
    assert operation.attributes.get("error.type") == error_type
    assert error_type in _calls_error_types(tel)
    (attempt,) = tel.children(operation)
    assert attempt.status.status_code is StatusCode.ERROR


_SUBJECT_LABELS = ("shannon_wave_name", "shannon_operation", "shannon_breaker_name", "shannon_anomaly_series",
                   "shannon_anomaly_signal")


def test_every_alert_about_one_wave_operation_or_breaker_links_to_its_traces_only() -> None:
    # ShannonTaskErrorRateHigh and ShannonTaskErrorBudgetBurn fire per wave, yet their Jaeger link searched
    # every trace of the service with a failed span (tags {"shannon.task.outcome": "failure"}): against a
    # real Jaeger 2.12 with waves ingest, other and timing failing, the link of an `ingest` alert listed all
    # three. It now matches the wave span by name and outcome: only ingest's (checked against the real
    # Jaeger query API).
    linked = 0
    for group in alert_rules()["groups"]:
        for rule in group["rules"]:
            url = rule.get("annotations", {}).get("traces_url")
            if url is None:
                continue
            subjects = [label for label in _SUBJECT_LABELS if f"$labels.{label}" in rule["annotations"]["description"]]
            missing = [label for label in subjects if f"$labels.{label}" not in url]
            assert not missing, (rule["alert"], missing, url)
            linked += bool(subjects)
    assert linked >= 6


def _link_range(url: str) -> tuple[dict[str, list[str]], str, str]:
    """The query parameters of a traces_url template and its start/end PromQL expressions."""
    params = parse_qs(url.split("?", 1)[1])
    start, end = (re.fullmatch(r'\{\{ with query "\((.+)\) \* 1e6" \}\}\{\{ \. \| first \| value \| printf "%\.0f" '
                               r"\}\}\{\{ end \}\}", params[key][0]) for key in ("start", "end"))
    assert start and end, url
    return params, start.group(1), end.group(1)


def test_every_alert_link_searches_the_time_before_the_alert_not_jaegers_default_two_days() -> None:
    # The links said `lookback=1h`, which only the Jaeger UI's form reads: its query API (what the UI calls
    # with the URL's parameters) searches `start`..`end`, two days back from now when they are absent. Against
    # the real Jaeger (2.12, memory storage) `lookback=1h` listed traces of 3 and 30 hours ago beside the new
    # one while the form said "Last Hour". Now the UI's own custom range, in microseconds, before the evaluation:
    # an hour for links matching a call's, breaker's or task's spans; a day for those matching a run's wave span
    # (Jaeger matches a span by its start, and a long run's wave span started hours before it failed), plus the
    # stall window for a stall, and an error budget alert's longest window when longer (the failures it counts).
    windows: dict[tuple[str, str], int] = {}
    for group in alert_rules(stall_after_wave={"train": "40m"})["groups"]:
        for rule in group["rules"]:
            url = rule.get("annotations", {}).get("traces_url")
            if url is None:
                continue
            params, start, end = _link_range(url)
            assert params["lookback"] == ["custom"], url
            assert end == "time()", url
            window = re.fullmatch(r"time\(\) - (\d+)", start)
            assert window, url
            windows[rule["alert"], rule["labels"]["severity"]] = int(window.group(1))
    day = 86400
    assert windows == {
        ("ShannonTaskErrorRateHigh", "warning"): day,
        ("ShannonWaveStalled", "warning"): 40 * 60 + day,
        ("ShannonTaskErrorBudgetBurn", "critical"): day,
        ("ShannonTaskErrorBudgetBurn", "warning"): 3 * day,
        ("ShannonRetryStorm", "warning"): 3600,
        ("ShannonCircuitBreakerOpenTooLong", "warning"): 3600,
        ("ShannonAnomalyDetected", "warning"): 3600,
    }


def _failed_wave_tags(name: str) -> dict[str, str]:
    """The span attributes the task error alerts' Jaeger link asks for, for the wave called ``name``."""
    (rule,) = [r for g in alert_rules()["groups"] for r in g["rules"] if r.get("alert") == "ShannonTaskErrorRateHigh"]
    template = parse_qs(rule["annotations"]["traces_url"].split("?", 1)[1])["tags"][0]
    fields = re.fullmatch(r'\{\{ printf "(.+)" \(\$labels\.shannon_wave_name \| js \| reReplaceAll `\\\\\'` `\'`\) '
                          r"\| urlquery \}\}", template)
    assert fields, template
    rendered: dict[str, str] = json.loads(fields.group(1).replace('\\"', '"').replace('"%s"', json.dumps(name)))
    return rendered


def test_the_task_error_link_finds_the_failed_tasks_of_a_run_that_is_still_going() -> None:
    # The task error alerts' link matched only the wave span (name and outcome), which is exported when the run
    # ends: for a run of hours failing from its fifth minute the alert fired and its link listed nothing of the
    # run. A failed task's span now carries the wave's name too, so it matches (exported when the task ends).
    otel = InMemoryTelemetry()
    seen: list[list[dict[str, Any]]] = []

    async def task(i: int) -> int:
        if i == 0:
            raise KeyError("k")
        await asyncio.sleep(0.01)  # the failed task's span has ended by now; the wave's has not
        seen.append([dict(s.attributes or {}) for s in otel.spans()])
        return i

    asyncio.run(Wave("ingest", max_concurrency=2, **otel.providers).map(task, [0, 1]))
    wanted = _failed_wave_tags("ingest").items()
    (during,) = seen
    assert [a for a in during if wanted <= a.items()], during
    assert wanted <= dict(otel.span("wave ingest").attributes or {}).items()


def _link_variables(panel: dict[str, Any]) -> set[str]:
    links = panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    return set(re.findall(r"\$\{([^}]+)\}", json.dumps(links)))


def test_a_table_panels_trace_link_reads_the_service_from_its_row() -> None:
    # A table-format Prometheus query gives Grafana one column per label and a Value column without labels,
    # so `${__field.labels.service}` is empty in every cell: the tables' links ("Slowest waves", "Most
    # retried operations", "Anomaly events by series") searched Jaeger for no service. A row's own
    # `${__data.fields["service"]}` names it; time series fields keep their labels.
    tables = series = 0
    for model in dashboards().values():
        for panel in model["panels"]:
            used = _link_variables(panel)
            if not used:
                continue
            table = any(target["format"] == "table" for target in panel["targets"])
            assert used == ({'__data.fields[\\"service\\"]'} if table else {"__field.labels.service"}), (
                panel["title"], used)
            tables += table
            series += not table
    assert tables >= 3
    assert series >= 20


class DownError(Exception):
    """A dependency's failure, with a message worth reading."""


def test_every_failed_span_says_why_in_its_status_description() -> None:
    # Semantic conventions: a failed operation's span SHOULD get a status description, e.g. the exception
    # message. Task spans had "<error.type>: <message>"; attempt, operation, fallback, saga step and
    # compensation spans were ERROR with no description (Jaeger showed the message only inside the
    # exception event). A status description is never set without ERROR (the span status rules).
    tel = InMemoryTelemetry()

    async def down() -> None:
        raise DownError("db down")

    async def undo(_: object) -> None:
        raise ValueError("undo failed")

    async def ok() -> int:
        return 1

    async def silent() -> None:
        raise KeyError

    async def main() -> None:
        with pytest.raises(FallbackError):
            await Fallback(lambda error: down(), **tel.providers).call(down)
        with pytest.raises(KeyError):
            await Retry(attempts=1, **tel.providers).call(silent)
        with pytest.raises(SagaError):
            await Saga("order", **tel.providers).run(Step("reserve", ok, undo), Step("charge", down))
        await Wave[None]("w", **tel.providers).run([down])

    run_virtual(main())
    expected = {f"{__name__}.DownError: db down", "ValueError: undo failed", "KeyError",
                "shannon_otel.FallbackError: the primary and the fallback both failed (2 sub-exceptions)"}
    seen: dict[str, set[str]] = {}
    for span in tel.spans():
        status = span.status
        if status.status_code is not StatusCode.ERROR:
            assert status.description is None, (span.name, status)
            continue
        assert status.description, span.name
        seen.setdefault(span.name, set()).add(status.description)
    described = {d for ds in seen.values() for d in ds}
    for name in ("attempt 1", "fallback", "fallback fallback", "retry", "step charge", "compensate reserve",
                 "task w"):
        assert seen.get(name, set()) & expected, (name, seen.get(name))
    assert expected <= described, described


def test_a_rejected_span_is_an_error_span_with_the_error_type_the_call_records() -> None:
    # Semantic conventions (Recording errors): a span with ERROR status carries error.type. The breaker's
    # `rejected {op}` span was ERROR ("circuit breaker db is open") without it, while the operation span and
    # the shannon.calls point of the same rejected call had error.type shannon_otel.CircuitOpenError.
    tel = InMemoryTelemetry()
    breaker = CircuitBreaker("db", failure_threshold=1, **tel.providers)

    async def down() -> str:
        raise DownError("db down")

    async def served(error: BaseException) -> str:
        return "cached"

    async def main() -> None:
        with pytest.raises(DownError):
            await breaker.call(down)
        with pytest.raises(CircuitOpenError):
            await breaker.call(down)
        assert await Pipeline(Fallback(served), breaker, name="served", **tel.providers).call(down) == "cached"

    run_virtual(main())
    expected = "shannon_otel.CircuitOpenError"
    for span in tel.spans():
        if span.status.status_code is StatusCode.ERROR:
            assert (span.attributes or {}).get("error.type"), span.name
    rejected = [s for s in tel.spans() if s.name in ("rejected db", "rejected served")]
    assert len(rejected) == 2
    for span in rejected:
        assert (span.attributes or {}).get("error.type") == expected
        assert (span.attributes or {}).get("shannon.call.outcome") == "rejected"  # the breaker's decision
    assert (tel.spans("db")[1].attributes or {}).get("error.type") == expected
    assert expected in _calls_error_types(tel)
    # the call a fallback served: its operation span and its shannon.calls point agree (success); the rejected
    # span under it records the breaker's rejection of that attempt, not the call's outcome (docs/architecture.md)
    assert (tel.span("served").attributes or {}).get("shannon.call.outcome") == "success"
    assert [(dict(p.attributes), p.value) for p in tel.points("shannon.calls")
            if p.attributes["shannon.operation"] == "served"] == [
        ({"shannon.operation": "served", "shannon.call.outcome": "success"}, 1)]


_DURATION = re.compile(r"([\d.]+)(ms|s|m|h)")
_MS = {"ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def test_the_span_metrics_behind_jaegers_monitor_tab_resolve_the_durations_the_library_measures() -> None:
    # The spanmetrics connector's default buckets end at 15 s: the Monitor tab's P95/P99 latency (histogram_quantile
    # over traces_span_metrics_duration_milliseconds_bucket) of any span longer than that, a 40 s LLM task or a
    # 10-minute wave, read 15 s, while shannon.task.duration / shannon.wave.duration resolve up to an hour.
    from pathlib import Path

    from shannon_otel._telemetry import DURATION_BUCKETS_S, WAVE_DURATION_BUCKETS_S

    config = (Path(__file__).resolve().parents[1] / "collector-config" / "otelcol.yaml").read_text(encoding="utf-8")
    connector = config.split("\n  spanmetrics:\n", 1)[1].split("\nexporters:", 1)[0]
    found = re.search(r"\n      explicit:\n        buckets: \[([^\]]*)\]", connector)
    assert found, "the spanmetrics connector keeps its default buckets (they end at 15 s)"
    bounds_ms = []
    for item in found.group(1).split(","):
        number, unit = _DURATION.fullmatch(item.strip()).groups()  # type: ignore[union-attr]
        bounds_ms.append(float(number) * _MS[unit])
    assert bounds_ms == sorted(set(bounds_ms))
    assert max(bounds_ms) >= max(WAVE_DURATION_BUCKETS_S) * 1e3
    assert min(bounds_ms) <= min(DURATION_BUCKETS_S) * 1e3


@pytest.mark.parametrize(("metric", "tasks"), [
    ("shannon.task.duration", 2), ("shannon.task.queue_wait.duration", 2), ("shannon.wave.duration", 4),
])
def test_a_task_of_many_minutes_lands_in_a_bucket_of_its_own_not_the_overflow(metric: str, tasks: int) -> None:
    # The duration buckets ended at 300 s (tasks) and 1 h (waves): a 25-minute task (the stall alert's own example
    # of a legitimately long task, docs/runbook.md), the 25-minute queue wait of the task behind it and a wave of
    # four of them (100 minutes) fell in the +Inf bucket, and every percentile panel over them (histogram_quantile)
    # read the last boundary.
    import asyncio

    tel = InMemoryTelemetry()
    minutes = 25 * 60

    async def long_task(_: int) -> None:
        await asyncio.sleep(minutes)

    async def main() -> None:  # the wave timed on the virtual loop's clock: the minutes pass at once
        wave = Wave("train", max_concurrency=1, clock=asyncio.get_running_loop().time, **tel.providers)
        await wave.map(long_task, range(tasks))

    run_virtual(main())
    point = max(tel.points(metric), key=lambda p: p.sum)
    bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
    assert counts[-1] == 0, f"{metric}: the long one is in +Inf, quantiles read {bounds[-1]} s"
    longest = point.max
    (bucket,) = [i for i, n in enumerate(counts) if n and bounds[i] >= longest]
    assert bounds[bucket - 1] < longest <= bounds[bucket]


def test_the_telemetry_dropped_panel_names_every_signal_and_reason_the_metric_counts() -> None:
    # The panel said "Spans and metric points ... (queue full, export failed, shutdown)", while
    # shannon.telemetry.dropped also counts log records and the `rejected` reason (a backend's OTLP partial
    # success): a reader seeing a `logs rejected` series had no word of it on the panel.
    (panel,) = [panel for model in dashboards().values() for panel in model["panels"]
                if panel["title"] == "Telemetry dropped"]
    text = panel["description"]
    assert "log records" in text
    missing = [value for value in (*(r.value for r in DropReason), "traces", "metrics", "logs") if value not in text]
    assert not missing, (missing, text)
