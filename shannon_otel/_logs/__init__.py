"""The logging hook: resilience events as records of the standard ``logging`` module (docs/logging.md)."""

from ._hook import LoggingHook
from ._joined import with_default_logs

__all__ = ["LoggingHook", "with_default_logs"]
