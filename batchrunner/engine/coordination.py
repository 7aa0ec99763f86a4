"""Keeping the runners of one run in step: a share of the rate limits each, and pauses seen by all.

Every *busy* runner of a run (on one machine or many) enforces one part of ``busy runners`` equal parts
of the RPM and TPM in force, configured or learned from the provider's headers (the provider's limit is
per key, shared by every runner) (:meth:`ProviderLimiter.set_part`; each takes its place in the busy
runners' ids, sorted, so that the whole requests of a quantum are dealt out once), so that together they
stay under the limit the provider enforces. A runner is busy while it
holds jobs (claimed, waiting for the limiter, in flight, or not yet checkpointed); each counts the others
from the jobs table (live runners holding running jobs) every ``sync_interval_s``, beside its workers.
A runner that runs dry near the end of a run stops counting as soon as its last answer is checkpointed,
and the others take up its share within one interval.

A runner that becomes busy (its first claim, or a claim after running dry) while others are at work
holds its own requests back for ``2 * sync_interval_s`` (one interval for the others to recount, one
more for a slow query): it sends nothing until they have shrunk to their new share. No wait for their
windows to empty is needed because requests are paced evenly (``RateLimits.pace``): with the others
switching from ``1/(n-1)`` to ``1/n`` of the limit at time b and the newcomer starting at ``1/n`` at c >= b,
any 1-second window sees at most ``1 + (b - c) / n <= 1`` of the limit; and a runner whose cap drops
below what its window already holds sends nothing until it is under the new cap, which only helps.
The same argument lets the others grow at once when a runner runs dry: it sent its last request
before its last answer came back.

A 429/529 seen by one runner is published to the database with its Retry-After, and every runner applies
the run's pauses at the same time as it recounts.

Why a split and not a shared bucket in the database: a bucket would cost a database round trip per
request (or per small grant) on the hot path; the split costs two small queries per interval and holds
the combined rate under the limit. Its price is the hold when a runner joins, and up to one interval of
unused share when one runs dry (BENCHMARKS.md, "Several runners").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from batchrunner.policy.ratelimit import ProviderLimiter
from batchrunner.store.base import EngineStore

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.25
"""How often a runner recounts the busy runners and reads the run's pauses (two small queries)."""


class RunCoordination:
    """This runner's side of the shared limits: the share it takes and the pauses it sends and reads."""

    def __init__(
        self,
        store: EngineStore,
        run_id: int,
        runner_id: str,
        *,
        stale_after_s: float,
        sync_interval_s: float = SYNC_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._runner_id = runner_id
        self._stale_after_s = stale_after_s
        self._sync_interval_s = sync_interval_s
        self._clock = clock
        self._limiters: dict[str, ProviderLimiter] = {}
        self._part = (0, 1)
        self._hold_until = -math.inf
        self._published: dict[str, float] = {}
        self._recounting = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def part(self) -> tuple[int, int]:
        """``(index, parts)``: the part of the rate limits this runner takes."""
        return self._part

    def adopt(self, provider: str, limiter: ProviderLimiter) -> ProviderLimiter:
        """Keep ``limiter`` (a new provider's) at this runner's part (and hold) from now on."""
        self._limiters[provider] = limiter
        limiter.set_part(*self._part)
        _hold(limiter, self._hold_until)
        return limiter

    async def refresh_part(self) -> int:
        """Recount the busy runners of the run and take this runner's part of every limit.

        Returns how many others are busy. This runner counts itself: its part matters only while it has
        jobs to send. One recount at a time, so that an older count never overwrites a newer one.
        """
        async with self._recounting:
            busy = await self._store.busy_runners(self._run_id, stale_after_s=self._stale_after_s)
            order = sorted({*busy, self._runner_id})
            part = (order.index(self._runner_id), len(order))
            if part[1] != self._part[1]:
                log.info("%d busy runner(s) on this run: each takes a part of the rate limits", part[1])
            self._part = part
            for limiter in self._limiters.values():
                limiter.set_part(*part)
            return len(order) - 1

    async def became_busy(self) -> None:
        """This runner claimed jobs while it held none: if others are at work, let them shrink first.

        Called after the claim is committed, so that the others' next recount sees this runner.
        """
        try:
            others = await self.refresh_part()
        except Exception as exc:  # not knowing, hold back as if there were others
            log.warning("could not count the run's other runners: %s", exc)
            others = 1
        if others:
            self.hold()

    def hold(self) -> None:
        """Send nothing for two recounts (the others' time to make room for this runner)."""
        self._hold_until = self._clock() + 2 * self._sync_interval_s
        for limiter in self._limiters.values():
            _hold(limiter, self._hold_until)

    def publish_pause(self, provider: str, seconds: float) -> None:
        """Tell the other runners about a 429/529 pause (in the background; a later pause wins)."""
        until = self._clock() + seconds
        if until <= self._published.get(provider, -float("inf")) + 0.1:
            return  # nothing new to say: a 429 storm costs one write, not one per 429
        self._published[provider] = until
        task = asyncio.create_task(self._publish(provider, seconds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, provider: str, seconds: float) -> None:
        try:
            await self._store.publish_pause(self._run_id, provider, seconds)
        except Exception as exc:  # the pause still holds here; the others learn of it from their own 429s
            log.warning("could not share a rate-limit pause: %s", exc)

    async def run(self) -> None:
        """Recount and apply pauses every ``sync_interval_s``, until cancelled."""
        while True:
            await asyncio.sleep(self._sync_interval_s)
            try:
                await self.sync()
            except Exception as exc:  # the last share and pauses stay in force; retried next time
                log.warning("could not sync with the run's other runners: %s", exc)

    async def sync(self) -> None:
        """Recount the busy runners (where there is a rate limit to split) and apply the run's pauses."""
        now = self._clock()
        if any(_limited(limiter) for limiter in self._limiters.values()):
            await self.refresh_part()
        for provider, seconds in (await self._store.active_pauses(self._run_id)).items():
            limiter = self._limiters.get(provider)
            if limiter is not None:
                limiter.pause_until(now + seconds)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _limited(limiter: ProviderLimiter) -> bool:
    return limiter.rate_limited


def _hold(limiter: ProviderLimiter, until: float) -> None:
    """Hold a joining runner's requests back, where there is a rate limit to share."""
    if _limited(limiter):
        limiter.pause_until(until)
