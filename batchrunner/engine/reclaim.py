"""Taking back the jobs of runners that died (docs/reliability.md rule 3), with what their journals say.

A dead runner's marks in the store may lag its sends (they are group-committed), but its send journal
(:mod:`batchrunner.engine.sendjournal`), written as each request goes out, does not: the journals of dead
runners on this machine are applied first (as ``mark_sent``), so that their jobs not marked sent are known
unsent and get their attempt back, and those sent are recorded as interrupted. A journal is read once; it
is deleted when its runner was found dead in this database (another database's runner's journal is left to
its own)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from batchrunner.engine.liveness import pid_alive
from batchrunner.engine.sendjournal import journals_of_dead_runners
from batchrunner.store.base import EngineStore

log = logging.getLogger(__name__)
MARK_BATCH = 500


class Reclaimer:
    """Takes back the jobs of dead runners of one run, at start-up and on every heartbeat."""

    def __init__(
        self, store: EngineStore, run_id: int, *, journal_dir: Path, max_attempts: int, stale_after_s: float
    ) -> None:
        self.store, self.run_id, self.journal_dir = store, run_id, journal_dir
        self.max_attempts, self.stale_after_s = max_attempts, stale_after_s
        self._applied: set[Path] = set()

    async def take_back(self) -> int:
        """Apply new journals of dead runners, take back their jobs; return how many came back."""
        journals = [
            journal
            for journal in journals_of_dead_runners(self.journal_dir, pid_alive)
            if journal[0] not in self._applied
        ]
        for path, _, leases in journals:  # what they had sent, as the store's marks may lag
            for start in range(0, len(leases), MARK_BATCH):
                await self.store.mark_sent(leases[start : start + MARK_BATCH])
            self._applied.add(path)
        reclaimed, dead = await self.store.take_back_from_dead(
            self.run_id,
            self.max_attempts,
            host=socket.gethostname(),
            is_alive=pid_alive,
            stale_after_s=self.stale_after_s,
            journaled=[runner_id for _, runner_id, _ in journals],
        )
        for path, runner_id, _ in journals:
            if runner_id in dead:
                path.unlink(missing_ok=True)
        if reclaimed:
            log.info("took back %d job(s) from %d stopped runner(s)", reclaimed, len(dead))
        return reclaimed
