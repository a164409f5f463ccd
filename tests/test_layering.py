"""Which package may import which: the data flows one way (user code -> executor / policies ->
events -> hooks -> SDK), and two packages that need one thing share a neutral module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imports one subpackage without running shannon_otel/__init__.py (which imports everything): the
# package is a bare module whose __path__ is the source directory, so only what the subpackage
# itself pulls in gets loaded. Then a protected call with a recording SDK runs, so the lazily
# imported OTel hook is loaded too.
_PROBE = r"""
import asyncio, importlib, json, sys, types
root = sys.argv[1]
package = types.ModuleType("shannon_otel")
package.__path__ = [root + "/shannon_otel"]
sys.modules["shannon_otel"] = package
target = importlib.import_module(sys.argv[2])
if sys.argv[2] == "shannon_otel.recovery":
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.metrics import MeterProvider

    async def work():
        return 1

    policy = target.Pipeline(target.Retry(attempts=2), target.CircuitBreaker("layering"),
                             tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    assert asyncio.run(policy.call(work)) == 1
print(json.dumps(sorted(m for m in sys.modules if m.startswith("shannon_otel."))))
"""


def _loaded_by(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT), module], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_the_recovery_package_imports_nothing_from_the_executor() -> None:
    loaded = _loaded_by("shannon_otel.recovery")
    assert "shannon_otel.recovery._policy" in loaded and "shannon_otel._otel" in loaded  # the probe ran
    assert "shannon_otel._deadline" in loaded
    assert [m for m in loaded if m.startswith("shannon_otel.executor")] == []


def _relative_imports(path: Path) -> set[str]:
    """The package-relative modules a source file imports (at run time or for type checking)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.add("." * node.level + (node.module or ""))
    return found


def test_the_advice_imports_no_report_and_the_executor_loads_no_run_reporting() -> None:
    # The wave report offers its advice and the run report builds on it: the advice must import neither.
    assert _relative_imports(ROOT / "shannon_otel/reporting/_advice.py") == set()
    loaded = _loaded_by("shannon_otel.executor")
    assert "shannon_otel.reporting._advice" in loaded
    assert [m for m in loaded if m.startswith(("shannon_otel.reporting._", "shannon_otel.recovery"))] == [
        "shannon_otel.reporting._advice"]
