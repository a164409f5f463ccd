"""The ``shannon-otel`` command (also ``python -m shannon_otel``): demo, dashboards, rules, check.

:func:`main` parses the arguments and dispatches to one module per subcommand; it returns the exit
code instead of exiting, so it can be called from tests and other programs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .._resource_env import env_service_name
from .._version import __version__
from ._once import warned_once
from ._pipe import discard, lost, replacing_unencodable, reset
from ._secrets import scrub_logs

__all__ = ["main"]

EPILOG = """\
exit codes:
  0    success
  1    error: `check` found a target unreachable, a port could not be bound, a file or stdout could not be
       written (a full disk, a closed stdout), or an unexpected failure
  2    usage error: unknown subcommand, bad flag or flag value, or an OTEL_* variable refused (named)
  3    `demo` finished and printed its full summary, but exporting telemetry failed
  130  interrupted (Ctrl-C); `demo` still prints the summary of what ran
  143  terminated (SIGTERM: `kill`, `docker stop`, `timeout`): as Ctrl-C, the summary printed, telemetry flushed

environment: OTEL_EXPORTER_OTLP_ENDPOINT is the default of --otlp-endpoint, OTEL_EXPORTER_OTLP_PROTOCOL
(grpc | http/protobuf) of --otlp-protocol, OTEL_SERVICE_NAME (else the service.name of
OTEL_RESOURCE_ATTRIBUTES) of --service-name. `check` sends a span as configure() sends traces: the
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a URL used as is) / _TRACES_PROTOCOL come first.
See https://github.com/shannon-otel/shannon-otel/blob/main/docs/cli.md
"""


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# A wave's trace is held in memory for the summary's waterfall (~9 spans of ~2.8 KB per task): 10,000 tasks
# is ~250 MB. The task list is built before the wave starts: --tasks 10**20 sat building it, printing nothing.
_MAX_TASKS = 10_000


def _task_count(text: str) -> int:
    value = _whole(text)
    if not 1 <= value <= _MAX_TASKS:  # 0 too: "must be >= 1" hid the upper bound
        raise argparse.ArgumentTypeError(f"must be in 1..{_MAX_TASKS:,}, got {value}")
    return value


def _parse_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None


def _seconds(text: str) -> float:
    value = _parse_seconds(text)
    if value == float("inf"):  # 1e400 too: "must be > 0" would be no reason for a value above 0
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _seconds_upto(limit: float) -> Callable[[str], float]:
    """Seconds in (0, ``limit``]: what configure() takes for an export timeout (3600) or metric interval (86400),
    refused here as a usage error naming the flag, not by configure() with a traceback."""
    def parse(text: str) -> float:
        value = _parse_seconds(text)
        if not 0 < value <= limit:  # 0, negatives, NaN, inf: each refused with the whole range, not "> 0" alone
            raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, {limit:g}], got {text}")
        return value
    return parse


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a non-empty name, got {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes a C locale (without UTF-8 mode) could not decode arrive as surrogate escapes: `--service-name dé`
        # was refused, naming configure()'s service_name. The UTF-8 the terminal sent is the name meant.
        try:
            return os.fsencode(text).decode("utf-8")
        except UnicodeError:
            raise argparse.ArgumentTypeError(
                f"expected a name in UTF-8 (telemetry is exported as UTF-8), got {text!r}") from None
    return text


def _out_path(text: str) -> str:
    """``--out``: a path, never blank. ``--out "$DIR"`` with DIR unset wrote every file into the working
    directory (an empty path is ``.``), or failed with "cannot write .: Is a directory"."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return text


def _link(text: str) -> str:
    """An http(s) URL with a host: the alert annotations link to it."""
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as http://127.0.0.1:16686, got {text!r}")
    # The link lands inside a quoted YAML string and a Go template: a space, a quote or "{{" there would
    # make a link that opens nothing, or a template that fails when the alert fires (percent-encode them).
    unsafe = sorted({c for c in text if c.isspace() or c in _UNSAFE})
    if unsafe:
        shown = " ".join(map(repr, unsafe))
        raise argparse.ArgumentTypeError(
            f"the URL has characters a link cannot hold unencoded ({shown}); percent-encode them, got {text!r}",
        )
    if parts.fragment:
        raise argparse.ArgumentTypeError(f"expected a URL without a #fragment (each alert adds its own), got {text!r}")
    return text


