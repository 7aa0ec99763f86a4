"""Taking jobs back knows what was sent; cancel keeps the answers in flight; the latest run is the last used.

The store contract on SQLite and PostgreSQL (see store_fixtures.py), asserting on the rows written.
"""

from __future__ import annotations

from typing import Any

from helpers.store_data import attempt, queue, states, success
from sqlalchemy import select

from batchrunner.models import JobState, Outcome
from batchrunner.store import tables
from batchrunner.store.store import Store


async def attempt_rows(store: Store) -> list[dict[str, Any]]:
    query = select(tables.attempts).order_by(tables.attempts.c.id)
    async with store.db.read() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def job_attempts(store: Store) -> dict[str, int]:
    query = select(tables.jobs.c.custom_id, tables.jobs.c.attempts).order_by(tables.jobs.c.id)
    async with store.db.read() as conn:
        return {custom_id: n for custom_id, n in await conn.execute(query)}


async def test_a_dead_runners_claimed_jobs_cost_nothing_and_its_sent_ones_are_recorded(store: Store) -> None:
    run_id = await queue(store, 3)
    await store.register_runner(runner_id="dead", host="h", pid=1, run_id=run_id)
    claimed = await store.claim(run_id, "dead", 3, lease_seconds=60)
    assert await store.mark_sent([claimed[0].lease]) == {claimed[0].lease.job_id}

    # its journal was read (same machine), so what is not marked sent was not sent
    taken = await store.take_back_from_dead(
        run_id, 6, host="h", is_alive=lambda _pid: False, stale_after_s=30, journaled=["dead"]
    )
    assert taken == (3, ["dead"])

    assert await states(store) == {"job-1": "pending", "job-2": "pending", "job-3": "pending"}
    assert await job_attempts(store) == {"job-1": 1, "job-2": 0, "job-3": 0}  # only the sent one counts
    [row] = await attempt_rows(store)
    assert (row["job_id"], row["number"], row["runner_id"]) == (claimed[0].lease.job_id, 1, "dead")
    assert row["error_class"] == "interrupted" and row["possibly_billed"] is True

    stats = await store.stats(await store.find_run("r"))
    insights = await store.insights(await store.find_run("r"))
    assert stats.attempts == 1 and insights.possibly_billed == 1
    assert insights.resent_after_interruption == 0  # not sent again yet

    [again] = await store.claim(run_id, "alive", 1, lease_seconds=60)
    await store.mark_sent([again.lease])
    insights = await store.insights(await store.find_run("r"))
    assert insights.resent_after_interruption == 1  # in flight a second time
    await store.record_outcomes([success(again.lease, 2)])
    insights = await store.insights(await store.find_run("r"))
    assert insights.resent_after_interruption == 1 and insights.possibly_billed == 1


async def test_a_graceful_release_refunds_only_what_was_not_sent(store: Store) -> None:
    run_id = await queue(store, 2)
    first, second = await store.claim(run_id, "me", 2, lease_seconds=60)
    await store.mark_sent([first.lease])
    assert await store.release([first.lease, second.lease], max_attempts=1) == 2
    # the sent one was on its last attempt: it fails, recorded as interrupted; the other costs nothing
    assert await states(store) == {"job-1": "failed", "job-2": "pending"}
    assert await job_attempts(store) == {"job-1": 1, "job-2": 0}
    assert [row["error_class"] for row in await attempt_rows(store)] == ["interrupted"]


async def test_cancel_keeps_the_answers_in_flight(store: Store) -> None:
    run_id = await queue(store, 5)
    flying, retrying, claimed = await store.claim(run_id, "me", 3, lease_seconds=60)
    await store.mark_sent([flying.lease, retrying.lease])

    assert await cancel(store, run_id) == 2  # the pending ones; "me" is live and holds the others
    assert await store.run_cancelled(run_id)
    assert await store.release([claimed.lease]) == 1  # as "me" does once it sees the cancel
    assert (await job_attempts(store))["job-3"] == 0  # never sent: it cost nothing
    assert await states(store) == {
        "job-1": "running", "job-2": "running", "job-3": "cancelled", "job-4": "cancelled",
        "job-5": "cancelled",
    }  # fmt: skip

    retry = Outcome(lease=retrying.lease, attempt=attempt(1, "transient"), state=JobState.PENDING)
    accepted = await store.record_outcomes([success(flying.lease), retry])
    assert accepted == {flying.lease.job_id, retrying.lease.job_id}  # answers that arrive are recorded
    assert (await states(store))["job-1"] == "succeeded"
    assert (await states(store))["job-2"] == "cancelled"  # no retry in a cancelled run
    async with store.db.read() as conn:
        assert len((await conn.execute(select(tables.results))).all()) == 1

    assert await store.retry_failed(run_id) == 0
    assert not await store.run_cancelled(run_id)  # retry lifts the cancel


async def test_cancel_takes_back_the_jobs_of_dead_runners(store: Store) -> None:
    run_id = await queue(store, 3)
    await store.register_runner(runner_id="dead", host="h", pid=1, run_id=run_id)
    sent, _claimed = await store.claim(run_id, "dead", 2, lease_seconds=600)
    await store.mark_sent([sent.lease])
    assert await cancel(store, run_id, stale_after_s=0) == 3  # its heartbeat lapsed: dead
    assert set((await states(store)).values()) == {"cancelled"}
    assert [row["error_class"] for row in await attempt_rows(store)] == ["interrupted"]
    # no journal of it was read: the job it claimed may have been sent (its mark not yet written), so
    # its attempt keeps counting (a job that kills its runner every time still runs out of attempts)
    assert await job_attempts(store) == {"job-1": 1, "job-2": 1, "job-3": 0}


async def cancel(store: Store, run_id: int, stale_after_s: float = 30) -> int:
    return await store.cancel(run_id, host="h", is_alive=lambda _pid: True, stale_after_s=stale_after_s)


async def test_the_latest_run_is_the_one_used_last(store: Store) -> None:
    first = await queue(store, 1, run="first")
    await queue(store, 1, run="second")
    assert (await store.find_run(None)).name == "second"
    await store.retry_failed(first)
    assert (await store.find_run(None)).name == "first"
    await cancel(store, (await store.find_run("second")).id)
    assert (await store.find_run(None)).name == "second"
    await store.touch_run(first)
    assert (await store.find_run(None)).name == "first"
