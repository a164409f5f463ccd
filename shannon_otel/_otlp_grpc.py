"""``configure()``'s OTLP/gRPC exporters: the SDK's, reading each answer's partial success.

The SDK's exporters return success once ``Export`` answers and drop the answer, where a collector
says how many items it rejected (``partial_success``). Here the stub the exporter calls is wrapped so
that count reaches the exporter's :class:`Rejections` (the counted wrapper around the exporter turns
it into drops). The SDK builds its stub in ``_initialize_channel_and_stub`` (again after an
UNAVAILABLE); should a release rename it, rejections simply go uncounted, as before.
Imported only when an OTLP/gRPC exporter is built.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs shipped with grpcio
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from ._delivery import Rejections
from ._otlp_env import compression, header_text_masked, unread_by_grpc

# gRPC itself also speaks deflate (the SDK's exporters refuse to configure it from the variable)
_COMPRESSION = {
    "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate, "none": grpc.Compression.NoCompression,
}


@contextmanager
def _files_named(kind: str) -> Iterator[None]:
    """While a gRPC exporter is built: it reads the files of the certificate variables then, and the SDK lets
    every OSError but a missing file out (``OTEL_EXPORTER_OTLP_CERTIFICATE=/etc/ssl/certs``, a directory: an
    IsADirectoryError out of ``configure()`` naming neither the variable nor the exporter). A ValueError naming
    the variable instead."""
    try:
        yield
    except OSError as exc:
        names = [name for what in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")
                 for name in (f"OTEL_EXPORTER_OTLP_{kind}_{what}", f"OTEL_EXPORTER_OTLP_{what}")
                 if exc.filename is not None and os.environ.get(name) == exc.filename]
        if not names:
            raise
        raise ValueError(f"{names[0]}={exc.filename!r}: the OTLP/gRPC exporter cannot read it ({exc.strerror}); "
                         "it must name a PEM file") from exc


class _Answers:
    """The exporter's stub: ``Export`` as the SDK calls it, each answer's rejected count noted."""

    def __init__(self, stub: Any, field: str, rejections: Rejections) -> None:
        self._stub = stub
        self._field = field
        self._rejections = rejections

    def Export(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802  # the gRPC method's name
        answer = self._stub.Export(*args, **kwargs)
        try:
            partial = answer.partial_success
            rejected, message = int(getattr(partial, self._field)), str(partial.error_message)
        except Exception:  # raised here it would fail an export the backend took
            return answer
        self._rejections.add(rejected, message)
        return answer


class _ReadsAnswers:
    """Mixin over an SDK gRPC exporter: wraps the stub each time the SDK (re)builds it."""

    rejections: Rejections
    _field: str
    _client: Any

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()  # type: ignore[misc]  # the SDK's, untyped
        self._client = _Answers(self._client, self._field, self.rejections)


class GrpcSpans(_ReadsAnswers, OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter; ``rejections`` holds the spans the backend rejected."""

    _field = "rejected_spans"

    def __init__(self, endpoint: str | None, timeout: float | None) -> None:
        self.rejections = Rejections("spans")
        with header_text_masked(), _files_named("TRACES"), unread_by_grpc("TRACES"):
            super().__init__(endpoint=endpoint, timeout=timeout, compression=_COMPRESSION[compression("TRACES")])


class GrpcMetrics(_ReadsAnswers, OTLPMetricExporter):
    """The SDK's OTLP/gRPC metric exporter; ``rejections`` holds the data points the backend rejected."""

    _field = "rejected_data_points"

    def __init__(self, endpoint: str | None, timeout: float | None) -> None:
        self.rejections = Rejections("metric points")
        with header_text_masked(), _files_named("METRICS"), unread_by_grpc("METRICS"):
            super().__init__(endpoint=endpoint, timeout=timeout, compression=_COMPRESSION[compression("METRICS")])


class GrpcLogs(_ReadsAnswers, OTLPLogExporter):
    """The SDK's OTLP/gRPC log exporter; ``rejections`` holds the log records the backend rejected."""

    _field = "rejected_log_records"

    def __init__(self, endpoint: str | None, timeout: float | None) -> None:
        self.rejections = Rejections("log records")
        with header_text_masked(), _files_named("LOGS"), unread_by_grpc("LOGS"):
            super().__init__(endpoint=endpoint, timeout=timeout, compression=_COMPRESSION[compression("LOGS")])
