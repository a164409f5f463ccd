"""The benchmark's task function, importable by Dask worker processes."""

from __future__ import annotations

import time
from typing import Any


def busy_ms(x: int) -> int:
    """About one millisecond of CPU work."""
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    return x


def scheduler_tasks(dask_scheduler: Any) -> int:
    """How many tasks the scheduler holds (run with ``client.run_on_scheduler``)."""
    return len(dask_scheduler.tasks)
