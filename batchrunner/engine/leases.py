"""Send only under leases still ours, so that a runner that was frozen does not pay for jobs it lost.

Other runners take a runner's jobs back once its heartbeat is ``stale_after_s`` old (docs/reliability.md rule
3). A runner frozen for longer than that (SIGSTOP, a laptop lid, a paused VM, a database out of reach)
wakes up with workers about to send jobs that may belong to someone else by now: the lease fence refuses
their answers, but the provider bills them all the same. So the heartbeat here also learns which jobs
are still leased to this runner (the leases it renewed), and a request is sent only

- if the last heartbeat started less than ``fresh_s`` ago (half of ``stale_after_s``: no one can have
  judged this runner dead since), on a clock that keeps counting while the machine sleeps; else the
  worker beats first, one beat for all the workers that wait; and
- if its lease was renewed by that heartbeat or claimed after it started.

In a healthy run this costs a clock read per request; a job found lost is dropped without being sent.
A job cancelled (``batchrunner cancel``) is not renewed either, so from the next heartbeat on (within
``heartbeat_s``) it is not sent; before that, the lease fence only refuses its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from batchrunner.models import Lease

log = logging.getLogger(__name__)

RETRY_S = 1.0
"""How long a worker waits before asking again when the heartbeat failed (the database is away)."""


def sleep_aware_clock() -> float:
    """Seconds on a clock that goes on while the machine sleeps (Linux: CLOCK_BOOTTIME)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


class HeartbeatStore(Protocol):
    """The part of the store the guard uses."""

    async def heartbeat(self, runner_id: str, lease_seconds: float) -> set[Lease]: ...


class LeaseGuard:
    """This runner's knowledge of which of its leases still hold; see the module docstring."""

    def __init__(
        self,
        store: HeartbeatStore,
        runner_id: str,
        *,
        lease_s: float,
        fresh_s: float,
        on_return: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = sleep_aware_clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``on_return`` is called after a heartbeat that came ``fresh_s`` or more after the one before
        (this runner was away: the others may have stopped counting it for the shared rate limits)."""
        self._store = store
        self._runner_id = runner_id
        self._lease_s = lease_s
        self._fresh_s = fresh_s
        self._on_return = on_return
        self._clock = clock
        self._sleep = sleep
        self._beat_started_at = clock()  # registration counts as a heartbeat
        self._renewed: set[Lease] = set()
        self._claimed_since: set[Lease] = set()
        self._unconfirmed: set[Lease] = set()
        self._beating = asyncio.Lock()
        self._warned = False
        self._was_away = False
        self.dropped = 0
        """Jobs found lost before they were sent (taken over by other runners, or cancelled)."""

    def claimed(self, leases: Iterable[Lease]) -> None:
        """Leases just claimed (call as soon as the claim returns): ours until a heartbeat says not."""
        self._claimed_since.update(leases)

    async def beat(self) -> None:
        """Heartbeat: say this runner is alive, renew its leases and learn which ones it still holds."""
        async with self._beating:
            await self._beat()

    async def _beat(self) -> None:
        started = self._clock()
        # claims made before this beat: its answer confirms or denies them; trusted until then
        self._unconfirmed, self._claimed_since = self._claimed_since, set()
        try:
            renewed = await self._store.heartbeat(self._runner_id, self._lease_s)
        except BaseException:
            self._claimed_since |= self._unconfirmed  # nothing learnt: keep trusting them
            raise
        finally:
            self._unconfirmed = set()
        away = started - self._beat_started_at >= self._fresh_s
        self._renewed, self._beat_started_at, self._warned = renewed, started, False
        self._was_away = away
        if away:
            self._on_return()

    def _stale(self) -> bool:
        return self._clock() - self._beat_started_at >= self._fresh_s

    async def still_ours(self, lease: Lease, stop: asyncio.Event) -> bool | None:
        """Whether ``lease`` may be sent on: True, False (lost: drop the job), None (a stop came first)."""
        while self._stale():
            if stop.is_set():
                return None
            try:
                async with self._beating:
                    if self._stale():  # the workers that waited for this lock use the beat just made
                        await self._beat()
            except Exception as exc:  # the database is away: nothing is sent until it answers
                log.warning("cannot confirm this runner's leases (%s); retrying before sending", exc)
                await self._sleep(RETRY_S)
        if lease in self._renewed or lease in self._claimed_since or lease in self._unconfirmed:
            return True
        self.dropped += 1
        if self._was_away and not self._warned:  # once per beat: a runner away for long holds many
            self._warned = True
            log.warning(
                "jobs held here were taken over (or cancelled) while this runner was away "
                "(paused, asleep or cut off from the database): dropping them unsent"
            )
        log.debug("job %d: lease lost before it was sent (taken over or cancelled)", lease.job_id)
        return False
