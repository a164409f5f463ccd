"""An OTLP sink on 127.0.0.1 that accepts every export and discards it: ``python -m benchmarks._sink {grpc,http}``.

Runs in its own process (so its CPU and GIL are not the benchmark's), prints its port on the first
line of stdout and serves until stdin closes. The gRPC sink answers the trace and metrics
``Export`` calls with an empty (valid) response without parsing the request; the HTTP sink answers
``POST /v1/traces`` and ``/v1/metrics`` with 200 and an empty protobuf body.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SERVICES = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)


def _serve_grpc() -> tuple[int, Any]:
    import grpc  # type: ignore[import-untyped]  # no stubs shipped with grpcio

    def accept(request: bytes, context: Any) -> bytes:
        return b""  # an empty Export*ServiceResponse

    handlers = [
        grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(
            accept, request_deserializer=None, response_serializer=None,
        )})
        for service in _SERVICES
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return port, server.stop


def _serve_http() -> tuple[int, Any]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], lambda grace: server.shutdown()


class Sink:
    """The sink process: ``with Sink("grpc") as sink: ... sink.endpoint``. Stops it on exit."""

    def __init__(self, protocol: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._sink", protocol], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self.endpoint = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main(argv: list[str]) -> int:
    port, stop = _serve_grpc() if argv[0] == "grpc" else _serve_http()
    print(port, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or dies)
    stop(None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
