"""Fault isolation of hooks: how the executor, the policies and the saga call observers safely.

Every call into a hook or an observer is guarded where it is made. An ``Exception`` it raises is
handed to :func:`hook_failed`: counted on the hook (``Hook.hook_errors``), logged with its
traceback the first time per hook and method (later ones are only counted; the user's exception it was
raised during is no part of it), and reported to the
entry point's other hooks as a :class:`~shannon_otel._events.HookFailed` event (the OTel hook counts
it as ``shannon.hook.errors``). It never reaches the user's call. ``BaseException`` (cancellation,
``KeyboardInterrupt``) is not an error of the hook and propagates: from a loop that finishes observers,
once every other observer is finished (no span left open); from a saga's rollback, once it is done.

Attach/detach is structural: a token returned by a ``*_started`` method (or the observer itself,
for a call or a saga) that is a context manager is entered by :func:`start` and exited by
:func:`finish`, which the caller runs in the ``finally`` of the same block that runs the work. The
exit is guarded on its own, so a span made current in ``__enter__`` is detached even when an
observer (that one included) raises in between; an exit's return value is ignored, so no observer
can swallow the user's exception.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._fork import release_held
from ._reraise import raise_as_is

if TYPE_CHECKING:
    from ._events import Hook

_log = logging.getLogger("shannon_otel")
# The failure counts of every hook take turns on it: a hook shared by waves in several threads (the anomaly hook, a
# recorder) lost counts when two failed at once (a read, then a write), and its first failure could be logged twice.
# Held for a dict update only; a forked child frees it if a thread of the parent held it.
_COUNTING = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: release_held(_COUNTING))
BROKEN: Final = object()  # the token of an observer whose start method raised: it misses this scope
# What a call into a hook is isolated from: its errors, and a CancelledError it raises. A hook is called without
# await, so no cancellation is ever delivered inside one: its CancelledError is a bug (``future.result()`` of a
# cancelled future). Let through, it was taken for a cancellation: a wave's worker ended silently (the tasks it
# would have run never ran, the wave reported success) and a policy's call raised CancelledError, cancelled by nobody.
HOOK_ERRORS: Final = (Exception, asyncio.CancelledError)


def call_void(fn: Callable[..., object], method: str, *args: Any) -> None:
    """``fn(*args)``, a hook or observer method that returns nothing (``method`` names it); TypeError naming
    ``method`` if it returned a coroutine (closed first). Called inside the caller's guard, so that is the hook's
    failure, counted and logged once.

    Such a method is a plain one calling an async function (``return self.queue.put(event)`` of an ``asyncio.Queue``,
    ``lambda e: notify(e)``): called without await, its coroutine never ran, with only Python's "never awaited"
    warning, far from the cause, and nothing counted. A Task or future it returns is scheduled already: no error.
    A generator (a ``yield`` in the method by mistake) never ran either, without even a warning: the same error.
    """
    value = fn(*args)
    if value is None:
        return
    if isinstance(value, UNRUN):
        raise unrun(value, method) from None  # raised while the user's error may be in flight: not its context


# What a hook or observer method returns that never runs: called without await (a coroutine), or once, its body
# behind a `yield` (a generator).
UNRUN: Final = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def unrun(value: object, method: str) -> TypeError:
    """The TypeError of ``method``, a hook or observer method, that returned ``value``, one of :data:`UNRUN`: a
    coroutine is closed first, so Python does not also warn that it was never awaited."""
    if inspect.iscoroutine(value):
        value.close()
        return TypeError(
            f"{method} returned a coroutine, {value!r}, which nothing awaits (hook and observer methods are called "
            "without await): make it a plain method, or schedule the coroutine as a task you keep a reference to"
        )
    return TypeError(
        f"{method} returned a generator, {value!r}, which nothing runs (hook and observer methods are called "
        "once, their result unused): a `yield` in it made its body never run; make it a plain method (a generator "
        "token on purpose: start it, next(), before returning it)"
    )


def primed(token: object) -> bool:
    """Whether ``token``, one of :data:`UNRUN` that a start method returned, is a generator already started: a token
    on purpose (a consumer primed with ``next()``, sent the event by the finish method; tokens are the observer's
    own values), not a ``yield`` in the method by mistake, whose generator is never started."""
    return isinstance(token, types.GeneratorType) and inspect.getgeneratorstate(token) != inspect.GEN_CREATED


def hook_failed(hook: Hook, method: str, error: BaseException, hooks: Sequence[Hook] = ()) -> None:
    """Record that ``hook`` (or an observer it returned) raised ``error`` in ``method``.

    Counted on ``hook``; logged once per hook and method; reported as a ``HookFailed`` event to the
    other ``hooks`` of the entry point (a hook failing in ``hook_failed`` is recorded, not reported on).
    Never raises an ``Exception``. A view of a hook (``Hook.for_scope``) names it as ``__wrapped__``:
    the failure is the viewed hook's. A ``CancelledError`` (see ``HOOK_ERRORS``) is recorded as a RuntimeError
    saying so, caused by it.
    """
    raised = error  # what the hook raised: its traceback tells the hook's frames from the caller's
    error = _as_error(error, method)
    hook = _unwrapped(hook)
    with _COUNTING:
        try:
            counts = _own_counts(hook)
            if counts is None:
                counts = {}
                # past the class's own __setattr__: a frozen dataclass hook refused the plain assignment, so its
                # failures were never counted (hook_errors stayed empty) and every one was logged with its traceback
                object.__setattr__(hook, "_hook_errors", counts)
        except AttributeError:  # not a Hook subclass, and slotted: nowhere to count, so log each time
            counts = {}
        first = method not in counts
        counts[method] = counts.get(method, 0) + 1
    if first:
        hidden = _callers_error_hidden(raised)
        try:
            _log.error(
                "hook %s failed in %s; the call goes on without it (later failures of this hook in %s are "
                "counted in hook.hook_errors, not logged)", _name(hook), method, method, exc_info=error,
            )
        finally:
            for link in hidden:
                link.__suppress_context__ = False
    _tell(hooks, hook, _name(hook), method, error)


def held_failure(hook: Hook, method: str, error: BaseException, hooks: Sequence[Hook]) -> BaseException | None:
    """:func:`hook_failed` for a loop that finishes every observer before it raises: a ``BaseException`` another hook
    raised in its ``hook_failed`` (a ``KeyboardInterrupt``) is returned, for the loop to raise once it is done, as it
    raises an observer's own. Raised from the loop's ``except`` clause, it skipped every observer after (spans open)."""
    try:
        hook_failed(hook, method, error, hooks)
    except BaseException as exc:
        return exc
    return None


def callback_failed(callback: object, method: str, error: BaseException, hooks: Sequence[Hook], *, first: bool) -> None:
    """Record that ``callback``, a plain callable given to an entry point as ``method`` (a wave's ``on_progress``),
    raised ``error``, as a hook's failure is: logged with its traceback when ``first`` (the caller's first failure of
    it: once per wave run), and reported as a ``HookFailed`` event named after it (its qualified name) to every hook of
    the entry point (the OTel hook counts it as ``shannon.hook.errors``). Never raises an ``Exception``."""
    error = _as_error(error, method)
    name = _callable_name(callback)
    if first:
        _log.error("%s failed (%s); the wave goes on (its later failures in this run are not logged; each is reported "
                   "to the wave's hooks: shannon.hook.errors)", method, name, exc_info=error)
    _tell(hooks, None, name, method, error)


def _as_error(error: BaseException, method: str) -> Exception:
    if isinstance(error, Exception):
        return error
    stray = RuntimeError(
        f"{method} raised CancelledError, though hooks are called without await (nothing was cancelled); "
        "treated as the hook's error"
    )
    stray.__cause__ = error
    return stray


def _tell(hooks: Sequence[Hook], failing: object, name: str, method: str, error: Exception) -> None:
    """A ``HookFailed`` event to each of ``hooks`` but ``failing``; a ``BaseException`` one of them raises is raised
    once every other one was told."""
    if not hooks:
        return
    from ._events import HookFailed

    event = HookFailed(name, method, error)
    escaped: BaseException | None = None
    for other in hooks:
        if _unwrapped(other) is not failing:
            try:
                call_void(other.hook_failed, "hook_failed", event)
            except HOOK_ERRORS as exc:
                hook_failed(other, "hook_failed", exc)
            except BaseException as exc:
                escaped = escaped or exc
    if escaped is not None:
        raise_as_is(escaped)


def _callable_name(fn: object) -> str:
    """``module.qualname`` of a function or method (a lambda: ``module.<lambda>``), else its class's name (a
    ``functools.partial``, a callable object)."""
    try:
        qualname, module = getattr(fn, "__qualname__", None), getattr(fn, "__module__", None)
    except Exception:  # a callable object's own __getattr__
        qualname = module = None
    if isinstance(qualname, str) and isinstance(module, str):
        from ._validate import utf8_text

        return utf8_text(f"{module}.{qualname}")
    return _name(fn)


def _unwrapped(hook: Hook) -> Hook:
    """The hook a view (``Hook.for_scope``) stands for, its ``__wrapped__``; else ``hook``. A lookup that raises is no
    view: a hook's own ``__getattr__`` (``return self._settings[name]``) raised KeyError out of the isolation."""
    try:
        return getattr(hook, "__wrapped__", hook)
    except Exception:
        return hook


