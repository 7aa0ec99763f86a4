"""A run's running totals, kept by the database itself, so that ``status`` and the dashboard cost the same
on a run of a million jobs as on one of ten (docs/status-counters.md).

Triggers on ``jobs`` (insert, and an update of ``state``, ``sent``, ``batch_id`` or ``attempts``),
``attempts`` (insert) and ``results`` (insert) add each change to ``run_counts``, ``run_totals``,
``run_errors`` and ``run_seconds`` (tables.py) in the same transaction as the change. Every queue
transition is a set-based statement (a claim, a take-back with its CASEs, a batch released), and a
trigger sees each row's old and new values where the code that wrote the statement does not; no write
path can forget to count itself.

- SQLite: row triggers; writes are serialised, so one row per (run, key) (``shard`` 0). The one
  exception is the insert of jobs: a row trigger there made ``submit`` 1.2x slower, so the submit's
  inserter (store/submit.py, the only code that inserts jobs) adds each batch's count itself with
  :data:`SQLITE_COUNT_INSERTED`, in the insert's transaction.
- PostgreSQL: statement triggers over the transition tables (one upsert per key per statement, not per
  row), into rows of the writing connection's own ``shard`` (its backend pid): runners never wait on one
  another's counters, so counting adds no lock that could deadlock.

Jobs are never deleted but with their run, whose rows these tables lose with it (no trigger on delete).
:func:`recount` counts everything again from the rows themselves (migration 0009, and tests that check the
triggers against the truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, Integer, case, cast, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.store.database import int_sum
from batchrunner.store.tables import attempts, jobs, results, run_counts, run_errors, run_seconds, run_totals

__all__ = [
    "SQLITE_COUNT_INSERTED",
    "RunTotals",
    "install",
    "read_counts",
    "read_errors",
    "read_totals",
    "recount",
]

_SQLITE_KEY = (
    "CASE WHEN {p}.state = 'running' THEN CASE WHEN {p}.batch_id IS NOT NULL THEN 'batched' "
    "WHEN {p}.sent THEN 'running' ELSE 'claimed' END ELSE {p}.state END"
)
_SQLITE_ADD_JOB = (
    "INSERT INTO run_counts (run_id, shard, state_key, jobs, attempts) "
    "VALUES ({p}.run_id, 0, " + _SQLITE_KEY + ", {sign}1, {sign}{p}.attempts) "
    "ON CONFLICT (run_id, shard, state_key) DO UPDATE "
    "SET jobs = jobs + excluded.jobs, attempts = attempts + excluded.attempts;"
)
SQLITE_COUNT_INSERTED = (
    "INSERT INTO run_counts (run_id, shard, state_key, jobs, attempts) VALUES (?, 0, 'pending', ?, 0) "
    "ON CONFLICT (run_id, shard, state_key) DO UPDATE SET jobs = jobs + excluded.jobs"
)
"""Count ``(run_id, jobs)`` newly inserted jobs (pending, no attempts) on SQLite, which has no insert
trigger on ``jobs``: one statement a batch instead of a trigger a row."""
_SQLITE = [
    f"""CREATE TRIGGER tr_jobs_count_update AFTER UPDATE OF state, sent, batch_id, attempts ON jobs
WHEN ({_SQLITE_KEY.format(p="OLD")}) IS NOT ({_SQLITE_KEY.format(p="NEW")})
    OR OLD.attempts IS NOT NEW.attempts OR OLD.run_id IS NOT NEW.run_id
BEGIN
    {_SQLITE_ADD_JOB.format(p="OLD", sign="-")}
    {_SQLITE_ADD_JOB.format(p="NEW", sign="")}
