"""What the dashboard plots: a run's recent attempts in time buckets, and its latest answers.

The buckets are added up from the run's per-second rows (``run_seconds``, kept by the run counters'
triggers) and latency histograms (``latency_slots``, counted at write-back in slots of 1 and 5 s; see
docs/status-counters.md), so a snapshot reads a few rows per second of the span, whatever the run's size
or pace. Percentiles come from the histograms (policy/histogram.py: never below the true value, at most
5% above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Select, cast, select

from batchrunner.models import AttemptRow, RunInfo
from batchrunner.policy.histogram import percentile
from batchrunner.store.attemptlog import attempt_row_select, fetch_attempt_rows
from batchrunner.store.database import Database, int_sum
from batchrunner.store.tables import attempts, jobs, latency_slots, results, run_seconds
from batchrunner.store.writeback import SLOT_WIDTHS

__all__ = ["Bucket", "Timeline", "errors_query", "latest_errors", "latest_outputs", "run_timeline"]


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
    latency_counts: dict[int, int] = field(default_factory=dict)
    """The answers' latencies, as a histogram (policy/histogram.py)."""
    ttft_counts: dict[int, int] = field(default_factory=dict)
    """Their times to first token (streamed requests only), likewise."""

    def percentile(self, q: float, kind: str = "latency") -> float | None:
        """The ``q`` percentile (0 < q <= 100) of the answers' latency (or ``ttft``), None if none."""
        return percentile(self.latency_counts if kind == "latency" else self.ttft_counts, q / 100)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    bucket_s: float
    buckets: list[Bucket]
    """Oldest first, one per ``bucket_s`` up to now, empty ones included."""


async def run_timeline(
    db: Database, run: RunInfo, *, now: datetime, span_s: float = 600.0, bucket_s: float = 10.0
) -> Timeline:
    """The run's attempts finished in the last ``span_s`` seconds, in buckets of ``bucket_s`` (whole
    seconds, aligned to Unix time)."""
    width = max(int(bucket_s), 1)
    count = max(int(span_s // width), 1)
    first = (int(now.timestamp()) // width - (count - 1)) * width
    buckets = [Bucket(start=datetime.fromtimestamp(first + width * i, UTC)) for i in range(count)]
    slot = cast((run_seconds.c.second - first) / width, Integer)
    outcomes = (
        select(
            slot,
            run_seconds.c.outcome,
            int_sum(run_seconds.c.attempts),
            int_sum(run_seconds.c.tokens),
            int_sum(run_seconds.c.rate_limited),
        )
        .where(run_seconds.c.run_id == run.id, run_seconds.c.second >= first)
        .group_by(slot, run_seconds.c.outcome)
    )
    slot_width = max(w for w in SLOT_WIDTHS if width % w == 0)
    latency_slot = cast((latency_slots.c.start - first) / width, Integer)
    timed = (
        select(latency_slot, latency_slots.c.kind, latency_slots.c.bucket, int_sum(latency_slots.c.count))
        .where(
            latency_slots.c.run_id == run.id,
            latency_slots.c.width == slot_width,
            latency_slots.c.start >= first,
        )
        .group_by(latency_slot, latency_slots.c.kind, latency_slots.c.bucket)
    )
    async with db.read() as conn:
        outcome_rows = (await conn.execute(outcomes)).all()
        latency_rows = (await conn.execute(timed)).all()
    for index, outcome, tried, tokens, rate_limited in outcome_rows:
        bucket = buckets[min(int(index), count - 1)]
        bucket.rate_limited += int(rate_limited)
        if outcome:
            bucket.errors[outcome] = bucket.errors.get(outcome, 0) + int(tried)
        else:
            bucket.succeeded += int(tried)
            bucket.tokens += int(tokens)
    for index, kind, histogram_bucket, n in latency_rows:
        bucket = buckets[min(int(index), count - 1)]
        counts = bucket.latency_counts if kind == "latency" else bucket.ttft_counts
        counts[int(histogram_bucket)] = counts.get(int(histogram_bucket), 0) + int(n)
    return Timeline(bucket_s=float(width), buckets=buckets)


async def latest_errors(db: Database, run: RunInfo, *, since: datetime, limit: int = 8) -> list[AttemptRow]:
    """The run's latest failed attempts finished since ``since``, newest first."""
    return await fetch_attempt_rows(db, errors_query(run, since, limit))


def errors_query(run: RunInfo, since: datetime, limit: int) -> Select[Any]:
    """By ``ix_attempts_failed`` (failed attempts only) backwards, so a run answering thousands a minute
    is not read through; ``run_id + 0`` keeps SQLite off ``ix_jobs_claim``, which would walk every job of
    the run, and ``IS NOT NULL`` is the partial index's own condition, word for word."""
    query: Select[Any] = (
        attempt_row_select()
        .where(
            attempts.c.finished_at >= since, jobs.c.run_id + 0 == run.id, attempts.c.error_class.is_not(None)
        )
        .order_by(attempts.c.finished_at.desc(), attempts.c.id.desc())
        .limit(limit)
    )
    return query


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