def _own_counts(hook: object) -> dict[str, int] | None:
    """``hook``'s failure counts if it has them (the ``Hook._hook_errors`` slot, or an instance attribute), else None.

    Read past the class's ``__getattr__``: one that raises for unknown names (KeyError) broke the isolation, one that
    answers every name (``Mock(spec=Hook)``) handed back a Mock for the count dict."""
    try:
        counts = object.__getattribute__(hook, "_hook_errors")
    except AttributeError:
        return None
    return counts if type(counts) is dict else None


def _callers_error_hidden(error: BaseException) -> list[BaseException]:
    """Hide, from the traceback of ``error`` that is about to be logged, the error that was in flight where the hook
    was called; returns the links whose ``__suppress_context__`` was set, for the caller to restore once logged.

    A hook failing in ``call_finished`` or ``attempt_finished`` of a failed call raises while the user's exception is
    being handled, which Python chains as its context: the record printed the user's exception, message and all,
    under "During handling of the above exception" (exception messages are logged only when asked for). The chain is
    cut at the first exception that did not start in the hook's own frames (those of ``error``'s traceback past its
    first, the guard's); a context the hook made itself, and a cause it chose (``raise ... from``), are kept.
    """
    tb = error.__traceback__
    tb = tb.tb_next if tb is not None else None  # the guard's frame, where the user's error may be handled
    own: set[int] = set()
    while tb is not None:
        own.add(id(tb.tb_frame))
        tb = tb.tb_next
    link: BaseException = error
    seen: set[int] = set()
    while id(link) not in seen:
        seen.add(id(link))
        caused = link.__cause__ is not None
        chained = link.__cause__ if caused else None if link.__suppress_context__ else link.__context__
        if chained is None:
            return []
        start = chained.__traceback__
        if start is None or id(start.tb_frame) not in own:
            if caused:
                return []
            link.__suppress_context__ = True
            return [link]
        link = chained
    return []


