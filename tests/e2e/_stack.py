"""Handles on the real servers of the e2e tests, and bounded waits for what they eventually show.

The servers are started by `scripts/stack` (see conftest.py); everything here only talks HTTP to them
on 127.0.0.1 with the standard library. Every wait has a timeout and fails with the last thing seen.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

REPO = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO / "scripts" / "stack"
CONFIG_DIR = REPO / "collector-config"

T = TypeVar("T")


class StackCommandError(RuntimeError):
    """`scripts/stack` exited non-zero; the message carries its output."""


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (held open together so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def run_stack(*args: str, env: Mapping[str, str], timeout: float | None = None) -> str:
    """Run `scripts/stack ARGS` with `env` added to ours; return stdout or raise with its output."""
    # OTEL_* of the developer's shell (`eval "$(scripts/stack env)"`) must not reach the servers.
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [str(STACK_SCRIPT), *args],
        env=base | dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise StackCommandError(
            f"scripts/stack {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def get_json(url: str, params: Mapping[str, object] | None = None, *, timeout: float = 10) -> Any:
    """GET `url`?`params` and decode the JSON body; HTTP errors raise with the body attached."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"GET {url} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc


def get_text(url: str, *, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def wait_until(probe: Callable[[], T], *, timeout: float = 30, interval: float = 0.25, what: str = "condition") -> T:
    """Call `probe` until it returns something truthy and return that; after `timeout` seconds fail
    with the last value (or exception) seen. Exceptions from `probe` count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


@dataclass(frozen=True)
class Jaeger:
    """A running Jaeger v2 all-in-one: OTLP in, query API out."""

    otlp_grpc_endpoint: str  # http://127.0.0.1:PORT, for OTLPSpanExporter(endpoint=..., insecure=True)
    otlp_http_endpoint: str  # http://127.0.0.1:PORT, append /v1/traces for the HTTP exporter
    query_url: str  # base of the UI and of /api/...

    def services(self) -> list[str]:
        return list(get_json(f"{self.query_url}/api/services")["data"] or [])

    def traces(self, service: str, **params: object) -> list[dict[str, Any]]:
        """Traces of `service` from /api/traces (Jaeger's JSON model: traceID, spans, processes).
        Extra params pass through: operation, tags (JSON string), limit, lookback, start, end."""
        query = {"service": service, "limit": 100, "lookback": "1h", **params}
        return list(get_json(f"{self.query_url}/api/traces", query)["data"] or [])

    def trace(self, trace_id: str) -> dict[str, Any]:
        data = get_json(f"{self.query_url}/api/traces/{trace_id}")["data"]
        return dict(data[0])

    def wait_for_traces(
        self,
        service: str,
        *,
        min_spans: int = 1,
        timeout: float = 30,
        **params: object,
    ) -> list[dict[str, Any]]:
        """Traces of `service` once they hold at least `min_spans` spans in total (spans arrive in
        batches, so an early answer may be partial)."""

        def probe() -> list[dict[str, Any]]:
            found = self.traces(service, **params)
            return found if sum(len(t["spans"]) for t in found) >= min_spans else []

        return wait_until(probe, timeout=timeout, what=f"{min_spans} span(s) of {service!r} in Jaeger")


@dataclass(frozen=True)
class Collector:
    """The Jaeger binary running collector-config/otelcol.yaml, exporting to the `jaeger` fixture."""

    otlp_grpc_endpoint: str
    otlp_http_endpoint: str
    metrics_url: str  # the prometheus exporter's /metrics (OpenMetrics when asked for it)
    telemetry_url: str  # the collector's own /metrics

    def scrape(self) -> str:
        return get_text(self.metrics_url)


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus scraping the collector every `scrape_interval`, with the rules loaded."""

    url: str
    scrape_interval: float
    config_file: Path
    rules_dir: Path  # the rule files Prometheus loads (a copy of collector-config/rules)
    promtool: Path
    env: Mapping[str, str] = field(repr=False, default_factory=dict)

    def _api(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        # 60 s, not get_json's 10: a dashboard's range query at step 1 s over a few minutes of 1 s scrapes reads
        # each series' last sample over 5 minutes per step (assets._promql.latest): 1-3 s here, and one timed out
        # at 10 s on a loaded machine (Prometheus' own query timeout is 2 minutes)
        body = get_json(f"{self.url}/api/v1/{path}", params, timeout=60)
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result list (vector samples: {"metric": {...}, "value": [ts, "v"]})."""
        params: dict[str, object] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._api("query", params)
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data]

    def query_range(self, expr: str, start: float, end: float, step: float = 1) -> list[dict[str, Any]]:
        """Range query; the result matrix ({"metric": {...}, "values": [[ts, "v"], ...]})."""
        return list(self._api("query_range", {"query": expr, "start": start, "end": end, "step": step})["result"])

    def wait_for(self, expr: str, *, timeout: float = 30) -> list[dict[str, Any]]:
        """The result of `expr` once it is non-empty."""
        return wait_until(lambda: self.query(expr), timeout=timeout, what=f"data for {expr!r} in Prometheus")

    def exemplars(self, expr: str, lookback: float = 3600) -> list[dict[str, Any]]:
        """Exemplars of the series `expr` selects over the last `lookback` seconds, one entry per series:
        {"seriesLabels": {...}, "exemplars": [{"labels": {"trace_id": ..., "span_id": ...}, ...}]}."""
        now = time.time()
        return list(self._api("query_exemplars", {"query": expr, "start": now - lookback, "end": now}))

    def series(self, match: str) -> list[dict[str, str]]:
        return list(self._api("series", {"match[]": match, "start": time.time() - 3600}))

    def metric_names(self) -> set[str]:
        return set(self._api("label/__name__/values"))

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (state "pending" or "firing") with their labels and annotations."""
        return list(self._api("alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self._api("rules")["groups"])

    def targets(self) -> dict[str, str]:
        """job -> health ("up", "down", "unknown" until first scraped) of each scrape target."""
        return {t["labels"]["job"]: t["health"] for t in self._api("targets")["activeTargets"]}

    def targets_up(self) -> bool:
        health = self.targets()
        return bool(health) and set(health.values()) == {"up"}

    def reload(self) -> None:
        """Re-read the config and rule files (POST /-/reload, enabled by scripts/stack)."""
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def check_expr(self, expr: str) -> None:
        """Parse `expr` with promtool (2.42 has no `promtool check query`): a one-rule group through
        `promtool check rules`. Raises AssertionError with promtool's message when it does not parse."""
        group = {"groups": [{"name": "check", "rules": [{"record": "check:expr", "expr": expr}]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
            json.dump(group, fh)
        try:
            proc = subprocess.run(
                [str(self.promtool), "check", "rules", fh.name], capture_output=True, text=True, check=False
            )
        finally:
            os.unlink(fh.name)
        if proc.returncode != 0:
            raise AssertionError(f"promtool rejects {expr!r}:\n{proc.stdout}{proc.stderr}")
