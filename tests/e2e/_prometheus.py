"""Asking the stack's real Prometheus what the bundled dashboards and alert rules show, as Grafana and
Alertmanager would: one place for the e2e tests (test_panel_truth, test_workload_e2e, test_alert_links,
test_alert_link_names)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from _stack import wait_until

from shannon_otel.assets import concrete_query, dashboards

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping

    from _stack import Prometheus

#: A query's result: each series' labels (as a frozenset of pairs) -> its value.
Values = dict[frozenset[tuple[str, str]], float]


def panel_exprs(title: str) -> list[str]:
    """The queries (targets, in order) of the one panel of the bundled dashboards titled ``title``."""
    found = [[t["expr"] for t in p["targets"]] for m in dashboards().values() for p in m["panels"]
             if p["title"] == title]
    assert len(found) == 1, title
    return found[0]


def dashboard_query(prometheus: Prometheus, expr: str, values: Mapping[str, str] | None = None) -> str:
    """``expr`` with its Grafana variables replaced as Grafana would on this stack: ``$__interval`` is at
    least the datasource's scrape interval (the stack's), ``values`` names the others
    (:func:`shannon_otel.assets.concrete_query`: every other variable is its "All" value)."""
    return concrete_query(expr, {"__interval": f"{prometheus.scrape_interval:g}s", **(values or {})})


def values_at(prometheus: Prometheus, expr: str, at: float | None = None, *, drop: tuple[str, ...] = ()) -> Values:
    """The instant result of ``expr`` at ``at``: labels (less ``drop``) -> value."""
    return {
        frozenset((k, v) for k, v in s["metric"].items() if k not in drop): float(s["value"][1])
        for s in prometheus.query(expr, at=at)
    }


#: A range query's result: each series' labels -> its points (timestamp, value), in time order.
Points = dict[frozenset[tuple[str, str]], list[tuple[float, float]]]


def bars_of(prometheus: Prometheus, expr: str, start: float, end: float, step: float,
            values: Mapping[str, str] | None = None, *, drop: tuple[str, ...] = ()) -> Points:
    """The points of a panel query as Grafana draws them from ``start`` to ``end``: a range query whose step
    is ``$__interval`` (``step`` seconds), its start and end aligned to multiples of the step (Grafana's
    Prometheus datasource aligns them so that refreshing the panel keeps its bars)."""
    chosen = {**(values or {}), "__interval": f"{step:g}s"}
    first, last = step * (start // step), step * -(-end // step)
    return {
        frozenset((k, v) for k, v in s["metric"].items() if k not in drop):
            [(float(t), float(v)) for t, v in s["values"]]
        for s in prometheus.query_range(dashboard_query(prometheus, expr, chosen), first, last, step)
    }


def bar_totals(points: Points) -> Values:
    """What the bars of each series of ``points`` add up to."""
    return {labels: sum(v for _, v in series) for labels, series in points.items()}


def one(values: Values, **labels: str) -> float:
    """The value of the one series of ``values`` carrying ``labels``."""
    matching = [v for k, v in values.items() if set(labels.items()) <= k]
    assert len(matching) == 1, (labels, values)
    return matching[0]


def alerts_of(prometheus: Prometheus, job: str, *, name: str | None = None,
              state: str | None = None) -> list[dict[str, Any]]:
    """Prometheus' active alerts of ``job`` (alert ``name`` only, in ``state`` only, when given)."""
    return [a for a in prometheus.alerts()
            if a["labels"].get("job") == job and name in (None, a["labels"].get("alertname"))
            and state in (None, a["state"])]


def at_once(rules: Mapping[str, Any], names: Collection[str]) -> list[dict[str, Any]]:
    """The rules of ``rules`` (a rule file's content) alerting as ``names``, each with ``for: 0m``: firing as soon
    as its expression holds."""
    chosen = [dict(r, **{"for": "0m"}) for g in rules["groups"] for r in g["rules"] if r.get("alert") in names]
    assert {r["alert"] for r in chosen} == set(names)
    return chosen


@contextmanager
def loaded_rules(prometheus: Prometheus, name: str, rules: list[dict[str, Any]]) -> Iterator[None]:
    """``rules`` loaded by Prometheus as the rule group ``name`` (the file ``zz-<name>.yml``) for the block."""
    path = prometheus.rules_dir / f"zz-{name}.yml"
    path.write_text(json.dumps({"groups": [{"name": name, "rules": rules}]}), encoding="utf-8")
    try:
        prometheus.reload()
        yield
    finally:
        path.unlink()
        prometheus.reload()


def firing_alerts(prometheus: Prometheus, job: str, names: Collection[str]) -> dict[str, dict[str, Any]]:
    """Alert name -> a firing alert of ``job``, once each of ``names`` fires (waiting at most 60 s)."""

    def alerts() -> dict[str, dict[str, Any]]:
        found = {a["labels"]["alertname"]: a for a in alerts_of(prometheus, job, state="firing")}
        return found if set(found) >= set(names) else {}

    return wait_until(alerts, timeout=60, what=f"{names} firing for {job}")
