"""What ``status`` and ``export`` read of provider batches, on SQLite and PostgreSQL: jobs a live batch
holds counted apart, the share of the cost paid at batch price, what served each exported job; and the
jobs a batch gives back in a cancelled run end cancelled.
"""

from __future__ import annotations

import dataclasses

import pytest
from helpers.store_data import queue, states, success

from batchrunner.models import BatchInfo, BatchState, JobState, Lease, Outcome
from batchrunner.store.store import Store

ENDPOINT = "/v1/chat/completions"


def _paid(outcome: Outcome, cost: float) -> Outcome:
    assert outcome.result is not None
    return dataclasses.replace(outcome, result=dataclasses.replace(outcome.result, cost_usd=cost))


async def _batch(store: Store, run_id: int, count: int, local_id: str) -> tuple[BatchInfo, list[int]]:
    page = await store.pending_page(run_id, ("fake", ENDPOINT, "m"), 0, count, any_model=False)
    ids = [int(row[0]) for row in page]
    batch = await store.form_batch(
        run_id, local_id=local_id, provider="fake", endpoint=ENDPOINT, model="m", job_ids=ids, size_bytes=1
    )
    assert batch is not None
    return batch, ids


async def test_status_counts_batched_jobs_apart_and_the_batch_price_share(store: Store) -> None:
    run_id = await queue(store, 5)
    run = await store.find_run("r")
    batch, ids = await _batch(store, run_id, 3, "brviews")
    await store.update_batch(batch.id, remote_id="batch_v", state=BatchState.SUBMITTED)
    stats = await store.stats(run)
    assert (stats.by_state["batched"], stats.by_state["running"], stats.by_state["pending"]) == (3, 0, 2)
    assert stats.attempts == 3 and stats.total == 5

    claimed = await store.claim(run_id, "me", 10, lease_seconds=60)
    await store.record_outcomes([_paid(success(job.lease), 0.02) for job in claimed])
    lines = [_paid(success(Lease(job_id=job_id, token="brviews")), 0.01) for job_id in ids[:2]]
    assert await store.record_outcomes(lines) == set(ids[:2])
    assert await store.release_batch(batch, BatchState.DONE) == 1  # no line for the third

    summary = await store.batch_summary(run)
    assert [(b.local_id, b.remote_id, b.state) for b in summary.batches] == [
        ("brviews", "batch_v", BatchState.DONE)
    ]
    assert summary.live == []
    assert (summary.batch_results, summary.all_results) == (2, 4)
    assert summary.batch_cost_usd == pytest.approx(0.02) and summary.all_cost_usd == pytest.approx(0.06)
    assert summary.cost_share == pytest.approx(1 / 3)
    assert (await store.stats(run)).by_state["batched"] == 0

    served = {row.job_id: row.served_by async for page in store.export_pages(run) for row in page}
    assert served == {
        ids[0]: "batch", ids[1]: "batch", ids[2]: None,  # the third is pending again, never answered
        **{job.lease.job_id: "realtime" for job in claimed},
    }  # fmt: skip


async def test_a_run_without_batches_has_an_empty_summary(store: Store) -> None:
    await queue(store, 2)
    summary = await store.batch_summary(await store.find_run("r"))
    assert summary.batches == [] and summary.cost_share is None and summary.all_results == 0


async def test_jobs_a_batch_gives_back_in_a_cancelled_run_are_cancelled(store: Store) -> None:
    run_id = await queue(store, 3)
    batch, _ = await _batch(store, run_id, 2, "brgone")
    assert await store.cancel(run_id, host="h", is_alive=lambda _pid: True, stale_after_s=0) == 1
    assert await store.release_batch(batch, BatchState.DONE) == 2
    assert set((await states(store)).values()) == {JobState.CANCELLED}
