"""Queueing a manifest's jobs: insert-or-ignore on the natural key, with conflicts found and counted.

This is the hot path of a million-line ``submit``. On SQLite the rows go to the driver as plain tuples
(``executemany``): SQLAlchemy's executemany (a dict per row, parameter processing) cost about 4.5 us of
CPU a row on top of SQLite's own ~3.3 us; a 1,000,000-line submit took 19.0 s of CPU through it and
14.5 s this way (``benchmarks/bench_submit.py``, BENCHMARKS.md). The statements are still built and
compiled by SQLAlchemy, so the SQL is the same on both paths; PostgreSQL keeps SQLAlchemy's path
(``RETURNING`` counts its inserts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from batchrunner.models import JobSpec, RunInfo
from batchrunner.store.counters import SQLITE_COUNT_INSERTED
from batchrunner.store.database import Database
from batchrunner.store.tables import jobs

COLUMNS = (
    "run_id",
    "custom_id",
    "line_number",
    "format",
    "provider",
    "endpoint",
    "model",
    "request_json",
    "metadata_json",
    "content_hash",
)
"""The columns a submit fills, in the order of the row tuples."""
Row = tuple[int, str, int, str, str, str, str | None, str, str | None, str]


def content_hash(spec: JobSpec) -> str:
    """What makes a re-submitted line "the same": provider, endpoint, model, request and metadata.

    The blake2b-128 of those texts, each followed by a NUL byte (hashed in one call: per line).
    """
    model, metadata = spec.model or "", spec.metadata_json or ""
    text = f"{spec.provider}\0{spec.endpoint}\0{model}\0{spec.request_json}\0{metadata}\0"
    return blake2b(text.encode(), digest_size=16).hexdigest()


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
    _insert_sql: str | None = field(default=None, init=False, repr=False)

    async def add(self, specs: Sequence[JobSpec]) -> None:
        if not specs:
            return
        run_id = self.run.id
        rows: list[Row] = [
            (
                run_id,
                s.custom_id,
                s.line_number,
                str(s.format),  # a StrEnum's str() is its value, and 4x as fast as .value
                s.provider,
                str(s.endpoint),
                s.model,
                s.request_json,
                s.metadata_json,
                content_hash(s),
            )
            for s in specs
        ]
        added = await (self._insert_sqlite(rows) if self.db.is_sqlite else self._insert_generic(rows))
        self.inserted += added
        if added < len(rows):
            await self._compare_existing(rows, added)

    async def _insert_sqlite(self, rows: list[Row]) -> int:
        """``executemany`` on the driver connection of this transaction; SQLite counts the inserts, and
        they are added to the run's counters."""
        if self._insert_sql is None:
            stmt = self.db.insert_statement_ignoring_conflicts(jobs, "run_id", "custom_id")
            compiled = stmt.compile(dialect=self.conn.dialect, column_keys=list(COLUMNS))
            # The tuples are in COLUMNS order; the compiled statement must want them that way.
            if tuple(compiled.positiontup or ()) != COLUMNS:  # pragma: no cover - a schema change
                raise AssertionError(f"unexpected insert parameters: {compiled.positiontup}")
            self._insert_sql = str(compiled)
        driver: Any = (await self.conn.get_raw_connection()).driver_connection  # an aiosqlite.Connection
        cursor = await driver.executemany(self._insert_sql, rows)
        try:
            added = max(int(cursor.rowcount), 0)
        finally:
            await cursor.close()
        if added:  # SQLite has no insert trigger on jobs: the inserter counts its own (store/counters.py)
            await (await driver.execute(SQLITE_COUNT_INSERTED, (self.run.id, added))).close()
        return added

    async def _insert_generic(self, rows: list[Row]) -> int:
        records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        return await self.db.insert_ignoring_conflicts(self.conn, jobs, records, "run_id", "custom_id")

    async def _compare_existing(self, rows: list[Row], added: int) -> None:
        """Some ids were there already: the same content is fine (idempotent), other content is a conflict."""
        wanted = {row[1]: row[9] for row in rows}
        query = select(jobs.c.custom_id, jobs.c.content_hash).where(
            jobs.c.run_id == self.run.id, jobs.c.custom_id.in_(list(wanted))
        )
        present = conflicts = 0
        for custom_id, stored_hash in await self._select(query):
            present += 1
            if stored_hash != wanted[custom_id]:
                conflicts += 1
                if len(self.conflicting_ids) < 20:
                    self.conflicting_ids.append(custom_id)
        # The rows this batch just added are found too (and match); the rest were there before.
        self.conflicts += conflicts
        self.already_present += present - added - conflicts

    async def _select(self, query: Select[Any]) -> Sequence[Sequence[Any]]:
        """Run a query in this transaction; on SQLite through the driver (a re-submit runs one per batch)."""
        if not self.db.is_sqlite:
            result: Sequence[Sequence[Any]] = (await self.conn.execute(query)).all()
            return result
        compiled = query.compile(dialect=self.conn.dialect, compile_kwargs={"render_postcompile": True})
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        driver: Any = (await self.conn.get_raw_connection()).driver_connection
        rows: Sequence[Sequence[Any]] = await driver.execute_fetchall(str(compiled), params)
        return rows
