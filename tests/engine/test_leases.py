"""A runner that was away sends only the jobs still leased to it, on a real store (SQLite and PostgreSQL).

The guard's clock is a controlled one: "away for 20 s" is a step of the clock, not a sleep. The guard
against stand-in stores (a heartbeat that fails, waits or counts) is in ``unit/test_leases.py``.
"""

from __future__ import annotations

import asyncio

from helpers.store_data import live_runners, queue

from batchrunner.engine.leases import LeaseGuard
from batchrunner.store.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_runner_back_from_a_freeze_drops_the_jobs_others_took_over(store: Store) -> None:
    run_id = await queue(store, 3)
    for runner_id, pid in (("me", 1), ("other", 2)):
        await store.register_runner(runner_id=runner_id, host="h", pid=pid, run_id=run_id)
    clock = Clock()
    guard = LeaseGuard(store, "me", lease_s=60, fresh_s=15, clock=clock)
    first, second = await store.claim(run_id, "me", 2, lease_seconds=60)
    guard.claimed([first.lease, second.lease])
    never = asyncio.Event()
    assert await guard.still_ours(first.lease, never) is True  # fresh: no question asked

    # "me" freezes; the other runner judges it dead, takes both jobs back and claims one of them.
    assert await store.take_back_from_dead(
        run_id, 6, host="h", is_alive=lambda pid: pid != 1, stale_after_s=60
    ) == (2, ["me"])
    [taken] = await store.claim(run_id, "other", 1, lease_seconds=60)
    assert taken.lease.job_id == first.lease.job_id
    clock.now += 20  # "me" wakes up: its last heartbeat is too old to trust

    assert await guard.still_ours(first.lease, never) is False  # another runner's now
    assert await guard.still_ours(second.lease, never) is False  # back in the queue: not ours either
    assert guard.dropped == 2
    # The beat made "me" live again, and what it claims from now on is its own.
    assert "me" in await live_runners(store, run_id)
    reclaimed = await store.claim(run_id, "me", 2, lease_seconds=60)
    assert [job.lease.job_id for job in reclaimed] == [second.lease.job_id, second.lease.job_id + 1]
    guard.claimed(job.lease for job in reclaimed)
    assert [await guard.still_ours(job.lease, never) for job in reclaimed] == [True, True]
    assert await guard.still_ours(second.lease, never) is False  # the old lease on the same job


async def test_a_job_cancelled_while_the_runner_was_away_is_not_sent(store: Store) -> None:
    run_id = await queue(store, 1)
    await store.register_runner(runner_id="me", host="h", pid=1, run_id=run_id)
    clock = Clock()
    guard = LeaseGuard(store, "me", lease_s=60, fresh_s=15, clock=clock)
    [job] = await store.claim(run_id, "me", 1, lease_seconds=60)
    guard.claimed([job.lease])
    clock.now += 15
    # away past its heartbeat's lapse (stale_after_s=0 here: no need to wait), so cancel takes its job
    assert await store.cancel(run_id, host="h", is_alive=lambda _pid: True, stale_after_s=0) == 1
    assert await guard.still_ours(job.lease, asyncio.Event()) is False
