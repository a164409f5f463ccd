"""configure() and its handle over a life: called again (refused up front, naming why), and forked."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest
from _forked import run_python
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shannon_otel import PrometheusReader, Wave, bridged, configure
from shannon_otel import _telemetry as tel


async def _noop() -> int:
    return 1


def _started_since(before: set[threading.Thread]) -> set[threading.Thread]:
    """Threads started since ``before`` was taken, but a bare ``ThreadPoolExecutor``'s workers: no configure()
    starts one, and an earlier test's executor may start its first worker at any moment (one did, under the
    lowest versions' CI run, failing the refusal test it happened in)."""
    return {t for t in set(threading.enumerate()) - before if not t.name.startswith("ThreadPoolExecutor-")}


def _task_counts(reader: PrometheusReader) -> list[str]:
    name = tel.TASK_DURATION.prometheus + "_count"
    return [line for line in reader.scrape().splitlines() if line.startswith(name)]


def test_a_reader_of_an_earlier_configure_is_refused_naming_it_and_the_earlier_page_keeps_its_histograms() -> None:
    # The SDK refused the reused reader with a bare Exception from MeterProvider(), naming no parameter, after
    # configure() had handed the reader the new (never used) bridge: the first configuration's Prometheus page
    # lost every task histogram, and the failed call's span processor thread ran on.
    reader = PrometheusReader()
    with configure("first", exporter="none", metric_readers=[reader], set_global=False) as first:
        wave: Wave[int] = Wave("w", tracer_provider=first.tracer_provider, meter_provider=first.meter_provider)
        asyncio.run(wave.run([_noop]))
        before = _task_counts(reader)
        assert before
        threads = set(threading.enumerate())
        with pytest.raises(ValueError, match=r"metric_readers\[1\] \(PrometheusReader\) is registered"):
            configure("second", exporter="none", metric_readers=[PrometheusReader(), reader],
                      span_exporters=[InMemorySpanExporter()], set_global=False)
        assert not _started_since(threads)  # nothing started
        assert _task_counts(reader) == before
    with pytest.raises(ValueError, match=r"metric_readers\[0\]"):  # shut down: still the first provider's
        configure("third", exporter="none", metric_readers=[reader], set_global=False)


@pytest.mark.parametrize("wrap", [False, True])
def test_one_reader_given_twice_is_refused_naming_the_second(wrap: bool) -> None:
    reader = PrometheusReader()
    readers = [bridged(reader), reader] if wrap else [reader, reader]
    with pytest.raises(ValueError, match=r"metric_readers\[1\]"):
        configure("twice", exporter="none", metric_readers=readers, set_global=False)
    with configure("once", exporter="none", metric_readers=[reader], set_global=False):  # not taken by the refusal
        pass


