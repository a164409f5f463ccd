"""What the CLI never prints: OTLP header values and the credentials of a URL.

``OTEL_EXPORTER_OTLP_HEADERS`` (and its per-signal variants) usually carry an API key or a bearer
token; the exporters read them from the environment. Any line the CLI prints that mentions an
endpoint, or an exporter's error, goes through :func:`scrub` first.
"""

from __future__ import annotations

import logging
import os
import urllib.parse

HEADER_VARIABLES = tuple(
    f"OTEL_EXPORTER_OTLP{signal}_HEADERS" for signal in ("", "_TRACES", "_METRICS", "_LOGS")
)
MASK = "***"


def _secrets(urls: tuple[str, ...] = ()) -> list[str]:
    """Every header value the environment holds and the password of each of ``urls`` (raw and URL-decoded)."""
    found: list[str] = []
    for url in urls:
        try:
            password = urllib.parse.urlsplit(url).password
        except ValueError:
            password = None
        if password:
            found.extend({password, urllib.parse.unquote(password)})
    for name in HEADER_VARIABLES:
        for pair in os.environ.get(name, "").split(","):
            _, sep, value = pair.partition("=")
            value = value.strip() if sep else pair.strip()  # no "=": a malformed pair, often a bare token
            if value:
                found.extend({value, urllib.parse.unquote(value)})
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)  # longest first: no partial leak


def safe_url(url: str) -> str:
    """``url`` without its userinfo password and query string (they may hold credentials)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, MASK if parts.query else "", ""))


def scrub(text: str, *urls: str) -> str:
    """``text`` with every OTLP header value from the environment, and the password of each of ``urls``,
    replaced by ``***``. An exporter's error may quote the endpoint's password where no URL shows: the
    gRPC exporter names its target ``user:password@host:port``, scheme dropped."""
    for secret in _secrets(urls):
        text = text.replace(secret, MASK)
    return text


class _Scrubbed(logging.Filter):
    """Passes every record, its message scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# The SDK's header parser logs a malformed OTLP header variable's whole text, a token more often than not
# ("Header format invalid! ...: Bearer <token>"), printed on stderr by the CLI where nothing else handles it.
_QUOTING_LOGGERS = ("opentelemetry.util.re",)


def scrub_logs() -> None:
    """Scrub the records of the SDK loggers that quote header text (once per process; main() calls it)."""
    for name in _QUOTING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Scrubbed) for f in logger.filters):
            logger.addFilter(_Scrubbed())
