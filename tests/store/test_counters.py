"""The run counters (store/counters.py) against the rows they count, through every queue transition, on
SQLite and PostgreSQL; and migration 0009 on a database made before it."""

from __future__ import annotations

import asyncio
import math
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from helpers.database import undo_run_counters
from helpers.store_data import attempt, queue, success

from batchrunner.models import BatchState, JobState, Outcome, ResultRecord, RunInfo
from batchrunner.store import counters
from batchrunner.store.store import Store


async def figures(store: Store, run: RunInfo) -> dict[str, Any]:
    """What status shows of the run's counters."""
    stats = await store.stats(run)
    batches = await store.batch_summary(run)
    insights = await store.insights(run)
    return {
        "by_state": stats.by_state,
        "attempts": stats.attempts,
        "attempts_this_try": stats.attempts_this_try,
        "tokens": (stats.input_tokens, stats.output_tokens, stats.cached_tokens),
        "cost": round(stats.cost_usd, 9),
        "priced": (stats.priced_results, stats.unpriced_results),
        "activity": (stats.first_activity, stats.last_activity),
        "errors": stats.top_errors,
        "batch": (batches.batch_results, round(batches.batch_cost_usd, 9), batches.all_results),
        "possibly_billed": insights.possibly_billed,
        "spent": round(float(await store.spent_usd(run)), 9),
    }


async def assert_counted(store: Store, run: RunInfo) -> dict[str, Any]:
    """The counters now agree with a recount from the rows (which then replaces them)."""
    counted = await figures(store, run)
    async with store.db.write() as conn:
        await conn.run_sync(lambda sync: counters.recount(sync, run.id))
    truth = await figures(store, run)
    assert counted == truth
    return truth


def priced(outcome: Outcome, cost: float | None, *, cached: int = 0) -> Outcome:
    assert outcome.result is not None
    return replace(outcome, result=replace(outcome.result, cost_usd=cost, cached_tokens=cached))


async def test_counters_follow_every_transition(store: Store) -> None:
    run_id = await queue(store, 12)
    run = await store.find_run("r")
    assert (await assert_counted(store, run))["by_state"]["pending"] == 12

    claimed = await store.claim(run_id, "me", 6, lease_seconds=60)
    await assert_counted(store, run)
    await store.mark_sent([job.lease for job in claimed[:4]])
    got = await assert_counted(store, run)
    assert (got["by_state"]["claimed"], got["by_state"]["running"]) == (2, 4)

    retry = Outcome(
        lease=claimed[1].lease,
        attempt=replace(attempt(1, "rate_limited"), status_code=429),
        state=JobState.PENDING,
        not_before=datetime.now(UTC) + timedelta(seconds=30),
    )
    failed = Outcome(
        lease=claimed[2].lease,
        attempt=replace(attempt(1, "permanent"), status_code=400),
        state=JobState.FAILED,
        error_class="permanent",
        error="bad request",
    )
    timed_out = replace(attempt(1, "timeout"), possibly_billed=True)
    billed = replace(retry, lease=claimed[3].lease, attempt=timed_out)
    await store.record_outcomes([priced(success(claimed[0].lease), 0.25, cached=1), retry, failed, billed])
    got = await assert_counted(store, run)
    assert got["by_state"]["succeeded"] == 1 and got["by_state"]["failed"] == 1
    assert got["tokens"] == (3, 2, 1) and got["cost"] == 0.25 and got["possibly_billed"] == 1
    assert dict(got["errors"]) == {"rate_limited": 1, "permanent": 1, "timeout": 1}

    await store.release([job.lease for job in claimed[4:]], max_attempts=3)  # claimed, never sent
    await assert_counted(store, run)
    again = await store.claim(run_id, "me", 2, lease_seconds=60)
    await store.mark_sent([again[0].lease])
    await store.release([job.lease for job in again], max_attempts=3)  # one in flight: interrupted
    got = await assert_counted(store, run)
    assert dict(got["errors"])["interrupted"] == 1 and got["possibly_billed"] == 2

    assert await store.retry_failed(run_id) == 1
    await assert_counted(store, run)
    unpriced = await store.claim(run_id, "me", 1, lease_seconds=60)
    await store.record_outcomes([priced(success(unpriced[0].lease), None)])
    got = await assert_counted(store, run)
    assert got["priced"] == (1, 1)

    await store.cancel(run_id, host="h", is_alive=lambda pid: True, stale_after_s=60)
    got = await assert_counted(store, run)
    assert got["by_state"]["pending"] == 0 and got["by_state"]["cancelled"] > 0
    assert sum(got["by_state"].values()) == 12


