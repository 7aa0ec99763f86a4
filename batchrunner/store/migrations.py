"""Named, ordered schema migrations, recorded in the ``schema_migrations`` table.

Each migration runs once, in order, inside the write transaction that records it, so a crash mid-way
leaves the schema as it was. A new schema change is a new function appended to ``MIGRATIONS``; a
migration that has shipped is never edited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.policy.histogram import bucket_of
from batchrunner.store import counters, tables
from batchrunner.store.database import Database
from batchrunner.store.writeback import SLOT_WIDTHS, slot_rows

Migration = Callable[[Connection], None]


def m0001_initial(conn: Connection) -> None:
    """Runs, runners, jobs, attempts and results (as tables.py describes them now)."""
    initial = [tables.runs, tables.runners, tables.jobs, tables.attempts, tables.results]
    tables.metadata.create_all(conn, tables=initial)


def m0002_runner_limits(conn: Connection) -> None:
    """What each runner enforces (concurrency, RPM, TPM per provider), for ``status``.

    A database created after this column joined tables.py already has it from 0001.
    """
    if "limits_json" not in {column["name"] for column in inspect(conn).get_columns("runners")}:
        conn.execute(text("ALTER TABLE runners ADD COLUMN limits_json TEXT"))


def m0003_provider_pauses(conn: Connection) -> None:
    """Provider pauses shared by the runners of a run."""
    tables.provider_pauses.create(conn, checkfirst=True)


def m0004_run_record(conn: Connection) -> None:
    """What a run remembers (its settings, when it was last used, a cancel) and which attempt was sent.

    ``jobs.sent``: the current attempt's request was sent (Store.mark_sent); a running job of a runner
    that died was in flight if it is set.
    """
    present = {column["name"] for column in inspect(conn).get_columns("runs")}
    for name, kind in (
        ("settings_json", "TEXT"),
        ("last_used_at", _timestamp(conn)),
        ("cancelled_at", _timestamp(conn)),
    ):
        if name not in present:
            conn.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {kind}"))
    if "sent" not in {column["name"] for column in inspect(conn).get_columns("jobs")}:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN sent BOOLEAN NOT NULL DEFAULT false"))


def _timestamp(conn: Connection) -> str:
    """The column type tables.UTCDateTime has on this backend."""
    return "DATETIME" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"


def m0005_attempt_error_body(conn: Connection) -> None:
    """The provider's error answer of each attempt (``attempts.error_body``), for the openai-batch export.

    A database created after this column joined tables.py already has it from 0001.
    """
    if "error_body" not in {column["name"] for column in inspect(conn).get_columns("attempts")}:
        conn.execute(text("ALTER TABLE attempts ADD COLUMN error_body TEXT"))


def m0006_streamed_answers(conn: Connection) -> None:
    """Time to first token (``attempts.ttft_ms``, ``results.ttft_ms``) and a streamed answer's raw
    events (``results.stream_events``, zlib-packed), for streamed requests (docs/streaming.md).

    A database created after these columns joined tables.py already has them from 0001.
    """
    blob = "BLOB" if conn.dialect.name == "sqlite" else "BYTEA"
    for table, name, kind in (
        ("attempts", "ttft_ms", "FLOAT"),
        ("results", "ttft_ms", "FLOAT"),
        ("results", "stream_events", blob),
    ):
        if name not in {column["name"] for column in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def m0007_provider_batches(conn: Connection) -> None:
    """Provider batch mode (docs/batch.md): the ``batches`` table, ``jobs.batch_id`` and the result line a
    provider batch gave (``results.batch_line``).

    A database created after the columns joined tables.py already has them from 0001.
    """
    tables.batches.create(conn, checkfirst=True)
    if "batch_line" not in {column["name"] for column in inspect(conn).get_columns("results")}:
        conn.execute(text("ALTER TABLE results ADD COLUMN batch_line TEXT"))
    if "batch_id" not in {column["name"] for column in inspect(conn).get_columns("jobs")}:
        kind = "INTEGER" if conn.dialect.name == "sqlite" else "BIGINT"
        conn.execute(text(f"ALTER TABLE jobs ADD COLUMN batch_id {kind}"))
    if "ix_jobs_batch" not in {index["name"] for index in inspect(conn).get_indexes("jobs")}:
        conn.execute(text("CREATE INDEX ix_jobs_batch ON jobs (batch_id)"))


def m0008_latency_histograms(conn: Connection) -> None:
    """Latency histograms per run (``latencies``, policy/histogram.py) for ``status``'s percentiles, counted
    from the attempts already recorded; ``ix_attempts_finished`` for the last minute's figures."""
    tables.latencies.create(conn, checkfirst=True)
    if "ix_attempts_finished" not in {index["name"] for index in inspect(conn).get_indexes("attempts")}:
        conn.execute(text("CREATE INDEX ix_attempts_finished ON attempts (finished_at)"))
    counts: Counter[tuple[int, str, int]] = Counter()
    attempts, jobs = tables.attempts, tables.jobs
    query = (
        select(jobs.c.run_id, attempts.c.latency_ms, attempts.c.ttft_ms)
        .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
        .where(attempts.c.latency_ms.is_not(None))
    )
    for run_id, latency, ttft in conn.execute(query):
        counts[run_id, "latency", bucket_of(latency)] += 1
        if ttft is not None:
            counts[run_id, "ttft", bucket_of(ttft)] += 1
    if counts:
        rows = [{"run_id": r, "kind": k, "bucket": b, "count": n} for (r, k, b), n in counts.items()]
        conn.execute(tables.latencies.insert(), rows)


