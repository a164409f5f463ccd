"""``configure()``'s OTLP/HTTP exporters: the SDK's, reading each answer's partial success and redirects.

The SDK's exporters treat any 2xx or 3xx answer as delivered: they never read the body, where a
collector says how many items it rejected (``partial_success``), and never follow a redirect (an
``http://`` endpoint behind a proxy that moves it to ``https://``: nothing arrives). A response hook on
the ``requests`` session the SDK accepts (``session=``) notes both in the exporter's
:class:`Rejections`, which the counted wrapper around the exporter turns into drops. Imported only
when an OTLP/HTTP exporter is built.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ._delivery import Rejections
from ._otlp_env import compression, header_text_masked


class OtlpSession(requests.Session):
    """A requests session that keeps its own ``verify``: the SDK's exporter sets it from
    ``OTEL_EXPORTER_OTLP[_<signal>]_CERTIFICATE``, and requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``
    replace a session's ``verify`` at each request (psf/requests#3829). With either set, as many container images
    and corporate machines do, the OTLP certificate was ignored: every export to a collector with a private CA
    failed "CERTIFICATE_VERIFY_FAILED". Without a certificate variable (``verify`` left True) those variables
    still apply, as for any requests call; proxies and the rest of the environment are read as ever."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any,
    ) -> dict[str, Any]:
        if verify is None and self.verify is not True:  # the request's own verify is None: the session's counts
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


def _session(
    kind: str, answer: Any, field: str, rejections: Rejections, session: requests.Session | None = None,
) -> requests.Session | None:
    """``session`` (else a new one) noting in ``rejections`` every answer's ``partial_success.<field>`` and
    every redirect; None when, without ``session``, the user named a session provider
    (``_OTEL_PYTHON_EXPORTER_OTLP_HTTP_<kind>_CREDENTIAL_PROVIDER``, which the SDK loads only without a
    session of ours): theirs is used, partial successes and redirects uncounted."""
    if session is None and os.environ.get(f"_OTEL_PYTHON_EXPORTER_OTLP_HTTP_{kind}_CREDENTIAL_PROVIDER", "").strip():
        return None

    def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if 300 <= response.status_code < 400:  # the SDK's success range includes 3xx, never followed
            rejections.not_delivered(response.status_code, response.headers.get("Location", ""))
            return
        kind_of_body = response.headers.get("Content-Type", "")
        if not 200 <= response.status_code < 300 or not response.content or (
            kind_of_body and "protobuf" not in kind_of_body
        ):
            return
        try:
            partial = answer.FromString(response.content).partial_success
        except Exception:  # raised here it would fail an export the backend took
            return  # not an OTLP answer (a DecodeError): nothing to read, delivered as the SDK says
        rejections.add(int(getattr(partial, field)), str(partial.error_message))

    session = session if session is not None else OtlpSession()
    session.hooks["response"].append(on_response)
    return session


class HttpSpans(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter; ``rejections`` holds the spans the backend rejected
    (``session``: the requests session to send with, the reading added to it)."""

    def __init__(self, endpoint: str | None, timeout: float | None, session: requests.Session | None = None) -> None:
        self.rejections = Rejections("spans")
        with header_text_masked():
            super().__init__(
                endpoint=endpoint, timeout=timeout, compression=Compression(compression("TRACES")), session=_session(
                "TRACES", ExportTraceServiceResponse, "rejected_spans", self.rejections, session))


class HttpMetrics(OTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter; ``rejections`` holds the data points the backend rejected."""

    def __init__(self, endpoint: str | None, timeout: float | None) -> None:
        self.rejections = Rejections("metric points")
        with header_text_masked():
            super().__init__(
                endpoint=endpoint, timeout=timeout, compression=Compression(compression("METRICS")), session=_session(
                "METRICS", ExportMetricsServiceResponse, "rejected_data_points", self.rejections))


class HttpLogs(OTLPLogExporter):
    """The SDK's OTLP/HTTP log exporter; ``rejections`` holds the log records the backend rejected."""

    def __init__(self, endpoint: str | None, timeout: float | None) -> None:
        self.rejections = Rejections("log records")
        with header_text_masked():
            super().__init__(
                endpoint=endpoint, timeout=timeout, compression=Compression(compression("LOGS")), session=_session(
                "LOGS", ExportLogsServiceResponse, "rejected_log_records", self.rejections))
