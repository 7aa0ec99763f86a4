"""What ``estimate`` reads of a run: its queued requests page by page, and its answers so far per model.

Both are read-only; the requests are read in short transactions of one page each (as exports are,
docs/reliability.md rule 4), so estimating a million-job run holds one page in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import func, select

from batchrunner.models import JobState, RunInfo
from batchrunner.policy.estimate import Answered
from batchrunner.store.database import Database
from batchrunner.store.reports import fetch_all
from batchrunner.store.tables import jobs, results

__all__ = ["answered_by_model", "queued_requests"]


async def queued_requests(
    db: Database, run: RunInfo, page_size: int = 2000
) -> AsyncIterator[Sequence[Sequence[Any]]]:
    """The run's pending jobs as pages of ``(id, provider, model, endpoint, request_json)``, by id."""
    query = (
        select(jobs.c.id, jobs.c.provider, jobs.c.model, jobs.c.endpoint, jobs.c.request_json)
        .where(jobs.c.run_id == run.id, jobs.c.state == JobState.PENDING)
        .order_by(jobs.c.id)
        .limit(page_size)
    )
    last_id = 0
    while True:
        async with db.read() as conn:
            rows = await fetch_all(db, conn, query.where(jobs.c.id > last_id))
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]


async def answered_by_model(db: Database, run: RunInfo) -> dict[tuple[str, str | None], Answered]:
    """The run's results so far per (provider, model): how many, their output tokens, their mean latency."""
    query = (
        select(
            jobs.c.provider,
            jobs.c.model,
            func.count(),
            func.coalesce(func.sum(results.c.output_tokens), 0),
            func.avg(results.c.latency_ms),
        )
        .select_from(jobs.join(results, results.c.job_id == jobs.c.id))
        .where(jobs.c.run_id == run.id)
        .group_by(jobs.c.provider, jobs.c.model)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return {
        (provider, model): Answered(
            results=int(count),
            output_tokens=int(output),
            mean_latency_ms=None if latency is None else float(latency),
        )
        for provider, model, count, output, latency in rows
    }
