"""Provider batches in the store (docs/batch.md "Jobs in a batch"), on SQLite and PostgreSQL.

A batch's row and its jobs are committed together; its jobs are invisible to realtime claims, to the
dead-runner takeback and to the realtime runner's "anything left?"; its lines are written back fenced by
the batch's lease; what it did not answer goes back to pending with the attempt refunded.
"""

from __future__ import annotations

import socket

from helpers.store_data import attempt, queue, states, success
from sqlalchemy import select

from batchrunner.models import BatchState, JobState, Lease, Outcome
from batchrunner.store import tables
from batchrunner.store.store import Store


async def _jobs(store: Store) -> list[tuple[str, str, int | None, int]]:
    query = select(
        tables.jobs.c.custom_id, tables.jobs.c.state, tables.jobs.c.batch_id, tables.jobs.c.attempts
    )
    async with store.db.read() as conn:
        return [tuple(row) for row in await conn.execute(query.order_by(tables.jobs.c.id))]


async def test_a_batch_holds_its_jobs_apart_from_every_realtime_transition(store: Store) -> None:
    run_id = await queue(store, 5)
    page = await store.pending_page(run_id, ("fake", "/v1/chat/completions", "m"), 0, 10, any_model=False)
    ids = [int(row[0]) for row in page]
    assert len(ids) == 5
    batch = await store.form_batch(
        run_id, local_id="brtest", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=ids[:3], size_bytes=300,
    )  # fmt: skip
    assert batch is not None and batch.requests == 3 and batch.state is BatchState.PREPARING
    assert [(s, b is not None, n) for _, s, b, n in await _jobs(store)] == [
        *[("running", True, 1)] * 3,
        *[("pending", False, 0)] * 2,
    ]
    # a realtime claim takes only the two pending ones; the queue counts the batch's jobs as nobody's running
    claimed = await store.claim(run_id, "me", 10, lease_seconds=60)
    assert sorted(job.custom_id for job in claimed) == ["job-4", "job-5"]
    await store.record_outcomes([success(job.lease) for job in claimed])
    state = await store.queue_state(run_id)
    assert (state.pending, state.running) == (0, 0)
    # a dead-runner takeback leaves them alone (no runner owns them, their lease never expires)
    taken, _ = await store.take_back_from_dead(
        run_id, 6, host=socket.gethostname(), is_alive=lambda _pid: False, stale_after_s=0.0
    )
    assert taken == 0
    # the same jobs cannot be put in a second batch
    assert await store.form_batch(
        run_id, local_id="brtwice", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=ids[:3], size_bytes=300,
    ) is None  # fmt: skip
    assert [b.local_id for b in await store.batches_of(run_id)] == ["brtest"]


async def test_lines_are_written_under_the_batchs_lease_and_the_rest_goes_back(store: Store) -> None:
    run_id = await queue(store, 4)
    ids = [int(row[0]) for row in await store.pending_page(
        run_id, ("fake", "/v1/chat/completions", "m"), 0, 10, any_model=False)]  # fmt: skip
    batch = await store.form_batch(
        run_id, local_id="brlines", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=ids, size_bytes=1,
    )  # fmt: skip
    assert batch is not None
    assert await store.held_jobs(batch, ids) == {job_id: ("m", 1) for job_id in ids}
    expired = Outcome(
        lease=Lease(job_id=ids[1], token="brlines"), attempt=attempt(1, "batch_expired"),
        state=JobState.PENDING, error_class="batch_expired", refund_attempt=True,
    )  # fmt: skip
    stranger = success(Lease(job_id=ids[2], token="brother"))  # another batch's lease: refused
    written = await store.record_outcomes([success(Lease(job_id=ids[0], token="brlines")), expired, stranger])
    assert written == {ids[0], ids[1]}
    back = await store.release_batch(batch, BatchState.DONE)
    assert back == 2  # the two without a line written
    assert [(s, b is not None, n) for _, s, b, n in await _jobs(store)] == [
        ("succeeded", True, 1), ("pending", False, 0), ("pending", False, 0), ("pending", False, 0)
    ]  # fmt: skip
    [row] = await store.batches_of(run_id)
    assert row.state is BatchState.DONE and row.ended_at is not None
    assert await store.batches_of(run_id, live_only=True) == []


async def test_a_refused_batch_fails_its_jobs_with_the_reason(store: Store) -> None:
    run_id = await queue(store, 2)
    ids = [int(row[0]) for row in await store.pending_page(
        run_id, ("fake", "/v1/chat/completions", "m"), 0, 10, any_model=False)]  # fmt: skip
    batch = await store.form_batch(
        run_id, local_id="brbad", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=ids, size_bytes=1,
    )  # fmt: skip
    assert batch is not None
    await store.update_batch(batch.id, remote_id="batch_1", state=BatchState.SUBMITTED)
    assert await store.known_remote_ids("fake") == {"batch_1"}
    assert await store.fail_batch_jobs(batch, "refused: mixed models") == 2
    assert set((await states(store)).values()) == {JobState.FAILED}
    [row] = await store.batches_of(run_id)
    assert (row.state, row.error) == (BatchState.FAILED, "refused: mixed models")


async def test_one_process_at_a_time_sends_a_batch(store: Store) -> None:
    run_id = await queue(store, 1)
    batch = await store.form_batch(
        run_id, local_id="brhold", provider="fake", endpoint="/v1/chat/completions", model="m",
        job_ids=[1], size_bytes=1,
    )  # fmt: skip
    assert batch is not None
    assert await store.hold_batch(batch, "host-a:1", 60, gone=[])
    assert await store.hold_batch(batch, "host-a:1", 60, gone=[])  # its own hold, renewed
    assert not await store.hold_batch(batch, "host-b:2", 60, gone=[])  # a live holder keeps it
    assert await store.batch_owners(run_id) == {"host-a:1"}
    assert await store.hold_batch(batch, "host-b:2", 60, gone=["host-a:1"])  # its holder died: taken over
    assert not await store.hold_batch(batch, "host-a:1", 60, gone=[])
    assert await store.hold_batch(batch, "host-c:3", -1, gone=["host-b:2"])  # a hold that lapsed at once ...
    assert await store.hold_batch(batch, "host-d:4", 60, gone=[])  # ... is anyone's
    await store.update_batch(batch.id, remote_id="batch_9", state=BatchState.SUBMITTED)
    assert not await store.hold_batch(batch, "host-d:4", 60, gone=[])  # submitted: nothing left to send
