"""Session fixtures that start the real servers with `scripts/stack` on free 127.0.0.1 ports.

    jaeger      Jaeger v2 all-in-one (collector-config/jaeger.yaml): OTLP in, query API out
    collector   the Jaeger binary running collector-config/otelcol.yaml, exporting to `jaeger`
    prometheus  Prometheus scraping `collector` every second, with the alert rules loaded that
                scripts/stack generates for this session's Jaeger (`shannon-otel rules --jaeger-url`)

Every test under tests/e2e is marked `e2e`. A server that cannot be built or started fails the tests
that need it (never skips them). The stack's state (logs, generated Prometheus config) lives in a pytest
temp dir, printed on failure; nothing is shared with a stack a developer runs via `scripts/stack start`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _stack import Collector, Jaeger, Prometheus, StackCommandError, free_ports, run_stack, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

E2E_DIR = Path(__file__).parent

# scripts/stack settings key -> variable; each gets a free port for the session.
_PORT_VARS = {
    "jaeger_otlp_grpc": "SHANNON_STACK_JAEGER_OTLP_GRPC_PORT",
    "jaeger_otlp_http": "SHANNON_STACK_JAEGER_OTLP_HTTP_PORT",
    "jaeger_query": "SHANNON_STACK_JAEGER_QUERY_PORT",
    "jaeger_query_grpc": "SHANNON_STACK_JAEGER_QUERY_GRPC_PORT",
    "collector_otlp_grpc": "SHANNON_STACK_COLLECTOR_OTLP_GRPC_PORT",
    "collector_otlp_http": "SHANNON_STACK_COLLECTOR_OTLP_HTTP_PORT",
    "collector_prometheus": "SHANNON_STACK_COLLECTOR_PROMETHEUS_PORT",
    "collector_telemetry": "SHANNON_STACK_COLLECTOR_TELEMETRY_PORT",
    "prometheus": "SHANNON_STACK_PROMETHEUS_PORT",
}
SCRAPE_INTERVAL_S = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@dataclass(frozen=True)
class StackEnv:
    """Where this session's stack lives: its state dir, ports and the variables scripts/stack reads."""

    state_dir: Path
    ports: dict[str, int]
    env: dict[str, str]
    jaeger_bin: Path
    prometheus_bin: Path
    promtool_bin: Path

    def run(self, *args: str) -> str:
        return run_stack(*args, env=self.env)

    def start(self, component: str) -> None:
        try:
            self.run("start", component)
        except StackCommandError as exc:
            pytest.fail(f"{component} did not start (logs in {self.state_dir}):\n{exc}", pytrace=False)

    def stop(self, component: str) -> None:
        self.run("stop", component)


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEnv]:
    """Builds/installs the servers once (`scripts/stack install`) and reserves this session's ports.
    Yields a StackEnv; stops anything still running at the end."""
    state = tmp_path_factory.mktemp("stack")
    # No SHANNON_STACK_RULES_DIR: `start prometheus` generates the rules into <state>/rules linked to
    # this session's Jaeger, as it does for a developer; a test may edit them there and reload.
    ports = dict(zip(_PORT_VARS, free_ports(len(_PORT_VARS)), strict=True))
    env = {var: str(ports[key]) for key, var in _PORT_VARS.items()}
    env |= {
        "SHANNON_STACK_DIR": str(state),
        "SHANNON_STACK_SCRAPE_INTERVAL": f"{SCRAPE_INTERVAL_S}s",
        "SHANNON_STACK_EVAL_INTERVAL": f"{SCRAPE_INTERVAL_S}s",
        "SHANNON_STACK_SPANMETRICS_FLUSH": "1s",
    }
    try:
        out = run_stack("install", env=env)
    except StackCommandError as exc:
        pytest.fail(f"cannot install the e2e servers:\n{exc}", pytrace=False)
    paths = dict(line.split()[:2] for line in out.splitlines() if line.strip())
    stack = StackEnv(state, ports, env, Path(paths["jaeger"]), Path(paths["prometheus"]), Path(paths["promtool"]))
    yield stack
    stack.run("stop", "all")


@pytest.fixture(scope="session")
def jaeger(stack_env: StackEnv) -> Iterator[Jaeger]:
    """Jaeger v2 all-in-one with memory storage; its Monitor tab reads from the `prometheus` fixture's
    port (only meaningful once that fixture runs too)."""
    stack_env.start("jaeger")
    p = stack_env.ports
    yield Jaeger(
        otlp_grpc_endpoint=f"http://127.0.0.1:{p['jaeger_otlp_grpc']}",
        otlp_http_endpoint=f"http://127.0.0.1:{p['jaeger_otlp_http']}",
        query_url=f"http://127.0.0.1:{p['jaeger_query']}",
    )
    stack_env.stop("jaeger")


@pytest.fixture(scope="session")
def collector(stack_env: StackEnv, jaeger: Jaeger) -> Iterator[Collector]:
    """collector-config/otelcol.yaml run by the Jaeger binary: traces to `jaeger`, metrics (app and
    span metrics, flushed every second) on a Prometheus endpoint."""
    stack_env.start("collector")
    p = stack_env.ports
    yield Collector(
        otlp_grpc_endpoint=f"http://127.0.0.1:{p['collector_otlp_grpc']}",
        otlp_http_endpoint=f"http://127.0.0.1:{p['collector_otlp_http']}",
        metrics_url=f"http://127.0.0.1:{p['collector_prometheus']}/metrics",
        telemetry_url=f"http://127.0.0.1:{p['collector_telemetry']}/metrics",
    )
    stack_env.stop("collector")


@pytest.fixture(scope="session")
def prometheus(stack_env: StackEnv, collector: Collector) -> Iterator[Prometheus]:
    """Prometheus with collector-config/prometheus.yml pointed at `collector`, scrape and rule
    evaluation every second, an empty TSDB, and the alert rules scripts/stack generated for the
    `jaeger` fixture's query URL (`rules_dir`: edit a file there, then call `reload()`)."""
    stack_env.start("prometheus")
    prometheus = Prometheus(
        url=f"http://127.0.0.1:{stack_env.ports['prometheus']}",
        scrape_interval=SCRAPE_INTERVAL_S,
        config_file=stack_env.state_dir / "prometheus" / "prometheus.yml",
        rules_dir=stack_env.state_dir / "rules",
        promtool=stack_env.promtool_bin,
        env=stack_env.env,
    )
    # The event counts take a series' first value whole only where Prometheus scraped a target up a step before
    # (_promql.scraping: a fresh Prometheus does not count a running app's past as new); the rules' longest step
    # is 60 s (the 2-hour count), so a workload run sooner after the start was not counted there.
    wait_until(lambda: prometheus.query("max_over_time(up[5m] offset 61s) == 1"), timeout=120,
               what="Prometheus scraping for over a minute")
    yield prometheus
    stack_env.stop("prometheus")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real redis-server on a free 127.0.0.1 port (installed by scripts/stack install); fails, never skips."""
    sys.path.insert(0, str(E2E_DIR.parent))  # the unit tests' redis-server helper, shared with them
    from _redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
