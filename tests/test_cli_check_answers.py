"""`check` against an HTTP server that answers at once, but not as Prometheus' query API does: the line says
so, never "unreachable" or "no complete answer" (both untrue of a server that answered)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shannon_otel.cli import main

NOT_THE_API = "answered, but not with Prometheus' JSON query API: is this Prometheus?"


class _Canned(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[type[_Canned]]:
    """A handler class whose ``body`` every GET gets; its server's URL in ``handler.url``."""
    handler = type("Handler", (_Canned,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("body", [
    b"[]", b"null", b'{"status": "success"}', b'{"status": "success", "data": {"result": "none"}}',
    b'{"status": "success", "data": {"result": [{"value": [0, "many"]}]}}',
], ids=["a list", "null", "no data", "result not a list", "value not a number"])
def test_json_of_another_shape_is_not_the_query_api(
    body: bytes, answering: type[_Canned], capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: the check's thread raised (AttributeError, KeyError, ...): "no complete answer within 10 s (the
    server answers too slowly, or not at all)", and "telemetry check failed: ..." on stderr."""
    answering.body = body
    url = answering.url  # type: ignore[attr-defined]
    code = main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "10"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == f"FAIL Prometheus {url}: {NOT_THE_API}\n"
    assert captured.err == ""


def test_a_body_not_in_utf8_is_not_the_query_api(answering: type[_Canned], capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the UnicodeDecodeError (a ValueError) was taken for a connection error: "unreachable: invalid
    start byte", of a server that had answered."""
    answering.body = b"\xff\xfe{}"
    url = answering.url  # type: ignore[attr-defined]
    code = main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "10"])
    assert code == 1
    assert capsys.readouterr().out == f"FAIL Prometheus {url}: {NOT_THE_API}\n"


def test_a_query_the_api_refuses_is_named(answering: type[_Canned], capsys: pytest.CaptureFixture[str]) -> None:
    """An error status in a 200 answer still reports the API's error text (what the line said before)."""
    answering.body = b'{"status": "error", "error": "query timed out"}'
    url = answering.url  # type: ignore[attr-defined]
    assert main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "10"]) == 1
    assert capsys.readouterr().out == f"FAIL Prometheus {url}: query failed: query timed out\n"


def test_a_url_http_cannot_send_is_not_called_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    """urllib cannot put a non-ASCII path in its request line: the UnicodeEncodeError (a ValueError) was shown
    as "unreachable: 'ascii' codec can't encode character...", of a request never sent."""
    with socket.socket() as sock:  # no server: what the line says must not depend on one
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/d\xe9"
    assert main(["check", "--skip-otlp", "--prometheus", url, "--timeout", "10"]) == 1
    assert capsys.readouterr().out == (f"FAIL Prometheus {url}: not sent: the URL has characters HTTP cannot send "
                                       "unencoded ('\xe9'); percent-encode them\n")
