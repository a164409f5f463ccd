"""Panel queries evaluated by promtool on series of known values (`promql_expr_test`): what a reader sees
when several instances of a service report, when a process restarts under its instance, when nothing
happened. (tests/e2e/test_panel_truth.py checks the same panels on real workloads in real Prometheus.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from shannon_otel.assets import concrete_query, dashboards

if TYPE_CHECKING:
    from pathlib import Path

# Grafana's variables for a 10-minute range on series scraped every minute.
VARIABLES = {"__range": "10m", "__rate_interval": "4m", "__interval": "1m"}
A, B = 'job="svc", instance="a"', 'job="svc", instance="b"'


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # as tests/test_rules_promtool.py: CI installs it, a missing one fails
        pytest.fail("promtool is not installed: run `scripts/stack install` (Debian's prometheus package)")
    return path


def panel(title: str, target: int = 0) -> str:
    found = [p["targets"][target]["expr"] for m in dashboards().values() for p in m["panels"] if p["title"] == title]
    assert len(found) == 1, title
    return concrete_query(found[0], VARIABLES)


def evaluate(tmp_path: Path, series: dict[str, str], expr: str, expected: list[dict[str, Any]],
             at: str = "10m") -> None:
    """promtool's check that ``expr`` at ``at`` over ``series`` (selector -> values) is ``expected``."""
    evaluate_each(tmp_path, series, expr, [(at, expected)])


