"""``shannon-otel check``: does the OTLP endpoint accept a span, and does Prometheus answer queries?

Each check is bounded by ``--timeout`` (all of its requests and retries together) and prints one
line; the exit code is 0 only when every target checked answered. The SDK exporter's own log records
are captured, not printed: the check's line says what went wrong, in the server's or exporter's words shown
as one line of visible characters (``_shown.visible``: a reason phrase or an error body holding ``\x1b[31m``
or ``\r\n`` reached the terminal raw).
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from .._delivery import bounded
from ._pipe import write_line
from ._secrets import safe_url, scrub
from ._shown import visible

if TYPE_CHECKING:
    from .._otlp_grpc import GrpcSpans
    from .._otlp_http import HttpSpans

# The specification's default OTLP endpoint per protocol: a collector serves gRPC on 4317 and HTTP on 4318, so
# `--otlp-protocol http/protobuf` alone checked the gRPC port over HTTP and failed against a healthy collector.
DEFAULT_OTLP = {"grpc": "http://127.0.0.1:4317", "http": "http://127.0.0.1:4318"}
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

        self.built = 0  # the records logged while the exporter was built, before its export

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def reason(self) -> str | None:
        """The first error the export logged, else its first warning: later lines only say it gave up."""
        first = sorted(self.records[self.built:], key=lambda r: r.levelno < logging.ERROR)
        return first[0].getMessage().splitlines()[0] if first else None

    def building(self) -> list[str]:
        """What building the exporter logged (a malformed header variable, a certificate file it could not
        read), one line each: the gRPC exporter logs a missing file with its traceback."""
        return [record.getMessage().splitlines()[0] for record in self.records[:self.built]]


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception under ``exc``: requests wraps urllib3's, which wraps the socket's."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _recording_session() -> Any:
    """A requests session for the OTLP/HTTP exporter that keeps its first failure in ``.error``.

    The exporter only logs a generic "timeout, max retries or shutdown" line once its retries run
    out (and nothing else when the first backoff exceeds the timeout), so the cause is taken here.
    """
    import requests

    from .._otlp_http import OtlpSession  # the OTLP certificate variables win over REQUESTS_CA_BUNDLE

    class Recording(OtlpSession):
        error: str | None = None

        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            try:
                response = super().request(*args, **kwargs)
            except Exception as exc:
                if self.error is None:
                    cause = _root_cause(exc)
                    self.error = f"{type(cause).__name__}: {cause}"
                    if isinstance(cause, http.client.BadStatusLine):  # its text is the other protocol's bytes
                        self.error = ("BadStatusLine: the endpoint answered in another protocol than HTTP/1.1 "
                                      "(a gRPC port? OTLP/HTTP is usually on 4318, or use --otlp-protocol grpc)")
                raise
            if response.status_code >= 400 and self.error is None:
                self.error = f"HTTP {response.status_code} from {response.url}: {response.reason}"
            return response

    return Recording()


def _exporter(
    endpoint: str, protocol: str, timeout_s: float, session: Any, source: str = "--otlp-endpoint",
) -> HttpSpans | GrpcSpans:
    # configure()'s exporters: they also read a partial success and (HTTP) a redirect, both of which the
    # SDK's count as delivered ("ok" was printed for a backend that kept nothing)
    if protocol == "http":
        from .._exporters import _check_http_url, _signal_url
        from .._otlp_http import HttpSpans

        if source.endswith(_SIGNAL_VARIABLE):  # the traces URL itself, used as is (the specification's rule)
            _check_http_url(source, endpoint)
            return HttpSpans(endpoint=endpoint, timeout=timeout_s, session=session)
        # as configure() reads a base URL: one ending in /v1/traces is refused, not posted to /v1/traces/v1/traces
        return HttpSpans(endpoint=_signal_url(source, endpoint, "/v1/traces"), timeout=timeout_s,
                         session=session)
    from .._exporters import _check_target
    from .._otlp_grpc import GrpcSpans

    # as configure() refuses it: gRPC dialled user:password@ as part of the host ("Misformatted domain name")
    _check_target(source, endpoint, http=False)
    return GrpcSpans(endpoint=endpoint, timeout=timeout_s)


_SIGNAL_VARIABLE = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


def _test_span() -> ReadableSpan:
    """The span sent: made directly, not by a TracerProvider, which under ``OTEL_SDK_DISABLED=true`` hands
    out a no-op tracer (the check died on an AssertionError: checking the endpoint is what was asked)."""
    ids = RandomIdGenerator()
    now = time.time_ns()
    context = SpanContext(ids.generate_trace_id(), ids.generate_span_id(), is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(
        "shannon-otel check", context, resource=Resource.create({"service.name": "shannon-otel-check"}),
        instrumentation_scope=InstrumentationScope("shannon_otel.cli"), start_time=now, end_time=now,
    )


def check_otlp(endpoint: str, protocol: str, timeout_s: float, source: str = "--otlp-endpoint") -> tuple[bool, str]:
    """Export one span named ``shannon-otel check`` (service ``shannon-otel-check``); ``source`` is where the
    endpoint came from (the flag, ``OTEL_EXPORTER_OTLP_ENDPOINT``, a base URL over HTTP, or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, the traces URL itself), named by an error about it.

    The failure reason is the underlying error (OTLP/HTTP: the first failed request's exception or
    status; gRPC: the exporter's first error line), never its closing "giving up" line.
    """
    span = _test_span()
    session = _recording_session() if protocol == "http" else None
    loggers = [logging.getLogger("opentelemetry"), logging.getLogger("shannon_otel.export")]
    captured, propagate = _Captured(), [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(captured)
        logger.propagate = False
    started = time.monotonic()
    try:
        # built while its records are captured: the gRPC exporter logs a traceback for a missing certificate file
        try:
            exporter = _exporter(endpoint, protocol, timeout_s, session, source)
        except ValueError as exc:  # a variable the exporter cannot use (a certificate directory), named
            return False, f"not checked: {exc}"
        finally:
            captured.built = len(captured.records)
        try:
            result = exporter.export([span])
        finally:
            exporter.shutdown()
    finally:
        for logger, was in zip(loggers, propagate, strict=True):
            logger.removeHandler(captured)
            logger.propagate = was
        for line in captured.building():
            print(visible(scrub(line)), file=sys.stderr)
    took = (time.monotonic() - started) * 1000
    rejected, undelivered = exporter.rejections.take()
    if rejected or undelivered:  # the exporter's warning says which (a partial success, a redirect)
        # Its own words end at its last "; " (what the demo counts): the server's, quoted before it, may hold one
        # ("span too large; limit 4 MB" read "(partial success: 'span too large", cut and its quote left open).
        why = (captured.reason() or "the backend rejected the test span").rsplit("; ", 1)[0]
        return False, f"not accepted after {took:.0f} ms: {why}"
    if result is SpanExportResult.SUCCESS:
        return True, f"accepted a test span in {took:.0f} ms (service shannon-otel-check)"
    why = (session.error if session is not None else None) or captured.reason() or "the exporter reported a failure"
    return False, f"export failed after {took:.0f} ms: {why}"


_NOT_THE_API = "answered, but not with Prometheus' JSON query API: is this Prometheus?"


def _get_json(opener: urllib.request.OpenerDirector, url: str, timeout_s: float) -> Any:
    with opener.open(url, timeout=timeout_s) as response:
        return json.loads(response.read().decode())


def check_prometheus(
    url: str, timeout_s: float, opener: urllib.request.OpenerDirector | None = None,
) -> tuple[bool, str]:
    """Query ``up`` and count the shannon-otel series Prometheus has, both within ``timeout_s``, with ``opener``
    (None: one built here, inside the time the caller gives, see :func:`run`)."""
    opener = opener or urllib.request.build_opener()
    query = urllib.parse.urlencode({"query": 'count({__name__=~"shannon_.*"})'})
    deadline = time.monotonic() + timeout_s  # one bound for both queries, as --timeout promises
    try:
        up = _get_json(opener, f"{url}/api/v1/query?{urllib.parse.urlencode({'query': 'up'})}", timeout_s)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        ours = _get_json(opener, f"{url}/api/v1/query?{query}", left)
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} from {exc.url}: is this Prometheus?"
    except (json.JSONDecodeError, UnicodeDecodeError):  # before ValueError, their base: the server answered,
        return False, _NOT_THE_API  # not with the query API's JSON (a body not in UTF-8 was "unreachable")
    except http.client.HTTPException as exc:  # not an OSError: a gRPC port answering HTTP/1.1 ended in a traceback
        return False, f"answered in another protocol than HTTP/1.1 ({type(exc).__name__}): is this Prometheus?"
    except UnicodeEncodeError as exc:  # a ValueError: "unreachable: 'ascii' codec can't encode...", never sent
        unsent = exc.object[exc.start:exc.end]
        return False, f"not sent: the URL has characters HTTP cannot send unencoded ({unsent!r}); percent-encode them"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"unreachable: {reason}"
    for answer in (up, ours):
        if isinstance(answer, dict) and answer.get("status") == "error":
            return False, f"query failed: {answer.get('error', answer)}"
    # JSON of another shape (`[]`, `{"status": "success"}`) raised in the check's thread: "no complete answer
    # within 3 s" was printed for a server that had answered at once, and a stray error line on stderr
    try:
        targets = up["data"]["result"]
        healthy = sum(1 for r in targets if r["value"][1] == "1")
        result = ours["data"]["result"]
        series = int(float(result[0]["value"][1])) if result else 0
    except (LookupError, TypeError, ValueError, OverflowError):
        return False, _NOT_THE_API
    hint = "" if series else " (none yet: run `shannon-otel demo --otlp-endpoint <collector>` or scrape a demo)"
    return True, f"answering: {healthy}/{len(targets)} scrape targets up, {series} shannon-otel series{hint}"


def safe_text(text: str, url: str) -> str:
    """An error text that may quote ``url``: quoted without its credentials."""
    return text.replace(url, safe_url(url)) if url != safe_url(url) else text


_GRACE_S = 0.5  # beyond --timeout, for a check that gives up on time to say why itself


def _within(check: Callable[[float], tuple[bool, str]], timeout_s: float) -> tuple[bool, str]:
    """``check(timeout_s)``, waited for ``timeout_s`` (and a little grace) at most. The HTTP clients time each
    read, not the whole answer: a server answering a byte at a time kept ``check --timeout 2`` for a minute.
    A check still running is left to its daemon thread."""
    finished, result = bounded("check", lambda: check(timeout_s), timeout_s + _GRACE_S)
    if not finished or result is None:
        return False, f"no complete answer within {timeout_s:g} s (the server answers too slowly, or not at all)"
    return result


def run(args: argparse.Namespace) -> int:
    results: list[bool] = []
    if not args.skip_otlp:
        protocol = args.otlp_protocol or "grpc"
        endpoint = args.otlp_endpoint or DEFAULT_OTLP[protocol]
        # Imported before --timeout starts: loading grpc takes ~0.3 s, over 1 s on a busy machine, and
        # `check --timeout 1` then gave up before dialling, blaming the server ("answers too slowly, or not at all").
        importlib.import_module(f"shannon_otel._otlp_{'http' if protocol == 'http' else 'grpc'}")
        source = args.endpoint_source if args.otlp_endpoint else "--otlp-endpoint"
        ok, text = _within(lambda timeout_s: check_otlp(endpoint, protocol, timeout_s, source), args.timeout)
        line = f"{'ok  ' if ok else 'FAIL'} OTLP {protocol} {safe_url(endpoint)}: {safe_text(text, endpoint)}"
        write_line(sys.stdout, visible(scrub(line, endpoint)))
        results.append(ok)
    if not args.skip_prometheus:
        url = args.prometheus or DEFAULT_PROMETHEUS
        # Built before --timeout starts, as the exporter's modules are imported above: Python 3.13's opener loads
        # the system's CA certificates as it is built (its HTTPS handler), ~1 s on a busy machine, and `check
        # --timeout 1` against a port refusing connections blamed the server ("no complete answer within 1 s").
        opener = urllib.request.build_opener()
        ok, text = _within(lambda timeout_s: check_prometheus(url, timeout_s, opener), args.timeout)
        line = f"{'ok  ' if ok else 'FAIL'} Prometheus {safe_url(url)}: {safe_text(text, url)}"
        write_line(sys.stdout, visible(scrub(line, url)))
        results.append(ok)
    return 0 if all(results) else 1