END""",
    """CREATE TRIGGER tr_attempts_count AFTER INSERT ON attempts BEGIN
    INSERT INTO run_totals (run_id, shard, attempts, possibly_billed, first_at, last_at)
    SELECT run_id, 0, 1, NEW.possibly_billed, NEW.started_at, coalesce(NEW.finished_at, NEW.started_at)
    FROM jobs WHERE id = NEW.job_id
    ON CONFLICT (run_id, shard) DO UPDATE SET
        attempts = attempts + 1,
        possibly_billed = possibly_billed + excluded.possibly_billed,
        first_at = min(coalesce(first_at, excluded.first_at), excluded.first_at),
        last_at = max(coalesce(last_at, excluded.last_at), excluded.last_at);
    INSERT INTO run_errors (run_id, shard, error_class, count)
    SELECT run_id, 0, NEW.error_class, 1 FROM jobs WHERE id = NEW.job_id AND NEW.error_class IS NOT NULL
    ON CONFLICT (run_id, shard, error_class) DO UPDATE SET count = count + 1;
    INSERT INTO run_seconds (run_id, shard, second, outcome, attempts, tokens, rate_limited)
    SELECT run_id, 0, CAST(strftime('%s', coalesce(NEW.finished_at, NEW.started_at)) AS INTEGER),
        coalesce(NEW.error_class, ''), 1,
        CASE WHEN NEW.error_class IS NULL
            THEN coalesce(NEW.input_tokens, 0) + coalesce(NEW.output_tokens, 0) ELSE 0 END,
        NEW.status_code IS 429
    FROM jobs WHERE id = NEW.job_id
    ON CONFLICT (run_id, shard, second, outcome) DO UPDATE SET
        attempts = attempts + 1,
        tokens = tokens + excluded.tokens,
        rate_limited = rate_limited + excluded.rate_limited;
END""",
    """CREATE TRIGGER tr_results_count AFTER INSERT ON results BEGIN
    INSERT INTO run_totals (run_id, shard, results, priced_results, input_tokens, output_tokens,
        cached_tokens, cost_usd, batch_results, batch_cost_usd)
    SELECT run_id, 0, 1, NEW.cost_usd IS NOT NULL, NEW.input_tokens, NEW.output_tokens, NEW.cached_tokens,
        coalesce(NEW.cost_usd, 0.0), batch_id IS NOT NULL,
        CASE WHEN batch_id IS NOT NULL THEN coalesce(NEW.cost_usd, 0.0) ELSE 0.0 END
    FROM jobs WHERE id = NEW.job_id
    ON CONFLICT (run_id, shard) DO UPDATE SET
        results = results + 1,
        priced_results = priced_results + excluded.priced_results,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens,
        cost_usd = cost_usd + excluded.cost_usd,
        batch_results = batch_results + excluded.batch_results,
        batch_cost_usd = batch_cost_usd + excluded.batch_cost_usd;
END""",
]

_PG_ADD_JOBS = """
    INSERT INTO run_counts AS c (run_id, shard, state_key, jobs, attempts)
    SELECT run_id, pg_backend_pid(), state_key, sum(n), sum(a) FROM ({changes}) AS d
    GROUP BY run_id, state_key HAVING sum(n) <> 0 OR sum(a) <> 0
    ON CONFLICT (run_id, shard, state_key) DO UPDATE
    SET jobs = c.jobs + excluded.jobs, attempts = c.attempts + excluded.attempts;"""
_PG_ROWS = (
    "SELECT run_id, br_state_key(state, sent, batch_id) AS state_key, {sign}1 AS n, {sign}attempts AS a "
    "FROM {t}"
)
_PG_CHANGED = _PG_ROWS.format(sign="-", t="old_rows") + " UNION ALL " + _PG_ROWS.format(sign="", t="new_rows")
_PG = [
    """CREATE OR REPLACE FUNCTION br_state_key(state text, sent boolean, batch_id bigint) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN state = 'running' THEN CASE WHEN batch_id IS NOT NULL THEN 'batched'
        WHEN sent THEN 'running' ELSE 'claimed' END ELSE state END $$""",
    f"""CREATE OR REPLACE FUNCTION br_count_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_PG_ADD_JOBS.format(changes=_PG_ROWS.format(sign="", t="new_rows"))}
    RETURN NULL;
