"""`shannon-otel demo --otlp-endpoint` against the real Jaeger: the demo's traces arrive, whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest
from _stack import get_text, wait_until

if TYPE_CHECKING:
    from _stack import Collector, Jaeger

pytestmark = pytest.mark.e2e


def test_demo_ships_its_traces_to_jaeger(jaeger: Jaeger) -> None:
    service = f"shannon-otel-cli-e2e-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-m", "shannon_otel", "demo", "--waves", "3", "--tasks", "6",
         "--otlp-endpoint", jaeger.otlp_grpc_endpoint, "--service-name", service],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    # Jaeger takes traces only: the refused metrics are a notice, not an export failure.
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "telemetry export to" not in result.stderr
    assert f"OTLP export to {jaeger.otlp_grpc_endpoint}: ok" in result.stdout
    spans = int(re.search(r"^spans recorded: (\d+)$", result.stdout, re.MULTILINE).group(1))  # type: ignore[union-attr]
    slowest = re.search(r"Slowest wave trace: .*\n(?:.*\n)?trace ([0-9a-f]{32})$", result.stdout, re.MULTILINE)
    assert slowest, result.stdout

    traces = jaeger.wait_for_traces(service, min_spans=spans, timeout=60)
    assert sum(len(t["spans"]) for t in traces) == spans, "every span the demo recorded reached Jaeger"
    roots = sorted(s["operationName"] for t in traces for s in t["spans"] if not s["references"])
    assert roots == ["wave plan", "wave research", "wave write"], "one trace per wave"

    trace = jaeger.trace(slowest.group(1))
    by_id = {s["spanID"]: s for s in trace["spans"]}
    names = {s["operationName"] for s in trace["spans"]}
    assert {"vector-db.query", "llm.chat", "search-api", "attempt 1"} <= names
    attempt = next(s for s in trace["spans"] if s["operationName"] == "attempt 1")
    chain = []
    while attempt["references"]:
        attempt = by_id[attempt["references"][0]["spanID"]]
        chain.append(attempt["operationName"].split()[0])
    assert chain[-2:] == ["task", "wave"], "attempt -> operation -> task -> wave"


def test_check_accepts_the_real_jaeger(jaeger: Jaeger) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-m", "shannon_otel", "check", "--otlp-endpoint", jaeger.otlp_grpc_endpoint,
         "--skip-prometheus"], capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   OTLP grpc {jaeger.otlp_grpc_endpoint}: accepted a test span" in result.stdout
    jaeger.wait_for_traces("shannon-otel-check", min_spans=1, timeout=30)


def _families(text: str) -> set[str]:
    """Series names (histograms by their base name) of the shannon-otel metrics in an exposition."""
    names = set()
    for line in text.splitlines():
        found = re.match(r"^(shannon_[a-z_]+?)(?:_bucket|_sum|_count)?\{", line)
        if found:
            names.add(found.group(1))
    return names


def test_prometheus_port_serves_the_names_the_collector_produces(collector: Collector) -> None:
    """One demo run exports to the collector and serves --prometheus-port: both expositions hold the same series."""
    service = f"shannon-otel-cli-prom-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "shannon_otel", "demo", "--duration", "6", "--tasks", "8",
         "--otlp-endpoint", collector.otlp_grpc_endpoint, "--metric-interval", "1", "--prometheus-port", "0",
         "--service-name", service],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", proc.stdout.readline())
        assert url
        waves = 0
        for line in proc.stdout:  # a full cycle of waves: outage, breaker, saga, anomaly all happened
            waves += " done " in line
            if waves == 6:
                break

        def both() -> tuple[set[str], set[str]] | None:
            ours = _families(get_text(url.group(1)))
            theirs = _families("\n".join(
                line for line in collector.scrape().splitlines() if f'job="{service}"' in line
            ))
            return (ours, theirs) if ours and ours <= theirs else None

        found = wait_until(both, timeout=30, what="the demo's series in the collector's exposition")
        assert found is not None
        ours, theirs = found
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert {"shannon_task_duration_seconds", "shannon_task_outcomes_total", "shannon_calls_total",
            "shannon_breaker_transitions_total", "shannon_task_tokens"} <= ours
    assert ours <= theirs, f"served by --prometheus-port but not by the collector: {sorted(ours - theirs)}"
