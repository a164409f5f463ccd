"""Small user operations that several test modules hand to waves and policies."""

from __future__ import annotations


async def _one() -> int:
    return 1


async def _ok() -> int:
    return 1
