"""The bundled dashboards and rules: committed files are the generator's output, panels are complete,
every query parses, and every metric they name is in the telemetry contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import shannon_otel.assets
from shannon_otel import _telemetry as t
from shannon_otel.anomaly import AnomalyHook
from shannon_otel.assets import (
    RULES_FILE,
    _yaml,
    alert_rules,
    concrete_query,
    dashboards,
    files,
    panel_queries,
    pipeline_metrics,
    referenced_metrics,
    rule_queries,
    stale_files,
    write_all,
)
from shannon_otel.assets._promql import GAP, by, keeps, metric_names, with_service
from shannon_otel.assets._rules import ERROR_RATIO_HIGH, SLO_TARGET

ROOT = Path(__file__).resolve().parents[1]
RULE_TESTS = (ROOT / RULES_FILE).parent / "tests" / "shannon-alerts.test.yml"


def contract_names() -> set[str]:
    names: set[str] = set()
    for spec in t.METRICS:
        suffixes = ("_bucket", "_sum", "_count") if spec.kind == "histogram" else ("",)
        names.update(spec.prometheus + suffix for suffix in suffixes)
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `scripts/stack install` (Debian's prometheus package)")
    return path


def panels() -> list[tuple[str, dict[str, object]]]:
    return [(name, p) for name, model in dashboards().items() for p in model["panels"] if p["type"] != "row"]


def test_committed_files_are_the_generator_output() -> None:
    assert stale_files(ROOT) == [], "run `python -m shannon_otel.assets --write .` and commit the result"


def test_write_all_writes_every_file(tmp_path: Path) -> None:
    written = write_all(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(files())
    assert stale_files(tmp_path) == []


def test_every_panel_has_a_unit_a_description_and_queries() -> None:
    for name, panel in panels():
        where = f"{name}: {panel['title']}"
        assert panel["description"], where
        assert panel["fieldConfig"]["defaults"]["unit"], where  # type: ignore[index]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], where


def test_dashboards_are_grafana_11_models_with_the_expected_variables() -> None:
    uids = set()
    for name, model in dashboards().items():
        assert model["schemaVersion"] >= 39
        uids.add(model["uid"])
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["job"]["definition"].startswith("label_values(")
        assert variables["job"]["definition"].endswith(", job)")
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in model["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
        assert any("/explore?" in link["url"] for link in model["links"]), name
        assert all(v["type"] != "textbox" for v in model["templating"]["list"]), "no URL to type in"
    assert len(uids) == len(dashboards())


def test_expected_panels_exist() -> None:
    by_dashboard = {name: {p["type"] for p in model["panels"]} for name, model in dashboards().items()}
    assert "state-timeline" in by_dashboard["shannon-otel-resilience.json"]
    assert any("topk(" in expr for name, _, expr in panel_queries() if "anomalies" in name)


def test_latency_panels_show_exemplars_and_use_the_rate_interval() -> None:
    for _, panel in panels():
        for target in panel["targets"]:  # type: ignore[attr-defined]
            expr = target["expr"]
            over_time = not target["instant"] and panel["fieldConfig"]["defaults"]["unit"] == "s"  # type: ignore[index]
            if "histogram_quantile" in expr and over_time:
                assert target["exemplar"] is True, panel["title"]
            # an event count's last sample of each step (q.latest): the step, or the gap a series may go unseen;
            # whether Prometheus scraped in the gap before (q.scraping)
            sampled = r"(?:last_over_time\([^\[]*|max_over_time\(up)\["
            for window in re.findall(sampled + r"([^\]]+)\]", expr):
                assert window in {"$__interval", GAP}, (panel["title"], expr)
            for window in re.findall(r"\[([^\]]+)\]", re.sub(sampled + r"[^\]]+\]", "", expr)):
                # a range, or an event count's subquery (q.events) in steps of the panel's interval
                assert window.removesuffix(":$__interval") in {"$__rate_interval", "$__range"}, (panel["title"], expr)


def test_queries_only_use_defined_variables() -> None:
    for name, model in dashboards().items():
        defined = {v["name"] for v in model["templating"]["list"]}
        for dashboard, title, expr in panel_queries():
            if dashboard == name:
                used = set(re.findall(r"\$([A-Za-z_]\w*)", expr)) - {
                    "__rate_interval", "__range", "__interval", "__interval_ms",
                }
                assert used <= defined, (title, used - defined)


def test_every_referenced_metric_is_in_the_contract() -> None:
    referenced = referenced_metrics()
    assert referenced <= contract_names(), referenced - contract_names()
    # Every instrument of the contract is shown somewhere.
    shown = {name.removesuffix(s) for name in referenced for s in ("_bucket", "_sum", "_count")}
    assert {spec.prometheus for spec in t.METRICS} <= shown | referenced


def test_rule_unit_tests_only_use_contract_series() -> None:
    text = "".join(path.read_text(encoding="utf-8") for path in RULE_TESTS.parent.glob("*.test.yml"))
    series = set(re.findall(r"series: '([A-Za-z_:][A-Za-z0-9_:]*)\{", text))
    assert series
    assert series <= contract_names() | pipeline_metrics(), series - contract_names()


def test_metric_names_finds_selectors_and_skips_everything_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))'
        " / on (job) group_left (instance) b_total offset 5m or vector(1e3) and c unless topk(3, d:rec)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d:rec"}


def test_every_dashboard_and_rule_query_parses(tmp_path: Path) -> None:
    exprs = [concrete_query(expr) for _, _, expr in panel_queries()] + [expr for _, expr in rule_queries()]
    rules = [{"record": f"shannon:check_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "queries", "rules": rules}]}), encoding="utf-8")
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not re.search(r"\$[A-Za-z_{]", "".join(exprs[: len(panel_queries())]))  # $1: label_replace's group


def test_concrete_query_replaces_grafana_variables() -> None:
    assert concrete_query('rate(x{job=~"$job", w=~"${wave}"}[$__rate_interval])') == (
        'rate(x{job=~".+", w=~".+"}[1m])'
    )
    assert concrete_query("sum(increase(x[$__range]))", {"__range": "5m"}) == "sum(increase(x[5m]))"


def test_yaml_writer() -> None:
    text = _yaml.dump({
        "groups": [{"name": "g", "rules": [{"expr": "a\n/\nb", "for": "5m", "labels": {"k": 'v "q"'}}]}],
        "empty": [], "none": {}, "flag": True, "n": 1,
    })
    assert text == (
        'groups:\n  - name: "g"\n    rules:\n      - expr: |-\n          a\n          /\n          b\n'
        '        for: "5m"\n        labels:\n          k: "v \\"q\\""\nempty: []\nnone: {}\nflag: true\nn: 1\n'
    )
    with pytest.raises(TypeError):
        _yaml.dump({"bad key": 1})


def test_module_entry_point_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shannon_otel.assets.__main__ import main

    assert main(["--check", str(tmp_path)]) == 1
    # nothing there yet: each file is said missing (it was "stale", as if an old copy were there)
    assert "missing: dashboards/shannon-otel-overview.json" in capsys.readouterr().err
    assert main(["--write", str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    (tmp_path / "dashboards/shannon-otel-overview.json").write_text("{}", encoding="utf-8")
    assert main(["--check", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "stale: dashboards/shannon-otel-overview.json\n"


def test_every_label_a_panel_link_uses_survives_the_panel_aggregation() -> None:
    linked = 0
    for name, panel in panels():
        links = panel["fieldConfig"]["defaults"].get("links", [])  # type: ignore[index]
        used = set(re.findall(r'\$\{__(?:field\.labels\.|data\.fields\[\\"(?=\w+\\"\]))(\w+)', json.dumps(links)))
        for link in links:
            # Through the provisioned Jaeger datasource: no Jaeger URL to type in.
            assert link["internal"]["datasourceUid"] == "jaeger", (name, panel["title"])
        linked += bool(links)
        for target in panel["targets"]:  # type: ignore[attr-defined]
            for label in used:
                assert keeps(target["expr"], label), (name, panel["title"], label, target["expr"])
    assert linked >= 20


def test_keeps_follows_aggregations_and_label_replace() -> None:
    assert keeps('sum by (job, w) (rate(x{a="sum("}[1m]))', "job")
    assert not keeps("sum by (w) (rate(x[1m]))", "job")
    assert not keeps("sum(rate(x[1m]))", "job")
    assert keeps("sum without (w) (x)", "job")
    assert not keeps("max without (job) (x)", "job")
    assert keeps("histogram_quantile(0.5, sum by (le, job) (rate(x[1m])))", "job")
    assert not keeps("sum by (job) (x) / on () group_left sum(y)", "job")
    assert keeps("topk(3, x)", "job")
    derived = 'label_replace(\nsum by (job) (x),\n"service", "$1", "job", "(?:.*/)?(.+)")'
    assert keeps(derived, "service")
    assert not keeps(derived.replace("by (job)", "by (w)"), "service")
    # with_service: service_name when the series has it, else job cut at the last "/"
    linked = with_service("sum by (job, service_name) (x)")
    assert keeps(linked, "service")
    assert not keeps(linked.replace("service_name)", ")"), "service")


def test_every_grouping_and_alert_link_keeps_service_name_beside_job() -> None:
    # job is service.namespace/service.name: a service.name holding "/" (pay/api) cannot be cut back out of it,
    # so the links read service_name, which every grouping keeping job keeps too.
    assert by("job", "shannon.wave.name") == "job, service_name, shannon_wave_name"
    assert by("le", "shannon.wave.name") == "le, shannon_wave_name"
    linked = [r for g in alert_rules()["groups"] for r in g["rules"] if "traces_url" in r.get("annotations", {})]
    assert len(linked) >= 7
    for rule in linked:
        assert keeps(rule["expr"], "service_name"), rule["alert"]
        assert "$labels.service_name | urlquery" in rule["annotations"]["traces_url"], rule["alert"]


def test_the_all_value_never_matches_series_without_the_label() -> None:
    # A GenAI instrumentation's series of the same name lack shannon_wave_name: "All" must not match them.
    for model in dashboards().values():
        for variable in model["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["allValue"] == ".+", variable["name"]
    assert concrete_query('x{w=~"$wave"}') == 'x{w=~".+"}'


def test_links_open_the_provisioned_jaeger_datasource_and_the_docs_state_grafana_versions() -> None:
    from shannon_otel.assets import provisioning_files

    datasources = provisioning_files()["datasources/shannon-otel.yaml"]
    assert 'uid: "jaeger"' in datasources
    stack = (ROOT / "docs" / "stack.md").read_text(encoding="utf-8")
    assert all(model["schemaVersion"] == 39 for model in dashboards().values())
    assert "`schemaVersion` 39, which Grafana 10.4" in stack


def test_the_score_panel_draws_the_severity_thresholds_the_anomaly_hook_reports_at() -> None:
    """Before: the dashed lines were a bare ``DetectorConfig()``'s (warning 0.5, critical 0.8), while the
    ``AnomalyHook``, whose scores are the only ones the gauge reports, flags warning from 0.8 and critical
    from 0.95: a score of 0.6 (no anomaly at all) was drawn in the warning band, 0.85 (a warning) as critical."""
    config = AnomalyHook().detector.config
    (panel,) = [p for name, p in panels() if p["title"] == "Anomaly score by series"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]  # type: ignore[index]
    assert [(s["color"], s["value"]) for s in steps] == [
        ("green", None), ("orange", config.warning), ("red", config.critical)]


def test_every_stat_sets_its_colors_so_grafanas_red_from_80_never_applies() -> None:
    """Before: the stats set no thresholds, so Grafana applied its default (green, red from 80) to each: 80 tasks
    finished, $80 of cost or 80 watched series showed red, while a 100% task error ratio (1.0), 50 critical
    anomalies or a critical score of 0.99 stayed green."""

    def color(panel: dict[str, object], value: float) -> str:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]  # type: ignore[index]
        return str([s["color"] for s in steps if s["value"] is None or value >= s["value"]][-1])

    stats = {p["title"]: p for _, p in panels() if p["type"] == "stat"}
    assert stats and all("thresholds" in p["fieldConfig"]["defaults"] for p in stats.values())  # type: ignore[index]
    for title in ("Tasks finished", "Tokens", "Task cost", "Watched series"):
        assert color(stats[title], 1e6) == color(stats[title], 0) == "text", title
    ratio = stats["Task error ratio"]
    assert (color(ratio, 0.0), color(ratio, 1 - SLO_TARGET), color(ratio, ERROR_RATIO_HIGH), color(ratio, 1.0)) == (
        "green", "orange", "red", "red")
    assert (color(stats["Critical anomalies"], 0), color(stats["Critical anomalies"], 1)) == ("green", "red")
    assert (color(stats["Anomalies detected"], 0), color(stats["Anomalies detected"], 1)) == ("green", "orange")
    assert (color(stats["Open breakers"], 0), color(stats["Open breakers"], 1)) == ("green", "red")
    hook = AnomalyHook().detector.config
    score = stats["Highest score"]
    assert [color(score, s) for s in (0.5, hook.warning, hook.critical)] == ["green", "orange", "red"]


def test_provisioning_files_names_its_own_parameters() -> None:
    """Bug: ``provisioning_files(**urls)`` handed its keywords on to a private function, so a misspelt one raised
    "datasources() got an unexpected keyword argument", naming a function the user never called, and help() did
    not show the URLs' defaults; and ``help(concrete_query)`` sent the reader to a ``GRAFANA_DEFAULTS`` that
    ``shannon_otel.assets`` does not have."""
    import inspect

    from shannon_otel.assets import concrete_query, provisioning_files

    with pytest.raises(TypeError, match=r"^provisioning_files\(\) got an unexpected keyword argument 'prometheus'"):
        provisioning_files(prometheus="http://p:9090")  # type: ignore[call-arg]
    text = provisioning_files(prometheus_url="http://p:9090", jaeger_url="http://j:16686")
    assert "http://p:9090" in text["datasources/shannon-otel.yaml"]
    assert "http://j:16686" in text["datasources/shannon-otel.yaml"]
    assert provisioning_files() == provisioning_files(**{  # the documented defaults: the compose services'
        name: p.default for name, p in inspect.signature(provisioning_files).parameters.items()})
    assert "http://prometheus:9090" in provisioning_files()["datasources/shannon-otel.yaml"]
    doc = concrete_query.__doc__ or ""
    for name in re.findall(r":data:`(\w+)`", doc):
        assert hasattr(shannon_otel.assets, name), name
    assert concrete_query("rate(x[$__rate_interval]) / $__interval_ms + $__range") == "rate(x[1m]) / 15000 + 1h"