def evaluate_each(tmp_path: Path, series: dict[str, str], expr: str,
                  checks: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """promtool's check that ``expr`` at each time of ``checks`` over ``series`` is the samples given with it."""
    (tmp_path / "none.yml").write_text('{"groups": []}', encoding="utf-8")
    test = {
        "rule_files": ["none.yml"], "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": [{"expr": expr, "eval_time": at, "exp_samples": expected} for at, expected in checks],
        }],
    }
    (tmp_path / "test.yml").write_text(json.dumps(test), encoding="utf-8")
    proc = subprocess.run([promtool(), "test", "rules", str(tmp_path / "test.yml")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shared_state_shows_unavailable_while_any_instance_is_cut_off(tmp_path: Path) -> None:
    """Before: max over the instances, 1 while one of two applied its fault policy."""
    series = {
        f'shannon_shared_available_ratio{{{A}, shannon_shared_prefix="shannon"}}': "1x10",
        f'shannon_shared_available_ratio{{{B}, shannon_shared_prefix="shannon"}}': "1x5 0x5",
    }
    evaluate(tmp_path, series, panel("Shared state (Redis) available"),
             [{"labels": '{job="svc", shannon_shared_prefix="shannon"}', "value": 0}])


def test_one_breaker_open_in_two_instances_is_one_open_breaker(tmp_path: Path) -> None:
    series = {
        f'shannon_breaker_state{{{i}, shannon_breaker_name="db", shannon_breaker_state="{state}"}}': value
        for i in (A, B) for state, value in (("open", "1x10"), ("closed", "0x10"), ("half_open", "0x10"))
    }
    evaluate(tmp_path, series, concrete_query(panel("Open breakers"), {"breaker": ".+"}),
             [{"labels": "{}", "value": 1}])


def test_a_series_watched_by_two_instances_is_one_watched_series(tmp_path: Path) -> None:
    series = {
        f'shannon_anomaly_score_ratio{{{i}, shannon_anomaly_series="w", shannon_anomaly_signal="latency"}}': "0.1x10"
        for i in (A, B)
    }
    evaluate(tmp_path, series, concrete_query(panel("Watched series"), {"signal": ".+"}),
             [{"labels": "{}", "value": 1}])


def test_tasks_before_and_after_a_restart_under_the_same_instance_all_count(tmp_path: Path) -> None:
    """12 tasks (3 failed) from 2m, the process restarted at 5m under its instance: 4 more (1 failed)."""
    base = f'shannon_task_outcomes_total{{{A}, shannon_wave_name="w", shannon_task_outcome='
    series = {
        base + '"success"}': "_ _ 9 9 9 3 3 3 3 3 3",
        base + '"failure", error_type="E"}': "_ _ 3 3 3 1 1 1 1 1 1",
    }
    evaluate(tmp_path, series, panel("Tasks finished"), [{"labels": "{}", "value": 16}])
    evaluate(tmp_path, series, panel("Task error ratio"), [{"labels": "{}", "value": 0.25}])


def test_the_error_ratio_of_a_range_without_finished_tasks_has_no_value(tmp_path: Path) -> None:
    """Before: 0 / 0, shown as NaN."""
    base = f'shannon_task_outcomes_total{{{A}, shannon_wave_name="w", shannon_task_outcome='
    series = {base + '"success"}': "5x30", base + '"failure", error_type="E"}': "1x30"}
    evaluate(tmp_path, series, panel("Task error ratio"), [], at="30m")
    evaluate(tmp_path, series, panel("Tasks finished"), [{"labels": "{}", "value": 0}], at="30m")


def test_a_wave_without_tasks_in_the_range_is_no_row_of_the_slowest_waves(tmp_path: Path) -> None:
    """Before: its p99 was NaN (0 / 0), a row of the table."""
    bucket = f'shannon_task_duration_seconds_bucket{{{A}, shannon_task_outcome="success", shannon_wave_name='
    series = {
        bucket + '"busy", le="0.5"}': "0+2x30", bucket + '"busy", le="+Inf"}': "0+2x30",
        bucket + '"idle", le="0.5"}': "7x30", bucket + '"idle", le="+Inf"}': "7x30",
    }
    expr = panel("Slowest waves (p99 task duration)")
    p99 = 0.49500000000000005  # 0.99 x 0.5 in floating point
    evaluate(tmp_path, series, expr, [
        {"labels": '{job="svc", service="svc", shannon_wave_name="busy"}', "value": p99},
    ], at="30m")


@pytest.mark.parametrize("variables", [
    VARIABLES,  # the rate interval a multiple of the step: the closed window held one step more
    {"__range": "1d", "__rate_interval": "75s", "__interval": "1m"},  # step + scrape: two steps of growth
    {"__range": "7d", "__rate_interval": "615s", "__interval": "10m"},
])
def test_per_second_panels_show_the_real_rate_at_every_interval(tmp_path: Path, variables: dict[str, str]) -> None:
    """One task per second and $1 per minute: 1 task/s and $60/h, whatever Grafana's intervals.
    Before: the growth of every subquery step in the window over $__rate_interval, 1.25x to 2x."""
    labels = f'{A}, shannon_wave_name="w"'
    series = {
        f'shannon_task_outcomes_total{{{labels}, shannon_task_outcome="success"}}': "0+60x1500",
        f'shannon_task_cost_total{{{labels}}}': "0+1x1500",
    }
    row = '{job="svc", service="svc", shannon_wave_name="w"}'
    for title, value in (("Task throughput by wave", 1), ("Cost per hour", 60)):
        found = [p["targets"][0]["expr"] for m in dashboards().values() for p in m["panels"] if p["title"] == title]
        evaluate(tmp_path, series, concrete_query(found[0], variables), [{"labels": row, "value": value}], at="24h")


def test_operations_retrying_with_no_call_finished_are_rows_of_the_most_retried(tmp_path: Path) -> None:
    """Retries per call alone (``/ (calls > 0)``) dropped an operation retrying with no call finished in the
    range, the worst case: "slow" (its calls finished before the range) and "stuck" (no call ever finished,
    no attempts series) are rows, with their retries, 0 calls finished and no ratio (never +Inf). (promtool
    2.42's closed subquery range counts 11 one-minute steps in the 10-minute range.)"""
    series = {
        f'shannon_retry_attempts_count{{{A}, shannon_operation="busy", shannon_call_outcome="success"}}': "0+10x20",
        f'shannon_retry_delay_seconds_count{{{A}, shannon_operation="busy"}}': "0+5x20",
        f'shannon_retry_attempts_count{{{A}, shannon_operation="slow", shannon_call_outcome="failure"}}': "40x20",
        f'shannon_retry_delay_seconds_count{{{A}, shannon_operation="slow"}}': "0+3x20",
        f'shannon_retry_delay_seconds_count{{{A}, shannon_operation="stuck"}}': "0+2x20",
    }

    def row(operation: str, value: float) -> dict[str, Any]:
        return {"labels": f'{{job="svc", service="svc", shannon_operation="{operation}"}}', "value": value}

    title = "Most retried operations"
    table = next(p for m in dashboards().values() for p in m["panels"] if p["title"] == title)
    assert table["transformations"][0]["id"] == "merge"  # one row per operation, a column per query
    assert table["transformations"][-1]["options"]["renameByName"] == {
        "Value #A": "Retries per call", "Value #B": "Retries", "Value #C": "Calls finished"}
    evaluate(tmp_path, series, panel(title, 0), [row("busy", 0.5)], at="20m")
    evaluate(tmp_path, series, panel(title, 1), [row("busy", 55), row("slow", 33), row("stuck", 22)], at="20m")
    evaluate(tmp_path, series, panel(title, 2), [row("busy", 110), row("slow", 0), row("stuck", 0)], at="20m")


def test_a_failed_scrape_counts_no_task_again(tmp_path: Path) -> None:
    """One failed scrape at 30m: Prometheus marks every series of the target stale there (a collector restart
    hides them longer). Before: the next step found no value a step before and counted the series' whole value
    as new: 400 tasks in a 10-minute range that finished 110 (promtool's closed range: 11 one-minute steps,
    counted from the value at 29m)."""
    series = {f'shannon_task_outcomes_total{{{A}, shannon_wave_name="w", shannon_task_outcome="success"}}':
              "0+10x29 stale 310+10x29"}
    evaluate(tmp_path, series, panel("Tasks finished"), [{"labels": "{}", "value": 110}], at="40m")
    events = f'shannon_anomaly_events_total{{{A}, shannon_anomaly_series="w", shannon_anomaly_signal="latency", '
    series = {events + 'shannon_anomaly_severity="warning"}': "_ _ 1x27 stale 1x29"}
    evaluate(tmp_path, series, concrete_query(panel("Anomalies detected"), {"signal": ".+"}),
             [{"labels": "{}", "value": 0}], at="40m")


@pytest.mark.parametrize(("values", "step", "tasks"), [
    ("_x11 20 20 stale", "10m", 20),  # a week's range: on the collector 2 minutes, then stale, between two steps
    ("_x11 10+10x7 stale", "5m", 80),  # a day's range: 30 tasks after the last step it was seen at
])
def test_a_batch_process_is_counted_whole_at_a_long_ranges_step(tmp_path: Path, values: str, step: str,
                                                                 tasks: int) -> None:
    """Grafana's step grows with the range (a stat panel's 5m at a day, 10m at a week). A finished process'
    series stays 2 minutes on the collector after its last export, then goes stale. Before: a step read each
    series' value at the step, so what it counted after the last step that saw it (or the whole series,
    seen between two steps) was missing."""
    series = {f'shannon_task_outcomes_total{{{A}, shannon_wave_name="w", shannon_task_outcome="success"}}': values}
    title = "Tasks finished"
    found = [p["targets"][0]["expr"] for m in dashboards().values() for p in m["panels"] if p["title"] == title]
    expr = concrete_query(found[0], {"__range": "1h", "__rate_interval": f"{step}15s", "__interval": step})
    evaluate(tmp_path, series, expr, [{"labels": "{}", "value": tasks}], at="1h")


def test_a_prometheus_started_next_to_a_running_app_counts_only_what_it_saw(tmp_path: Path) -> None:
    """A fresh Prometheus (an empty store) sees every series for the first time. Before: its first step counted
    each whole, 600 tasks "finished" in 10 minutes that finished 100; a process started later counts whole."""
    base = 'shannon_task_outcomes_total{%s, shannon_wave_name="w", shannon_task_outcome="success"}'
    series = {'up{job="otel-collector", instance="collector:8889"}': "1x10", base % A: "500+10x10"}
    evaluate(tmp_path, series, panel("Tasks finished"), [{"labels": "{}", "value": 100}])
    evaluate(tmp_path, {**series, base % B: "_x5 7x5"}, panel("Tasks finished"), [{"labels": "{}", "value": 107}])


_MATCHER = re.compile(r'(\w+)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"')


def _bar_panels() -> list[tuple[str, str]]:
    """(title, query) of every bar chart and heatmap: panels drawing a count per interval."""
    return [(p["title"], target["expr"]) for m in dashboards().values() for p in m["panels"]
            if p["type"] == "heatmap"
            or p.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("drawStyle") == "bars"
            for target in p["targets"]]


def _a_series_of(expr: str) -> str:
    """A series the first selector of ``expr`` selects with every variable at "All" (its matchers satisfied)."""
    found = re.search(r"(shannon_\w+)\{([^}]*)\}", concrete_query(expr))
    assert found is not None, expr
    labels = {"instance": "a"}
    for name, op, value in _MATCHER.findall(found.group(2)):
        labels[name] = value.split("|")[0] if op == "=~" and value != ".+" else value if op == "=" else "x"
    return found.group(1) + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


@pytest.mark.parametrize(("title", "expr"), _bar_panels(), ids=[title for title, _ in _bar_panels()])
def test_each_bar_counts_the_events_of_its_own_interval(tmp_path: Path, title: str, expr: str) -> None:
    """A counter series appearing at 2m with 3 events, 2 more at 4m, its process restarted at 6m (2 events),
    7 more at 8m, in one-minute steps (Grafana's $__interval; $__rate_interval 4m): each bar is the count of
    its own minute, 3 0 2 0 2 0 7 0 0, and the bars sum to the 14 events. Before: every bar counted the
    growth of the trailing rate interval (promtool's closed range: 5 steps), 3 3 5 5 7 4 11 9 9, 56 in all."""
    series = {_a_series_of(expr): "_ _ 3 3 5 5 2 2 9 9 9"}
    bars = [0, 3, 0, 2, 0, 2, 0, 7, 0, 0]
    checks = [(f"{minute}m", [] if minute == 1 else [{"labels": "{}", "value": bar}])
              for minute, bar in enumerate(bars, start=1)]
    assert sum(bars) == 14
    evaluate_each(tmp_path, series, f"sum(\n{concrete_query(expr, VARIABLES)}\n)", checks)
