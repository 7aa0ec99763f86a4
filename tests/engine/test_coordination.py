"""The runners of one run split the rate limits by who is busy, on a real store (SQLite and PostgreSQL).

The coordination's clock is a controlled one, so holds and shares are checked without sleeping.
"""

from __future__ import annotations

from helpers.store_data import queue, success

from batchrunner.engine.coordination import RunCoordination
from batchrunner.errors import StoreError
from batchrunner.policy.ratelimit import ProviderLimiter, RateLimits
from batchrunner.store.store import Store

NOW = 1000.0


def coordination_for(store: Store, run_id: int, runner_id: str) -> tuple[RunCoordination, ProviderLimiter]:
    coordination = RunCoordination(
        store, run_id, runner_id, stale_after_s=30, sync_interval_s=0.25, clock=lambda: NOW
    )
    limiter = ProviderLimiter(RateLimits(rpm=600), clock=lambda: NOW)
    return coordination, coordination.adopt("openai", limiter)


async def test_a_runner_alone_takes_the_whole_limit_without_waiting(store: Store) -> None:
    run_id = await queue(store, 2)
    await store.register_runner(runner_id="me", host="h", pid=1, run_id=run_id)
    await store.register_runner(runner_id="idle", host="h", pid=2, run_id=run_id)  # holds nothing
    coordination, limiter = coordination_for(store, run_id, "me")
    await store.claim(run_id, "me", 1, lease_seconds=60)
    await coordination.became_busy()
    assert limiter.part == coordination.part == (0, 1)
    assert limiter.paused_until == float("-inf")  # nobody to wait for


async def test_joining_busy_runners_holds_back_then_the_share_follows_who_is_busy(store: Store) -> None:
    run_id = await queue(store, 4)
    for runner_id in ("me", "a", "b"):
        await store.register_runner(runner_id=runner_id, host="h", pid=1, run_id=run_id)
    [a_job] = await store.claim(run_id, "a", 1, lease_seconds=60)
    [b_job] = await store.claim(run_id, "b", 1, lease_seconds=60)
    coordination, limiter = coordination_for(store, run_id, "me")
    await store.claim(run_id, "me", 1, lease_seconds=60)
    await coordination.became_busy()
    assert limiter.part == (2, 3)  # "me" sorts after "a" and "b"
    # Nothing is sent until the others have had two recounts' time to shrink to their thirds.
    assert limiter.paused_until == NOW + 0.5
    late = ProviderLimiter(RateLimits(rpm=600), clock=lambda: NOW)
    assert coordination.adopt("anthropic", late).paused_until == NOW + 0.5  # a provider seen later too
    # "a" runs dry: the two still busy take half each at the next recount.
    assert await store.record_outcomes([success(a_job.lease)]) == {a_job.lease.job_id}
    await coordination.sync()
    assert limiter.part == late.part == (1, 2)
    assert await store.record_outcomes([success(b_job.lease)]) == {b_job.lease.job_id}
    await coordination.sync()
    assert limiter.part == (0, 1)


async def test_without_rate_limits_a_joiner_does_not_hold_back(store: Store) -> None:
    run_id = await queue(store, 3)
    for runner_id in ("me", "a"):
        await store.register_runner(runner_id=runner_id, host="h", pid=1, run_id=run_id)
    await store.claim(run_id, "a", 1, lease_seconds=60)
    coordination = RunCoordination(store, run_id, "me", stale_after_s=30, clock=lambda: NOW)
    unlimited = coordination.adopt("openai", ProviderLimiter(RateLimits(), clock=lambda: NOW))
    await store.claim(run_id, "me", 1, lease_seconds=60)
    await coordination.became_busy()
    assert coordination.part == (1, 2)
    assert unlimited.paused_until == float("-inf")  # nothing to share: no reason to wait
    await store.register_runner(runner_id="b", host="h", pid=1, run_id=run_id)
    assert len(await store.claim(run_id, "b", 1, lease_seconds=60)) == 1  # a third runner at work ...
    await coordination.sync()
    assert coordination.part == (1, 2)  # ... not recounted: with no limit the part splits nothing


class UnreachableStore:
    async def busy_runners(self, run_id: int, *, stale_after_s: float) -> list[str]:
        raise StoreError("could not reach the database")


async def test_a_joiner_that_cannot_count_the_others_holds_back_all_the_same() -> None:
    coordination = RunCoordination(
        UnreachableStore(),  # type: ignore[arg-type]
        1,
        "me",
        stale_after_s=30,
        sync_interval_s=0.25,
        clock=lambda: NOW,
    )
    limiter = coordination.adopt("openai", ProviderLimiter(RateLimits(rpm=600), clock=lambda: NOW))
    await coordination.became_busy()
    assert limiter.paused_until == NOW + 0.5
