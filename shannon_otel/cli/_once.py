"""The OTel SDK's warnings that repeat one message, said once while a command runs (see ``_said_once``).

Also around the import of ``configure()``'s module (the SDK's logs module warns of a malformed
``OTEL_RESOURCE_ATTRIBUTES`` as it is imported) and after the demo's handle is shut down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .._said_once import SaidOnce


@contextlib.contextmanager
def warned_once() -> Iterator[None]:
    """While the block runs, each message of the SDK's resource and attribute loggers is logged once."""
    once = SaidOnce()
    once.install()
    try:
        yield
    finally:
        once.remove()
