"""Grafana 11/12 dashboards as plain dicts: variables, annotations, links and the grid layout.

:func:`dashboard` numbers the panels and lays them out on the 24-column grid in the order given, so
the dashboard modules only say what each panel shows.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from . import _promql as q
from ._panels import DATASOURCE, Json
from ._provisioning import JAEGER_UID

SCHEMA_VERSION = 39  # Grafana 10.4+ loads it as is; later versions migrate it in memory (docs/stack.md).
TAG = "shannon-otel"
# Grafana's Explore (URL schema 1, Grafana >= 10.4) on the provisioned Jaeger datasource: the link
# needs no Jaeger URL, the datasource holds it.
EXPLORE_JAEGER = "/explore?schemaVersion=1&orgId=1&panes=" + quote(json.dumps({
    "jaeger": {
        "datasource": JAEGER_UID,
        "queries": [{"refId": "A", "datasource": {"type": "jaeger", "uid": JAEGER_UID}, "queryType": "search"}],
        "range": {"from": "now-1h", "to": "now"},
    },
}, separators=(",", ":")), safe="")


# ----------------------------------------------------------------------------- variables
def datasource_variable() -> Json:
    return {
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
        "regex": "",
    }


def query_variable(name: str, title: str, selector: str, label: str) -> Json:
    """A multi-value variable over ``label_values(selector, label)``; "All" is ``.+``, so it matches
    every value but never a series without the label (another library's series of the same name)."""
    definition = f"label_values({selector}, {q.label(label)})"
    return {
        "name": name, "label": title, "type": "query", "datasource": DATASOURCE,
        # A plain string query: the form Grafana documents for dashboards as code, runs as is and
        # opens in the variable editor as a classic query.
        "definition": definition, "query": definition,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0, "includeAll": True, "allValue": ".+", "multi": True, "options": [], "refresh": 2,
        "regex": "", "sort": 1,
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
             "tooltip": "Search traces in Explore with the provisioned Jaeger datasource",
             "url": EXPLORE_JAEGER},
        ],
        "panels": _layout(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [datasource_variable(), *variables]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }
