"""The default logging hook is one per process, even when two threads build the first entry points at once.

Two default hooks would each keep a flood limiter (twice the lines a flood is allowed) and only the last
one built is flushed at exit (the other's held-back summaries are lost).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shannon_otel._logs import _joined
from shannon_otel._logs._hook import LoggingHook
from shannon_otel.recovery import Retry


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(_joined.ENV, raising=False)
    saved = _joined._Default.hook
    _joined._Default.reset()
    yield
    _joined._Default.hook = saved


def test_two_threads_building_the_first_policies_share_one_default_hook(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = threading.Event()  # the first thread is building the default hook
    release = threading.Event()
    built: list[LoggingHook] = []

    class Slow(LoggingHook):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)
            if len(built) == 1:
                inside.set()
                release.wait(10)

    monkeypatch.setattr(_joined, "LoggingHook", Slow)
    policies: dict[str, Retry] = {}

    def build(key: str) -> None:
        policies[key] = Retry(attempts=2)

    first = threading.Thread(target=build, args=("a",))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=build, args=("b",))
    second.start()
    second.join(0.2)  # lets a second thread without the lock build a hook of its own meanwhile
    release.set()
    first.join(10)
    second.join(10)
    assert len(built) == 1
    assert _joined._Default.hook is built[0]
    # both policies log through that one hook (riding on the OTel hook)
    assert all(p._hooks[0]._logs is built[0] for p in policies.values())  # type: ignore[attr-defined]
