"""``status``'s timing figures: latency and time-to-first-token percentiles over the run (from its
histograms, policy/histogram.py) and over the last minute (from the attempts themselves), and the last
minute's throughput. Both reads are bounded: a few hundred histogram rows, and the attempts of one minute
found through ``ix_attempts_finished``, so they cost the same on a million-job run (BENCHMARKS.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, String, select, type_coerce

from batchrunner.models import Percentiles, RunInfo, TimingFigures
from batchrunner.policy.histogram import percentile, percentile_of
from batchrunner.store.database import Database, utcnow
from batchrunner.store.reports import fetch_all
from batchrunner.store.tables import attempts, jobs, latencies

__all__ = ["LAST_MINUTE", "timing"]

LAST_MINUTE = timedelta(seconds=60)


async def timing(db: Database, run: RunInfo) -> TimingFigures:
    now = utcnow()
    histogram = select(latencies.c.kind, latencies.c.bucket, latencies.c.count).where(
        latencies.c.run_id == run.id
    )
    recent = (
        select(attempts.c.latency_ms, attempts.c.ttft_ms, attempts.c.error_class)
        .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
        # ``run_id + 0``: not an index term, so SQLite (without statistics) walks the minute's attempts by
        # ix_attempts_finished instead of every job of the run (measured: 0.49 s -> 0.09 s on 1M jobs)
        .where(_since(db, now - LAST_MINUTE), (jobs.c.run_id + 0) == run.id)
    )
    async with db.read() as conn:
        counted = (await conn.execute(histogram)).all()
        minute = await fetch_all(db, conn, recent)
    by_kind: dict[str, dict[int, int]] = {"latency": {}, "ttft": {}}
    for kind, bucket, count in counted:
        by_kind.setdefault(kind, {})[int(bucket)] = int(count)
    latencies_now = [float(latency) for latency, _, _ in minute if latency is not None]
    ttfts_now = [float(ttft) for _, ttft, _ in minute if ttft is not None]
    answered = sum(1 for _, _, error_class in minute if error_class is None)
    return TimingFigures(
        latency_run=_from_histogram(by_kind["latency"]),
        latency_last_minute=_exact(latencies_now),
        ttft_run=_from_histogram(by_kind["ttft"]),
        ttft_last_minute=_exact(ttfts_now),
        answered_last_minute=answered,
        attempts_last_minute=len(minute),
    )


def _since(db: Database, cutoff: datetime) -> ColumnElement[bool]:
    """``finished_at >= cutoff``; on SQLite against the stored text itself, so the statement can go
    straight to the driver (``fetch_all``: no bind processing there) and still compare like for like."""
    if not db.is_sqlite:
        return attempts.c.finished_at >= cutoff
    stored = cutoff.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return type_coerce(attempts.c.finished_at, String) >= stored


def _from_histogram(counts: dict[int, int]) -> Percentiles | None:
    if not counts:
        return None
    return Percentiles(
        p50=percentile(counts, 0.50) or 0.0,
        p95=percentile(counts, 0.95) or 0.0,
        p99=percentile(counts, 0.99) or 0.0,
        count=sum(counts.values()),
    )


def _exact(values: list[float]) -> Percentiles | None:
    if not values:
        return None
    return Percentiles(
        p50=percentile_of(values, 0.50) or 0.0,
        p95=percentile_of(values, 0.95) or 0.0,
        p99=percentile_of(values, 0.99) or 0.0,
        count=len(values),
    )
