"""A permanent failure shared by every job stops the run, through the real CLI against the fake server.

``batchrunner run`` runs in-process (click's runner) on SQLite and PostgreSQL; the outcome is read from
the database rows and the fake server's books. See :mod:`batchrunner.engine.systematic`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest
from sqlalchemy.engine import make_url

from batchrunner.cli import main
from batchrunner.fakeserver import FaultKind

JOBS = 200
CONCURRENCY = 32
MODEL = "gpt-4o-mini"


def run_cli(manifest: Path | None, base_url: str, db: str, *extra: str) -> Result:
    head = [str(manifest)] if manifest is not None else []
    args = ["run", *head, "--base-url", base_url, "--db", db, "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def job_rows(db: str) -> list[dict[str, Any]]:
    """``state``, ``attempts`` and ``last_error_class`` of every job, read from the database itself."""
    query = "SELECT custom_id, state, attempts, last_error_class FROM jobs ORDER BY id"
    if "://" not in db:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(query)]
        finally:
            conn.close()

    async def fetch() -> list[dict[str, Any]]:
        dsn = make_url(db).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(row) for row in await conn.fetch(query)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def states(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


@pytest.mark.slow  # 200 jobs run, stopped and resumed
def test_every_answer_404_stops_the_run_with_every_job_pending(
    fake_server: StartFakeServer, tmp_path: Path, db_target: str
) -> None:
    """200 jobs, all 404 model_not_found: exit 3 within seconds, after at most 20 + concurrency calls,
    the message names provider, model, status and the provider's text; no job failed, no attempt used;
    once the model exists, a plain ``batchrunner run`` sends them all."""
    server = fake_server(latency_ms=5, fault_rates={FaultKind.NOT_FOUND: 1.0})
    manifest = write_manifest(tmp_path / "bad-model.jsonl", prompts(JOBS, "nf"))

    started = time.monotonic()
    result = run_cli(manifest, server.openai_base_url, db_target, "--concurrency", str(CONCURRENCY))
    elapsed = time.monotonic() - started

    assert result.exit_code == 3, result.output
    assert elapsed < 10
    [stopped] = [line for line in result.stderr.splitlines() if line.startswith("stopped: ")]
    assert "to resume: batchrunner run" in result.stderr  # the summary after it says how to go on
    assert stopped.startswith("stopped: openai: model 'gpt-4o-mini': the first 20 answers all failed with ")
    assert "HTTP 404 model_not_found" in stopped
    assert "The model `gpt-4o-mini` does not exist" in stopped
    assert "--no-stop-on-systematic" in stopped
    assert "sk-test-dummy" not in result.output
    requests = server.stats()["requests"]
    assert 20 <= requests <= 20 + CONCURRENCY
    rows = job_rows(db_target)
    assert states(rows) == {"pending": JOBS}
    assert all(row["attempts"] == 0 for row in rows)
    assert sum(row["last_error_class"] == "systematic" for row in rows) == requests  # each one sent

    # the model is fixed (the server stops refusing): the same command sends every job, once
    server.stop()
    fixed = fake_server(latency_ms=1)
    again = run_cli(None, fixed.openai_base_url, db_target)
    assert again.exit_code == 0, again.output
    assert states(job_rows(db_target)) == {"succeeded": JOBS}
    assert fixed.stats()["requests"] == JOBS
    assert all(row["attempts"] == 1 for row in job_rows(db_target))


@pytest.mark.slow  # 200 jobs run to failure
def test_no_stop_on_systematic_fails_every_job(
    fake_server: StartFakeServer, tmp_path: Path, db_target: str
) -> None:
    """The same run with ``--no-stop-on-systematic``: every job fails (exit 1), one call each."""
    server = fake_server(latency_ms=1, fault_rates={FaultKind.NOT_FOUND: 1.0})
    manifest = write_manifest(tmp_path / "bad-model.jsonl", prompts(JOBS, "nf"))

    result = run_cli(manifest, server.openai_base_url, db_target, "--no-stop-on-systematic")

    assert result.exit_code == 1, result.output
    assert "stopped" not in result.stderr and "200 failed" in result.stderr
    rows = job_rows(db_target)
    assert states(rows) == {"failed": JOBS}
    assert all(row["attempts"] == 1 and row["last_error_class"] == "permanent" for row in rows)
    assert server.stats()["requests"] == JOBS


def test_no_stop_on_systematic_from_the_environment(
    fake_server: StartFakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BATCHRUNNER_NO_STOP_ON_SYSTEMATIC=1`` is the flag."""
    monkeypatch.setenv("BATCHRUNNER_NO_STOP_ON_SYSTEMATIC", "1")
    server = fake_server(fault_rates={FaultKind.BAD_REQUEST: 1.0})
    manifest = write_manifest(tmp_path / "bad.jsonl", prompts(30, "env"))

    result = run_cli(manifest, server.openai_base_url, str(tmp_path / "env.db"))

    assert result.exit_code == 1, result.output
    assert states(job_rows(str(tmp_path / "env.db"))) == {"failed": 30}