async def test_counters_follow_provider_batches(store: Store) -> None:
    run_id = await queue(store, 6)
    run = await store.find_run("r")
    page = await store.pending_page(run_id, ("fake", "/v1/chat/completions", "m"), 0, 10, any_model=False)
    ids = [int(row[0]) for row in page]
    batch = await store.form_batch(
        run_id, local_id="b1", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=ids[:4], size_bytes=10,
    )  # fmt: skip
    assert batch is not None
    assert (await assert_counted(store, run))["by_state"]["batched"] == 4
    held = await store.held_jobs(batch, ids[:2])
    lines = [
        priced(replace(success(store_lease(job_id, batch.local_id)), state=JobState.SUCCEEDED), 0.5)
        for job_id in held
    ]
    await store.record_outcomes(lines)
    got = await assert_counted(store, run)
    assert got["batch"] == (2, 1.0, 2) and got["by_state"]["batched"] == 2
    assert await store.release_batch(batch, BatchState.DONE) == 2
    got = await assert_counted(store, run)
    assert (got["by_state"]["batched"], got["by_state"]["pending"]) == (0, 4)

    failing = await store.form_batch(
        run_id, local_id="b2", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=ids[4:], size_bytes=10,
    )  # fmt: skip
    assert failing is not None
    assert await store.fail_batch_jobs(failing, "refused") == 2
    got = await assert_counted(store, run)
    assert (got["by_state"]["batched"], got["by_state"]["failed"]) == (0, 2)


def store_lease(job_id: int, token: str) -> Any:
    from batchrunner.models import Lease

    return Lease(job_id=job_id, token=token)


async def test_runners_writing_at_once_count_every_job(db_target: str) -> None:
    """Four stores (four connections, on PostgreSQL four shards) claim and answer one run at once."""
    first = await Store.open(db_target)
    run_id = await queue(first, 400)
    stores = [first, *[await Store.open(db_target) for _ in range(3)]]

    async def drain(store: Store, owner: str) -> None:
        while claimed := await store.claim(run_id, owner, 7, lease_seconds=60):
            await store.mark_sent([job.lease for job in claimed])
            await store.record_outcomes([priced(success(job.lease), 0.001) for job in claimed])

    try:
        await asyncio.gather(*(drain(store, f"r{i}") for i, store in enumerate(stores)))
        run = await first.find_run("r")
        got = await assert_counted(first, run)
        assert got["by_state"]["succeeded"] == 400 and got["attempts"] == 400
        assert math.isclose(got["cost"], 0.4)
    finally:
        for store in stores:
            await store.close()


async def test_an_older_database_gains_counters_of_what_it_holds(db_target: str) -> None:
    """0009 counts the rows already there; status then reads the same figures as before."""
    store = await Store.open(db_target)
    try:
        run_id = await queue(store, 5)
        claimed = await store.claim(run_id, "me", 3, lease_seconds=60)
        await store.record_outcomes([priced(success(job.lease), 0.1) for job in claimed[:2]])
        before = await figures(store, await store.find_run("r"))
        async with store.db.write() as conn:  # as the database was before 0009
            await undo_run_counters(conn)
    finally:
        await store.close()
    store = await Store.open(db_target)
    try:
        run = await store.find_run("r")
        assert await figures(store, run) == before
        assert before["by_state"]["succeeded"] == 2 and before["by_state"]["claimed"] == 1
        assert await assert_counted(store, run) == before
    finally:
        await store.close()


async def test_a_result_row_is_counted_once_with_its_tokens(store: Store) -> None:
    run_id = await queue(store, 1)
    [job] = await store.claim(run_id, "me", 1, lease_seconds=60)
    big = ResultRecord(output_text="x", response_json="{}", input_tokens=10**9, output_tokens=2 * 10**9)
    await store.record_outcomes([replace(success(job.lease), result=big)])
    got = await assert_counted(store, await store.find_run("r"))
    assert got["tokens"] == (10**9, 2 * 10**9, 0)


def decimals_in(value: Any, where: str = "") -> list[str]:
    """Where in ``value`` (dataclasses, dicts, lists) a ``Decimal`` sits."""
    if isinstance(value, Decimal):
        return [where]
    if is_dataclass(value) and not isinstance(value, type):
        return [p for f in fields(value) for p in decimals_in(getattr(value, f.name), f"{where}.{f.name}")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in decimals_in(v, f"{where}[{k!r}]")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in decimals_in(v, f"{where}[{i}]")]
    return []


async def test_counted_figures_read_back_as_plain_numbers(store: Store) -> None:
    # PostgreSQL sums bigints into numerics: a Decimal in a figure breaks the dashboard's JSON
    run_id = await queue(store, 3)
    run = await store.find_run("r")
    claimed = await store.claim(run_id, "me", 3, lease_seconds=60)
    timed = replace(attempt(1), latency_ms=120.0, ttft_ms=40.0)
    await store.record_outcomes([replace(success(job.lease), attempt=timed) for job in claimed[:2]])
    await store.record_outcomes([replace(success(claimed[2].lease), attempt=attempt(1, "server_error"))])
    runs, stats, timing = await store.list_runs(), await store.stats(run), await store.timing(run)
    timeline = await store.timeline(run, span_s=60, bucket_s=5)
    read = [runs, stats, timing, timeline, await store.insights(run), await store.batch_summary(run)]
    assert decimals_in(read) == []
    assert runs[0].jobs == 3 and stats.attempts == 3
    assert timing.answered_last_minute == 2 and timing.latency_run is not None
    assert sum(bucket.succeeded for bucket in timeline.buckets) == 2