_UNSAFE = frozenset('"<>\\^`{|}')


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0 picks a free port), got {value}")
    return value


def endpoint_url(text: str, example: str = "http://127.0.0.1:4317") -> str:
    """``http(s)://host[:port][/path]``, or a bare ``host:port`` (gets ``http://``). ArgumentTypeError
    otherwise, showing ``example``: a bare word such as ``notaurl`` is a typo far more often than a host on
    port 80."""
    bare = "://" not in text
    url = f"http://{text}" if bare else text
    try:
        parts = urlsplit(url)  # ValueError for a broken IPv6 literal ("http://[::1")
        port = parts.port
    except ValueError:  # that, or a port that is not a number, or out of 0..65535
        parts, port = urlsplit(""), None
    if parts.scheme not in ("http", "https") or not parts.hostname or (bare and port is None) or port == 0:
        raise argparse.ArgumentTypeError(
            f"expected a URL like {example} (scheme http or https, a host, an optional port; "
            f"without a scheme, host:port), got {text!r}"
        )
    return url.rstrip("/")


def _prometheus_url(text: str) -> str:
    """``check --prometheus``: as :func:`endpoint_url`, its error showing Prometheus' port, not OTLP's."""
    return endpoint_url(text, "http://127.0.0.1:9090")


def _protocol(text: str) -> str:
    """The --otlp-protocol flag: ``grpc``, ``http/protobuf`` or its shorthand ``http``, in any case, as the variables
    are read (``--otlp-protocol GRPC`` was refused while ``OTEL_EXPORTER_OTLP_PROTOCOL=GRPC`` was taken)."""
    value = {"grpc": "grpc", "http": "http", "http/protobuf": "http"}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected grpc or http/protobuf, got {text!r}")
    return value


def _env_protocol(text: str) -> str:
    """A protocol variable's value: ``grpc`` or ``http/protobuf`` in any case, as configure() reads it (the
    specification reads enum values case-insensitively). The flag's shorthand ``http`` was taken from the variable
    too: `check` said "ok" for a setting with which the program's configure() refuses to start."""
    if text.lower() not in ("grpc", "http/protobuf"):
        raise argparse.ArgumentTypeError(f"expected grpc or http/protobuf, got {text!r}")
    return _protocol(text)


def _env(name: str) -> str | None:
    """A standard variable's value; blank counts as unset (the specification's rule, as configure() reads it)."""
    value = os.environ.get(name, "").strip()
    return value or None


