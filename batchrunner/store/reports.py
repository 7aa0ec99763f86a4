"""Read-only queries for ``status`` and ``export``: aggregates, and jobs page by page in manifest order.

Exports read in short transactions of one page each, so a long export never pins an old snapshot and
SQLite's WAL can checkpoint meanwhile (RELIABILITY.md rule 4).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Literal

from sqlalchemy import func, select

from batchrunner.models import JobState, RunInfo
from batchrunner.store import tables
from batchrunner.store.database import Database
from batchrunner.store.records import ExportRow, RunStats

jobs, results, attempts = tables.jobs, tables.results, tables.attempts

Only = Literal["succeeded", "failed", "all"]


async def run_stats(db: Database, run: RunInfo) -> RunStats:
    """Counts by state, attempts, tokens, cost, first/last activity and the most frequent error classes."""
    by_state_q = (
        select(jobs.c.state, func.count(), func.coalesce(func.sum(jobs.c.attempts), 0))
        .where(jobs.c.run_id == run.id)
        .group_by(jobs.c.state)
    )
    usage_q = (
        select(
            func.coalesce(func.sum(results.c.input_tokens), 0),
            func.coalesce(func.sum(results.c.output_tokens), 0),
            func.coalesce(func.sum(results.c.cached_tokens), 0),
            func.coalesce(func.sum(results.c.cost_usd), 0.0),
            func.count(results.c.cost_usd),
        )
        .select_from(results.join(jobs, jobs.c.id == results.c.job_id))
        .where(jobs.c.run_id == run.id)
    )
    run_attempts = attempts.join(jobs, jobs.c.id == attempts.c.job_id)
    activity_q = (
        select(
            func.min(attempts.c.started_at),
            func.max(func.coalesce(attempts.c.finished_at, attempts.c.started_at)),
        )
        .select_from(run_attempts)
        .where(jobs.c.run_id == run.id)
    )
    errors_q = (
        select(attempts.c.error_class, func.count().label("n"))
        .select_from(run_attempts)
        .where(jobs.c.run_id == run.id, attempts.c.error_class.is_not(None))
        .group_by(attempts.c.error_class)
        .order_by(func.count().desc(), attempts.c.error_class)
        .limit(5)
    )
    async with db.read() as conn:
        state_rows = (await conn.execute(by_state_q)).all()
        usage = (await conn.execute(usage_q)).one()
        first, last = (await conn.execute(activity_q)).one()
        errors = [(str(cls), int(n)) for cls, n in await conn.execute(errors_q)]
    by_state = {state.value: 0 for state in JobState}
    for state, count, _ in state_rows:
        by_state[state] = int(count)
    return RunStats(
        run=run.name,
        total=sum(by_state.values()),
        by_state=by_state,
        attempts=sum(int(n) for _, _, n in state_rows),
        input_tokens=int(usage[0]),
        output_tokens=int(usage[1]),
        cached_tokens=int(usage[2]),
        cost_usd=float(usage[3]),
        priced_results=int(usage[4]),
        first_activity=first,
        last_activity=last,
        top_errors=errors,
    )


async def export_pages(
    db: Database, run: RunInfo, only: Only = "all", page_size: int = 2000
) -> AsyncIterator[list[ExportRow]]:
    """Yield the run's jobs with their results in manifest order, one short read transaction per page."""
    query = (
        select(
            jobs.c.id.label("job_id"),
            jobs.c.custom_id,
            jobs.c.state,
            jobs.c.provider,
            jobs.c.endpoint,
            jobs.c.model,
            jobs.c.request_json,
            jobs.c.metadata_json,
            jobs.c.attempts,
            jobs.c.last_error_class.label("error_class"),
            jobs.c.last_error.label("error"),
            results.c.output_text,
            results.c.response_json,
            results.c.input_tokens,
            results.c.output_tokens,
            results.c.cached_tokens,
            results.c.cost_usd,
            results.c.latency_ms,
        )
        .select_from(jobs.outerjoin(results, results.c.job_id == jobs.c.id))
        .where(jobs.c.run_id == run.id)
        .order_by(jobs.c.id)
        .limit(page_size)
    )
    if only != "all":
        query = query.where(jobs.c.state == only)
    last_id = 0
    while True:
        async with db.read() as conn:
            rows = (await conn.execute(query.where(jobs.c.id > last_id))).all()
        if not rows:
            return
        yield [ExportRow(**row._mapping) for row in rows]
        last_id = rows[-1][0]


async def metadata_keys(db: Database, run: RunInfo, page_size: int = 10_000) -> list[str]:
    """The top-level metadata keys used in a run, in first-seen order (the CSV's ``metadata.*`` columns)."""
    keys: dict[str, None] = {}
    query = (
        select(jobs.c.id, jobs.c.metadata_json)
        .where(jobs.c.run_id == run.id, jobs.c.metadata_json.is_not(None))
        .order_by(jobs.c.id)
        .limit(page_size)
    )
    last_id = 0
    while True:
        async with db.read() as conn:
            rows = (await conn.execute(query.where(jobs.c.id > last_id))).all()
        if not rows:
            return list(keys)
        for _, metadata_json in rows:
            keys.update(dict.fromkeys(json.loads(metadata_json)))
        last_id = rows[-1][0]
