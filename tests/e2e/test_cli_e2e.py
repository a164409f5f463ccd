"""`shannon-otel demo --otlp-endpoint` against the real Jaeger: the demo's traces arrive, whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _stack import Jaeger

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
    slowest = re.search(r"Slowest wave trace: \S+ \(trace ([0-9a-f]{32})\)", result.stdout)
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