def _first_env(*names: str) -> tuple[str, str | None]:
    """(name, value) of the first of ``names`` set and not blank, else (the last name, None)."""
    for name in names:
        if (value := _env(name)) is not None:
            return name, value
    return names[-1], None


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that --help and --version into a full disk (`--help > /dev/full`) are an
    error: argparse swallows every OSError of its writes, and such a command exited 0 having printed nothing."""

    def error(self, message: str) -> NoReturn:
        if sys.stderr is None:  # started with stderr closed (`2>&-`): argparse took the None it passes print_usage
            self.exit(2)  # for "stdout", and `rules --slo-target x 2>&- > rules.yml` wrote the usage into the file
        super().error(message)

    def _print_message(self, message: str, file: Any = None) -> None:  # typeshed: SupportsWrite[str] | None
        if not message:
            return
        if file is None:  # argparse passes sys.stdout, None when started with it closed (`--help >&-`): main says so
            return
        stream = file
        try:
            stream.write(message)
            stream.flush()
        except BrokenPipeError:  # `--help | head -1`: the reader has what it wanted
            discard(stream)
        except (AttributeError, OSError) as exc:  # AttributeError: an object without write()
            if stream is sys.stdout and isinstance(exc, OSError):
                lost(stream, exc)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="shannon-otel", description="OpenTelemetry for asyncio waves: a demo, bundled dashboards and "
        "alert rules, and a connectivity check.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    env_endpoint = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    env_protocol = _env("OTEL_EXPORTER_OTLP_PROTOCOL")

    demo = sub.add_parser(
        "demo", help="run a simulated agent workload and summarise its telemetry (no server needed)",
        description="Runs waves of simulated LLM agent tasks through the real executor and resilience policies\n"
        "(retry, circuit breaker, timeout, fallback, degradation, saga) with an injected search outage and\n"
        "latency anomaly, shows live progress, then prints a summary, the slowest wave's trace and\n"
        "recommendations. Telemetry stays in-process unless --otlp-endpoint or --prometheus-port is given.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--waves", type=_positive_int, metavar="N", default=8, help="waves per cycle (default 8)")
    demo.add_argument("--tasks", type=_task_count, metavar="N", default=48,
                      help=f"tasks per wave, at most {_MAX_TASKS:,} (default 48)")
    demo.add_argument("--concurrency", type=_positive_int, metavar="N", default=6,
                      help="max concurrent tasks per wave (default 6)")
    demo.add_argument("--seed", type=int, metavar="N", default=7, help="seed of the simulated workload (default 7)")
    demo.add_argument("--duration", type=_seconds, metavar="SECONDS",
                      help="keep running cycles of waves for this long (for dashboard demos)")
    demo.add_argument("--otlp-endpoint", type=endpoint_url, default=None, metavar="URL",
                      help="ship traces and metrics over OTLP, e.g. http://127.0.0.1:4317 "
                      "(default: $OTEL_EXPORTER_OTLP_ENDPOINT, else nothing leaves the process)")
    demo.add_argument("--otlp-protocol", type=_protocol, default=None, metavar="{grpc,http/protobuf}",
                      help="OTLP transport (default: $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)")
    demo.add_argument("--export-timeout", type=_seconds_upto(3600), default=3.0, metavar="SECONDS",
                      help="timeout of one OTLP export (default 3)")
    demo.add_argument("--metric-interval", type=_seconds_upto(86400), default=None, metavar="SECONDS",
                      help="OTLP metric export interval (default: $OTEL_METRIC_EXPORT_INTERVAL, which is in "
                      "milliseconds, else 10 s)")
    demo.add_argument("--prometheus-port", type=_port, default=None, metavar="PORT",
                      help="serve metrics for scraping at http://127.0.0.1:PORT/metrics (0: any free port)")
    demo.add_argument("--service-name", metavar="NAME", type=_name,
                      default=env_service_name() or "shannon-otel-demo",
                      help="service.name of the telemetry (default: $OTEL_SERVICE_NAME, else the service.name "
                      "of $OTEL_RESOURCE_ATTRIBUTES, else shannon-otel-demo)")
    demo.add_argument("--plain", action="store_true", help="plain line output even on a terminal")
    demo.add_argument("--verbose", "-v", action="store_true",
                      help="also print the library's log records: retries, breaker changes, fallbacks, ...")
    demo.set_defaults(env_endpoint=env_endpoint, env_protocol=env_protocol, subparser=demo)

    dash = sub.add_parser("dashboards", help="print or write the bundled Grafana dashboards",
                          description="Prints the Grafana dashboards as JSON ({file name: model}, or one model "
                          "with NAME), or writes them with their provisioning files under --out DIR.")
    dash.add_argument("name", nargs="?", help="one dashboard: overview, resilience or anomalies")
    dash.add_argument("--out", metavar="DIR", type=_out_path,
                      help="write DIR/<dashboard>.json and DIR/provisioning/...")
    dash.set_defaults(subparser=dash)

    rules = sub.add_parser("rules", help="print or write the bundled Prometheus alert rules",
                           description="Prints the Prometheus alert rule file (YAML), or writes it to --out FILE.")
    rules.add_argument("--out", metavar="FILE", type=_out_path, help="write the rules to FILE instead of stdout")
    rules.add_argument("--jaeger-url", type=_link, metavar="URL",
                       help="link alerts to this Jaeger UI (e.g. http://127.0.0.1:16686)")
    rules.add_argument("--runbook-url", type=_link, metavar="URL",
                       help="base URL of the runbook linked from each alert")
    rules.add_argument("--slo-target", type=float, metavar="RATIO",
                       help="task success objective of the error budget alerts, in (0, 1) (default 0.99)")
    rules.add_argument("--stall-after", metavar="DURATION",
                       help="how long a wave may run without a finished task (default 15m)")
    rules.add_argument("--stall-after-wave", metavar="WAVE=DURATION", action="append", default=[],
                       help="the stall window of one wave (repeatable), e.g. train=40m")
    rules.set_defaults(subparser=rules)

    check = sub.add_parser(
        "check", help="verify an OTLP endpoint accepts traces and Prometheus answers queries",
        description="Exports one test span to the OTLP endpoint and queries Prometheus; exit 0 when every "
        "target answered, 1 otherwise.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--otlp-endpoint", type=endpoint_url, default=None, metavar="URL",
                       help="default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is), else "
                       "$OTEL_EXPORTER_OTLP_ENDPOINT, else http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 "
                       "(http/protobuf)")
    check.add_argument("--otlp-protocol", type=_protocol, default=None, metavar="{grpc,http/protobuf}",
                       help="OTLP transport (default: $OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else "
                       "$OTEL_EXPORTER_OTLP_PROTOCOL, else grpc)")
    check.add_argument("--prometheus", type=_prometheus_url, default=None, metavar="URL",
                       help="Prometheus base URL (default http://127.0.0.1:9090)")
    skip = check.add_mutually_exclusive_group()  # skipping both would check nothing and still exit 0
    skip.add_argument("--skip-otlp", action="store_true", help="only check Prometheus")
    skip.add_argument("--skip-prometheus", action="store_true", help="only check the OTLP endpoint")
    check.add_argument("--timeout", type=_seconds_upto(3600), default=3.0, metavar="SECONDS",
                       help="per target, all its requests and retries included (default 3)")
    # the traces signal's own variables first, as configure() reads them for the span exporter: with only
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/_PROTOCOL set, `check` tested gRPC on 127.0.0.1:4317 instead
    endpoint_var, check_endpoint = _first_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    protocol_var, check_protocol = _first_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    check.set_defaults(env_endpoint=check_endpoint, env_endpoint_var=endpoint_var, env_protocol=check_protocol,
                       env_protocol_var=protocol_var, subparser=check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Usage errors exit through argparse (``SystemExit(2)``) with a message on stderr.
    """
    scrub_logs()
    reset()
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as done:  # --help, --version (exit 0), or a usage error (exit 2, on stderr)
        error = lost(sys.stdout)
        if done.code == 0 and (error is not None or sys.stdout is None):
            reason = "it is closed" if error is None else error.strerror or error
            print(f"shannon-otel: cannot write to stdout: {reason}", file=sys.stderr)
            return 1
        raise
    if unknown:  # reported by the subcommand's parser, so the usage shown is the subcommand's
        args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.endpoint_source = "--otlp-endpoint"  # what an error about the endpoint names: what the user set
    if getattr(args, "otlp_endpoint", None) is None and getattr(args, "env_endpoint", None):
        args.endpoint_source = getattr(args, "env_endpoint_var", "OTEL_EXPORTER_OTLP_ENDPOINT")
        try:
            args.otlp_endpoint = endpoint_url(args.env_endpoint)
        except argparse.ArgumentTypeError as exc:
            args.subparser.error(f"{args.endpoint_source}: {exc}")  # the usage of the subcommand given
        if args.endpoint_source.endswith("_TRACES_ENDPOINT"):
            args.otlp_endpoint = args.env_endpoint  # a signal's URL is used as is, as configure() uses it
    if getattr(args, "otlp_protocol", None) is None and getattr(args, "env_protocol", None):
        try:
            args.otlp_protocol = _env_protocol(args.env_protocol)
        except argparse.ArgumentTypeError as exc:
            args.subparser.error(f"{getattr(args, 'env_protocol_var', 'OTEL_EXPORTER_OTLP_PROTOCOL')}: {exc}")
    if sys.stdout is None:  # started with stdout closed (`shannon-otel demo >&-`): every print would fail
        print(f"shannon-otel {args.command}: cannot write to stdout: it is closed", file=sys.stderr)
        return 1
    # every command: `check --otlp-endpoint http://dé.example` echoed its URL into a traceback (ascii stdout)
    with _terminate_as_interrupt() as terminated, replacing_unencodable(sys.stdout), warned_once():
        code = _run_command(args)
    if terminated and code == 130:
        code = 143
    return code


