"""Provider batches in the store: forming one (its row and its jobs, in one transaction), what the provider
told us of it, its jobs page by page, and putting back what a batch did not answer (docs/batch.md).

A job in a batch is ``running`` with ``batch_id`` set, leased to the batch: ``lease_owner`` is
:data:`BATCH_OWNER` and ``lease_token`` the batch's local id, with no lease expiry. So no runner's
heartbeat renews it and no dead-runner takeback touches it (both go by runner id or expiry), a realtime
claim never sees it (it is not pending), and the batch's results are written back through the same fenced
:func:`~batchrunner.store.writeback.write_outcomes` as a realtime answer: a line for a job that is no
longer the batch's changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import case, func, or_, select, update

from batchrunner.models import BatchInfo, BatchState, JobState
from batchrunner.store.database import Database, utcnow
from batchrunner.store.reports import fetch_all
from batchrunner.store.tables import batches, jobs
from batchrunner.store.takeback import run_cancelled

__all__ = ["BATCH_OWNER", "BatchStoreOps"]

BATCH_OWNER: Final = "batch"
"""``jobs.lease_owner`` of a job held by a provider batch (never a runner id)."""
_IDS_PER_STATEMENT: Final = 500
"""Job ids per ``IN (...)``: well under SQLite's bound-parameter limit."""
LIVE_STATES: Final = (BatchState.PREPARING, BatchState.UPLOADED, BatchState.SUBMITTED)


