"""``OTEL_EXPORTER_OTLP_CERTIFICATE`` over OTLP/HTTP, against a real TLS receiver on 127.0.0.1.

The SDK's HTTP exporter puts the certificate on a requests session (``session.verify``), and requests lets
``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a session's ``verify`` at each request (psf/requests#3829).
With either set (many container images and corporate machines set both) the OTLP certificate was ignored:
every export to a collector signed by a private CA failed ``CERTIFICATE_VERIFY_FAILED``, from ``configure()``
and from ``shannon-otel check`` alike, although the variable named the right CA.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import certifi
import pytest

from shannon_otel import configure
from shannon_otel.cli._check import check_otlp

# A self-signed CA certificate for 127.0.0.1 (valid until 2126) and its key: test data only.
_CERT = """-----BEGIN CERTIFICATE-----
MIIBkDCCATagAwIBAgIUQrpMEPOF0QOD941MAdmQLkNpMcMwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwNjIzMDk0NloYDzIxMjYxMTEy
MjMwOTQ2WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS44TE0aJd/UjD7wtlso3BMVtkXkRMicJ9N3k7E3D7xtz0azKMKWekd
tjaTsCTP3cdhQuZkeyEEJnm4cqoYVWVwo2QwYjAdBgNVHQ4EFgQUZUpgVq8+uxg3
WgdGuykvbg6WPaYwHwYDVR0jBBgwFoAUZUpgVq8+uxg3WgdGuykvbg6WPaYwDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC
IQD57nftxchHLAB2AP4qRH5n2bMdli7T2p6dBAtowHdCtgIgQjHXriQFEDqm09qD
NwMb8fw3jBSoTawo5zk6AIZsXTs=
-----END CERTIFICATE-----
"""
_CERT_SUBJECT_HASH = "88d0bdcb"  # `openssl x509 -hash -noout`: the name requests/OpenSSL look a CA up by in a directory
_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgViQcNMmU0YcLm+QK
W4OmhuEe9mfc8LekIHBcdSF2qPShRANCAAS44TE0aJd/UjD7wtlso3BMVtkXkRMi
cJ9N3k7E3D7xtz0azKMKWekdtjaTsCTP3cdhQuZkeyEEJnm4cqoYVWVw
-----END PRIVATE KEY-----
"""


class _Receiver(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:  # the http.server method name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Receiver.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(https URL, CA file) of an OTLP/HTTP receiver on 127.0.0.1 serving the test certificate."""
    cert, key = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert.write_text(_CERT)
    key.write_text(_KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Receiver.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(params=["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def other_bundle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests' own variable set to a bundle of public CAs, which do not sign the receiver's certificate."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(request.param, certifi.where())


@pytest.mark.usefixtures("other_bundle")
def test_configure_verifies_with_the_otlp_certificate_over_requests_own_variables(
    monkeypatch: pytest.MonkeyPatch, tls_receiver: tuple[str, Path],
) -> None:
    url, ca = tls_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
    handle = configure("svc", exporter="otlp_http", endpoint=url, export_timeout_s=2, set_global=False)
    try:
        handle.tracer_provider.get_tracer("t").start_span("s").end()
        assert handle.force_flush(timeout_s=10)
        assert _Receiver.paths == ["/v1/traces"]
        assert handle.dropped["traces"] == 0
    finally:
        handle.shutdown()


@pytest.mark.usefixtures("other_bundle")
def test_check_verifies_with_the_otlp_certificate_over_requests_own_variables(
    monkeypatch: pytest.MonkeyPatch, tls_receiver: tuple[str, Path],
) -> None:
    url, ca = tls_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))
    ok, message = check_otlp(url, "http", 2.0)
    assert ok, message
    assert _Receiver.paths == ["/v1/traces"]


def test_a_directory_of_ca_certificates_is_taken_over_http_without_a_false_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tls_receiver: tuple[str, Path],
    tmp_path: Path,
) -> None:
    """requests verifies with a directory of CA certificates (``OTEL_EXPORTER_OTLP_CERTIFICATE=/etc/ssl/certs``,
    hashed as ``openssl rehash`` names them), and the spans arrived; the warning said "a directory, not a file;
    TLS connections of the OTLP exporter will fail". (Over gRPC a directory is refused, naming the variable.)"""
    url, ca = tls_receiver
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / f"{_CERT_SUBJECT_HASH}.0").write_text(ca.read_text())
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(directory))
    with caplog.at_level(logging.WARNING, logger="shannon_otel"):
        handle = configure("svc", exporter="otlp_http", endpoint=url, export_timeout_s=2, set_global=False)
    try:
        handle.tracer_provider.get_tracer("t").start_span("s").end()
        assert handle.force_flush(timeout_s=10)
        assert _Receiver.paths == ["/v1/traces"]
    finally:
        handle.shutdown()
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in caplog.text
