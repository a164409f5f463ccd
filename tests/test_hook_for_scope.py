"""A user hook whose ``for_scope`` returns no Hook (a forgotten ``return self``: ``None``).

It was used as the scope's hook: every call failed on ``None.wave_started``, the failure was the
``NoneType``'s (the user's ``hook_errors`` stayed empty) and, having nowhere to be counted, was logged at
every call. Now it is the hook's own failure in ``for_scope``, recorded once per entry point, and the hook
itself is used, so it still sees the scope's events.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from shannon_otel import Hook, Wave
from shannon_otel._events import CallObserver, CallStarted, WaveObserver, WaveStarted
from shannon_otel.recovery import Retry


class ForgotReturn(Hook):
    def __init__(self, scoped: object) -> None:
        self.scoped = scoped
        self.waves = self.calls = 0

    def for_scope(self, hooks: tuple[Hook, ...]) -> Hook:
        return self.scoped  # type: ignore[return-value]

    def wave_started(self, event: WaveStarted) -> WaveObserver | None:
        self.waves += 1
        return None

    def call_started(self, event: CallStarted) -> CallObserver | None:
        self.calls += 1
        return None


async def one(i: int) -> int:
    return i


@pytest.mark.parametrize("scoped", [None, object()], ids=["None", "object"])
def test_a_for_scope_returning_no_hook_is_the_hooks_failure_once(
    scoped: object, caplog: pytest.LogCaptureFixture,
) -> None:
    hook = ForgotReturn(scoped)
    wave: Wave[int] = Wave("w", hooks=[hook], instrument=False)
    policy = Retry(attempts=1, hooks=[hook], instrument=False)

    async def main() -> tuple[list[int | None], list[int]]:
        mapped = (await wave.map(one, range(5))).values()
        return mapped, [await policy.call(one, i) for i in range(5)]

    with caplog.at_level(logging.ERROR, logger="shannon_otel"):
        assert asyncio.run(main()) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    assert hook.hook_errors == {"for_scope": 2}  # one per entry point (the wave, the policy), none per call
    assert (hook.waves, hook.calls) == (1, 5)  # the hook itself stood in for its view
    failures = [r for r in caplog.records if "failed in" in r.getMessage()]
    assert len(failures) == 1
    assert "ForgotReturn" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert "must return a Hook" in str(failures[0].exc_info[1])
