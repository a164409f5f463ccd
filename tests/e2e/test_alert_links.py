"""The alerts' Jaeger links open the traces the alert is about: the bundled rules (`for:` set to 0 so they
fire at once) evaluated by the real Prometheus on a workload with failing tasks, a retry storm and an
open breaker, and each firing alert's `traces_url` asked of the real Jaeger's query API."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from _prometheus import at_once, firing_alerts, loaded_rules
from _stack import get_json, wait_until
from test_panel_truth import run_process

from shannon_otel import _telemetry as tel
from shannon_otel.assets import alert_rules

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _stack import Collector, Jaeger, Prometheus

pytestmark = pytest.mark.e2e
SERVICE = f"links-{uuid.uuid4().hex[:8]}"
FIRING = ("ShannonTaskErrorRateHigh", "ShannonTaskErrorBudgetBurn", "ShannonRetryStorm",
          "ShannonCircuitBreakerOpenTooLong", "ShannonWaveStalled")
# A stall needs a wave stuck for its whole window: its rule gets an expression true for every wave that ran
# (same labels), so Prometheus renders its real annotations, link included.
_NOW = {"ShannonWaveStalled": "sum by (job, shannon_wave_name) ({outcomes}) > 0"}


@pytest.fixture(scope="module")
def firing(collector: Collector, jaeger: Jaeger, prometheus: Prometheus) -> Iterator[dict[str, dict[str, Any]]]:
    """Alert name -> a firing alert of SERVICE, from a rule file of the FIRING alerts with `for: 0m` (the
    burn-rate alerts read the recording rules of the stack's own rule file)."""
    chosen = at_once(alert_rules(jaeger_url=jaeger.query_url), FIRING)
    for rule in chosen:
        if rule["alert"] in _NOW:
            rule["expr"] = _NOW[rule["alert"]].format(outcomes=tel.TASK_OUTCOMES.prometheus)
    with loaded_rules(prometheus, "links-now", chosen):
        run_process(collector.otlp_grpc_endpoint, SERVICE, 3.0 * prometheus.scrape_interval)
        yield firing_alerts(prometheus, SERVICE, FIRING)


def _linked(jaeger: Jaeger, alert: dict[str, Any]) -> list[dict[str, Any]]:
    url = alert["annotations"]["traces_url"]
    assert url.startswith(f"{jaeger.query_url}/search?service={SERVICE}&"), url
    query = url.split("?", 1)[1]
    # Spans reach Jaeger in batches: ask until the search finds some.
    return wait_until(lambda: get_json(f"{jaeger.query_url}/api/traces?{query}&limit=100")["data"],
                      timeout=30, what=f"traces behind {url}")


def _spans(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for trace in traces for span in trace["spans"]]


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


@pytest.mark.parametrize("name", ["ShannonTaskErrorRateHigh", "ShannonTaskErrorBudgetBurn"])
def test_the_task_error_links_open_the_failed_runs_of_the_wave(
    jaeger: Jaeger, firing: dict[str, Any], name: str,
) -> None:
    traces = _linked(jaeger, firing[name])
    waves = [s for s in _spans(traces) if s["operationName"] == tel.SPAN_WAVE.format(wave="truth")]
    assert waves and len(waves) == len(traces), "one run of wave truth per trace"
    assert all(_tags(s)[tel.TASK_OUTCOME] == "failure" for s in waves)


def test_the_stall_link_opens_the_runs_of_the_wave(jaeger: Jaeger, firing: dict[str, Any]) -> None:
    alert = firing["ShannonWaveStalled"]
    wave = alert["labels"][tel.WAVE_NAME.replace(".", "_")]
    traces = _linked(jaeger, alert)  # operation=wave+<name>: Jaeger reads the '+' of urlquery as a space
    assert all(any(s["operationName"] == tel.SPAN_WAVE.format(wave=wave) for s in t["spans"]) for t in traces)


def test_the_retry_storm_link_opens_the_retried_operation(jaeger: Jaeger, firing: dict[str, Any]) -> None:
    traces = _linked(jaeger, firing["ShannonRetryStorm"])
    assert all(any(s["operationName"] == "truth.retry" for s in t["spans"]) for t in traces)
    assert any(s["operationName"] == "attempt 2" for s in _spans(traces)), "the retries are in the traces"


def test_the_breaker_link_opens_the_breaker_spans(jaeger: Jaeger, firing: dict[str, Any]) -> None:
    alert = firing["ShannonCircuitBreakerOpenTooLong"]
    assert alert["labels"][tel.BREAKER_NAME.replace(".", "_")] == "truth.breaker"
    traces = _linked(jaeger, alert)
    assert all(any(_tags(s).get(tel.BREAKER_NAME) == "truth.breaker" for s in t["spans"]) for t in traces)
    assert alert["labels"]["instance"], "the process it is open in"
