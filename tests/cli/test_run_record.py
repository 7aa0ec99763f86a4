"""Issue 9's user-facing promises, through the real CLI on SQLite and PostgreSQL, against fake servers.

A run remembers how it was started (a resume never sends prompts to another server), every hint the CLI
prints works when pasted as it is, commands act on the run the user means, ``cancel`` on a live run keeps
the answers that arrive, and the counts ``status`` shows agree with the fake server's books.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.fake_server_fixtures import StartFakeServer
from helpers.manifests import prompts, write_manifest
from helpers.running import RunnerProcess, wait_until
from sqlalchemy import text

from batchrunner.store.store import Store

pytestmark = pytest.mark.slow  # every test runs the CLI as subprocesses

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read back from the database (either backend)."""

    async def read() -> list[tuple[Any, ...]]:
        store = await Store.open(db, create=False)
        try:
            async with store.db.read() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql))).all()]
        finally:
            await store.close()

    return asyncio.run(read())


def states(db: str, run: str | None = None) -> dict[str, int]:
    where = f"WHERE r.name = '{run}'" if run else ""
    query = f"SELECT j.state, count(*) FROM jobs j JOIN runs r ON r.id = j.run_id {where} GROUP BY j.state"
    return {state: int(n) for state, n in rows(db, query)}


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``batchrunner ARGS`` as a child process."""
    return subprocess.run(
        [sys.executable, "-m", "batchrunner", *args],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def hint(stderr: str, prefix: str) -> list[str]:
    """The command after ``prefix`` in the CLI's output, as argv for this interpreter."""
    [line] = [line for line in stderr.splitlines() if line.startswith(prefix)]
    words = shlex.split(line.removeprefix(prefix))
    assert words[0] == "batchrunner", line
    return words[1:]


def status_json(tmp_path: Path, db: str, *args: str) -> dict[str, Any]:
    result = cli(tmp_path, "status", "--json", "--db", db, *args)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_a_resume_uses_the_runs_base_url_and_limits_and_the_hints_work_as_pasted(
    db_target: str, fake_server: StartFakeServer, tmp_path: Path
) -> None:
    """Ctrl-C a run started with --base-url and --rpm; paste the printed hint in a shell whose
    OPENAI_BASE_URL names another server: every prompt still goes to the run's server, with its limit."""
    local, elsewhere = fake_server(latency_ms=300), fake_server()
    manifest = write_manifest(tmp_path / "big.jsonl", prompts(30, "big"))
    first = RunnerProcess(
        tmp_path,
        [
            str(manifest),
            "--base-url",
            local.openai_base_url,
            "--rpm",
            "600",
            "--concurrency",
            "4",
            "--no-progress",
            "--db",
            db_target,
        ],
    )
    wait_until(lambda: local.stats(prompts=False)["answers_total"] >= 4, 30, "some answers")
    first.signal(signal.SIGINT)
    assert first.wait(20) == 130, first.stderr()

    resume = hint(first.stderr(), "interrupted: results so far are saved; to resume: ")
    assert "--db" in resume  # not the default database
    pasted = cli(tmp_path, *resume, env={"OPENAI_BASE_URL": elsewhere.openai_base_url})

    assert pasted.returncode == 0, pasted.stderr
    assert elsewhere.stats(prompts=False)["requests"] == 0  # nothing left for the other server
    assert local.stats(prompts=False)["answers_total"] == 30
    assert f"using the run's base URL {local.openai_base_url}" in pasted.stderr
    assert states(db_target) == {"succeeded": 30}
    limits = [json.loads(limits) for (limits,) in rows(db_target, "SELECT limits_json FROM runners")]
    assert [entry["openai"]["rpm"] for entry in limits] == [600, 600]  # the resume kept the run's limit

    export = hint(pasted.stderr, "export with: ")
    exported = cli(tmp_path, *export)
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 31


