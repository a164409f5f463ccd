"""Round-5 probes: a new user's first hour with the README, docs/ and the command, and whether what the
docs and assets say is true of the code. Each test failed before its fix."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import shannon_otel
import shannon_otel.testing
from shannon_otel.assets import alert_rules

ROOT = Path(__file__).resolve().parent.parent


def _section_block(path: str, heading: str) -> str:
    """The first ``python`` block after ``heading`` in ``path``."""
    text = (ROOT / path).read_text(encoding="utf-8")
    section = text[text.index(heading):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


def test_the_stack_snippet_without_a_collector_pushes_no_metrics_over_otlp(tmp_path: Path) -> None:
    """docs/stack.md "Without a collector": the snippet's comments say metrics are scraped from the reader
    and only traces go over OTLP, but configure() adds metric_readers to its OTLP metric exporter: pasted
    as is, every metric export failed against Jaeger (or nothing) and was counted as dropped."""
    code = _section_block("docs/stack.md", "## Without a collector").replace("port=9464", "port=0")
    script = tmp_path / "snippet.py"
    script.write_text(code + textwrap.dedent("""
        import asyncio
        from shannon_otel import Wave

        async def work() -> int:
            return 1

        asyncio.run(Wave("w").run([work] * 3))
        print("shannon_task_outcomes_total" in reader.scrape())
        server.close()
    """), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"  # the reader serves the metrics
    assert "metric" not in done.stderr, done.stderr  # and no OTLP metric export failed (or was attempted)


def test_the_runbook_says_when_the_anomaly_alert_resolves_as_the_rule_does() -> None:
    """The runbook said the anomaly alert "resolves 5 minutes after the last event" in one place and 15 in
    another; the rule counts events over 15 minutes with `for: 0m`, so it resolves 15 minutes after."""
    rule = next(r for g in alert_rules()["groups"] for r in g["rules"] if r.get("alert") == "ShannonAnomalyDetected")
    windows = set(re.findall(r"\[(\d+)m\]", rule["expr"]))
    assert windows == {"15"} and rule["for"] == "0m"
    for doc in ("docs/runbook.md", "docs/architecture.md"):
        text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
        said = re.findall(r"resolves (\d+) minutes after the last", text)
        assert said and set(said) == windows, (doc, said)


def test_an_unknown_dashboard_is_a_usage_error_with_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/cli.md: exit 2 prints the subcommand's usage and the reason. `dashboards nope` printed only
    the reason."""
    from shannon_otel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["dashboards", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: shannon-otel dashboards"), err
    assert "no dashboard 'nope'; choose one of: overview, resilience, anomalies" in err


def test_one_dashboard_written_with_out_gets_the_provisioning_files_the_help_promises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--out DIR`'s help says "write DIR/<dashboard>.json and DIR/provisioning/..."; with a NAME only the
    JSON was written, so its trace links had no Jaeger datasource to open."""
    from shannon_otel.assets import provisioning_files
    from shannon_otel.cli import main

    assert main(["dashboards", "overview", "--out", str(tmp_path)]) == 0
    written = {Path(line).relative_to(tmp_path).as_posix() for line in capsys.readouterr().out.split()}
    assert written == {"shannon-otel-overview.json", *(f"provisioning/{rel}" for rel in provisioning_files())}
    assert all((tmp_path / rel).is_file() for rel in written)


def test_the_metric_interval_help_gives_the_variables_unit(capsys: pytest.CaptureFixture[str]) -> None:
    """`--metric-interval SECONDS ... (default: $OTEL_METRIC_EXPORT_INTERVAL, else 10)` read as a number of
    seconds; the variable is milliseconds (the specification's unit, as configure() reads it)."""
    from shannon_otel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "$OTEL_METRIC_EXPORT_INTERVAL, which is in milliseconds, else 10 s" in text


@pytest.mark.parametrize("window", ["1h30m", "2d", "1w", "90s"])
def test_a_stall_window_may_be_any_prometheus_duration(window: str) -> None:
    """`rules --stall-after 1h30m` was refused as "not a Prometheus duration like 15m or 2h"; Prometheus
    takes it (and 1w), and the rule only puts it in `offset` and `[...]`."""
    rules = alert_rules(stall_after=window, stall_after_wave={"train": window})
    stalled = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ShannonWaveStalled")
    assert f"offset {window}" in stalled["expr"] and f"[{window}]" in stalled["expr"]


@pytest.mark.parametrize("window", ["0m", "0s0m", "", "15", "soon", "15m1h"])
def test_a_stall_window_that_is_no_duration_or_zero_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match=r"stall_after must be a Prometheus duration > 0 such as 15m"):
        alert_rules(stall_after=window)


# --------------------------------------------------------------------------- the public API, documented
def _api_rows() -> dict[str, str]:
    """docs/api.md: each name of a table row's first cell -> the row's description."""
    rows = {}
    for line in (ROOT / "docs" / "api.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2:
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_every_public_name_is_in_the_api_page_and_the_readme_links_it() -> None:
    """Thirty of the names `from shannon_otel import` offers (WaveResult, TaskSpec, Jitter, every event type,
    Outcome, ...) were documented nowhere in README.md or docs/; a user met them only in tracebacks."""
    rows = _api_rows()
    missing = [n for n in [*shannon_otel.__all__, *shannon_otel.testing.__all__] if n not in rows]
    assert missing == []
    assert "](docs/api.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_default_the_api_page_states_is_the_codes() -> None:
    """A parameter named with its default in docs/api.md exists with that default (a renamed parameter or
    a changed default fails here, not in a user's code)."""
    checked = 0
    for name, row in _api_rows().items():
        obj = getattr(shannon_otel, name, None)
        if obj is None or not callable(obj):
            continue
        for fragment in [frag for frag in re.findall(r"`([^`]*)`", row) if frag.startswith(f"{name}(")]:
            signature = inspect.signature(obj)
            for param, value in re.findall(r"(\w+)=(\(\)|[^,)]*)", fragment):
                assert param in signature.parameters, f"{name}: no parameter {param}"
                if value.strip():
                    default = signature.parameters[param].default
                    assert default == eval(value, vars(shannon_otel)), f"{name}({param}=) is {default!r}"
                    checked += 1
    assert checked >= 20


def test_every_public_class_has_its_own_docstring() -> None:
    """`help(shannon_otel.BreakerState)` showed its base's "A StrEnum that prints as its value ('success',
    not <Outcome.SUCCESS...>)"; `SagaObserver` had no docstring at all."""
    bare = [name for name in shannon_otel.__all__ if inspect.isclass(obj := getattr(shannon_otel, name))
            and not (vars(obj).get("__doc__") or "").strip()]
    assert bare == []



def test_a_bad_prometheus_url_is_shown_an_example_of_prometheus_not_of_otlp(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --prometheus notaurl` answered "expected a URL like http://127.0.0.1:4317", the OTLP port: a
    user copying it would point the Prometheus check at the collector's OTLP receiver."""
    from shannon_otel.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["check", "--prometheus", "notaurl"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --prometheus: expected a URL like http://127.0.0.1:9090 " in err, err


def test_the_readmes_no_server_recipe_prints_the_quick_starts_spans(tmp_path: Path) -> None:
    """A first run of the quick start without a collector printed only export errors and a shutdown warning
    after 3 s, and the README said nothing of it; the recipe it now gives shows the spans, with no error."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    recipe = re.search(r"`((?:OTEL_\w+=\w+ )+)python3 app\.py`", readme)
    assert recipe is not None
    script = tmp_path / "app.py"
    script.write_text(_section_block("README.md", "## Quick start"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(dict(pair.split("=") for pair in recipe.group(1).split()), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert '"name": "wave ask-all"' in done.stdout and done.stdout.count('"name": "task ask-all"') == 3
    assert done.stderr == ""


def test_the_wave_spans_error_description_tells_timeouts_from_failures() -> None:
    """Jaeger showed a wave whose tasks were 2 failed and 1 timed out as "3 of 7 tasks failed", next to its
    own shannon.wave.tasks.failure=2 / .timeout=1 attributes."""
    import asyncio

    from shannon_otel import Wave
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()

    async def ok() -> None:
        return None

    async def bad() -> None:
        raise ValueError("boom")

    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        for name, tasks in (("mixed", [ok, bad, bad, slow]), ("failed", [ok, bad]), ("slow", [ok, slow, slow])):
            await Wave[None](name, task_timeout=1, **tel.providers).run(tasks)

    run_virtual(main())
    described = {}
    for name in ("mixed", "failed", "slow"):
        span = tel.span(f"wave {name}")
        assert span.attributes is not None
        described[name] = span.status.description
    assert described == {"mixed": "2 of 4 tasks failed, 1 timed out", "failed": "1 of 2 tasks failed",
                         "slow": "2 of 3 tasks timed out"}


def test_the_scope_the_docs_name_is_the_one_every_span_and_metric_has() -> None:
    """docs/architecture.md put the task histograms in "the `shannon-otel` scope"; every instrument and span
    of the library is in `shannon_otel` (`otel_scope_name="shannon_otel"` on every Prometheus series)."""
    import asyncio

    from shannon_otel import Retry, Wave
    from shannon_otel._telemetry import SCOPE_NAME
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    tel = InMemoryTelemetry()

    async def ok() -> int:
        await asyncio.sleep(0)
        return 1

    async def main() -> None:
        await Wave[int]("w", policy=Retry(), **tel.providers).run([ok])

    run_virtual(main())
    assert {s.instrumentation_scope.name for s in tel.spans() if s.instrumentation_scope} == {SCOPE_NAME}
    data = tel.metric_reader.get_metrics_data()
    assert data is not None
    assert {sm.scope.name for rm in data.resource_metrics for sm in rm.scope_metrics} == {SCOPE_NAME}
    text = " ".join((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").split())
    named = set(re.findall(r"`([\w-]+)` (?:instrumentation )?scope\b", text))
    assert named == {SCOPE_NAME}, named


def test_the_readme_says_the_stack_scrapes_the_demo_only_if_it_does(tmp_path: Path) -> None:
    """README: after `scripts/stack start`, `demo --prometheus-port 9464  # or let Prometheus scrape the
    demo`; the stack's Prometheus scrapes the collector only, so a user saw no demo series at all."""
    env = {**os.environ, "SHANNON_STACK_DIR": str(tmp_path)}
    config = subprocess.run([str(ROOT / "scripts" / "stack"), "prometheus-config"], env=env, capture_output=True,
                            text=True, timeout=120, check=True).stdout
    config = "\n".join(line.split("#", 1)[0] for line in config.splitlines())  # its commented-out jobs scrape nothing
    lines = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("shannon-otel demo") and "--prometheus-port" in line]
    assert lines
    for line in lines:
        port = re.search(r"--prometheus-port (\d+)", line)
        assert port is not None
        if re.search(r"#.*\bPrometheus scrape", line):  # a promise that the stack scrapes it
            assert f":{port.group(1)}" in config, line
        else:
            assert "The stack's Prometheus scrapes the collector only" in (ROOT / "README.md").read_text(
                encoding="utf-8")


def test_a_task_of_millions_of_tokens_lands_in_a_finite_bucket_as_the_genai_advice_has_it() -> None:
    """TOKEN_BUCKETS claimed the GenAI conventions' advice but stopped at 4194304 of its 14 boundaries: a
    task summing 5M tokens (an agent's many long-context calls) fell in +Inf, and every quantile above it
    read 4194304."""
    from shannon_otel import Wave, record_tokens
    from shannon_otel._telemetry import TOKEN_BUCKETS
    from shannon_otel.testing import InMemoryTelemetry, run_virtual

    assert tuple(float(4**k) for k in range(14)) == TOKEN_BUCKETS  # 1, 4, 16, ... 67108864

    async def agent() -> None:
        record_tokens(input=5_000_000, output=20_000_000)

    async def main(tel: InMemoryTelemetry) -> None:
        await Wave[None]("agents", **tel.providers).run([agent])

    for bridged in (True, False):
        tel = InMemoryTelemetry(bridged=bridged)
        run_virtual(main(tel))
        for token_type, bound in (("input", 16777216.0), ("output", 67108864.0)):
            point = tel.point("shannon.task.tokens", shannon_token_type=token_type)
            assert point.bucket_counts[-1] == 0, (bridged, token_type)  # nothing overflowed
            assert point.bucket_counts[list(point.explicit_bounds).index(bound)] == 1


def test_the_docs_metric_table_writes_bucket_boundaries_as_the_contract_has_them() -> None:
    """The generated table wrote 4194304 as "4.1943e+06" (`:g`), i.e. 4194300: another boundary."""
    from shannon_otel._telemetry import METRICS

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for spec in METRICS:
        if spec.buckets:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |"))
            written = re.search(r"Buckets: ([^|]*)\.", row)
            assert written is not None
            assert tuple(float(b) for b in written.group(1).split(", ")) == spec.buckets, spec.name


def test_every_flag_whose_default_comes_from_a_variable_says_so_in_its_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--service-name NAME ... (default shannon-otel-demo)` while OTEL_SERVICE_NAME=checkout made it
    `checkout`: the help named a default the command did not use."""
    from shannon_otel.cli import build_parser, main

    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert build_parser().parse_args(["demo"]).service_name == "checkout"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]
    for flag, variable in (("--service-name", "OTEL_SERVICE_NAME"), ("--otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
                           ("--otlp-protocol", "OTEL_EXPORTER_OTLP_PROTOCOL"),
                           ("--metric-interval", "OTEL_METRIC_EXPORT_INTERVAL")):
        help_text = text[text.index(f"{flag} "):]
        help_text = help_text[:help_text.index(" --", 3)]
        assert f"(default: ${variable}" in help_text, (flag, help_text)


def test_the_import_steps_match_what_grafanas_import_of_the_models_asks() -> None:
    """docs/stack.md said to "choose that Prometheus datasource" when importing; the models declare no
    `__inputs`, so Grafana's import asks nothing: the datasource is each dashboard's *Prometheus* variable."""
    import json

    steps = " ".join((ROOT / "docs" / "stack.md").read_text(encoding="utf-8").split())
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        variable = model["templating"]["list"][0]
        assert (variable["type"], variable["query"], variable["label"]) == ("datasource", "prometheus", "Prometheus")
        if "__inputs" not in model:
            assert "choose that Prometheus datasource" not in steps
            assert "the import asks for nothing" in steps


def test_check_over_otlp_http_defaults_to_the_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --otlp-protocol http/protobuf` without an endpoint posted to http://127.0.0.1:4317, the gRPC
    port, and failed against a healthy collector; the specification's OTLP/HTTP default is port 4318."""
    from shannon_otel.cli import _check, main

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    checked: list[tuple[str, str]] = []

    def check_otlp(endpoint: str, protocol: str, timeout_s: float) -> tuple[bool, str]:
        checked.append((protocol, endpoint))
        return True, "accepted"

    monkeypatch.setattr(_check, "check_otlp", check_otlp)
    assert main(["check", "--skip-prometheus", "--otlp-protocol", "http/protobuf"]) == 0
    assert main(["check", "--skip-prometheus"]) == 0
    assert checked == [("http", "http://127.0.0.1:4318"), ("grpc", "http://127.0.0.1:4317")]