# An observer type's first async protocol method (None: it has none), memoised: checked once per type.
_ASYNC_METHOD: dict[type, str | None] = {}


def refused(observer: object, hook: Hook, method: str, hooks: Sequence[Hook]) -> bool:
    """Whether ``observer``, what ``hook.<method>`` returned, must not be used: it has an ``async def``
    where the protocol calls a plain method, so its coroutines would never be awaited (silently: only
    a RuntimeWarning). Recorded as the hook's failure (a TypeError naming the method); the hook misses
    this scope. ``check_hooks`` refuses such a hook method up front; an observer is only seen here.
    """
    cls = type(observer)
    bad = _ASYNC_METHOD.get(cls, "")  # memoised per type: the policies ask it at every call
    if bad == "":
        try:
            bad = _async_method(cls)
        except Exception:  # a class whose attribute lookup raises: not this check's to judge
            bad = None
        if len(_ASYNC_METHOD) >= 1024:  # a hook making a class per scope must not grow it without bound
            _ASYNC_METHOD.clear()
        _ASYNC_METHOD[cls] = bad
    if bad is None:
        return False
    if bad == "__next__":  # a `yield` in the hook method: each observer call failed on a missing attribute
        error = TypeError(
            f"{method} returned a generator, {observer!r}: it must return an observer instance or None (a `yield` "
            "in it made its body never run); make it a plain method"
        )
    elif bad in _NOT_AN_OBSERVER:
        # A plain method returning what an async one would (``lambda event: notify(event)`` of an async
        # ``notify``), or the observer's class: used as the observer, each of its calls failed on a missing
        # attribute or argument, far from the cause, and a coroutine was never awaited (never ran).
        if asyncio.iscoroutine(observer):
            observer.close()
        shown = observer if bad == "__class__" else cls
        what = f"{'the class' if bad == '__class__' else 'an awaitable'} {getattr(shown, '__qualname__', shown)}"
        error = TypeError(
            f"{method} returned {what}: it must return an observer instance or None (hook methods are called "
            "without await, so an awaitable would never run)"
        )
    else:
        error = TypeError(
            f"{cls.__qualname__}.{bad} is async: observer methods are called without await (a hook must never "
            "block the caller), so its coroutines would never run; make it a plain method"
        )
    hook_failed(hook, method, error, hooks)
    return True


_NOT_AN_OBSERVER: Final = ("__await__", "__class__")  # what _async_method names for an awaitable, a class
# (and "__next__" for a generator)


