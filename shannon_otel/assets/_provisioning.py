"""Grafana provisioning: the Prometheus and Jaeger datasources and the dashboard provider.

The URLs are the service names of collector-config/docker-compose.yaml; users running Grafana
elsewhere edit them (Grafana expands ``$VAR`` environment variables in these files too).
"""

from __future__ import annotations

from typing import Any

PROMETHEUS_UID = "prometheus"
JAEGER_UID = "jaeger"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"  # where collector-config/docker-compose.yaml mounts dashboards/


def datasources(*, prometheus_url: str = "http://prometheus:9090",
                jaeger_url: str = "http://jaeger:16686") -> dict[str, Any]:
    """Prometheus (exemplars link to Jaeger by their ``trace_id`` label) and Jaeger datasources."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus", "type": "prometheus", "uid": PROMETHEUS_UID, "access": "proxy",
                "url": prometheus_url, "isDefault": True, "editable": True,
                "jsonData": {
                    "httpMethod": "POST",
                    "prometheusType": "Prometheus",
                    "timeInterval": "15s",
                    # The collector's prometheus exporter writes exemplars with a trace_id label.
                    "exemplarTraceIdDestinations": [
                        {"name": "trace_id", "datasourceUid": JAEGER_UID, "urlDisplayLabel": "Trace in Jaeger"},
                    ],
                },
            },
            {
                "name": "Jaeger", "type": "jaeger", "uid": JAEGER_UID, "access": "proxy", "url": jaeger_url,
                "editable": True,
                "jsonData": {
                    "tracesToMetrics": {"datasourceUid": PROMETHEUS_UID},
                    "nodeGraph": {"enabled": True},
                },
            },
        ],
    }


def dashboard_provider(path: str = DASHBOARDS_PATH) -> dict[str, Any]:
    """A file provider loading the dashboards' JSON from ``path`` into a "Shannon OTel" folder."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "shannon-otel", "orgId": 1, "folder": "Shannon OTel", "folderUid": "shannon-otel",
                "type": "file", "disableDeletion": False, "allowUiUpdates": True,
                "updateIntervalSeconds": 30, "options": {"path": path, "foldersFromFilesStructure": False},
            },
        ],
    }
