"""Crash, signal, resume: ``batchrunner run`` as a subprocess against the fake server (docs/reliability.md).

Each test kills, interrupts or pauses a real runner process and then resumes the run, and checks the
invariants afterwards (``helpers.invariants.check_invariants``): every job one result, answers equal to a
fault-free reference, server calls per job within the attempts counted, no result twice, an intact
database. Server calls that a dead runner sent but never recorded are bounded by the jobs it held
(``running`` rows right after the kill): only those can be sent again.

Resumes run with the default ``--timeout`` (300 s, so a 335 s lease): they finish in seconds only because
a dead runner's jobs are reclaimed by liveness (its pid is gone), not by lease expiry.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.database import connect, snapshot
from helpers.fake_server_fixtures import StartFakeServer
from helpers.invariants import CANARY, assert_no_canary, check_invariants, prompt_of, reference_answers
from helpers.manifests import prompts, write_manifest
from helpers.running import RunnerProcess, run_args, settings_for, wait_until

from batchrunner import api
from batchrunner.cli import main
from batchrunner.engine.options import RunReport
from batchrunner.fakeserver.testing import FakeServerHandle

pytestmark = pytest.mark.slow  # runner subprocesses killed, interrupted, paused and resumed

StartRunner = Callable[..., RunnerProcess]
RESUME_WITHIN_S = 20.0
"""A resume must finish well inside the lease (335 s) and the heartbeat staleness (30 s)."""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[StartRunner]:
    """Factory: ``runner(args, env=..., name=...)`` starts ``batchrunner run``; all are reaped at the end."""
    started: list[RunnerProcess] = []

    def start(args: list[str], *, env: dict[str, str] | None = None, name: str = "run") -> RunnerProcess:
        process = RunnerProcess(tmp_path, args, env=env, name=f"{name}{len(started)}")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def running_rows(db: Path) -> int:
    conn = connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'running'").fetchone()[0])
    finally:
        conn.close()


def count_sent(db: Path) -> int:
    conn = connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'running' AND sent").fetchone()[0])
    finally:
        conn.close()


def sent_twice(stats: dict[str, Any]) -> int:
    """Jobs whose request reached the fake server more than once (these tests inject no faults, so each
    is a re-send after an interruption). The server's ``duplicates`` counts answers, and an answer to a
    client that was killed meanwhile is never written, so it can be lower."""
    return sum(1 for calls in stats["attempts"].values() if calls > 1)


def resume(server: FakeServerHandle, db: Path) -> RunReport:
    """Restart the run in-process (as ``batchrunner run`` would) at once; it must finish, and fast."""
    started = time.monotonic()
    report = asyncio.run(api.run(settings=settings_for(server.openai_base_url, db, concurrency=4)))
    assert report.exit_code == 0, report
    assert time.monotonic() - started < RESUME_WITHIN_S
    return report


@pytest.mark.parametrize("crash_at", ["after-claim", "after-response:3", "inside-checkpoint:2"])
def test_named_crash_point_then_resume(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path, crash_at: str
) -> None:
    """SIGKILL at a named point (test-only hook); a restart reclaims at once and finishes exactly once."""
    jobs = prompts(24, "crash")
    server = fake_server(latency_ms=80)  # several checkpoint groups (one every 0.25 s)
    db = tmp_path / "batchrunner.db"
    manifest = write_manifest(tmp_path / "crash.jsonl", jobs)
    first = runner(
        run_args(manifest, server, "--concurrency", "4"), env={"BATCHRUNNER_TEST_CRASH_AT": crash_at}
    )

    assert first.wait() == -signal.SIGKILL, first.stderr()

    held = running_rows(db)
    before = server.stats()
    snap = snapshot(db)
    assert snap.integrity == "ok"
    if crash_at == "after-claim":  # leased and counted, nothing sent
        assert before["requests"] == 0 and held == 8
        assert all(job["attempts"] == (job["state"] == "running") for job in snap.jobs.values())
    elif crash_at.startswith("after-response"):  # the third answer came back and was never recorded
        assert before["answers_total"] >= 3 and snap.result_rows <= 2
    else:  # the second group never reached the database; the first did
        assert snap.result_rows > 0 and held > 0

    resume(server, db)

    snap, stats = snapshot(db), server.stats()
    assert stats["duplicates"] <= held
    if crash_at == "after-claim":
        assert stats["duplicates"] == 0
    status = asyncio.run(api.status(settings=api.settings(db=str(db))))
    assert abs(status.insights.resent_after_interruption - sent_twice(stats)) <= 3
    check_invariants(
        snap, stats, ids=jobs, reference=reference_answers(fake_server, db), in_flight_at_kills=held
    )


def calling_or_done(process: RunnerProcess, server: FakeServerHandle, seen: int) -> Callable[[], bool]:
    def check() -> bool:
        return process.process.poll() is not None or server.stats(prompts=False)["requests"] > seen

    return check


def test_sigkill_in_a_loop_at_random_moments(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """Kill -9 at random moments, restart, again and again: every job ends with exactly one result, equal
    to the fault-free answer, and the server saw duplicates only of jobs the dead runners held."""
    rng = random.Random(20240611)
    jobs = prompts(200, "loop")
    server = fake_server(latency_ms=20, jitter_ms=30, seed=7, api_key=CANARY)
    db = tmp_path / "batchrunner.db"
    manifest = write_manifest(tmp_path / "loop.jsonl", jobs)
    held_at_kills, in_flight_at_kills, kills, hot_wal, early = 0, 0, 0, False, ""
    for _ in range(5):
        seen = server.stats(prompts=False)["requests"]
        process = runner(
            run_args(manifest, server, "--concurrency", "6"), env={"OPENAI_API_KEY": CANARY}, name="loop"
        )
        wait_until(calling_or_done(process, server, seen), 30, "the runner to start calling")
        time.sleep(rng.uniform(0.05, 0.35))
        if process.process.poll() is not None:  # it finished before the kill
            early = f"exit {process.wait()}: {process.stderr()}"
            break
        assert process.kill() == -signal.SIGKILL
        in_flight_at_kills += server.stats(prompts=False)["in_flight"]
        kills += 1
        hot_wal = hot_wal or "batchrunner.db-wal" in assert_no_canary(tmp_path)  # before any reader
        held_at_kills += running_rows(db)
        assert snapshot(db).integrity == "ok"
    assert kills >= 3, f"the runs finished too fast to be killed (use more jobs); {early}"
    assert hot_wal  # the canary grep saw the database as a crash leaves it

    last = runner(
        run_args(None, server, "--concurrency", "6"), env={"OPENAI_API_KEY": CANARY}, name="last"
    )  # `batchrunner run` resumes
    assert last.wait(RESUME_WITHIN_S + 10) == 0, last.stderr()
    assert time.monotonic() - last.started < RESUME_WITHIN_S

    snap, stats = snapshot(db), server.stats()
    assert stats["duplicates"] <= held_at_kills
    assert max(stats["answers"].values()) <= 1 + kills
    # status tells the truth about what the kills cost: re-sent = the server's duplicates (within 3 a
    # kill: a request marked sent the instant before the kill may never have left), and every call the
    # server had in flight at a kill is counted as possibly billed
    status = asyncio.run(api.status(settings=api.settings(db=str(db))))
    assert abs(status.insights.resent_after_interruption - sent_twice(stats)) <= 3 * kills, (
        status.insights,
        stats["duplicates"],
    )
    assert status.insights.possibly_billed >= in_flight_at_kills
    assert status.stats.attempts == sum(len(rows) for rows in snap.attempts.values())
    check_invariants(
        snap,
        stats,
        ids=jobs,
        reference=reference_answers(fake_server, db),
        in_flight_at_kills=held_at_kills,
    )


def test_sigint_drains_exits_130_and_the_resume_sends_no_duplicates(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """Ctrl-C: calls in flight finish and are saved, queued jobs go back unsent, exit 130, nothing left
    running; the resume sends only what was never sent (0 duplicates)."""
    jobs = prompts(24, "int")
    server = fake_server(latency_ms=300)
    db = tmp_path / "batchrunner.db"
    process = runner(run_args(write_manifest(tmp_path / "int.jsonl", jobs), server, "--concurrency", "4"))
    wait_until(lambda: server.stats(prompts=False)["answers_total"] >= 4, 30, "some answers")
    wait_until(lambda: server.stats(prompts=False)["in_flight"] == 4, 5, "calls in flight")

    process.signal(signal.SIGINT)

    assert process.wait(10) == 130
    assert "interrupted" in process.stderr()
    snap, stats = snapshot(db), server.stats()
    assert snap.states()["running"] == 0 and set(snap.states()) <= {"succeeded", "pending"}
    assert all(runner_row["stopped_at"] is not None for runner_row in snap.runners)
    for cid in snap.in_state("pending"):  # given back unsent, the attempt refunded
        assert snap.jobs[cid]["attempts"] == 0 and stats["attempts"].get(prompt_of(snap.jobs[cid]), 0) == 0
    assert stats["answers_total"] == len(snap.in_state("succeeded"))  # the calls in flight were saved
    check_invariants(snap, stats, ids=jobs, reference=None, stopped=True)

    resume(server, db)

    snap, stats = snapshot(db), server.stats()
    assert stats["duplicates"] == 0
    check_invariants(snap, stats, ids=jobs, reference=reference_answers(fake_server, db))


def test_second_sigint_exits_at_once_and_the_next_run_reclaims(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """Ctrl-C twice while calls hang: exit 130 at once (no waiting for the grace period); the next run
    takes the abandoned jobs back immediately and finishes them."""
    jobs = prompts(8, "twice", {0: "hang", 1: "hang", 2: "hang", 3: "hang"})
    server = fake_server(latency_ms=2)
    db = tmp_path / "batchrunner.db"
    process = runner(run_args(write_manifest(tmp_path / "twice.jsonl", jobs), server, "--concurrency", "4"))
    wait_until(lambda: server.stats(prompts=False)["in_flight"] == 4, 30, "four hanging calls")

    process.signal(signal.SIGINT)
    time.sleep(0.3)
    assert process.process.poll() is None  # still waiting for the calls in flight
    process.signal(signal.SIGINT)
    stopped = time.monotonic()

    assert process.wait(10) == 130
    assert time.monotonic() - stopped < 2.0
    held = running_rows(db)
    assert held == 4  # the hanging calls' jobs; the queued ones were given back by the first Ctrl-C

    resume(server, db)

    snap, stats = snapshot(db), server.stats()
    assert stats["duplicates"] == 0  # the hung calls were never answered
    check_invariants(
        snap, stats, ids=jobs, reference=reference_answers(fake_server, db), in_flight_at_kills=held
    )


async def test_sigstopped_runner_past_its_lease_cannot_write_back(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path
) -> None:
    """A runner paused (SIGSTOP) past its lease: another runner takes the jobs over and records them;
    when the first one wakes up, its late answers are refused by the lease fence, not recorded twice,
    and the jobs waiting in its local queue are dropped unsent (their leases are gone), not paid twice."""
    jobs = prompts(6, "stop")
    server = fake_server(latency_ms=800)
    db = tmp_path / "batchrunner.db"
    manifest = write_manifest(tmp_path / "stop.jsonl", jobs)
    paused = runner(run_args(manifest, server, "--concurrency", "3"), name="paused")
    wait_until(lambda: server.stats(prompts=False)["in_flight"] == 3, 30, "three calls in flight")
    # and their send marks written: paused in the middle of a write, it would hold SQLite's write lock
    wait_until(lambda: count_sent(db) == 3, 10, "the three sends marked")
    paused.signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    # time passes: the paused runner's leases expire (set in the database instead of waiting 335 s)
    conn = connect(db)
    with conn:
        expired = conn.execute(
            "UPDATE jobs SET lease_expires_at = '2000-01-01 00:00:00.000000' WHERE state = 'running'"
        ).rowcount
    conn.close()
    assert expired == 6  # three in flight, three in its local queue

    report = await api.run(settings=settings_for(server.openai_base_url, db, concurrency=3))  # takes over

    assert report.exit_code == 0
    # away for longer than a runner trusts its last heartbeat (half of the 30 s after which others may
    # judge it dead), as a laptop that slept would be
    await asyncio.sleep(max(0.0, 16 - (time.monotonic() - paused_at)))
    paused.signal(signal.SIGCONT)
    assert paused.wait(30) == 0
    assert "after their lease was lost; not recorded" in paused.stderr()
    assert "dropping them unsent" in paused.stderr()
    snap, stats = snapshot(db), server.stats()
    paused_id = next(r["id"] for r in snap.runners if r["pid"] == paused.pid)
    # of the paused runner only its three calls in flight are recorded, as interrupted (the takeover
    # found them sent); its late answers were refused
    paused_rows = [a for rows in snap.attempts.values() for a in rows if a["runner_id"] == paused_id]
    assert [a["error_class"] for a in paused_rows] == ["interrupted"] * 3
    assert all(a["possibly_billed"] for a in paused_rows)
    # answered twice: only the calls in flight at the pause (3), not the three in its local queue
    assert stats["duplicates"] == sent_twice(stats) == 3
    status = await api.status(settings=api.settings(db=str(db)))
    assert status.insights.resent_after_interruption == 3 and status.insights.possibly_billed == 3
    check_invariants(
        snap, stats, ids=jobs, reference=reference_answers(fake_server, db), in_flight_at_kills=3
    )


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_canary_key_appears_in_no_file_or_output(
    fake_server: StartFakeServer, runner: StartRunner, tmp_path: Path, transport: str
) -> None:
    """The key reaches the server and nothing else: database (with -wal/-shm), exports, logs at debug
    level (ours and the SDK's), stdout and stderr of every command; through failures and an auth stop.
    Over both transports (the run remembers the first run's for the later commands)."""
    jobs = prompts(8, "canary", {1: "500", 2: "*400", 3: "bad-json", 4: "reset", 5: "429"})
    server = fake_server(api_key=CANARY, retry_after_s=0.1)
    db = tmp_path / "batchrunner.db"
    manifest = write_manifest(tmp_path / "canary.jsonl", jobs)
    env = {"OPENAI_API_KEY": CANARY, "OPENAI_LOG": "debug"}
    first = runner(
        run_args(manifest, server, "-vv"), env={**env, "BATCHRUNNER_TRANSPORT": transport}, name="canary"
    )
    assert first.wait() == 1, first.stderr()  # the poison job failed
    if transport == "sdk":
        assert "HTTP Request" in first.stderr() or "Request options" in first.stderr()  # the SDK logged

    # a wrong key: every call is refused, the run stops (exit 3) with nothing spent
    retried = api_cli("retry", "--failed")
    wrong = CliRunner(env={"OPENAI_API_KEY": "sk-wrong-0000000000000000"}).invoke(
        main, ["run", *run_args(None, server, "-vv")]
    )
    assert wrong.exit_code == 3 and "stopped:" in wrong.stderr
    again = CliRunner(env=env).invoke(main, ["run", *run_args(None, server, "-vv")])
    assert again.exit_code == 1  # the poison job, once more

    outputs = [
        retried,
        wrong.output,
        again.output,
        api_cli("export", "--format", "csv", "-o", str(tmp_path / "out.csv")),
        api_cli("export", "--format", "jsonl", "-o", "-"),
        api_cli("export", "--format", "openai-batch", "-o", str(tmp_path / "out-batch.jsonl")),
        api_cli("status", "--json"),
    ]
    snap = snapshot(db)
    assert snap.states() == {"succeeded": 7, "failed": 1}
    checked = assert_no_canary(tmp_path, *outputs)
    assert {"batchrunner.db", "out.csv", "out-batch.jsonl", "canary0.stderr", "canary.jsonl"} <= checked


def api_cli(*args: str) -> str:
    """``batchrunner ARGS`` in-process (click's runner): its stdout + stderr; it must succeed."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout + result.stderr
