"""shannon-otel: OpenTelemetry-instrumented asyncio waves, resilience policies and anomaly detection."""

from ._config import Telemetry, configure
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
from ._prometheus import MetricsServer, PrometheusReader
from ._telemetry import BreakerState, CallOutcome, Outcome
from ._version import __version__
from .anomaly import Anomaly, AnomalyDetector, AnomalyHook, DetectorConfig
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
from .reporting._advice import AdviceThresholds, Recommendation, advise_wave
from .reporting._recorder import RunRecorder
from .reporting._run import RunReport

__all__ = [
    "__version__",
    # set-up
    "configure", "Telemetry", "PrometheusReader", "MetricsServer",
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
