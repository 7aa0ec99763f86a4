"""Record in the store which jobs' requests went out, as they go out; one write carries many.

Why: after a crash the store must tell a job whose request was in flight (it may have been billed, and
sending it again may bill it twice) from one that was only claimed (it never left this machine). That
is what ``status`` counts as "re-sent after interruption" and "possibly billed", and it must agree with
what the provider saw.

Why not wait for the mark before sending: a write from a busy event loop takes several turns of the loop
(measured: a median of 172 ms at 500 requests a second), and every request waiting that long made a
latency-bound run 40% slower. So a request is sent at once and its mark follows in the next write: marks
asked for while one write is in progress gather and go in the next one. The price is a short window: a
runner killed between a send and its mark's write (a few milliseconds on an idle machine, more on a
saturated one) would leave that job looking claimed, not sent; the runner's journal
(batchrunner.engine.sendjournal), written as each request goes out, closes that window for whoever takes
its jobs back on the same machine. The mark is fenced by the lease like every write-back; one that finds
the lease gone changes nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from batchrunner.engine.sendjournal import SendJournal
from batchrunner.models import Lease

log = logging.getLogger(__name__)


class MarkStore(Protocol):
    """The part of the store the marker uses."""

    async def mark_sent(self, leases: list[Lease]) -> set[int]: ...


class SendMarks:
    """Group-committed send marks; see the module docstring."""

    def __init__(self, store: MarkStore, journal: SendJournal | None = None) -> None:
        self._store = store
        self._journal = journal
        self._waiting: list[Lease] = []
        self._writer: asyncio.Task[None] | None = None
        self.failed = 0
        """Marks that could not be written (the store failed): those jobs count as claimed, not sent."""

    def mark(self, lease: Lease) -> None:
        """The job's request is being sent now: journal it at once, record it with the next write."""
        if self._journal is not None:
            self._journal.record(lease)
        self._waiting.append(lease)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="send-marks")

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await asyncio.shield(self._store.mark_sent(batch))
            except Exception as exc:  # the checkpointer and heartbeat report a store that is away
                self.failed += len(batch)
                log.warning("could not record %d request(s) as sent: %s", len(batch), exc)

    async def close(self) -> None:
        """Write the marks still waiting (before the jobs in flight are given back at a stop)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._waiting:
            await self._write_all()
