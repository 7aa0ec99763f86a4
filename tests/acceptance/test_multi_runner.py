"""Several runners on one queue: every job answered exactly once, dead runners' jobs finished by others.

Runners are real ``batchrunner run`` subprocesses against one fake server; the same tests run on one
SQLite file (two runners on one machine) and on PostgreSQL (three runners, as on three machines).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest
from helpers.store_fixtures import POSTGRES
from sqlalchemy import text
from sqlalchemy.engine import make_url

from batchrunner import api
from batchrunner.fakeserver.testing import ThreadedFakeServer

pytestmark = pytest.mark.slow  # runner subprocesses, hundreds of jobs each


def sync_url(db: str) -> str:
    """The same database for a synchronous SQLAlchemy engine in the test (sqlite3 / psycopg-free: asyncpg)."""
    if "://" not in db:
        return f"sqlite:///{db}"
    return make_url(db).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    if "://" not in db:
        import sqlite3

        with sqlite3.connect(db) as conn:
            return [tuple(row) for row in conn.execute(sql)]
    from sqlalchemy.ext.asyncio import create_async_engine

    async def fetch() -> list[tuple[Any, ...]]:
        engine = create_async_engine(sync_url(db))
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


def count_rows(db: str, sql: str) -> int:
    [(count,)] = query(db, sql)
    return int(count)


def start_runner(
    db: str, server: ThreadedFakeServer, workdir: Path, name: str, *extra: str
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "batchrunner",
        "run",
        "--db",
        db,
        "--base-url",
        server.openai_base_url,
        "--concurrency",
        "8",
        "--timeout",
        "300",
        "--no-progress",
        *extra,
    ]
    with (workdir / f"{name}.log").open("wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


@pytest.fixture(params=["sqlite", POSTGRES])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """(database, number of runners): two runners on one SQLite file, three on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "shared.db"), 2
    url: str = request.getfixturevalue("pg_database")
    return url, 3


