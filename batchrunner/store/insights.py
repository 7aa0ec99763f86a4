"""What ``status`` adds while a run is going: throughput, ETA, projected cost, interruptions, live runners.

"Re-sent after interruption" counts jobs with an attempt that was claimed but never recorded: the runner
holding it died or was cut off, so the job was (or will be) sent again and that call may be billed twice
(RELIABILITY.md "The promise"). "Possibly billed" counts failed attempts that may have reached the
provider (a timeout after the request was sent, a broken answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from batchrunner.models import JobState, RunInfo
from batchrunner.store.database import Database, utcnow
from batchrunner.store.tables import attempts, jobs, runners

RECENT_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveRunner:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    jobs_held: int
    """Running jobs leased to it now (0: it has run dry, or is waiting for a backoff)."""
    limits: dict[str, object] | None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInsights:
    finished_recently: int
    """Jobs that reached a terminal state in the last minute."""
    throughput_per_s: float
    resent_after_interruption: int
    possibly_billed: int
    runners: list[LiveRunner]


async def run_insights(db: Database, run: RunInfo) -> RunInsights:
    now = utcnow()
    recent = select(func.count()).where(
        jobs.c.run_id == run.id,
        jobs.c.state.in_([JobState.SUCCEEDED, JobState.FAILED]),
        jobs.c.finished_at >= now - RECENT_WINDOW,
    )
    recorded = select(func.count()).where(attempts.c.job_id == jobs.c.id).correlate(jobs).scalar_subquery()
    resent = select(func.count()).where(
        jobs.c.run_id == run.id, jobs.c.state != JobState.RUNNING, jobs.c.attempts > recorded
    )
    billed = (
        select(func.count())
        .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
        .where(jobs.c.run_id == run.id, attempts.c.possibly_billed.is_(True))
    )
    held = (
        select(func.count())
        .where(jobs.c.run_id == run.id, jobs.c.state == JobState.RUNNING, jobs.c.lease_owner == runners.c.id)
        .correlate(runners)
        .scalar_subquery()
    )
    live = (
        select(runners, held.label("jobs_held"))
        .where(runners.c.run_id == run.id, runners.c.stopped_at.is_(None))
        .order_by(runners.c.started_at, runners.c.id)
    )
    async with db.read() as conn:
        finished_recently = int((await conn.execute(recent)).scalar_one())
        resent_count = int((await conn.execute(resent)).scalar_one())
        billed_count = int((await conn.execute(billed)).scalar_one())
        runner_rows = (await conn.execute(live)).mappings().all()
    return RunInsights(
        finished_recently=finished_recently,
        throughput_per_s=finished_recently / RECENT_WINDOW.total_seconds(),
        resent_after_interruption=resent_count,
        possibly_billed=billed_count,
        runners=[
            LiveRunner(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                jobs_held=int(row["jobs_held"]),
                limits=json.loads(row["limits_json"]) if row["limits_json"] else None,
            )
            for row in runner_rows
        ],
    )
