"""The verbs that change a run's queue from outside a runner: ``retry_failed`` and ``cancel``."""

from __future__ import annotations

import socket

from batchrunner.api.session import open_store, resolved
from batchrunner.config import Settings
from batchrunner.engine.liveness import STALE_AFTER_S, pid_alive


async def retry_failed(*, settings: Settings | None = None, run: str | None = None) -> int:
    """Put a run's failed jobs back in the queue with fresh attempts; return how many."""
    async with open_store(resolved(settings).run.db) as store:
        return await store.retry_failed((await store.find_run(run)).id)


async def cancel(*, settings: Settings | None = None, run: str | None = None) -> int:
    """Cancel a run: its pending jobs now, the jobs a live runner holds as it stops (within a second;
    answers in flight are recorded); return how many were cancelled now."""
    async with open_store(resolved(settings).run.db) as store:
        found = await store.find_run(run)
        return await store.cancel(
            found.id, host=socket.gethostname(), is_alive=pid_alive, stale_after_s=STALE_AFTER_S
        )
