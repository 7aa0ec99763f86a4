"""What the dashboard plots: a run's recent attempts in time buckets, and its latest answers.

One indexed read a snapshot: the attempts finished within the span (``ix_attempts_finished``), joined to
their jobs for the run, so the cost is the span's attempts, not the run's. The buckets are added up here,
percentiles included, since SQLite has no percentile function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select

from batchrunner.models import AttemptRow, RunInfo
from batchrunner.store.attemptlog import attempt_row_select, fetch_attempt_rows
from batchrunner.store.database import Database
from batchrunner.store.tables import attempts, jobs, results

__all__ = ["Bucket", "Timeline", "latest_errors", "latest_outputs", "run_timeline", "span_query"]

RATE_LIMITED = 429


@dataclass(kw_only=True, slots=True)
class Bucket:
    """The attempts that finished in ``[start, start + bucket_s)``."""

    start: datetime
    succeeded: int = 0
    """Attempts that got an answer (no error class)."""
    tokens: int = 0
    """Input and output tokens of those attempts."""
    rate_limited: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Failed attempts by error class (429s included, as their class)."""
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q`` percentile (0 < q <= 100) of the answered attempts' latency."""
        if not self.latencies_ms:
            return None
        ranked = sorted(self.latencies_ms)
        return ranked[max(math.ceil(q / 100 * len(ranked)) - 1, 0)]


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    bucket_s: float
    buckets: list[Bucket]
    """Oldest first, one per ``bucket_s`` up to now, empty ones included."""


async def run_timeline(
    db: Database, run: RunInfo, *, now: datetime, span_s: float = 600.0, bucket_s: float = 10.0
) -> Timeline:
    """The run's attempts finished in the last ``span_s`` seconds, in buckets of ``bucket_s``."""
    count = max(int(span_s // bucket_s), 1)
    first = now - timedelta(seconds=bucket_s * (count - 1) + now.timestamp() % bucket_s)
    buckets = [Bucket(start=first + timedelta(seconds=bucket_s * i)) for i in range(count)]
    query = span_query(run, first)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    for finished_at, status_code, error_class, latency_ms, input_tokens, output_tokens in rows:
        index = min(int((finished_at - first).total_seconds() // bucket_s), count - 1)
        bucket = buckets[index]
        if status_code == RATE_LIMITED:
            bucket.rate_limited += 1
        if error_class is not None:
            bucket.errors[error_class] = bucket.errors.get(error_class, 0) + 1
            continue
        bucket.succeeded += 1
        bucket.tokens += (input_tokens or 0) + (output_tokens or 0)
        if latency_ms is not None:
            bucket.latencies_ms.append(latency_ms)
    return Timeline(bucket_s=bucket_s, buckets=buckets)


def span_query(run: RunInfo, since: datetime) -> Select[Any]:
    """The run's attempts finished since ``since``: driven by ``ix_attempts_finished``, each joined to
    its job by the primary key. ``run_id + 0`` keeps the planner off ``ix_jobs_claim``, which would walk
    every job of the run (SQLite takes that path without statistics)."""
    return (
        select(
            attempts.c.finished_at,
            attempts.c.status_code,
            attempts.c.error_class,
            attempts.c.latency_ms,
            attempts.c.input_tokens,
            attempts.c.output_tokens,
        )
        .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
        .where(attempts.c.finished_at >= since, jobs.c.run_id + 0 == run.id)
    )


async def latest_errors(db: Database, run: RunInfo, *, since: datetime, limit: int = 8) -> list[AttemptRow]:
    """The run's latest failed attempts finished since ``since``, newest first: by ``ix_attempts_finished``
    backwards, so the read stays within the span (a run without failures is not read to its start)."""
    query = (
        attempt_row_select()
        .where(
            attempts.c.finished_at >= since, jobs.c.run_id + 0 == run.id, attempts.c.error_class.is_not(None)
        )
        .order_by(attempts.c.finished_at.desc(), attempts.c.id.desc())
        .limit(limit)
    )
    return await fetch_attempt_rows(db, query)


async def latest_outputs(
    db: Database, run: RunInfo, *, limit: int = 5, width: int = 500
) -> list[tuple[str, str]]:
    """The run's latest answers as ``(custom_id, output text cut to width)``, newest first (for the
    dashboard's ``--show-content`` only)."""
    query = (
        select(jobs.c.custom_id, results.c.output_text)
        .select_from(results.join(jobs, jobs.c.id == results.c.job_id))
        .where(jobs.c.run_id == run.id)
        .order_by(results.c.id.desc())
        .limit(limit)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [(custom_id, (text or "")[:width]) for custom_id, text in rows]
