"""The dashboards as Grafana reads them, checked statically (no Grafana runs here): units are Grafana unit
ids, panels do not overlap on the grid, variables chain and are matched as regexes, legends and color
overrides name what the queries return, and every datasource and link resolves."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from shannon_otel import _telemetry as t
from shannon_otel.assets import dashboards
from shannon_otel.assets._promql import label
from shannon_otel.assets._provisioning import datasources

# The Grafana unit ids the dashboards may use (packages/grafana-data/src/valueFormats/categories.ts).
GRAFANA_UNITS = {"none", "short", "percent", "percentunit", "s", "ms", "ops", "reqps", "currencyUSD", "bytes"}
# Label -> every value it takes: a panel coloring some of them by name must color all of them.
ENUM_LABELS: dict[str, type[StrEnum]] = {
    label(t.TASK_OUTCOME): t.Outcome, label(t.CALL_OUTCOME): t.CallOutcome,
    label(t.ANOMALY_SEVERITY): t.Severity,
}
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_BUILTIN = {"__rate_interval", "__rate_interval_ms", "__interval", "__interval_ms", "__range", "__range_ms",
            "__range_s"}


def _series_labels() -> dict[str, set[str]]:
    """Prometheus series name -> the labels its points carry (attributes, resource's job/instance, le)."""
    out: dict[str, set[str]] = {}
    for spec in t.METRICS:
        base = {label(a) for a in spec.attributes} | {"job", "instance"}
        if spec.kind == "histogram":
            out.update({spec.prometheus + "_bucket": base | {"le"}, spec.prometheus + "_sum": base,
                        spec.prometheus + "_count": base})
        else:
            out[spec.prometheus] = base
    return out


def _targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(f"{name}: {panel['title']}", panel, target) for name, model in dashboards().items()
            for panel in model["panels"] for target in panel.get("targets", ())]


def _queries(model: dict[str, Any]) -> list[str]:
    exprs = [tg["expr"] for panel in model["panels"] for tg in panel.get("targets", ())]
    exprs += [v["query"] for v in model["templating"]["list"] if v["type"] == "query"]
    return exprs + [a["expr"] for a in model["annotations"]["list"] if "expr" in a]


def test_units_are_grafana_unit_ids() -> None:
    for where, panel, _ in _targets():
        assert panel["fieldConfig"]["defaults"]["unit"] in GRAFANA_UNITS, where


def test_panels_never_overlap_on_the_grid() -> None:
    for name, model in dashboards().items():
        taken: dict[tuple[int, int], str] = {}
        for panel in model["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, (name, panel["title"])
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in taken, (name, panel["title"], taken[x, y])
                    taken[x, y] = panel["title"]


def test_ids_uids_and_schema_versions_are_consistent() -> None:
    models = list(dashboards().values())
    assert len({m["uid"] for m in models}) == len(models)
    assert len({m["schemaVersion"] for m in models}) == 1
    for model in models:
        ids = [p["id"] for p in model["panels"]]
        assert ids == list(range(1, len(ids) + 1)), model["uid"]


def test_every_datasource_reference_resolves() -> None:
    """Panels, targets, variables and annotations use the dashboard's datasource variable; data links and
    exemplars the provisioned Jaeger datasource, whose uid the Prometheus datasource's exemplar link names."""
    provisioned = {d["uid"]: d for d in datasources()["datasources"]}
    for name, model in dashboards().items():
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["datasource"] == {**variables["datasource"], "type": "datasource", "query": "prometheus"}
        refs = [p["datasource"] for p in model["panels"] if p["type"] != "row"]
        refs += [tg["datasource"] for p in model["panels"] for tg in p.get("targets", ())]
        refs += [v["datasource"] for v in variables.values() if v["type"] == "query"]
        refs += [a["datasource"] for a in model["annotations"]["list"] if "expr" in a]
        assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs), name
        for panel in model["panels"]:
            for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", ()):
                internal = link["internal"]
                assert provisioned[internal["datasourceUid"]]["name"] == internal["datasourceName"], name
    prometheus = next(d for d in provisioned.values() if d["type"] == "prometheus")
    for destination in prometheus["jsonData"]["exemplarTraceIdDestinations"]:
        assert provisioned[destination["datasourceUid"]]["type"] == "jaeger"


