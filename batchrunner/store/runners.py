"""The runners table: who works on a run, and how to tell that one of them died (docs/reliability.md rule 3).

A runner registers on start, heartbeats while it runs (the same transaction renews the leases it holds),
and marks itself stopped on a clean exit. A runner is dead when its heartbeat lapsed, or at once when it
ran on this host and its process is gone: a restart after ``kill -9`` reclaims its jobs without waiting
for their leases to expire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.models import Lease
from batchrunner.store.database import Database, utcnow
from batchrunner.store.tables import RUNNING_JOB, jobs, provider_pauses, runners


async def register(
    db: Database, *, runner_id: str, host: str, pid: int, run_id: int, limits: dict[str, object] | None = None
) -> None:
    now = utcnow()
    values = {
        "id": runner_id,
        "host": host,
        "pid": pid,
        "run_id": run_id,
        "started_at": now,
        "heartbeat_at": now,
        "limits_json": json.dumps(limits) if limits else None,
    }
    async with db.write() as conn:
        await conn.execute(runners.insert().values(**values))


async def heartbeat(db: Database, runner_id: str, lease_seconds: float) -> set[Lease]:
    """Say this runner is alive and extend every lease it still holds; return those leases.

    A runner that beats is alive: if others judged it dead while it was frozen (and took its jobs
    back), it is live again from this beat on, holding only what it claims from now.
    """
    async with db.write() as conn:
        await conn.execute(
            update(runners).where(runners.c.id == runner_id).values(heartbeat_at=db.clock(), stopped_at=None)
        )
        renewed = await conn.execute(
            update(jobs)
            # its running jobs by ix_jobs_leased (a runner id holds jobs of its own run only), not a walk
            # of the run's running jobs (a million in provider batches, in batch mode)
            .where(RUNNING_JOB, jobs.c.lease_owner == runner_id)
            .values(lease_expires_at=db.clock(lease_seconds))
            .returning(jobs.c.id, jobs.c.lease_token)
        )
        return {Lease(job_id=row.id, token=row.lease_token) for row in renewed}


async def mark_stopped(db: Database, runner_ids: list[str]) -> None:
    if not runner_ids:
        return
    async with db.write() as conn:
        await conn.execute(
            update(runners)
            .where(runners.c.id.in_(runner_ids), runners.c.stopped_at.is_(None))
            .values(stopped_at=utcnow())
        )


def _worth_judging() -> ColumnElement[bool]:
    """Runners not stopped, or stopped while still holding jobs (a release that failed on the way out)."""
    return or_(runners.c.stopped_at.is_(None), _holds_running_jobs())


def _holds_running_jobs() -> ColumnElement[bool]:
    """The runner (``runners`` row) holds a running job: one probe of ``ix_jobs_leased`` a runner."""
    return exists().where(RUNNING_JOB, jobs.c.lease_owner == runners.c.id)


async def gone_here(db: Database, run_id: int, *, host: str, is_alive: Callable[[int], bool]) -> list[str]:
    """Runners of the run on ``host`` (this machine) whose process is gone."""
    query = select(runners.c.id, runners.c.pid).where(
        runners.c.run_id == run_id, runners.c.host == host, _worth_judging()
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [row.id for row in rows if not is_alive(row.pid)]


async def stop_dead(
    conn: AsyncConnection, db: Database, run_id: int, *, stale_after_s: float, gone: Sequence[str]
) -> list[str]:
    """Inside a write: mark the run's dead runners stopped and return them, their rows locked.

    Dead: the heartbeat lapsed, or the process is ``gone`` (judged on its own host). The judgement is
    made here, in the write, on rows locked as they are now: a runner back from a freeze whose heartbeat
    committed first is alive, and keeps its jobs; one whose heartbeat comes later finds them taken.
    """
    dead = runners.c.heartbeat_at < db.clock(-stale_after_s)
    if gone:
        dead = or_(dead, runners.c.id.in_(list(gone)))
    query = select(runners.c.id).where(runners.c.run_id == run_id, _worth_judging(), dead)
    ids = list((await conn.execute(db.lock_rows(query.order_by(runners.c.id)))).scalars())
    if ids:
        not_yet = runners.c.stopped_at.is_(None)
        await conn.execute(update(runners).where(runners.c.id.in_(ids), not_yet).values(stopped_at=utcnow()))
    return ids


async def publish_pause(db: Database, run_id: int, provider: str, seconds: float) -> None:
    """Pause ``provider`` for every runner of the run until ``seconds`` from now (a later pause wins)."""
    table = provider_pauses
    until = db.clock(seconds)
    async with db.write() as conn:
        updated = await conn.execute(
            update(table)
            .where(table.c.run_id == run_id, table.c.provider == provider, table.c.paused_until < until)
            .values(paused_until=until)
        )
        if updated.rowcount == 0:
            insert = db.insert_statement_ignoring_conflicts(table, "run_id", "provider")
            await conn.execute(insert.values(run_id=run_id, provider=provider, paused_until=until))


async def active_pauses(db: Database, run_id: int) -> dict[str, float]:
    """Seconds left of each provider pause of the run that has not ended yet."""
    now = db.clock()
    query = select(provider_pauses.c.provider, provider_pauses.c.paused_until, now.label("now")).where(
        provider_pauses.c.run_id == run_id, provider_pauses.c.paused_until > now
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return {row.provider: (row.paused_until - _aware(row.now)).total_seconds() for row in rows}


async def busy_runners(db: Database, run_id: int, *, stale_after_s: float) -> list[str]:
    """Live runners of the run that hold at least one running job, by id.

    These are the runners that may be sending requests: one that has run dry (its jobs answered,
    nothing left to claim) no longer counts, so the others take up its part of the rate limits.
    """
    query = (
        select(runners.c.id)
        .where(
            runners.c.run_id == run_id,
            runners.c.stopped_at.is_(None),
            runners.c.heartbeat_at >= db.clock(-stale_after_s),
            _holds_running_jobs(),
        )
        .order_by(runners.c.id)
    )
    async with db.read() as conn:
        return list((await conn.execute(query)).scalars())


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
