"""What ``status`` reads of a run's provider batches: the batches, and what was paid at batch price.

A job a provider batch answered keeps its ``batch_id`` once it succeeded or failed (store/batches.py), so
the results of jobs with a ``batch_id`` are those paid at the provider's batch price.
"""

from __future__ import annotations

from batchrunner.models import BatchesSummary, RunInfo
from batchrunner.store import counters
from batchrunner.store.batches import BatchStoreOps
from batchrunner.store.database import Database


async def batch_summary(db: Database, run: RunInfo) -> BatchesSummary:
    """The run's batches (oldest first) and its results' count and cost, at batch price and in all (from
    its counters, store/counters.py)."""
    async with db.read() as conn:
        totals = await counters.read_totals(conn, run.id)
    return BatchesSummary(
        batches=await BatchStoreOps(db).batches_of(run.id),
        batch_results=totals.batch_results,
        batch_cost_usd=totals.batch_cost_usd,
        all_results=totals.results,
        all_cost_usd=totals.cost_usd,
    )
