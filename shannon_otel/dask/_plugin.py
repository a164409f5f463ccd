"""A worker plugin that sets up telemetry in every Dask worker process."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from .._validate import check_number

if TYPE_CHECKING:
    from distributed import Worker

    from .._config import Telemetry

_log = logging.getLogger("shannon_otel.dask")
SERVICE_INSTANCE_ID = "service.instance.id"  # OTel resource semantic conventions
# The telemetry a WorkerTelemetry configured in this worker process, while it runs. OTel sets the
# global providers once per process, so a plugin registered again (each client run registers it: the
# documented pattern) takes this one over instead of failing to configure after the previous plugin's
# teardown shut it down (the worker then exported nothing, silently). Shut down when the worker closes.
_PROCESS: list[Telemetry] = []


class WorkerTelemetry(WorkerPlugin):
    """Runs :func:`shannon_otel.configure` in each worker process, so workers export their own spans and metrics.

    ``await client.register_plugin(WorkerTelemetry("crawler"))``. Exporters, endpoint and protocol come
    from the arguments or, when None, from the standard ``OTEL_*`` variables of the worker's environment
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_EXPORTER``...). Each worker gets its own
    ``service.instance.id`` (a UUID), so replicas never overwrite each other's metric series.
    A worker whose process already has global providers (a LocalCluster of threads, or the app
    configured them) keeps them: the plugin only logs that it left them alone. Registered again (by
    another client, or another run of the app), the plugin keeps the worker's telemetry as the first
    registration configured it (OTel sets global providers once per process); unregistering it
    flushes, closing the worker flushes and shuts the providers down.
    """

    name = "shannon-otel-telemetry"

    def __init__(
        self,
        service_name: str | None = None,
        *,
        exporter: str | None = None,
        endpoint: str | None = None,
        resource_attributes: Mapping[str, str] | None = None,
        export_timeout_s: float = 5.0,
        metric_interval_s: float | None = None,
    ) -> None:
        if service_name is not None and (not isinstance(service_name, str) or not service_name):  # a wrong type:
            raise (ValueError if isinstance(service_name, str) else TypeError)(  # TypeError, as everywhere else
                f"service_name must be a non-empty string or None, got {service_name!r}")
        from .._config import check_setup
        from .._telemetry_handle import _MAX_TIMEOUT_S

        # configure()'s checks, on the client: a value configure() refuses would fail every worker's setup
        check_number("export_timeout_s", export_timeout_s, low=0, low_open=True, high=_MAX_TIMEOUT_S)
        check_setup(service_name, exporter, endpoint, resource_attributes)
        check_number("metric_interval_s", metric_interval_s, low=0, low_open=True, high=86_400.0, allow_none=True)
        self.service_name = service_name
        self.options: dict[str, Any] = {
            "exporter": exporter, "endpoint": endpoint, "export_timeout_s": export_timeout_s,
            "metric_interval_s": metric_interval_s,
        }
        self.resource_attributes: dict[str, str] = dict(resource_attributes or {})

    def setup(self, worker: Worker) -> None:
        from .._config import configure

        if _PROCESS:  # configured by an earlier registration in this process: it goes on exporting
            _log.info("worker %s keeps the telemetry a WorkerTelemetry configured first", worker.address)
            return
        attributes = {SERVICE_INSTANCE_ID: str(uuid.uuid4()), **self.resource_attributes}
        try:
            _PROCESS.append(configure(self.service_name, resource_attributes=attributes, **self.options))
        except RuntimeError:  # global providers already set in this process: keep them
            _log.info("worker %s already has global OTel providers; WorkerTelemetry left them alone", worker.address)

    def teardown(self, worker: Worker) -> None:
        from distributed.core import Status

        if not _PROCESS:
            return
        if worker.status in (Status.closing, Status.closed, Status.failed):
            _PROCESS.pop().shutdown()
        else:  # unregistered or replaced: the providers stay global in this process, so they stay alive
            _PROCESS[0].force_flush()