class BatchStoreOps:
    """The batch half of the store (docs/batch.md); each method one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending_groups(
        self, run_id: int, providers: Sequence[str]
    ) -> list[tuple[str, str, str | None]]:
        """(provider, endpoint, model) of the run's due pending jobs of ``providers``, in a stable order."""
        query = (
            select(jobs.c.provider, jobs.c.endpoint, jobs.c.model)
            .where(jobs.c.run_id == run_id, jobs.c.state == JobState.PENDING, jobs.c.provider.in_(providers))
            .distinct()
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return sorted(((p, e, m) for p, e, m in rows), key=lambda row: (row[0], row[1], row[2] or ""))

    async def pending_page(
        self, run_id: int, group: tuple[str, str, str | None], after_id: int, limit: int, *, any_model: bool
    ) -> Sequence[Sequence[Any]]:
        """``(id, request_json)`` of pending jobs of a group after ``after_id``, by id (to size a chunk).

        ``any_model``: the group is the provider and endpoint only (Anthropic batches mix models)."""
        provider, endpoint, model = group
        where = [
            jobs.c.run_id == run_id,
            jobs.c.state == JobState.PENDING,
            jobs.c.provider == provider,
            jobs.c.endpoint == endpoint,
            jobs.c.id > after_id,
        ]
        if not any_model:
            where.append(jobs.c.model.is_(None) if model is None else jobs.c.model == model)
        query = select(jobs.c.id, jobs.c.request_json).where(*where).order_by(jobs.c.id).limit(limit)
        async with self.db.read() as conn:
            return await fetch_all(self.db, conn, query)

    async def form_batch(
        self,
        run_id: int,
        *,
        local_id: str,
        provider: str,
        endpoint: str,
        model: str | None,
        job_ids: Sequence[int],
        size_bytes: int,
    ) -> BatchInfo | None:
        """Commit a batch row and lease to it those of ``job_ids`` still pending, in one transaction.

        Each job's attempt is counted, as a claim counts it. ``None`` when none was still pending (another
        runner took them): then no row is left behind.
        """
        now = utcnow()
        async with self.db.write() as conn:
            inserted = await conn.execute(
                batches.insert()
                .values(
                    run_id=run_id,
                    local_id=local_id,
                    provider=provider,
                    endpoint=endpoint,
                    model=model,
                    state=BatchState.PREPARING,
                    requests=0,
                    bytes=size_bytes,
                    created_at=now,
                )
                .returning(batches.c.id)
            )
            batch_id = int(inserted.scalar_one())
            leased = 0
            for start in range(0, len(job_ids), _IDS_PER_STATEMENT):
                chunk = list(job_ids[start : start + _IDS_PER_STATEMENT])
                result = await conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(chunk), jobs.c.state == JobState.PENDING)
                    .values(
                        state=JobState.RUNNING,
                        batch_id=batch_id,
                        lease_owner=BATCH_OWNER,
                        lease_token=local_id,
                        lease_expires_at=None,
                        attempts=jobs.c.attempts + 1,
                        sent=True,
                        not_before=None,
                        updated_at=now,
                    )
                )
                leased += max(result.rowcount, 0)
            if not leased:
                await conn.execute(batches.delete().where(batches.c.id == batch_id))
                return None
            await conn.execute(batches.update().where(batches.c.id == batch_id).values(requests=leased))
            row = (await conn.execute(select(batches).where(batches.c.id == batch_id))).mappings().one()
        return _info(row)

    async def batches_of(self, run_id: int, *, live_only: bool = False) -> list[BatchInfo]:
        """The run's batches, oldest first (``live_only``: those not ended and recorded yet)."""
        query = select(batches).where(batches.c.run_id == run_id).order_by(batches.c.id)
        if live_only:
            query = query.where(batches.c.state.in_(LIVE_STATES))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_info(row) for row in rows]

    async def update_batch(self, batch_id: int, **values: Any) -> None:
        """Record what the provider said (``file_id``, ``remote_id``, ``state``, counts, ``error``...)."""
        async with self.db.write() as conn:
            await conn.execute(batches.update().where(batches.c.id == batch_id).values(**values))

    async def hold_batch(self, batch: BatchInfo, owner: str, seconds: float, *, gone: Sequence[str]) -> bool:
        """Become the one process sending ``batch`` to the provider, for ``seconds``: when nobody holds it,
        ``owner`` already does, the holder's hold lapsed, or the holder is one of ``gone`` (dead
        processes); also when the batch is no longer being sent. False: a live process holds it."""
        now = utcnow()
        free = or_(
            batches.c.owner.is_(None),
            batches.c.owner == owner,
            batches.c.owner_until < now,
            batches.c.owner.in_(list(gone) or [""]),
        )
        async with self.db.write() as conn:
            result = await conn.execute(
                batches.update()
                .where(batches.c.id == batch.id, batches.c.remote_id.is_(None), free)
                .values(owner=owner, owner_until=now + timedelta(seconds=seconds))
            )
        return result.rowcount == 1

    async def batch_owners(self, run_id: int) -> set[str]:
        """The processes holding the run's live batches (to judge which are gone)."""
        query = select(batches.c.owner).where(
            batches.c.run_id == run_id, batches.c.owner.is_not(None), batches.c.state.in_(LIVE_STATES)
        )
        async with self.db.read() as conn:
            return {str(owner) for owner in (await conn.execute(query)).scalars()}

    async def known_remote_ids(self, provider: str) -> set[str]:
        """Provider batch ids already recorded (by any run), so recovery never adopts one twice."""
        query = select(batches.c.remote_id).where(
            batches.c.provider == provider, batches.c.remote_id.is_not(None)
        )
        async with self.db.read() as conn:
            return {str(value) for value in (await conn.execute(query)).scalars()}

    async def batch_jobs_page(self, batch: BatchInfo, after_id: int, limit: int) -> Sequence[Sequence[Any]]:
        """``(id, endpoint, request_json)`` of the jobs the batch holds, after ``after_id``, by id."""
        query = (
            select(jobs.c.id, jobs.c.endpoint, jobs.c.request_json)
            .where(*_held_by(batch), jobs.c.id > after_id)
            .order_by(jobs.c.id)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return await fetch_all(self.db, conn, query)

    async def held_jobs(self, batch: BatchInfo, job_ids: Iterable[int]) -> dict[int, tuple[str | None, int]]:
        """Of ``job_ids``, those the batch still holds: job id -> (model, attempt number)."""
        ids = list(job_ids)
        held: dict[int, tuple[str | None, int]] = {}
        async with self.db.read() as conn:
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                query = select(jobs.c.id, jobs.c.model, jobs.c.attempts).where(
                    *_held_by(batch), jobs.c.id.in_(ids[start : start + _IDS_PER_STATEMENT])
                )
                for job_id, model, attempts in (await conn.execute(query)).all():
                    held[int(job_id)] = (model, int(attempts))
        return held

    async def release_batch(self, batch: BatchInfo, state: BatchState, *, error: str | None = None) -> int:
        """End the batch's row in ``state``; the jobs it still holds (no line came for them) go back to
        pending with their attempt refunded, in the same transaction (cancelled instead, in a run
        cancelled meanwhile, as a retry would be: store/writeback.py). Returns how many went back."""
        now = utcnow()
        cancelled = run_cancelled()
        async with self.db.write() as conn:
            result = await conn.execute(
                update(jobs)
                .where(*_held_by(batch))
                .values(
                    state=case((cancelled, JobState.CANCELLED), else_=JobState.PENDING),
                    finished_at=case((cancelled, now), else_=jobs.c.finished_at),
                    batch_id=None,
                    lease_owner=None,
                    lease_token=None,
                    lease_expires_at=None,
                    attempts=case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0),
                    sent=False,
                    updated_at=now,
                )
            )
            await conn.execute(
                batches.update()
                .where(batches.c.id == batch.id)
                .values(state=state, ended_at=func.coalesce(batches.c.ended_at, now), error=error)
            )
        return max(result.rowcount, 0)

    async def fail_batch_jobs(self, batch: BatchInfo, error: str) -> int:
        """The provider refused the whole batch (validation): its jobs fail with that error; the row too."""
        now = utcnow()
        async with self.db.write() as conn:
            result = await conn.execute(
                update(jobs)
                .where(*_held_by(batch))
                .values(
                    state=JobState.FAILED,
                    last_error_class="permanent",
                    last_error=error,
                    lease_owner=None,
                    lease_token=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                batches.update()
                .where(batches.c.id == batch.id)
                .values(state=BatchState.FAILED, ended_at=now, error=error)
            )
        return max(result.rowcount, 0)


def _held_by(batch: BatchInfo) -> list[Any]:
    return [
        jobs.c.batch_id == batch.id,
        jobs.c.state == JobState.RUNNING,
        jobs.c.lease_token == batch.local_id,
    ]


def _info(row: Any) -> BatchInfo:
    return BatchInfo(
        id=int(row["id"]),
        run_id=int(row["run_id"]),
        local_id=row["local_id"],
        provider=row["provider"],
        endpoint=row["endpoint"],
        model=row["model"],
        state=BatchState(row["state"]),
        requests=int(row["requests"]),
        size_bytes=int(row["bytes"]),
        file_id=row["file_id"],
        remote_id=row["remote_id"],
        remote_status=row["remote_status"],
        succeeded=int(row["succeeded"]),
        errored=int(row["errored"]),
        expired=int(row["expired"]),
        canceled=int(row["canceled"]),
        created_at=row["created_at"],
        submitted_at=row["submitted_at"],
        ended_at=row["ended_at"],
        error=row["error"],
    )
