"""What a reader sees next to a number is true of it: legends and alert annotations name labels their
queries keep, panel units match the series' units, and fixed windows span at least four scrapes."""

from __future__ import annotations

import re
from pathlib import Path

from shannon_otel.assets import alert_rules, dashboards, rule_queries
from shannon_otel.assets._promql import keeps

ROOT = Path(__file__).resolve().parents[1]
_TEMPLATE_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_ALERT_LABEL = re.compile(r"\$labels\.(\w+)")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(duration: str) -> float:
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION.findall(duration))


def _targets() -> list[tuple[str, dict[str, object], dict[str, str]]]:
    return [(f"{name}: {panel['title']}", panel, target) for name, model in dashboards().items()
            for panel in model["panels"] for target in panel.get("targets", ())]


def test_every_legend_names_labels_its_query_keeps() -> None:
    for where, _, target in _targets():
        for label in _TEMPLATE_LABEL.findall(target["legendFormat"]):
            assert keeps(target["expr"], label), (where, label, target["expr"])


def test_every_alert_annotation_names_labels_its_expression_keeps() -> None:
    """A ``$labels.x`` the expression aggregates away renders empty: a link searching no service."""
    checked = 0
    for group in alert_rules()["groups"]:
        for rule in group["rules"]:
            for key, text in rule.get("annotations", {}).items():
                for label in _ALERT_LABEL.findall(text):
                    checked += 1
                    assert keeps(rule["expr"], label), (rule["alert"], key, label)
    assert checked >= 20


def test_panel_units_follow_the_series_units() -> None:
    """Percentiles and means of a ``_seconds`` histogram are in seconds; of counts (tokens, attempts) not."""
    seen = {True: 0, False: 0}
    for where, panel, target in _targets():
        unit = panel["fieldConfig"]["defaults"]["unit"]  # type: ignore[index]
        expr = target["expr"]
        if re.match(r"(label_replace\(\s*)*(topk\(10,\s*)?histogram_quantile\(", expr):
            seconds = "_seconds_bucket" in expr
            seen[seconds] += 1
            assert (unit == "s") == seconds, (where, unit)
    assert seen[True] >= 8 and seen[False] >= 2, seen


def test_fixed_windows_span_four_scrape_intervals() -> None:
    """rate()/increase() need two samples in a window; four scrapes leave room for a missed one."""
    config = (ROOT / "collector-config" / "prometheus.yml").read_text(encoding="utf-8")
    scrape = _seconds(re.search(r"scrape_interval:\s*(\w+)", config).group(1))  # type: ignore[union-attr]
    exprs = [expr for _, expr in rule_queries()]
    exprs += [a["expr"] for model in dashboards().values() for a in model["annotations"]["list"] if "expr" in a]
    windows = {w for expr in exprs for w in re.findall(r"\[(\w+)\]", expr)}
    assert windows
    assert all(_seconds(w) >= 4 * scrape for w in windows), (windows, scrape)


def test_legends_name_the_service_when_the_query_keeps_it() -> None:
    """A per-wave (per-operation, per-breaker...) series grouped by ``job`` too needs the job in its legend: two
    services running a wave of the same name drew two lines under one legend, e.g. "p99 ingest" twice."""
    legends = [(where, target["expr"], target["legendFormat"]) for where, _, target in _targets()]
    legends += [(f"{name}: annotation {a['name']}", a["expr"], a["titleFormat"])
                for name, model in dashboards().items() for a in model["annotations"]["list"] if "expr" in a]
    checked = 0
    for where, expr, legend in legends:
        named = _TEMPLATE_LABEL.findall(legend)
        if named and keeps(expr, "job"):
            checked += 1
            assert "job" in named, (where, legend)
    assert checked >= 20
