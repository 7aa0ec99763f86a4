"""``batchrunner retry --failed`` and ``cancel``: the states they change, through the real CLI in-process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers.database import query
from helpers.manifests import fake_lines, write_lines
from helpers.running import cli, status_of


def test_retry_failed_and_cancel_change_states(tmp_path: Path, db: Path) -> None:
    source = write_lines(tmp_path / "jobs.jsonl", fake_lines(6))
    assert cli("submit", str(source)).exit_code == 0
    # A permanent failure the fake provider cannot produce from a valid line: planted on three jobs.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE jobs SET state = 'failed', attempts = 3, last_error_class = 'permanent',"
            " last_error = '400 bad request' WHERE custom_id IN ('p1', 'p2', 'p3')"
        )
    assert status_of()["states"]["failed"] == 3

    retried = cli("retry", "--failed")
    assert retried.exit_code == 0 and "3 failed job(s) requeued" in retried.stderr
    states = query(db, "SELECT custom_id, state, attempts FROM jobs ORDER BY id")
    assert states == [(f"p{i}", "pending", 0) for i in range(1, 7)]

    cancelled = cli("cancel")
    assert cancelled.exit_code == 0 and "6 job(s) cancelled" in cancelled.stderr
    assert query(db, "SELECT DISTINCT state FROM jobs") == [("cancelled",)]
    assert status_of()["states"]["cancelled"] == 6
    assert cli("retry", "--failed").stderr.startswith("0 failed job(s) requeued")