def _run_command(args: argparse.Namespace) -> int:
    try:
        code = _dispatch(args)
    except BrokenPipeError:  # `shannon-otel dashboards | head`: the reader has what it wanted
        discard(sys.stdout)
        return 0
    except KeyboardInterrupt:  # Ctrl-C where no subcommand handles it (`check` waiting on a silent endpoint)
        print(f"shannon-otel {args.command}: interrupted", file=sys.stderr)
        return 130
    try:
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe is an "Exception ignored"
    except BrokenPipeError:
        discard(sys.stdout)
        return code
    except OSError as exc:  # `check > /dev/full`: its lines were buffered until now
        lost(sys.stdout, exc)
    error = lost(sys.stdout)
    if error is not None:  # a full disk, an I/O error: the output asked for is incomplete (a closed pipe is not)
        print(f"shannon-otel {args.command}: cannot write to stdout: {error.strerror or error}", file=sys.stderr)
        return code if code == 130 else 1
    return code


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[list[int]]:
    """While a command runs: SIGTERM (`kill`, `docker stop`, `timeout 60 shannon-otel demo ...`) is handled as
    Ctrl-C is, and the list yielded records that it came (``main`` then exits 143, not 130).

    Python's default for SIGTERM is to die at once, running no exit handler: the demo printed no summary and
    the spans it had queued for ``--otlp-endpoint`` were lost uncounted. The handler does what the SIGINT
    handler in force would do (``asyncio.run``'s cancels the main task; otherwise KeyboardInterrupt), so a
    second SIGTERM while the demo flushes leaves at once, as a second Ctrl-C does. Installed only from the
    main thread and over the default disposition: a program calling :func:`main` keeps its own handler.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield received
        return

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        interrupt = signal.getsignal(signal.SIGINT)
        if callable(interrupt):
            interrupt(signal.SIGINT, frame)
            return
        # SIGINT ignored (a background job): the interrupt is raised by us. Not here while an event loop runs on
        # this thread: raised at whatever bytecode the signal found, it could land in a weakref callback or a
        # __del__, where Python prints "Exception ignored" and drops it (the demo then ran on to its --duration,
        # ~1 run in 6 on 3.12). Raised from a loop callback, it leaves the loop as a Ctrl-C in its wait does.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise KeyboardInterrupt from None
        loop.call_soon_threadsafe(_interrupt)

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt() -> NoReturn:
    """A loop callback raising the interrupt SIGTERM stands for (the event loop lets it out of its run)."""
    raise KeyboardInterrupt


def _dispatch(args: argparse.Namespace) -> int:
    run: Callable[[argparse.Namespace], int]
    try:
        if args.command == "demo":
            from ._demo import run
        elif args.command == "check":
            from ._check import run
        else:
            from ._assets import run
    except ValueError as exc:  # the OTel SDK refuses some OTEL_* variables as it is imported
        if not str(exc).startswith("OTEL_"):  # (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=-1): a usage error, not a traceback
            raise
        args.subparser.error(str(exc))
    return run(args)