_STUCK_FLUSH_THEN_FORK = '''
import asyncio, json, os, sys, threading
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from shannon_otel import Wave, configure

gate = threading.Event()

class Gate(SpanExporter):
    exported = 0
    def export(self, spans):
        gate.wait()
        Gate.exported += len(spans)
        return SpanExportResult.SUCCESS
    def shutdown(self):
        gate.set()

async def job():
    return 1

handle = configure("fork", exporter="none", span_exporters=[Gate()], set_global=False)
wave = Wave("w", tracer_provider=handle.tracer_provider, meter_provider=handle.meter_provider)
asyncio.run(wave.run([job]))
assert handle.force_flush(0.05) is False  # the backend is silent: this flush's thread is left waiting
pid = os.fork()
if pid == 0:
    gate.set()  # the child's backend answers
    asyncio.run(wave.run([job]))
    flushed = handle.force_flush(5.0)
    print(json.dumps({"flushed": flushed, "exported": Gate.exported}), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
gate.set()
handle.shutdown()
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_forked_during_a_stuck_flush_flushes_its_own_spans(tmp_path: Path) -> None:
    # The parent's stuck flush left its "still flushing" event unset in the child, where its thread does not
    # exist: every force_flush of the child waited its whole budget on it and returned False, exporting nothing.
    script = tmp_path / "stuck_flush_fork.py"
    script.write_text(_STUCK_FLUSH_THEN_FORK)
    done = run_python(str(script))
    child = json.loads(done.stdout.splitlines()[0])
    assert child == {"flushed": True, "exported": 2}  # the child's task and wave spans


def test_a_global_logger_provider_of_the_users_own_is_named_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # The user's logging set-up set the global LoggerProvider, nothing else, and OTEL_LOGS_EXPORTER asks for logs:
    # configure() said "the global OTel providers are already set ... pass tracer_provider=/meter_provider=",
    # about providers nobody had set, and never mentioned logs=False, the one argument that lets it go on.
    from opentelemetry import _logs as otel_logs
    from opentelemetry.sdk._logs import LoggerProvider

    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setattr(otel_logs, "get_logger_provider", LoggerProvider)
    threads = set(threading.enumerate())
    with pytest.raises(RuntimeError, match=r"LoggerProvider is already set .*logs=False"):
        configure("mine")
    assert not _started_since(threads)


def test_a_provider_named_by_otel_python_tracer_provider_is_named_in_the_refusal() -> None:
    # OTEL_PYTHON_TRACER_PROVIDER makes the API load that provider as the global on the first look: configure()
    # said "the global OTel providers are already set" although nobody had set one, naming no variable.
    code = (
        "from shannon_otel import configure\n"
        "try:\n    configure('env', exporter='none')\nexcept RuntimeError as e:\n    print(e)\n"
    )
    done = run_python("-c", code, extra_env={"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"})
    assert done.stdout.startswith("OTEL_PYTHON_TRACER_PROVIDER='sdk_tracer_provider' makes the OTel API"), done.stdout


def test_a_telemetry_built_by_hand_refuses_what_it_could_not_shut_down_naming_the_parameter() -> None:
    # Telemetry(tracer_provider, meter_provider) took anything: None, or the API's proxy of an unset global, failed
    # only in shutdown() with "AttributeError: 'NoneType' object has no attribute 'shutdown'".
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from shannon_otel import Telemetry

    with pytest.raises(TypeError, match="tracer_provider must be an SDK provider"):
        Telemetry(trace.ProxyTracerProvider(), MeterProvider())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meter_provider must be an SDK provider"):
        Telemetry(TracerProvider(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"logger_provider must be an SDK provider .* or None"):
        Telemetry(TracerProvider(), MeterProvider(), "logs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shutdown_timeout_s must be in \(0, 3600"):
        Telemetry(TracerProvider(), MeterProvider(), shutdown_timeout_s=0)
    handle = Telemetry(TracerProvider(), MeterProvider())
    assert handle.shutdown() is True


_EXIT_WITH_LOGS = '''
import atexit, logging, sys, threading

def refuse_threads():  # what Python 3.12.0 / 3.12.1 do while the interpreter finalizes (gh-113964)
    def refused(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")
    threading.Thread.start = refused

# Runs after configure()'s own exit handler (registered later, run first) and before logging's (registered
# at `import logging`, above, run last): the order of Python 3.12.0 / 3.12.1's thread refusal at exit.
atexit.register(refuse_threads)

from shannon_otel import configure

handle = configure("exit-logs", exporter="console", logs=True)  # console: stdout, no server
assert handle.logger_provider is not None
logging.getLogger("shannon_otel").warning("a record for the logs signal")
if sys.argv[1] == "shutdown":
    handle.shutdown()
# "kept": the handle stays referenced to the end, shut down by configure()'s exit handler
'''


@pytest.mark.parametrize("shut", ["shutdown", "kept"])
def test_a_process_that_keeps_its_logs_handle_exits_without_an_ignored_exception(tmp_path: Path, shut: str) -> None:
    # At exit, logging.shutdown() flushes every handler still alive, removed from its logger or not, and the
    # SDK's LoggingHandler.flush() starts a thread to flush its (already shut down) provider. Python 3.12.0 and
    # 3.12.1 refuse to start one then: every program that kept its configure(logs=True) handle (a module global)
    # ended with "Exception ignored in atexit callback ... can't create new thread at interpreter shutdown".
    script = tmp_path / "exit_with_logs.py"
    script.write_text(_EXIT_WITH_LOGS)
    done = run_python(str(script), shut)
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "can't create new thread" not in done.stderr, done.stderr
