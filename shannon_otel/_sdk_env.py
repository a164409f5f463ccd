"""The TracerProvider's ``OTEL_TRACES_SAMPLER`` and ``OTEL_PYTHON_ID_GENERATOR``, resolved as the SDK's own
configurator (``opentelemetry-instrument``'s default) resolves them, and its span limits (``OTEL_*_LIMIT``).

The TracerProvider reads ``OTEL_TRACES_SAMPLER`` itself but knows only the SDK's six samplers; the SDK's
configurator also loads one an installed package provides (entry point group ``opentelemetry_traces_sampler``:
``xray``, ``parentbased_jaeger_remote``...) and the id generator ``OTEL_PYTHON_ID_GENERATOR`` names
(``opentelemetry_id_generator``: ``xray``). ``configure()`` ignored both, so with
``OTEL_PYTHON_CONFIGURATOR=shannon_otel`` the same variables gave other traces than without it.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points

from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler

_log = logging.getLogger("shannon_otel")
# what the TracerProvider reads itself (any case), ratio argument included
_SDK_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
                 "parentbased_traceidratio")
# ... but its ratio samplers are built here, their argument checked: the TracerProvider took OTEL_TRACES_SAMPLER_ARG=2
# warning "Could not convert TRACES_SAMPLER_ARG to float", a reason 2 does not have, and warned when it was unset
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def sampler() -> Sampler | None:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, or None for the TracerProvider to read the variable itself (unset,
    or one of its own samplers). Blank is unset (the specification's rule; the SDK warned "Couldn't recognize
    sampler ."). A sampler of an installed package is built from its entry point with ``OTEL_TRACES_SAMPLER_ARG``,
    as the SDK's configurator builds it; an unknown name, or a factory that fails, is ignored with a warning naming
    the variable, and the default (``parentbased_always_on``) used."""
    raw = os.environ.get("OTEL_TRACES_SAMPLER")
    if raw is None or (raw.lower() in _SDK_SAMPLERS and raw.lower() not in _RATIO_SAMPLERS):
        return None
    name = raw.strip()
    if not name:
        return DEFAULT_ON
    if name.lower() in _SDK_SAMPLERS:  # " always_off ": the TracerProvider does not strip it
        name = name.lower()
    found = entry_points(group="opentelemetry_traces_sampler", name=name)
    try:
        if not found:
            raise LookupError("no such sampler (entry point group opentelemetry_traces_sampler)")
        made = next(iter(found)).load()(_sampler_arg(name))
        if not isinstance(made, Sampler):
            raise TypeError(f"its factory returned {type(made).__name__}, not a Sampler")
    except Exception as exc:  # a plugin's bug or a missing package: the default, as the specification asks
        _log.warning("OTEL_TRACES_SAMPLER=%r: %s; ignored, parentbased_always_on used", raw, exc)
        return DEFAULT_ON
    return made


def _sampler_arg(name: str) -> float | str | None:
    arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
    if name not in _RATIO_SAMPLERS:
        return arg
    if arg is None or not arg.strip():  # unset (blank is unset): the specification's default, 1.0
        return 1.0
    try:
        rate = float(arg or "")
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        _log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio in [0, 1]; ignored, 1.0 used", arg)
        return 1.0
    return rate


def id_generator() -> IdGenerator | None:
    """The id generator ``OTEL_PYTHON_ID_GENERATOR`` names (an entry point of group ``opentelemetry_id_generator``),
    or None for the SDK's random one (unset, blank, ``random``); an unknown name, or one that fails to load, is
    ignored with a warning naming the variable."""
    raw = os.environ.get("OTEL_PYTHON_ID_GENERATOR", "")
    name = raw.strip()
    if name in ("", "random"):
        return None
    found = entry_points(group="opentelemetry_id_generator", name=name)
    try:
        if not found:
            raise LookupError("no such id generator (entry point group opentelemetry_id_generator)")
        made = next(iter(found)).load()()
        if not isinstance(made, IdGenerator):
            raise TypeError(f"it made a {type(made).__name__}, not an IdGenerator")
    except Exception as exc:
        _log.warning("OTEL_PYTHON_ID_GENERATOR=%r: %s; ignored, random ids used", raw, exc)
        return None
    return made


_DEFAULT_COUNT_LIMIT = 128  # the specification's default for every count limit


def _limit(name: str) -> int | None:
    """A limit variable as a non-negative integer, or None when unset or blank; anything else is ignored with a
    warning naming it."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        _log.warning("%s=%r is not a non-negative integer; ignored", name, raw)
        return None
    return value


def limits(logs: bool) -> tuple[SpanLimits, LogRecordLimits | None]:
    """The span limits and (with ``logs``) the log record limits of the ``OTEL_*_LIMIT`` variables, each variable
    read once (one warning for an invalid one, though both read the general ``OTEL_ATTRIBUTE_*`` ones).

    Resolved as the SDK resolves them (a span's, event's, link's or log record's own count limit, else
    ``OTEL_ATTRIBUTE_COUNT_LIMIT``, else 128; the span's or log record's value length, else
    ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, else none) but with the specification's reading of what is not a value:
    blank is unset, and a value that is not a non-negative integer is ignored with a warning naming it. The SDK's
    ``SpanLimits`` and ``LogRecordLimits`` read a blank count limit as no limit at all (spans kept every attribute,
    event and link, log records every attribute, where unset keeps 128), and raised ``ValueError`` out of
    ``configure()`` for ``abc`` or ``-1``: under ``opentelemetry-instrument`` the program then ran with no
    telemetry (the log record limits, read by the ``LoggerProvider``, did so with logs on after the span limits
    were fixed)."""
    shared = _limit("OTEL_ATTRIBUTE_COUNT_LIMIT")
    count = _DEFAULT_COUNT_LIMIT if shared is None else shared
    length = _limit("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")

    def own(name: str, fallback: int | None) -> int | None:
        value = _limit(name)
        return fallback if value is None else value

    def unset(value: int | None) -> int:
        return SpanLimits.UNSET if value is None else value  # LogRecordLimits.UNSET is the same -1

    spans = SpanLimits(
        max_attributes=count,
        max_events=own("OTEL_SPAN_EVENT_COUNT_LIMIT", _DEFAULT_COUNT_LIMIT),
        max_links=own("OTEL_SPAN_LINK_COUNT_LIMIT", _DEFAULT_COUNT_LIMIT),
        max_span_attributes=own("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", count),
        max_event_attributes=own("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", count),
        max_link_attributes=own("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", count),
        max_attribute_length=unset(length),
        max_span_attribute_length=unset(own("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", length)),
    )
    if not logs:
        return spans, None
    return spans, LogRecordLimits(
        max_attributes=count,
        max_attribute_length=unset(length),
        max_log_record_attributes=own("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", count),
        max_log_record_attribute_length=unset(own("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", length)),
    )
