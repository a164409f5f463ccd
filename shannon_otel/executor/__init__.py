"""The wave executor: concurrency limits, timeouts, batching, pools, progress, reports."""

from .._events import TaskResult
from ._limits import ResourcePool
from ._report import Summary, WaveReport
from ._result import WaveError, WaveResult
from ._stream import WaveStream
from ._task import TaskSpec, record, record_cost, record_tokens, task
from ._wave import Progress, TaskPolicy, Wave

__all__ = [
    "Progress", "ResourcePool", "Summary", "TaskPolicy", "TaskResult", "TaskSpec", "Wave", "WaveError",
    "WaveReport", "WaveResult", "WaveStream", "record", "record_cost", "record_tokens", "task",
]
