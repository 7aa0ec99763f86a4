"""The store: one database (SQLite or PostgreSQL) behind one object, for the verbs and the engine.

All queue logic that touches the database lives in this package (STYLE habit 11): the transitions of a
job in :mod:`batchrunner.store.queue`, submitting in :mod:`~batchrunner.store.submit`, the figures in
:mod:`~batchrunner.store.reports`, :mod:`~batchrunner.store.insights` and
:mod:`~batchrunner.store.batchreports`, the runners table in
:mod:`~batchrunner.store.runners`. :class:`Store` puts them behind one object and manages the runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.errors import UsageError
from batchrunner.models import (
    AttemptRow,
    BatchesSummary,
    ExportRow,
    JobState,
    Lease,
    RunInfo,
    RunStats,
    TimingFigures,
)
from batchrunner.policy.estimate import Answered
from batchrunner.store import (
    attemptlog,
    batchreports,
    estimates,
    insights,
    reports,
    runners,
    tables,
    timeline,
    timing,
)
from batchrunner.store.batches import BatchStoreOps
from batchrunner.store.database import Database, int_sum, resolve_url, store_error, utcnow
from batchrunner.store.migrations import migrate
from batchrunner.store.queue import Queue
from batchrunner.store.submit import JobInserter

jobs = tables.jobs


class Store(Queue, BatchStoreOps):
    """One database: its runs, the queue's transitions (:class:`Queue`), reports and runners.

    The engine sees only the :class:`batchrunner.store.base.EngineStore` part of it.
    """

    @classmethod
    async def open(cls, target: str, *, create: bool = True) -> Store:
        """Open (and create or migrate) the database at a path or SQLAlchemy URL.

        With ``create=False`` a SQLite file that does not exist is a UsageError instead of a new, empty
        database (``status`` on a mistyped path should say so, not leave a file behind).
        """
        url = resolve_url(target)
        if not create and _missing_sqlite_file(url.database if url.get_backend_name() == "sqlite" else None):
            raise UsageError(f"no database at {url.database}: submit a manifest first, or pass --db")
        try:
            db = Database(url)
        except OSError as exc:  # the database file or its directory cannot be created
            raise store_error(url, exc) from exc
        try:
            await migrate(db)
        except OSError as exc:  # e.g. PostgreSQL refused the connection
            await db.dispose()
            raise store_error(url, exc) from exc
        except BaseException:
            await db.dispose()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.dispose()

    # -- runs -------------------------------------------------------------------------------------

    async def find_run(self, name: str | None) -> RunInfo:
        """The named run, or the latest one (the one most recently submitted, run, retried or cancelled);
        a clear error if there is none."""
        runs = tables.runs
        used = func.coalesce(runs.c.last_used_at, runs.c.created_at)
        query = select(runs).order_by(used.desc(), runs.c.id.desc()).limit(1)
        if name is not None:
            query = select(tables.runs).where(tables.runs.c.name == name)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            if name is None:
                raise UsageError(
                    "no runs in this database yet: submit a manifest first (batchrunner submit FILE)"
                )
            raise UsageError(f"no run named {name!r} (batchrunner runs lists them)")
        return _run_info(row)

    async def run_count(self) -> int:
        async with self.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(tables.runs))).scalar_one())

    async def find_run_or_none(self, name: str) -> RunInfo | None:
        try:
            return await self.find_run(name)
        except UsageError:
            return None

    async def list_runs(self) -> list[RunInfo]:
        counted = tables.run_counts  # the runs' jobs as their counters hold them (store/counters.py)
        counts = (
            select(counted.c.run_id, int_sum(counted.c.jobs).label("n")).group_by(counted.c.run_id).subquery()
        )
        query = (
            select(tables.runs, func.coalesce(counts.c.n, 0).label("jobs"))
            .outerjoin(counts, counts.c.run_id == tables.runs.c.id)
            .order_by(tables.runs.c.id)
        )
        async with self.db.read() as conn:
            return [_run_info(row) for row in (await conn.execute(query)).mappings()]

    @asynccontextmanager
    async def bulk_insert(
        self, run_name: str, *, source: str | None, options: dict[str, Any] | None = None
    ) -> AsyncIterator[JobInserter]:
        """One write transaction for a whole file: commit if the block ends normally, else nothing stays."""
        async with self.db.write() as conn:
            run = await self._get_or_create_run(conn, run_name, source, options)
            yield JobInserter(conn=conn, db=self.db, run=run)

    async def _get_or_create_run(
        self, conn: AsyncConnection, name: str, source: str | None, options: dict[str, Any] | None
    ) -> RunInfo:
        runs = tables.runs
        row = (await conn.execute(select(runs).where(runs.c.name == name))).mappings().first()
        now = utcnow()
        if row is None:
            values = {
                "name": name,
                "created_at": now,
                "last_used_at": now,
                "source": source,
                "options_json": json.dumps(options) if options else None,
            }
            await conn.execute(runs.insert().values(**values))
        else:
            await conn.execute(runs.update().where(runs.c.id == row["id"]).values(last_used_at=now))
        row = (await conn.execute(select(runs).where(runs.c.name == name))).mappings().one()
        return _run_info(row)

    async def touch_run(self, run_id: int) -> None:
        """Make the run the latest one (it is being run)."""
        await self._update_run(run_id, last_used_at=utcnow())

    async def save_run_settings(self, run_id: int, settings: dict[str, Any]) -> None:
        """Remember how the run is run (batchrunner.config.runsettings); never a key, only its variable."""
        await self._update_run(run_id, settings_json=json.dumps(settings, sort_keys=True))

    async def _update_run(self, run_id: int, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(tables.runs.update().where(tables.runs.c.id == run_id).values(**values))

    async def reroute_pending(self, run_id: int, provider: str) -> int:
        """Send the run's pending jobs to ``provider`` (``run --provider P`` on a submitted run)."""
        stmt = (
            update(jobs)
            .where(jobs.c.run_id == run_id, jobs.c.state == JobState.PENDING, jobs.c.provider != provider)
            .values(provider=provider, updated_at=utcnow())
        )
        async with self.db.write() as conn:
            return max((await conn.execute(stmt)).rowcount, 0)

    # -- reports ----------------------------------------------------------------------------------

    async def stats(self, run: RunInfo) -> RunStats:
        return await reports.run_stats(self.db, run)

    async def batch_summary(self, run: RunInfo) -> BatchesSummary:
        """The run's provider batches and what was paid at batch price (for ``status``)."""
        return await batchreports.batch_summary(self.db, run)

    async def spent_usd(self, run: RunInfo) -> Decimal:
        """The money already spent on the run (priced results only)."""
        return await reports.spent_usd(self.db, run)

    async def state_counts(self, run: RunInfo) -> dict[str, int]:
        """Jobs by state (every state present, zeros included)."""
        return await reports.state_counts(self.db, run)

    def export_pages(
        self, run: RunInfo, only: reports.Only = "all", *, last_attempt: bool = False
    ) -> AsyncIterator[list[ExportRow]]:
        return reports.export_pages(self.db, run, only, last_attempt=last_attempt)

    def queued_requests(self, run: RunInfo) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """Pending jobs as pages of ``(id, provider, model, endpoint, request_json)`` (for ``estimate``)."""
        return estimates.queued_requests(self.db, run)

    async def answered_by_model(self, run: RunInfo) -> dict[tuple[str, str | None], Answered]:
        return await estimates.answered_by_model(self.db, run)

    async def attempt_rows(
        self, run: RunInfo, *, custom_id: str | None = None, failed: bool = False, limit: int = 20
    ) -> list[AttemptRow]:
        """The run's attempts, newest first (``batchrunner attempts``)."""
        return await attemptlog.attempt_rows(self.db, run, custom_id=custom_id, failed=failed, limit=limit)

    async def timing(self, run: RunInfo) -> TimingFigures:
        """Latency and TTFT percentiles (run, last minute) and the last minute's throughput."""
        return await timing.timing(self.db, run)

    async def timeline(
        self, run: RunInfo, *, span_s: float = 600.0, bucket_s: float = 10.0
    ) -> timeline.Timeline:
        """The run's attempts of the last ``span_s`` seconds in time buckets (the dashboard's plots)."""
        return await timeline.run_timeline(self.db, run, now=utcnow(), span_s=span_s, bucket_s=bucket_s)

    async def latest_errors(self, run: RunInfo, *, within_s: float, limit: int = 8) -> list[AttemptRow]:
        """The run's failed attempts of the last ``within_s`` seconds, newest first (the dashboard's)."""
        since = utcnow() - timedelta(seconds=within_s)
        return await timeline.latest_errors(self.db, run, since=since, limit=limit)

    async def latest_outputs(self, run: RunInfo, *, limit: int = 5) -> list[tuple[str, str]]:
        """The run's latest answers, ``(custom_id, text)``, newest first."""
        return await timeline.latest_outputs(self.db, run, limit=limit)

    async def has_job(self, run: RunInfo, custom_id: str) -> bool:
        query = select(jobs.c.id).where(jobs.c.run_id == run.id, jobs.c.custom_id == custom_id)
        async with self.db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def metadata_keys(self, run: RunInfo) -> list[str]:
        return await reports.metadata_keys(self.db, run)

    # -- runners ----------------------------------------------------------------------------------

    async def register_runner(
        self, *, runner_id: str, host: str, pid: int, run_id: int, limits: dict[str, object] | None = None
    ) -> None:
        await runners.register(self.db, runner_id=runner_id, host=host, pid=pid, run_id=run_id, limits=limits)

    async def publish_pause(self, run_id: int, provider: str, seconds: float) -> None:
        await runners.publish_pause(self.db, run_id, provider, seconds)

    async def active_pauses(self, run_id: int) -> dict[str, float]:
        return await runners.active_pauses(self.db, run_id)

    async def busy_runners(self, run_id: int, *, stale_after_s: float) -> list[str]:
        """Live runners of the run that hold jobs (and so take a part of the rate limits), by id."""
        return await runners.busy_runners(self.db, run_id, stale_after_s=stale_after_s)

    async def insights(self, run: RunInfo) -> insights.RunInsights:
        return await insights.run_insights(self.db, run)

    async def heartbeat(self, runner_id: str, lease_seconds: float) -> set[Lease]:
        """Mark the runner alive and renew every lease it holds, in one transaction; return those."""
        return await runners.heartbeat(self.db, runner_id, lease_seconds)

    async def mark_stopped(self, runner_ids: list[str]) -> None:
        await runners.mark_stopped(self.db, runner_ids)


def _missing_sqlite_file(path: str | None) -> bool:
    return bool(path) and path != ":memory:" and not os.path.exists(path)  # type: ignore[arg-type]


def _run_info(row: Any) -> RunInfo:
    return RunInfo(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        source=row["source"],
        jobs=row.get("jobs", 0) or 0,
        options=json.loads(row["options_json"]) if row["options_json"] else {},
        settings=json.loads(row["settings_json"]) if row["settings_json"] else None,
        last_used_at=row["last_used_at"],
        cancelled_at=row["cancelled_at"],
    )


__all__ = ["Store"]
