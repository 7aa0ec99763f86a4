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
    counter_mismatches: list[str] = field(default_factory=list)
    """Where the run counters (store/counters.py) differ from the rows themselves (empty: they agree)."""

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
        mismatches = counter_mismatches(conn)
    finally:
        conn.close()
    return Snapshot(
        jobs=jobs,
        attempts=attempts,
        results=results,
        result_rows=len(rows),
        integrity=integrity,
        runners=runners,
        counter_mismatches=mismatches,
    )


_STATE_KEY = (
    "CASE WHEN j.state = 'running' THEN CASE WHEN j.batch_id IS NOT NULL THEN 'batched' "
    "WHEN j.sent THEN 'running' ELSE 'claimed' END ELSE j.state END"
)
_TRUTH = {
    "jobs by state": (
        f"SELECT j.run_id, {_STATE_KEY}, count(*), sum(j.attempts) FROM jobs j GROUP BY 1, 2",
        "SELECT run_id, state_key, sum(jobs), sum(attempts) FROM run_counts GROUP BY 1, 2 "
        "HAVING sum(jobs) <> 0 OR sum(attempts) <> 0",
    ),
    "attempts": (
        "SELECT j.run_id, count(*), sum(a.possibly_billed), min(a.started_at), "
        "max(coalesce(a.finished_at, a.started_at)) FROM attempts a JOIN jobs j ON j.id = a.job_id "
        "GROUP BY 1",
        "SELECT run_id, sum(attempts), sum(possibly_billed), min(first_at), max(last_at) FROM run_totals "
        "GROUP BY 1 HAVING sum(attempts) > 0",
    ),
    "results": (
        "SELECT j.run_id, count(*), count(r.cost_usd), sum(r.input_tokens), sum(r.output_tokens), "
        "sum(r.cached_tokens), round(coalesce(sum(r.cost_usd), 0), 9), sum(j.batch_id IS NOT NULL), "
        "round(coalesce(sum(CASE WHEN j.batch_id IS NOT NULL THEN r.cost_usd END), 0), 9) "
        "FROM results r JOIN jobs j ON j.id = r.job_id GROUP BY 1",
        "SELECT run_id, sum(results), sum(priced_results), sum(input_tokens), sum(output_tokens), "
        "sum(cached_tokens), round(sum(cost_usd), 9), sum(batch_results), round(sum(batch_cost_usd), 9) "
        "FROM run_totals GROUP BY 1 HAVING sum(results) > 0",
    ),
    "errors": (
        "SELECT j.run_id, a.error_class, count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id "
        "WHERE a.error_class IS NOT NULL GROUP BY 1, 2",
        "SELECT run_id, error_class, sum(count) FROM run_errors GROUP BY 1, 2 HAVING sum(count) <> 0",
    ),
    "attempts by second": (
        "SELECT j.run_id, CAST(strftime('%s', coalesce(a.finished_at, a.started_at)) AS INTEGER), "
        "coalesce(a.error_class, ''), count(*), "
        "sum(CASE WHEN a.error_class IS NULL "
        "THEN coalesce(a.input_tokens, 0) + coalesce(a.output_tokens, 0) ELSE 0 END), "
        "sum(a.status_code IS 429) FROM attempts a JOIN jobs j ON j.id = a.job_id GROUP BY 1, 2, 3",
        "SELECT run_id, second, outcome, sum(attempts), sum(tokens), sum(rate_limited) FROM run_seconds "
        "GROUP BY 1, 2, 3 HAVING sum(attempts) <> 0",
    ),
}
"""What each counter table says, and what the rows say it should (a test oracle written apart from the
triggers and from ``counters.recount``)."""


def counter_mismatches(conn: sqlite3.Connection) -> list[str]:
    """The counters that disagree with the rows, each as ``what: counters ... rows ...``."""
    found = []
    for what, (truth, counted) in _TRUTH.items():
        want = sorted(tuple(row) for row in conn.execute(truth))
        got = sorted(tuple(row) for row in conn.execute(counted))
        if got != want:
            found.append(f"{what}: counters {got} rows {want}")
    return found


async def undo_run_counters(conn: Any) -> None:
    """Make a database as it was before migration 0009 (its counters, triggers and indexes gone)."""
    from sqlalchemy import text

    sqlite = conn.dialect.name == "sqlite"
    for trigger, table in (
        ("tr_jobs_count_insert", "jobs"), ("tr_jobs_count_update", "jobs"),
        ("tr_attempts_count", "attempts"), ("tr_results_count", "results"),
    ):  # fmt: skip
        await conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}" + ("" if sqlite else f" ON {table}")))
    for name in ("run_counts", "run_totals", "run_errors", "run_seconds", "latency_slots"):
        await conn.execute(text(f"DROP TABLE {name}"))
    await conn.execute(text("DROP INDEX ix_jobs_finished"))
    await conn.execute(text("DROP INDEX ix_attempts_interrupted"))
    await conn.execute(text("DROP INDEX ix_attempts_failed"))
    await conn.execute(text("DELETE FROM schema_migrations WHERE name = '0009_run_counters'"))
