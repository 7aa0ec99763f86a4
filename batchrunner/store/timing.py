"""``status``'s timing figures: latency and time-to-first-token percentiles over the run and over the last
minute, from the histograms counted at write-back (policy/histogram.py: ``latencies`` for the run,
``latency_slots`` by the second), and the last minute's attempts and answers (``run_seconds``, kept by
the run counters' triggers, docs/status-counters.md). Every read is a few hundred rows, whatever the run's
size or pace (BENCHMARKS.md).

"The last minute" is the 60 whole seconds before the current one, and the current one so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from batchrunner.models import Percentiles, RunInfo, TimingFigures
from batchrunner.policy.histogram import percentile
from batchrunner.store.database import Database, int_sum, utcnow
from batchrunner.store.tables import latencies, latency_slots, run_seconds

__all__ = ["LAST_MINUTE_S", "timing"]

LAST_MINUTE_S = 60


async def timing(db: Database, run: RunInfo) -> TimingFigures:
    since = int(utcnow().timestamp()) - LAST_MINUTE_S
    histogram = select(latencies.c.kind, latencies.c.bucket, latencies.c.count).where(
        latencies.c.run_id == run.id
    )
    recent_histogram = (
        select(latency_slots.c.kind, latency_slots.c.bucket, int_sum(latency_slots.c.count))
        .where(latency_slots.c.run_id == run.id, latency_slots.c.width == 1, latency_slots.c.start >= since)
        .group_by(latency_slots.c.kind, latency_slots.c.bucket)
    )
    recent = select(
        int_sum(run_seconds.c.attempts),
        int_sum(run_seconds.c.attempts, where=run_seconds.c.outcome == ""),
    ).where(run_seconds.c.run_id == run.id, run_seconds.c.second >= since)
    async with db.read() as conn:
        over_run = _by_kind((await conn.execute(histogram)).all())
        over_minute = _by_kind((await conn.execute(recent_histogram)).all())
        tried, answered = (await conn.execute(recent)).one()
    return TimingFigures(
        latency_run=_from_histogram(over_run["latency"]),
        latency_last_minute=_from_histogram(over_minute["latency"]),
        ttft_run=_from_histogram(over_run["ttft"]),
        ttft_last_minute=_from_histogram(over_minute["ttft"]),
        answered_last_minute=int(answered),
        attempts_last_minute=int(tried),
    )


def _by_kind(rows: Iterable[Any]) -> dict[str, dict[int, int]]:
    """``(kind, bucket, count)`` rows as a histogram per kind."""
    by_kind: dict[str, dict[int, int]] = {"latency": {}, "ttft": {}}
    for kind, bucket, count in rows:
        by_kind.setdefault(kind, {})[int(bucket)] = int(count)
    return by_kind


def _from_histogram(counts: dict[int, int]) -> Percentiles | None:
    if not counts:
        return None
    return Percentiles(
        p50=percentile(counts, 0.50) or 0.0,
        p95=percentile(counts, 0.95) or 0.0,
        p99=percentile(counts, 0.99) or 0.0,
        count=sum(counts.values()),
    )
