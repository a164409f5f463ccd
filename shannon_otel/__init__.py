"""shannon-otel: OpenTelemetry-instrumented asyncio waves, resilience policies and anomaly detection.

Importing the package loads neither the OTel SDK nor numpy: the executor and the policies need only
the OTel API. ``configure``, ``bridged``, ``TailSampler``, the anomaly detector and the run reports
are imported on first use (:func:`__getattr__`), and bring the SDK / numpy with them.
"""

# First: `python -m shannon_otel` imports the package (0.3-1 s) before its __main__ runs, and Ctrl-C during that
# printed a traceback. Only then, never for a program importing the package: see _quit.
from . import _quit

if _quit.started_by_python_m():
    _quit.leave_on_interrupt()

import typing as _typing
from typing import Any as _Any

from ._events import (
    AttemptFinished,
    BreakerRegistered,
    BreakerTransition,
    CallFinished,
    CallObserver,
    CallRejected,
    CallStarted,
    CompensationFinished,
    Degraded,
    FallbackStarted,
    Hook,
    HookFailed,
    RetryScheduled,
    SagaFinished,
    SagaObserver,
    SagaStarted,
    TaskFinished,
    TimedOut,
    WaveObserver,
    WaveStarted,
)
from ._logs import LoggingHook
from ._telemetry import BreakerState, CallOutcome, Outcome
from ._version import __version__
from .executor import (
    Progress,
    ResourcePool,
    Summary,
    TaskPolicy,
    TaskResult,
    TaskSpec,
    Wave,
    WaveError,
    WaveReport,
    WaveResult,
    WaveStream,
    record,
    record_cost,
    record_tokens,
    task,
)
from .recovery import (
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    Degrade,
    Fallback,
    FallbackError,
    Hedge,
    Jitter,
    Pipeline,
    Policy,
    Retry,
    Saga,
    SagaError,
    SagaResult,
    Served,
    Step,
    Timeout,
    Transaction,
    resilient,
    retry,
)

if _typing.TYPE_CHECKING:
    from ._bridge import bridged
    from ._config import Telemetry, configure
    from ._prometheus import MetricsServer, PrometheusReader
    from ._tail import TailSampler
    from .anomaly import Anomaly, AnomalyDetector, AnomalyHook, DetectorConfig
    from .reporting._advice import AdviceThresholds, Recommendation, advise_wave
    from .reporting._recorder import RunRecorder
    from .reporting._run import RunReport

# Public names whose modules load the OTel SDK or numpy: imported when first asked for.
_LAZY = {
    "configure": "._config", "Telemetry": "._config", "bridged": "._bridge", "TailSampler": "._tail",
    "PrometheusReader": "._prometheus", "MetricsServer": "._prometheus",
    "Anomaly": ".anomaly", "AnomalyDetector": ".anomaly", "AnomalyHook": ".anomaly", "DetectorConfig": ".anomaly",
    "AdviceThresholds": ".reporting._advice", "Recommendation": ".reporting._advice",
    "advise_wave": ".reporting._advice", "RunRecorder": ".reporting._recorder", "RunReport": ".reporting._run",
}


# Hidden from type checkers: a module-level __getattr__ they can see makes every attribute of the package
# exist, typed Any, so `from shannon_otel import Wavee` passed `mypy --strict`; the lazy names are typed by the
# imports under TYPE_CHECKING above. (Spelled `_typing.TYPE_CHECKING`: mypy knows the condition by that name, and
# took an alias such as `_TYPE_CHECKING` for one it cannot decide, checking both branches.)
if not _typing.TYPE_CHECKING:
    def __getattr__(name: str) -> _Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:  # the lazy names too, not yet imported (tab completion, dir(); PEP 562)
        return sorted({*globals(), *__all__})


__all__ = [
    "__version__",
    # set-up
    "configure", "Telemetry", "PrometheusReader", "MetricsServer", "bridged", "TailSampler",
    # executor
    "Wave", "WaveResult", "WaveReport", "WaveError", "WaveStream", "TaskResult", "TaskSpec", "TaskPolicy",
    "Summary", "Progress", "ResourcePool", "task", "record", "record_tokens", "record_cost",
    # run-level report and recommendations
    "RunRecorder", "RunReport", "Recommendation", "AdviceThresholds", "advise_wave",
    # recovery
    "Policy", "Pipeline", "resilient", "Retry", "retry", "Jitter", "CircuitBreaker", "BreakerConfig",
    "BreakerRegistry", "CircuitOpenError", "Timeout", "Fallback", "FallbackError", "Hedge", "Degrade", "Served",
    "Saga", "Step", "Transaction", "SagaResult", "SagaError",
    # anomaly detection
    "AnomalyDetector", "DetectorConfig", "AnomalyHook", "Anomaly",
    # logs
    "LoggingHook",
    # outcomes and states
    "Outcome", "CallOutcome", "BreakerState",
    # hooks and events
    "Hook", "WaveObserver", "CallObserver", "SagaObserver", "WaveStarted", "TaskFinished", "CallStarted",
    "AttemptFinished", "RetryScheduled", "CallRejected", "CallFinished", "Degraded", "BreakerRegistered",
    "BreakerTransition",
    "SagaStarted", "CompensationFinished", "SagaFinished", "TimedOut", "FallbackStarted", "HookFailed",
]

# Errors name their public home, so `error.type` reads shannon_otel.CircuitOpenError, not a private module.
for _error in (CircuitOpenError, FallbackError, SagaError, WaveError):
    _error.__module__ = __name__
del _error
