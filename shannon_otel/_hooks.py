"""Which hooks a wave, policy or saga reports to: the OTel hook for its providers (joined by the
default logging hook), then the user's."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from ._validate import check_iterable, check_provider, is_async

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._events import Hook
    from ._otel import OTelHook

T = TypeVar("T")


def otel_hook(tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> OTelHook:
    """The shared OTel hook of a provider pair (``None`` = the global provider).

    Shared because several hooks on one meter would create the same observable instruments
    twice, and the SDK keeps only the first one's callbacks. The meter provider's state
    (``_otel._providers.ProviderState``) keeps it.
    """
    from ._otel._providers import provider_state

    return provider_state(meter_provider).otel_hook(tracer_provider, meter_provider)


def resolve_hooks(
    hooks: Iterable[Hook] | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    *,
    instrument: bool = True,
) -> tuple[Hook, ...]:
    """The hooks of one entry point, built once at its construction.

    The OTel hook comes first so that its scope is outermost: the other hooks see its span current.
    The default logging hook rides on it (``_logs._joined``: a hook of its own would cost every call);
    a :class:`~shannon_otel.LoggingHook` among ``hooks`` replaces that default, ``SHANNON_OTEL_LOGS=off``
    turns it off. ``instrument=False`` leaves both out (only the given hooks are called). Each hook is then asked
    for its view of this scope (:meth:`Hook.for_scope`): a hook that emits events of its own (the
    anomaly hook) gets the others to hand them to, so its events reach the OTel hook, the run
    recorder and the user's hooks of this entry point through the same hook protocol.
    """
    from ._logs import with_default_logs

    extra = check_hooks(hooks)
    check_provider("tracer_provider", tracer_provider, "TracerProvider", "get_tracer")
    check_provider("meter_provider", meter_provider, "MeterProvider", "get_meter")
    if not isinstance(instrument, bool):
        raise TypeError(f"instrument must be a bool, got {instrument!r}")
    resolved = extra
    if instrument:
        resolved = (with_default_logs(otel_hook(tracer_provider, meter_provider), extra), *extra)
    return tuple(_for_scope(hook, resolved) for hook in resolved)


def in_scope(policy: T, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> T:
    """``policy`` as run by an entry point (a wave) with these providers; called once, at its construction.

    A recovery policy given no provider of its own reports its calls to the entry point's providers:
    its ``_reporting_to`` returns the same object bound to them (never a copy, so a breaker keeps one
    state). Any other object with ``call(fn)`` is returned as it is. Here, a neutral module, so that
    the executor need not import the recovery package.
    """
    reporting_to = getattr(policy, "_reporting_to", None)
    if reporting_to is None:
        return policy
    scoped: T = reporting_to(tracer_provider, meter_provider)
    return scoped


def check_hooks(hooks: object) -> tuple[Hook, ...]:
    """``hooks`` as a tuple of :class:`Hook`; TypeError naming ``hooks`` for anything else, ValueError
    for one hook given twice (it would see every event twice: an anomaly hook counting each task
    twice, a logging hook writing each line twice)."""
    from ._events import Hook

    if hooks is None:
        return ()
    out = tuple(check_iterable("hooks", hooks, "an iterable of Hook objects"))
    seen: set[int] = set()
    for h in out:
        if isinstance(h, type) and issubclass(h, Hook):  # told to "subclass Hook", which it does, it was lost
            raise TypeError(f"hooks must hold Hook instances, got the class {h.__qualname__}: pass {h.__qualname__}()")
        if not isinstance(h, Hook):
            raise TypeError(f"hooks must hold Hook objects (subclass shannon_otel.Hook), got {h!r}")
        own = getattr(h, "__dict__", {})  # a method set on the instance (hook.wave_started = fn) is called too
        for method in _PROTOCOL:
            if is_async(getattr(type(h), method, None)) or is_async(own.get(method)):
                raise TypeError(
                    f"hooks must hold Hook objects whose methods are plain functions (called without await): "
                    f"{type(h).__qualname__}.{method} is async"
                )
        if id(h) in seen:
            raise ValueError(f"hooks must hold each hook once, got {h!r} twice (it would see every event twice)")
        seen.add(id(h))
    return out


# The Hook methods the library calls (synchronously, on the caller's path: a hook must never block it).
_PROTOCOL = (
    "wave_started", "call_started", "saga_started", "breaker_registered", "breaker_transition", "anomaly",
    "hook_failed", "for_scope",
)


def _for_scope(hook: Hook, resolved: tuple[Hook, ...]) -> Hook:
    """``hook.for_scope(resolved)``, isolated: a hook that raises there, or returns no :class:`Hook`, is used
    as it is (its failure recorded once, as its own: the object returned has no counts to keep)."""
    from ._events import Hook
    from ._isolation import HOOK_ERRORS, hook_failed

    try:
        scoped = hook.for_scope(resolved)
    except HOOK_ERRORS as exc:
        hook_failed(hook, "for_scope", exc, resolved)
        return hook
    if not isinstance(scoped, Hook):  # None (a missing return) failed at every call, logged each time
        if inspect.iscoroutine(scoped):  # an async helper's call returned: closed, or Python warns it never ran
            scoped.close()
        hook_failed(hook, "for_scope", TypeError(
            f"{type(hook).__qualname__}.for_scope must return a Hook (itself, or a view of it), got {scoped!r}",
        ), resolved)
        return hook
    return scoped


def rebuilt(obj: Any) -> tuple[Any, ...]:
    """``__reduce__`` of an immutable dataclass that resolves hooks (a wave, a policy, a saga): rebuilt from its
    arguments, so a pickle or a copy resolves its hooks again where it is made.

    The resolved OTel hook holds locks: pickling or deep-copying one raised "cannot pickle '_thread.lock'
    object", naming neither the object nor why. What the arguments themselves cannot give (a provider, a
    lambda) is still refused by pickle. State a policy keeps (``Degrade``'s last good results)
    starts empty in the copy.
    """
    return (_build, (type(obj), {f.name: getattr(obj, f.name) for f in fields(obj) if f.init}))


def _build(cls: type[T], arguments: dict[str, Any]) -> T:
    return cls(**arguments)
