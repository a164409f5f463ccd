"""The OTLP exporters' own ``OTEL_EXPORTER_OTLP_*`` variables resolved or checked here before the SDK reads them.

Compression: the SDK's gRPC exporters accept only ``gzip`` and raise ``InvalidCompressionValueException``
out of their constructor for anything else, ``none`` (the specification's other value) and a blank
variable included: ``configure()``, ``opentelemetry-instrument`` with this configurator and
``shannon-otel check``/``demo`` all failed with a traceback. Its HTTP exporters warn "Unsupported
compression type" without naming the variable. Both now get the value resolved here.
Booleans and certificate files the SDK would read silently as something else: a warning naming the variable.
Headers: the SDK's parser logs a malformed entry of ``OTEL_EXPORTER_OTLP[_<signal>]_HEADERS`` whole, and the
usual malformed entry is a token pasted without its name (``Bearer <token>``): its text is masked. An entry that
percent-decodes to what no header can carry is warned about once, naming the variable and the header.
Blank variables: the SDK's gRPC exporters read them as values (see :func:`unread_by_grpc`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

_log = logging.getLogger("shannon_otel")
COMPRESSIONS = ("gzip", "deflate", "none")


def compression(kind: str) -> str:
    """``OTEL_EXPORTER_OTLP_<kind>_COMPRESSION``, else ``OTEL_EXPORTER_OTLP_COMPRESSION``, read
    case-insensitively (the specification's rule for enum values): ``gzip``, ``deflate`` or ``none``.
    Unset or blank: ``none``. Any other value is ignored with a warning naming the variable, as if unset
    (the specification's rule; the SDK's HTTP exporters used ``none``): the general variable then applies,
    else ``none``. Before, ``..._TRACES_COMPRESSION=brotli`` turned off ``OTEL_EXPORTER_OTLP_COMPRESSION=gzip``."""
    for name in (f"OTEL_EXPORTER_OTLP_{kind}_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        value = os.environ.get(name, "").strip().lower()
        if not value:
            continue
        if value not in COMPRESSIONS:
            _log.warning("%s=%r is not one of %s; ignored", name, os.environ[name], ", ".join(COMPRESSIONS))
            continue
        return value
    return "none"


def warn_odd_variables(kinds: tuple[str, ...], grpc_kinds: tuple[str, ...] = ()) -> None:
    """Log a warning naming each variable the SDK would read silently as something the user did not mean.

    Booleans (``OTEL_SDK_DISABLED``, ``OTEL_EXPORTER_OTLP[_<kind>]_INSECURE``): the specification makes
    only ``true`` (any case) true and asks for a warning when a value other than ``false`` or blank is
    read as false; the SDK warns about none, so ``OTEL_SDK_DISABLED=1`` left the SDK on without a word.
    Files (``OTEL_EXPORTER_OTLP[_<kind>]_CERTIFICATE``, ``..._CLIENT_CERTIFICATE``, ``..._CLIENT_KEY``) of the
    OTLP exporters of ``kinds`` (``TRACES``, ``METRICS``, ``LOGS``) that do not exist: the gRPC exporter logs a
    traceback naming only the file and falls back to the system's CAs, the HTTP one fails every export. A
    directory is warned about too, but a ``..._CERTIFICATE`` one only for the ``grpc_kinds`` (an OTLP/gRPC
    exporter among theirs): the HTTP exporter takes a directory of CA certificates (``/etc/ssl/certs``) and
    verified with it, while the warning said its connections would fail."""
    insecure = (f"OTEL_EXPORTER_OTLP_{kind}_INSECURE" for kind in kinds)
    for name in ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_INSECURE", *insecure):
        value = os.environ.get(name, "").strip().lower()
        if value not in ("", "true", "false"):
            _log.warning("%s=%r is not true or false; read as false (only 'true' is true)", name, os.environ[name])
    _warn_unsendable_headers(kinds, grpc_kinds)
    checked: set[str] = set()
    for kind in kinds:
        for what in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"):
            for name in (f"OTEL_EXPORTER_OTLP_{kind}_{what}", f"OTEL_EXPORTER_OTLP_{what}"):
                path = os.environ.get(name, "").strip()
                if path:  # the exporters read the signal's variable first
                    if not (what == "CERTIFICATE" and kind not in grpc_kinds and os.path.isdir(path)):
                        if name not in checked and not os.path.isfile(path):
                            _log.warning("%s=%r: %s; TLS connections of the OTLP exporter will fail or not verify "
                                         "as meant", name, path, "a directory, not a file" if os.path.isdir(path)
                                         else "no such file")
                        checked.add(name)
                    break


# An entry the SDK's header parser percent-decodes: W3C baggage's key=value; one that is not, it takes as written if
# it is the same with spaces in the value (printable ASCII only), and drops otherwise
_KEY = r"[ \t]*[\x21\x23-\x27\x2a\x2b\x2d\x2e\x30-\x39\x41-\x5a\x5e-\x7a\x7c\x7e]+[ \t]*="
_ENCODED_ENTRY = re.compile(_KEY + r"[ \t]*[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*[ \t]*")
_AS_WRITTEN_ENTRY = re.compile(_KEY + r"[ \t]*[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*[ \t]*")
_GRPC_UNSENDABLE = re.compile(r"[^\x20-\x7e]")  # gRPC metadata values: printable ASCII
_HTTP_UNSENDABLE = re.compile(r"[\r\n]|[^\x00-\xff]")  # requests refuses line breaks; http.client sends Latin-1


def _warn_unsendable_headers(kinds: tuple[str, ...], grpc_kinds: tuple[str, ...]) -> None:
    """Warn once per headers variable the OTLP exporters of ``kinds`` read (the signal's, else the general one)
    holding an entry that percent-decodes to what the exporter cannot send: a malformed escape (``%E0%A4%A``
    decodes to U+FFFD), an encoded line break, non-ASCII for gRPC. Every export then failed, counted as dropped,
    the SDK logging per export "Invalid metadata" (gRPC) or "'latin-1' codec can't encode character" naming
    no variable, and for a line break quoting the header's value, a credential as often as not. The warning
    names the header, never its value."""
    strictest: dict[str, bool] = {}  # variable -> read by a gRPC exporter
    for kind in kinds:
        for name in (f"OTEL_EXPORTER_OTLP_{kind}_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
            if os.environ.get(name, "").strip():
                strictest[name] = strictest.get(name, False) or kind in grpc_kinds
                break
    for name, grpc in strictest.items():
        bad = _GRPC_UNSENDABLE if grpc else _HTTP_UNSENDABLE
        unsendable: dict[str, bool] = {}  # header -> whether it is; a later entry of a header replaces it, as sent
        for entry in re.split(r"[ \t]*,[ \t]*", os.environ[name]):
            key, _, value = entry.partition("=")
            if _ENCODED_ENTRY.fullmatch(entry.strip()):
                key, value = unquote(key).strip().lower(), unquote(value).strip()
                unsendable[key] = bool(bad.search(key) or bad.search(value))
            elif _AS_WRITTEN_ENTRY.fullmatch(entry.strip()):
                unsendable[key.strip().lower()] = False
        for key, unsent in unsendable.items():
            if unsent:
                _log.warning("%s: header %s percent-decodes to characters the OTLP/%s exporter cannot send (a "
                             "malformed %%-escape, a line break%s); every export will fail (value not shown: it may "
                             "hold a credential)", name, repr(key) if not bad.search(key) else "(name not shown)",
                             "gRPC" if grpc else "HTTP", ", non-ASCII" if grpc else "")
                break


class _HeaderTextMasked(logging.Filter):
    """Replaces the entry the SDK's header parser quotes ("Header format invalid! ...: <entry>")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and "Header format invalid" in str(record.msg):
            record.args = ("(the entry of OTEL_EXPORTER_OTLP*_HEADERS is not shown: it may hold a credential; "
                           "each entry is name=value, comma-separated)",)
        return True


_MASK = _HeaderTextMasked()
_masking = 0
_masking_lock = threading.Lock()


@contextmanager
def header_text_masked() -> Iterator[None]:
    """While an OTLP exporter is built (it parses the header variables then): the parser's warnings quote no
    header text. Nested and concurrent uses share one filter on the parser's logger."""
    global _masking
    logger = logging.getLogger("opentelemetry.util.re")
    with _masking_lock:
        _masking += 1
        if _masking == 1:
            logger.addFilter(_MASK)
    try:
        yield
    finally:
        with _masking_lock:
            _masking -= 1
            if _masking == 0:
                logger.removeFilter(_MASK)


_SETTINGS = ("ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "INSECURE", "CERTIFICATE", "CLIENT_KEY",
             "CLIENT_CERTIFICATE")
_hiding = threading.Lock()


def _unparsable(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return True
    return False


@contextmanager
def unread_by_grpc(kind: str) -> Iterator[None]:
    """While an OTLP/gRPC exporter of ``kind`` is built (the only time it reads the variables): its blank
    ``OTEL_EXPORTER_OTLP[_<kind>]_*`` variables, and an unparsable ``..._<kind>_TIMEOUT`` (which ``configure()``
    has ignored with a warning and replaced by the timeout it passes), are out of the environment.

    The specification reads a blank variable as unset, as the SDK's HTTP exporters do; its gRPC ones read a
    blank ``..._<kind>_INSECURE`` (or ``OTEL_EXPORTER_OTLP_INSECURE``) as false, TLS to a plaintext collector,
    over ``OTEL_EXPORTER_OTLP_INSECURE=true`` or an ``http://`` endpoint; a blank ``..._<kind>_CERTIFICATE`` as
    "the system's CAs" over ``OTEL_EXPORTER_OTLP_CERTIFICATE``; and they parse ``..._<kind>_TIMEOUT`` even when
    given a timeout: a blank or malformed one raised a bare "could not convert string to float" out of
    ``configure()``. The variables are put back as they were; builds that hide some are serialised."""
    names = [name for what in _SETTINGS for name in (f"OTEL_EXPORTER_OTLP_{kind}_{what}", f"OTEL_EXPORTER_OTLP_{what}")]
    hidden = {
        name: value for name in names if (value := os.environ.get(name)) is not None and (
            not value.strip() or (name == f"OTEL_EXPORTER_OTLP_{kind}_TIMEOUT" and _unparsable(value)))
    }
    if not hidden:
        yield
        return
    with _hiding:
        for name in hidden:
            os.environ.pop(name, None)
        try:
            yield
        finally:
            os.environ.update(hidden)