def m0009_run_counters(conn: Connection) -> None:
    """A run's running totals kept by triggers (store/counters.py) and its latencies by time slot,
    counted from the rows already there; ``ix_jobs_finished``, ``ix_attempts_interrupted`` and
    ``ix_attempts_failed`` for the rest of ``status`` and the dashboard."""
    if "ix_jobs_finished" not in {index["name"] for index in inspect(conn).get_indexes("jobs")}:
        conn.execute(text("CREATE INDEX ix_jobs_finished ON jobs (run_id, finished_at, state)"))
    if "ix_attempts_interrupted" not in {index["name"] for index in inspect(conn).get_indexes("attempts")}:
        where = "WHERE error_class = 'interrupted'"
        conn.execute(text(f"CREATE INDEX ix_attempts_interrupted ON attempts (error_class, job_id) {where}"))
    if "ix_attempts_failed" not in {index["name"] for index in inspect(conn).get_indexes("attempts")}:
        where = "WHERE error_class IS NOT NULL"
        conn.execute(text(f"CREATE INDEX ix_attempts_failed ON attempts (finished_at) {where}"))
    counters.install(conn)
    tables.latency_slots.create(conn, checkfirst=True)
    by_slot: Counter[tuple[int, int, int, str, int]] = Counter()
    attempts, jobs = tables.attempts, tables.jobs
    query = (
        select(
            jobs.c.run_id,
            attempts.c.started_at,
            attempts.c.finished_at,
            attempts.c.latency_ms,
            attempts.c.ttft_ms,
        )
        .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
        .where(attempts.c.latency_ms.is_not(None))
    )
    for run_id, started, finished, latency, ttft in conn.execute(query):
        second = int((finished or started).timestamp())
        for width in SLOT_WIDTHS:
            start = second - second % width
            by_slot[run_id, width, start, "latency", bucket_of(latency)] += 1
            if ttft is not None:
                by_slot[run_id, width, start, "ttft", bucket_of(ttft)] += 1
    if by_slot:
        conn.execute(tables.latency_slots.insert(), slot_rows(by_slot))


def m0010_leased_jobs_index(conn: Connection) -> None:
    """``ix_jobs_leased``: running jobs by their lease owner (tables.py)."""
    if "ix_jobs_leased" not in {index["name"] for index in inspect(conn).get_indexes("jobs")}:
        conn.execute(text("CREATE INDEX ix_jobs_leased ON jobs (lease_owner) WHERE state = 'running'"))


MIGRATIONS: list[tuple[str, Migration]] = [
    ("0001_initial", m0001_initial),
    ("0002_runner_limits", m0002_runner_limits),
    ("0003_provider_pauses", m0003_provider_pauses),
    ("0004_run_record", m0004_run_record),
    ("0005_attempt_error_body", m0005_attempt_error_body),
    ("0006_streamed_answers", m0006_streamed_answers),
    ("0007_provider_batches", m0007_provider_batches),
    ("0008_latency_histograms", m0008_latency_histograms),
    ("0009_run_counters", m0009_run_counters),
    ("0010_leased_jobs_index", m0010_leased_jobs_index),
]


async def migrate(db: Database) -> list[str]:
    """Apply the migrations this database has not had yet; return their names."""
    async with db.write() as conn:
        if not db.is_sqlite:
            # Two runners starting at once on PostgreSQL: the second waits here, then finds nothing to do.
            await conn.execute(text("SELECT pg_advisory_xact_lock(724201)"))
        await conn.run_sync(lambda sync: tables.schema_migrations.create(sync, checkfirst=True))
        applied = set((await conn.execute(select(tables.schema_migrations.c.name))).scalars())
        done: list[str] = []
        for name, migration in MIGRATIONS:
            if name in applied:
                continue
            await conn.run_sync(migration)
            await _record(conn, name)
            done.append(name)
        return done


async def _record(conn: AsyncConnection, name: str) -> None:
    await conn.execute(tables.schema_migrations.insert().values(name=name, applied_at=datetime.now(UTC)))


__all__ = ["MIGRATIONS", "migrate"]
