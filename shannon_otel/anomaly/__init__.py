"""In-process anomaly detection: the detector core and its feed from executor/policy events."""

from ._config import DetectorConfig
from ._detector import AnomalyDetector, DetectorStats

__all__ = ["AnomalyDetector", "DetectorConfig", "DetectorStats"]
