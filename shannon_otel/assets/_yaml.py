"""A small YAML writer for the bundled rules and provisioning files (no YAML dependency).

Only what those files need: mappings with plain keys, lists, strings, numbers and booleans.
Strings are written double-quoted with JSON escapes (valid YAML), multi-line strings such as
PromQL expressions as ``|-`` literal blocks so they stay readable in review.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def dump(value: object) -> str:
    """Return ``value`` as a YAML document; raises ``TypeError`` on an unsupported type."""
    return "\n".join(_lines(value, 0)) + "\n"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: object) -> str:
    if not isinstance(key, str) or not _PLAIN_KEY.match(key):
        raise TypeError(f"unsupported YAML key {key!r}")
    return key


def _inline(value: object, indent: int) -> tuple[str, list[str]]:
    """Text after ``key:`` or ``-`` on the same line, and the lines that follow it."""
    pad = " " * indent
    if isinstance(value, str) and "\n" in value:
        body = value.strip("\n")
        if body != body.lstrip() or any(line != line.rstrip() for line in body.splitlines()):
            return " " + _scalar(value), []
        return " |-", [pad + line if line else "" for line in body.splitlines()]
    if isinstance(value, Mapping) and value:
        return "", _lines(value, indent)
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        return "", _lines(value, indent)
    if isinstance(value, Mapping):
        return " {}", []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " []", []
    return " " + _scalar(value), []


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            head, rest = _inline(item, indent + 2)
            out.append(f"{pad}{_key(key)}:{head}")
            out.extend(rest)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            head, rest = _inline(item, indent + 2)
            if rest and not head:
                # First line of a nested block goes on the dash line: "- key: value".
                out.append(f"{pad}- {rest[0].lstrip()}")
                out.extend(rest[1:])
            else:
                out.append(f"{pad}-{head}")
                out.extend(rest)
    else:
        out.append(pad + _scalar(value))
    return out
