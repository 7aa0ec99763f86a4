"""The lease guard against stand-in stores: a heartbeat that fails (the database out of reach), one that
answers when told to, one that counts; nothing is sent until the database confirms the lease.

The guard's clock is a controlled one: "away for 20 s" is a step of the clock, not a sleep. The guard on a
real store is in ``engine/test_leases.py``.
"""

from __future__ import annotations

import asyncio

from batchrunner.engine.leases import LeaseGuard
from batchrunner.errors import StoreError
from batchrunner.models import Lease


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class AwayStore:
    """The store's heartbeat, failing ``failures`` times (the database out of reach) before it answers."""

    def __init__(self, failures: int, renewed: set[Lease]) -> None:
        self.failures, self.renewed, self.calls = failures, renewed, 0

    async def heartbeat(self, runner_id: str, lease_seconds: float) -> set[Lease]:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("could not reach the database")
        return self.renewed


async def test_nothing_is_sent_until_the_database_confirms_the_lease() -> None:
    lease = Lease(job_id=1, token="t")
    clock = Clock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    away = AwayStore(failures=3, renewed={lease})
    guard = LeaseGuard(away, "me", lease_s=60, fresh_s=15, clock=clock, sleep=sleep)
    clock.now += 30
    assert await guard.still_ours(lease, asyncio.Event()) is True
    assert away.calls == 4 and waits == [1.0, 1.0, 1.0]


async def test_a_stop_ends_the_wait_for_an_unreachable_database() -> None:
    lease = Lease(job_id=1, token="t")
    clock = Clock()
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        stop.set()  # Ctrl-C while waiting

    away = AwayStore(failures=100, renewed={lease})
    guard = LeaseGuard(away, "me", lease_s=60, fresh_s=15, clock=clock, sleep=sleep)
    clock.now += 30
    assert await guard.still_ours(lease, stop) is None  # not sent; the job goes back at shutdown
    assert away.calls == 1


class SlowStore:
    """A heartbeat that answers when told to, renewing ``renewed``."""

    def __init__(self, renewed: set[Lease]) -> None:
        self.renewed, self.answer = renewed, asyncio.Event()

    async def heartbeat(self, runner_id: str, lease_seconds: float) -> set[Lease]:
        await self.answer.wait()
        return self.renewed


async def test_a_lease_claimed_before_a_heartbeat_stays_trusted_while_the_heartbeat_runs() -> None:
    before, during = Lease(job_id=1, token="a"), Lease(job_id=2, token="b")
    slow = SlowStore(renewed={before})
    guard = LeaseGuard(slow, "me", lease_s=60, fresh_s=15, clock=Clock())
    guard.claimed([before])
    beating = asyncio.create_task(guard.beat())
    await asyncio.sleep(0)  # the heartbeat is on its way to the database
    guard.claimed([during])
    never = asyncio.Event()
    assert await guard.still_ours(before, never) is True  # a worker sending meanwhile
    assert await guard.still_ours(during, never) is True
    slow.answer.set()
    await beating
    assert await guard.still_ours(before, never) is True  # renewed by the heartbeat
    assert await guard.still_ours(during, never) is True  # claimed after it started
    assert guard.dropped == 0


class CountingStore:
    """A heartbeat that takes a moment (so workers overlap) and renews ``renewed``; counts the beats."""

    def __init__(self, renewed: set[Lease]) -> None:
        self.renewed, self.calls = renewed, 0

    async def heartbeat(self, runner_id: str, lease_seconds: float) -> set[Lease]:
        self.calls += 1
        await asyncio.sleep(0)
        return self.renewed


async def test_workers_back_from_a_freeze_share_one_heartbeat_and_the_runner_rejoins() -> None:
    lease = Lease(job_id=1, token="t")
    clock = Clock()
    returned: list[float] = []
    counting = CountingStore(renewed={lease})
    guard = LeaseGuard(
        counting, "me", lease_s=60, fresh_s=15, clock=clock, on_return=lambda: returned.append(clock.now)
    )
    clock.now += 20
    never = asyncio.Event()
    assert await asyncio.gather(*(guard.still_ours(lease, never) for _ in range(10))) == [True] * 10
    assert counting.calls == 1  # one beat for all ten, not ten in a row
    assert returned == [1020.0]  # told once that this runner was away (to hold back for its peers)
    clock.now += 5
    await guard.beat()  # an ordinary heartbeat, on time
    assert returned == [1020.0]