def _async_method(cls: type) -> str | None:
    from ._events import CallObserver, SagaObserver, WaveObserver
    from ._validate import is_async

    if hasattr(cls, "__await__"):
        return "__await__"
    if issubclass(cls, types.GeneratorType | types.AsyncGeneratorType):
        return "__next__"
    if issubclass(cls, type):
        return "__class__"

    for protocol in (CallObserver, WaveObserver, SagaObserver):
        for name in vars(protocol):
            if not name.startswith("_") and is_async(getattr(cls, name, None)):
                return name
    for name in ("__enter__", "__exit__"):  # a scope observer is entered and exited without await too
        if is_async(getattr(cls, name, None)):
            return name
    return None


def _name(hook: object) -> str:
    from ._events._error import class_name  # never raising, as for an error's class (a metaclass may)

    return class_name(type(hook))


def is_scope(token: object) -> bool:
    """Whether ``token`` is a context manager to enter around the work (checked on its type, as ``with`` does)."""
    cls = type(token)
    return hasattr(cls, "__enter__") and hasattr(cls, "__exit__")


class Unentered:
    """A scope token whose ``__enter__`` raised: still finished, never exited."""

    __slots__ = ("token",)

    def __init__(self, token: Any) -> None:
        self.token = token


def enter(token: Any, hook: Hook, method: str, hooks: Sequence[Hook]) -> Any:
    """Enter ``token`` if it is a scope; an :class:`Unentered` wrapping it when entering raised."""
    if is_scope(token):
        try:
            token.__enter__()
        except HOOK_ERRORS as exc:
            hook_failed(hook, method, exc, hooks)
            return Unentered(token)
    return token


def leave(token: Any, hook: Hook, method: str, hooks: Sequence[Hook]) -> None:
    """Exit ``token`` if it is a scope (told no exception: an observer never sees or swallows the user's)."""
    if is_scope(token):
        try:
            token.__exit__(None, None, None)
        except HOOK_ERRORS as exc:
            hook_failed(hook, method, exc, hooks)


def start(
    observers: Sequence[Any], owners: Sequence[Hook], hooks: Sequence[Hook], tokens: list[Any],
    method: str, *args: Any,
) -> None:
    """Call ``method(*args)`` on each observer in order, appending its token to ``tokens`` (entered if a scope).

    ``tokens`` is filled in place so that the caller's ``finally`` finishes exactly the observers started
    even if a ``BaseException`` cut this loop short.
    """
    for observer, owner in zip(observers, owners, strict=True):
        try:
            token = getattr(observer, method)(*args)
            if isinstance(token, UNRUN) and not primed(token):  # a plain method calling an async one, a `yield`
                raise unrun(token, method)
        except HOOK_ERRORS as exc:
            hook_failed(owner, method, exc, hooks)
            tokens.append(BROKEN)
            continue
        tokens.append(enter(token, owner, method, hooks))


def finish(
    observers: Sequence[Any], owners: Sequence[Hook], hooks: Sequence[Hook], tokens: Sequence[Any],
    method: str, *args: Any,
) -> None:
    """Call ``method(token, *args)`` on each started observer, newest first, then exit its token.

    A ``BaseException`` one of them raises is re-raised once every other observer is finished too
    (so no other hook's span is left open).
    """
    escaped: BaseException | None = None
    for k in range(len(tokens) - 1, -1, -1):
        token = tokens[k]
        if token is BROKEN:
            continue
        owner = owners[k]
        entered = type(token) is not Unentered
        try:
            call_void(getattr(observers[k], method), method, token if entered else token.token, *args)
        except HOOK_ERRORS as exc:
            escaped = escaped or held_failure(owner, method, exc, hooks)
        except BaseException as exc:
            escaped = escaped or exc
        if entered:
            try:
                leave(token, owner, method, hooks)
            except BaseException as exc:
                escaped = escaped or exc
    if escaped is not None:
        raise_as_is(escaped)


def notify(
    observers: Sequence[Any], owners: Sequence[Hook], hooks: Sequence[Hook], method: str, *args: Any,
) -> None:
    """Call ``method(*args)`` on every observer in order; one that raises is recorded and skipped. A
    ``BaseException`` one raises (or another hook in its ``hook_failed``) is raised once every observer was told:
    the callers end a call's observers with it (``call_finished``), whose spans it left open."""
    escaped: BaseException | None = None
    for observer, owner in zip(observers, owners, strict=True):
        try:
            call_void(getattr(observer, method), method, *args)
        except HOOK_ERRORS as exc:
            escaped = escaped or held_failure(owner, method, exc, hooks)
        except BaseException as exc:
            escaped = escaped or exc
    if escaped is not None:
        raise_as_is(escaped)
