"""A finished span's attributes, for tests that read them."""

from __future__ import annotations

from typing import Any


def attrs(span: Any) -> dict[str, Any]:
    """A finished span's attributes (never None)."""
    return dict(span.attributes or {})