def test_a_few_jobs_all_failing_alike_are_all_of_its_jobs(
    fake_server: StartFakeServer, tmp_path: Path
) -> None:
    """A provider+model with fewer than 20 jobs, every one a 400: those are all of its jobs, so the run
    stops (exit 3) with them pending, unspent, and the message counts them."""
    server = fake_server(fault_rates={FaultKind.BAD_REQUEST: 1.0})
    manifest = write_manifest(tmp_path / "few.jsonl", prompts(5, "few"))
    db = str(tmp_path / "few.db")

    result = run_cli(manifest, server.openai_base_url, db)

    assert result.exit_code == 3, result.output
    assert "the first 5 answers all failed with HTTP 400 invalid_request_error: Invalid request." in (
        result.stderr
    )
    assert states(job_rows(db)) == {"pending": 5}
    assert server.stats()["requests"] == 5


def test_the_last_poison_jobs_of_a_model_that_works_fail_as_usual(
    fake_server: StartFakeServer, tmp_path: Path, db_target: str
) -> None:
    """A resume with only the 3 poison jobs left (given back by ``retry --failed``), all 400 alike: the
    model answered the other jobs before, so this is no systematic failure: they fail (exit 1)."""
    server = fake_server(latency_ms=1)
    manifest = write_manifest(tmp_path / "poison.jsonl", prompts(10, "p", {2: "*400", 5: "*400", 7: "*400"}))
    assert run_cli(manifest, server.openai_base_url, db_target, "--no-stop-on-systematic").exit_code == 1
    assert CliRunner().invoke(main, ["retry", "--failed", "--db", db_target]).exit_code == 0
    assert states(job_rows(db_target)) == {"succeeded": 7, "pending": 3}

    again = run_cli(None, server.openai_base_url, db_target)

    assert again.exit_code == 1, again.output
    assert "stopped" not in again.stderr
    assert states(job_rows(db_target)) == {"succeeded": 7, "failed": 3}


def test_mixed_results_do_not_stop(fake_server: StartFakeServer, tmp_path: Path, db_target: str) -> None:
    """One job in ten succeeds: the 404s are ordinary failures (exit 1)."""
    plans = {i: "*404" for i in range(60) if i % 10}
    server = fake_server(latency_ms=2)
    manifest = write_manifest(tmp_path / "mixed.jsonl", prompts(60, "mix", plans))

    result = run_cli(manifest, server.openai_base_url, db_target, "--concurrency", "4")

    assert result.exit_code == 1, result.output
    assert "stopped" not in result.stderr
    rows = job_rows(db_target)
    assert states(rows) == {"succeeded": 6, "failed": 54}
    assert all(row["attempts"] == 1 for row in rows)
    assert server.stats()["requests"] == 60


def test_first_answers_of_different_classes_do_not_stop(
    fake_server: StartFakeServer, tmp_path: Path, db_target: str
) -> None:
    """The first 20 answers are all permanent failures, but of two classes (404 and 422): not systematic."""
    plans = {i: ("*404" if i % 2 else "*422") for i in range(40)}
    server = fake_server(latency_ms=2)
    manifest = write_manifest(tmp_path / "two.jsonl", prompts(40, "two", plans))

    result = run_cli(manifest, server.openai_base_url, db_target, "--concurrency", "2")

    assert result.exit_code == 1, result.output
    assert "stopped" not in result.stderr
    rows = job_rows(db_target)
    assert states(rows) == {"failed": 40}
    assert all(row["attempts"] == 1 and row["last_error_class"] == "permanent" for row in rows)
    assert server.stats()["requests"] == 40


def test_401_message_names_the_provider_once(fake_server: StartFakeServer, tmp_path: Path) -> None:
    """``stopped: openai: HTTP 401 ...``, not ``openai: openai: ...``."""
    server = fake_server(api_key="sk-the-right-key-only")
    manifest = write_manifest(tmp_path / "auth.jsonl", prompts(4, "auth"))

    result = run_cli(manifest, server.openai_base_url, str(tmp_path / "auth.db"), "--concurrency", "1")

    assert result.exit_code == 3, result.output
    assert "stopped: openai: HTTP 401 invalid_api_key: Incorrect API key provided." in result.stderr
    assert "openai: openai:" not in result.stderr
