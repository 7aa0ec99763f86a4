"""Adaptive concurrency (AIMD) for one provider: how many requests may be in flight at once.

:class:`AdaptiveConcurrency` hands out slots first in, first out, up to ``limit``. A cut (a 429 storm,
decided by :class:`~batchrunner.policy.ratelimit.ProviderLimiter`) halves the limit down to
``min_concurrency``; only a request that started after the last cut can cut again (its slot carries the
*generation* it started under), so one burst of 429s halves once. Every ``successes_per_increase``
successes add one slot back, up to ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["AdaptiveConcurrency", "Slot"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Slot:
    """A concurrency slot, held while one request is in flight (see :meth:`AdaptiveConcurrency.slot`)."""

    generation: int
    """The concurrency cut this slot started under; only the current generation may cut again."""


class AdaptiveConcurrency:
    """At most ``limit`` slots held at once (FIFO); halved by :meth:`cut`, regrown by :meth:`success`."""

    def __init__(self, *, max_concurrency: int, min_concurrency: int, successes_per_increase: int) -> None:
        self._max = max_concurrency
        self._min = min_concurrency
        self._successes_per_increase = successes_per_increase
        self._limit = max_concurrency
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._generation = 0
        self._successes = 0

    @property
    def limit(self) -> int:
        """The current number of requests allowed in flight."""
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def cut(self, slot: Slot | None) -> None:
        """Halve the limit (not below the minimum), unless ``slot`` started before the last cut."""
        if slot is None or slot.generation == self._generation:
            self._limit = max(self._min, self._limit // 2)
            self._generation += 1
            self._successes = 0

    def success(self) -> None:
        """A successful call: every ``successes_per_increase`` of them add a slot back."""
        self._successes += 1
        if self._successes >= self._successes_per_increase:
            self._successes = 0
            if self._limit < self._max:
                self._limit += 1
                self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Hold one of the ``limit`` slots for the duration of the block (FIFO)."""
        await self._enter()
        try:
            yield Slot(generation=self._generation)
        finally:
            self._in_flight -= 1
            self._wake()

    async def _enter(self) -> None:
        if self._in_flight < self._limit and not self._waiters:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: give it back
                self._in_flight -= 1
                self._wake()
            raise

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._in_flight < self._limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)
