"""The job store: every state transition of a job, one statement each, on SQLite or PostgreSQL.

All queue logic that touches the database lives here (STYLE habit 11). Writes go through
``Database.write()`` (``BEGIN IMMEDIATE`` on SQLite); every write-back of a running job is fenced by its
lease token (RELIABILITY.md rule 2), so a runner that lost its lease changes nothing.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, false, func, or_, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.errors import UsageError
from batchrunner.models import ClaimedJob, ExportRow, JobState, Lease, Outcome, QueueState, RunInfo, RunStats
from batchrunner.store import insights, reports, runners, tables, takeback
from batchrunner.store.database import Database, resolve_url, store_error, utcnow
from batchrunner.store.migrations import migrate
from batchrunner.store.submit import JobInserter

jobs = tables.jobs


class Store:
    """The narrow interface between the engine and the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        counts = select(jobs.c.run_id, func.count().label("n")).group_by(jobs.c.run_id).subquery()
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

    async def list_runners(self, run_id: int, *, live_only: bool = False) -> list[runners.RunnerInfo]:
        return await runners.list_runners(self.db, run_id, live_only=live_only)

    async def take_back_from_dead(
        self,
        run_id: int,
        max_attempts: int,
        *,
        host: str,
        is_alive: Callable[[int], bool],
        stale_after_s: float,
        journaled: Sequence[str] = (),
    ) -> tuple[int, list[str]]:
        """Take back the jobs of dead runners and of expired leases (RELIABILITY.md rule 3).

        A runner is dead when its heartbeat is older than ``stale_after_s`` or, on this ``host``, its pid
        is gone (``is_alive``); one marked stopped counts only while it still holds jobs. Dead runners
        are marked stopped and their jobs taken back in one transaction. ``journaled``: dead runners whose
        journal was read and applied (``mark_sent``), so their jobs not marked sent were not sent.
        Returns (jobs, runners).
        """
        gone = await runners.gone_here(self.db, run_id, host=host, is_alive=is_alive)
        async with self.db.write() as conn:
            dead = await runners.stop_dead(conn, self.db, run_id, stale_after_s=stale_after_s, gone=gone)
            taken = await takeback.take_back(
                conn,
                self._lapsed(run_id, dead),
                utcnow(),
                max_attempts=max_attempts,
                refund=takeback.owned_by(journaled),
            )
        return taken, dead

    async def providers_left(self, run_id: int) -> list[str]:
        """The providers that the run's unfinished jobs name (to check their keys before starting)."""
        query = (
            select(jobs.c.provider)
            .where(jobs.c.run_id == run_id, jobs.c.state.in_([JobState.PENDING, JobState.RUNNING]))
            .distinct()
        )
        async with self.db.read() as conn:
            return sorted((await conn.execute(query)).scalars())

    async def has_succeeded(self, run_id: int, provider: str, model: str | None) -> bool:
        """Whether a job of the run with this provider and model has succeeded (the model works)."""
        same_model = jobs.c.model.is_(None) if model is None else jobs.c.model == model
        query = (
            select(jobs.c.id)
            .where(
                jobs.c.run_id == run_id,
                jobs.c.state == JobState.SUCCEEDED,
                jobs.c.provider == provider,
                same_model,
            )
            .limit(1)
        )
        async with self.db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def queue_state(self, run_id: int) -> QueueState:
        """How much is left: pending jobs due now, pending ones held back (and the earliest), running ones."""
        now = utcnow()
        query = select(
            func.count().filter(jobs.c.state == JobState.PENDING),
            func.min(jobs.c.not_before).filter(jobs.c.state == JobState.PENDING, jobs.c.not_before > now),
            func.count().filter(jobs.c.state == JobState.PENDING, jobs.c.not_before > now),
            func.count().filter(jobs.c.state == JobState.RUNNING),
        ).where(jobs.c.run_id == run_id, jobs.c.state.in_([JobState.PENDING, JobState.RUNNING]))
        async with self.db.read() as conn:
            pending, next_due, held, running = (await conn.execute(query)).one()
        return QueueState(pending=pending, held_back=held, next_due_at=next_due, running=running)

    # -- the queue --------------------------------------------------------------------------------

    async def claim(self, run_id: int, owner: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        """Lease up to ``limit`` due pending jobs to ``owner``, counting the attempt in the same statement."""
        now = utcnow()
        db_now = self.db.clock()
        token = secrets.token_hex(16)
        due = self.db.lock_for_claim(
            select(jobs.c.id)
            .where(
                jobs.c.run_id == run_id,
                jobs.c.state == JobState.PENDING,
                or_(jobs.c.not_before.is_(None), jobs.c.not_before <= db_now),
            )
            .order_by(jobs.c.id)
            .limit(limit)
        )
        stmt = (
            update(jobs)
            .where(jobs.c.id.in_(due.scalar_subquery()))
            .values(
                state=JobState.RUNNING,
                lease_owner=owner,
                lease_token=token,
                lease_expires_at=self.db.clock(lease_seconds),
                attempts=jobs.c.attempts + 1,
                sent=False,
                updated_at=now,
            )
            .returning(
                jobs.c.id,
                jobs.c.custom_id,
                jobs.c.line_number,
                jobs.c.provider,
                jobs.c.endpoint,
                jobs.c.model,
                jobs.c.request_json,
                jobs.c.attempts,
            )
        )
        async with self.db.write() as conn:
            rows = (await conn.execute(stmt)).all()
        claimed = [
            ClaimedJob(
                lease=Lease(job_id=r.id, token=token),
                custom_id=r.custom_id,
                line_number=r.line_number,
                provider=r.provider,
                endpoint=r.endpoint,
                model=r.model,
                request_json=r.request_json,
                attempt=r.attempts,
            )
            for r in rows
        ]
        claimed.sort(key=lambda job: job.lease.job_id)
        return claimed

    async def mark_sent(self, leases: Sequence[Lease]) -> set[int]:
        """Record that these jobs' requests went out; return the ids whose lease still holds (a job
        taken over or finished meanwhile is not marked). A job marked sent whose runner dies counts as
        in flight (store/takeback.py); see batchrunner.engine.sendmarks for when marks are written."""
        if not leases:
            return set()
        stmt = update(jobs).where(_holds(leases)).values(sent=True, updated_at=utcnow()).returning(jobs.c.id)
        async with self.db.write() as conn:
            return set((await conn.execute(stmt)).scalars())

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[int]:
        """Write back a group of finished attempts in one transaction (group commit).

        Only outcomes whose lease still holds are written; the ids of those are returned. A stale lease
        (the job was reclaimed, cancelled or finished by someone else) changes nothing.
        """
        if not outcomes:
            return set()
        async with self.db.write() as conn:
            held = await self._held(conn, [o.lease for o in outcomes])
            accepted = [o for o in outcomes if o.lease.job_id in held]
            if accepted:
                await _write_outcomes(conn, accepted, utcnow())
        return {o.lease.job_id for o in accepted}

    async def _held(self, conn: AsyncConnection, leases: list[Lease]) -> set[int]:
        query = self.db.lock_rows(select(jobs.c.id).where(_holds(leases)).order_by(jobs.c.id))
        return set((await conn.execute(query)).scalars())

    async def release(self, leases: Iterable[Lease], *, max_attempts: int | None = None) -> int:
        """Give running jobs back to the queue (a stop); fenced by their leases.

        A job not yet sent gets its attempt back; one in flight keeps it and is recorded as interrupted
        (store/takeback.py); with ``max_attempts``, one on its last attempt fails.
        """
        leases = list(leases)
        if not leases:
            return 0
        async with self.db.write() as conn:
            return await takeback.take_back(
                conn, _holds(leases), utcnow(), max_attempts=max_attempts, refund=true()
            )

    async def reclaim_expired(self, run_id: int, max_attempts: int, owners: Sequence[str] = ()) -> int:
        """Take back running jobs whose lease expired, or whose owner is one of ``owners`` (known dead),
        without judging runners (``take_back_from_dead`` does both)."""
        async with self.db.write() as conn:
            where = self._lapsed(run_id, owners)
            return await takeback.take_back(conn, where, utcnow(), max_attempts=max_attempts, refund=false())

    def _lapsed(self, run_id: int, owners: Sequence[str]) -> ColumnElement[bool]:
        """The run's running jobs whose lease expired or whose owner is dead."""
        lapsed = jobs.c.lease_expires_at < self.db.clock()
        if owners:
            lapsed = or_(lapsed, jobs.c.lease_owner.in_(list(owners)))
        return and_(jobs.c.run_id == run_id, lapsed)

    async def retry_failed(self, run_id: int) -> int:
        """Failed jobs go back to pending with a fresh set of attempts (their history is kept); a
        cancelled run is no longer cancelled."""
        stmt = (
            update(jobs)
            .where(jobs.c.run_id == run_id, jobs.c.state == JobState.FAILED)
            .values({**_requeued(), "attempts": 0, "finished_at": None})
        )
        async with self.db.write() as conn:
            count = max((await conn.execute(stmt)).rowcount, 0)
            run = tables.runs.update().where(tables.runs.c.id == run_id)
            await conn.execute(run.values(cancelled_at=None, last_used_at=utcnow()))
        return count

    async def cancel(
        self,
        run_id: int,
        *,
        host: str,
        is_alive: Callable[[int], bool],
        stale_after_s: float,
    ) -> int:
        """Cancel the run: its pending jobs become cancelled, and so do the running jobs of dead runners
        (those in flight recorded as interrupted); returns how many.

        The jobs a live runner holds stay running: it sees ``runs.cancelled_at`` within a second, gives
        back those not yet sent (they become cancelled) and records the answers of those in flight,
        which are paid for: such a job ends succeeded, or failed (a retry it would have had becomes
        cancelled). Runners are judged as by ``take_back_from_dead``.
        """
        now = utcnow()
        gone = await runners.gone_here(self.db, run_id, host=host, is_alive=is_alive)
        async with self.db.write() as conn:
            await conn.execute(
                tables.runs.update()
                .where(tables.runs.c.id == run_id)
                .values(cancelled_at=now, last_used_at=now)
            )
            pending = await conn.execute(
                update(jobs)
                .where(jobs.c.run_id == run_id, jobs.c.state == JobState.PENDING)
                .values(state=JobState.CANCELLED, not_before=None, updated_at=now, finished_at=now)
            )
            dead = await runners.stop_dead(conn, self.db, run_id, stale_after_s=stale_after_s, gone=gone)
            held = await takeback.take_back(
                conn, self._lapsed(run_id, dead), now, max_attempts=None, refund=false()
            )
        return max(pending.rowcount, 0) + held

    async def run_cancelled(self, run_id: int) -> bool:
        """Whether ``cancel`` was called on the run (and no ``retry`` since)."""
        query = select(tables.runs.c.cancelled_at).where(tables.runs.c.id == run_id)
        async with self.db.read() as conn:
            return (await conn.execute(query)).scalar_one_or_none() is not None


def _missing_sqlite_file(path: str | None) -> bool:
    return bool(path) and path != ":memory:" and not os.path.exists(path)  # type: ignore[arg-type]


def _holds(leases: Sequence[Lease]) -> ColumnElement[bool]:
    """The jobs of ``leases`` that are running under exactly these leases (the fence).

    ``id IN (...)`` comes first so that SQLite looks the rows up by primary key: on its own, the
    ``(id, lease_token) IN (VALUES ...)`` test scans the whole table (139 ms at 1M jobs, measured).
    """
    return and_(
        jobs.c.id.in_([lease.job_id for lease in leases]),
        jobs.c.state == JobState.RUNNING,
        tuple_(jobs.c.id, jobs.c.lease_token).in_([(lease.job_id, lease.token) for lease in leases]),
    )


def _requeued() -> dict[str, Any]:
    return {
        "state": JobState.PENDING,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
        "not_before": None,
        "updated_at": utcnow(),
    }


async def _write_outcomes(conn: AsyncConnection, accepted: list[Outcome], now: datetime) -> None:
    job_update = (
        update(jobs)
        .where(
            jobs.c.id == bindparam("b_id"),
            jobs.c.lease_token == bindparam("b_token"),
            jobs.c.state == JobState.RUNNING,
        )
        .values(
            state=bindparam("b_state"),
            not_before=bindparam("b_not_before"),
            last_error_class=bindparam("b_error_class"),
            last_error=bindparam("b_error"),
            finished_at=bindparam("b_finished_at"),
            attempts=jobs.c.attempts - bindparam("b_refund"),
            updated_at=now,
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
        )
    )
    await conn.execute(
        job_update,
        [
            {
                "b_id": o.lease.job_id,
                "b_token": o.lease.token,
                "b_state": o.state.value,
                "b_not_before": o.not_before,
                "b_error_class": o.error_class,
                "b_error": o.error,
                "b_finished_at": now if o.state.is_terminal else None,
                "b_refund": 1 if o.refund_attempt else 0,
            }
            for o in accepted
        ],
    )
    retrying = [o.lease.job_id for o in accepted if o.state is JobState.PENDING]
    if retrying:  # a retry in a run cancelled meanwhile is not made: the job is cancelled
        await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(retrying), jobs.c.state == JobState.PENDING, takeback.run_cancelled())
            .values(state=JobState.CANCELLED, not_before=None, finished_at=now)
        )
    await conn.execute(
        tables.attempts.insert(),
        [{"job_id": o.lease.job_id, **_attempt_values(o)} for o in accepted],
    )
    results = [
        {"job_id": o.lease.job_id, "created_at": now, **vars_of(o.result)}
        for o in accepted
        if o.result is not None and o.state is JobState.SUCCEEDED
    ]
    if results:
        await conn.execute(tables.results.insert(), results)


def _attempt_values(outcome: Outcome) -> dict[str, Any]:
    return vars_of(outcome.attempt)


def vars_of(record: Any) -> dict[str, Any]:
    """The fields of a slotted dataclass as a dict (``dataclasses.asdict`` deep-copies; this does not)."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


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
