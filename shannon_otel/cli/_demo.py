"""``shannon-otel demo``: run the simulated agent workload with live progress, then summarise it.

Order of events: providers (and the Prometheus endpoint) are built, the waves run under the live
display, the summary is printed, and only then are the providers flushed and shut down, so a slow
or unreachable collector delays the exit by at most the export timeout, never the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .._events import Hook
from .._telemetry_handle import DEFAULT_SHUTDOWN_TIMEOUT_S
from ..reporting._recorder import RunRecorder
from ._display import PlainDisplay, make_display
from ._exporting import Exporting, setup
from ._pipe import encodes
from ._prometheus import MetricsServer, PrometheusReader
from ._secrets import safe_url, scrub
from ._summary import Out, advice_section, anomalies_section, resilience_section, waterfall_section, waves_section
from ._verbose import log_lines
from ._waterfall import waterfall
from ._workload import WorkloadConfig, run_waves

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_EXPORT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_EXIT_RESERVE_S = 0.75  # measured: the telemetry section and interpreter exit take ~0.1-0.4 s after the flush
_MAX_FLUSH_S = 3600.0  # what Telemetry.shutdown() accepts: --export-timeout may be up to 3600 s, twice that is not


def _anomaly_hook() -> Hook | None:
    """The anomaly detector, tuned to warm up within a short demo. It hands its anomalies to the other
    hooks of each wave and policy: the OTel hook exports them, the run recorder keeps them."""
    try:
        from dataclasses import replace

        from ..anomaly import HOOK_DEFAULTS, LATENCY, AnomalyHook
    except ImportError:  # pragma: no cover - the detector ships with the package
        return None

    # A default demo lasts ~6 s: short ticks closed by task count (12 tasks, whose mean the slow LLM calls
    # barely move) and a 15-tick warm-up, so the five research rounds before the anomaly are history.
    # Measured on seeds 1-20: research#6 flagged in all, no clean wave (top clean score 0.23).
    return AnomalyHook(replace(HOOK_DEFAULTS, min_history=15), signals=(LATENCY,), tick_s=0.02, min_tick_tasks=12)


def _console(plain: bool) -> Any | None:
    """A rich console for a terminal stdout, else None (plain text). A terminal without rich is told, on
    stderr, which extra brings the live table: the plain lines there were silent about it."""
    if plain or not sys.stdout.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        if sys.stderr is not None:  # started with stderr closed (`2>&-`): print(file=None) would write to stdout
            print("shannon-otel demo: plain output (the live table and coloured summary need rich: "
                  "pip install 'shannon-otel[cli]'; --plain leaves this note out)", file=sys.stderr)
        return None
    console = Console()
    if console.width < 1:  # rich takes COLUMNS=0 as a width of 0 (the summary's wrap died on it): ask the terminal
        console = Console(width=shutil.get_terminal_size().columns)
    return None if console.is_dumb_terminal else console


def run(args: argparse.Namespace) -> int:
    """Run the demo command; returns the exit code (see ``docs/cli.md``)."""
    config = WorkloadConfig(waves=args.waves, tasks=args.tasks, seed=args.seed, concurrency=args.concurrency)
    readers: list[PrometheusReader] = []
    server: MetricsServer | None = None
    if args.prometheus_port is not None:
        readers.append(PrometheusReader())
        try:
            server = MetricsServer(readers[0], args.prometheus_port)
        except OSError as exc:
            print(f"shannon-otel demo: cannot serve metrics on 127.0.0.1:{args.prometheus_port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return EXIT_ERROR
    try:
        exporting = setup(
            endpoint=args.otlp_endpoint, protocol=args.otlp_protocol, readers=readers,
            export_timeout_s=args.export_timeout, metric_interval_s=args.metric_interval,
            service_name=args.service_name,
        )
    except ValueError as exc:  # configure() (or the SDK) refusing an OTEL_* variable, naming it: was a traceback
        if server is not None:
            server.close()
        parser: argparse.ArgumentParser = args.subparser
        reason = str(exc)
        if reason.startswith("endpoint "):  # configure()'s parameter, which the user never saw: name what they set
            reason = args.endpoint_source + reason[len("endpoint"):]
        parser.error(scrub(reason, args.otlp_endpoint or ""))
    console = _console(args.plain)
    out = Out(console)
    if server is not None:
        out.line(f"serving Prometheus metrics on {server.url}")
    if exporting.disabled:  # said first: the summary will have no trace and no metrics, and nothing is sent
        out.line("OTEL_SDK_DISABLED=true: the OpenTelemetry SDK records no telemetry in this run, and exports none")
    elif exporting.endpoint is not None:
        out.line(f"exporting traces and metrics over OTLP to {safe_url(exporting.endpoint)} "
                 f"as service {args.service_name!r}")
    recorder = RunRecorder()
    display = make_display(recorder, plain=console is None, console=console)
    lines = log_lines(out, args.verbose)
    logs = lines.__enter__()
    # The display right after the recorder: it reads its counters. The logging hook (off unless --verbose)
    # replaces the default one; it gets the anomaly hook's anomalies like the others.
    hooks: list[Hook] = [recorder, display, logs]
    detector = _anomaly_hook()
    if detector is not None:
        hooks.append(detector)
    keep_going: Callable[[int], bool] | None = None
    if args.duration is not None:
        deadline = time.monotonic() + args.duration

        def keep_going(wave_no: int) -> bool:
            return wave_no == 0 or time.monotonic() < deadline
    code = EXIT_OK
    with exporting.problems:
        try:
            with display:
                outputs: list[Out | PlainDisplay] = [out, display] if isinstance(display, PlainDisplay) else [out]
                asyncio.run(_while_read(run_waves(config, hooks, exporting.providers, keep_going=keep_going), outputs))
        except KeyboardInterrupt:
            out.line("interrupted: summarising what ran")
            code = EXIT_INTERRUPTED
        except asyncio.CancelledError:  # stdout's reader left (demo | head): stopped; what ran is still flushed
            pass
        finally:
            lines.__exit__(None, None, None)
        try:
            block = console is not None and encodes(sys.stdout, "\u2588")  # a terminal that can show it
            _summarise(out, recorder, exporting, detector is not None, fill="\u2588" if block else "#")
            series = exporting.metrics.series() if exporting.metrics is not None else None
            # What the user is told the flush may take: an export timeout for the traces and one for the
            # metrics. The wait keeps a little of it for printing the rest and the process' own exit.
            limit_s = min(2 * args.export_timeout, _MAX_FLUSH_S)
            if exporting.endpoint is not None:
                out.line(f"flushing telemetry to {safe_url(exporting.endpoint)} (at most {limit_s:g} s)...")
                exporting.close(max(limit_s / 2, limit_s - _EXIT_RESERVE_S))
            else:  # nothing is exported: --export-timeout 1e-6 gave up on the in-memory readers and exited 3
                exporting.close(DEFAULT_SHUTDOWN_TIMEOUT_S)
        except KeyboardInterrupt:
            return _leave_now(exporting, server, again=code == EXIT_INTERRUPTED)
        if server is not None:
            server.close()
    _telemetry_section(out, exporting, server, series)
    if code == EXIT_OK and exporting.problems.count:
        code = EXIT_EXPORT
    return code


async def _while_read(work: Coroutine[Any, Any, int], outputs: Sequence[Out | PlainDisplay]) -> None:
    """Await ``work``; cancelled (CancelledError out of ``asyncio.run``) once a write to ``outputs`` finds
    stdout's reader gone (``demo | head``), so nobody waits for waves whose output nobody reads."""
    main = asyncio.current_task()
    assert main is not None
    for output in outputs:
        output.on_gone = main.cancel
    try:
        await work
    finally:
        for output in outputs:
            output.on_gone = None


