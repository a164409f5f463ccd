"""A finished task's three attributes written onto its fresh SDK span without a validation pass.

Why: ``span.set_attributes`` costs ~2.7 us for the three attributes of a task span (the SDK cleans
the mapping and each value, each key through several calls and two locks), about 13 % of an SDK
span's own cost and most of what tracing every task adds above a bare span. For these values the
cleaning is an identity: constant non-empty string keys, an int, an int or float and a short
string. So when nothing could make ``set_attributes`` do more than insert them in order (a plain
SDK span, not ended, with no attributes yet, count and length limits that keep all three whole),
:func:`set_task_attributes` inserts them itself, under the same two locks, in the same order;
anything else goes through ``set_attributes``. The exported span is the same either way.

What it relies on is private to the SDK (checked once per span class, and a span of another class
always takes the public path): an SDK span keeps ``_lock``, ``_end_time`` and ``_attributes``, a
``BoundedAttributes`` holding its items in ``_dict`` under ``_lock``. ``tests/test_span_attributes.py``
pins that the result equals ``set_attributes``'s under every limit and state that matters, on the
SDK the tests run with (opentelemetry-sdk 1.30 and 1.45 checked when this was written).
"""

from __future__ import annotations

import sys
from typing import Any

_PLAIN: dict[type, bool] = {}  # span class -> whether the direct write applies to its spans
_BOUNDED: list[Any] = []  # opentelemetry.attributes.BoundedAttributes, once a plain span was seen


def _probe(span: Any) -> bool:
    """Whether ``span``'s class is the SDK's, with the layout this module relies on (once per class)."""
    sdk = sys.modules.get("opentelemetry.sdk.trace")  # never imported here: an SDK span means it is loaded
    base: Any = getattr(sdk, "Span", None)
    cls: Any = type(span)
    if not (isinstance(base, type) and issubclass(cls, base)
            and getattr(cls, "set_attributes", None) is getattr(base, "set_attributes", None)):
        return False  # not the SDK's span, or a subclass that sets attributes its own way
    from opentelemetry.attributes import BoundedAttributes

    bounded = getattr(span, "_attributes", None)
    if type(bounded) is not BoundedAttributes or not all(
        hasattr(span, name) for name in ("_lock", "_end_time")
    ) or not (isinstance(getattr(bounded, "_dict", None), dict) and hasattr(bounded, "_lock")):
        return False
    if not _BOUNDED:
        _BOUNDED.append(BoundedAttributes)
    return True


def set_task_attributes(span: Any, k1: str, v1: int, k2: str, v2: float, k3: str, v3: str) -> None:
    """Give ``span`` the attributes ``{k1: v1, k2: v2, k3: v3}``, as ``span.set_attributes`` would.

    Called by the OTel hook on the event loop when a task ends, before it ends the span. The keys
    are the contract's constants; ``v1`` is the task index, ``v2`` its queue wait, ``v3`` its outcome.
    Never raises for a span the public path accepts.
    """
    plain = _PLAIN.get(type(span))
    if plain is None:
        plain = _PLAIN[type(span)] = _probe(span)
    if plain and type(v1) is int and (type(v2) is float or type(v2) is int) and type(v3) is str:
        bounded: Any = span._attributes
        if type(bounded) is _BOUNDED[0]:
            limit, length = bounded.maxlen, bounded.max_value_len
            if (limit is None or limit >= 3) and (length is None or length >= len(v3)):
                with span._lock:  # as set_attributes: no attribute once the span has ended
                    if span._end_time is None:
                        items = bounded._dict
                        if not items:  # no attributes yet: nothing to move, replace or drop
                            with bounded._lock:
                                items[k1] = v1
                                items[k2] = v2
                                items[k3] = v3
                            return
    span.set_attributes({k1: v1, k2: v2, k3: v3})
