"""In-process anomaly detection: the detector core and its feed from executor/policy events."""

from .._events import Anomaly
from ._config import HOOK_DEFAULTS, DetectorConfig
from ._detector import AnomalyDetector, DetectorStats
from ._feed import AnomalyHook
from ._signals import ERROR_RATE, LATENCY, RETRY_RATE, THROUGHPUT

__all__ = [
    "AnomalyDetector", "DetectorConfig", "DetectorStats",
    "Anomaly", "AnomalyHook", "HOOK_DEFAULTS", "LATENCY", "ERROR_RATE", "THROUGHPUT", "RETRY_RATE",
]
