"""Composition advice: an outer policy that a result-serving policy inside it leaves nothing to act on.

``Pipeline(Retry(), Fallback(fb))`` runs ``Retry(Fallback(fn))``: the fallback turns every failure the
retry would retry into a result, so the retry retries only when the fallback fails too (its ``FallbackError``,
when the retry's ``on=`` takes it: only then does the warning say so) or re-raises the error, and never when a
``Degrade`` serves a default; a breaker placed so counts only those failures. The code runs as written (each
policy does what its place says), so the pipeline does not refuse it; it warns once, at construction, naming
both policies and the order that was probably meant.

Only certain cases are reported: an outer ``Retry`` whose ``on=`` is types (a predicate cannot be
read) or a ``CircuitBreaker`` counting no slow calls, a ``Fallback`` or a ``Degrade`` with a
``default`` inside it that catches every type the outer one acts on, and between them no ``Timeout``
or breaker, whose own errors (``TimeoutError``, ``CircuitOpenError``) the outer policy still sees.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from ._breaker import CircuitBreaker
from ._circuit_open import CircuitOpenError
from ._degrade import _MISSING, Degrade
from ._fallback import Fallback, FallbackError
from ._policy import Policy
from ._retry import Retry
from ._timeout import Timeout

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn_dead_policies(chain: Sequence[Policy]) -> None:
    """Warn (``UserWarning``, at the user's line) for each outer policy of ``chain`` (outermost first)
    that an inner result-serving policy leaves nothing to act on."""
    for i, outer in enumerate(chain):
        acts_on = _acts_on(outer)
        if acts_on is None:
            continue
        for j in range(i + 1, len(chain)):
            inner = chain[j]
            if isinstance(inner, (Timeout, CircuitBreaker)):  # raises its own errors: the outer one sees them
                break
            catches = _serves(inner)
            if catches is not None and all(issubclass(t, catches) for t in acts_on):
                outer_name, inner_name = type(outer).__name__, type(inner).__name__
                verb, then = (("retry", "once the retries are spent") if isinstance(outer, Retry)
                              else ("open", "when the breaker rejects a call or the call fails"))
                names = ", ".join(t.__name__ for t in acts_on)
                # "never" was untrue for a Fallback: one that fails too raises FallbackError, which the default
                # on=Exception retries (a breaker counts it), and one that re-raises the error passes it on as it is.
                # "fails too" only when the outer one takes a FallbackError: Retry(on=ConnectionError) does not.
                fails_too = "fails too or " if issubclass(FallbackError, acts_on) else ""
                said = (f"{verb} only when the fallback {fails_too}re-raises the error: the {inner_name} inside it "
                        f"(policy {j + 1}) catches every failure it acts on ({names})" if isinstance(inner, Fallback)
                        else f"never {verb}: the {inner_name} inside it (policy {j + 1}) turns every failure it acts "
                        f"on ({names}) into a result")
                warnings.warn(
                    f"{outer_name} (policy {i + 1} of the pipeline) will {said}. Policies run "
                    f"outermost first: to serve a result {then}, list the {inner_name} first, "
                    f"resilient({inner_name}(...), {outer_name}(...)); or narrow the {inner_name}'s on=",
                    UserWarning, stacklevel=_user_level(),
                )
                break


def _acts_on(policy: Policy) -> tuple[type[BaseException], ...] | None:
    """The exception types ``policy`` reacts to from inside it (retries, counts), if it has such types."""
    if isinstance(policy, Retry):
        on = policy.on
        if not isinstance(on, type | tuple):
            return None  # a predicate: what it accepts cannot be read
        types = (on,) if isinstance(on, type) else on
        # wait_retry_after retries a rejection whatever on= says: a breaker inside the fallback still reaches it
        # (it warned "will never retry" for Retry(on=ValueError, wait_retry_after=True), Fallback(on=ValueError),
        # breaker, which retried every rejection)
        return (*types, CircuitOpenError) if policy.wait_retry_after else types
    if isinstance(policy, CircuitBreaker) and policy.config.slow_call_s is None:  # a slow success counts too
        on = policy.config.on
        return on if isinstance(on, tuple) else (on,)
    return None


def _serves(policy: Policy) -> tuple[type[BaseException], ...] | None:
    """The exception types ``policy`` always turns into a result, if it does so for any."""
    if isinstance(policy, Fallback) or (isinstance(policy, Degrade) and policy.default is not _MISSING):
        on = policy.on
        return on if isinstance(on, tuple) else (on,)
    return None


def _user_level() -> int:
    """The ``stacklevel`` of the first frame outside this package (a Pipeline, or resilient() building one)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_code.co_filename.startswith(_PACKAGE) and frame.f_back is not None:
        level, frame = level + 1, frame.f_back
    return level
