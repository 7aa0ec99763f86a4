"""What the dashboard plots (store/timeline.py), on SQLite and PostgreSQL: a run's attempts of the last
minutes in time buckets, from attempts written with known times, and its latest answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers.store_data import attempt, queue, success
from sqlalchemy import Select, insert, select

from batchrunner.models import JobState, Outcome, RunInfo
from batchrunner.policy.histogram import bucket_of
from batchrunner.store import insights, tables
from batchrunner.store.store import Store
from batchrunner.store.timeline import Bucket, errors_query, latest_errors, latest_outputs, run_timeline

NOW = datetime(2026, 1, 2, 12, 0, 5, tzinfo=UTC)
"""5 s into a 10 s bucket: the last bucket starts at 12:00:00."""


async def write_attempts(store: Store, run: str, rows: list[dict[str, Any]]) -> None:
    run_id = (await store.find_run(run)).id
    async with store.db.write() as conn:
        job_ids = (
            await conn.execute(select(tables.jobs.c.id).where(tables.jobs.c.run_id == run_id))
        ).scalars()
        job_id = next(iter(job_ids))
        for number, row in enumerate(rows, start=1):
            values = {"job_id": job_id, "number": number, "started_at": row["finished_at"], **row}
            await conn.execute(insert(tables.attempts).values(**values))


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


async def write_back(store: Store, run: str, rows: list[dict[str, Any]]) -> None:
    """One job of ``run`` per row, claimed and written back as the engine does (its attempt as given)."""
    run_id = (await store.find_run(run)).id
    claimed = await store.claim(run_id, "me", len(rows), lease_seconds=60)
    outcomes = []
    for job, row in zip(claimed, rows, strict=True):
        record = replace(attempt(1, row.get("error_class")), started_at=row["finished_at"], **row)
        if record.error_class is None:
            outcomes.append(replace(success(job.lease), attempt=record))
        else:
            outcomes.append(Outcome(lease=job.lease, attempt=record, state=JobState.FAILED))
    await store.record_outcomes(outcomes)


async def test_attempts_fall_in_their_buckets_with_their_figures(store: Store) -> None:
    await queue(store, 6, run="r")
    await queue(store, 1, run="other")
    await write_back(store, "r", [
        {"finished_at": ago(1), "latency_ms": 100.0, "ttft_ms": 40.0, "input_tokens": 10, "output_tokens": 5},
        {"finished_at": ago(2), "latency_ms": 300.0, "input_tokens": 1, "output_tokens": 1},
        {"finished_at": ago(3), "status_code": 429, "error_class": "rate_limited", "latency_ms": 9.0},
        {"finished_at": ago(12), "latency_ms": 50.0},  # the bucket before
        {"finished_at": ago(12), "status_code": 500, "error_class": "transient"},
        {"finished_at": ago(700), "latency_ms": 1.0},  # older than the span: not read
    ])  # fmt: skip
    await write_back(store, "other", [{"finished_at": ago(1), "latency_ms": 5.0}])  # another run's
    timeline = await run_timeline(store.db, await store.find_run("r"), now=NOW, span_s=60, bucket_s=10)

    assert [b.start for b in timeline.buckets] == [ago(55 - 10 * i) for i in range(6)]
    last, before = timeline.buckets[-1], timeline.buckets[-2]
    assert (last.succeeded, last.tokens, last.rate_limited, last.errors) == (2, 17, 1, {"rate_limited": 1})
    # the histogram's bucket bounds: never below the true value, at most 5% above
    assert 300.0 <= (last.percentile(99) or 0) <= 315.0 and 100.0 <= (last.percentile(50) or 0) <= 105.0
    assert 40.0 <= (last.percentile(50, "ttft") or 0) <= 42.0
    assert sum(last.latency_counts.values()) == 3  # a failed attempt's latency is counted too
    assert (before.succeeded, before.errors) == (1, {"transient": 1})
    assert all(b.succeeded == 0 and not b.errors for b in timeline.buckets[:-2])


async def test_the_latest_errors_are_the_spans_newest_first(store: Store) -> None:
    await queue(store, 1, run="r")
    await write_attempts(store, "r", [
        {"finished_at": ago(700), "status_code": 500, "error_class": "transient"},  # before the span
        {"finished_at": ago(30), "status_code": 429, "error_class": "rate_limited", "error_message": "slow"},
        {"finished_at": ago(20), "status_code": 200},
        {"finished_at": ago(10), "status_code": 500, "error_class": "transient", "error_message": "oops"},
    ])  # fmt: skip
    errors = await latest_errors(store.db, await store.find_run("r"), since=ago(600), limit=5)
    assert [(e.number, e.error_class, e.error_message) for e in errors] == [
        (4, "transient", "oops"),
        (2, "rate_limited", "slow"),
    ]


def test_percentiles_come_from_the_histogram() -> None:
    counts = {bucket_of(float(n)): 0 for n in range(1, 101)}
    for n in range(1, 101):
        counts[bucket_of(float(n))] += 1
    bucket = Bucket(start=NOW, latency_counts=counts)
    for q, exact in ((50, 50.0), (95, 95.0), (99, 99.0)):
        assert exact <= (bucket.percentile(q) or 0) <= exact * 1.05
    assert Bucket(start=NOW).percentile(50) is None  # no answer in the bucket: no point drawn


async def test_the_latest_answers_newest_first_cut_to_width(store: Store) -> None:
    await queue(store, 3, run="r")
    run = await store.find_run("r")
    async with store.db.write() as conn:
        ids = (await conn.execute(select(tables.jobs.c.id).order_by(tables.jobs.c.id))).scalars().all()
        for job_id, output in zip(ids, ["first", "second", "x" * 900], strict=True):
            await conn.execute(
                insert(tables.results).values(job_id=job_id, output_text=output, created_at=NOW)
            )
    outputs = await latest_outputs(store.db, run, limit=2, width=500)
    assert outputs == [("job-3", "x" * 500), ("job-2", "second")]


@pytest.mark.parametrize(
    ("read", "index"),
    [
        (lambda run: errors_query(run, NOW, 8), "ix_attempts_failed"),
        (insights._resent, "ix_attempts_interrupted"),
        (insights._live_runners, "ix_jobs_leased"),
    ],
    ids=["latest errors", "re-sent after interruption", "jobs held by each runner"],
)
async def test_reads_of_the_few_go_through_their_partial_index(
    tmp_path: Path, read: Callable[[RunInfo], Select[Any]], index: str
) -> None:
    """The latest errors walk the failed attempts only (``ix_attempts_failed``), "re-sent" the
    interrupted ones (``ix_attempts_interrupted``) and a runner's held jobs its own (``ix_jobs_leased``):
    not every job of the run, nor every attempt, nor the run's running jobs (a million in batch mode)."""
    store = await Store.open(str(tmp_path / "plan.db"))
    try:
        await queue(store, 3, run="r")
        query = read(await store.find_run("r")).compile(dialect=store.db.reader.dialect)
        params = tuple(query.params[name] for name in query.positiontup or ())
        async with store.db.read() as conn:
            plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", params)).all()
    finally:
        await store.close()
    steps = [str(row[-1]) for row in plan]
    assert any(index in step for step in steps), steps
    assert not any("ix_jobs_claim" in step for step in steps), steps
