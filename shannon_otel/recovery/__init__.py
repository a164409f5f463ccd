"""Recovery policies: retry, circuit breaker, timeout, fallback, hedging, degradation, saga, pipeline.

Every policy is configured once (validated, immutable) and run with ``await policy.call(fn)``
where ``fn`` is a zero-argument factory of the awaitable, or used as a decorator on an async
function. Each reports to the OTel hook for its providers and to the ``hooks=`` given.
"""

from ._backoff import Jitter
from ._breaker import CircuitBreaker
from ._breaker_config import BreakerConfig
from ._breaker_registry import BreakerRegistry
from ._circuit_open import CircuitOpenError
from ._degrade import Degrade, Served
from ._fallback import Fallback, FallbackError
from ._hedge import Hedge
from ._pipeline import Pipeline, resilient
from ._policy import Policy
from ._retry import Retry, retry
from ._saga import Saga
from ._saga_types import SagaError, SagaResult, Step
from ._timeout import Timeout
from ._transaction import Transaction

__all__ = [
    "Policy", "Pipeline", "resilient",
    "Retry", "retry", "Jitter",
    "CircuitBreaker", "BreakerConfig", "BreakerRegistry", "CircuitOpenError",
    "Timeout", "Fallback", "FallbackError", "Hedge",
    "Degrade", "Served",
    "Saga", "Step", "Transaction", "SagaResult", "SagaError",
]