END $$""",
    f"""CREATE OR REPLACE FUNCTION br_count_jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_PG_ADD_JOBS.format(changes=_PG_CHANGED)}
    RETURN NULL;
END $$""",
    """CREATE OR REPLACE FUNCTION br_count_attempts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_totals AS t (run_id, shard, attempts, possibly_billed, first_at, last_at)
    SELECT j.run_id, pg_backend_pid(), count(*), count(*) FILTER (WHERE n.possibly_billed),
        min(n.started_at), max(coalesce(n.finished_at, n.started_at))
    FROM new_rows AS n JOIN jobs AS j ON j.id = n.job_id GROUP BY j.run_id
    ON CONFLICT (run_id, shard) DO UPDATE SET
        attempts = t.attempts + excluded.attempts,
        possibly_billed = t.possibly_billed + excluded.possibly_billed,
        first_at = LEAST(t.first_at, excluded.first_at),
        last_at = GREATEST(t.last_at, excluded.last_at);
    INSERT INTO run_errors AS e (run_id, shard, error_class, count)
    SELECT j.run_id, pg_backend_pid(), n.error_class, count(*)
    FROM new_rows AS n JOIN jobs AS j ON j.id = n.job_id WHERE n.error_class IS NOT NULL
    GROUP BY j.run_id, n.error_class
    ON CONFLICT (run_id, shard, error_class) DO UPDATE SET count = e.count + excluded.count;
    INSERT INTO run_seconds AS s (run_id, shard, second, outcome, attempts, tokens, rate_limited)
    SELECT j.run_id, pg_backend_pid(), floor(extract(epoch FROM coalesce(n.finished_at, n.started_at))),
        coalesce(n.error_class, ''), count(*),
        coalesce(sum(coalesce(n.input_tokens, 0) + coalesce(n.output_tokens, 0))
            FILTER (WHERE n.error_class IS NULL), 0),
        count(*) FILTER (WHERE n.status_code = 429)
    FROM new_rows AS n JOIN jobs AS j ON j.id = n.job_id GROUP BY 1, 3, 4
    ON CONFLICT (run_id, shard, second, outcome) DO UPDATE SET
        attempts = s.attempts + excluded.attempts,
        tokens = s.tokens + excluded.tokens,
        rate_limited = s.rate_limited + excluded.rate_limited;
    RETURN NULL;
END $$""",
    """CREATE OR REPLACE FUNCTION br_count_results_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_totals AS t (run_id, shard, results, priced_results, input_tokens, output_tokens,
        cached_tokens, cost_usd, batch_results, batch_cost_usd)
    SELECT j.run_id, pg_backend_pid(), count(*), count(n.cost_usd), sum(n.input_tokens),
        sum(n.output_tokens), sum(n.cached_tokens), coalesce(sum(n.cost_usd), 0.0),
        count(*) FILTER (WHERE j.batch_id IS NOT NULL),
        coalesce(sum(n.cost_usd) FILTER (WHERE j.batch_id IS NOT NULL), 0.0)
    FROM new_rows AS n JOIN jobs AS j ON j.id = n.job_id GROUP BY j.run_id
    ON CONFLICT (run_id, shard) DO UPDATE SET
        results = t.results + excluded.results,
        priced_results = t.priced_results + excluded.priced_results,
        input_tokens = t.input_tokens + excluded.input_tokens,
        output_tokens = t.output_tokens + excluded.output_tokens,
        cached_tokens = t.cached_tokens + excluded.cached_tokens,
        cost_usd = t.cost_usd + excluded.cost_usd,
        batch_results = t.batch_results + excluded.batch_results,
        batch_cost_usd = t.batch_cost_usd + excluded.batch_cost_usd;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER tr_jobs_count_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION br_count_jobs_inserted()""",
    """CREATE TRIGGER tr_jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION br_count_jobs_updated()""",
    """CREATE TRIGGER tr_attempts_count AFTER INSERT ON attempts REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION br_count_attempts_inserted()""",
    """CREATE TRIGGER tr_results_count AFTER INSERT ON results REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION br_count_results_inserted()""",
]


def install(conn: Connection) -> None:
    """Create the counters' tables and triggers, and count what is already there (migration 0009)."""
    for table in (run_counts, run_totals, run_errors, run_seconds):
        table.create(conn, checkfirst=True)
    for statement in _SQLITE if conn.dialect.name == "sqlite" else _PG:
        conn.execute(text(statement))
    recount(conn)


