"""An HTTP endpoint on 127.0.0.1 for the exporters under test, answering each POST with a function of the request.

A sink subclasses :class:`LocalServer` and passes its own method (``self._post``) to ``super().__init__``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalServer:
    """``post(request)`` answers every POST, on a free port of 127.0.0.1 until :meth:`close`; ``endpoint`` is the URL.

    HTTP/1.1, as the OTLP exporters speak it (one connection kept for their requests); no access log on stderr.
    ``post`` runs on the server's request threads, one per connection."""

    def __init__(self, post: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                post(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # close() does not wait on a connection the exporter keeps open
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port (returns once the serving thread has ended; a hang guard of 10 s)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
