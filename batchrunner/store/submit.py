"""Queueing a manifest's jobs: insert-or-ignore on the natural key, with conflicts found and counted."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.models import JobSpec, RunInfo
from batchrunner.store.database import Database
from batchrunner.store.tables import jobs


def content_hash(spec: JobSpec) -> str:
    """What makes a re-submitted line "the same": provider, endpoint, model, request and metadata."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (spec.provider, spec.endpoint, spec.model or "", spec.request_json, spec.metadata_json or ""):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(kw_only=True)
class JobInserter:
    """Adds batches of jobs to one run inside one open write transaction (see ``Store.bulk_insert``)."""

    conn: AsyncConnection
    db: Database
    run: RunInfo
    inserted: int = 0
    already_present: int = 0
    conflicting_ids: list[str] = field(default_factory=list)
    conflicts: int = 0

    async def add(self, specs: Sequence[JobSpec]) -> None:
        if not specs:
            return
        rows = [
            {
                "run_id": self.run.id,
                "custom_id": s.custom_id,
                "line_number": s.line_number,
                "format": s.format.value,
                "provider": s.provider,
                "endpoint": s.endpoint.value,
                "model": s.model,
                "request_json": s.request_json,
                "metadata_json": s.metadata_json,
                "content_hash": content_hash(s),
            }
            for s in specs
        ]
        added = await self.db.insert_ignoring_conflicts(self.conn, jobs, rows, "run_id", "custom_id")
        self.inserted += added
        if added < len(rows):
            await self._compare_existing(rows, added)

    async def _compare_existing(self, rows: list[dict[str, Any]], added: int) -> None:
        """Some ids were there already: the same content is fine (idempotent), other content is a conflict."""
        wanted = {row["custom_id"]: row["content_hash"] for row in rows}
        query = select(jobs.c.custom_id, jobs.c.content_hash).where(
            jobs.c.run_id == self.run.id, jobs.c.custom_id.in_(list(wanted))
        )
        present = conflicts = 0
        for custom_id, stored_hash in await self.conn.execute(query):
            present += 1
            if stored_hash != wanted[custom_id]:
                conflicts += 1
                if len(self.conflicting_ids) < 20:
                    self.conflicting_ids.append(custom_id)
        # The rows this batch just added are found too (and match); the rest were there before.
        self.conflicts += conflicts
        self.already_present += present - added - conflicts
