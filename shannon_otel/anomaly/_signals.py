"""The signals the anomaly hook watches, by name."""

from __future__ import annotations

LATENCY, ERROR_RATE, THROUGHPUT, RETRY_RATE = "latency", "error_rate", "throughput", "retry_rate"
