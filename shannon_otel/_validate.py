"""Argument checks shared by every policy: errors name the parameter and its allowed range."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, cast


def check_number(name: str, value: object, *, low: float, high: float | None = None,
                 low_open: bool = False, integer: bool = False, allow_none: bool = False,
                 finite: bool | str = False) -> None:
    """Raise TypeError/ValueError naming ``name`` and its allowed range unless ``value`` fits.

    With no ``high``, a float parameter accepts ``inf``, and its range is printed closed, ``(0, inf]`` (``(0, inf)``
    read as refusing it); ``finite`` refuses ``inf`` (a str: why, or what to pass instead, put in the message), its
    range printed ``(0, inf)``, as an int's is."""
    if value is None and allow_none:
        return
    left = "(" if low_open else "["
    right = f"{shown(high)}]" if high is not None else "inf)" if integer or finite else "inf]"  # (a bound may be
    # another huge parameter)
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        # The range too, as the ValueError gives it: "attempts must be an int, got 2.5" left the user to guess
        # whether 0 attempts (or a negative delay) would do.
        kind = "an int" if integer else "a number"
        raise TypeError(
            f"{name} must be {kind} in {left}{low}, {right}{' or None' if allow_none else ''}"
            f"{other_number(value, integer=integer)}, got {shown(value)}"
        )
    # Compared as given: Python compares ints and floats exactly, whatever the int's size (float(10**400)
    # raises OverflowError, which escaped here instead of an error naming the parameter).
    v = cast("float", value)
    if isinstance(finite, str) and v == math.inf:
        raise ValueError(f"{name} must be finite ({finite}), got inf")
    if v != v:  # NaN: no range holds it, nor refuses it by its bounds ("(0, inf), got nan" read as a range slip)
        raise ValueError(f"{name} must be in {left}{low}, {right}, got nan: NaN is not allowed")
    if (finite and v == math.inf) or (v <= low if low_open else v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be in {left}{low}, {right}, got {shown(value)}")
    if not integer and isinstance(value, int):
        try:  # a float parameter is computed with as a float: an int beyond the float range cannot be
            float(value)
        except OverflowError:
            raise ValueError(
                f"{name} must be in {left}{low}, {right} and within the float range (seconds, rates), "
                f"got {shown(value)}"
            ) from None


def builtin_numbers(obj: object, *names: str) -> None:
    """Store the named number fields of the frozen ``obj`` (checked already) as builtin ``float``/``int``.

    A float subclass passes :func:`check_number` (``numpy.float64`` is one) but computes otherwise: its
    overflow is a numpy ``RuntimeWarning`` and ``inf`` where a float raises ``OverflowError`` (a long
    retry's backoff, ``1 / rate`` of a subnormal rate), warnings raised from inside a call, and numpy
    scalars handed on in events. Converted once, at construction, every call computes as with a float.
    """
    for name in names:
        value = getattr(obj, name)
        if type(value) is not float and isinstance(value, float):
            object.__setattr__(obj, name, float(value))
        elif type(value) is not int and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, name, int(value))


INT64_MAX = 2**63 - 1  # the largest int an OTLP attribute holds


def int64_or_none(value: int | None) -> int | None:
    """``value``, a count for an event and its telemetry, or None (what events say of no limit) when no int64
    holds it: ``10**400`` is a valid count (unbounded), which OTLP cannot encode (the attribute lost, with a
    traceback logged per span or log record)."""
    return value if value is None or value <= INT64_MAX else None


def other_number(value: object, *, integer: bool = False) -> str:
    """What to say of a number of another type given where a builtin int/float is meant (a bool, numpy scalars,
    ``Decimal``, ``Fraction``): "must be a number, got np.float32(0.5)" read as a contradiction. Empty for
    anything else. A bool is an int to Python, and True is 1: "attempts must be an int in [1, inf), got True" read as
    a contradiction, so it says a bool is not one."""
    if isinstance(value, bool):
        return " (not a bool)"
    if isinstance(value, int | float) or not isinstance(value, numbers.Number):
        return ""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):  # float() refuses it
        return f" (a real Python {'int' if integer else 'int or float'}; {kind} is not one)"
    if integer and not isinstance(value, numbers.Integral):
        return f" (a Python int; {kind} is not one)"
    if integer:
        return f" (a Python int; {kind} is not one: pass int(value))"
    return f" (a Python int or float; {kind} is not one: pass float(value))"


