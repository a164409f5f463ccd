from __future__ import annotations
from typing import Any
class RecoveryTelemetry:
    def __init__(self, *a: Any) -> None: pass
    def call_started(self, e: Any) -> None: return None
    def saga_started(self, e: Any) -> None: return None
    def breaker_transition(self, e: Any) -> None: return None
