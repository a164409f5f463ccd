"""A server's words cannot change what the terminal shows (CWE-117, CWE-150).

``shannon-otel check`` quotes what a server answered (a Prometheus error, a reason phrase, an OTLP partial
success's message), and the demo's summary (:class:`Out`) prints exporters' errors. Before, a server answering
"\\x1b[31m" recoloured the terminal, "\\r\\nFAKE" overwrote the line or forged one of the command's own, and in
rich mode "[bold red]x[/]" in a table cell or a heading was taken as markup (a "[link=...]" as a hyperlink). Now
the CLI shows such characters as escapes and markup as its characters; the library's own log messages quote the
server's text (``%r``): one printable line.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from rich.console import Console

from shannon_otel._delivery import Rejections, bounded
from shannon_otel.cli import main
from shannon_otel.cli._check import _test_span
from shannon_otel.cli._shown import visible
from shannon_otel.cli._summary import Out

MARKUP = "[bold red]x[/]"
HOSTILE = f"\x1b[31m{MARKUP}\r\nFAKE"
SHOWN = f"\\x1b[31m{MARKUP}\\r\\nFAKE"  # what the CLI prints of it


Answer = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], str]]:
    """``serve(answer)``: the URL of a server on 127.0.0.1 answering every GET and POST with ``answer``."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer(self)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _answer(status: int, body: bytes, reason: str | None = None) -> Answer:
    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status, reason)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return write


def _redirect(location: str) -> Answer:
    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return write


def _partial_success(message: str) -> bytes:
    answer = trace_pb.ExportTraceServiceResponse(partial_success=trace_pb.ExportTracePartialSuccess(
        rejected_spans=1, error_message=message))
    return bytes(answer.SerializeToString())


def _assert_shown(text: str, times: int = 1) -> None:
    assert "\x1b" not in text and "\r" not in text
    assert text.count(SHOWN) == times, text
    assert "\nFAKE" not in text


def test_check_shows_a_prometheus_error_text_as_visible_characters(
    serve: Callable[[Answer], str], capsys: pytest.CaptureFixture[str],
) -> None:
    url = serve(_answer(200, json.dumps({"status": "error", "error": HOSTILE}).encode()))
    assert main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "10"]) == 1
    out = capsys.readouterr().out
    assert out == f"FAIL Prometheus {url}: query failed: {SHOWN}\n"


