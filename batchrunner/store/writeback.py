"""Writing a group of finished attempts back: the jobs' new states, their attempt rows, their results.

Called by :meth:`batchrunner.store.queue.Queue.record_outcomes` inside its transaction, for the outcomes
whose lease still holds; one ``executemany`` per table, so a group of hundreds is one round trip each.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.models import JobState, Outcome
from batchrunner.policy.histogram import bucket_of
from batchrunner.store import tables, takeback
from batchrunner.store.database import Database

jobs = tables.jobs


async def write_outcomes(conn: AsyncConnection, accepted: list[Outcome], now: datetime) -> None:
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
    if retrying:  # back in the queue, a job of a provider batch is no longer the batch's
        await conn.execute(update(jobs).where(jobs.c.id.in_(retrying)).values(batch_id=None))
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


SLOT_WIDTHS = (1, 5)
"""The widths in seconds of the slots ``latency_slots`` counts latencies in: 1 s for the last minute and
short plots, 5 s for plots of 5 s buckets and wider."""


async def count_latencies(
    db: Database, conn: AsyncConnection, accepted: list[Outcome], runs: dict[int, int]
) -> None:
    """Add the group's latencies and times to first token to their runs' histograms (policy/histogram.py),
    over the run (``latencies``) and by when they finished (``latency_slots``): one upsert of a few rows
    each, whatever the group's size."""
    counts: Counter[tuple[int, str, int]] = Counter()
    by_slot: Counter[tuple[int, int, int, str, int]] = Counter()
    for outcome in accepted:
        record, run_id = outcome.attempt, runs[outcome.lease.job_id]
        second = int((record.finished_at or record.started_at).timestamp())
        for kind, ms in (("latency", record.latency_ms), ("ttft", record.ttft_ms)):
            if ms is not None:
                bucket = bucket_of(ms)
                counts[run_id, kind, bucket] += 1
                for width in SLOT_WIDTHS:
                    by_slot[run_id, width, second - second % width, kind, bucket] += 1
    # in key order: runners of one run update the same rows, and on PostgreSQL two groups that lock them
    # in different orders deadlock (seen in CI: three runners on one run, "deadlock detected")
    if counts:
        rows = [{"run_id": r, "kind": k, "bucket": b, "count": n} for (r, k, b), n in sorted(counts.items())]
        await db.upsert_adding(conn, tables.latencies, rows, ("run_id", "kind", "bucket"), "count")
    if by_slot:
        await db.upsert_adding(conn, tables.latency_slots, slot_rows(by_slot), SLOT_KEY, "count")


SLOT_KEY = ("run_id", "width", "start", "kind", "bucket")


def slot_rows(by_slot: Counter[tuple[int, int, int, str, int]]) -> list[dict[str, Any]]:
    """``latency_slots`` rows from counts by key, in key order."""
    return [dict(zip((*SLOT_KEY, "count"), (*key, n), strict=True)) for key, n in sorted(by_slot.items())]
