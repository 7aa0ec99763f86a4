"""What ``status`` adds while a run is going: throughput, ETA, projected cost, interruptions, live runners.

"Re-sent after interruption" counts jobs whose request reached the provider more than once because a
runner stopped while it was in flight: an ``interrupted`` attempt (store/takeback.py) followed by another
send of the same job. "Possibly billed" counts attempts that were sent and got no usable answer: a
timeout after the request went out, a broken answer, a runner that died with the request in flight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, literal_column, or_, select

from batchrunner.models import JobState, RunInfo
from batchrunner.store import counters
from batchrunner.store.database import Database, utcnow
from batchrunner.store.tables import RUNNING_JOB, attempts, jobs, runners
from batchrunner.store.takeback import INTERRUPTED

RECENT_WINDOW = timedelta(seconds=30)
"""Throughput (and so the ETA) is measured over the last 30 s, or since the oldest live runner started."""
later = attempts.alias("later")


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
    alive: bool = True
    """False: its process is gone (judged on its own host) or its heartbeat lapsed; see api.status."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInsights:
    finished_recently: int
    """Jobs that reached a terminal state within ``window_s``."""
    window_s: float
    throughput_per_s: float
    resent_after_interruption: int
    possibly_billed: int
    runners: list[LiveRunner]


async def run_insights(db: Database, run: RunInfo) -> RunInsights:
    now = utcnow()
    async with db.read() as conn:
        runner_rows = (await conn.execute(_live_runners(run))).mappings().all()
        starts = [row["started_at"] for row in runner_rows]
        window = RECENT_WINDOW.total_seconds()
        if starts:  # a runner that started 5 s ago finished its jobs in 5 s, not in 30
            window = min(window, max((now - min(starts)).total_seconds(), 1.0))
        recent = select(func.count()).where(  # by ix_jobs_finished: the window's jobs only
            jobs.c.run_id == run.id,
            jobs.c.finished_at >= now - timedelta(seconds=window),
            jobs.c.state.in_([JobState.SUCCEEDED, JobState.FAILED]),
        )
        finished_recently = int((await conn.execute(recent)).scalar_one())
        resent_count = int((await conn.execute(_resent(run))).scalar_one())
        billed_count = (await counters.read_totals(conn, run.id)).possibly_billed
    return RunInsights(
        finished_recently=finished_recently,
        window_s=window,
        throughput_per_s=finished_recently / window,
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


def _resent(run: RunInfo) -> Select[Any]:
    """Jobs sent again after an interrupted attempt (possibly paid for twice): from the few interrupted
    attempts (``ix_attempts_interrupted``, whose condition the literal below must match word for word:
    SQLite uses a partial index only for a query that repeats it, not for a bound parameter; the index
    leads with ``error_class`` so that this is a search of it, which SQLite prefers to a walk of
    ``ix_attempts_failed``, every failed attempt)."""
    interrupted = attempts.c.error_class == literal_column(f"'{INTERRUPTED}'")
    return (
        select(func.count(func.distinct(attempts.c.job_id)))
        .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
        .where(
            interrupted,
            jobs.c.run_id + 0 == run.id,
            or_(
                exists().where(later.c.job_id == attempts.c.job_id, later.c.id > attempts.c.id),
                and_(jobs.c.state == JobState.RUNNING, jobs.c.sent),
            ),
        )
    )


def _live_runners(run: RunInfo) -> Select[Any]:
    """The run's runners not stopped, each with the number of jobs it holds."""
    held = (
        select(func.count())
        .where(RUNNING_JOB, jobs.c.lease_owner == runners.c.id)  # by ix_jobs_leased
        .correlate(runners)
        .scalar_subquery()
    )
    return (
        select(runners, held.label("jobs_held"))
        .where(runners.c.run_id == run.id, runners.c.stopped_at.is_(None))
        .order_by(runners.c.started_at, runners.c.id)
    )
