"""The alert rules the command writes: wave names and stall windows as users give them, links the alert
templates can hold, and what the runbook says of them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shannon_otel.assets import alert_rules

ROOT = Path(__file__).resolve().parent.parent


def test_the_runbook_says_when_the_anomaly_alert_resolves_as_the_rule_does() -> None:
    """The runbook said the anomaly alert "resolves 5 minutes after the last event" in one place and 15 in
    another; the rule counts events over 15 minutes with `for: 0m`, so it resolves 15 minutes after."""
    rule = next(r for g in alert_rules()["groups"] for r in g["rules"] if r.get("alert") == "ShannonAnomalyDetected")
    # the event count's subquery: its range is 1 ms short of the window (_rules.events)
    from shannon_otel.assets._rules import _just_under

    assert set(re.findall(r"\[(\w+):\d+s\]", rule["expr"])) == {_just_under("15m")} and rule["for"] == "0m"
    windows = {"15"}
    for doc in ("docs/runbook.md", "docs/architecture.md"):
        text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
        said = re.findall(r"resolves (\d+) minutes after the last", text)
        assert said and set(said) == windows, (doc, said)


@pytest.mark.parametrize("window", ["1h30m", "2d", "1w", "90s"])
def test_a_stall_window_may_be_any_prometheus_duration(window: str) -> None:
    """`rules --stall-after 1h30m` was refused as "not a Prometheus duration like 15m or 2h"; Prometheus
    takes it (and 1w), and the rule only puts it in `offset` and `[...]`."""
    from shannon_otel.assets._rules import events

    rules = alert_rules(stall_after=window, stall_after_wave={"train": window})
    stalled = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ShannonWaveStalled")
    assert f"offset {window}" in stalled["expr"]
    assert "[" + events("x", window).split("[")[1].split("]")[0] + "]" in stalled["expr"]


@pytest.mark.parametrize("window", ["0m", "0s0m", "", "15", "soon", "15m1h"])
def test_a_stall_window_that_is_no_duration_or_zero_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match=r"stall_after must be a Prometheus duration > 0 such as 15m"):
        alert_rules(stall_after=window)


_ODD_WAVES = ['a"b', "a\\b", "a.b", "x|y", "sp ace", "tab\there", "ünï{}"]


def test_rules_for_waves_named_with_quotes_backslashes_and_regex_symbols_load_in_prometheus(tmp_path: Any) -> None:
    """Before: a wave named ``a"b`` gave ``shannon_wave_name!~"a"b"``, and promtool (Prometheus) refused
    the whole rule file: "unexpected identifier "b" in label matching"."""
    import shutil

    from shannon_otel.assets import alert_rules_yaml

    promtool = shutil.which("promtool")
    if promtool is None:  # as tests/test_rules_promtool.py: CI installs it, a missing one fails
        pytest.fail("promtool is not installed: run `scripts/stack install`")
    path = tmp_path / "rules.yml"
    path.write_text(alert_rules_yaml(stall_after_wave=dict.fromkeys(_ODD_WAVES, "40m")))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_stall_exclusion_matches_exactly_the_waves_named() -> None:
    """The default window's ``!~`` matcher is the per-wave names as one anchored regex: decoded from the
    PromQL string it matches each name literally, and not a near miss (``a.b`` is not ``axb``)."""
    import re as regex

    from shannon_otel.assets._rules import _alternation

    quoted = _alternation(dict.fromkeys(_ODD_WAVES, "40m"))
    pattern = regex.compile(bytes(quoted, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8"))
    assert all(pattern.fullmatch(name) for name in _ODD_WAVES)
    assert not any(pattern.fullmatch(near) for near in ("axb", "x", "y", "a", "ab", "sp  ace"))


@pytest.mark.parametrize(("url", "message"), [
    ("http://jaeger:16686/base path", "percent-encode them"),
    ("http://jaeger/{{ .x }}", "percent-encode them"),
    ('http://jaeger/"x', "percent-encode them"),
    ("http://jaeger:16686/#top", "without a #fragment"),
])
def test_rules_refuse_a_link_the_alert_templates_cannot_hold(
    url: str, message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """They were written as given: a space or a quote made a link that opens nothing, ``{{ .x }}`` a Go
    template that fails when the alert fires, a fragment ``...#top/search?...``."""
    from shannon_otel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["rules", "--jaeger-url", url])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --jaeger-url: " in err
    assert message in err


def test_rules_link_to_a_jaeger_url_given_with_a_trailing_slash_without_a_double_slash() -> None:
    """``--jaeger-url http://jaeger:16686/`` linked to ``http://jaeger:16686//search?...``."""
    from shannon_otel.assets._rules import alert_rules

    rules = alert_rules(jaeger_url="http://jaeger:16686/")
    urls = [rule["annotations"]["traces_url"] for group in rules["groups"] for rule in group["rules"]
            if "traces_url" in rule.get("annotations", {})]
    assert urls
    assert all(u.startswith("http://jaeger:16686/search?service=") for u in urls)



def test_the_runbook_table_of_burn_rate_windows_is_the_rules() -> None:
    """docs/runbook.md's table gives each burn-rate pair, its factor and its alert's severity and `for:`."""
    from shannon_otel.assets._rules import BURN_ALERTS

    text = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    section = text.split("\n## ShannonTaskErrorBudgetBurn\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    documented: list[tuple[str, str, str, str, float]] = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        named = re.search(r"`(\w+)`", cells[0])
        windows = re.search(r"(\w+) and (\w+)$", cells[1])
        times = re.match(r"([\d.]+) x budget", cells[2])
        assert windows and times, row
        documented.append((named.group(1) if named else documented[-1][0], cells[4] or documented[-1][1],
                           windows.group(1), windows.group(2), float(times.group(1))))
    rules = {(r["labels"]["severity"], r["for"], r["expr"]) for g in alert_rules()["groups"] for r in g["rules"]
             if r.get("alert") == "ShannonTaskErrorBudgetBurn"}
    assert documented == [(severity, for_, long, short, factor)
                          for severity, for_, pairs in BURN_ALERTS for long, short, factor in pairs]
    for severity, for_, long, short, factor in documented:
        assert any(s == severity and f == for_ and f"ratio_increase{long} > {factor / 100:.6g}\n" in e
                   and f"ratio_increase{short} > {factor / 100:.6g}\n" in e for s, f, e in rules), (severity, long)