def test_a_flag_given_later_overrides_for_that_invocation_and_says_so(
    db_target: str, fake_server: StartFakeServer, tmp_path: Path
) -> None:
    first_server, second_server = fake_server(latency_ms=300), fake_server()
    manifest = write_manifest(tmp_path / "jobs.jsonl", prompts(20, "flag"))
    first = RunnerProcess(
        tmp_path,
        [
            str(manifest),
            "--base-url",
            first_server.openai_base_url,
            "--rpm",
            "600",
            "--concurrency",
            "2",
            "--no-progress",
            "--db",
            db_target,
        ],
    )
    wait_until(lambda: first_server.stats(prompts=False)["answers_total"] >= 2, 30, "some answers")
    first.signal(signal.SIGINT)
    assert first.wait(20) == 130, first.stderr()
    answered = first_server.stats(prompts=False)["answers_total"]

    moved = cli(
        tmp_path, "run", "--db", db_target, "--no-progress", "--rpm", "6000", "--concurrency", "8",
        "--base-url", second_server.openai_base_url,
    )  # fmt: skip

    assert moved.returncode == 0, moved.stderr
    assert "using --rpm 6000 instead of the run's 600" in moved.stderr
    assert "using --concurrency 8 instead of the run's 2" in moved.stderr
    assert (
        f"openai: using --base-url {second_server.openai_base_url} instead of the run's "
        f"{first_server.openai_base_url}" in moved.stderr
    )
    assert second_server.stats(prompts=False)["answers_total"] == 20 - answered
    assert first_server.stats(prompts=False)["answers_total"] == answered
    # for that invocation only: the run still remembers how it was started
    [(remembered,)] = rows(db_target, "SELECT settings_json FROM runs")
    settings = json.loads(remembered)
    assert settings["run"]["concurrency"] == 2
    assert settings["providers"]["openai"]["base_url"] == first_server.openai_base_url
    assert settings["providers"]["openai"]["rpm"] == 600
    assert settings["providers"]["openai"]["key_env"] == "OPENAI_API_KEY"
    assert os.environ["OPENAI_API_KEY"] not in remembered  # the variable's name, never the key


@pytest.mark.parametrize("with_file", [False, True], ids=["run", "run-FILE"])
def test_run_provider_reroutes_a_submitted_runs_pending_jobs(
    db_target: str, tmp_path: Path, with_file: bool
) -> None:
    """``run --provider fake``, and ``run FILE --provider fake`` (the file, submitted with another provider,
    adds nothing: it is not a conflict), rehearse a submitted run with the fake provider."""
    manifest = str(JOBS / "openai-batch.jsonl")
    submitted = cli(tmp_path, "submit", manifest, "--db", db_target)
    assert submitted.returncode == 0, submitted.stderr
    total = sum(states(db_target).values())

    file = [manifest] if with_file else []
    rehearsed = cli(
        tmp_path,
        "run",
        *file,
        "--provider",
        "fake",
        "--db",
        db_target,
        "--no-progress",
        env={"OPENAI_API_KEY": ""},
    )

    assert rehearsed.returncode == 0, rehearsed.stderr
    assert f"rerouted {total} pending job(s) of run 'openai-batch' to provider fake" in rehearsed.stderr
    assert rows(db_target, "SELECT DISTINCT provider FROM jobs") == [("fake",)]
    assert states(db_target) == {"succeeded": total}


def test_the_latest_run_is_the_one_last_retried(db_target: str, tmp_path: Path) -> None:
    for name in ("a", "b"):
        source = write_manifest(tmp_path / f"{name}.jsonl", prompts(3, name), model="fake-model")
        assert cli(tmp_path, "submit", str(source), "--provider", "fake", "--db", db_target).returncode == 0
    asyncio.run(_fail_jobs_of(db_target, "a"))  # as if a's jobs had failed; b was submitted after

    retried = cli(tmp_path, "retry", "--failed", "--run", "a", "--db", db_target)
    assert retried.returncode == 0 and "3 failed job(s) requeued" in retried.stderr
    ran = cli(tmp_path, "run", "--db", db_target, "--no-progress")

    assert ran.returncode == 0, ran.stderr
    assert "run 'a': 3 succeeded" in ran.stderr
    assert states(db_target, "a") == {"succeeded": 3}
    assert states(db_target, "b") == {"pending": 3}
    assert "--run a" in ran.stderr  # two runs in the database: the hints name this one


async def _fail_jobs_of(db: str, run: str) -> None:
    store = await Store.open(db, create=False)
    try:
        async with store.db.write() as conn:
            await conn.execute(
                text(
                    "UPDATE jobs SET state = 'failed', last_error_class = 'permanent' "
                    "WHERE run_id = (SELECT id FROM runs WHERE name = :name)"
                ),
                {"name": run},
            )
    finally:
        await store.close()


def test_run_file_resumes_a_skip_invalid_submit(db_target: str, tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_text('{"id": "a", "prompt": "one"}\n{"id": "b"}\n{"id": "c", "prompt": "three"}\n')
    submitted = cli(
        tmp_path, "submit", str(source), "--skip-invalid", "--provider", "fake", "--db", db_target
    )
    assert submitted.returncode == 0, submitted.stderr

    ran = cli(tmp_path, "run", str(source), "--provider", "fake", "--db", db_target, "--no-progress")

    assert ran.returncode == 0, ran.stderr
    assert "1 invalid line(s) skipped" in ran.stderr
    assert states(db_target) == {"succeeded": 2}
    # and `run --skip-invalid` on a file never submitted
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "x", "prompt": "one"}\n{"id": "y", "prompt": 5}\n')
    fresh = cli(tmp_path, "run", str(other), "--skip-invalid", "--provider", "fake", "--db", db_target)
    assert fresh.returncode == 0, fresh.stderr
    assert states(db_target, "other") == {"succeeded": 1}