def state_key() -> Any:
    """The key of ``run_counts`` for a job row, as the triggers compute it."""
    return case(
        (
            jobs.c.state == "running",
            case((jobs.c.batch_id.is_not(None), "batched"), (jobs.c.sent, "running"), else_="claimed"),
        ),
        else_=jobs.c.state,
    )


def recount(conn: Connection, run_id: int | None = None) -> None:
    """Count a run (every run by default) again from its rows, into shard 0, replacing its counters.

    Inside a write transaction; on PostgreSQL concurrent writers would be counted twice or not at all,
    so this runs where nothing else writes (a migration holds the migration lock; tests call it idle).
    """

    def only(column: ColumnElement[Any]) -> ColumnElement[bool]:
        return column == run_id if run_id is not None else column.is_not(None)

    for table in (run_counts, run_totals, run_errors, run_seconds):
        conn.execute(table.delete().where(only(table.c.run_id)))
    key = state_key()
    conn.execute(
        run_counts.insert().from_select(
            ["run_id", "shard", "state_key", "jobs", "attempts"],
            select(jobs.c.run_id, literal(0), key, func.count(), func.coalesce(func.sum(jobs.c.attempts), 0))
            .where(only(jobs.c.run_id))
            .group_by(jobs.c.run_id, key),
        )
    )
    tried = attempts.join(jobs, jobs.c.id == attempts.c.job_id)
    batched = jobs.c.batch_id.is_not(None)
    rows: dict[int, dict[str, Any]] = {}
    attempt_sums = (
        select(
            jobs.c.run_id,
            func.count(),
            func.count().filter(attempts.c.possibly_billed.is_(True)),
            func.min(attempts.c.started_at).label("first_at"),
            func.max(func.coalesce(attempts.c.finished_at, attempts.c.started_at)).label("last_at"),
        )
        .select_from(tried)
        .where(only(jobs.c.run_id))
        .group_by(jobs.c.run_id)
    )
    for run, count, billed, first_at, last_at in conn.execute(attempt_sums):
        rows[run] = _blank_totals(run) | {
            "attempts": count,
            "possibly_billed": billed,
            "first_at": first_at,
            "last_at": last_at,
        }
    result_sums = (
        select(
            jobs.c.run_id,
            func.count(),
            func.count(results.c.cost_usd),
            func.coalesce(func.sum(results.c.input_tokens), 0),
            func.coalesce(func.sum(results.c.output_tokens), 0),
            func.coalesce(func.sum(results.c.cached_tokens), 0),
            func.coalesce(func.sum(results.c.cost_usd), 0.0),
            func.count().filter(batched),
            func.coalesce(func.sum(results.c.cost_usd).filter(batched), 0.0),
        )
        .select_from(results.join(jobs, jobs.c.id == results.c.job_id))
        .where(only(jobs.c.run_id))
        .group_by(jobs.c.run_id)
    )
    for run, *sums in conn.execute(result_sums):
        names = ("results", "priced_results", "input_tokens", "output_tokens", "cached_tokens", "cost_usd",
                 "batch_results", "batch_cost_usd")  # fmt: skip
        rows.setdefault(run, _blank_totals(run)).update(zip(names, sums, strict=True))
    if rows:
        conn.execute(run_totals.insert(), list(rows.values()))
    conn.execute(
        run_errors.insert().from_select(
            ["run_id", "shard", "error_class", "count"],
            select(jobs.c.run_id, literal(0), attempts.c.error_class, func.count())
            .select_from(tried)
            .where(only(jobs.c.run_id), attempts.c.error_class.is_not(None))
            .group_by(jobs.c.run_id, attempts.c.error_class),
        )
    )
    second = epoch_second(conn, func.coalesce(attempts.c.finished_at, attempts.c.started_at))
    outcome = func.coalesce(attempts.c.error_class, "")
    answered_tokens = func.coalesce(attempts.c.input_tokens, 0) + func.coalesce(attempts.c.output_tokens, 0)
    conn.execute(
        run_seconds.insert().from_select(
            ["run_id", "shard", "second", "outcome", "attempts", "tokens", "rate_limited"],
            select(
                jobs.c.run_id,
                literal(0),
                second,
                outcome,
                func.count(),
                func.coalesce(func.sum(answered_tokens).filter(attempts.c.error_class.is_(None)), 0),
                func.count().filter(attempts.c.status_code == 429),
            )
            .select_from(tried)
            .where(only(jobs.c.run_id))
            .group_by(jobs.c.run_id, second, outcome),
        )
    )


