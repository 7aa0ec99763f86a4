"""``batchrunner runs`` and ``status``: runs named and listed, the status document's keys and counts, the
runners it shows, and an ETA only while a runner is live.

Through the real CLI in-process, into a real SQLite file; the assertions are on rows and output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from helpers.database import query
from helpers.manifests import fake_lines, write_lines
from helpers.running import cli, status_of
from sqlalchemy import update

from batchrunner.cli import main
from batchrunner.store import tables
from batchrunner.store.store import Store

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_the_run_is_named_after_the_file_unless_given_and_runs_lists_them(tmp_path: Path, db: Path) -> None:
    first = write_lines(tmp_path / "first batch.jsonl", fake_lines(2))
    second = write_lines(tmp_path / "second.jsonl", fake_lines(3))
    assert cli("submit", str(first)).exit_code == 0
    assert cli("submit", str(second), "--run", "nightly").exit_code == 0
    assert query(db, "SELECT name, source FROM runs ORDER BY id") == [
        ("first batch", str(first)),
        ("nightly", str(second)),
    ]
    listed = cli("runs")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert [line.split("  ")[0].strip() for line in lines] == ["first batch", "nightly"]
    assert re.search(r"\b2 job\(s\)", lines[0]) and re.search(r"\b3 job\(s\)", lines[1])
    # The latest run is the default; --run picks another.
    assert json.loads(cli("status", "--json").stdout)["run"] == "nightly"
    assert json.loads(cli("status", "--json", "--run", "first batch").stdout)["total"] == 2


STATUS_KEYS = {
    "run",
    "total",
    "states",
    "attempts",
    "attempts_this_try",
    "tokens",
    "cost_usd",
    "cost_priced_usd",
    "priced_results",
    "unpriced_results",
    "first_activity",
    "last_activity",
    "top_errors",
    "throughput_per_s",
    "throughput_window_s",
    "eta_s",
    "cost_projected_usd",
    "batches",
    "batch_price",
    "resent_after_interruption",
    "possibly_billed",
    "runners",
    "latency_ms",
    "ttft_ms",
    "throughput_last_minute_per_s",
}


def test_status_json_has_stable_keys_and_right_counts(tmp_path: Path, db: Path) -> None:
    source = shutil.copy(JOBS / "simple.jsonl", tmp_path / "simple.jsonl")
    assert cli("submit", str(source), "--provider", "fake").exit_code == 0
    queued = status_of()
    assert set(queued) == STATUS_KEYS
    assert set(queued["states"]) == {
        "pending", "claimed", "running", "batched", "succeeded", "failed", "cancelled"
    }  # fmt: skip
    assert set(queued["tokens"]) == {"input", "output", "cached"}
    assert (queued["run"], queued["total"], queued["attempts"]) == ("simple", 20, 0)
    assert queued["states"] == {
        "pending": 20, "claimed": 0, "running": 0, "batched": 0, "succeeded": 0, "failed": 0, "cancelled": 0
    }  # fmt: skip

    ran = cli("run", "--no-progress")
    assert ran.exit_code == 0, ran.stderr
    done = status_of()
    assert set(done) == STATUS_KEYS
    assert done["states"] == {
        "pending": 0, "claimed": 0, "running": 0, "batched": 0, "succeeded": 20, "failed": 0, "cancelled": 0
    }  # fmt: skip
    [(tokens_in, tokens_out)] = query(db, "SELECT sum(input_tokens), sum(output_tokens) FROM results")
    assert done["attempts"] == 20 and done["tokens"]["input"] == tokens_in > 0
    assert done["tokens"]["output"] == tokens_out > 0


def test_status_shows_the_live_runners_and_the_jobs_they_hold(tmp_path: Path, db: Path) -> None:
    assert cli("submit", str(write_lines(tmp_path / "jobs.jsonl", fake_lines(5)))).exit_code == 0

    async def three_runners() -> None:
        store = await Store.open(str(db))
        try:
            run = await store.find_run(None)
            for runner_id, host, pid in [("busy", "a", 101), ("idle", "b", 202), ("gone", "c", 303)]:
                await store.register_runner(runner_id=runner_id, host=f"box-{host}", pid=pid, run_id=run.id)
            # on this machine, with a process that has exited: dead at once, whatever its heartbeat says
            await store.register_runner(
                runner_id="died", host=socket.gethostname(), pid=dead_pid, run_id=run.id
            )
            await store.claim(run.id, "busy", 3, lease_seconds=60)
            await store.mark_stopped(["gone"])
        finally:
            await store.close()

    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    dead_pid = exited.pid
    asyncio.run(three_runners())
    runners = status_of()["runners"]
    assert [(r["id"], r["host"], r["pid"], r["jobs_held"], r["alive"]) for r in runners] == [
        ("busy", "box-a", 101, 3, True),
        ("idle", "box-b", 202, 0, True),
        ("died", socket.gethostname(), dead_pid, 0, False),
    ]  # the stopped one is not listed
    assert all(r["started_at"] and r["heartbeat_at"] for r in runners)
    text = cli("status").stdout
    assert re.search(
        r"runner +live: box-a pid 101, holds 3 job\(s\)\n +started \S+  heartbeat \d+s ago\n", text
    ), text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert re.search(rf"runner +dead: \S+ pid {dead_pid},", text), text
    assert "box-c" not in text


def test_status_shows_an_eta_only_while_a_runner_is_live(tmp_path: Path) -> None:
    db = str(tmp_path / "eta.db")
    assert (
        CliRunner()
        .invoke(main, ["run", str(JOBS / "simple.jsonl"), "--provider", "fake", "--db", db])
        .exit_code
        == 0
    )

    async def reopen_as_running(alive_pid: int) -> None:
        store = await Store.open(db, create=False)
        try:
            run = await store.find_run(None)
            await store.register_runner(
                runner_id="r", host=socket.gethostname(), pid=alive_pid, run_id=run.id
            )
            await asyncio.sleep(0.1)
            async with store.db.write() as conn:  # half the jobs back in the queue, finished just now
                await conn.execute(
                    update(tables.jobs)
                    .where(tables.jobs.c.id <= 10)
                    .values(state="pending", finished_at=None)
                )
                await conn.execute(
                    update(tables.jobs).values(finished_at=datetime.now(UTC)).where(tables.jobs.c.id > 10)
                )
        finally:
            await store.close()

    asyncio.run(reopen_as_running(os.getpid()))  # this process: alive
    live = CliRunner().invoke(main, ["status", "--db", db]).stdout
    assert "eta " in live and "live: " in live

    async def stop(store_path: str) -> None:
        store = await Store.open(store_path, create=False)
        try:
            await store.mark_stopped(["r"])
        finally:
            await store.close()

    asyncio.run(stop(db))
    stopped = CliRunner().invoke(main, ["status", "--db", db]).stdout
    assert "eta" not in stopped and "rate" not in stopped  # nobody is running it: no promise of an end
