"""Read-only queries for ``status`` and ``export``: aggregates, and jobs page by page in manifest order.

Exports read in short transactions of one page each, so a long export never pins an old snapshot and
SQLite's WAL can checkpoint meanwhile (docs/reliability.md rule 4).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, null, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.models import ExportRow, JobState, RunInfo, RunStats
from batchrunner.store import counters, tables
from batchrunner.store.database import Database

jobs, results, attempts = tables.jobs, tables.results, tables.attempts

Only = Literal["succeeded", "failed", "all"]

_last = attempts.alias("last_attempt")
"""``attempts`` as the export joins it: each job's last attempt (its status, request id, error body)."""
_later = attempts.alias("later")
_last_attempt_id = select(func.max(_later.c.id)).where(_later.c.job_id == jobs.c.id).scalar_subquery()
"""The id of the current job's last attempt: one probe of ``ix_attempts_job`` per row (the index holds
the row id), then a primary-key lookup. The last, not the highest ``number``: an attempt refunded by a
run-stopping error is numbered again by the next one."""


CLAIMED = "claimed"
"""Not a job state of its own: a running job whose request has not been sent (queued in a runner)."""
BATCHED = "batched"
"""Not a job state of its own either: a running job held by a provider batch (store/batches.py)."""


def _counts(state_rows: Sequence[tuple[str, int, int]]) -> dict[str, int]:
    """Jobs by state from ``run_counts`` rows (store/counters.py), every state present (zeros included).

    ``running`` counts the requests in flight now; ``claimed`` the jobs a runner holds but has not sent;
    ``batched`` the jobs live provider batches hold (sent, but answered in hours, not seconds).
    """
    counts = {state.value: 0 for state in JobState}
    counts[CLAIMED] = counts[BATCHED] = 0
    for key, count, _ in state_rows:
        counts[key] = counts.get(key, 0) + count
    return dict(sorted(counts.items(), key=lambda item: _ORDER.index(item[0])))


_ORDER = ["pending", CLAIMED, "running", BATCHED, "succeeded", "failed", "cancelled"]


async def state_counts(db: Database, run: RunInfo) -> dict[str, int]:
    """Jobs by state, every state present (zeros included)."""
    async with db.read() as conn:
        return _counts(await counters.read_counts(conn, run.id))


async def spent_usd(db: Database, run: RunInfo) -> Decimal:
    """The summed cost of the run's priced results."""
    async with db.read() as conn:
        return Decimal(str((await counters.read_totals(conn, run.id)).cost_usd))


async def run_stats(db: Database, run: RunInfo) -> RunStats:
    """Counts by state, attempts, tokens, cost, first/last activity and the most frequent error classes:
    a few rows of the run's counters (store/counters.py), whatever the run's size."""
    async with db.read() as conn:
        state_rows = await counters.read_counts(conn, run.id)
        totals = await counters.read_totals(conn, run.id)
        errors = (await counters.read_errors(conn, run.id))[:5]
    by_state = _counts(state_rows)
    return RunStats(
        run=run.name,
        total=sum(by_state.values()),
        by_state=by_state,
        attempts=totals.attempts + by_state["running"] + by_state[BATCHED],
        attempts_this_try=sum(attempts for *_, attempts in state_rows) - by_state[CLAIMED],
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cached_tokens=totals.cached_tokens,
        cost_usd=totals.cost_usd,
        priced_results=totals.priced_results,
        unpriced_results=totals.results - totals.priced_results,
        first_activity=totals.first_at,
        last_activity=totals.last_at,
        top_errors=errors,
    )


async def export_pages(
    db: Database, run: RunInfo, only: Only = "all", page_size: int = 2000, *, last_attempt: bool = False
) -> AsyncIterator[list[ExportRow]]:
    """Yield the run's jobs with their results in manifest order, one short read transaction per page.

    Each page is a range scan of the primary key from the last id seen (see :func:`_in_run`), so a page
    costs the same at the end of a million-row run as at its start. With ``last_attempt`` each row has
    its last attempt's status code, request id and error body (otherwise None): two index lookups a row,
    which cost a CSV export 14% (100,000 rows), so only the openai-batch export asks for them.
    """
    bounds = await _id_bounds(db, run)
    if bounds is None:
        return
    query = _export_query(run, only, page_size, last_attempt=last_attempt, last_id_of_run=bounds[1])

    async def page_after(last_id: int) -> Sequence[Sequence[Any]]:
        async with db.read() as conn:
            return await fetch_all(db, conn, query.where(jobs.c.id > last_id))

    last_id = bounds[0] - 1
    while rows := await page_after(last_id):
        yield list(map(ExportRow._make, rows))
        last_id = rows[-1][0]