def epoch_second(conn: Connection, moment: ColumnElement[Any]) -> ColumnElement[int]:
    """The whole Unix second of a timestamp column, as the triggers compute it."""
    if conn.dialect.name == "sqlite":
        return cast(func.strftime("%s", moment), Integer)
    return cast(func.floor(func.extract("epoch", moment)), BigInteger)


def _blank_totals(run_id: int) -> dict[str, Any]:
    return {
        "run_id": run_id, "shard": 0, "attempts": 0, "possibly_billed": 0, "first_at": None, "last_at": None,
        "results": 0, "priced_results": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0,
        "cost_usd": 0.0, "batch_results": 0, "batch_cost_usd": 0.0,
    }  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class RunTotals:
    """A run's ``run_totals`` summed over shards."""

    attempts: int = 0
    possibly_billed: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    results: int = 0
    priced_results: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    batch_results: int = 0
    batch_cost_usd: float = 0.0


async def read_counts(conn: AsyncConnection, run_id: int) -> Sequence[tuple[str, int, int]]:
    """``(state key, jobs, summed attempts)`` of the run, over shards."""
    query = (
        select(run_counts.c.state_key, int_sum(run_counts.c.jobs), int_sum(run_counts.c.attempts))
        .where(run_counts.c.run_id == run_id)
        .group_by(run_counts.c.state_key)
    )
    return [(str(key), int(n), int(a)) for key, n, a in await conn.execute(query)]


async def read_totals(conn: AsyncConnection, run_id: int) -> RunTotals:
    c = run_totals.c
    query = select(
        int_sum(c.attempts),
        int_sum(c.possibly_billed),
        func.min(c.first_at),
        func.max(c.last_at),
        int_sum(c.results),
        int_sum(c.priced_results),
        int_sum(c.input_tokens),
        int_sum(c.output_tokens),
        int_sum(c.cached_tokens),
        func.coalesce(func.sum(c.cost_usd), 0.0),
        int_sum(c.batch_results),
        func.coalesce(func.sum(c.batch_cost_usd), 0.0),
    ).where(c.run_id == run_id)
    row = (await conn.execute(query)).one()
    return RunTotals(
        attempts=int(row[0]),
        possibly_billed=int(row[1]),
        first_at=row[2],
        last_at=row[3],
        results=int(row[4]),
        priced_results=int(row[5]),
        input_tokens=int(row[6]),
        output_tokens=int(row[7]),
        cached_tokens=int(row[8]),
        cost_usd=float(row[9]),
        batch_results=int(row[10]),
        batch_cost_usd=float(row[11]),
    )


async def read_errors(conn: AsyncConnection, run_id: int) -> list[tuple[str, int]]:
    """The run's attempts by error class, most frequent first."""
    total = int_sum(run_errors.c.count)
    query = (
        select(run_errors.c.error_class, total)
        .where(run_errors.c.run_id == run_id)
        .group_by(run_errors.c.error_class)
        .order_by(total.desc(), run_errors.c.error_class)
    )
    return [(str(cls), int(n)) for cls, n in await conn.execute(query) if int(n)]
