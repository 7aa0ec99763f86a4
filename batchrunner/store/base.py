"""``EngineStore``: the part of the store the engine sees, as a Protocol.

The engine (``batchrunner.engine``) imports this module and :mod:`batchrunner.models`, never the
concrete :class:`batchrunner.store.Store` or SQLAlchemy; :mod:`batchrunner.api` hands it a ``Store``,
which satisfies the Protocol (mypy checks that where the two meet). Every write here is one transaction,
and every write-back of a running job is fenced by its lease (docs/reliability.md rule 2). This module
imports nothing from the rest of the store.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from batchrunner.models import (
    BatchInfo,
    BatchState,
    ClaimedJob,
    Lease,
    Outcome,
    QueueState,
    RunInfo,
    RunStats,
)


class EngineStore(Protocol):
    """The queue operations a runner needs: its own registration, claims, write-backs, coordination."""

    # -- this runner ------------------------------------------------------------------------------
    async def register_runner(
        self, *, runner_id: str, host: str, pid: int, run_id: int, limits: dict[str, object] | None = None
    ) -> None: ...

    async def heartbeat(self, runner_id: str, lease_seconds: float) -> set[Lease]:
        """Say this runner is alive, renew its leases; return the leases it still holds."""
        ...

    async def mark_stopped(self, runner_ids: list[str]) -> None: ...

    async def take_back_from_dead(
        self,
        run_id: int,
        max_attempts: int,
        *,
        host: str,
        is_alive: Callable[[int], bool],
        stale_after_s: float,
        journaled: Sequence[str] = (),
    ) -> tuple[int, list[str]]:
        """Take back the jobs of dead runners; return (jobs taken back, dead runner ids)."""
        ...

    # -- the queue --------------------------------------------------------------------------------
    async def claim(
        self,
        run_id: int,
        owner: str,
        limit: int,
        lease_seconds: float,
        *,
        providers: Collection[str] | None = None,
    ) -> list[ClaimedJob]:
        """Lease due pending jobs (of ``providers`` only, when given)."""
        ...

    async def mark_sent(self, leases: Sequence[Lease]) -> set[int]: ...

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[int]:
        """Write the outcomes whose lease still holds; return the job ids written."""
        ...

    async def release(self, leases: Iterable[Lease], *, max_attempts: int | None = None) -> int: ...

    async def queue_state(self, run_id: int, *, providers: Collection[str] | None = None) -> QueueState: ...

    async def providers_left(self, run_id: int) -> list[str]: ...

    async def has_succeeded(self, run_id: int, provider: str, model: str | None) -> bool: ...

    async def run_cancelled(self, run_id: int) -> bool: ...

    # -- figures ----------------------------------------------------------------------------------
    async def stats(self, run: RunInfo) -> RunStats: ...

    async def spent_usd(self, run: RunInfo) -> Decimal: ...

    # -- runners sharing the run ------------------------------------------------------------------
    async def publish_pause(self, run_id: int, provider: str, seconds: float) -> None: ...

    async def active_pauses(self, run_id: int) -> dict[str, float]: ...

    async def busy_runners(self, run_id: int, *, stale_after_s: float) -> list[str]: ...


class BatchStore(Protocol):
    """What the provider batch driver needs (docs/batch.md): forming batches, recording what the provider
    said, reading a batch's jobs, writing its lines back (fenced, as realtime answers), releasing the rest."""

    async def pending_groups(
        self, run_id: int, providers: Sequence[str]
    ) -> list[tuple[str, str, str | None]]: ...

    async def pending_page(
        self, run_id: int, group: tuple[str, str, str | None], after_id: int, limit: int, *, any_model: bool
    ) -> Sequence[Sequence[Any]]: ...

    async def form_batch(
        self,
        run_id: int,
        *,
        local_id: str,
        provider: str,
        endpoint: str,
        model: str | None,
        job_ids: Sequence[int],
        size_bytes: int,
    ) -> BatchInfo | None: ...

    async def batches_of(self, run_id: int, *, live_only: bool = False) -> list[BatchInfo]: ...

    async def update_batch(self, batch_id: int, **values: Any) -> None: ...

    async def hold_batch(
        self, batch: BatchInfo, owner: str, seconds: float, *, gone: Sequence[str]
    ) -> bool: ...

    async def batch_owners(self, run_id: int) -> set[str]: ...

    async def known_remote_ids(self, provider: str) -> set[str]: ...

    async def batch_jobs_page(
        self, batch: BatchInfo, after_id: int, limit: int
    ) -> Sequence[Sequence[Any]]: ...

    async def held_jobs(
        self, batch: BatchInfo, job_ids: Iterable[int]
    ) -> dict[int, tuple[str | None, int]]: ...

    async def release_batch(
        self, batch: BatchInfo, state: BatchState, *, error: str | None = None
    ) -> int: ...

    async def fail_batch_jobs(self, batch: BatchInfo, error: str) -> int: ...

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[int]: ...