_answered = or_(jobs.c.state == JobState.SUCCEEDED, jobs.c.state == JobState.FAILED)
_SERVED_BY = case(
    (and_(_answered, jobs.c.batch_id.is_(None)), literal("realtime")),
    (_answered, literal("batch")),
    else_=null(),
).label("served_by")
"""What answered a finished job: a job a provider batch answered keeps its ``batch_id``
(store/batches.py); one never answered (pending, running, cancelled) has none."""


def _export_query(
    run: RunInfo, only: Only, page_size: int, *, last_attempt: bool, last_id_of_run: int
) -> Select[Any]:
    """One page of the export, from the first job after an id the caller adds (``jobs.id > last``)."""
    tried: Any = jobs.outerjoin(results, results.c.job_id == jobs.c.id)
    attempt_columns: list[ColumnElement[Any]]
    if last_attempt:
        tried = tried.outerjoin(_last, _last.c.id == _last_attempt_id)
        attempt_columns = [_last.c.status_code, _last.c.request_id, _last.c.error_body]
    else:
        attempt_columns = [null().label(name) for name in ("status_code", "request_id", "error_body")]
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
            results.c.ttft_ms,
            *attempt_columns,
            _SERVED_BY,
        )
        .select_from(tried)
        .where(jobs.c.id <= last_id_of_run)
        .order_by(jobs.c.id)
        .limit(page_size)
    )
    if only == "all":
        query = query.where(_in_run(run))
    else:  # ix_jobs_claim (run_id, state, id) gives these rows in id order
        query = query.where(jobs.c.run_id == run.id, jobs.c.state == only)
    if tuple(query.selected_columns.keys()) != ExportRow._fields:  # pragma: no cover - a programming error
        raise AssertionError("the export query's columns must be ExportRow's fields, in order")
    return query


def _in_run(run: RunInfo) -> ColumnElement[bool]:
    """``jobs.run_id = :id`` written so that no index on ``run_id`` can serve it.

    A page is ``id > :last ORDER BY id LIMIT n``. Offered an index whose first column is ``run_id``,
    SQLite (which has no statistics) takes it, reads every remaining row of the run and sorts them, for
    every page: an export that is quadratic in the run's size (measured: 17,000 rows/s at 200,000 rows,
    9,700 at 1,000,000). ``run_id + 0`` leaves it the primary key: a range scan that stops after ``n``
    rows. A run's jobs are inserted together, so the ids between its first and last (the bounds given to
    the scan) are nearly all its own.
    """
    return (jobs.c.run_id + 0) == run.id


async def _id_bounds(db: Database, run: RunInfo) -> tuple[int, int] | None:
    """The first and last job id of a run (None: the run has no jobs)."""
    query = select(func.min(jobs.c.id), func.max(jobs.c.id)).where(jobs.c.run_id == run.id)
    async with db.read() as conn:
        first, last = (await conn.execute(query)).one()
    return None if first is None else (int(first), int(last))


async def metadata_keys(db: Database, run: RunInfo, page_size: int = 10_000) -> list[str]:
    """The top-level metadata keys used in a run, in first-seen order (the CSV's ``metadata.*`` columns)."""
    keys: dict[str, None] = {}
    bounds = await _id_bounds(db, run)
    if bounds is None:
        return []
    query = (
        select(jobs.c.id, jobs.c.metadata_json)
        .where(_in_run(run), jobs.c.id <= bounds[1], jobs.c.metadata_json.is_not(None))
        .order_by(jobs.c.id)
        .limit(page_size)
    )
    last_id = bounds[0] - 1
    while True:
        async with db.read() as conn:
            rows = await fetch_all(db, conn, query.where(jobs.c.id > last_id))
        if not rows:
            return list(keys)
        for _, metadata_json in rows:
            keys.update(dict.fromkeys(json.loads(metadata_json)))
        last_id = rows[-1][0]


async def fetch_all(db: Database, conn: AsyncConnection, query: Select[Any]) -> Sequence[Sequence[Any]]:
    """The rows of ``query`` as plain tuples; on SQLite straight from the driver.

    For an export page SQLAlchemy's result handling cost more than SQLite's own work: 6.9 us a row of
    these 18 columns through ``conn.execute(...).all()``, 2.5 us from the driver (200,000 rows). The
    statement is still built and compiled by SQLAlchemy, so the SQL is the same on both paths, and none
    of the columns read here has a result processor on SQLite (no timestamps), so neither are the
    values. One statement is its own consistent snapshot, as the page's read transaction was.
    """
    if not db.is_sqlite:
        result: Sequence[Sequence[Any]] = (await conn.execute(query)).all()
        return result
    compiled = query.compile(dialect=conn.dialect)
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    driver: Any = (await conn.get_raw_connection()).driver_connection  # an aiosqlite.Connection
    rows: Sequence[Sequence[Any]] = await driver.execute_fetchall(str(compiled), params)
    return rows