def _leave_now(exporting: Exporting, server: MetricsServer | None, *, again: bool) -> int:
    """Ctrl-C while summarising or flushing (``again``: a second one, the first stopped the waves): leave at
    once (no traceback), with what was not sent counted as dropped and said on stderr."""
    exporting.telemetry.shutdown(timeout_s=0)  # counts the unsent spans; a no-op if the flush already did
    if server is not None:
        server.close()
    dropped = exporting.telemetry.dropped
    # "again" only when it is: a first Ctrl-C during the flush of a finished run was called a second one
    when = "interrupted again" if again else "interrupted while summarising or flushing"
    print(f"shannon-otel demo: {when}: left without flushing; telemetry dropped: "
          f"{dropped['traces']} spans, {dropped['metrics']} metric points", file=sys.stderr)
    return EXIT_INTERRUPTED


def _summarise(out: Out, recorder: RunRecorder, exporting: Exporting, detector: bool, *, fill: str) -> None:
    report = recorder.report()
    advice = report.recommendations()
    waves_section(out, recorder)
    resilience_section(out, recorder, report)
    anomalies_section(out, report, advice, detector)
    spans = exporting.spans.slowest_wave()
    root = next((s for s in spans if s.parent is None), None)
    title, trace_id = "Slowest wave trace", None
    if root is not None and root.context is not None:
        # The run's label (research#6: the 6th run of wave "research") and the root span's name, as
        # Jaeger shows it and the waterfall's first row repeats it.
        trace_id = f"{root.context.trace_id:032x}"
        label = next((w.label for w in recorder.waves if w.trace_id == trace_id), None)
        title += f": {label + ', span ' if label else ''}'{root.name}'"
    waterfall_section(out, waterfall(spans, fill=fill, width=out.width), title, trace_id)
    advice_section(out, advice)


def _telemetry_section(
    out: Out, exporting: Exporting, server: MetricsServer | None, series: tuple[int, int] | None,
) -> None:
    out.heading("Telemetry")
    out.line(f"spans recorded: {exporting.spans.count}")
    if series is not None:
        metrics, points = series
        where = (f"also served for scraping at {server.url} while the demo ran" if server is not None
                 else "kept in-process (use --otlp-endpoint or --prometheus-port to ship them)")
        out.line(f"metrics: {metrics} instruments, {points} series, {where}")
    problems = exporting.problems
    if exporting.endpoint is not None:
        if exporting.disabled:  # "ok" would claim a delivery that never happened
            out.line(f"OTLP export to {safe_url(exporting.endpoint)}: nothing sent (OTEL_SDK_DISABLED=true)")
        elif problems.count:
            logged = "1 error or retry" if problems.count == 1 else f"{problems.count} errors and retries"
            out.line(f"OTLP export to {safe_url(exporting.endpoint)}: FAILED ({logged} logged; "
                     f"first: {problems.first})", "red")
        else:
            out.line(f"OTLP export to {safe_url(exporting.endpoint)}: ok" + (
                " (traces; the endpoint refused metrics)" if problems.metrics_refused else ""))
    if server is not None:
        out.line(f"Prometheus endpoint {server.url} (closed at exit)")
