"""The logging hook's records through configure()'s OTel logs signal into the bundled collector."""

from __future__ import annotations

import asyncio
import re

import pytest
from _stack import Collector, get_text, wait_until

from shannon_otel import Retry, configure
from shannon_otel._logs._joined import _Default


def _accepted_log_records(collector: Collector) -> float:
    text = get_text(collector.telemetry_url)
    return sum(float(m.group(1)) for m in re.finditer(
        r"^otelcol_receiver_accepted_log_records(?:_total)?\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE))


def test_retry_records_reach_the_collectors_logs_pipeline(
    collector: Collector, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    before = _accepted_log_records(collector)
    _Default.reset()
    handle = configure("shannon-logs-e2e", endpoint=collector.otlp_grpc_endpoint, set_global=False)
    try:
        left = [1]

        async def flaky() -> str:
            if left:
                left.pop()
                raise ConnectionError
            return "ok"

        async def no_sleep(seconds: float) -> None:
            return None

        policy = Retry(name="logs-e2e", attempts=2, sleep=no_sleep, tracer_provider=handle.tracer_provider,
                       meter_provider=handle.meter_provider)
        assert asyncio.run(policy.call(flaky)) == "ok"
        assert handle.force_flush(10)
    finally:
        handle.shutdown()
        _Default.reset()
    wait_until(lambda: _accepted_log_records(collector) > before, timeout=30,
               what="the collector to accept the retry's log record")
