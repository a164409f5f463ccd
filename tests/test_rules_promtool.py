"""The bundled alert rules: `promtool check rules`, the promtool unit tests, mixin conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shannon_otel.assets import RULES_FILE, alert_rules

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / RULES_FILE
RULE_TESTS = RULES.parent / "tests" / "shannon-alerts.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def promtool() -> str:
    """promtool's path; fails (never skips) without it, as CI installs it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run `scripts/stack install` (Debian's prometheus package)")
    return path


def _rules() -> list[dict[str, object]]:
    return [rule for group in alert_rules()["groups"] for rule in group["rules"]]


def test_promtool_check_rules_is_clean() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:(.*)", RULE_TESTS.read_text(encoding="utf-8"))
    firing = {name for name, rest in cases if rest.strip() != "[]"}
    quiet = {name for name, rest in cases if rest.strip() == "[]"}
    names = {str(rule["alert"]) for rule in _rules()}
    assert names <= firing
    assert names <= quiet
    severities = {str(rule["labels"]["severity"]) for rule in _rules()}  # type: ignore[index]
    tested = set(re.findall(r"severity: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert severities <= tested


def test_rules_follow_monitoring_mixin_conventions() -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for rule in _rules():
        name = str(rule["alert"])
        assert re.fullmatch(r"Shannon(?:[A-Z][a-z0-9]*)+", name), name
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in {"info", "warning", "critical"}
        assert annotations["summary"]
        assert annotations["summary"].endswith(".")
        assert "{{ $labels." in annotations["description"]
        assert annotations["runbook_url"].endswith(f"docs/runbook.md#{name.lower()}")
        assert f"\n## {name}\n" in runbook, f"docs/runbook.md has no section for {name}"
        assert "/search?service=" in annotations["traces_url"]
