"""The service name the standard variables give, read without the SDK (the command's parser uses it too)."""

from __future__ import annotations

import os
from urllib.parse import unquote


def env_service_name() -> str | None:
    """The service name the variables give when blanks count as unset: ``OTEL_SERVICE_NAME``, else the
    ``service.name`` of ``OTEL_RESOURCE_ATTRIBUTES`` (split and percent-decoded as the SDK's detector does it,
    the last one winning), else None. The SDK lets a blank ``OTEL_SERVICE_NAME`` replace the latter, which
    named the service ``shannon-otel`` although ``OTEL_RESOURCE_ATTRIBUTES`` named it."""
    name = os.environ.get("OTEL_SERVICE_NAME", "")
    if name.strip():
        return name
    for item in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == "service.name":
            name = unquote(value.strip())
    return name if name.strip() else None
