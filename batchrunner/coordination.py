"""Keeping the runners of one run in step: a share of the rate limits each, and pauses seen by all.

Every runner of a run (on one machine or many) enforces ``1 / live runners`` of the configured RPM and
TPM, recounted from the runners table every ``sync_interval_s`` (by :meth:`run`, beside the workers), so
that together they stay under the limit the provider enforces. A runner that joins a run others are
working on waits until they have noticed it and their windows have emptied to their new share, so that
the join does not burst past the limit. A 429/529 seen by one runner is published to the database with
its Retry-After, and every runner applies the run's pauses at the same time as it recounts.

Why a split and not a shared bucket in the database: a bucket would cost a database round trip per
request (or per small grant) on the hot path; the split costs one query per heartbeat and holds the
combined rate under the limit whenever the runners are busy, which is what a batch run is. Its price is
that a runner that runs dry early leaves its share unused until the next heartbeat recounts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from batchrunner.ratelimit import ProviderLimiter
from batchrunner.store.sql import Store

log = logging.getLogger(__name__)


class RunCoordination:
    """This runner's side of the shared limits: the share it takes and the pauses it sends and reads."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        stale_after_s: float,
        sync_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._stale_after_s = stale_after_s
        self._sync_interval_s = sync_interval_s
        self._clock = clock
        self._limiters: dict[str, ProviderLimiter] = {}
        self._share = 1.0
        self._published: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def share(self) -> float:
        return self._share

    def adopt(self, provider: str, limiter: ProviderLimiter) -> ProviderLimiter:
        """Keep ``limiter`` (a new provider's) at this runner's share from now on."""
        self._limiters[provider] = limiter
        limiter.set_share(self._share)
        return limiter

    async def refresh_share(self) -> None:
        """Recount the live runners of the run and take ``1 / count`` of every limit."""
        live = await self._store.live_runner_count(self._run_id, self._stale_after_s)
        share = 1.0 / max(live, 1)
        if share != self._share:
            log.info("%d live runner(s) on this run: using %.0f%% of the rate limits", live, share * 100)
        self._share = share
        for limiter in self._limiters.values():
            limiter.set_share(share)

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

    async def join(self, window_s: float) -> None:
        """Count the runners; if others are at work, give them time to shrink to their new share.

        They recount within one ``sync_interval_s`` (two, to allow for a slow query), and what they sent
        at their old share leaves their windows one ``window_s`` later.
        """
        await self.refresh_share()
        if self._share < 1.0:
            await asyncio.sleep(2 * self._sync_interval_s + window_s)

    async def run(self) -> None:
        """Recount and apply pauses every ``sync_interval_s``, until cancelled."""
        while True:
            await asyncio.sleep(self._sync_interval_s)
            try:
                await self.sync()
            except Exception as exc:  # the last share and pauses stay in force; retried next time
                log.warning("could not sync with the run's other runners: %s", exc)

    async def sync(self) -> None:
        """Recount the runners and apply the pauses other runners published."""
        now = self._clock()
        await self.refresh_share()
        for provider, seconds in (await self._store.active_pauses(self._run_id)).items():
            limiter = self._limiters.get(provider)
            if limiter is not None:
                limiter.pause_until(now + seconds)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
