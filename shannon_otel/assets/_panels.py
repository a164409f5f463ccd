"""Grafana 11/12 panels as plain dicts: time series, stat, bar gauge, table, state timeline, row.

Builders return fresh dicts with a placeholder grid position; :func:`._grafana.dashboard` numbers
the panels and lays them out. Every panel carries a unit and a description.
"""

from __future__ import annotations

from typing import Any

from . import _promql as q
from ._provisioning import JAEGER_UID

Json = dict[str, Any]

DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
# Prefix of the legend of a series grouped by ``job`` (and a wave, operation, breaker...): two services running
# a wave of the same name drew two lines under one legend.
JOB_LEGEND = "{{job}} · "

# Trace links open the provisioned Jaeger datasource (uid "jaeger") in Grafana's Explore, so no URL
# has to be typed in; the service comes from the series' ``service`` label (see ``_promql.with_service``).
# A time series field carries its series' labels (``__field.labels``); a table-format query turns each
# label into a column of its own, so a table cell finds it in its row (``__data.fields``): there
# ``__field.labels.service`` is empty and the link searched Jaeger for no service.
_SERIES_SERVICE = "${__field.labels." + q.SERVICE + "}"
_ROW_SERVICE = '${__data.fields["' + q.SERVICE + '"]}'


def traces_link(*, table: bool = False) -> Json:
    """The Jaeger search link of a panel's values: the service of the series, or of the table row."""
    service = _ROW_SERVICE if table else _SERIES_SERVICE
    return {
        "title": f"Traces of {service} in Jaeger",
        "url": "",
        "internal": {
            "datasourceUid": JAEGER_UID,
            "datasourceName": "Jaeger",
            "query": {"queryType": "search", "service": service},
        },
    }


def target(expr: str, legend: str = "__auto", *, exemplar: bool = False, instant: bool = False,
           table: bool = False) -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "exemplar": exemplar,
        "format": "table" if table else "time_series",
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": "",
    }


def _panel(kind: str, title: str, description: str, unit: str, targets: list[Json], *, width: int,
           height: int, defaults: Json, options: Json, links: bool) -> Json:
    for index, t in enumerate(targets):
        t["refId"] = chr(ord("A") + index)
    field_defaults: Json = {"unit": unit, **defaults}
    if links:
        # Only series that still carry ``job`` can name their service: panels aggregating it away
        # get no link (tests/test_assets.py checks every linked query keeps it).
        for t in targets:
            t["expr"] = q.with_service(t["expr"])
        field_defaults["links"] = [traces_link(table=any(t["format"] == "table" for t in targets))]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


_LEGEND: Json = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
_TOOLTIP: Json = {"mode": "multi", "sort": "desc"}


def timeseries(title: str, description: str, unit: str, targets: list[Json], *, width: int = 12,
               height: int = 8, stack: bool = False, bars: bool = False, min_: float | None = None,
               max_: float | None = None, colors: dict[str, str] | None = None,
               thresholds: dict[float, str] | None = None, link: bool = False) -> Json:
    """A time series panel; ``thresholds`` (value -> color) are drawn as dashed lines; ``link`` adds
    the trace link (every target must keep ``job``)."""
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else (25 if stack else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
    }
    defaults: Json = {"custom": custom, "color": {"mode": "palette-classic"}}
    if thresholds:
        steps: list[Json] = [{"color": "green", "value": None}]
        steps += [{"color": color, "value": value} for value, color in sorted(thresholds.items())]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
        custom["thresholdsStyle"] = {"mode": "dashed"}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    panel = _panel("timeseries", title, description, unit, targets, width=width, height=height,
                   defaults=defaults, options={"legend": dict(_LEGEND), "tooltip": dict(_TOOLTIP)},
                   links=link)
    panel["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for name, color in (colors or {}).items()
    ]
    return panel


