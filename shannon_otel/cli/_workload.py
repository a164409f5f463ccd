"""The demo's simulated agent workload: LLM calls, a flaky search API, a vector DB, a publishing saga.

Each wave is one step of a research agent run over ``tasks`` tickets at once: a ``plan`` wave, then
``research`` rounds, then a ``write`` wave (repeating in cycles of ``waves`` waves). Every task recalls
context from the vector DB, asks the LLM (falling back to a small model on timeout), searches the
web through a retry + circuit breaker protected, degradable client, and every fourth task publishes
its result in a saga whose last step sometimes fails, rolling the others back. In every cycle one
early research round hits a search-API outage and a late one a vector-DB slowdown (the anomaly).

Only latencies and failures are simulated (``asyncio.sleep`` of milliseconds); the policies, waves,
spans and metrics are the real library. Every random draw -- latencies, failures, token counts, the
small model's answer after a fallback, the retry jitter -- comes from a stream seeded from (seed,
wave, task), so a seed reproduces them whatever order the event loop runs the tasks in. What races
the wall clock does not replay exactly: the outage window, the breaker's reset timeout, and so the
outcomes of the outage round.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .._events import Hook
from ..executor import Progress, Wave, record_cost, record_tokens
from ..recovery import CircuitBreaker, CircuitOpenError, Degrade, Fallback, Pipeline, Retry, Saga, Step, Timeout

SLOWDOWN = 60.0  # the vector DB in the anomaly wave: task latency ~8x, a shift the detector must find
OUTAGE_S = 0.35  # how long the search API stays down once the outage wave starts
PRICE_PER_1K = {"large": (0.003, 0.015), "small": (0.0002, 0.0006)}  # USD per 1k input, output tokens


class SearchUnavailableError(ConnectionError):
    """The simulated search API refused the connection."""


class RateLimitedError(Exception):
    """The simulated LLM API answered 429."""


class NotifyError(Exception):
    """The simulated notification service rejected the publish notification."""


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    waves: int = 8
    tasks: int = 48
    seed: int = 7
    concurrency: int = 6
    scale: float = 1.0  # multiplies every simulated latency

    @property
    def outage_wave(self) -> int | None:
        return max(1, self.waves // 3) if self.waves >= 2 else None

    @property
    def anomaly_wave(self) -> int | None:
        """Late enough that the detector has seen research rounds before it."""
        return self.waves - 2 if self.waves >= 5 else None

    def stage(self, position: int) -> str:
        if position == 0:
            return "plan"
        return "write" if position == self.waves - 1 and self.waves >= 3 else "research"


class World:
    """The simulated dependencies; per-run state (the outage window) lives here, never in policies."""

    def __init__(self, config: WorkloadConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.outage_until = -1.0
        self.slow_memory = False

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.config.scale)

    async def memory(self, rng: random.Random) -> list[str]:
        base = rng.lognormvariate(-5.5, 0.3)  # ~4 ms
        await self._pause(base * (SLOWDOWN if self.slow_memory else 1.0))
        return [f"note-{rng.randrange(1000)}"]

    async def chat(self, rng: random.Random, model: str) -> str:
        slow = model == "large" and rng.random() < 0.06
        await self._pause(0.25 if slow else rng.lognormvariate(-3.9 if model == "large" else -4.6, 0.35))
        if model == "large" and rng.random() < 0.05:
            raise RateLimitedError("429 Too Many Requests")
        tokens_in, tokens_out = rng.randint(400, 2400), rng.randint(60, 600)
        record_tokens(input=tokens_in, output=tokens_out)
        price_in, price_out = PRICE_PER_1K[model]
        record_cost(tokens_in / 1000 * price_in + tokens_out / 1000 * price_out)
        return f"{model}-answer"

    async def search(self, rng: random.Random) -> list[str]:
        await self._pause(rng.lognormvariate(-4.8, 0.3))  # ~8 ms
        if self.clock() < self.outage_until or rng.random() < 0.03:
            raise SearchUnavailableError("search-api: connection refused")
        return [f"doc-{rng.randrange(10_000)}"]

    async def step(self, rng: random.Random, fail: float = 0.0) -> str:
        await self._pause(rng.lognormvariate(-5.3, 0.3))
        if rng.random() < fail:
            raise NotifyError("notify: 503 from the notification service")
        return "ok"


class _Ticket:
    """The random streams of the ticket a task is handling, for the callbacks the shared policies
    make on its behalf (the fallback, the retry jitter), which cannot be handed them as arguments."""

    __slots__ = ("jitter", "small")

    def __init__(self, seed: int, wave_no: int, index: int) -> None:
        self.small = random.Random(f"{seed}/{wave_no}/{index}/small")
        self.jitter = random.Random(f"{seed}/{wave_no}/{index}/jitter")


# Set by Agent.handle: each worker runs one ticket at a time, in its own context.
_TICKET: ContextVar[_Ticket] = ContextVar("shannon_otel_demo_ticket")


def _jitter() -> float:
    return _TICKET.get().jitter.random()


class Agent:
    """The policies of one demo run, built once and shared by every task (they hold no per-call state)."""

    def __init__(self, world: World, hooks: Sequence[Hook], providers: dict[str, Any]) -> None:
        self.world = world
        options: dict[str, Any] = {"hooks": tuple(hooks), "clock": world.clock, **providers}
        self.breaker = CircuitBreaker("search-api", failure_threshold=5, reset_timeout=0.06, **options)

        async def small_model(error: Exception) -> str:
            return await world.chat(_TICKET.get().small, "small")

        # The policies inside a pipeline report through the pipeline: only it needs hooks and providers.
        self.llm = Pipeline(
            Fallback(small_model, on=TimeoutError), Retry(attempts=2, initial=0.005, on=RateLimitedError),
            Timeout(0.12), name="llm.chat", **options,
        )
        # Deliberately retries everything, CircuitOpenError included (Retry skips it unless listed in
        # on=): the demo's retry-storm advice catches it.
        # The last good value is one per Degrade instance (``call`` of a zero-argument factory): any
        # ticket may be served another's search results, harmless here as handle() ignores them.
        self.search = Pipeline(
            Degrade(last_good=True, default=[]),
            Retry(attempts=4, initial=0.004, maximum=0.03, random=_jitter, on=(Exception, CircuitOpenError)),
            self.breaker, Timeout(0.05), name="search-api", **options,
        )
        self.vector_db = Timeout(0.5, name="vector-db.query", **options)
        self.publish = Saga("publish", **options)

    async def handle(self, wave_no: int, index: int) -> str:
        """One ticket: recall, think, search, and (every fourth ticket) publish."""
        world = self.world
        rng = random.Random(f"{world.config.seed}/{wave_no}/{index}")
        _TICKET.set(_Ticket(world.config.seed, wave_no, index))
        await self.vector_db.call(lambda: world.memory(rng))
        answer = await self.llm.call(lambda: world.chat(rng, "large"))
        await self.search.call(lambda: world.search(rng))
        if index % 4 == 3:
            # A failed notify rolls the saga back and fails the task with SagaError.
            await self.publish.run(
                Step("reserve-quota", lambda: world.step(rng), compensate=lambda _: world.step(rng)),
                Step("write-doc", lambda: world.step(rng), compensate=lambda _: world.step(rng)),
                Step("notify", lambda: world.step(rng, fail=0.3)),
            )
        return answer


async def run_waves(
    config: WorkloadConfig, hooks: Sequence[Hook], providers: dict[str, Any], *,
    on_progress: Callable[[Progress], None] | None = None, keep_going: Callable[[int], bool] | None = None,
    on_wave: Callable[[int, str], None] | None = None, clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run ``config.waves`` waves (or, with ``keep_going``, until it returns False before a wave).

    ``clock`` times the outage window and the policies (breaker reset, saga); a test running the loop
    in virtual time passes the loop's clock so nothing races the wall clock. Returns the number of
    waves run; the reports go to the hooks (``wave_finished``).
    """
    world = World(config, clock)
    agent = Agent(world, hooks, providers)
    wave_no = 0
    while (keep_going(wave_no) if keep_going is not None else wave_no < config.waves):
        position = wave_no % config.waves
        stage = config.stage(position)
        world.slow_memory = position == config.anomaly_wave
        if position == config.outage_wave:
            world.outage_until = world.clock() + OUTAGE_S * config.scale
        if on_wave is not None:
            on_wave(wave_no, stage)
        wave: Wave[str] = Wave(
            stage, max_concurrency=config.concurrency, task_timeout=2.0, hooks=tuple(hooks), on_progress=on_progress,
            progress_interval=0.1, **providers,
        )
        tasks: list[Callable[[], Awaitable[str]]] = [
            functools.partial(agent.handle, wave_no, i) for i in range(config.tasks)
        ]
        await wave.run(tasks)
        wave_no += 1
    return wave_no
