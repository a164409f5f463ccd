"""A hook raising a ``KeyboardInterrupt`` (or another ``BaseException``) in ``hook_failed``, told of another hook's
error, leaves no span open.

That interrupt propagates, as one raised in any other hook method does, but only once every observer has finished
its scope. It used to escape from the ``except`` clause where the failing hook's error was recorded, skipping every
observer after it: the OTel observer, finished last, never ended its task, wave, call, attempt, fallback, step,
compensation or saga span, and a hook failing in ``wave_started`` / ``call_started`` / ``saga_started`` left the
spans of the observers made before it open.

Every entry point of ``test_hook_isolation`` runs with its probe raising in one protocol method and a second hook
raising :class:`HookInterruptError` in ``hook_failed``.
"""

from __future__ import annotations

import asyncio

import pytest
from _open_spans import HookInterruptError
from _virtual_time import run_virtual
from opentelemetry import trace
from test_hook_isolation import ENTRY_POINTS, METHODS, HookBugError, Probe, Scenario, Tracker

from shannon_otel import CallFinished, CallObserver, CallStarted, Hook, HookFailed, RetryScheduled
from shannon_otel.testing import InMemoryTelemetry


class Interrupter(Hook):
    """Raises :class:`HookInterruptError` whenever it is told that another hook failed."""

    def __init__(self) -> None:
        self.told = 0

    def hook_failed(self, event: HookFailed) -> None:
        self.told += 1
        raise HookInterruptError(event.method)


def run(scenario: Scenario, hooks: tuple[Hook, ...]) -> tuple[BaseException | None, Tracker]:
    otel = InMemoryTelemetry()
    tracker = Tracker()
    otel.tracer_provider.add_span_processor(tracker)

    async def main() -> BaseException | None:
        caught: BaseException | None = None
        with otel.tracer_provider.get_tracer("test").start_as_current_span("caller") as caller:
            async with asyncio.timeout(600):  # virtual seconds: a hang fails at once instead of blocking
                try:
                    await scenario({"hooks": hooks, **otel.providers})
                except BaseException as exc:
                    caught = exc
            assert trace.get_current_span() is caller, "the caller's span is current again"
        return caught

    return run_virtual(main()), tracker


def interrupts(error: BaseException | None) -> bool:
    """``error`` is the interrupt, or a group holding it (a wave's task raises it through its TaskGroup)."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(HookInterruptError) is not None
    return isinstance(error, HookInterruptError)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "hook_failed"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_an_interrupt_raised_in_hook_failed_leaves_no_span_open(entry: str, method: str) -> None:
    probe, interrupter = Probe(method), Interrupter()
    caught, tracker = run(ENTRY_POINTS[entry], (probe, interrupter))
    assert tracker.open == {}, "every started span ended"
    if interrupter.told:
        assert interrupts(caught), f"the interrupt reached the caller, got {caught!r}"
    else:
        assert caught is None


def test_every_other_hook_is_told_before_the_interrupt_propagates() -> None:
    """A hook's ``hook_failed`` raising a BaseException does not keep the hooks after it from being told."""
    seen: list[HookFailed] = []

    class Listener(Hook):
        def hook_failed(self, event: HookFailed) -> None:
            seen.append(event)

    probe = Probe("attempt_finished")
    caught, tracker = run(ENTRY_POINTS["Retry.call"], (probe, Interrupter(), Listener()))
    assert isinstance(caught, HookInterruptError)
    assert [(e.method, type(e.error)) for e in seen] == [("attempt_finished", HookBugError)] * probe.raised
    assert tracker.open == {}



def test_a_call_interrupted_as_it_starts_ends_every_span_though_an_observer_interrupts_its_end() -> None:
    """A hook interrupting ``call_started`` ends the call for the observers made before it (``call_finished``); one of
    them interrupting that too skipped those after it: the OTel hook's operation span stayed open."""

    class Ending(CallObserver):
        def call_finished(self, event: CallFinished) -> None:
            raise HookInterruptError("call_finished")

    class First(Hook):
        def call_started(self, event: CallStarted) -> CallObserver:
            return Ending()

    class Second(Hook):
        def call_started(self, event: CallStarted) -> CallObserver:
            raise HookInterruptError("call_started")

    caught, tracker = run(ENTRY_POINTS["Retry.call"], (First(), Second()))
    assert isinstance(caught, HookInterruptError)
    assert tracker.open == {}


def test_every_observer_gets_a_call_event_before_an_interrupt_propagates() -> None:
    told: list[str] = []

    def observer(name: str, interrupts: bool) -> type[CallObserver]:
        class Observer(CallObserver):
            def retry_scheduled(self, event: RetryScheduled) -> None:
                told.append(name)
                if interrupts:
                    raise HookInterruptError(name)
        return Observer

    class Watching(Hook):
        def __init__(self, name: str, interrupts: bool) -> None:
            self.observer = observer(name, interrupts)

        def call_started(self, event: CallStarted) -> CallObserver:
            return self.observer()

    caught, tracker = run(ENTRY_POINTS["Retry.call"], (Watching("a", True), Watching("b", False)))
    assert isinstance(caught, HookInterruptError)
    assert told == ["a", "b"]
    assert tracker.open == {}