def stat(title: str, description: str, unit: str, expr: str, *, width: int = 6, height: int = 4,
         thresholds: dict[float, str] | None = None) -> Json:
    """A single value; ``thresholds`` (value -> color, from green) color it. Without them it is drawn in the
    text color: left unset, Grafana applies its default thresholds (red from 80) to every stat, which turned
    a count of 80 tasks red and left a 100% error ratio green."""
    options: Json = {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    steps: list[Json] = [{"color": "green" if thresholds else "text", "value": None}]
    steps += [{"color": color, "value": value} for value, color in sorted((thresholds or {}).items())]
    defaults: Json = {"color": {"mode": "thresholds"}, "thresholds": {"mode": "absolute", "steps": steps}}
    if unit == "currencyUSD":
        defaults["decimals"] = 2
    return _panel("stat", title, description, unit, [target(expr, instant=True)], width=width,
                  height=height, defaults=defaults, options=options, links=False)


def bargauge(title: str, description: str, unit: str, expr: str, legend: str, *, width: int = 12,
             height: int = 8, min_: float = 0, max_: float = 1, link: bool = False) -> Json:
    options: Json = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
    }
    defaults: Json = {"min": min_, "max": max_, "color": {"mode": "continuous-GrYlRd"}}
    return _panel("bargauge", title, description, unit, [target(expr, legend, instant=True)],
                  width=width, height=height, defaults=defaults, options=options, links=link)


def table(title: str, description: str, unit: str, expr: str | dict[str, str], *, width: int = 12,
          height: int = 8, link: bool = False) -> Json:
    """A table of an instant query's series: a row per label set, its value in the last column.

    ``expr`` may map column headers to queries: their results are merged into one row per label set (a
    label set only some queries return leaves the others' cells empty), a column per query.
    """
    columns = expr if isinstance(expr, dict) else {}
    exprs = list(columns.values()) if columns else [str(expr)]
    panel = _panel("table", title, description, unit, [target(e, instant=True, table=True) for e in exprs],
                   width=width, height=height, defaults={}, options={"showHeader": True}, links=link)
    organize: Json = {"excludeByName": {"Time": True}}
    if columns:
        # Grafana names the value column of query X "Value #X" once a table has more than one query.
        targets = panel["targets"]
        organize["renameByName"] = {f"Value #{t['refId']}": name for t, name in zip(targets, columns, strict=True)}
    panel["transformations"] = ([{"id": "merge", "options": {}}] if columns else []) + [
        {"id": "organize", "options": organize}]
    return panel


def state_timeline(title: str, description: str, expr: str, legend: str, states: list[tuple[str, str]],
                   *, width: int = 24, height: int = 8, link: bool = False) -> Json:
    """One row per series; the value ``i`` is shown as ``states[i]`` = (text, color)."""
    mappings: list[Json] = [
        {"type": "value",
         "options": {str(i): {"text": text, "color": color, "index": i} for i, (text, color) in
                     enumerate(states)}},
    ]
    defaults: Json = {
        "mappings": mappings,
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
        "custom": {"fillOpacity": 80, "lineWidth": 0},
    }
    options: Json = {
        "alignValue": "left", "mergeValues": True, "rowHeight": 0.9, "showValue": "auto",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return _panel("state-timeline", title, description, "none", [target(expr, legend)], width=width,
                  height=height, defaults=defaults, options=options, links=link)


def heatmap(title: str, description: str, unit: str, expr: str, *, width: int = 12, height: int = 8) -> Json:
    """A heatmap of a classic histogram: ``expr`` gives one series per ``le`` bucket; exemplars shown."""
    options: Json = {
        "calculate": False,
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "fill": "dark-orange",
                  "reverse": False, "steps": 64},
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
    }
    panel = _panel("heatmap", title, description, unit, [target(expr, "{{le}}", exemplar=True)], width=width,
                   height=height, defaults={}, options=options, links=False)
    panel["targets"][0]["format"] = "heatmap"
    return panel


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}}
