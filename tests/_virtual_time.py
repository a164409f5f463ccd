"""Kept for tests written before the virtual-time loop moved to ``shannon_otel.testing``."""

from shannon_otel.testing import VirtualTimeLoop, run_virtual

__all__ = ["VirtualTimeLoop", "run_virtual"]
