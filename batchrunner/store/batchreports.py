"""What ``status`` reads of a run's provider batches: the batches, and what was paid at batch price.

A job a provider batch answered keeps its ``batch_id`` once it succeeded or failed (store/batches.py), so
the results of jobs with a ``batch_id`` are those paid at the provider's batch price.
"""

from __future__ import annotations

from sqlalchemy import func, select

from batchrunner.models import BatchesSummary, RunInfo
from batchrunner.store.batches import BatchStoreOps
from batchrunner.store.database import Database
from batchrunner.store.tables import jobs, results


async def batch_summary(db: Database, run: RunInfo) -> BatchesSummary:
    """The run's batches (oldest first) and its results' count and cost, at batch price and in all."""
    batched = jobs.c.batch_id.is_not(None)
    query = (
        select(
            func.count().filter(batched),
            func.coalesce(func.sum(results.c.cost_usd).filter(batched), 0.0),
            func.count(),
            func.coalesce(func.sum(results.c.cost_usd), 0.0),
        )
        .select_from(results.join(jobs, jobs.c.id == results.c.job_id))
        .where(jobs.c.run_id == run.id)
    )
    async with db.read() as conn:
        batch_results, batch_cost, all_results, all_cost = (await conn.execute(query)).one()
    return BatchesSummary(
        batches=await BatchStoreOps(db).batches_of(run.id),
        batch_results=int(batch_results),
        batch_cost_usd=float(batch_cost),
        all_results=int(all_results),
        all_cost_usd=float(all_cost),
    )