def test_variables_chain_and_are_matched_as_regexes() -> None:
    """Every variable is multi-value with an "All": a query must match it with ``=~`` (``=`` would look
    for the literal ``a|b`` or ``.+``); a variable's own query may use only the variables before it."""
    for name, model in dashboards().items():
        variables = model["templating"]["list"]
        for index, variable in enumerate(variables):
            if variable["type"] != "query":
                continue
            assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".+", variable["name"]
            assert variable["refresh"] == 2, variable["name"]  # values follow the time range
            earlier = {v["name"] for v in variables[:index]}
            used = {a or b for a, b in _VARIABLE.findall(variable["query"])}
            assert used <= earlier, (name, variable["name"], used - earlier)
        for expr in _queries(model):
            for _, matchers in _SELECTOR.findall(expr):
                for key, op, value in _MATCHER.findall(matchers):
                    if _VARIABLE.search(value):
                        assert op == "=~" and value == "$" + value[1:].strip("{}"), (name, key, op, value)


def test_selectors_only_match_labels_their_series_carry() -> None:
    """``.+`` (the "All") never matches a series without the label: a matcher on a label the series do not
    carry empties the panel."""
    series = _series_labels()
    checked = 0
    for name, model in dashboards().items():
        for expr in _queries(model):
            for metric, matchers in _SELECTOR.findall(expr):
                if metric in series:
                    for key, _, _ in _MATCHER.findall(matchers):
                        checked += 1
                        assert key in series[metric], (name, metric, key)
    assert checked > 50


def test_legends_name_labels_the_selected_series_carry() -> None:
    series = _series_labels()
    for where, _, target in _targets():
        metrics = [m for m in re.findall(r"([A-Za-z_:][\w:]*)\s*[{\[]", target["expr"]) if m in series]
        if not metrics:  # the collector's own series
            continue
        carried = set.union(*(series[m] for m in metrics)) | {"service"}  # with_service adds it
        for name in re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]):
            assert name in carried, (where, name)


def test_color_overrides_cover_every_value_of_the_label() -> None:
    """A panel coloring its series by value (outcome, severity) colors them all: one left out got the
    palette's next color, as likely green or red as anything, read as successes or failures."""
    checked = 0
    for where, panel, target in _targets():
        named = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]
                 if o["matcher"]["id"] == "byName"}
        legend = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"])
        if named and legend is not None and legend.group(1) in ENUM_LABELS:
            checked += 1
            assert named == {v.value for v in ENUM_LABELS[legend.group(1)]}, (where, named)
            colors = [o["properties"][0]["value"]["fixedColor"] for o in panel["fieldConfig"]["overrides"]]
            assert len(set(colors)) == len(colors), (where, colors)
    assert checked == 3


def test_links_use_grafana_link_variables() -> None:
    known = re.compile(r'^(__field\.labels\.\w+|__data\.fields\["\w+"\]|__value\.raw|__url_time_range)$')
    for where, panel, _ in _targets():
        for link in panel["fieldConfig"]["defaults"].get("links", ()):
            text = link["title"] + link["url"] + str(link["internal"]["query"])
            for variable in re.findall(r"\$\{([^}]*)\}", text):
                assert known.match(variable), (where, variable)


def _calls_of(function: str, expr: str) -> list[tuple[int, str]]:
    """(start, text) of every ``function(...)`` call in ``expr``, parentheses matched."""
    out = []
    for m in re.finditer(rf"\b{function}\(", expr):
        depth = 0
        for end in range(m.end() - 1, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            if depth == 0:
                out.append((m.start(), expr[m.start():end + 1]))
                break
    return out


def test_quantiles_of_whole_number_histograms_are_whole() -> None:
    """histogram_quantile interpolates inside a bucket, from 0 in the first: calls that all took exactly 1
    attempt (bucket le="1") read a p99 of 0.99 attempts, all taking 2 read 1.99. Rounded up, a unit-wide
    bucket (k - 1, k] reads k, the attempts the calls really took."""
    whole = {t.RETRY_ATTEMPTS.prometheus + "_bucket"}
    checked = 0
    for where, _, target in _targets():
        expr = target["expr"]
        for start, call in _calls_of("histogram_quantile", expr):
            if any(name in call for name in whole):
                checked += 1
                assert re.search(r"\bceil\(\s*$", expr[:start]), f"{where}: {call[:60]}... not rounded up"
    assert checked, "no quantile of a whole-number histogram found"
