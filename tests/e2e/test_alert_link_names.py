"""The alerts' Jaeger links of a wave and a breaker whose names hold what JSON escapes otherwise than Go: the
bundled rules (`for: 0m`, one failed task enough) rendered by the real Prometheus, each `traces_url` asked of the
real Jaeger. Go's `printf "%q"` wrote a control character as `\\x01`, which Jaeger's JSON reading of `tags`
refused: "400 malformed 'tags' parameter"."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from _prometheus import at_once, firing_alerts, loaded_rules
from _stack import get_json, wait_until

from shannon_otel import CircuitBreaker, Wave, configure
from shannon_otel import _telemetry as tel
from shannon_otel.assets import alert_rules
from shannon_otel.testing import run_virtual

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _stack import Collector, Jaeger, Prometheus

pytestmark = pytest.mark.e2e
SERVICE = f"names-{uuid.uuid4().hex[:8]}"
# A control character (\x01: Go quotes it \x01, JSON \u0001), a tab, quotes, a backslash, what Go's `js`
# escapes besides (<, >, &, =) and a character outside ASCII.
NAME = "odd\x01\t'\"\\<=>&é"
FIRING = ("ShannonTaskErrorRateHigh", "ShannonCircuitBreakerOpenTooLong")


class DownError(Exception):
    """The failing dependency."""


async def _workload(providers: dict[str, Any]) -> None:
    breaker = CircuitBreaker(NAME, failure_threshold=1, reset_timeout=3600, **providers)

    async def down() -> None:
        raise DownError

    async def task() -> None:
        await breaker.call(down)

    await Wave(NAME, **providers).run([task, task])


@pytest.fixture(scope="module")
def firing(collector: Collector, jaeger: Jaeger, prometheus: Prometheus) -> Iterator[dict[str, dict[str, Any]]]:
    chosen = at_once(alert_rules(jaeger_url=jaeger.query_url, min_tasks=1), FIRING)
    with loaded_rules(prometheus, "link-names", chosen), configure(
        SERVICE, exporter="otlp_grpc", endpoint=collector.otlp_grpc_endpoint, set_global=False, metric_interval_s=0.5,
    ) as telemetry:
        providers = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
        run_virtual(_workload(providers))
        assert telemetry.force_flush(10)
        assert telemetry.meter_provider.force_flush(10_000)
        yield firing_alerts(prometheus, SERVICE, FIRING)


@pytest.mark.parametrize(("name", "attribute"), [
    ("ShannonTaskErrorRateHigh", tel.WAVE_NAME), ("ShannonCircuitBreakerOpenTooLong", tel.BREAKER_NAME),
])
def test_the_link_of_an_oddly_named_wave_or_breaker_opens_its_traces(
    jaeger: Jaeger, firing: dict[str, dict[str, Any]], name: str, attribute: str,
) -> None:
    alert = firing[name]
    assert alert["labels"][attribute.replace(".", "_")] == NAME
    url = alert["annotations"]["traces_url"]
    assert url.startswith(f"{jaeger.query_url}/search?service={SERVICE}&"), url
    # get_json fails on Jaeger's 400; spans reach Jaeger in batches: ask until the search finds them.
    traces = wait_until(lambda: get_json(f"{jaeger.query_url}/api/traces?{url.split('?', 1)[1]}")["data"],
                        timeout=30, what=f"traces behind {url}")
    tags = [{t["key"]: t["value"] for t in s["tags"]} for tr in traces for s in tr["spans"]]
    assert any(t.get(attribute) == NAME for t in tags), tags
