"""Reading a SQLite database back with the standard library's ``sqlite3``: what is durably there, not what
the engine believes.

- :func:`query` and :func:`count`: rows and row counts;
- :func:`snapshot`: every job, attempt, result and runner, by custom_id (:class:`Snapshot`).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(db: Path, table: str = "jobs") -> int:
    """Rows in ``table``; 0 when there is no database at all."""
    if not db.exists():
        return 0
    [(n,)] = query(db, f"SELECT count(*) FROM {table}")
    return int(n)


@dataclass
class Snapshot:
    """What the database holds, by custom_id."""

    jobs: dict[str, dict[str, Any]]
    attempts: dict[str, list[dict[str, Any]]]
    results: dict[str, list[dict[str, Any]]]
    result_rows: int
    integrity: str
    runners: list[dict[str, Any]] = field(default_factory=list)

    def states(self) -> Counter[str]:
        return Counter(job["state"] for job in self.jobs.values())

    def in_state(self, state: str) -> set[str]:
        return {cid for cid, job in self.jobs.items() if job["state"] == state}


def snapshot(db: Path) -> Snapshot:
    conn = connect(db)
    try:
        jobs = {row["custom_id"]: dict(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id")}
        by_id = {job["id"]: cid for cid, job in jobs.items()}
        attempts: dict[str, list[dict[str, Any]]] = {cid: [] for cid in jobs}
        for row in conn.execute("SELECT * FROM attempts ORDER BY id"):
            attempts[by_id[row["job_id"]]].append(dict(row))
        results: dict[str, list[dict[str, Any]]] = {cid: [] for cid in jobs}
        rows = conn.execute("SELECT * FROM results ORDER BY id").fetchall()
        for row in rows:
            results[by_id[row["job_id"]]].append(dict(row))
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        runners = [dict(row) for row in conn.execute("SELECT * FROM runners ORDER BY started_at")]
    finally:
        conn.close()
    return Snapshot(
        jobs=jobs,
        attempts=attempts,
        results=results,
        result_rows=len(rows),
        integrity=integrity,
        runners=runners,
    )