def test_cancel_on_a_live_run_keeps_the_answers_in_flight(
    db_target: str, fake_server: StartFakeServer, tmp_path: Path
) -> None:
    server = fake_server(latency_ms=1000)
    manifest = write_manifest(tmp_path / "cancel.jsonl", prompts(40, "cancel"))
    runner = RunnerProcess(
        tmp_path,
        [str(manifest), "--base-url", server.openai_base_url, "--concurrency", "4", "--db", db_target],
    )
    wait_until(lambda: server.stats(prompts=False)["in_flight"] == 4, 30, "four calls in flight")

    cancelled = cli(tmp_path, "cancel", "--db", db_target)
    cancelled_at = time.monotonic()
    assert cancelled.returncode == 0, cancelled.stderr

    assert runner.wait(20) == 3, runner.stderr()
    assert time.monotonic() - cancelled_at < 1.0 + 1.0 + 1.5  # a poll, the calls in flight, the exit
    stderr = runner.stderr()
    assert "was cancelled" in stderr
    assert "lease was lost" not in stderr and "away" not in stderr
    books = server.stats()
    answered = books["answers_total"]
    assert answered >= 4 and books["duplicates"] == 0
    counts = states(db_target)
    assert counts == {"succeeded": answered, "cancelled": 40 - answered}  # every answer that came is kept
    assert rows(db_target, "SELECT count(*) FROM results") == [(answered,)]
    assert f"{answered} succeeded" in stderr and f"{40 - answered} cancelled" in stderr
    status = status_json(tmp_path, db_target)
    assert status["resent_after_interruption"] == 0 and status["possibly_billed"] == 0
    assert status["attempts"] == books["requests"] == answered


def test_attempts_never_decrease_and_unknown_cost_is_unknown(
    db_target: str, fake_server: StartFakeServer, tmp_path: Path
) -> None:
    server = fake_server()
    jobs = prompts(6, "cost", {0: "*400", 1: "*400"})
    manifest = write_manifest(tmp_path / "cost.jsonl", jobs, model="my-unpriced-model")
    base = ["--base-url", server.openai_base_url, "--db", db_target, "--no-progress"]
    first = cli(tmp_path, "run", str(manifest), *base)
    assert first.returncode == 1, first.stderr  # two failed
    before = status_json(tmp_path, db_target)
    assert before["attempts"] == server.stats(prompts=False)["requests"] == 6

    assert cli(tmp_path, "retry", "--failed", "--db", db_target).returncode == 0
    after_retry = status_json(tmp_path, db_target)
    assert after_retry["attempts"] == 6 and after_retry["attempts_this_try"] == 4  # history is kept
    again = cli(tmp_path, "run", *base)
    assert again.returncode == 1
    final = status_json(tmp_path, db_target)
    assert final["attempts"] == server.stats(prompts=False)["requests"] == 8

    assert final["cost_usd"] is None and final["unpriced_results"] == 4
    text_status = cli(tmp_path, "status", "--db", db_target).stdout
    assert "cost     unknown (4 result(s) without a price)" in text_status
    assert "$0.0000" not in text_status


def test_an_empty_manifest_is_an_error_and_leaves_no_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    for command in (["submit", str(empty)], ["run", str(empty), "--provider", "fake"]):
        result = cli(tmp_path, *command, "--db", str(tmp_path / "new.db"))
        assert result.returncode == 2, result.stderr
        assert f"error: {empty}: no jobs" in result.stderr
        assert not list(tmp_path.glob("new.db*"))


def test_db_and_verbose_before_the_subcommand(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    assert (
        cli(tmp_path, "--db", db, "submit", str(JOBS / "simple.jsonl"), "--provider", "fake").returncode == 0
    )
    result = cli(tmp_path, "--db", db, "-v", "status", env={"BATCHRUNNER_DB": str(tmp_path / "other.db")})
    assert result.returncode == 0, result.stderr
    assert "run simple: 20 job(s)" in result.stdout
    help_text = " ".join(cli(tmp_path, "submit", "--help").stdout.split())
    assert "[default: FILE's name without its extension: jobs for jobs.jsonl]" in help_text


@pytest.fixture(autouse=True)
def _no_base_url_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
