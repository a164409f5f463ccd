"""Zero-code set-up: the ``opentelemetry_configurator`` entry point ``shannon_otel``.

``OTEL_PYTHON_CONFIGURATOR=shannon_otel opentelemetry-instrument python app.py`` makes
``opentelemetry-instrument`` (opentelemetry-instrumentation) call :meth:`Configurator.configure`
at start-up instead of the SDK's own configurator: it runs :func:`shannon_otel.configure`, which
reads the same standard variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``_PROTOCOL``, ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_TRACES_SAMPLER``, ``OTEL_PYTHON_ID_GENERATOR``, a sampler
or id generator of an installed package included) and wires the in-process
metrics bridge. The logs signal is set up as ``configure()`` sets it up: when ``OTEL_LOGS_EXPORTER``
is ``otlp`` or ``console`` (the handler goes on the ``shannon_otel`` logger only). Duck-typed like the
SDK's ``_BaseConfigurator`` (whose module is private): one instance per process, ``configure(**kwargs)``.

Without ``OTEL_PYTHON_CONFIGURATOR``, ``opentelemetry-instrument`` runs the first configurator installed,
in an order nobody chose: installing shannon-otel next to opentelemetry-distro made this one replace the
distro's (its root-logger log export, ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED``, silently gone).
So unless it is named, this configurator hands over to another one installed, and runs only when alone.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from typing import Any

__all__ = ["Configurator"]

_logger = logging.getLogger(__name__)
_NAME = "shannon_otel"  # the entry point's name in pyproject.toml


class Configurator:
    """Sets the global providers once per process; a second call, or globals already set, is a no-op."""

    _configured: Any = None

    def configure(self, **kwargs: Any) -> None:
        """Called by ``opentelemetry-instrument`` with ``auto_instrumentation_version=`` (passed on to the
        configurator this one hands over to, else ignored)."""
        from ._config import configure
        from ._otel._providers import globals_set

        if os.environ.get("OTEL_PYTHON_CONFIGURATOR") is None:  # opentelemetry-instrument's test too
            others = [e for e in entry_points(group="opentelemetry_configurator") if e.name != _NAME]
            if others:
                _logger.info("shannon_otel configurator: OTEL_PYTHON_CONFIGURATOR is not set, so the installed "
                             "configurator %r runs (set OTEL_PYTHON_CONFIGURATOR=%s for this one)", others[0].name,
                             _NAME)
                others[0].load()().configure(**kwargs)
                return
        if Configurator._configured is not None or globals_set():
            _logger.warning("shannon_otel configurator: global OTel providers already set; left as they are")
            return
        Configurator._configured = configure()
