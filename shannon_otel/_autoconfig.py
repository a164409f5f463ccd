"""Zero-code set-up: the ``opentelemetry_configurator`` entry point ``shannon_otel``.

``OTEL_PYTHON_CONFIGURATOR=shannon_otel opentelemetry-instrument python app.py`` makes
``opentelemetry-instrument`` (opentelemetry-instrumentation) call :meth:`Configurator.configure`
at start-up instead of the SDK's own configurator: it runs :func:`shannon_otel.configure`, which
reads the same standard variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``_PROTOCOL``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_TRACES_SAMPLER``) and wires the in-process
metrics bridge. The logs signal is set up as ``configure()`` sets it up: when ``OTEL_LOGS_EXPORTER``
is ``otlp`` or ``console`` (the handler goes on the ``shannon_otel`` logger only). Duck-typed like the
SDK's ``_BaseConfigurator`` (whose module is private): one instance per process, ``configure(**kwargs)``.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["Configurator"]

_logger = logging.getLogger(__name__)


class Configurator:
    """Sets the global providers once per process; a second call, or globals already set, is a no-op."""

    _configured: Any = None

    def configure(self, **kwargs: Any) -> None:
        """Called by ``opentelemetry-instrument`` with ``auto_instrumentation_version=`` (ignored)."""
        from ._config import configure
        from ._otel._providers import globals_set

        if Configurator._configured is not None or globals_set():
            _logger.warning("shannon_otel configurator: global OTel providers already set; left as they are")
            return
        Configurator._configured = configure()
