"""A :class:`ProviderLimiter` on a virtual clock (:class:`FakeTime`): exact times, no sleeping.

The limiter's injected ``sleep`` parks the caller until the test moves time forward (or, with
``autojump``, moves time forward itself), so the limiter's tests assert the moments requests go out.
"""

from __future__ import annotations

import asyncio
import math
import random
from heapq import heappop, heappush
from itertools import count

from batchrunner.policy.ratelimit import ProviderLimiter, RateLimits

SPAN = 1.025  # the default window (1 s) plus guard (25 ms)


class FakeTime:
    """A virtual clock. With ``autojump`` a sleep just moves time forward (one task at a time);
    without it, sleepers wait until :meth:`advance` moves time past their deadline."""

    def __init__(self, *, autojump: bool = False) -> None:
        self.now = 0.0
        self.autojump = autojump
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay > 0 and math.isfinite(delay), delay  # never a zero, negative, NaN or infinite sleep
        self.sleeps.append(delay)
        if self.autojump:
            self.now += delay
            await asyncio.sleep(0)
            return
        waiter = asyncio.get_running_loop().create_future()
        heappush(self._sleepers, (self.now + delay, next(self._order), waiter))
        await waiter

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its deadline and letting the woken tasks run."""
        target = self.now + seconds
        await run_ready()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, waiter = heappop(self._sleepers)
            self.now = max(self.now, when)
            if not waiter.done():
                waiter.set_result(None)
            await run_ready()
        self.now = target
        await run_ready()


async def run_ready() -> None:
    """Let the tasks that are ready run (a few turns of the event loop)."""
    for _ in range(20):
        await asyncio.sleep(0)


def make(clock: FakeTime, **limits: float | int | bool | None) -> ProviderLimiter:
    """A limiter on the virtual clock; windows are tested with bursts (``pace=False``) unless asked."""
    limits.setdefault("pace", False)
    return ProviderLimiter(
        RateLimits(**limits),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(42),
    )


def max_in_any_window(stamps: list[float], amounts: list[int] | None = None, width: float = 1.0) -> int:
    weights = amounts or [1] * len(stamps)
    return max(
        sum(w for s, w in zip(stamps, weights, strict=True) if start <= s < start + width) for start in stamps
    )


async def acquire_times(limiter: ProviderLimiter, clock: FakeTime, tokens: list[int]) -> list[float]:
    stamps = []
    for amount in tokens:
        await limiter.acquire(amount)
        stamps.append(clock.now)
    return stamps
