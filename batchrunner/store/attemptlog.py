"""What ``batchrunner attempts`` reads: the attempts of a run, of one job, or its failed ones, newest first.

One indexed read: by job (``ix_attempts_job``) for ``--job``, else the attempts table's primary key
backwards, joined to each attempt's job for its run and custom id, so the latest N of a million-job run
cost N rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from batchrunner.models import AttemptRow, RunInfo
from batchrunner.store.database import Database
from batchrunner.store.tables import attempts, jobs

__all__ = ["attempt_row_select", "attempt_rows", "fetch_attempt_rows"]


def attempt_row_select() -> Any:
    """The columns of :class:`AttemptRow`: each attempt joined to its job (callers add where and order)."""
    return select(
        jobs.c.custom_id,
        jobs.c.provider,
        jobs.c.model,
        attempts.c.number,
        attempts.c.runner_id,
        attempts.c.started_at,
        attempts.c.finished_at,
        attempts.c.status_code,
        attempts.c.error_class,
        attempts.c.error_message,
        attempts.c.latency_ms,
        attempts.c.ttft_ms,
        attempts.c.input_tokens,
        attempts.c.output_tokens,
        attempts.c.possibly_billed,
        attempts.c.request_id,
    ).select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))


async def fetch_attempt_rows(db: Database, query: Any) -> list[AttemptRow]:
    async with db.read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [AttemptRow(**dict(row)) for row in rows]


async def attempt_rows(
    db: Database, run: RunInfo, *, custom_id: str | None = None, failed: bool = False, limit: int = 20
) -> list[AttemptRow]:
    """The run's attempts, newest first: of the job ``custom_id`` only, or only those that failed."""
    query = attempt_row_select().where(jobs.c.run_id == run.id).order_by(attempts.c.id.desc()).limit(limit)
    if custom_id is not None:
        query = query.where(jobs.c.custom_id == custom_id)
    if failed:
        query = query.where(attempts.c.error_class.is_not(None))
    return await fetch_attempt_rows(db, query)
