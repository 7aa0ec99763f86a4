"""Group commit of attempt outcomes: each write takes every answer that arrived while the last one ran.

One fsync per group instead of one per answer is what lets ``synchronous=FULL`` keep up with thousands of
answers a second. Writes start as soon as there is something to write, but no sooner than ``min_gap_s``
after the previous one started (so a busy run writes ~50 groups a second, not one per answer): an answer
waits at most about that gap plus one write, which is all a crash can lose (those jobs are re-sent).
Writes are shielded from cancellation (STYLE habit 13): Ctrl-C never drops an
answer that was paid for once it is handed to the checkpointer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from batchrunner.models import Outcome
from batchrunner.store.base import EngineStore

log = logging.getLogger(__name__)

Written = Callable[[list[Outcome], set[int]], None]
"""Called after each group with the outcomes written and the job ids whose lease still held."""


class Checkpointer:
    """Collects outcomes and writes them in groups through ``Store.record_outcomes``."""

    def __init__(
        self,
        store: EngineStore,
        *,
        min_gap_s: float = 0.02,
        max_batch: int = 500,
        on_written: Written | None = None,
        crash_point: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._min_gap_s = min_gap_s
        self._max_batch = max_batch
        self._on_written = on_written
        self._crash_point = crash_point or (lambda _name: None)
        self._pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._writing: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        """The store error that stopped checkpointing, if any (the runner stops on it)."""

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._wake.set()

    async def run(self) -> None:
        """Write groups until ``close``; a write error is kept in ``error`` and ends the loop."""
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._min_gap_s)  # let a group gather
            self._wake.clear()
            if not await self._flush_guarded():
                return

    async def close(self) -> None:
        """Write everything still pending, then stop: returns once every outcome handed over is written.

        The ``run`` loop may be writing a group (and take the next one after it) while this runs, so wait
        for any write in progress until nothing is left, rather than for the first one only.
        """
        self._closing = True
        self._wake.set()
        while True:
            writing = self._writing
            if writing is not None and not writing.done():
                await asyncio.wait([writing])  # its own flusher records an error; waiting cancels nothing
                continue
            if not self._pending or not await self._flush_guarded():
                return

    async def _flush_guarded(self) -> bool:
        try:
            await self.flush()
        except Exception as exc:  # a store error: stop checkpointing and let the runner stop the run
            log.error("checkpoint failed: %s", exc)
            self.error = exc
            return False
        return True

    async def flush(self) -> None:
        """Write the outcomes gathered so far as one transaction, shielded from cancellation."""
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            self._writing = asyncio.ensure_future(self._write(batch))
            try:
                await asyncio.shield(self._writing)
            finally:
                if self._writing.done():
                    self._writing = None

    async def _write(self, batch: list[Outcome]) -> None:
        self._crash_point("inside-checkpoint")
        accepted = await self._store.record_outcomes(batch)
        if len(accepted) < len(batch):
            log.warning(
                "%d result(s) arrived after their lease was lost; not recorded", len(batch) - len(accepted)
            )
        if self._on_written is not None:
            self._on_written(batch, accepted)