def submit(db: str, tmp_path: Path, n: int) -> dict[str, str]:
    """Submit ``n`` jobs; returns their prompts by custom id."""
    jobs = prompts(n, "multi")
    manifest = write_manifest(tmp_path / "shared.jsonl", jobs)
    done = subprocess.run(
        [sys.executable, "-m", "batchrunner", "submit", str(manifest), "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return jobs


def test_runners_share_a_run_and_answer_every_job_once(
    shared_db: tuple[str, int], tmp_path: Path, fake_server: StartFakeServer
) -> None:
    db, runner_count = shared_db
    server: ThreadedFakeServer = fake_server(latency_ms=50, jitter_ms=10)
    submit(db, tmp_path, 600)  # a few seconds of work, so that a runner that starts last still gets some
    runners = [start_runner(db, server, tmp_path, f"runner-{n}") for n in range(runner_count)]
    codes = [runner.wait(timeout=120) for runner in runners]
    logs = "\n".join((tmp_path / f"runner-{n}.log").read_text() for n in range(runner_count))
    assert codes == [0] * runner_count, logs
    assert "database is locked" not in logs
    stats = server.stats()
    assert stats["duplicates"] == 0 and stats["answers_total"] == 600
    assert set(stats["answers"].values()) == {1}
    assert count_rows(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == 600
    assert count_rows(db, "SELECT count(*) FROM results") == 600
    # Every runner did part of the work.
    assert count_rows(db, "SELECT count(DISTINCT runner_id) FROM attempts") == runner_count


def test_a_killed_runners_jobs_are_finished_by_the_others(
    shared_db: tuple[str, int], tmp_path: Path, fake_server: StartFakeServer
) -> None:
    db, runner_count = shared_db
    # calls slow enough that the run lasts a few seconds: on a loaded machine a faster one could start,
    # drain and end between two looks of the loop below, and the first runner then exits before its kill
    server: ThreadedFakeServer = fake_server(latency_ms=150, jitter_ms=50)
    jobs = submit(db, tmp_path, 300)
    runners = [start_runner(db, server, tmp_path, f"runner-{n}") for n in range(runner_count)]
    deadline = time.monotonic() + 60
    in_flight_of_first = (
        "SELECT count(*) FROM jobs JOIN runners ON runners.id = jobs.lease_owner"
        f" WHERE runners.pid = {runners[0].pid} AND jobs.state = 'running' AND jobs.sent"
    )
    while time.monotonic() < deadline and (
        count_rows(db, "SELECT count(*) FROM results") < 60 or count_rows(db, in_flight_of_first) == 0
    ):  # kill it with calls in flight (it may start later than the others)
        time.sleep(0.01)
    os.kill(runners[0].pid, signal.SIGKILL)
    assert runners[0].wait(timeout=10) == -signal.SIGKILL
    codes = [runner.wait(timeout=120) for runner in runners[1:]]
    logs = "\n".join((tmp_path / f"runner-{n}.log").read_text() for n in range(runner_count))
    assert codes == [0] * (runner_count - 1), logs
    assert count_rows(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == 300
    assert count_rows(db, "SELECT count(*) FROM results") == 300
    stats = server.stats()
    assert set(stats["answers"]) == set(jobs.values())
    # Re-sent: only jobs the killed runner had sent (in flight, or answered but not yet checkpointed),
    # each once more. They are the jobs attempted twice: no call in this run fails, so no other job is,
    # and those it had only claimed were given back with their attempt refunded (its journal tells).
    assert max(stats["answers"].values()) <= 2
    resent = {prompt for prompt, answers in stats["answers"].items() if answers == 2}
    held = query(db, "SELECT custom_id FROM jobs WHERE attempts = 2")
    assert resent <= {jobs[str(custom_id)] for (custom_id,) in held}
    assert count_rows(db, "SELECT count(*) FROM jobs WHERE attempts > 2") == 0
    assert held  # it had calls in flight when it was killed, and they were finished by the others
    # status tells the same story as the server's books: the jobs that reached it twice, and as possibly
    # billed every call the killed runner had sent and not recorded (in flight, or answered and not yet
    # checkpointed), which are the ones sent again
    status = asyncio.run(api.status(settings=api.settings(db=db)))
    sent_twice = sum(1 for calls in stats["attempts"].values() if calls > 1)
    assert abs(status.insights.resent_after_interruption - sent_twice) <= 3, (status.insights, sent_twice)
    assert status.insights.possibly_billed == count_rows(
        db, "SELECT count(*) FROM attempts WHERE error_class = 'interrupted'"
    )
    assert status.insights.possibly_billed >= sent_twice > 0
    assert status.stats.attempts == count_rows(db, "SELECT count(*) FROM attempts")


@pytest.mark.parametrize("limit", ["configured", "learned"])
def test_runners_together_stay_under_the_providers_limit(
    shared_db: tuple[str, int], tmp_path: Path, fake_server: StartFakeServer, limit: str
) -> None:
    """``--rpm`` given to every runner, or learned by each from the server's headers: split alike."""
    db, runner_count = shared_db
    rpm = 1200  # 20 requests in any 1 s window, enforced by the server
    server: ThreadedFakeServer = fake_server(latency_ms=10, rpm=rpm)
    submit(db, tmp_path, 200)
    flags = ["--rpm", str(rpm)] if limit == "configured" else []
    runners = [start_runner(db, server, tmp_path, f"runner-{n}", *flags) for n in range(runner_count)]
    codes = [runner.wait(timeout=120) for runner in runners]
    logs = "\n".join((tmp_path / f"runner-{n}.log").read_text() for n in range(runner_count))
    assert codes == [0] * runner_count, logs
    stats = server.stats()
    assert stats["answers_total"] == 200 and stats["duplicates"] == 0
    refused = stats["by_status"].get("429", 0)
    assert refused <= 0.01 * stats["requests"], (refused, stats["requests"])
    # ... and not by crawling: at least half the limit on average, start-up included.
    assert stats["answer_span_s"] < 200 / (rpm / 60) * 2
