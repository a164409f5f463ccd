"""The zero-code entry point: what ``opentelemetry-instrument`` loads by ``OTEL_PYTHON_CONFIGURATOR``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_configurator_entry_point_is_declared_and_loads() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["opentelemetry_configurator"]["shannon_otel"]
    module, _, name = target.partition(":")
    assert callable(getattr(importlib.import_module(module), name)().configure)


def test_the_configurator_sets_bridged_global_providers_from_the_environment() -> None:
    # In a fresh interpreter: the globals can be set once per process. This is the call
    # opentelemetry-instrument makes for the selected configurator.
    script = """
import asyncio
from importlib.metadata import entry_points
from opentelemetry import metrics, trace
from shannon_otel import Wave
from shannon_otel._autoconfig import Configurator
from shannon_otel._otel._providers import bridge_for

Configurator().configure(auto_instrumentation_version="0")
Configurator().configure()  # a second configurator call changes nothing
provider = metrics.get_meter_provider()
assert type(provider).__module__.startswith("opentelemetry.sdk"), provider
assert bridge_for(provider) is not None
assert trace.get_tracer_provider().resource.attributes["service.name"] == "zero-code"

async def ok() -> int:
    return 1

asyncio.run(Wave("w").run([ok()]))
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "zero-code",
           "OTEL_PYTHON_CONFIGURATOR": "shannon_otel",  # as the README says: another configurator may be installed
           "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
