"""Grafana 11/12 dashboard JSON as plain dicts: panels, variables, links and the layout.

Builders return fresh dicts; :func:`dashboard` numbers the panels and lays them out on the
24-column grid in the order given, so dashboard modules only say what each panel shows.
"""

from __future__ import annotations

from typing import Any

from . import _promql as q

Json = dict[str, Any]

SCHEMA_VERSION = 39  # Grafana 11.0; Grafana 11.x/12.x load it and migrate in memory.
TAG = "shannon-otel"
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
JAEGER_URL = "http://localhost:16686"

# Jaeger search takes microseconds; Grafana's ${__from}/${__to} are milliseconds.
_JAEGER_WINDOW = "start=${__from}000&end=${__to}000"
TRACES_LINK: Json = {
    "title": "Traces of ${__field.labels.job} in Jaeger",
    "url": "${jaeger_url}/search?service=${__field.labels.job}&" + _JAEGER_WINDOW,
    "targetBlank": True,
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
           height: int, defaults: Json, options: Json, links: bool = True) -> Json:
    for index, t in enumerate(targets):
        t["refId"] = chr(ord("A") + index)
    field_defaults: Json = {"unit": unit, **defaults}
    if links:
        field_defaults["links"] = [dict(TRACES_LINK)]
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
               thresholds: dict[float, str] | None = None) -> Json:
    """A time series panel; ``thresholds`` (value -> color) are drawn as dashed lines."""
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
                   defaults=defaults, options={"legend": dict(_LEGEND), "tooltip": dict(_TOOLTIP)})
    panel["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for name, color in (colors or {}).items()
    ]
    return panel


def stat(title: str, description: str, unit: str, expr: str, *, width: int = 6, height: int = 4) -> Json:
    options: Json = {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    defaults: Json = {"color": {"mode": "thresholds"}}
    if unit == "currencyUSD":
        defaults["decimals"] = 2
    return _panel("stat", title, description, unit, [target(expr, instant=True)], width=width,
                  height=height, defaults=defaults, options=options, links=False)


def bargauge(title: str, description: str, unit: str, expr: str, legend: str, *, width: int = 12,
             height: int = 8, min_: float = 0, max_: float = 1) -> Json:
    options: Json = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
    }
    defaults: Json = {"min": min_, "max": max_, "color": {"mode": "continuous-GrYlRd"}}
    return _panel("bargauge", title, description, unit, [target(expr, legend, instant=True)],
                  width=width, height=height, defaults=defaults, options=options)


def table(title: str, description: str, unit: str, expr: str, *, width: int = 12, height: int = 8) -> Json:
    panel = _panel("table", title, description, unit, [target(expr, instant=True, table=True)],
                   width=width, height=height, defaults={}, options={"showHeader": True})
    panel["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return panel


def state_timeline(title: str, description: str, expr: str, legend: str, states: list[tuple[str, str]],
                   *, width: int = 24, height: int = 8) -> Json:
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
                  height=height, defaults=defaults, options=options)


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}}


# ----------------------------------------------------------------------------- variables
def datasource_variable() -> Json:
    return {
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
        "regex": "",
    }


def query_variable(name: str, title: str, selector: str, label: str) -> Json:
    """A multi-value variable over ``label_values(selector, label)``; "All" matches everything."""
    definition = f"label_values({selector}, {q.label(label)})"
    return {
        "name": name, "label": title, "type": "query", "datasource": DATASOURCE,
        # A plain string query: the form Grafana documents for dashboards as code, runs as is and
        # opens in the variable editor as a classic query.
        "definition": definition, "query": definition,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0, "includeAll": True, "allValue": ".*", "multi": True, "options": [], "refresh": 2,
        "regex": "", "sort": 1,
    }


def jaeger_variable() -> Json:
    return {
        "name": "jaeger_url", "label": "Jaeger UI", "type": "textbox", "query": JAEGER_URL,
        "current": {"text": JAEGER_URL, "value": JAEGER_URL}, "hide": 0,
        "options": [{"selected": True, "text": JAEGER_URL, "value": JAEGER_URL}],
        "description": "Base URL of the Jaeger UI the trace links open.",
    }


def annotation(name: str, expr: str, title: str, color: str) -> Json:
    return {
        "name": name, "datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": color,
        "expr": expr, "step": "1m", "titleFormat": title, "textFormat": "", "useValueForTime": False,
    }


_BUILTIN_ANNOTATION: Json = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
}


# ----------------------------------------------------------------------------- dashboard
def _layout(panels: list[Json]) -> list[Json]:
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > 24:
            y, x, line_height = y + line_height, 0, 0
        grid["x"], grid["y"] = x, y
        panel["id"] = panel_id
        x += grid["w"]
        line_height = max(line_height, grid["h"])
        if panel["type"] == "row":
            x = 24  # nothing beside a row
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[Json], variables: list[Json],
              annotations: tuple[Json, ...] = ()) -> Json:
    return {
        "annotations": {"list": [dict(_BUILTIN_ANNOTATION), *annotations]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {"title": "Shannon OTel dashboards", "type": "dashboards", "tags": [TAG], "asDropdown": True,
             "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
             "tooltip": "", "url": ""},
            {"title": "Jaeger: search traces", "type": "link", "tags": [], "asDropdown": False,
             "includeVars": False, "keepTime": False, "icon": "external link", "targetBlank": True,
             "tooltip": "Open the Jaeger UI (set its URL in the Jaeger UI variable)",
             "url": "${jaeger_url}/search"},
        ],
        "panels": _layout(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [datasource_variable(), *variables, jaeger_variable()]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }
