"""configure()'s handle says the OTel SDK's repeated warnings once, as the ``shannon-otel`` command does.

Before: a program of the README's quick start with ``OTEL_RESOURCE_ATTRIBUTES=junk`` was warned twice (the SDK's logs
module parses the variable as it is imported, configure() parses it again), and with a value length limit that
values exceed one "String attribute value exceeds max length of 3, truncating." per attribute set: 17 lines for the
quick start's three prompts, one per long attribute of a span. The command said each once (cli/_once.py); a program
calling configure() itself did not.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource

from shannon_otel import configure

ROOT = Path(__file__).resolve().parents[1]
_SDK = ("opentelemetry.sdk.resources", "opentelemetry.attributes")
_TRUNCATED = "String attribute value exceeds max length of 3, truncating."

_QUICK_START = textwrap.dedent("""
    import asyncio
    from shannon_otel import Retry, Wave, configure

    async def ask(prompt: str) -> str:
        await asyncio.sleep(0)
        return f"answer to {prompt!r}"

    async def main() -> None:
        with configure("my-service"):
            wave = Wave("ask-all", max_concurrency=20, task_timeout=30, policy=Retry(attempts=3))
            result = await wave.map(ask, ["What is a span?", "Why retry with jitter?", "When does a breaker open?"])
            print(result.values())

    asyncio.run(main())
""")


def _quick_start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_", "SHANNON_OTEL_"))}
    return subprocess.run(
        [sys.executable, "-c", _QUICK_START], capture_output=True, text=True, timeout=90, check=False,
        env={**clean, "PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **env},
    )


def test_the_quick_start_warns_a_malformed_resource_attribute_once() -> None:
    done = _quick_start(OTEL_RESOURCE_ATTRIBUTES="junk")
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.splitlines()
    assert "Invalid key value resource attribute pair junk" in warning


def test_the_quick_start_honours_a_value_length_limit_and_warns_its_truncation_once() -> None:
    done = _quick_start(OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT="3")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [_TRUNCATED]


def _sdk_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in _SDK]


def test_repeats_are_said_once_while_the_handle_lives_and_again_after_its_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # Set after the SDK's import-time parse: configure()'s own detection is the first to see it, and warns.
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "junk")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    user = logging.getLogger("opentelemetry.attributes")
    handlers, level = list(user.handlers), user.level
    caplog.set_level(logging.WARNING)
    handle = configure("svc", exporter="none", set_global=False)
    tracer = handle.tracer_provider.get_tracer("t")
    for i in range(5):
        with tracer.start_as_current_span("s", attributes={"a": "long value", "b": f"another {i}"}) as span:
            span.set_attribute("c", "and another")
    Resource.create({})  # the user's own detection, while the handle lives: the same warning
    assert _sdk_records(caplog) == [
        "Invalid key value resource attribute pair junk: not enough values to unpack (expected 2, got 1)", _TRUNCATED,
    ]
    honoured = handle.tracer_provider.get_tracer("t").start_span("x", attributes={"a": "long"})
    assert getattr(honoured, "attributes", {}).get("a") == "lon"  # the limit still cuts (an SDK span)
    handle.shutdown()

    for name in _SDK:  # taken off; nothing else of the user's logging changed
        assert logging.getLogger(name).filters == []
    assert (user.handlers, user.level) == (handlers, level)
    caplog.clear()
    with tracer.start_as_current_span("s", attributes={"a": "long value", "b": "another"}):
        pass
    assert _sdk_records(caplog) == [_TRUNCATED, _TRUNCATED]  # the SDK's own behaviour again, each one


def test_a_refused_configure_leaves_no_filter_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        configure("svc", exporter="otlp", set_global=False)
    for name in _SDK:
        assert logging.getLogger(name).filters == []
