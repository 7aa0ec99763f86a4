"""Mark a job as sent, durably, just before its request goes out; the workers waiting share one write.

Why before, and why wait for it: after a crash the store must tell a job whose request was in flight
(it may have been billed, and sending it again may bill it twice) from one that was only claimed (it
never left this machine). That is what ``status`` counts as "re-sent after interruption" and "possibly
billed", and it must agree with what the provider saw. The mark is also the last word on the lease: a
job cancelled or taken over since it was claimed is not marked, and not sent.

The cost is one write per group of requests, not per request: while one write is in progress, the
marks asked for meanwhile gather and go in the next one, so a busy run makes a few dozen small writes a
second, and a request waits for at most about two writes before it is sent.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from batchrunner.store.records import Lease


class MarkStore(Protocol):
    """The part of the store the marker uses."""

    async def mark_sent(self, leases: list[Lease]) -> set[int]: ...


class SendMarks:
    """Group-committed send marks; see the module docstring."""

    def __init__(self, store: MarkStore) -> None:
        self._store = store
        self._waiting: list[tuple[Lease, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def mark(self, lease: Lease) -> bool:
        """True once the job is durably marked sent; False if its lease no longer holds.

        A store error is raised to the caller (the job must not be sent unmarked).
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((lease, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="send-marks")
        return await future

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                marked = await self._store.mark_sent([lease for lease, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for lease, future in batch:
                if not future.done():  # a worker cut off at the grace deadline no longer waits
                    future.set_result(lease.job_id in marked)

    async def close(self) -> None:
        """Wait for a write in progress (its marks are then durable either way)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
