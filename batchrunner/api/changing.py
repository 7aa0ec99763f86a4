"""The verbs that change a run's queue from outside a runner: ``retry_failed`` and ``cancel``."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from batchrunner.api.session import open_store, resolved
from batchrunner.config import Settings
from batchrunner.engine.batchdriver import BatchDriver, BatchOptions
from batchrunner.engine.liveness import STALE_AFTER_S, pid_alive
from batchrunner.models import BatchState, RunInfo
from batchrunner.providers.batchapi import BatchApi, open_batch_api
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
        unsent = [batch for batch in live if batch.remote_id is None and batch.submitted_at is None]
        for batch in unsent:  # never created at the provider: a later run must not send them
            await store.release_batch(batch, BatchState.DONE, error="cancelled before it was sent")
        if not any(batch.remote_id for batch in live):
            return CancelReport(
                cancelled=(await store.state_counts(found))["cancelled"] - before, batches_dropped=len(unsent)
            )
        apis = _Apis(settings)
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


async def _cancel_queue(store: Store, run: RunInfo) -> int:
    return await store.cancel(
        run.id, host=socket.gethostname(), is_alive=pid_alive, stale_after_s=STALE_AFTER_S
    )


class _Apis:
    """Each provider's batch API, opened once, closed at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.opened: dict[str, BatchApi] = {}

    def __call__(self, name: str) -> BatchApi:
        api = self.opened.get(name)
        if api is None:
            built = open_batch_api(self.settings.provider_settings(name))
            if built is None:
                raise ValueError(f"provider {name} has no batch API")
            api = self.opened[name] = built
        return api

    async def aclose(self) -> None:
        for api in self.opened.values():
            await api.aclose()