@pytest.mark.parametrize("case", ["reason phrase", "partial success"])
def test_check_shows_an_otlp_servers_words_as_visible_characters(
    case: str, serve: Callable[[Answer], str], capsys: pytest.CaptureFixture[str],
) -> None:
    if case == "reason phrase":  # a status line ends at CR LF: the reason holds the rest
        url = serve(_answer(400, b"", reason="\x1b[31m[bold red]x[/]\x85\x9bFAKE"))
        shown = "\\x1b[31m[bold red]x[/]\\x85\\x9bFAKE"
    else:
        url = serve(_answer(200, _partial_success(HOSTILE)))
        shown = repr(HOSTILE)  # the library's warning quotes it
    code = main(["check", "--skip-prometheus", "--otlp-protocol", "http", "--otlp-endpoint", url, "--timeout", "10"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.startswith(f"FAIL OTLP http {url}: ") and captured.out.count("\n") == 1
    assert shown in captured.out, captured.out
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\r" not in text and "\x85" not in text and "\x9b" not in text


@pytest.mark.parametrize(("answer", "quoted"), [
    (_answer(200, _partial_success("span too large; limit 4 MB")), "(partial success: 'span too large; limit 4 MB')"),
    (_redirect("https://x.example/v1/traces;a=1; b"),
     "(redirect to 'https://x.example/v1/traces;a=1; b'), which the OTLP/HTTP exporter does not follow: give the "
     "final URL as the endpoint"),
])
def test_check_quotes_a_servers_words_holding_a_semicolon_whole(
    answer: Answer, quoted: str, serve: Callable[[Answer], str], capsys: pytest.CaptureFixture[str],
) -> None:
    """Bug: the check cut the library's warning at its first "; " to drop what the demo counts, and the server's
    words quoted in it were cut there: "(partial success: 'span too large", the quote left open. Now at its last."""
    url = serve(answer)
    code = main(["check", "--skip-prometheus", "--otlp-protocol", "http", "--otlp-endpoint", url, "--timeout", "10"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.endswith(f"{quoted}\n"), out

def test_rich_output_shows_markup_and_control_characters_of_text_literally() -> None:
    file = io.StringIO()
    out = Out(Console(file=file, width=200, color_system=None, force_terminal=False, legacy_windows=False))
    out.heading(HOSTILE)
    out.table(["name", HOSTILE], [[HOSTILE, "1"]], footer=[HOSTILE, "2"])
    out.line(HOSTILE)
    _assert_shown(file.getvalue(), times=5)


def test_rich_output_does_not_follow_a_link_in_a_cell() -> None:
    file = io.StringIO()
    out = Out(Console(file=file, width=200, color_system="truecolor", force_terminal=True, legacy_windows=False))
    out.table(["name", "n"], [["[link=https://evil.example]click[/link]", "1"]])
    out.heading("[link=https://evil.example]here[/link]")
    text = file.getvalue()
    assert "\x1b]8;" not in text  # no OSC 8 hyperlink was written
    assert re.sub(r"\x1b\[[0-9;]*m", "", text).count("[link=https://evil.example]") == 2  # its own colours aside


def test_plain_output_keeps_one_row_per_line() -> None:
    stream = io.StringIO()
    out = Out(stream=stream)
    out.heading(HOSTILE)
    out.table(["name", "n"], [[HOSTILE, "1"], ["b", "22"]])
    out.line(HOSTILE)
    text = stream.getvalue()
    _assert_shown(text, times=3)
    rows = text.splitlines()[2:6]  # the header, its rule and the two rows: one width, aligned
    assert len({len(row) for row in rows}) == 1, rows


@pytest.mark.parametrize("character", [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xa0)), "\u061c",
                                       "\u200e", "\u200f", "\u2028", "\u2029", *map(chr, range(0x202a, 0x202f)),
                                       *map(chr, range(0x2066, 0x206a))])
def test_every_control_character_is_shown_as_its_escape(character: str) -> None:
    assert visible(f"a{character}b") == f"a{repr(character)[1:-1]}b"
    assert visible(f"a{character}b").isprintable()


def test_printable_text_is_unchanged() -> None:
    text = "caf\xe9 \u2588\u2588 [x] \\n 10 ms \u4e2d"
    assert visible(text) == text


# --- the library's log messages ---------------------------------------------------------------------


def _one_line(caplog: pytest.LogCaptureFixture, start: str) -> str:
    found = [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]
    assert len(found) == 1, caplog.text
    assert found[0].isprintable(), found[0]  # no newline, CR, ESC: one line as it is
    return found[0]


def test_a_partial_success_message_is_logged_as_one_line(
    serve: Callable[[Answer], str], caplog: pytest.LogCaptureFixture,
) -> None:
    from shannon_otel._otlp_http import HttpSpans

    url = serve(_answer(200, _partial_success("quota\nFAKE LOG LINE\x1b[31m")))
    exporter = HttpSpans(endpoint=f"{url}/v1/traces", timeout=10.0)
    try:
        with caplog.at_level(logging.WARNING, "shannon_otel.export"):
            exporter.export([_test_span()])
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
    message = _one_line(caplog, "the OTLP backend rejected 1")
    assert "(partial success: 'quota\\nFAKE LOG LINE\\x1b[31m')" in message


def test_a_redirect_location_is_logged_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "shannon_otel.export"):
        Rejections("spans").not_delivered(302, "https://x.example/\x1b[2J\u2028FAKE")
    message = _one_line(caplog, "the OTLP endpoint answered 302")
    assert "(redirect to 'https://x.example/\\x1b[2J\\u2028FAKE')" in message


def test_a_failed_telemetry_call_is_logged_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise RuntimeError("deadline spent\r\nFAKE LOG LINE")

    with caplog.at_level(logging.WARNING, "shannon_otel"):
        assert bounded("flush", fail, 10.0) == (True, None)
    message = _one_line(caplog, "telemetry flush failed")
    assert message == "telemetry flush failed: RuntimeError: 'deadline spent\\r\\nFAKE LOG LINE'"


def test_a_failed_telemetry_call_without_a_message_is_logged_as_its_type(caplog: pytest.LogCaptureFixture) -> None:
    """Bug: an error with no text was logged with an empty quote: "telemetry flush failed: TimeoutError: ''"."""
    def fail() -> None:
        raise TimeoutError

    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        assert bounded("flush", fail, 10.0) == (True, None)
    assert _one_line(caplog, "telemetry flush failed") == "telemetry flush failed: TimeoutError"


def test_a_redis_servers_error_text_is_one_line() -> None:
    from redis.exceptions import ResponseError

    from shannon_otel.redis._store import _described

    described = _described(ResponseError("OOM command not allowed\r\nFAKE LOG LINE\x1b[31m"))
    assert described == "redis.exceptions.ResponseError: 'OOM command not allowed\\r\\nFAKE LOG LINE\\x1b[31m'"
