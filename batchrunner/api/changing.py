"""The verbs that change a run's queue from outside a runner: ``retry_failed`` and ``cancel``."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

from batchrunner.api.batchapis import BatchApis
from batchrunner.api.session import open_store, resolved
from batchrunner.config import Settings
from batchrunner.engine.batchdriver import HOLD_S, BatchDriver, BatchOptions, owner_gone
from batchrunner.engine.liveness import STALE_AFTER_S, pid_alive
from batchrunner.models import BatchInfo, BatchState, RunInfo
from batchrunner.store.store import Store

CANCEL_WAIT_S = 60.0
"""How long ``cancel`` waits for the provider batches it cancelled to end."""
CANCEL_POLL_S = 1.0


async def retry_failed(*, settings: Settings | None = None, run: str | None = None) -> int:
    """Put a run's failed jobs back in the queue with fresh attempts; return how many."""
    async with open_store(resolved(settings).run.db) as store:
        return await store.retry_failed((await store.find_run(run)).id)


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelReport:
    """What ``cancel`` did."""

    cancelled: int
    """Jobs cancelled now (pending ones, those of dead runners, and the lines no provider batch ran)."""
    batches_cancelled: int = 0
    """Provider batches asked to cancel."""
    batch_succeeded: int = 0
    """Lines the cancelled batches had answered before the cancel, recorded (they keep their answers)."""
    batch_failed: int = 0
    batches_still_cancelling: int = 0
    """Batches that had not ended within the wait: ``batchrunner run`` records them."""
    batches_dropped: int = 0
    """Batches formed but never sent to the provider (a run stopped before): their jobs are cancelled."""


async def cancel(
    *,
    settings: Settings | None = None,
    run: str | None = None,
    wait_s: float = CANCEL_WAIT_S,
    poll_s: float = CANCEL_POLL_S,
) -> CancelReport:
    """Cancel a run: its pending jobs now, the jobs a live runner holds as it stops (within a second;
    answers in flight are recorded), and its live provider batches (the lines they answered are recorded,
    those they did not run are cancelled).

    The run is marked cancelled first, so no runner claims the jobs a cancelled batch gives back; batches
    formed but never sent give their jobs back (cancelled); then the batches at the provider are cancelled
    there and waited for (up to ``wait_s``) by the batch driver, which records their lines as a run would;
    then the jobs that came back pending are cancelled too. A batch whose create was sent but not
    recorded (a crash) is left to the next run's recovery.
    """
    settings = resolved(settings)
    async with open_store(settings.run.db) as store:
        found = await store.find_run(run)
        before = (await store.state_counts(found))["cancelled"]
        await _cancel_queue(store, found)
        live = await store.batches_of(found.id, live_only=True)
        unsent = await _drop_unsent(store, found, live)
        if not any(batch.remote_id for batch in live):
            return CancelReport(
                cancelled=(await store.state_counts(found))["cancelled"] - before, batches_dropped=len(unsent)
            )
        apis = BatchApis(settings)
        stop = asyncio.Event()
        options = BatchOptions(poll_s=poll_s, max_attempts=settings.run.max_attempts)
        driver = BatchDriver(store, found, apis, settings.prices, options, stop=stop)
        timer = asyncio.get_running_loop().call_later(wait_s, stop.set)
        try:
            asked = await driver.cancel_all()
            waited = await driver.wait()
        finally:
            timer.cancel()
            await apis.aclose()
        await _cancel_queue(store, found)  # what came back pending (the lines' own are cancelled as written)
        return CancelReport(
            cancelled=(await store.state_counts(found))["cancelled"] - before,
            batches_cancelled=asked,
            batch_succeeded=waited.succeeded,
            batch_failed=waited.failed,
            batches_still_cancelling=waited.still_live,
            batches_dropped=len(unsent),
        )


async def _drop_unsent(store: Store, run: RunInfo, live: list[BatchInfo]) -> list[BatchInfo]:
    """Batches never created at the provider give their jobs back (cancelled), so that a later run does
    not send them; but for one a live process is sending right now (it holds the batch)."""
    owners = await store.batch_owners(run.id)
    gone = [owner for owner in owners if owner_gone(owner)]
    me = f"{socket.gethostname()}:{os.getpid()}"
    dropped = []
    for batch in live:
        if batch.remote_id is not None or batch.submitted_at is not None:
            continue
        if await store.hold_batch(batch, me, HOLD_S, gone=gone):
            await store.release_batch(batch, BatchState.DONE, error="cancelled before it was sent")
            dropped.append(batch)
    return dropped


async def _cancel_queue(store: Store, run: RunInfo) -> int:
    return await store.cancel(
        run.id, host=socket.gethostname(), is_alive=pid_alive, stale_after_s=STALE_AFTER_S
    )