def check_reading(name: str, value: object) -> None:
    """TypeError/ValueError naming ``name`` (a clock) unless ``value``, one of its readings, is finite seconds.

    Checked where a run or a retry first reads the clock, before any work: ``clock=datetime.now`` (a slip
    for ``time.time``) raised "'>' not supported between 'datetime.timedelta' and 'int'" from inside the
    wave once its first task had run, the result lost; a NaN reading made every duration NaN. A coroutine
    (``clock=lambda: read_async()``) is closed first, so Python does not also warn that it was never awaited."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        sync_result(name, value)
        raise TypeError(f"{name} must return seconds (a real number){other_number(value)}, got {brief(value)}")
    if not -math.inf < cast("float", value) < math.inf:
        raise ValueError(f"{name} must return finite seconds, got {brief(value)}")


def shown(value: object) -> str:
    """``repr(value)``, except for an int too long to print usefully (or at all: str() of an int over
    4,300 digits raises ValueError)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return repr(value)


def check_spread(call: str, what: str, args: tuple[object, ...]) -> None:
    """Refuse ``call([a, b])`` where ``call(a, b)`` is meant (as ``asyncio.gather`` does): the one
    sequence would otherwise be reported as a wrong item, printed whole, when the items are right."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        kind = type(args[0]).__name__
        raise TypeError(f"{call}() takes the {what} as separate arguments: {call}(*{what}), got one {kind}")


def brief(value: object) -> str:
    """``repr(value)`` cut to 80 characters, for a message about a value the user's code made (which may be
    large, or fail to print)."""
    try:
        text = shown(value)
    except Exception:
        return "(unprintable)"
    return text if len(text) <= 80 else f"{text[:77]}..."


def check_not_decorated(policy: str, name: str, value: object, allowed: str, form: str) -> None:
    """TypeError when ``value``, given as ``policy``'s first parameter ``name`` (``allowed``: what it must be), is a
    function: a bare ``@Timeout`` above ``async def fetch`` is ``Timeout(fetch)``, which the parameter's own check
    refused as "seconds must be a number, got <function fetch at 0x...>", naming neither the decorator nor the form
    meant. ``form``: that form, with an example (``@Timeout(seconds), e.g. @Timeout(5)``)."""
    if not callable(value) or isinstance(value, type):
        return
    qualname = getattr(value, "__qualname__", None)
    function = repr(qualname) if isinstance(qualname, str) else brief(value)
    raise TypeError(
        f"{name} must be {allowed}, got the function {function}: "
        f"a {policy} is applied above the function as {form}; a bare @{policy} took the function it decorates as "
        f"its {name}"
    )


def check_exceptions(name: str, value: object, *, handled: bool = False) -> tuple[type[BaseException], ...]:
    """Normalise an exception type or tuple of types, rejecting anything else.

    ``handled``: the types choose errors a policy handles (retries, counts, serves): only ``Exception``
    subclasses ever are, so one that is not (``asyncio.CancelledError``, ``KeyboardInterrupt``...) would
    silently do nothing and is refused (``BaseException`` itself, meaning "all", is accepted).
    """
    if isinstance(value, Iterable) and not isinstance(value, tuple | str | bytes | type):
        # a list, set or generator of types: `except` takes a tuple only, and "got [<class 'KeyError'>]" read as
        # refusing the types. Not iterated: a generator stays as it was.
        raise TypeError(f"{name} must be an exception type or a tuple of them, got a {type(value).__name__}, "
                        f"{brief(value)}: pass a tuple, as `except` takes (tuple({name}) of a list or a set)")
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{name} must be an exception type or a tuple of them, got {brief(value)}")
        if handled and t is not BaseException and not issubclass(t, Exception):
            raise TypeError(
                f"{name} must name Exception subclasses: a policy never retries, counts or serves {t.__qualname__} "
                f"(cancellation, KeyboardInterrupt and the like always propagate), got {value!r}"
            )
    return types


def check_iterable(name: str, value: object, what: str = "an iterable") -> Iterable[Any]:
    """TypeError naming ``name`` unless ``value`` is an iterable other than a str/bytes. A 0-d
    numpy array claims to be iterable (it has ``__iter__``) but raises "iteration over a 0-d array"
    when iterated, an error naming nothing: it is refused here. ``value`` is not iterated (a
    generator given as lazy input stays unconsumed). The value is shown cut short (:func:`brief`): a file's text
    passed by mistake made a message as long as the file, and one whose ``repr()`` raised raised that error
    in place of this one."""
    if isinstance(value, str | bytes):
        raise TypeError(
            f"{name} must be {what}, got {type(value).__name__} {brief(value)}: a string is refused, as iterating it "
            "would take it one character at a time (pass [text] for a single item)"
        )
    if not isinstance(value, Iterable) or getattr(value, "ndim", None) == 0:
        raise TypeError(f"{name} must be {what}, got {brief(value)}")
    return value


def check_provider(name: str, value: object, kind: str, method: str) -> None:
    """Raise TypeError naming ``name`` unless ``value`` is None or an OTel ``kind`` (it has ``method``).

    Duck-typed, as the API's proxies and users' own providers are not SDK classes; but the class itself
    (``tracer_provider=TracerProvider``, the parentheses forgotten) has the method too, and was accepted:
    every span or metric of the entry point was then lost, with one logged traceback."""
    if value is None:
        return
    if isinstance(value, type):
        raise TypeError(f"{name} must be an OpenTelemetry {kind} or None, got the class {value.__qualname__}: "
                        f"pass an instance, {value.__qualname__}(...)")
    if not callable(getattr(value, method, None)):
        raise TypeError(f"{name} must be an OpenTelemetry {kind} or None, got {brief(value)}")


def empty_or_not_str(value: object) -> type[TypeError] | type[ValueError]:
    """The error for ``value`` refused where a non-empty str belongs: ValueError for a str (empty: the right type,
    a bad value), TypeError for anything else. An empty name was a TypeError in some places and a ValueError in
    others."""
    return ValueError if isinstance(value, str) else TypeError


def check_bool(name: str, value: object) -> None:
    """Raise TypeError naming ``name`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")


def check_name(name: str, value: object, *, allow_none: bool = False, telemetry: bool = True) -> None:
    """Raise TypeError naming ``name`` unless ``value`` is a str (or None when allowed); ValueError if it is empty
    (the right type, a bad value, as for ``int("")``), or unless it can be exported (:func:`check_utf8`) and, for a
    name the telemetry carries (``telemetry``), is at most :data:`NAME_MAX_LENGTH` characters
    (:func:`check_telemetry_name`)."""
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value:
        raise empty_or_not_str(value)(f"{name} must be a non-empty str{' or None' if allow_none else ''}, "
                                      f"got {brief(value)}")
    if telemetry:
        check_telemetry_name(name, value)
    else:
        check_utf8(name, value)


# The longest name (of a wave, task, pool, policy, breaker, saga, step, degrade reason, recorded measurement,
# service) the telemetry carries. Each is copied into span names and attributes of every task, attempt or step,
# metric attributes (Prometheus labels) and log records: a 1 MB wave name made each task span over 1 MB, and a
# batch of them went past a collector's 4 MB gRPC message limit, the whole batch dropped. Names are those of
# code paths ("fetch", "GET /items/{id}"); 256 characters also stay within what backends index or keep whole
# (Elasticsearch's default keyword ``ignore_above``, Grafana Cloud's and Mimir's 2,048-character label values).
NAME_MAX_LENGTH = 256


def check_telemetry_name(name: str, value: str | None) -> None:
    """ValueError naming ``name`` unless ``value`` (a str, or None) is at most :data:`NAME_MAX_LENGTH`
    characters and encodable as UTF-8 (:func:`check_utf8`): a name the telemetry carries."""
    if value is None:
        return
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError(
            f"{name} must be at most {NAME_MAX_LENGTH} characters (it is copied into span names, span and metric "
            f"attributes and log records: name code paths, not requests or data), got a str of {len(value)} "
            f"characters, {brief(value)}")
    check_utf8(name, value)


def check_default_name(what: str, value: str, remedy: str) -> None:
    """ValueError unless ``value``, a name the library derived (a function's qualified name) where the user gave
    none, is at most :data:`NAME_MAX_LENGTH` characters: saying where it came from and what to pass instead (the
    check of the name itself named ``name``, a parameter the user never gave)."""
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError(
            f"{what} is {len(value)} characters, {brief(value)}; a name the telemetry carries is at most "
            f"{NAME_MAX_LENGTH}: {remedy}")


def utf8_text(text: str) -> str:
    """``text`` with each lone surrogate as U+FFFD, so that it encodes as UTF-8 (OTLP, Prometheus, log
    files): for text the library writes but cannot refuse, such as an exception's message."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def plain(value: str) -> str:
    """``value`` as a plain str, its characters: a str subclass (a ``class Op(str, Enum)`` member) kept
    as it is exports its characters as metric attributes ("fetch") while ``format()`` and ``str()`` write
    it otherwise in span names and log lines ("Op.FETCH"), so an alert's link to the traces of its wave
    found none."""
    return value if type(value) is str else str.__str__(value)


def check_utf8(name: str, value: str | None) -> None:
    """ValueError naming ``name`` when ``value`` holds a lone surrogate (what ``os.fsdecode`` or
    ``surrogateescape`` make of bytes that are not UTF-8). Names become span names and attributes,
    metric attributes and labels, which OTLP and Prometheus carry as UTF-8: one such name made every
    export of its provider fail (each span batch holding it, and every metric export for good)."""
    if value is None:
        return
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} must be text encodable as UTF-8 (telemetry is exported as UTF-8), got "
                         f"{value!r} with the lone surrogate {value[exc.start]!r} at {exc.start}") from None


def is_async(value: object) -> bool:
    """Whether calling ``value`` makes a coroutine or an async generator (an ``async def``, also as a
    ``functools.partial`` or an object's ``__call__``): what a sync callable must not be."""
    if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):  # partials unwrapped too
        return True
    if value is None or inspect.isroutine(value) or isinstance(value, functools.partial | type):
        return False
    call = inspect.getattr_static(type(value), "__call__", None)  # a callable object's own method
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def _is_generator_function(value: object) -> bool:
    """Whether calling ``value`` makes a (sync) generator: a ``def`` with ``yield``, also as a ``functools.partial``
    or an object's ``__call__``."""
    if inspect.isgeneratorfunction(value):  # partials unwrapped too
        return True
    if inspect.isroutine(value) or isinstance(value, functools.partial | type):
        return False
    return inspect.isgeneratorfunction(inspect.getattr_static(type(value), "__call__", None))


def check_makes_awaitable(name: str, value: object, what: str) -> None:
    """TypeError naming ``name`` if what calling ``value`` makes is never awaitable, where the library awaits it: an
    async generator (an ``async def`` with ``yield``, also as a ``functools.partial`` or an object's ``__call__``), or
    an instance of a class that has no ``__await__`` (``Fallback(ValueError)``, ``sleep=KeyboardInterrupt``: a class
    is callable, and takes the arguments). Refused where it is given: a ``Fallback``'s fallback or a ``Degrade``'s
    ``cheaper`` only runs when the operation fails, so such a one otherwise failed at its first use, in the outage it
    was meant to serve. A class whose ``__new__`` or metaclass ``__call__`` is Python code is taken: calling it
    returns what that code does (an ``async def __new__``: a coroutine)."""
    if isinstance(value, type) and not hasattr(value, "__await__") and _makes_instances(value):
        raise TypeError(f"{name} must be {what}, got the class {value.__qualname__}: calling it makes an instance, "
                        "which cannot be awaited (pass a function, e.g. an async def)")
    call = value
    if not (inspect.isroutine(value) or isinstance(value, functools.partial | type)):
        call = inspect.getattr_static(type(value), "__call__", None)
    if inspect.isasyncgenfunction(value) or inspect.isasyncgenfunction(call):
        raise TypeError(f"{name} must be {what}, got the async generator function {value!r}: what it returns is "
                        "awaited once for its result; collect what it yields in an async def")


def _makes_instances(cls: type) -> bool:
    """Whether calling ``cls`` surely makes an instance of it: Python's own construction (``type.__call__``, a
    built-in ``__new__``), not one of the user's that may return anything."""
    return (inspect.getattr_static(type(cls), "__call__", None) is type.__call__
            and not inspect.isfunction(getattr(cls, "__new__", None)))


def check_sync_callable(name: str, value: object, what: str, *, allow_none: bool = False,
                        takes: int | None = None) -> None:
    """TypeError naming ``name`` unless ``value`` is a callable that is not async (it is called without
    ``await``, so an ``async def`` would hand back a coroutine nobody awaits); ``what`` says what it is.
    ``takes``: the number of positional arguments the library calls it with (see :func:`check_arity`)."""
    if value is None and allow_none:
        return
    if not callable(value):  # a coroutine object (``clock=read()``) closed, as wherever a callable belongs
        raise not_callable(name, value, f"{what}{' or None' if allow_none else ''}")
    if is_async(value):
        raise TypeError(f"{name} must be {what}, a plain function called without await, got the async {value!r}")
    if _is_generator_function(value):  # its call returns a generator, its body never run: truthy, hashable, no number
        raise TypeError(f"{name} must be {what}, a plain function returning its value, got the generator function "
                        f"{value!r}: a `yield` in it makes each call return a generator, its body never run")
    if takes is not None:
        check_arity(name, value, takes, what)


def check_arity(name: str, value: object, takes: int, what: str) -> None:
    """TypeError naming ``name`` unless ``value`` can be called with ``takes`` positional arguments,
    as the library calls it. Checked once, where the callable is given: a wrong one (``clock=lambda t: ...``,
    ``on=lambda: True``) otherwise raised Python's bare "takes 0 positional arguments but 1 was given"
    at its first use, deep in a wave or a retry, in place of the user's own result or error. A callable
    whose signature cannot be read (some builtins) is accepted as it is."""
    try:
        signature = inspect.signature(cast("Any", value))
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*range(takes))
    except TypeError as exc:
        plural = "" if takes == 1 else "s"
        raise TypeError(
            f"{name} must be {what}: it is called with {takes} positional argument{plural}, "
            f"which {value!r} cannot take ({exc})",
        ) from None


def sync_result(name: str, value: Any, error: type[TypeError] = TypeError) -> Any:
    """``value``, what a sync user callable returned; ``error`` (a TypeError) naming ``name`` if it is an awaitable
    (e.g. a lambda returning a coroutine, which cannot be told from a sync callable before it is called) or a
    generator (a lambda calling a generator function: a predicate it answered was always true). The
    policies pass their ``NotSyncError``, which no policy retries, counts or serves (a programming error)."""
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()  # never awaited: closed, so Python does not warn about it on top of this error
        raise error(f"{name} must be a plain (sync) callable; it returned an awaitable, {value!r}")
    if inspect.isgenerator(value) or inspect.isasyncgen(value):  # truthy to a predicate, hashable to a key
        raise error(f"{name} must be a plain callable returning its value; it returned a generator, {value!r} (a "
                    "`yield` in it: its body never ran)")
    return value


def not_callable(name: str, value: object, what: str) -> TypeError:
    """The TypeError for ``value``, given as ``name`` where a callable belongs (``what`` says which).

    A coroutine object there is the usual slip (``call(fetch())`` for ``call(fetch)``): it is closed, so
    Python does not also warn that it was never awaited, and the error says what to pass instead.
    """
    if inspect.iscoroutine(value):
        value.close()
        return TypeError(
            f"{name} must be {what}, got the coroutine object {value!r}: pass the function itself "
            "(or a lambda calling it), not the coroutine its call made"
        )
    return TypeError(f"{name} must be {what}, got {value!r}")


def awaitable_from(name: str, made: object, error: type[TypeError] = TypeError) -> Any:
    """``made`` (what a user callable returned) if awaitable; ``error`` (a TypeError) naming ``name`` otherwise.

    Called where a user callable that must be async is first called (a sync one cannot be told
    from a lambda returning a coroutine before that): the error names the parameter instead of
    Python's "object X can't be used in 'await' expression". The policies pass their ``NotAwaitableError``,
    which no policy retries, counts or serves (a programming error).
    """
    if inspect.isawaitable(made):
        return made
    if inspect.iscoroutine(made):  # pragma: no cover - isawaitable covers it
        return made
    raise error(f"{name} must be an async callable (it must return an awaitable), it returned "
                    f"{type(made).__name__} {brief(made)}")


_ENDPOINT_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
# the password of a URL's userinfo, with or without a scheme (the gRPC exporter takes user:password@host:port)
_USERINFO_PASSWORD = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.\-]*://)?[^/@:]*):[^/@]*@")
_MASKED = r"\1:***@"


def check_endpoint(name: str, value: object) -> None:
    """An OTLP endpoint: ``http(s)://host[:port][/path]`` or, for gRPC, ``host:port`` or
    ``unix:///path`` (or None)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL string such as 'http://127.0.0.1:4317' or None, got {value!r}")
    try:  # urlsplit refuses a bad IPv6 literal ("http://[::1"), .port one outside 0-65535
        parsed = urllib.parse.urlsplit(value)
        url = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        port = parsed.port if url else None
    except ValueError:
        url, port = False, -1
    host_port = bool(_ENDPOINT_HOST_PORT.match(value))
    if host_port:
        port = int(value.rsplit(":", 1)[1])
    # gRPC target names the SDK exporter passes to grpc as they are: unix:///run/otel.sock, dns:///host:4317
    target = not url and value.startswith(("unix:", "dns:")) and len(value.split(":", 1)[1].strip("/")) > 0
    well_formed = url or host_port or target
    # port 0 is nobody's: the OTLP/HTTP exporter dialled port 80 for it, the gRPC one port 0
    if not well_formed or (port is not None and not 1 <= port <= 65535):
        raise ValueError(
            f"{name} must be a URL such as 'http://127.0.0.1:4317' (for gRPC also host:port or unix:///path; "
            f"port in 1-65535), got {_USERINFO_PASSWORD.sub(_MASKED, value)!r}",
        )


def check_attributes(name: str, value: object) -> None:
    """OTel attribute values: a mapping of str keys to str/bool/int/float (or sequences of them)."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str/bool/int/float, got {value!r}")
    for k, v in value.items():
        ok = isinstance(v, str | bool | int | float) or (
            isinstance(v, list | tuple) and all(isinstance(x, str | bool | int | float) for x in v))
        if not isinstance(k, str) or not k or not ok:  # an empty key alone: a ValueError, as an empty name is
            error = ValueError if k == "" and isinstance(k, str) and ok else TypeError
            raise error(f"{name} must map non-empty str keys to str/bool/int/float values, got {k!r}: {v!r}")
        check_utf8(f"{name} key", k)
        for x in v if isinstance(v, list | tuple) else (v,):
            check_utf8(f"{name}[{k!r}]", x if isinstance(x, str) else None)
