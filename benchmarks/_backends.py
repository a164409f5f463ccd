"""Local stand-ins for a telemetry backend, all on 127.0.0.1 and stopped by their owner.

- :func:`down_endpoint`: a port nothing listens on (connection refused);
- :class:`BlackHole`: accepts connections and never reads or answers;
- :class:`OtlpSink`: an OTLP/HTTP receiver that counts the spans it is sent and answers 200.

Used by the reliability benchmark and the delivery tests.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def down_endpoint() -> str:
    """``http://127.0.0.1:<port>`` for a port that was free a moment ago and has no listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class BlackHole:
    """A listener that accepts every connection and never answers (holds them until closed)."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        except OSError:
            pass
        self._server.close()
        self._thread.join(2.0)  # accept() fails once the listener is closed: nothing is added after this
        for conn in self._held:
            conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OtlpSink:
    """An OTLP/HTTP endpoint: counts spans posted to any path ending in ``/v1/traces`` (or
    ``paths``), answers 200 to everything (metrics and logs are accepted and discarded)."""

    def __init__(self, port: int = 0) -> None:
        """``port`` 0 picks a free one; pass a former sink's port to restart it there."""
        self.spans = 0
        self.paths: list[str] = []
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    sink.paths.append(self.path)
                    if "traces" in self.path:
                        request = ExportTraceServiceRequest.FromString(body)
                        sink.spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.close()
